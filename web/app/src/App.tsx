import { useCallback, useEffect, useState, useSyncExternalStore } from 'react';
import { ApolloProvider, useApolloClient, useQuery } from '@apollo/client/react';

import { Auth } from './Auth';
import { ConversationView } from './ConversationView';
import { CONVERSATIONS, INBOX, ME, type UserRef } from './operations';
import { navigate, useConversationRoute } from './route';
import { createSession, errorCode, type Session } from './session';
import { Sidebar } from './Sidebar';

const TOKEN_KEY = 'parley.app.token';

function storedToken(): string | null {
  try {
    return window.localStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled
  }
}

function storeToken(token: string | null): void {
  try {
    if (token) window.localStorage.setItem(TOKEN_KEY, token);
    else window.localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the session lasts as long as the page
  }
}

export function App() {
  const [token, setToken] = useState<string | null>(storedToken);
  const [session, setSession] = useState<Session | null>(null);

  const signOut = useCallback(() => {
    storeToken(null);
    setToken(null);
    navigate(null);
  }, []);

  useEffect(() => {
    if (!token) return;
    const s = createSession(token);
    const off = s.authLost.on(signOut);
    setSession(s);
    return () => {
      off();
      setSession(null);
      s.dispose();
    };
  }, [token, signOut]);

  if (!token) {
    return (
      <Auth
        onSignedIn={(t) => {
          storeToken(t);
          setToken(t);
        }}
      />
    );
  }
  if (!session) return null;
  return (
    <ApolloProvider client={session.apollo}>
      <Chat session={session} onSignOut={signOut} />
    </ApolloProvider>
  );
}

const STATUS_TEXT = {
  connecting: 'Connecting…',
  connected: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
} as const;

function Chat({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const client = useApolloClient();
  const me = useQuery(ME);
  const conversationId = useConversationRoute();
  const status = useSyncExternalStore(session.connection.subscribe, session.connection.get);

  useEffect(() => {
    if (errorCode(me.error) === 'UNAUTHENTICATED') onSignOut();
  }, [me.error, onSignOut]);

  // The inbox keeps the conversation list (last message, unread count,
  // read receipts) current through the normalized cache: every event
  // carries the whole conversation. New conversations need the list
  // refetched; messages of the open conversation are also handed to its
  // view, which merges them with its own messageEvents stream.
  useEffect(() => {
    let stopped = false;
    let sub: { unsubscribe(): void } | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const start = () => {
      sub = client.subscribe({ query: INBOX }).subscribe({
        next: ({ data }) => {
          const ev = data?.inbox;
          if (!ev) return;
          if (ev.type === 'CONVERSATION_CREATED' || ev.type === 'PARTICIPANTS_CHANGED') {
            void client.refetchQueries({ include: [CONVERSATIONS] });
          }
          // READ events carry a message too (the last one read): not news.
          if (ev.message && ev.type.startsWith('MESSAGE_')) {
            session.inboxMessages.emit({
              conversationId: ev.conversation.id,
              message: ev.message,
              created: ev.type === 'MESSAGE_CREATED',
            });
          }
        },
        error: () => {
          if (!stopped) retry = setTimeout(start, 1000);
        },
        complete: () => {
          if (!stopped) retry = setTimeout(start, 1000);
        },
      });
    };
    start();
    // Inbox events sent while the socket was down are gone (the inbox has
    // no cursor): read the current state again.
    const off = session.reconnected.on(() => {
      void client.refetchQueries({ include: 'active' });
    });
    return () => {
      stopped = true;
      clearTimeout(retry);
      off();
      sub?.unsubscribe();
    };
  }, [client, session]);

  const viewer: UserRef | undefined = me.data?.me;
  return (
    <div className={`chat${conversationId ? ' has-open' : ''}`}>
      <header className="topbar">
        <span className="brand">Parley</span>
        <span className={`status status-${status}`} data-testid="connection" data-state={status}>
          {STATUS_TEXT[status]}
        </span>
        <span className="spacer" />
        {viewer && (
          <span className="whoami" data-testid="whoami">
            {viewer.displayName} <span className="muted">@{viewer.username}</span>
          </span>
        )}
        <button type="button" className="link" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <div className="panes">
        <Sidebar viewer={viewer} openId={conversationId} />
        <main className="conversation-pane">
          {conversationId && viewer ? (
            <ConversationView key={conversationId} session={session} viewer={viewer} conversationId={conversationId} />
          ) : (
            <div className="empty">Pick a conversation, or start one.</div>
          )}
        </main>
      </div>
    </div>
  );
}

import { useCallback, useEffect, useLayoutEffect, useRef, useState, type KeyboardEvent } from 'react';
import { useApolloClient, useQuery } from '@apollo/client/react';

import {
  CONVERSATION,
  DELETE_MESSAGE,
  EDIT_MESSAGE,
  MARK_READ,
  MESSAGE_EVENTS,
  MESSAGES,
  SEND_MESSAGE,
  SET_TYPING,
  TYPING,
  type Message,
  type UserRef,
} from './operations';
import { errorCode, errorMessage, newClientMessageId, type Session } from './session';
import { conversationTitle } from './Sidebar';
import { shortTime } from './time';

// setTyping(true) is repeated this often while the user keeps typing; the
// server forgets a typing state after TYPING_TTL (6 s by default).
const TYPING_REFRESH_MS = 2_500;
// A typing indicator whose "stopped" event got lost goes away by itself.
const TYPING_FALLBACK_MS = 8_000;

/**
 * Sortable form of an RFC 3339 UTC time with up to nine fraction digits
 * (Go trims trailing zeros, so the strings are not fixed-width).
 */
function timeKey(iso: string): string {
  const m = /^(.*?:\d\d)(?:\.(\d{1,9}))?Z$/.exec(iso);
  return m ? `${m[1]}.${(m[2] ?? '').padEnd(9, '0')}Z` : iso;
}

/** How far along a message's life a copy of it is: later wins. */
function version(m: Message): string {
  if (m.deletedAt) return `2${timeKey(m.deletedAt)}`;
  if (m.editedAt) return `1${timeKey(m.editedAt)}`;
  return '0';
}

interface Pending {
  clientMessageId: string;
  body: string;
  state: 'sending' | 'failed';
}

export function ConversationView({
  session,
  viewer,
  conversationId,
}: {
  session: Session;
  viewer: UserRef;
  conversationId: string;
}) {
  const client = useApolloClient();
  const conv = useQuery(CONVERSATION, { variables: { id: conversationId } });
  const conversation = conv.data?.conversation;

  const [messages, setMessages] = useState<Map<string, Message>>(() => new Map());
  const [pending, setPending] = useState<Pending[]>([]);
  const [older, setOlder] = useState<{ has: boolean; cursor: string | null }>({ has: false, cursor: null });
  const [loaded, setLoaded] = useState(false);
  const [fatal, setFatal] = useState('');
  const [typing, setTyping] = useState<Map<string, string>>(() => new Map());
  const typingTimers = useRef(new Map<string, ReturnType<typeof setTimeout>>());

  /**
   * Merges copies of messages from any source (page, event, mutation).
   * created says they were just sent, which ends their senders' typing.
   */
  const upsert = useCallback((incoming: Message[], created = false) => {
    if (incoming.length === 0) return;
    setMessages((prev) => {
      const next = new Map(prev);
      for (const m of incoming) {
        const old = next.get(m.id);
        if (!old || version(m) >= version(old)) next.set(m.id, m);
      }
      return next;
    });
    const mine = new Set(incoming.filter((m) => m.sender.id === viewer.id && m.clientMessageId).map((m) => m.clientMessageId));
    if (mine.size) setPending((p) => p.filter((x) => !mine.has(x.clientMessageId)));
    if (!created) return;
    // A new message from someone ends their typing indicator.
    const senders = new Set(incoming.map((m) => m.sender.id));
    setTyping((prev) => {
      if (![...senders].some((id) => prev.has(id))) return prev;
      const next = new Map(prev);
      for (const id of senders) next.delete(id);
      return next;
    });
  }, [viewer.id]);

  const loadPage = useCallback(
    async (before: string | null) => {
      const res = await client.query({ query: MESSAGES, variables: { id: conversationId, before }, fetchPolicy: 'no-cache' });
      const page = res.data?.conversation?.messages;
      if (!page) {
        if (res.data && !res.data.conversation) setFatal('This conversation does not exist, or you are not in it.');
        return;
      }
      upsert(page.edges.map((e) => e.node));
      if (before === null) {
        // Only the first page decides where "older" starts; a reload of the
        // newest page after a reconnect must not forget older pages shown.
        setOlder((o) => (o.cursor ? o : { has: page.pageInfo.hasPreviousPage, cursor: page.pageInfo.startCursor }));
      } else {
        setOlder({ has: page.pageInfo.hasPreviousPage, cursor: page.pageInfo.startCursor });
      }
      setLoaded(true);
    },
    [client, conversationId, upsert],
  );

  // Live messages: messageEvents, resumed with `after` after every
  // reconnect so that everything missed meanwhile is replayed; until the
  // first event there is no cursor, and the newest page is read again
  // instead. The inbox (always subscribed) covers the moment between the
  // first page and this subscription starting.
  const cursor = useRef<string | null>(null);
  useEffect(() => {
    let stopped = false;
    let sub: { unsubscribe(): void } | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const start = () => {
      clearTimeout(retry);
      sub?.unsubscribe();
      sub = client
        .subscribe({
          query: MESSAGE_EVENTS,
          variables: { conversationId, after: cursor.current },
          fetchPolicy: 'no-cache',
        })
        .subscribe({
          next: ({ data, error }) => {
            if (data?.messageEvents) {
              cursor.current = data.messageEvents.cursor;
              upsert([data.messageEvents.message], data.messageEvents.type === 'CREATED');
            }
            if (error) {
              if (errorCode(error) === 'NOT_FOUND') {
                stopped = true;
                setFatal('This conversation does not exist, or you are not in it.');
              } else if (!stopped) {
                retry = setTimeout(start, 1000); // e.g. SLOW_CONSUMER: resume after the cursor
              }
            }
          },
          error: () => {
            if (!stopped) retry = setTimeout(start, 1000);
          },
        });
    };
    start();
    void loadPage(null).catch((err) => setFatal(errorMessage(err)));
    const offReconnect = session.reconnected.on(() => {
      if (stopped) return;
      const hadCursor = cursor.current !== null;
      start();
      if (!hadCursor) void loadPage(null).catch(() => {});
    });
    const offInbox = session.inboxMessages.on((ev) => {
      if (ev.conversationId === conversationId) upsert([ev.message], ev.created);
    });
    return () => {
      stopped = true;
      clearTimeout(retry);
      offReconnect();
      offInbox();
      sub?.unsubscribe();
    };
  }, [client, conversationId, session, upsert, loadPage]);

  // Typing indicators of the others.
  useEffect(() => {
    const timers = typingTimers.current;
    const clear = (userId: string) => {
      clearTimeout(timers.get(userId));
      timers.delete(userId);
      setTyping((prev) => {
        if (!prev.has(userId)) return prev;
        const next = new Map(prev);
        next.delete(userId);
        return next;
      });
    };
    let stopped = false;
    let sub: { unsubscribe(): void } | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const start = () => {
      sub = client.subscribe({ query: TYPING, variables: { conversationId }, fetchPolicy: 'no-cache' }).subscribe({
        next: ({ data }) => {
          const ev = data?.typing;
          if (!ev || ev.user.id === viewer.id) return;
          if (!ev.typing) {
            clear(ev.user.id);
            return;
          }
          clearTimeout(timers.get(ev.user.id));
          timers.set(ev.user.id, setTimeout(() => clear(ev.user.id), TYPING_FALLBACK_MS));
          setTyping((prev) => new Map(prev).set(ev.user.id, ev.user.displayName));
        },
        error: () => {
          if (!stopped) retry = setTimeout(start, 1000);
        },
      });
    };
    start();
    return () => {
      stopped = true;
      clearTimeout(retry);
      sub?.unsubscribe();
      for (const t of timers.values()) clearTimeout(t);
      timers.clear();
    };
  }, [client, conversationId, viewer.id]);

  // Read receipts: whenever this conversation has unread messages while the
  // page is visible, move the read marker to the newest message. The
  // unread count comes from the cache, which inbox events keep current.
  const [visible, setVisible] = useState(() => document.visibilityState === 'visible');
  useEffect(() => {
    const on = () => setVisible(document.visibilityState === 'visible');
    document.addEventListener('visibilitychange', on);
    return () => document.removeEventListener('visibilitychange', on);
  }, []);
  const unread = conversation?.unreadCount ?? 0;
  const newestId = [...messages.values()].reduce<Message | null>(
    (a, m) => (!a || timeKey(m.createdAt) > timeKey(a.createdAt) ? m : a),
    null,
  )?.id;
  useEffect(() => {
    if (!visible || unread === 0) return;
    const t = setTimeout(() => {
      void client.mutate({ mutation: MARK_READ, variables: { conversationId } }).catch(() => {});
    }, 150);
    return () => clearTimeout(t);
  }, [client, conversationId, visible, unread, newestId]);

  // Sending, with the idempotency key kept for retries.
  const send = useCallback(
    async (body: string, clientMessageId: string) => {
      setPending((p) => [
        ...p.filter((x) => x.clientMessageId !== clientMessageId),
        { clientMessageId, body, state: 'sending' },
      ]);
      try {
        const res = await client.mutate({
          mutation: SEND_MESSAGE,
          variables: { conversationId, body, clientMessageId },
        });
        if (res.data) upsert([res.data.sendMessage]);
      } catch {
        setPending((p) => p.map((x) => (x.clientMessageId === clientMessageId ? { ...x, state: 'failed' } : x)));
      }
    },
    [client, conversationId, upsert],
  );

  // Typing states go out one after another: "stopped" (on send) and
  // "typing" (the next keystroke) sent in parallel could arrive in either
  // order, leaving the others with the wrong one.
  const typingChain = useRef<Promise<unknown>>(Promise.resolve());
  const sendTyping = useCallback(
    (t: boolean) => {
      typingChain.current = typingChain.current
        .then(() => client.mutate({ mutation: SET_TYPING, variables: { conversationId, typing: t } }))
        .catch(() => {});
    },
    [client, conversationId],
  );

  // Scrolling: stay at the bottom when already there.
  const listRef = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const sorted = [...messages.values()].sort((a, b) => {
    const ka = timeKey(a.createdAt);
    const kb = timeKey(b.createdAt);
    return ka < kb ? -1 : ka > kb ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
  useLayoutEffect(() => {
    const el = listRef.current;
    if (el && atBottom.current) el.scrollTop = el.scrollHeight;
  }, [sorted.length, pending.length, typing.size]);

  async function loadOlder() {
    const el = listRef.current;
    const before = el ? el.scrollHeight - el.scrollTop : 0;
    await loadPage(older.cursor).catch((err) => setFatal(errorMessage(err)));
    requestAnimationFrame(() => {
      if (el) el.scrollTop = el.scrollHeight - before;
    });
  }

  // Who has read up to which message (the others only).
  const seenBy = new Map<string, string[]>();
  for (const r of conversation?.readReceipts ?? []) {
    if (r.user.id === viewer.id || !r.lastReadMessageId) continue;
    const name = conversation?.participants.find((p) => p.id === r.user.id)?.displayName ?? 'someone';
    seenBy.set(r.lastReadMessageId, [...(seenBy.get(r.lastReadMessageId) ?? []), name]);
  }

  if (fatal) return <div className="empty error">{fatal}</div>;
  const typingNames = [...typing.values()];
  return (
    <section className="conversation" aria-label="Conversation">
      <header className="conversation-header">
        <h2 data-testid="conversation-title">{conversation ? conversationTitle(conversation, viewer) : '…'}</h2>
        {conversation && (
          <span className="muted">{conversation.participants.map((p) => `@${p.username}`).join(' ')}</span>
        )}
      </header>
      <div
        className="messages"
        ref={listRef}
        data-testid="messages"
        onScroll={(e) => {
          const el = e.currentTarget;
          atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
        }}
      >
        {older.has && (
          <button type="button" className="link older" onClick={() => void loadOlder()}>
            Load older messages
          </button>
        )}
        {loaded && sorted.length === 0 && pending.length === 0 && <p className="muted pad">Say hello!</p>}
        {sorted.map((m) => (
          <MessageRow key={m.id} message={m} mine={m.sender.id === viewer.id} seenBy={seenBy.get(m.id)} />
        ))}
        {pending.map((p) => (
          <div key={p.clientMessageId} className="message mine pending" data-testid="pending-message">
            <div className="bubble">
              <div className="body">{p.body}</div>
              <div className="meta">
                {p.state === 'sending' ? (
                  'Sending…'
                ) : (
                  <>
                    <span className="error">Not sent.</span>{' '}
                    <button type="button" className="link" onClick={() => void send(p.body, p.clientMessageId)}>
                      Retry
                    </button>
                  </>
                )}
              </div>
            </div>
          </div>
        ))}
      </div>
      <div className="typing" data-testid="typing" aria-live="polite">
        {typingNames.length > 0 &&
          `${typingNames.join(', ')} ${typingNames.length === 1 ? 'is' : 'are'} typing…`}
      </div>
      <Composer onSend={(body) => void send(body, newClientMessageId())} onTyping={sendTyping} />
    </section>
  );
}

function MessageRow({ message: m, mine, seenBy }: { message: Message; mine: boolean; seenBy?: string[] }) {
  const client = useApolloClient();
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(m.body);
  const [error, setError] = useState('');

  async function save() {
    const body = draft.trim();
    if (!body || body === m.body) {
      setEditing(false);
      return;
    }
    try {
      await client.mutate({ mutation: EDIT_MESSAGE, variables: { id: m.id, body } });
      setEditing(false);
      setError('');
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  async function remove() {
    try {
      await client.mutate({ mutation: DELETE_MESSAGE, variables: { id: m.id } });
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  const deleted = Boolean(m.deletedAt);
  return (
    <div
      className={`message${mine ? ' mine' : ''}${deleted ? ' deleted' : ''}`}
      data-testid="message"
      data-message-id={m.id}
    >
      <div className="bubble">
        {!mine && <div className="sender">{m.sender.displayName}</div>}
        {editing ? (
          <div className="edit">
            <input
              aria-label="Edit message"
              data-testid="edit-input"
              value={draft}
              autoFocus
              onChange={(e) => setDraft(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === 'Enter') void save();
                if (e.key === 'Escape') setEditing(false);
              }}
            />
            <button type="button" onClick={() => void save()}>
              Save
            </button>
            <button type="button" className="link" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </div>
        ) : (
          <div className="body" data-testid="message-body">
            {deleted ? <em className="muted">This message was deleted.</em> : m.body}
          </div>
        )}
        <div className="meta">
          <time dateTime={m.createdAt}>{shortTime(m.createdAt)}</time>
          {m.editedAt && !deleted && <span data-testid="edited"> · edited</span>}
          {mine && !deleted && !editing && (
            <span className="actions">
              <button
                type="button"
                className="link"
                onClick={() => {
                  setDraft(m.body);
                  setEditing(true);
                }}
              >
                Edit
              </button>
              <button type="button" className="link" onClick={() => void remove()}>
                Delete
              </button>
            </span>
          )}
        </div>
        {error && <div className="error">{error}</div>}
      </div>
      {seenBy && (
        <div className="receipt" data-testid="read-receipt">
          Seen by {seenBy.join(', ')}
        </div>
      )}
    </div>
  );
}

function Composer({ onSend, onTyping }: { onSend: (body: string) => void; onTyping: (typing: boolean) => void }) {
  const [text, setText] = useState('');
  const lastTyping = useRef(0); // when setTyping(true) was last sent; 0: not typing

  const stopTyping = useCallback(() => {
    if (lastTyping.current) {
      lastTyping.current = 0;
      onTyping(false);
    }
  }, [onTyping]);
  // Leaving the conversation ends the typing state at once.
  const stopRef = useRef(stopTyping);
  stopRef.current = stopTyping;
  useEffect(() => () => stopRef.current(), []);

  function change(v: string) {
    setText(v);
    if (!v.trim()) {
      stopTyping();
    } else if (Date.now() - lastTyping.current > TYPING_REFRESH_MS) {
      lastTyping.current = Date.now();
      onTyping(true);
    }
  }

  function submit() {
    const body = text.trim();
    if (!body) return;
    onSend(body);
    setText('');
    stopTyping();
  }

  function keyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      submit();
    }
  }

  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      <textarea
        aria-label="Message"
        data-testid="composer"
        placeholder="Write a message…"
        rows={1}
        value={text}
        onChange={(e) => change(e.target.value)}
        onKeyDown={keyDown}
        onBlur={stopTyping}
      />
      <button type="submit" className="primary" disabled={!text.trim()}>
        Send
      </button>
    </form>
  );
}

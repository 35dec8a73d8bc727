import { useEffect, useState, type FormEvent } from 'react';
import { useApolloClient, useQuery } from '@apollo/client/react';

import { CONVERSATIONS, CREATE_CONVERSATION, USERS, type ConversationSummary, type UserRef } from './operations';
import { navigate } from './route';
import { errorMessage } from './session';
import { shortTime } from './time';

/** The conversation's title, or the names of the others in it. */
export function conversationTitle(c: ConversationSummary, viewer?: UserRef): string {
  if (c.title) return c.title;
  const others = c.participants.filter((p) => p.id !== viewer?.id);
  return (others.length ? others : c.participants).map((p) => p.displayName).join(', ');
}

function preview(c: ConversationSummary, viewer?: UserRef): string {
  const m = c.lastMessage;
  if (!m) return 'No messages yet';
  const who = m.sender.id === viewer?.id ? 'You' : m.sender.displayName;
  return `${who}: ${m.deletedAt ? 'message deleted' : m.body}`;
}

export function Sidebar({ viewer, openId }: { viewer?: UserRef; openId: string | null }) {
  const { data, loading, error } = useQuery(CONVERSATIONS);
  // The server orders by activity, but inbox events update conversations
  // in the cache without reordering the list: sort here as well.
  const conversations = [...(data?.conversations.edges ?? [])]
    .map((e) => e.node)
    .sort((a, b) => (a.updatedAt < b.updatedAt ? 1 : a.updatedAt > b.updatedAt ? -1 : 0));

  return (
    <aside className="sidebar">
      <NewConversation viewer={viewer} />
      {error && <p className="error">{errorMessage(error)}</p>}
      {loading && !data && <p className="muted pad">Loading…</p>}
      <ul className="conversations" aria-label="Conversations">
        {conversations.map((c) => (
          <li key={c.id}>
            <button
              type="button"
              className={`conversation-item${c.id === openId ? ' open' : ''}`}
              data-testid="conversation-item"
              data-conversation-id={c.id}
              onClick={() => navigate(c.id)}
            >
              <span className="row">
                <span className="title">{conversationTitle(c, viewer)}</span>
                <span className="time">{shortTime(c.lastMessage?.createdAt ?? c.updatedAt)}</span>
              </span>
              <span className="row">
                <span className="preview" data-testid="last-message">
                  {preview(c, viewer)}
                </span>
                {c.unreadCount > 0 && (
                  <span className="badge" data-testid="unread-count" aria-label={`${c.unreadCount} unread`}>
                    {c.unreadCount}
                  </span>
                )}
              </span>
            </button>
          </li>
        ))}
        {data && conversations.length === 0 && <li className="muted pad">No conversations yet.</li>}
      </ul>
    </aside>
  );
}

/** Finds users by name and starts a direct conversation (or opens the existing one). */
function NewConversation({ viewer }: { viewer?: UserRef }) {
  const client = useApolloClient();
  const [search, setSearch] = useState('');
  const [submitted, setSubmitted] = useState('');
  const [error, setError] = useState('');
  const users = useQuery(USERS, { variables: { search: submitted }, skip: !submitted, fetchPolicy: 'network-only' });

  useEffect(() => setError(''), [search]);

  function find(e: FormEvent) {
    e.preventDefault();
    setSubmitted(search.trim());
  }

  async function start(u: UserRef) {
    try {
      const res = await client.mutate({ mutation: CREATE_CONVERSATION, variables: { participantIds: [u.id] } });
      await client.refetchQueries({ include: [CONVERSATIONS] });
      setSearch('');
      setSubmitted('');
      if (res.data) navigate(res.data.createConversation.id);
    } catch (err) {
      setError(errorMessage(err));
    }
  }

  const found = (users.data?.users ?? []).filter((u) => u.id !== viewer?.id);
  return (
    <div className="new-conversation">
      <form onSubmit={find}>
        <input
          type="search"
          placeholder="Find people…"
          aria-label="Find people"
          value={search}
          onChange={(e) => setSearch(e.target.value)}
        />
        <button type="submit">Find</button>
      </form>
      {submitted && (
        <ul className="people" aria-label="People">
          {found.map((u) => (
            <li key={u.id}>
              <button type="button" className="person" onClick={() => void start(u)}>
                {u.displayName} <span className="muted">@{u.username}</span>
              </button>
            </li>
          ))}
          {users.data && found.length === 0 && <li className="muted pad">Nobody found.</li>}
        </ul>
      )}
      {error && <p className="error">{error}</p>}
    </div>
  );
}

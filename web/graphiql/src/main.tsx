import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
// Bundles Monaco's editor, JSON and GraphQL web workers with the page
// (served from /assets/, nothing is fetched from a CDN).
import 'graphiql/setup-workers/vite';
import 'graphiql/style.css';

import { createParleyFetcher } from './fetcher';

const TOKEN_STORAGE_KEY = 'parley.token';

const DEFAULT_QUERY = `# Welcome to the Parley GraphQL playground.
#
# 1. Run "Register" (or "Login") below: press
#    the play button and pick the operation.
# 2. Copy the token into the Headers editor
#    at the bottom:
#      {"Authorization": "Bearer <token>"}
#    (Opening /?token=<token>, or setting the
#    localStorage key "${TOKEN_STORAGE_KEY}", fills
#    it in for you.)
# 3. Put a conversation id (see "Conversations")
#    into "Watch" and run it. It subscribes over
#    a WebSocket at /graphql, sending the same
#    headers in connection_init; events stream
#    into the result pane until you press stop.
#
# Docs (book icon, top left) lists every
# operation.

mutation Register {
  register(username: "alice", password: "correct-horse-1") {
    token
    user {
      id
    }
  }
}

mutation Login {
  login(username: "alice", password: "correct-horse-1") {
    token
  }
}

query Conversations {
  conversations(first: 10) {
    edges {
      node {
        id
        title
        participants {
          username
        }
      }
    }
  }
}

subscription Watch {
  messageEvents(conversationId: "...") {
    type
    cursor
    message {
      body
      sender {
        username
      }
    }
  }
}
`;

/** The token from ?token=... or localStorage["parley.token"], if any. */
function initialToken(): string | null {
  const fromURL = new URLSearchParams(window.location.search).get('token');
  if (fromURL) return fromURL.trim();
  try {
    return window.localStorage.getItem(TOKEN_STORAGE_KEY)?.trim() || null;
  } catch {
    return null; // storage disabled
  }
}

function defaultHeaders(): string | undefined {
  const token = initialToken();
  if (!token) return undefined;
  const value = /^bearer\s/i.test(token) ? token : `Bearer ${token}`;
  return JSON.stringify({ Authorization: value }, null, 2);
}

const initialHeaders = defaultHeaders();
// GraphiQL may introspect before the Headers editor is ready; the fetcher then
// falls back to the prefilled headers so a server that requires auth for
// introspection still gets the token.
const fetcher = createParleyFetcher({ introspectionHeaders: initialHeaders });
window.addEventListener('pagehide', () => fetcher.dispose());

createRoot(document.getElementById('graphiql')!).render(
  <StrictMode>
    <GraphiQL
      fetcher={fetcher}
      defaultQuery={DEFAULT_QUERY}
      defaultHeaders={initialHeaders}
      defaultEditorToolsVisibility="headers"
    />
  </StrictMode>,
);

// A signed-in session: one Apollo Client whose queries and mutations go over
// HTTP POST /graphql and whose subscriptions share one graphql-ws
// (graphql-transport-ws) WebSocket at /graphql, both carrying the token.
//
// graphql-ws reconnects by itself and then re-sends every active
// subscription with its original variables. That is not enough for a chat:
// messageEvents started without `after` would continue live and silently
// skip what happened while the socket was down. So the session tells its
// listeners when a connection is a retry (onReconnect), and the conversation
// view restarts messageEvents with `after` set to the last cursor it saw
// (the server replays the gap from the database), while the conversation
// list is refetched.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { OperationTypeNode } from 'graphql';
import { createClient, type Client } from 'graphql-ws';

import type { Message } from './operations';

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting' | 'offline';

/** A tiny observable value for useSyncExternalStore. */
export class Store<T> {
  private listeners = new Set<() => void>();
  constructor(private value: T) {}
  get = (): T => this.value;
  set(v: T): void {
    if (Object.is(v, this.value)) return;
    this.value = v;
    for (const l of this.listeners) l();
  }
  subscribe = (l: () => void): (() => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };
}

/** A set of callbacks, each called with every emitted value. */
export class Emitter<T> {
  private listeners = new Set<(v: T) => void>();
  on(l: (v: T) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  emit(v: T): void {
    for (const l of [...this.listeners]) l(v);
  }
}

// graphql-transport-ws close codes for a refused token (API.md: 4403).
const AUTH_CLOSE_CODES = new Set([4401, 4403]);
// How long a ping we sent may wait for its pong before the socket counts as
// dead: a dropped network often closes nothing, so without this the page
// would wait for TCP to give up.
const PONG_TIMEOUT_MS = 5_000;
const KEEPALIVE_MS = 10_000;

function closeCode(e: unknown): number | undefined {
  if (e && typeof e === 'object' && 'code' in e && typeof (e as { code: unknown }).code === 'number') {
    return (e as { code: number }).code;
  }
  return undefined;
}

/**
 * Waits before the next connection attempt: exponential backoff capped at a
 * few seconds, cut short as soon as the browser says it is back online.
 */
function retryWait(retries: number): Promise<void> {
  const delay = Math.min(4_000, 250 * 2 ** retries) + Math.random() * 250;
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      window.removeEventListener('online', done);
      resolve();
    };
    const timer = setTimeout(done, delay);
    window.addEventListener('online', done);
  });
}

export interface Session {
  readonly token: string;
  readonly apollo: ApolloClient;
  readonly ws: Client;
  readonly connection: Store<ConnectionState>;
  /** Fires after the WebSocket came back following a drop. */
  readonly reconnected: Emitter<void>;
  /** Messages the inbox subscription delivered, for the open conversation. */
  readonly inboxMessages: Emitter<{ conversationId: string; message: Message; created: boolean }>;
  /** Fires when the server refused the token (the user must sign in again). */
  readonly authLost: Emitter<void>;
  dispose(): void;
}

export function createSession(token: string): Session {
  const connection = new Store<ConnectionState>('connecting');
  const reconnected = new Emitter<void>();
  const authLost = new Emitter<void>();
  const inboxMessages = new Emitter<{ conversationId: string; message: Message; created: boolean }>();

  const wsURL = new URL('/graphql', window.location.href);
  wsURL.protocol = wsURL.protocol === 'https:' ? 'wss:' : 'ws:';

  let pongTimer: ReturnType<typeof setTimeout> | undefined;
  const ws: Client = createClient({
    url: wsURL.href,
    connectionParams: { Authorization: `Bearer ${token}` },
    // The inbox subscription is open for the whole session anyway.
    lazy: false,
    keepAlive: KEEPALIVE_MS,
    retryAttempts: Infinity,
    retryWait,
    shouldRetry: (e) => !AUTH_CLOSE_CODES.has(closeCode(e) ?? 0),
    on: {
      connecting: (isRetry) => connection.set(isRetry ? 'reconnecting' : 'connecting'),
      connected: (_socket, _payload, wasRetry) => {
        connection.set('connected');
        if (wasRetry) reconnected.emit();
      },
      closed: (e) => {
        clearTimeout(pongTimer);
        if (AUTH_CLOSE_CODES.has(closeCode(e) ?? 0)) {
          authLost.emit();
          return;
        }
        connection.set(navigator.onLine ? 'reconnecting' : 'offline');
      },
      ping: (received) => {
        if (!received) pongTimer = setTimeout(() => ws.terminate(), PONG_TIMEOUT_MS);
      },
      pong: (received) => {
        if (received) clearTimeout(pongTimer);
      },
    },
  });

  // When the browser loses the network, the socket is as good as gone: drop
  // it now, so that the retry loop (which waits for 'online') starts at once
  // instead of after a ping timeout.
  const onOffline = () => {
    connection.set('offline');
    ws.terminate();
  };
  window.addEventListener('offline', onOffline);

  const http = new HttpLink({
    uri: '/graphql',
    headers: { Authorization: `Bearer ${token}` },
  });
  const link = ApolloLink.split(
    (op) => op.operationType === OperationTypeNode.SUBSCRIPTION,
    new GraphQLWsLink(ws),
    http,
  );
  const apollo = new ApolloClient({
    link,
    cache: new InMemoryCache({
      typePolicies: {
        Conversation: {
          fields: {
            // Plain lists: the newest response replaces the old one.
            participants: { merge: false },
            readReceipts: { merge: false },
          },
        },
      },
    }),
  });

  return {
    token,
    apollo,
    ws,
    connection,
    reconnected,
    inboxMessages,
    authLost,
    dispose() {
      window.removeEventListener('offline', onOffline);
      clearTimeout(pongTimer);
      apollo.stop();
      void ws.dispose();
    },
  };
}

/** A client-chosen idempotency key for sendMessage. */
export function newClientMessageId(): string {
  // crypto.randomUUID needs a secure context; getRandomValues does not.
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** The GraphQL error code of an Apollo error, if any. */
export function errorCode(err: unknown): string | undefined {
  const errors = (err as { errors?: { extensions?: { code?: unknown } }[] } | undefined)?.errors;
  const code = errors?.[0]?.extensions?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A short, human message for an error from Apollo. */
export function errorMessage(err: unknown): string {
  if (!err) return '';
  const errors = (err as { errors?: { message?: string }[] }).errors;
  if (errors?.length && errors[0].message) return errors[0].message;
  if (err instanceof Error) return err.message;
  return String(err);
}

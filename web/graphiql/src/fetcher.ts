// A GraphiQL fetcher for the Parley server.
//
// Queries and mutations are POSTed to the same-origin /graphql endpoint with
// the headers typed into GraphiQL's Headers editor (e.g.
// {"Authorization": "Bearer <token>"}).
//
// Subscriptions go over a WebSocket at ws(s)://<host>/graphql using the
// graphql-transport-ws protocol (graphql-ws client). The server authenticates
// a socket from the connection_init payload, so the client is created with
// the editor's headers as its connectionParams. One client is kept per set of
// headers: when the headers change, the old client is disposed and a new one
// (with the new token) is created on the next subscription.
import { getOperationAST, parse, type DocumentNode } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import type {
  Fetcher,
  FetcherOpts,
  FetcherParams,
  FetcherReturnType,
  Observable,
} from '@graphiql/toolkit';

type HeaderMap = Record<string, unknown>;
type Result = { data?: unknown; errors?: ReadonlyArray<unknown>; extensions?: unknown };

/** The HTTP and WebSocket URLs of the GraphQL endpoint of the page's origin. */
export function endpointURLs(loc: Location = window.location): { http: string; ws: string } {
  const http = new URL('/graphql', loc.href);
  http.search = '';
  http.hash = '';
  const ws = new URL(http.href);
  ws.protocol = http.protocol === 'https:' ? 'wss:' : 'ws:';
  return { http: http.href, ws: ws.href };
}

function normalizeHeaders(headers: unknown): HeaderMap {
  if (headers && typeof headers === 'object' && !Array.isArray(headers)) {
    return headers as HeaderMap;
  }
  return {};
}

/** A result GraphiQL shows as-is in the result pane (no stack traces). */
function errorResult(message: string): Result {
  return { errors: [{ message }] };
}

// graphql-transport-ws close codes for a refused connection_init payload.
const AUTH_CLOSE_CODES = new Set([4401, 4403]);

function isCloseEvent(err: unknown): err is CloseEvent {
  return typeof CloseEvent !== 'undefined' && err instanceof CloseEvent;
}

function describeWsError(err: unknown): string {
  if (isCloseEvent(err)) {
    const reason = err.reason ? `: ${err.reason}` : '';
    const hint =
      AUTH_CLOSE_CODES.has(err.code)
        ? ' (check the Authorization header in the Headers editor)'
        : err.code === 1006
          ? ' (connection failed; is the server running and the token valid?)'
          : '';
    return `WebSocket closed with code ${err.code}${reason}${hint}`;
  }
  if (err instanceof Error) return err.message;
  if (typeof Event !== 'undefined' && err instanceof Event) {
    return `WebSocket error (${err.type})`;
  }
  return String(err);
}

function isSubscription(params: FetcherParams, opts?: FetcherOpts): boolean {
  let doc: DocumentNode | undefined = opts?.documentAST;
  if (!doc) {
    try {
      doc = parse(params.query);
    } catch {
      return false; // let the server report the syntax error
    }
  }
  const op = getOperationAST(doc, params.operationName ?? undefined);
  return op?.operation === 'subscription';
}

export interface ParleyFetcher extends Fetcher {
  /** Closes the current WebSocket client, if any. */
  dispose(): void;
}

export interface ParleyFetcherOptions {
  /** Endpoint URLs; default: same-origin /graphql (see endpointURLs). */
  urls?: { http: string; ws: string };
  /**
   * Headers (a JSON object, as typed in the editor) for an introspection
   * request that comes without any: GraphiQL may fetch the schema before its
   * Headers editor has been created.
   */
  introspectionHeaders?: string;
}

export function createParleyFetcher(options: ParleyFetcherOptions = {}): ParleyFetcher {
  const urls = options.urls ?? endpointURLs();
  let fallback: HeaderMap = {};
  try {
    fallback = normalizeHeaders(JSON.parse(options.introspectionHeaders || '{}'));
  } catch {
    // ignore: not JSON
  }

  let wsKey: string | undefined;
  let wsClient: Client | undefined;

  function wsClientFor(headers: HeaderMap): Client {
    const key = JSON.stringify(headers);
    if (wsClient && wsKey === key) return wsClient;
    void wsClient?.dispose(); // headers (e.g. the token) changed
    wsKey = key;
    wsClient = createClient({
      url: urls.ws,
      connectionParams: headers,
      lazy: true,
      retryAttempts: 2,
      // A rejected token will not get better by retrying: report it at once.
      shouldRetry: (err) => !(isCloseEvent(err) && AUTH_CLOSE_CODES.has(err.code)),
    });
    return wsClient;
  }

  async function httpFetch(params: FetcherParams, headers: HeaderMap): Promise<Result> {
    const h: Record<string, string> = {
      'content-type': 'application/json',
      accept: 'application/graphql-response+json, application/json;q=0.9',
    };
    for (const [k, v] of Object.entries(headers)) {
      if (v !== undefined && v !== null) h[k] = String(v);
    }
    let res: Response;
    try {
      res = await fetch(urls.http, {
        method: 'POST',
        headers: h,
        credentials: 'same-origin',
        body: JSON.stringify({
          query: params.query,
          operationName: params.operationName ?? undefined,
          variables: params.variables ?? undefined,
        }),
      });
    } catch (err) {
      return errorResult(`Network error: ${err instanceof Error ? err.message : String(err)}`);
    }
    const text = await res.text();
    try {
      return JSON.parse(text) as Result;
    } catch {
      const body = text.trim().slice(0, 500);
      return errorResult(`HTTP ${res.status} ${res.statusText}${body ? `: ${body}` : ''}`);
    }
  }

  function subscribe(params: FetcherParams, headers: HeaderMap): Observable<Result> {
    const client = wsClientFor(headers);
    const observable = {
      subscribe(
        nextOrObserver?:
          | ((value: Result) => void)
          | { next?: (v: Result) => void; error?: (e: unknown) => void; complete?: () => void },
        error?: ((e: unknown) => void) | null,
        complete?: () => void,
      ) {
        const observer =
          typeof nextOrObserver === 'function'
            ? { next: nextOrObserver, error: error ?? undefined, complete }
            : (nextOrObserver ?? {});
        const unsubscribe = client.subscribe(
          {
            query: params.query,
            operationName: params.operationName ?? undefined,
            variables: params.variables ?? undefined,
          },
          {
            next: (value) => observer.next?.(value as Result),
            // Show transport failures as a GraphQL error result rather than a
            // stack trace, then end the operation.
            error: (err) => {
              observer.next?.(
                Array.isArray(err) ? { errors: err } : errorResult(describeWsError(err)),
              );
              observer.complete?.();
            },
            complete: () => observer.complete?.(),
          },
        );
        return { unsubscribe };
      },
    };
    return observable as Observable<Result>;
  }

  const fetcher = ((params: FetcherParams, opts?: FetcherOpts): FetcherReturnType => {
    let headers = normalizeHeaders(opts?.headers);
    if (opts?.headers === undefined && params.operationName === 'IntrospectionQuery') {
      headers = fallback;
    }
    if (isSubscription(params, opts)) {
      return subscribe(params, headers) as FetcherReturnType;
    }
    return httpFetch(params, headers) as FetcherReturnType;
  }) as ParleyFetcher;

  fetcher.dispose = () => {
    void wsClient?.dispose();
    wsClient = undefined;
    wsKey = undefined;
  };
  return fetcher;
}

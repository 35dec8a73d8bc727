// Client-side routes under /app/: "/app/" (the conversation list) and
// "/app/c/<conversation id>". The server answers every /app/* path that is
// not a build file with index.html, so a reload or a shared link works.
import { useEffect, useState } from 'react';

const BASE = import.meta.env.BASE_URL; // "/app/"

function conversationFromPath(): string | null {
  const rest = window.location.pathname.startsWith(BASE) ? window.location.pathname.slice(BASE.length) : '';
  const m = /^c\/([^/]+)$/.exec(rest);
  return m ? decodeURIComponent(m[1]) : null;
}

export function navigate(conversationId: string | null): void {
  const url = conversationId ? `${BASE}c/${encodeURIComponent(conversationId)}` : BASE;
  if (url !== window.location.pathname) {
    window.history.pushState(null, '', url);
    window.dispatchEvent(new PopStateEvent('popstate'));
  }
}

export function useConversationRoute(): string | null {
  const [id, setId] = useState(conversationFromPath);
  useEffect(() => {
    const onPop = () => setId(conversationFromPath());
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);
  return id;
}

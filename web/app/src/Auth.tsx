import { useState, type FormEvent } from 'react';
import { ApolloClient, HttpLink, InMemoryCache } from '@apollo/client';

import { LOGIN, REGISTER } from './operations';
import { errorMessage } from './session';

/** Sign-in and sign-up form; register and login need no token. */
export function Auth({ onSignedIn }: { onSignedIn: (token: string) => void }) {
  const [client] = useState(
    () => new ApolloClient({ link: new HttpLink({ uri: '/graphql' }), cache: new InMemoryCache() }),
  );
  const [mode, setMode] = useState<'login' | 'register'>('login');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      let token: string | undefined;
      if (mode === 'register') {
        const res = await client.mutate({
          mutation: REGISTER,
          variables: { username, password, displayName: displayName.trim() || null },
        });
        token = res.data?.register.token;
      } else {
        const res = await client.mutate({ mutation: LOGIN, variables: { username, password } });
        token = res.data?.login.token;
      }
      if (token) onSignedIn(token);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="auth">
      <form className="card" onSubmit={submit} aria-label={mode === 'login' ? 'Sign in' : 'Create account'}>
        <h1>Parley</h1>
        <div className="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={mode === 'login'} onClick={() => setMode('login')}>
            Sign in
          </button>
          <button type="button" role="tab" aria-selected={mode === 'register'} onClick={() => setMode('register')}>
            Create account
          </button>
        </div>
        <label>
          Username
          <input
            name="username"
            autoComplete="username"
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            required
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={mode === 'login' ? 'current-password' : 'new-password'}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        {mode === 'register' && (
          <label>
            Display name <span className="muted">(optional)</span>
            <input name="displayName" value={displayName} onChange={(e) => setDisplayName(e.target.value)} />
          </label>
        )}
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {mode === 'login' ? 'Sign in' : 'Create account'}
        </button>
      </form>
    </div>
  );
}

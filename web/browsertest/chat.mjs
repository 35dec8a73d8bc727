// Two users chat through the web chat at /app, each in a browser context of
// its own (separate storage, separate WebSockets):
//   - alice creates an account in the UI, bob (registered by the Go test)
//     signs in; alice finds bob and starts a conversation;
//   - bob's list shows the unread count and last message; opening the
//     conversation marks it read, and alice sees bob's read receipt;
//   - a message sent by alice appears on bob's screen within a second;
//   - bob's typing shows on alice's screen;
//   - an edit and a delete by alice show on bob's screen;
//   - bob's network drops while alice sends three messages; when it comes
//     back bob's page resubscribes with `after` and shows all three.
import { check, env, run } from './lib.mjs';

const base = env('PARLEY_URL');
const bob = { username: env('PARLEY_BOB_USERNAME'), password: env('PARLEY_BOB_PASSWORD') };
const alice = { username: `alice_${Date.now() % 1e8}`, password: 'alice-password-1', displayName: 'Alice Liddell' };
const T = 10_000; // generous upper bound for anything asynchronous

/** Waits until a message with exactly this body is shown. */
function message(page, body) {
  return page.getByTestId('message-body').filter({ hasText: new RegExp(`^${body}$`) });
}

async function send(page, body) {
  const composer = page.getByTestId('composer');
  await composer.fill(body);
  await composer.press('Enter');
}

await run('chat', async (browser, track) => {
  const a = track('alice', await (await browser.newContext()).newPage());
  const bobContext = await browser.newContext();
  const b = track('bob', await bobContext.newPage());

  // Bob's page records what its WebSocket sends, to show the resume below
  // really carries `after`.
  const bobFrames = [];
  b.on('websocket', (ws) => ws.on('framesent', (f) => bobFrames.push(String(f.payload))));

  // Sign up (alice) and sign in (bob).
  await a.goto(`${base}/app/`);
  await a.getByRole('tab', { name: 'Create account' }).click();
  await a.getByLabel('Username').fill(alice.username);
  await a.getByLabel('Password').fill(alice.password);
  await a.getByLabel('Display name').fill(alice.displayName);
  await a.getByRole('button', { name: 'Create account', exact: true }).last().click();
  await a.getByTestId('whoami').filter({ hasText: alice.displayName }).waitFor({ timeout: T });

  await b.goto(`${base}/app/`);
  await b.getByLabel('Username').fill(bob.username);
  await b.getByLabel('Password').fill(bob.password);
  await b.locator('form').getByRole('button', { name: 'Sign in' }).last().click();
  await b.getByTestId('whoami').filter({ hasText: bob.username }).waitFor({ timeout: T });
  for (const p of [a, b]) await p.locator('[data-testid="connection"][data-state="connected"]').waitFor({ timeout: T });

  // Alice starts a direct conversation with bob.
  await a.getByLabel('Find people').fill(bob.username);
  await a.getByRole('button', { name: 'Find' }).click();
  await a.getByRole('button', { name: new RegExp(`@${bob.username}`) }).click();
  await a.waitForURL(/\/app\/c\/[^/]+$/, { timeout: T });
  const conversationId = decodeURIComponent(new URL(a.url()).pathname.split('/').pop());
  await a.getByTestId('conversation-title').filter({ hasText: bob.username }).waitFor({ timeout: T });

  // The conversation shows up in bob's list (inbox CONVERSATION_CREATED).
  const bobItem = b.locator(`[data-testid="conversation-item"][data-conversation-id="${conversationId}"]`);
  await bobItem.waitFor({ timeout: T });

  // A first message: unread count and last message in bob's list.
  await send(a, 'Hi Bob!');
  await message(a, 'Hi Bob!').waitFor({ timeout: T });
  await bobItem.getByTestId('unread-count').filter({ hasText: /^1$/ }).waitFor({ timeout: T });
  await bobItem.getByTestId('last-message').filter({ hasText: 'Alice Liddell: Hi Bob!' }).waitFor({ timeout: T });

  // Bob opens it: it is marked read, alice sees the receipt.
  await bobItem.click();
  await message(b, 'Hi Bob!').waitFor({ timeout: T });
  await bobItem.getByTestId('unread-count').waitFor({ state: 'detached', timeout: T });
  await a.getByTestId('read-receipt').filter({ hasText: `Seen by ${bob.username}` }).waitFor({ timeout: T });

  // Live delivery: within a second, measured from alice pressing Enter.
  {
    const body = `fast ${Date.now()}`;
    const composer = a.getByTestId('composer');
    await composer.fill(body);
    const t0 = Date.now();
    await composer.press('Enter');
    await message(b, body).waitFor({ timeout: T });
    const ms = Date.now() - t0;
    console.log(`message from alice shown to bob after ${ms} ms`);
    check(ms < 1000, `message took ${ms} ms to appear on bob's screen, want < 1000`);
  }

  // Typing: bob types, alice sees it; sending ends it.
  await b.getByTestId('composer').pressSequentially('I am typ', { delay: 20 });
  await a.getByTestId('typing').filter({ hasText: `${bob.username} is typing` }).waitFor({ timeout: T });
  await b.getByTestId('composer').press('Enter');
  await message(a, 'I am typ').waitFor({ timeout: T });
  await a.getByTestId('typing').filter({ hasText: 'typing' }).waitFor({ state: 'detached', timeout: T });
  // Typing again right after sending shows again: the "stopped" of the send
  // must not overtake the new "typing", nor alice's read receipt (which
  // names bob's message) count as a new message that ends it.
  await b.getByTestId('composer').pressSequentially('and more', { delay: 20 });
  await a.getByTestId('typing').filter({ hasText: `${bob.username} is typing` }).waitFor({ timeout: T });
  await b.getByTestId('composer').fill('');
  await a.getByTestId('typing').filter({ hasText: 'typing' }).waitFor({ state: 'detached', timeout: T });

  // Edit and delete.
  const hi = a.getByTestId('message').filter({ has: message(a, 'Hi Bob!') });
  await hi.hover();
  await hi.getByRole('button', { name: 'Edit' }).click();
  await a.getByTestId('edit-input').fill('Hi Bob, edited');
  await a.getByTestId('edit-input').press('Enter');
  const edited = b.getByTestId('message').filter({ has: message(b, 'Hi Bob, edited') });
  await edited.getByTestId('edited').waitFor({ timeout: T });
  const editedOnA = a.getByTestId('message').filter({ has: message(a, 'Hi Bob, edited') });
  await editedOnA.hover();
  await editedOnA.getByRole('button', { name: 'Delete' }).click();
  await b.getByText('This message was deleted.').waitFor({ timeout: T });
  check((await message(b, 'Hi Bob, edited').count()) === 0, 'the deleted message still shows its text on bob\'s screen');

  // The network drops on bob's side. Alice goes on talking.
  const framesBefore = bobFrames.length;
  await bobContext.setOffline(true);
  await b.locator('[data-testid="connection"]:not([data-state="connected"])').waitFor({ timeout: T });
  const missed = ['missed one', 'missed two', 'missed three'];
  for (const body of missed) {
    await send(a, body);
    await message(a, body).waitFor({ timeout: T });
  }
  check((await message(b, missed[0]).count()) === 0, 'bob received a message while offline');

  // It comes back: the page reconnects, resumes after its last cursor, and
  // shows every message it missed, in order.
  await bobContext.setOffline(false);
  await b.locator('[data-testid="connection"][data-state="connected"]').waitFor({ timeout: T });
  for (const body of missed) await message(b, body).waitFor({ timeout: T });
  const bodies = await b.getByTestId('message-body').allTextContents();
  const at = missed.map((m) => bodies.indexOf(m));
  check(at[0] < at[1] && at[1] < at[2], `missed messages out of order: ${JSON.stringify(bodies)}`);
  const resumed = bobFrames
    .slice(framesBefore)
    .map((f) => {
      try {
        return JSON.parse(f);
      } catch {
        return null;
      }
    })
    .filter((m) => m?.type === 'subscribe' && /messageEvents/.test(m.payload?.query ?? ''));
  check(
    resumed.some((m) => typeof m.payload.variables?.after === 'string' && m.payload.variables.after.length > 0),
    `after reconnecting, bob did not resubscribe to messageEvents with after: ${JSON.stringify(resumed)}`,
  );

  // And the chat still works both ways.
  await send(b, 'back online');
  await message(a, 'back online').waitFor({ timeout: T });
});

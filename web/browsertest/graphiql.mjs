// GraphiQL at / runs a subscription and receives an event: the page is
// opened as /?token=<bob's token> (which fills in the Authorization
// header), a messageEvents subscription is typed into the editor and run,
// and messages sent by alice through the HTTP API show up in the result
// pane, delivered over the page's graphql-transport-ws WebSocket.
import { check, env, run } from './lib.mjs';

const base = env('PARLEY_URL');
const token = env('PARLEY_TOKEN');
const senderToken = env('PARLEY_SENDER_TOKEN');
const conversationId = env('PARLEY_CONVERSATION');
const T = 15_000;

async function sendAsAlice(body) {
  const res = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${senderToken}` },
    body: JSON.stringify({
      query: 'mutation($in: SendMessageInput!) { sendMessage(input: $in) { id } }',
      variables: { in: { conversationId, body } },
    }),
  });
  const json = await res.json();
  check(res.ok && !json.errors, `sendMessage: ${res.status} ${JSON.stringify(json)}`);
}

await run('graphiql', async (browser, track) => {
  const page = track('graphiql', await (await browser.newContext()).newPage());
  // Resolves with the first subscribe message the page sends on a WebSocket.
  let subscribed;
  const subscribeSent = new Promise((resolve) => (subscribed = resolve));
  page.on('websocket', (ws) =>
    ws.on('framesent', (f) => {
      const text = String(f.payload);
      if (text.includes('"subscribe"')) subscribed(text);
    }),
  );

  const opened = Date.now();
  await page.goto(`${base}/?token=${encodeURIComponent(token)}`);
  // The query editor is Monaco; insertText types the whole document at once
  // (no auto-closed brackets to fight with).
  const editor = page.locator('.graphiql-query-editor .monaco-editor').first();
  await editor.waitFor({ timeout: T });
  await editor.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(
    `subscription Watch { messageEvents(conversationId: "${conversationId}") { type cursor message { body } } }`,
  );
  // The tab takes the operation's name once GraphiQL has parsed the new
  // document: only then does "execute" run it rather than the old one.
  await page.locator('.graphiql-tab', { hasText: 'Watch' }).first().waitFor({ timeout: T });
  await page.getByRole('button', { name: /Execute query/ }).first().click();

  // Wait until the subscription went out on the WebSocket, then send until
  // an event arrives: the server registers a subscription asynchronously,
  // and a message sent before that would (rightly) not be delivered.
  const frame = await Promise.race([
    subscribeSent,
    new Promise((_, reject) => setTimeout(() => reject(new Error('GraphiQL sent no subscribe message')), T)),
  ]);
  const subscribedAt = Date.now();
  check(frame.includes('messageEvents'), `GraphiQL subscribed to something else: ${frame}`);
  const deadline = Date.now() + T;

  const response = page.locator('.graphiql-response');
  for (let i = 1; ; i++) {
    const body = `event for graphiql ${i}`;
    await sendAsAlice(body);
    try {
      await response.getByText(body).first().waitFor({ timeout: 1000 });
      console.log(`GraphiQL showed the event of message ${i} (subscribed ${subscribedAt - opened} ms after opening the page)`);
      break;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`no event reached GraphiQL's result pane: ${err.message}`);
    }
  }
  await response.getByText('"CREATED"').first().waitFor({ timeout: T });
});

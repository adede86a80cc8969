// The website on a server with auth on (TURBOCHAT_AUTH_SECRET set): the page
// asks for a sign-in token instead of a name, refuses a malformed or foreign
// token, then chats as the token's user, loads history over REST with the
// token, is kept out of rooms the token does not allow (its messages fail),
// remembers the token across a reload, and on "Forget token" keeps nothing
// of the person on the device.
// Tokens come from `turbochat token`, as an operator would make them.
// Selectors: see helpers.mjs; also [data-testid=token-input],
// [data-testid=name-dialog][data-mode], [data-testid=name-error],
// [data-testid=sign-out], [data-testid=change-name], [data-testid=me-name],
// [data-testid=member][data-user], [data-testid=banner].
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { after, before, test } from 'node:test';
import { binaryPath, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, assertClean, launchBrowser, openPage, rest, screenshot, send, waitForTexts, waitJoined,
    waitOnline } from './helpers.mjs';

const SECRET = 'browser-test-secret-0123456789abcdef';

let server;
let browser;

before(async () => {
    server = await startServer({ env: { TURBOCHAT_AUTH_SECRET: SECRET }, args: SERVER_ARGS });
    browser = await launchBrowser();
});

after(async () => {
    await browser?.close();
    await stopAll();
});

function mintToken(user, rooms, secret = SECRET) {
    const run = spawnSync(binaryPath(), ['token', '--user', user, '--rooms', rooms], {
        cwd: os.tmpdir(),
        env: { PATH: process.env.PATH, TURBOCHAT_AUTH_SECRET: secret },
        encoding: 'utf8',
    });
    assert.equal(run.status, 0, `turbochat token failed: ${run.stderr}`);
    return run.stdout.trim();
}

async function postAs(token, room, text) {
    const res = await rest(server, 'POST', `/api/rooms/${room}/messages`, { text }, { Authorization: `Bearer ${token}` });
    assert.equal(res.status, 201, `POST as token: ${res.status} ${res.text}`);
}

async function signIn(page, token) {
    await page.locator('[data-testid=name-dialog][data-mode=token]').waitFor();
    await page.locator('[data-testid=token-input]').fill(token);
    await page.locator('[data-testid=token-input]').press('Enter');
}

test('a server with auth on: sign in with a token, chat, stay signed in, sign out', { timeout: 120000 },
    async () => {
        const room = 'general';
        const aliceToken = mintToken('alice', 'general,team');
        const bobToken = mintToken('bob', 'general');
        await postAs(bobToken, room, 'posted over REST before alice came');

        // first visit: the page asks for a token, not a name
        const alice = await openPage(browser, server, { room });
        const { page } = alice;
        await page.locator('[data-testid=name-dialog][data-mode=token]').waitFor();
        assert.equal(await page.locator('[data-testid=name-input]').isVisible(), false, 'no name field');
        await screenshot(page, 'auth-sign-in');

        await signIn(page, 'not a token');
        await page.locator('[data-testid=name-error]', { hasText: 'not a sign-in token' }).waitFor();
        await signIn(page, mintToken('mallory', 'general', 'some-other-secret-0123456789abcdef'));
        await page.locator('[data-testid=name-error]', { hasText: 'This token was refused' }).waitFor();

        // a good token: the server names the person and REST answers with the token
        await signIn(page, aliceToken);
        await waitOnline(page);
        await waitJoined(page, room);
        await page.locator('[data-testid=me-name]', { hasText: 'alice' }).waitFor();
        await waitForTexts(page, ['posted over REST before alice came']);

        const bob = await openPage(browser, server, { room });
        await signIn(bob.page, bobToken);
        await waitOnline(bob.page);
        await page.locator('[data-testid=member][data-user=bob]').waitFor();
        await send(page, 'hello bob, signed in');
        await waitForTexts(bob.page, ['hello bob, signed in']);
        await send(bob.page, 'hi alice');
        await waitForTexts(page, ['hi alice']);
        await screenshot(page, 'auth-chatting');

        // a room the token does not allow
        await page.evaluate(() => {
            location.hash = 'secret';
        });
        await page.locator('[data-testid=banner]', { hasText: 'Cannot join #secret' }).waitFor();
        await page.locator('[data-testid=history-note]', { hasText: 'You are not in #secret' }).waitFor();
        await send(page, 'into the secret room');
        await page.locator('[data-testid=message][data-state=failed]', { hasText: 'into the secret room' }).waitFor();

        // the token is remembered on this device
        await page.evaluate(() => {
            location.hash = 'general';
        });
        await page.reload();
        await waitOnline(page);
        await waitJoined(page, room);
        await waitForTexts(page, ['hello bob, signed in', 'hi alice']);
        assert.equal(await page.locator('[data-testid=name-dialog]').isVisible(), false, 'no dialog after reload');

        // forgetting the token signs out and leaves nothing of alice on the
        // device (her failed message, rooms, name): the page asks for a token
        await page.locator('[data-testid=change-name]').click();
        await page.locator('[data-testid=sign-out]').click();
        await page.locator('[data-testid=name-dialog][data-mode=token][open]').waitFor();
        assert.equal(await page.locator('[data-testid=me-name]').textContent(), 'Sign in');
        const kept = await page.evaluate(() => ({
            token: localStorage.getItem('turbochat.token'),
            name: localStorage.getItem('turbochat.name'),
            outbox: JSON.parse(localStorage.getItem('turbochat.outbox') || '[]'),
            rooms: JSON.parse(localStorage.getItem('turbochat.rooms') || '[]'),
        }));
        assert.deepEqual(kept, { token: null, name: null, outbox: [], rooms: ['general'] }, 'only the room in the address');

        assertClean(assert, alice.problems, 'alice');
        assertClean(assert, bob.problems, 'bob');
        await alice.context.close();
        await bob.context.close();
    });

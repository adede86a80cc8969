// Retention: a room whose oldest messages expired says so at the top of its
// history ("History before this was removed after N days") instead of "This
// is the beginning".
// Selectors: see helpers.mjs; also [data-testid=history-note].
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { waitFor } from '../lib/valkey.mjs';
import { SERVER_ARGS, TIMEOUT, assertClean, launchBrowser, openChat, postMessage, rest, screenshot } from './helpers.mjs';

const ROOM = 'expiring';
const DAYS = '0.00005'; // 4.32 s

let server;
let browser;

before(async () => {
    server = await startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_RETENTION_DAYS: DAYS }, args: SERVER_ARGS });
    browser = await launchBrowser();
});

after(async () => {
    await browser?.close();
    await stopAll();
});

async function begins(room) {
    return (await rest(server, 'GET', `/api/rooms/${room}/messages`)).body.begins;
}

test('the top of an expired history says it was removed, and after how long', { timeout: 120000 }, async () => {
    for (let i = 1; i <= 3; i++) await postMessage(server, ROOM, 'erin', `old ${i}`);
    await waitFor(async () => (await begins(ROOM)) > 3, { timeoutMs: 60000, intervalMs: 250, what: 'the old messages expired' });
    const { page, problems } = await openChat(browser, server, { name: 'gina', room: ROOM });
    const note = page.locator('[data-testid=history-note]');
    await note.filter({ hasText: 'History before this was removed' }).waitFor({ timeout: TIMEOUT });
    assert.equal(await note.textContent(), `History before this was removed after ${DAYS} days.`);
    await screenshot(page, 'retention-top');
    assertClean(assert, problems, 'expired room');
    await page.close();
});

// Reconnecting: the server is restarted (SIGTERM, then started again on the
// same port and database) while others keep sending; the page reconnects by
// itself, re-joins with `since` and shows every missed message exactly once.
// A message typed while the server is down is kept, shown as waiting, and
// delivered exactly once after the reconnect. A gap longer than the server
// replays (joined.recovered false) makes the page reload the history over REST.
// Selectors: see helpers.mjs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, assertClean, count, history, launchBrowser, openChat, postMessage, recordFrames, screenshot, send,
    storedTexts, waitForTexts, waitOffline, waitOnline } from './helpers.mjs';

let server;
let browser;

before(async () => {
    server = await startServer({ env: RELAXED_RATE_ENV, args: SERVER_ARGS });
    browser = await launchBrowser();
});

after(async () => {
    await browser?.close();
    await stopAll();
});

async function restart() {
    const { port, dir, dbPath } = server;
    server = await startServer({ env: RELAXED_RATE_ENV, args: SERVER_ARGS, port, dir, dbPath });
}

test('server restart: every missed message shown exactly once', { timeout: 180000 }, async (t) => {
    const room = 'recover';
    const hana = await openChat(browser, server, { name: 'hana', room });
    const frames = recordFrames(hana.page);
    const ivan = await openChat(browser, server, { name: 'ivan', room });
    await send(ivan.page, 'before restart');
    await waitForTexts(hana.page, ['before restart']);

    await server.stop();
    await waitOffline(hana.page);
    await screenshot(hana.page, 'reconnect-offline');
    await restart();

    // sent over REST right after the restart, mostly before the page is back
    const missed = Array.from({ length: 15 }, (_, i) => `missed ${i + 1}`);
    for (const text of missed) await postMessage(server, room, 'judy', text);

    await waitOnline(ivan.page);
    await send(ivan.page, 'ivan after restart');
    await waitOnline(hana.page);
    // hana answers once she sees ivan's message, so the ids follow that order
    await waitForTexts(hana.page, ['ivan after restart']);
    await send(hana.page, 'hana after restart');

    const expected = ['before restart', ...missed, 'ivan after restart', 'hana after restart'];
    for (const p of [hana.page, ivan.page]) {
        await waitForTexts(p, expected);
        const texts = await storedTexts(p);
        for (const text of expected) assert.equal(count(texts, text), 1, `"${text}" shown once`);
        assert.deepEqual(texts.filter((t) => expected.includes(t)), expected, 'in order, without gaps');
    }
    await screenshot(hana.page, 'reconnect-recovered');
    const rejoin = frames.joins.at(-1);
    assert.ok(rejoin && rejoin.since > 0, `re-joined with since (${JSON.stringify(rejoin)})`);
    t.diagnostic(`missed messages that came over the socket after the re-join: ${missed.filter((m) => frames.received.some((f) => f.type === 'message' && f.text === m)).length}/${missed.length}`);
    const stored = (await history(server, room)).map((m) => m.text);
    for (const text of expected) assert.equal(count(stored, text), 1, `"${text}" stored once`);

    assertClean(assert, hana.problems, 'hana');
    assertClean(assert, ivan.problems, 'ivan');
    await hana.context.close();
    await ivan.context.close();
});

test('a message sent while offline is delivered once after reconnecting', { timeout: 180000 }, async () => {
    const room = 'outbox';
    const kim = await openChat(browser, server, { name: 'kim', room });
    await send(kim.page, 'online first');
    await waitForTexts(kim.page, ['online first']);

    await server.stop();
    await waitOffline(kim.page);
    // offline, nobody is known to be online: no stale counts
    await kim.page.locator('[data-testid=room-link][data-room=outbox] [data-testid=room-online]')
        .waitFor({ state: 'detached' });
    assert.equal(await kim.page.locator('[data-testid=room-meta]').textContent(), '');
    await send(kim.page, 'typed while offline');
    await kim.page.locator('[data-testid=message][data-state=queued] [data-testid=message-text]',
        { hasText: 'typed while offline' }).waitFor();
    await screenshot(kim.page, 'offline-queued');

    await restart();
    await waitOnline(kim.page);
    await waitForTexts(kim.page, ['typed while offline']);
    await kim.page.locator('[data-testid=message][data-ref]').waitFor({ state: 'detached' });
    const texts = await storedTexts(kim.page);
    assert.equal(count(texts, 'typed while offline'), 1, 'shown once');
    const stored = (await history(server, room)).map((m) => m.text);
    assert.deepEqual(stored, ['online first', 'typed while offline'], 'stored once');

    assertClean(assert, kim.problems, 'kim');
    await kim.context.close();
});

test('more missed than the server replays (recovered: false): the page reloads the history over REST',
    { timeout: 180000 }, async () => {
        const env = { ...RELAXED_RATE_ENV, TURBOCHAT_REPLAY_MAX: '5' };
        let small = await startServer({ env, args: SERVER_ARGS });
        const room = 'long-gap';
        const lena = await openChat(browser, small, { name: 'lena', room });
        const frames = recordFrames(lena.page);
        await send(lena.page, 'before the gap');
        await waitForTexts(lena.page, ['before the gap']);

        // while lena's server is down, 15 messages land in its database through
        // another server process on another port
        const { port, dir, dbPath } = small;
        await small.stop();
        await waitOffline(lena.page);
        const other = await startServer({ env, args: SERVER_ARGS, dir, dbPath });
        const missed = Array.from({ length: 15 }, (_, i) => `during the gap ${i + 1}`);
        for (const text of missed) await postMessage(other, room, 'max', text);
        await other.stop();
        small = await startServer({ env, args: SERVER_ARGS, port, dir, dbPath });

        await waitOnline(lena.page);
        const expected = ['before the gap', ...missed];
        await waitForTexts(lena.page, expected);
        const texts = await storedTexts(lena.page);
        assert.deepEqual(texts.filter((x) => expected.includes(x)), expected, 'every message once, in order');
        const joined = frames.received.filter((f) => f.type === 'joined' && f.room === room).at(-1);
        assert.equal(joined?.recovered, false, `the re-join could not replay 15 > 5 (${JSON.stringify(joined)})`);
        const overSocket = frames.received.filter((f) => f.type === 'message' && missed.includes(f.text));
        assert.deepEqual(overSocket, [], 'the missed messages came from the REST reload');

        await send(lena.page, 'after the gap');
        await waitForTexts(lena.page, [...expected, 'after the gap']);
        assertClean(assert, lena.problems, 'lena');
        await lena.context.close();
        await small.stop();
    });

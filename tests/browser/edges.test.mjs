// Edges a person runs into: the first-visit name dialog cannot be escaped
// into a page that never connects; a room the server refuses (more rooms
// than it allows) says so and fails what waits to be sent there; one's own
// message, from any tab, marks its room read; a bad #room in the address is
// reported; leaving a room drops its draft; two tabs of one browser keep each
// other's rooms and queued messages.
// Selectors: see helpers.mjs; also [data-testid=name-dialog],
// [data-testid=banner], [data-testid=history-note], [data-testid=room-unread].
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, TIMEOUT, assertClean, count, history, launchBrowser, openChat, openPage, send,
    storedTexts, waitForTexts, waitJoined, waitOffline, waitOnline, watchProblems } from './helpers.mjs';

const MAX_ROOMS = 2;
const ENV = { ...RELAXED_RATE_ENV, TURBOCHAT_MAX_ROOMS_PER_CONN: String(MAX_ROOMS) };

let server;
let browser;

before(async () => {
    server = await startServer({ env: ENV, args: SERVER_ARGS });
    browser = await launchBrowser();
});

after(async () => {
    await browser?.close();
    await stopAll();
});

async function goToRoom(page, room) {
    await page.evaluate((r) => {
        location.hash = r;
    }, room);
}

test('the first-visit name dialog stays until a name is given', { timeout: 120000 }, async () => {
    const { page, context, problems } = await openPage(browser, server, { room: 'general' });
    const dialog = page.locator('[data-testid=name-dialog][open]');
    await dialog.waitFor();
    await page.locator('[data-testid=conn-state][data-state=idle]', { hasText: 'Not connected' }).waitFor();
    // a click gives the page a user activation, after which Chromium lets
    // Escape close a modal dialog even when its cancel event is refused
    await page.locator('[data-testid=name-input]').click();
    for (let i = 0; i < 3; i++) {
        await page.keyboard.press('Escape');
        await dialog.waitFor();
    }
    await page.locator('[data-testid=name-input]').fill('nia');
    await page.locator('[data-testid=name-input]').press('Enter');
    await waitOnline(page);
    await dialog.waitFor({ state: 'detached' });
    assertClean(assert, problems, 'nia');
    await context.close();
});

test('a room the server refuses says so and fails its messages; after leaving another it works',
    { timeout: 120000 }, async () => {
        const { page, context, problems } = await openChat(browser, server, { name: 'olaf', room: 'one' });
        await goToRoom(page, 'two');
        await waitJoined(page, 'two');
        await goToRoom(page, 'three'); // one more than the server allows
        await page.locator('[data-testid=banner]', { hasText: 'Cannot join #three' }).waitFor();
        await page.locator('[data-testid=history-note]', { hasText: 'You are not in #three' }).waitFor();
        await send(page, 'typed in a refused room');
        await page.locator('[data-testid=message][data-state=failed]', { hasText: 'typed in a refused room' }).waitFor();

        // leave "one", open "three" again: joined, and the retry goes out
        await goToRoom(page, 'one');
        await page.locator('[data-testid=leave-room]').click();
        await goToRoom(page, 'three');
        await waitJoined(page, 'three');
        await page.locator('[data-testid=message][data-state=failed] [data-testid=retry]').click();
        await waitForTexts(page, ['typed in a refused room']);
        assert.equal(await page.locator('[data-testid=history-note]', { hasText: 'You are not in' }).count(), 0);
        assertClean(assert, problems, 'olaf');
        await context.close();
    });

test("someone else's message is unread; one's own, from another tab, marks the room read", { timeout: 120000 },
    async () => {
        const { page, context, problems } = await openChat(browser, server, { name: 'pia', room: 'mine' });
        await send(page, 'before switching');
        await waitForTexts(page, ['before switching']);
        await goToRoom(page, 'elsewhere');
        await waitJoined(page, 'elsewhere');

        const unread = page.locator('[data-testid=room-link][data-room=mine] [data-testid=room-unread]');
        const quinn = await openChat(browser, server, { name: 'quinn', room: 'mine' });
        await send(quinn.page, 'from quinn');
        await unread.filter({ hasText: '1' }).waitFor({ timeout: TIMEOUT });

        // pia answers from her second tab (same browser, same name): she has
        // read the room, so the first tab stops counting it as unread
        const other = await context.newPage();
        const otherProblems = watchProblems(other);
        await other.goto(`${server.url}/#mine`);
        await waitJoined(other, 'mine');
        await send(other, 'from my other tab');
        await waitForTexts(other, ['from my other tab']);
        await unread.waitFor({ state: 'detached', timeout: TIMEOUT });
        assertClean(assert, problems, 'pia');
        assertClean(assert, otherProblems, "pia's other tab");
        await quinn.context.close();
        await context.close();
    });

test('a bad #room in the address is reported and the address goes back', { timeout: 120000 }, async () => {
    const { page, context, problems } = await openChat(browser, server, { name: 'rui', room: 'general' });
    await goToRoom(page, 'bad room');
    await page.locator('[data-testid=banner]', { hasText: 'Cannot open "bad room"' }).waitFor();
    assert.equal(new URL(page.url()).hash, '#general');
    await page.locator('[data-testid=room-title]', { hasText: '#general' }).waitFor();
    assertClean(assert, problems, 'rui');
    await context.close();
});

test('after leaving a room, Back does not open it again', { timeout: 120000 }, async () => {
    const { page, context, problems } = await openChat(browser, server, { name: 'uma', room: 'stay' });
    await goToRoom(page, 'go');
    await waitJoined(page, 'go');
    await page.locator('[data-testid=leave-room]').click();
    await page.locator('[data-testid=room-title]', { hasText: '#stay' }).waitFor();
    await page.goBack();
    await page.locator('[data-testid=room-title]', { hasText: '#stay' }).waitFor();
    const rooms = await page.locator('[data-testid=my-rooms] [data-testid=room-link]').evaluateAll(
        (links) => links.map((a) => a.dataset.room));
    assert.deepEqual(rooms, ['stay'], 'the room left stays left');
    assertClean(assert, problems, 'uma');
    await context.close();
});

test('leaving a room drops its draft', { timeout: 120000 }, async () => {
    const { page, context, problems } = await openChat(browser, server, { name: 'sam', room: 'drafty' });
    await page.locator('[data-testid=composer-input]').fill('half a thought');
    await page.locator('[data-testid=leave-room]').click();
    await page.locator('[data-testid=my-rooms] [data-testid=room-link][data-room=drafty]').waitFor({ state: 'detached' });
    const drafts = await page.evaluate(() => JSON.parse(localStorage.getItem('turbochat.drafts') || '{}'));
    assert.equal(drafts.drafty, undefined, 'the draft is gone from this device');
    assert.equal(await page.locator('[data-testid=composer-input]').inputValue(), '');
    assertClean(assert, problems, 'sam');
    await context.close();
});

test("two tabs of one browser keep each other's rooms and queued messages", { timeout: 180000 }, async () => {
    const a = await openChat(browser, server, { name: 'tess', room: 'tab-a' });
    const b = await a.context.newPage();
    const bProblems = watchProblems(b);
    await b.goto(`${server.url}/#tab-b`);
    await waitJoined(b, 'tab-b');
    // a room tab a enters after tab b has loaded (b never had it in memory)
    await goToRoom(a.page, 'tab-c');
    await waitJoined(a.page, 'tab-c');
    await goToRoom(a.page, 'tab-a');

    // both tabs queue a message while the server is down
    const { port, dir, dbPath } = server;
    await server.stop();
    await waitOffline(a.page);
    await waitOffline(b);
    await send(a.page, 'queued in tab a');
    await send(b, 'queued in tab b');
    for (const [p, text] of [[a.page, 'queued in tab a'], [b, 'queued in tab b']]) {
        await p.locator('[data-testid=message][data-state=queued]', { hasText: text }).waitFor();
    }

    // tab a is closed before the server is back; tab b, reloaded, sends both
    await a.page.close();
    server = await startServer({ env: ENV, args: SERVER_ARGS, port, dir, dbPath });
    await b.reload();
    const rooms = await b.evaluate(() => JSON.parse(localStorage.getItem('turbochat.rooms')));
    assert.deepEqual([...rooms].sort(), ['tab-a', 'tab-b', 'tab-c'], 'both tabs\' rooms are remembered');
    await waitOnline(b);
    await goToRoom(b, 'tab-a');
    await waitForTexts(b, ['queued in tab a']);
    await goToRoom(b, 'tab-b');
    await waitForTexts(b, ['queued in tab b']);
    for (const [room, text] of [['tab-a', 'queued in tab a'], ['tab-b', 'queued in tab b']]) {
        const stored = (await history(server, room)).map((m) => m.text);
        assert.equal(count(stored, text), 1, `"${text}" stored once`);
    }
    assert.equal(count(await storedTexts(b), 'queued in tab b'), 1);
    assertClean(assert, a.problems, 'tess');
    assertClean(assert, bProblems, "tess's second tab");
    await a.context.close();
});

// Search in the UI (issue 10): the top bar's search box lists results newest
// first, with the matched words marked and every text shown as text (markup
// in a message stays characters); Japanese is found by a substring; "Search
// further back" pages on; choosing a result opens its room and loads the
// history back to the message, which is scrolled to and highlighted.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, TIMEOUT, assertClean, launchBrowser, messageRow, openChat, postMessage,
    screenshot } from './helpers.mjs';

const FILLERS = 450; // the target is this many messages back: several history pages
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

async function search(page, q) {
    const dialog = page.locator('[data-testid=search-dialog]');
    if (await dialog.isVisible()) {
        await page.keyboard.press('Escape'); // the dialog is modal: close it to search again
        await dialog.waitFor({ state: 'hidden' });
    }
    const input = page.locator('[data-testid=search-input]');
    await input.fill(q);
    await input.press('Enter');
    await dialog.waitFor();
    await page.locator('[data-testid=search-status]').filter({ hasText: /result|Nothing/ }).waitFor();
    return dialog;
}

function shownResults(page) {
    return page.$$eval('[data-testid=search-result]', (nodes) => nodes.map((n) => ({
        room: n.dataset.room,
        id: Number(n.dataset.id),
        snippet: n.querySelector('.search-snippet').textContent,
        marks: [...n.querySelectorAll('mark')].map((m) => m.textContent),
        elements: [...n.querySelector('.search-snippet').querySelectorAll('*')].map((e) => e.tagName),
    })));
}

test('search finds, marks, pages and jumps to the message in its room', { timeout: 240000 }, async () => {
    const target = await postMessage(server, 'archive', 'carol', 'the hidden Treasure is under 東京タワー');
    for (let i = 0; i < FILLERS; i++) await postMessage(server, 'archive', 'dave', `filler number ${i}`);
    const markup = await postMessage(server, 'general', 'erin', '<b>treasure</b> <img src=x onerror=alert(1)>');
    const newest = await postMessage(server, 'general', 'bob', 'more TREASURE here');

    const alice = await openChat(browser, server, { name: 'alice', room: 'general' });
    const page = alice.page;

    await search(page, 'treasure');
    let results = await shownResults(page);
    assert.deepEqual(results.map((r) => [r.room, r.id]),
        [['general', newest.id], ['general', markup.id], ['archive', target.id]], 'newest first');
    for (const r of results) {
        assert.ok(r.marks.length >= 1, `a mark in ${r.snippet}`);
        for (const m of r.marks) assert.equal(m.toLowerCase(), 'treasure');
        assert.deepEqual(r.elements.filter((t) => t !== 'MARK'), [], 'only marks inside a snippet');
    }
    assert.equal(results[1].snippet, '<b>treasure</b> <img src=x onerror=alert(1)>', 'markup shown as text');
    await screenshot(page, 'search-results');

    // a Japanese substring, not a whole word
    await search(page, 'タワ');
    results = await shownResults(page);
    assert.deepEqual(results.map((r) => r.id), [target.id]);
    assert.deepEqual(results[0].marks, ['タワ']);

    // paging: 20 at a time, then further back
    await search(page, 'filler');
    assert.equal((await shownResults(page)).length, 20);
    const more = page.locator('[data-testid=search-more]');
    await more.click();
    await page.waitForFunction(() => document.querySelectorAll('[data-testid=search-result]').length === 40,
        null, { timeout: TIMEOUT });
    const ids = (await shownResults(page)).map((r) => r.id);
    assert.equal(new Set(ids).size, 40, 'no result twice');
    assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'newest first across pages');

    // choose the archive result: its room opens, history loads back to it
    await search(page, 'hidden treasure');
    await page.locator(`[data-testid=search-result][data-room=archive][data-id="${target.id}"]`).click();
    await page.locator('[data-testid=room-title]').filter({ hasText: 'archive' }).waitFor();
    const row = messageRow(page, target.id);
    await row.waitFor({ timeout: TIMEOUT });
    await page.waitForFunction((id) => document.querySelector(`.msg[data-id="${id}"]`)?.classList.contains('jumped'),
        target.id, { timeout: TIMEOUT });
    assert.ok(await row.isVisible(), 'the message is on screen');
    assert.ok(await page.locator('[data-testid=search-dialog]').isHidden(), 'the dialog closed');
    await screenshot(page, 'search-jumped');
    assertClean(assert, alice.problems, 'alice');
});

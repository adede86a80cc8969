// History: a room with 120 messages opens on the newest 50; scrolling up
// loads older pages over REST without the view jumping; a new message while
// scrolled up shows the "new messages" marker instead of moving the view; a
// reload keeps the history.
// Selectors: see helpers.mjs; also [data-testid=new-messages] (the marker),
// [data-testid=history-note] (start-of-room note).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, assertClean, launchBrowser, openChat, postMessage, screenshot, storedTexts,
    waitForTexts } from './helpers.mjs';

const ROOM = 'history';
const SEEDED = 120;
const seedText = (i) => `seed ${String(i).padStart(3, '0')}`;

let server;
let browser;

before(async () => {
    server = await startServer({ env: RELAXED_RATE_ENV, args: SERVER_ARGS });
    browser = await launchBrowser();
    for (let i = 1; i <= SEEDED; i++) await postMessage(server, ROOM, i % 3 ? 'erin' : 'frank', seedText(i));
});

after(async () => {
    await browser?.close();
    await stopAll();
});

// The first message row visible in the pane, and its distance from the pane's top.
function firstVisible(page) {
    return page.$eval('[data-testid=messages]', (pane) => {
        const top = pane.getBoundingClientRect().top;
        for (const row of pane.querySelectorAll('[data-testid=message][data-id]')) {
            const box = row.getBoundingClientRect();
            if (box.bottom > top) return { id: row.dataset.id, offset: box.top - top };
        }
        return null;
    });
}

// Scrolls the pane to the top and, in the same task (before any older page
// can arrive), tells which message row is first visible and where.
function scrollToTop(page) {
    return page.$eval('[data-testid=messages]', (pane) => {
        pane.scrollTop = 0;
        const top = pane.getBoundingClientRect().top;
        for (const row of pane.querySelectorAll('[data-testid=message][data-id]')) {
            const box = row.getBoundingClientRect();
            if (box.bottom > top) return { id: row.dataset.id, offset: box.top - top };
        }
        return null;
    });
}

test('newest page first, older pages on scroll without jumping, marker, reload', { timeout: 120000 }, async () => {
    const { page, problems } = await openChat(browser, server, { name: 'gina', room: ROOM });
    await waitForTexts(page, [seedText(SEEDED), seedText(SEEDED - 49)]);
    let texts = await storedTexts(page);
    assert.equal(texts.at(-1), seedText(SEEDED), 'the newest message is last');
    assert.ok(!texts.includes(seedText(1)), 'only the newest page was loaded at first');
    assert.ok(await page.$eval('[data-testid=messages]', (p) => p.scrollHeight - p.scrollTop - p.clientHeight < 48),
        'the view starts at the bottom');

    // scroll to the top: the previous page is prepended, the view stays put
    const anchor = await scrollToTop(page);
    await waitForTexts(page, [seedText(SEEDED - 99)]);
    const after = await page.$eval('[data-testid=messages]', (pane, id) => {
        const row = pane.querySelector(`[data-testid=message][data-id="${id}"]`);
        return row.getBoundingClientRect().top - pane.getBoundingClientRect().top;
    }, anchor.id);
    assert.ok(Math.abs(after - anchor.offset) < 4, `view kept its place (moved ${after - anchor.offset}px)`);

    // and again, down to the first message
    await scrollToTop(page);
    await waitForTexts(page, [seedText(1)]);
    await page.locator('[data-testid=history-note]', { hasText: 'beginning' }).waitFor();
    texts = await storedTexts(page);
    assert.deepEqual(texts, Array.from({ length: SEEDED }, (_, i) => seedText(i + 1)), 'all messages, in order, once');
    await screenshot(page, 'history-top');

    // scrolled up, a new message shows the marker and does not move the view
    await page.$eval('[data-testid=messages]', (p) => { p.scrollTop = p.scrollHeight / 3; });
    const before = await firstVisible(page);
    await postMessage(server, ROOM, 'frank', 'arrived while reading');
    await page.locator('[data-testid=new-messages]').waitFor();
    assert.deepEqual(await firstVisible(page), before, 'the view did not move');
    await screenshot(page, 'history-new-marker');
    await page.locator('[data-testid=new-messages]').click();
    await page.locator('[data-testid=new-messages]').waitFor({ state: 'hidden' });
    assert.ok(await page.$eval('[data-testid=messages]', (p) => p.scrollHeight - p.scrollTop - p.clientHeight < 48));

    // a reload keeps the history
    await page.reload();
    await waitForTexts(page, [seedText(SEEDED), 'arrived while reading']);
    texts = await storedTexts(page);
    assert.equal(texts.at(-1), 'arrived while reading');
    assertClean(assert, problems, 'gina');
});

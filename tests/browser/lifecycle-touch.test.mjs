// A phone (360x740, touch): a long press on a message opens the same actions
// a mouse gets on hover; from there a finger reacts, replies and edits; a
// short tap opens nothing; nothing overflows sideways.
// Selectors: see helpers.mjs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, assertClean, launchBrowser, messageId, messageRow, openChat, postMessage, screenshot,
    send, waitForReactions, waitForRowText } from './helpers.mjs';

const PHONE = { viewport: { width: 360, height: 740 }, contextOptions: { hasTouch: true, isMobile: true } };

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

// Holds a finger on the text of row until its actions show, then lifts it.
async function longPress(page, row) {
    const box = await row.locator('[data-testid=message-text]').boundingBox();
    const point = { x: Math.round(box.x + 4), y: Math.round(box.y + box.height / 2) };
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [point] });
    await row.locator('[data-testid=message-actions]').waitFor({ state: 'visible' });
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
    await cdp.detach();
}

test('phone: a long press opens the actions; react, reply and edit with a finger', { timeout: 180000 }, async () => {
    const room = 'touch';
    await postMessage(server, room, 'lars', 'press and hold me');
    const { page, problems } = await openChat(browser, server, { name: 'mia', room, ...PHONE });
    const theirs = await messageId(page, 'press and hold me');
    const row = messageRow(page, theirs);

    // a tap is not a long press
    await row.locator('[data-testid=message-text]').tap();
    assert.ok(await row.locator('[data-testid=message-actions]').isHidden(), 'a tap opens nothing');

    await longPress(page, row);
    await screenshot(page, 'lifecycle-touch-actions');
    await row.locator('[data-testid=action-react]').tap();
    await page.locator('[data-testid=emoji-option][data-emoji="❤️"]').tap();
    await waitForReactions(page, theirs, { '❤️': 1 });

    await longPress(page, row);
    await row.locator('[data-testid=action-reply]').tap();
    await page.locator('[data-testid=reply-bar]').waitFor();
    await send(page, 'answered from a phone');
    const mine = await messageId(page, 'answered from a phone');
    await messageRow(page, mine).locator('[data-testid=reply-quote]', { hasText: 'press and hold me' }).waitFor();

    await longPress(page, messageRow(page, mine));
    await messageRow(page, mine).locator('[data-testid=action-edit]').tap();
    const editor = messageRow(page, mine).locator('[data-testid=edit-input]');
    await editor.fill('answered from a phone, edited');
    await messageRow(page, mine).locator('[data-testid=edit-save]').tap();
    await waitForRowText(page, mine, 'answered from a phone, edited');
    await messageRow(page, mine).locator('[data-testid=message-edited]').waitFor();
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 360), 'no sideways scrolling');
    await screenshot(page, 'lifecycle-touch-done');
    assertClean(assert, problems, 'mia');
});

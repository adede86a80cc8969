// A phone-sized viewport (360x740): nothing overflows sideways, a message
// can be sent, and the room list opens as a drawer from the top bar.
// Selectors: see helpers.mjs; also [data-testid=toggle-rooms] (drawer button),
// [data-testid=sidebar] (room list drawer).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, assertClean, launchBrowser, openChat, postMessage, screenshot, send,
    waitForTexts, waitJoined } from './helpers.mjs';

let server;
let browser;

before(async () => {
    server = await startServer({ env: RELAXED_RATE_ENV, args: SERVER_ARGS });
    browser = await launchBrowser();
    await postMessage(server, 'side', 'lee', 'a room to switch to');
});

after(async () => {
    await browser?.close();
    await stopAll();
});

test('phone-sized viewport: send, open the room list, switch room', { timeout: 120000 }, async () => {
    const { page, problems } = await openChat(browser, server,
        { name: 'mona', room: 'phone', viewport: { width: 360, height: 740 } });
    const long = 'a-very-long-word-without-spaces-'.repeat(8);
    await send(page, 'hello from a phone');
    await send(page, long);
    await waitForTexts(page, ['hello from a phone', long]);
    assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 360), 'no sideways scrolling');
    assert.ok(await page.locator('[data-testid=sidebar]').isHidden(), 'the room list is a closed drawer');
    await screenshot(page, 'mobile-chat');

    await page.locator('[data-testid=toggle-rooms]').click();
    await page.locator('[data-testid=sidebar]').waitFor({ state: 'visible' });
    await page.locator('[data-testid=room-link][data-room=side]').waitFor();
    await screenshot(page, 'mobile-rooms');
    await page.locator('[data-testid=room-link][data-room=side]').click();
    await waitJoined(page, 'side');
    await waitForTexts(page, ['a room to switch to']);
    assert.ok(await page.locator('[data-testid=sidebar]').isHidden(), 'the drawer closes after picking a room');

    assertClean(assert, problems, 'mona');
});

test('dark colour scheme on a desktop', { timeout: 120000 }, async () => {
    const { page, problems } = await openChat(browser, server, { name: 'nora', room: 'side', colorScheme: 'dark' });
    await send(page, 'dark mode: https://example.org/ and some text');
    await waitForTexts(page, ['a room to switch to', 'dark mode: https://example.org/ and some text']);
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.notEqual(background, 'rgb(246, 247, 251)', 'the dark palette is used');
    await screenshot(page, 'desktop-dark');
    assertClean(assert, problems, 'nora');
});

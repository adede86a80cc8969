// Keyboard only: a person who never touches a mouse picks a name, skips to
// the message box, sends, joins a room, switches rooms, and changes the name,
// with Tab, Enter and Escape. Focus moves by key presses, each of which the
// page handles before the next, so the loops below wait on nothing else.
// Selectors: see helpers.mjs; also [data-testid=skip-link], #join-input,
// a.room-link[data-room], [data-testid=change-name], [data-testid=name-dialog].
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, assertClean, launchBrowser, openPage, postMessage, screenshot, waitForTexts,
    waitJoined, waitOnline } from './helpers.mjs';

let server;
let browser;

before(async () => {
    server = await startServer({ args: SERVER_ARGS });
    browser = await launchBrowser();
});

after(async () => {
    await browser?.close();
    await stopAll();
});

const TAB_LIMIT = 60;

// Press Tab until the focused element matches selector; fails after TAB_LIMIT presses.
async function tabTo(page, selector) {
    for (let i = 0; i < TAB_LIMIT; i++) {
        if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
        await page.keyboard.press('Tab');
    }
    const at = await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 120));
    assert.fail(`${selector} not reached with ${TAB_LIMIT} Tabs (focus on ${at})`);
}

function focused(page) {
    return page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
}

test('keyboard only: name, skip link, send, join, switch rooms, change the name', { timeout: 120000 }, async () => {
    const { page, context, problems } = await openPage(browser, server, { room: 'general' });

    // the first-visit dialog has the focus: type a name, Enter
    await page.locator('[data-testid=name-dialog]').waitFor();
    assert.equal(await focused(page), 'name-input');
    await page.keyboard.type('kim');
    await page.keyboard.press('Enter');
    await waitOnline(page);
    await waitJoined(page, 'general');

    // the first Tab reaches the skip link; Enter puts the focus in the message box
    await page.evaluate(() => document.activeElement?.blur());
    await page.keyboard.press('Tab');
    assert.equal(await focused(page), 'skip-link', 'the skip link comes first');
    await page.keyboard.press('Enter');
    assert.equal(await focused(page), 'composer-input');
    assert.equal(new URL(page.url()).hash, '#general', 'the skip link does not change the room');
    await page.keyboard.type('sent from the keyboard');
    await page.keyboard.press('Enter');
    await waitForTexts(page, ['sent from the keyboard']);

    // join another room from the sidebar's field
    await tabTo(page, '#join-input');
    await page.keyboard.type('kbd-room');
    await page.keyboard.press('Enter');
    await waitJoined(page, 'kbd-room');
    assert.equal(new URL(page.url()).hash, '#kbd-room');

    // back to #general through its link in the room list; a message that
    // arrives meanwhile repaints the list but leaves the focus on the link
    await tabTo(page, 'a.room-link[data-room="general"]');
    await postMessage(server, 'kbd-room', 'lee', 'arrives while kim tabs');
    await waitForTexts(page, ['arrives while kim tabs']);
    assert.equal(await page.evaluate(() => document.activeElement?.dataset.room), 'general', 'focus kept');
    await page.keyboard.press('Enter');
    await page.waitForURL(/#general$/);
    await waitForTexts(page, ['sent from the keyboard']);

    // the name button opens the dialog; Escape closes it without a change
    await tabTo(page, '[data-testid=change-name]');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=name-dialog][open]').waitFor();
    assert.equal(await focused(page), 'name-input');
    await page.keyboard.press('Escape');
    await page.locator('[data-testid=name-dialog][open]').waitFor({ state: 'detached' });
    await page.locator('[data-testid=me-name]', { hasText: 'kim' }).waitFor();

    // and again: typing replaces the selected name, Enter saves it
    await tabTo(page, '[data-testid=change-name]');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=name-dialog][open]').waitFor();
    await page.keyboard.type('kim-lee');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=me-name]', { hasText: 'kim-lee' }).waitFor();
    await waitOnline(page);
    await page.locator('[data-testid=member][data-user=kim-lee]').waitFor();
    await screenshot(page, 'keyboard-only');

    const rooms = await page.locator('[data-testid=my-rooms] a.room-link').evaluateAll(
        (links) => links.map((a) => a.dataset.room));
    assert.deepEqual(rooms.sort(), ['general', 'kbd-room'], 'no room was opened by accident');
    assertClean(assert, problems, 'kim');
    await context.close();
});

// The website with auth = accounts on a phone-sized screen (360x740) and by
// keyboard alone: sign up, create a private room, invite, chat, a direct
// message and the profile menu fit the narrow screen without sideways
// scrolling; and a person who never touches a mouse signs up, creates a
// room, writes, opens the profile menu (the focus stays inside it, Escape
// closes it and gives the focus back). Selectors: see helpers.mjs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, accountsServerEnv, assertClean, launchBrowser, openAccount, openRoomLink, openSignedOut,
    screenshot, send, showSidebar, waitForTexts, waitJoined, waitOnline } from './helpers.mjs';

let server;
let browser;
const PHONE = { width: 360, height: 740 };

before(async () => {
    server = await startServer({ env: accountsServerEnv(), args: SERVER_ARGS });
    browser = await launchBrowser();
});

after(async () => {
    await browser?.close();
    await stopAll();
});

function noSideways(page) {
    return page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
}

test('phone width: sign up, private room, invite, chat, direct message, profile', { timeout: 180000 }, async () => {
    const gus = await openAccount(browser, server, 'gus', 'gus-password-1', { viewport: PHONE });
    const hal = await openAccount(browser, server, 'hal', 'hal-password-1', { viewport: PHONE });
    const { page } = gus;
    assert.ok(await noSideways(page), 'the chat fits');

    await showSidebar(page);
    await page.locator('[data-testid=new-room]').click();
    await page.locator('[data-testid=room-dialog][open]').waitFor();
    assert.ok(await noSideways(page), 'the new-room dialog fits');
    await page.locator('[data-testid=room-name]').fill('phone-club');
    await page.locator('[data-testid=room-private]').check();
    await screenshot(page, 'accounts-phone-new-room');
    await page.locator('[data-testid=room-create]').click();
    await waitJoined(page, 'phone-club');

    await page.locator('[data-testid=manage-members]').click();
    await page.locator('[data-testid=invite-name]').fill('hal');
    await page.locator('[data-testid=invite-add]').click();
    await page.locator('[data-testid=roster-entry][data-user=hal]').waitFor();
    assert.ok(await noSideways(page), 'the members dialog fits');
    await screenshot(page, 'accounts-phone-members');
    await page.keyboard.press('Escape');
    await send(page, 'small screens welcome');

    await showSidebar(hal.page);
    await hal.page.locator('[data-testid=room-link][data-room=phone-club]').waitFor();
    await openRoomLink(hal.page, 'phone-club');
    await waitForTexts(hal.page, ['small screens welcome']);
    assert.ok(await hal.page.locator('[data-testid=sidebar]').isHidden(), 'the drawer closes after picking a room');

    // a direct message from the members drawer
    await hal.page.locator('[data-testid=toggle-members]').click();
    await hal.page.locator('[data-testid=member-dm][data-user=gus]').first().click();
    await hal.page.locator('[data-testid=room-title]', { hasText: 'gus' }).waitFor();
    await send(hal.page, 'a word in private');
    await waitForTexts(hal.page, ['a word in private']);
    assert.ok(await noSideways(hal.page), 'the DM fits');
    await showSidebar(page);
    await page.locator('[data-testid=dm-list] [data-testid=room-link]', { hasText: 'hal' }).waitFor();
    await screenshot(page, 'accounts-phone-dm-list');

    await page.keyboard.press('Escape');
    await page.locator('[data-testid=change-name]').click();
    await page.locator('[data-testid=profile-dialog][open]').waitFor();
    assert.ok(await noSideways(page), 'the profile menu fits');
    await screenshot(page, 'accounts-phone-profile');
    await page.locator('[data-testid=open-admin]').click(); /* gus made the first account: admin */
    await page.locator('[data-testid=admin-user][data-user=hal]').waitFor();
    assert.ok(await noSideways(page), 'the admin page fits');
    await screenshot(page, 'accounts-phone-admin');

    assertClean(assert, gus.problems, 'gus');
    assertClean(assert, hal.problems, 'hal');
});

const TAB_LIMIT = 40;

async function tabTo(page, selector) {
    for (let i = 0; i < TAB_LIMIT; i++) {
        if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
        await page.keyboard.press('Tab');
    }
    const at = await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 120));
    assert.fail(`${selector} not reached with ${TAB_LIMIT} Tabs (focus on ${at})`);
}

function focusedTestId(page) {
    return page.evaluate(() => document.activeElement?.dataset.testid || document.activeElement?.id || '');
}

test('keyboard only: sign up, create a room, write, profile menu', { timeout: 180000 }, async () => {
    const { page, problems } = await openSignedOut(browser, server);
    // the name field has the focus; the sign-up switch is reached by Tab
    assert.equal(await focusedTestId(page), 'auth-name');
    await tabTo(page, '[data-testid=auth-switch]');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=auth-form][data-mode=signup]').waitFor();
    assert.equal(await focusedTestId(page), 'auth-name');
    await page.keyboard.type('ivy');
    await page.keyboard.press('Tab');
    await page.keyboard.type('ivy-password-1');
    await page.keyboard.press('Enter');
    await waitOnline(page);
    await waitJoined(page, 'general');

    // New room, by Tab and Enter; the dialog has the focus in its name field
    await page.evaluate(() => document.activeElement?.blur());
    await tabTo(page, '[data-testid=new-room]');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=room-dialog][open]').waitFor();
    assert.equal(await focusedTestId(page), 'room-name');
    await page.keyboard.type('keys-only');
    await page.keyboard.press('Tab'); /* the public/private choice */
    await page.keyboard.press('ArrowDown'); /* private */
    assert.equal(await page.locator('[data-testid=room-private]').isChecked(), true);
    await page.keyboard.press('Enter');
    await waitJoined(page, 'keys-only');
    await page.locator('[data-testid=room-title]', { hasText: '#keys-only' }).waitFor();

    // Tab on to the message box
    await tabTo(page, '[data-testid=composer-input]');
    await page.keyboard.type('typed, never clicked');
    await page.keyboard.press('Enter');
    await waitForTexts(page, ['typed, never clicked']);

    // the profile menu: focus trapped inside, Escape closes, focus returns
    await tabTo(page, '[data-testid=change-name]');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=profile-dialog][open]').waitFor();
    for (let i = 0; i < 25; i++) {
        await page.keyboard.press('Tab');
        assert.ok(await page.evaluate(() => document.getElementById('profile-dialog').contains(document.activeElement)),
            `Tab ${i + 1} left the profile dialog`);
    }
    await page.keyboard.press('Shift+Tab');
    assert.ok(await page.evaluate(() => document.getElementById('profile-dialog').contains(document.activeElement)));
    await screenshot(page, 'accounts-keyboard-profile');
    await page.keyboard.press('Escape');
    await page.locator('[data-testid=profile-dialog]').waitFor({ state: 'hidden' });
    assert.equal(await focusedTestId(page), 'change-name', 'the focus is back on the profile button');

    assertClean(assert, problems, 'ivy');
});

// The website with auth = accounts (issue 9, docs/PROTOCOL.md, "Accounts"), on a
// desktop: a new person signs up on the sign-in page, creates a private
// room and invites a second person, who signed up in another browser; they
// chat there; a direct message started from the members panel and found
// again by typing the name; unread badges from the server that clear on a
// second device of the same account when the first one reads (with the
// "new since you left" divider and read frames at most once a second).
// Selectors: see helpers.mjs (accounts).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, TIMEOUT, accountsServerEnv, assertClean, enterAs, launchBrowser, openAccount, openRoomLink,
    openSignedOut, screenshot, send, waitForTexts, waitJoined, waitUnread } from './helpers.mjs';

let server;
let browser;
const PW = { ann: 'ann-password-1', ben: 'ben-password-2' };
const opened = []; /* every context, checked for CSP violations and script errors at the end */

before(async () => {
    server = await startServer({ env: accountsServerEnv(), args: SERVER_ARGS });
    browser = await launchBrowser();
});

after(async () => {
    for (const { problems, label } of opened) assertClean(assert, problems, label);
    await browser?.close();
    await stopAll();
});

let ann;
let ben;
let annReads; /* the read frames ann's first page sent, with the time */

function collectReads(page) {
    const sent = [];
    page.on('websocket', (ws) => ws.on('framesent', ({ payload }) => {
        const frame = JSON.parse(payload);
        if (frame.type === 'read') sent.push({ ...frame, at: Date.now() });
    }));
    return sent;
}

test('sign up, create a private room, invite a second person, chat there', { timeout: 180000 }, async () => {
    // a first visit lands on the sign-in page, which offers sign-up
    ann = await openSignedOut(browser, server);
    opened.push({ ...ann, label: 'ann' });
    const { page } = ann;
    annReads = collectReads(page);
    assert.equal(await page.locator('[data-testid=auth-form]').getAttribute('data-mode'), 'signin');
    assert.equal(await page.locator('[data-testid=name-dialog]').isVisible(), false, 'no display-name dialog');
    await screenshot(page, 'accounts-sign-in');
    await enterAs(page, 'signup', 'ann', PW.ann);
    await page.locator('[data-testid=me-name]', { hasText: 'ann' }).waitFor();

    // a private room, made in the new-room dialog
    await page.locator('[data-testid=new-room]').click();
    await page.locator('[data-testid=room-dialog][open]').waitFor();
    await page.locator('[data-testid=room-name]').fill('plans');
    await page.locator('[data-testid=room-private]').check();
    await page.locator('[data-testid=room-create]').click();
    await page.locator('[data-testid=room-dialog]').waitFor({ state: 'hidden' });
    await waitJoined(page, 'plans');
    await page.locator('[data-testid=room-title]', { hasText: '#plans' }).waitFor();
    await send(page, 'only the invited read this');
    await waitForTexts(page, ['only the invited read this']);

    // the name is taken now, also for a public room
    await page.locator('[data-testid=new-room]').click();
    await page.locator('[data-testid=room-name]').fill('plans');
    await page.locator('[data-testid=room-create]').click();
    await page.locator('[data-testid=room-error]', { hasText: 'already exists' }).waitFor();
    await page.keyboard.press('Escape');
    await page.locator('[data-testid=room-dialog]').waitFor({ state: 'hidden' });

    // ben signs up in another browser: the private room is not his to see
    ben = await openAccount(browser, server, 'ben', PW.ben);
    opened.push({ ...ben, label: 'ben' });
    assert.equal(await ben.page.locator('[data-testid=room-link][data-room=plans]').count(), 0, 'plans is hidden from ben');

    // ann invites ben by name; an unknown name is refused
    await page.locator('[data-testid=manage-members]').click();
    await page.locator('[data-testid=members-dialog][open]').waitFor();
    await page.locator('[data-testid=roster-entry][data-user=ann]').waitFor();
    await page.locator('[data-testid=invite-name]').fill('nobody-here');
    await page.locator('[data-testid=invite-add]').click();
    await page.locator('[data-testid=invite-status].error', { hasText: 'no account named' }).waitFor();
    await page.locator('[data-testid=invite-name]').fill('ben');
    await page.locator('[data-testid=invite-add]').click();
    await page.locator('[data-testid=roster-entry][data-user=ben]').waitFor();
    await screenshot(page, 'accounts-invite');
    await page.keyboard.press('Escape');
    await page.locator('[data-testid=members-dialog]').waitFor({ state: 'hidden' });

    // the room appears in ben's list by itself; there they chat
    await ben.page.locator('[data-testid=my-rooms] [data-testid=room-link][data-room=plans]').waitFor({ timeout: TIMEOUT });
    await openRoomLink(ben.page, 'plans');
    await waitForTexts(ben.page, ['only the invited read this']);
    await ben.page.locator('[data-testid=roster-member][data-user=ann]', { hasText: 'owner' }).waitFor();
    await send(ben.page, 'thanks for the invite');
    await waitForTexts(page, ['thanks for the invite']);
    await send(page, 'welcome, ben');
    await waitForTexts(ben.page, ['welcome, ben']);
    await screenshot(ben.page, 'accounts-private-room');
});

test('a direct message: started from the members panel, found again by name', { timeout: 120000 }, async () => {
    const { page } = ann;
    // ann clicks ben's name among the members of plans
    await page.locator('[data-testid=member-dm][data-user=ben]').first().click();
    await page.locator('[data-testid=room-title]', { hasText: 'ben' }).waitFor();
    const dm = decodeURIComponent(new URL(page.url()).hash.slice(1));
    assert.match(dm, /^dm-[0-9a-f]{24}$/, 'the DM room is named dm- and 24 hex digits');
    await page.locator(`[data-testid=dm-list] [data-testid=room-link][data-room="${dm}"]`, { hasText: 'ben' }).waitFor();
    await send(page, 'just between us');
    await waitForTexts(page, ['just between us']);

    // ben's DM list shows it, named after ann, with an unread badge
    const link = ben.page.locator(`[data-testid=dm-list] [data-testid=room-link][data-room="${dm}"]`);
    await link.waitFor();
    assert.equal((await link.locator('.room-name').textContent()).trim(), 'ann');
    await waitUnread(ben.page, dm, '1');
    // ben types ann's name in the new-DM dialog: the same conversation
    await ben.page.locator('[data-testid=new-dm]').click();
    await ben.page.locator('[data-testid=dm-names]').fill('ann');
    await ben.page.locator('[data-testid=dm-start]').click();
    await ben.page.locator('[data-testid=dm-dialog]').waitFor({ state: 'hidden' });
    assert.equal(decodeURIComponent(new URL(ben.page.url()).hash.slice(1)), dm);
    await waitForTexts(ben.page, ['just between us']);
    await waitUnread(ben.page, dm, '');
    await send(ben.page, 'agreed');
    await waitForTexts(page, ['agreed']);
    await screenshot(ben.page, 'accounts-dm');
});

test('unread badges from the server clear on the other device of the account', { timeout: 120000 }, async () => {
    // ann on a second device; both of ann's pages look at general
    const laptop = ann.page;
    const phone = await openSignedOut(browser, server);
    opened.push({ ...phone, label: 'ann (second device)' });
    await enterAs(phone.page, 'signin', 'ann', PW.ann);
    await phone.page.locator('[data-testid=room-link][data-room=plans]').waitFor();
    await laptop.evaluate(() => {
        location.hash = 'general';
    });
    await waitJoined(laptop, 'general');
    const sent = annReads;

    // ben writes three messages in plans while ann is elsewhere
    await openRoomLink(ben.page, 'plans');
    for (const text of ['first while away', 'second while away', 'third while away']) await send(ben.page, text);
    await waitForTexts(ben.page, ['third while away']);
    await waitUnread(laptop, 'plans', '3');
    await waitUnread(phone.page, 'plans', '3');
    await screenshot(phone.page, 'accounts-unread-badge');

    // the laptop reads plans: the divider marks where ann stopped, and the
    // phone's badge goes within a second or two
    await openRoomLink(laptop, 'plans');
    await waitForTexts(laptop, ['first while away', 'second while away', 'third while away']);
    await laptop.locator('[data-testid=new-divider]').waitFor();
    const firstAfter = await laptop.evaluate(() => {
        const next = document.querySelector('[data-testid=new-divider]').nextElementSibling;
        return next?.querySelector('[data-testid=message-text]')?.textContent ?? next?.outerHTML;
    });
    assert.equal(firstAfter, 'first while away', 'the divider is right before the first unread message');
    await waitUnread(laptop, 'plans', '');
    await waitUnread(phone.page, 'plans', '', 5000); // the other device's badge clears
    await screenshot(laptop, 'accounts-new-divider');

    // read frames: only forward, at most one a second per room
    assert.ok(sent.some((f) => f.room === 'plans'), 'the laptop sent a read frame for plans');
    const perRoom = new Map();
    for (const frame of sent) {
        const before = perRoom.get(frame.room);
        if (before) {
            assert.ok(frame.id > before.id, `read ids only grow: ${JSON.stringify(sent)}`);
            assert.ok(frame.at - before.at >= 900, `at most one read a second: ${JSON.stringify(sent)}`);
        }
        perRoom.set(frame.room, frame);
    }

    // a message read on the phone clears it on the laptop too
    await openRoomLink(laptop, 'general');
    await openRoomLink(phone.page, 'general');
    await send(ben.page, 'one more');
    await waitUnread(laptop, 'plans', '1');
    await waitUnread(phone.page, 'plans', '1');
    await openRoomLink(phone.page, 'plans');
    await waitForTexts(phone.page, ['one more']);
    await waitUnread(laptop, 'plans', '', 5000);

    // a reload keeps the session (cookie) and the read state
    await laptop.reload();
    await laptop.locator('[data-testid=conn-state][data-state=online]').waitFor();
    await laptop.locator('[data-testid=room-link][data-room=plans]').waitFor();
    await waitUnread(laptop, 'plans', '');
    assert.equal(await laptop.locator('[data-testid=auth-page]').isVisible(), false, 'still signed in after a reload');

    // "sign out everywhere" on the phone signs the laptop out too
    await phone.page.locator('[data-testid=change-name]').click();
    await phone.page.locator('[data-testid=sign-out-everywhere]').click();
    await phone.page.locator('[data-testid=auth-page]').waitFor();
    await laptop.locator('[data-testid=auth-page]').waitFor();
    await laptop.locator('[data-testid=auth-error]', { hasText: 'session has ended' }).waitFor();
});

test('profile: display name and colour, password change, sign out', { timeout: 120000 }, async () => {
    const { page } = ben;
    await page.locator('[data-testid=change-name]').click();
    await page.locator('[data-testid=profile-dialog][open]').waitFor();
    await page.locator('[data-testid=profile-display]').fill('Benjamin');
    await page.locator('[data-testid=profile-color]').fill('#0f766e');
    await page.locator('[data-testid=profile-save]').click();
    await page.locator('[data-testid=profile-status]', { hasText: 'Saved' }).waitFor();
    await page.locator('[data-testid=me-name]', { hasText: 'Benjamin' }).waitFor();

    await page.locator('[data-testid=password-old]').fill('not my password');
    await page.locator('[data-testid=password-new]').fill('ben-password-3');
    await page.locator('[data-testid=password-save]').click();
    await page.locator('[data-testid=password-status].error', { hasText: 'current password is wrong' }).waitFor();
    await page.locator('[data-testid=password-old]').fill(PW.ben);
    await page.locator('[data-testid=password-new]').fill('ben-password-3');
    await page.locator('[data-testid=password-save]').click();
    await page.locator('[data-testid=password-status]:not(.error)', { hasText: 'Password changed' }).waitFor();
    await screenshot(page, 'accounts-profile');

    await page.locator('[data-testid=sign-out-account]').click();
    await page.locator('[data-testid=auth-page]').waitFor();
    const kept = await page.evaluate(() => Object.keys(localStorage).filter((k) => k !== 'turbochat.mode'));
    assert.deepEqual(kept, [], 'nothing of ben stays on the device');
    await enterAs(page, 'signin', 'ben', 'ben-password-3');
    await page.locator('[data-testid=room-link][data-room=plans]').waitFor();
});

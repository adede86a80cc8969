// Moderation on the website (issue 10, part 5; docs/PROTOCOL.md "Moderation:
// mute and ban"), with auth = accounts: the admin opens the Moderation
// dialog of a room, mutes a second person after a confirmation (their page
// shows a notice instead of the composer), lifts it from the Muted list,
// then bans them (their page closes the room with "You were banned from
// #general" and cannot rejoin it) and lifts the ban, after which they join
// again. The confirmation is answered with the keyboard.
// Selectors: moderation-open (room header), moderation-dialog with
// moderation-person[data-user] (person-mute, person-ban), moderation-name,
// moderation-mute, moderation-ban, moderation-confirm (moderation-yes,
// moderation-cancel), moderation-muted / moderation-banned lists of
// muted-user / banned-user[data-user] (unmute, unban); muted-notice,
// moderation-note above the composer.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { mintToken } from '../lib/lifecycle.mjs';
import { startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, accountsServerEnv, assertClean, launchBrowser, openAccount, openPage, screenshot, send,
    waitForTexts, waitJoined, waitOnline } from './helpers.mjs';

let server;
let browser;
const opened = [];

before(async () => {
    server = await startServer({ env: accountsServerEnv(), args: SERVER_ARGS });
    browser = await launchBrowser();
});

after(async () => {
    for (const { problems, label } of opened) assertClean(assert, problems, label);
    await browser?.close();
    await stopAll();
});

// Answers the confirmation of the dialog with the keyboard (its Confirm
// button has the focus) and waits for the status line.
async function confirmWithKeyboard(page, statusText) {
    await page.locator('[data-testid=moderation-confirm]').waitFor();
    const focused = await page.evaluate(() => document.activeElement?.dataset.testid);
    assert.equal(focused, 'moderation-yes', 'the confirmation takes the focus');
    await page.keyboard.press('Enter');
    await page.locator('[data-testid=moderation-status]', { hasText: statusText }).waitFor();
}

test('a moderator mutes and bans through the UI, the other page shows it, and both are lifted', { timeout: 180000 }, async () => {
    const ann = await openAccount(browser, server, 'ann', 'ann-password-1'); // the first account: admin
    opened.push({ ...ann, label: 'ann' });
    const ben = await openAccount(browser, server, 'ben', 'ben-password-2');
    opened.push({ ...ben, label: 'ben' });
    const a = ann.page;
    const b = ben.page;

    // ben, no moderator, has no Moderation button; ann has it
    await a.locator('[data-testid=moderation-open]').waitFor();
    assert.equal(await b.locator('[data-testid=moderation-open]').isVisible(), false, 'ben moderates nothing');

    // mute ben by name, after the confirmation
    await a.locator('[data-testid=moderation-open]').click();
    await a.locator('[data-testid=moderation-dialog][open]').waitFor();
    await a.locator('[data-testid=moderation-name]').fill('ben');
    await a.locator('[data-testid=moderation-mute]').click();
    assert.match(await a.locator('[data-testid=moderation-confirm]').textContent(), /Mute ben in #general\?/);
    await confirmWithKeyboard(a, 'ben was muted');
    await a.locator('[data-testid=moderation-muted] [data-testid=muted-user][data-user=ben]').waitFor();
    await screenshot(a, 'moderation-dialog');

    // ben's page: a notice instead of the composer; ann's room says who did it
    await b.locator('[data-testid=muted-notice]', { hasText: 'You are muted in #general' }).waitFor();
    assert.equal(await b.locator('[data-testid=composer-input]').isVisible(), false, 'no composer while muted');
    await b.locator('[data-testid=moderation-note]', { hasText: 'ben was muted by ann.' }).waitFor();
    await screenshot(b, 'moderation-muted');

    // unmute from the Muted list
    await a.locator('[data-testid=muted-user][data-user=ben] [data-testid=unmute]').click();
    await confirmWithKeyboard(a, 'ben was unmuted');
    await b.locator('[data-testid=muted-notice]').waitFor({ state: 'hidden' });
    await send(b, 'free to speak again');
    await waitForTexts(a, ['free to speak again']);

    // ban ben from the people online
    await a.locator('[data-testid=moderation-person][data-user=ben] [data-testid=person-ban]').click();
    assert.match(await a.locator('[data-testid=moderation-confirm]').textContent(), /Ban ben from #general\?/);
    // Cancel first: nothing happens
    await a.locator('[data-testid=moderation-cancel]').click();
    assert.equal(await a.locator('[data-testid=moderation-confirm]').isVisible(), false);
    await a.locator('[data-testid=moderation-person][data-user=ben] [data-testid=person-ban]').click();
    await confirmWithKeyboard(a, 'ben was banned');
    await a.locator('[data-testid=moderation-banned] [data-testid=banned-user][data-user=ben]').waitFor();

    // ben's page closes the room and says why; rejoining is refused
    await b.locator('[data-testid=banner]', { hasText: 'You were banned from #general.' }).waitFor();
    await screenshot(b, 'moderation-banned');
    await b.evaluate(() => { location.hash = 'general'; });
    await b.locator('[data-testid=banner]', { hasText: 'you are banned from general' }).waitFor();
    assert.equal(await b.locator('[data-testid=my-rooms] [data-testid=room-link][data-room=general]:not(.not-joined)').count(), 0,
        'ben is not in general');

    // the ban is lifted; ben joins again
    await a.locator('[data-testid=banned-user][data-user=ben] [data-testid=unban]').click();
    await confirmWithKeyboard(a, 'ben was unbanned');
    await a.locator('[data-testid=moderation-banned] [data-testid=banned-user]').waitFor({ state: 'detached' });
    await screenshot(a, 'moderation-lifted');
    await a.keyboard.press('Escape');
    await a.locator('[data-testid=moderation-dialog]').waitFor({ state: 'hidden' });
    await b.reload();
    await waitJoined(b, 'general');
    await send(b, 'back after the ban');
    await waitForTexts(a, ['back after the ban']);
});

// With auth = token: a token of role mod gets the Moderation button, a plain
// token does not (the page never asks the server); the mod bans through the
// people online, and the other page shows the ban.
test('auth = token: a mod token moderates, a plain one does not', { timeout: 120000 }, async () => {
    const secret = 'moderation-browser-secret-0123456789';
    const tokenServer = await startServer({ env: { TURBOCHAT_AUTH_SECRET: secret, TURBOCHAT_RATE_LIMIT: '10000',
        TURBOCHAT_RATE_BURST: '10000' }, args: SERVER_ARGS });
    async function signInWith(token, label) {
        const opened_ = await openPage(browser, tokenServer, { room: 'team-a' });
        opened.push({ ...opened_, label });
        const { page } = opened_;
        page.asked = [];
        page.on('request', (r) => { if (r.url().includes('/moderation')) page.asked.push(r.url()); });
        await page.locator('[data-testid=name-dialog][data-mode=token]').waitFor();
        await page.locator('[data-testid=token-input]').fill(token);
        await page.locator('[data-testid=token-input]').press('Enter');
        await waitOnline(page);
        await waitJoined(page, 'team-a');
        return page;
    }
    const dora = await signInWith(mintToken(secret, { user: 'dora' }), 'dora');
    const mo = await signInWith(mintToken(secret, { user: 'mo', rooms: 'team-*', role: 'mod' }), 'mo');
    await mo.locator('[data-testid=moderation-open]').waitFor();
    await mo.locator('[data-testid=moderation-open]').click();
    await mo.locator('[data-testid=moderation-person][data-user=dora] [data-testid=person-ban]').click();
    await confirmWithKeyboard(mo, 'dora was banned');
    await dora.locator('[data-testid=banner]', { hasText: 'You were banned from #team-a.' }).waitFor();
    assert.equal(await dora.locator('[data-testid=moderation-open]').isVisible(), false, 'no button for a plain token');
    assert.deepEqual(dora.asked, [], 'a plain token never asks for the moderation list');
    assert.ok(mo.asked.length > 0, 'the mod token asks');
});

// The website with auth = accounts: sign-in and sign-up errors as people
// see them (a short password, a taken name, a wrong password, the sign-in
// limit with its Retry-After, invite-only and closed sign-up), and the admin
// page: the first account is the admin; it disables an account (whose other
// browser is signed out at once and cannot sign in), enables it again,
// resets its password, closes a room (its members are told), and makes an
// invite link that fills the sign-up form. Selectors: see helpers.mjs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, accountsServerEnv, assertClean, enterAs, launchBrowser, openAccount, openRoomLink,
    openSignedOut, screenshot, send, submitAuth, waitForTexts } from './helpers.mjs';

let browser;

before(async () => {
    browser = await launchBrowser();
});

after(async () => {
    await browser?.close();
    await stopAll();
});

function authError(page, text) {
    return page.locator('[data-testid=auth-error]', { hasText: text }).waitFor();
}

test('sign-in and sign-up errors are shown where the person looks', { timeout: 180000 }, async () => {
    const server = await startServer({ env: accountsServerEnv({ TURBOCHAT_SIGNIN_RATE_LIMIT: '3' }), args: SERVER_ARGS });
    const first = await openAccount(browser, server, 'cora', 'cora-password-1');
    await first.context.close();

    const { page, context, problems } = await openSignedOut(browser, server);
    // checked in the page: a password too short
    await submitAuth(page, 'signup', 'dora', 'short');
    await authError(page, 'at least 8 characters');
    assert.equal(await page.locator('[data-testid=auth-password]').getAttribute('aria-invalid'), 'true');
    // from the server: the name is taken (whatever its ASCII case)
    await submitAuth(page, 'signup', 'Cora', 'another-password');
    await authError(page, 'is taken');
    assert.equal(await page.locator('[data-testid=auth-name]').getAttribute('aria-invalid'), 'true');
    // a wrong password, then the sign-in limit with the seconds to wait
    for (let i = 0; i < 3; i++) {
        await submitAuth(page, 'signin', 'cora', `wrong-password-${i}`);
        await authError(page, 'Wrong name or password');
        await page.locator('[data-testid=auth-submit]:not([disabled])').waitFor();
    }
    await submitAuth(page, 'signin', 'cora', 'wrong-password-again');
    await authError(page, /Too many attempts\. Try again in \d+ seconds?\./);
    await screenshot(page, 'accounts-sign-in-limited');
    await context.close();
    assertClean(assert, problems, 'errors');

    // invite-only: the code field is there, and an unknown code is refused
    const invited = await startServer({ env: accountsServerEnv({ TURBOCHAT_SIGNUP: 'invite' }), args: SERVER_ARGS });
    const inv = await openSignedOut(browser, invited);
    await inv.page.locator('[data-testid=auth-switch]').click();
    await inv.page.locator('[data-testid=auth-invite]').waitFor();
    await submitAuth(inv.page, 'signup', 'eli', 'eli-password-1');
    await authError(inv.page, 'Type the invite code');
    await submitAuth(inv.page, 'signup', 'eli', 'eli-password-1', { invite: 'not-a-code' });
    await authError(inv.page, 'invite code is not valid');
    assert.equal(await inv.page.locator('[data-testid=auth-invite]').getAttribute('aria-invalid'), 'true');
    await screenshot(inv.page, 'accounts-invite-invalid');
    assertClean(assert, inv.problems, 'invite-only');
    await inv.context.close();

    // closed: no sign-up offered; an old invite link gets the server's answer
    const closed = await startServer({ env: accountsServerEnv({ TURBOCHAT_SIGNUP: 'closed' }), args: SERVER_ARGS });
    const cl = await openSignedOut(browser, closed);
    assert.equal(await cl.page.locator('[data-testid=auth-switch]').isVisible(), false, 'no sign-up link');
    await cl.context.close();
    const old = await openSignedOut(browser, closed, { path: '/?invite=old-code#general' });
    await old.page.locator('[data-testid=auth-form][data-mode=signup]').waitFor();
    await submitAuth(old.page, 'signup', 'fin', 'fin-password-1');
    await authError(old.page, 'Sign-up is closed');
    assertClean(assert, old.problems, 'closed');
    await old.context.close();
});

test('admin page: disable (the other browser is signed out), enable, reset, close a room, invite link',
    { timeout: 180000 }, async () => {
        const server = await startServer({ env: accountsServerEnv(), args: SERVER_ARGS });
        const ada = await openAccount(browser, server, 'ada', 'ada-password-1');
        const eve = await openAccount(browser, server, 'eve', 'eve-password-1');
        const { page } = ada;

        // only an admin sees the way in
        await eve.page.locator('[data-testid=change-name]').click();
        assert.equal(await eve.page.locator('[data-testid=open-admin]').isVisible(), false, 'no admin page for eve');
        await eve.page.keyboard.press('Escape');

        await page.locator('[data-testid=change-name]').click();
        await page.locator('[data-testid=open-admin]').click();
        await page.locator('[data-testid=admin-dialog][open]').waitFor();
        await page.locator('[data-testid=admin-user][data-user=ada]', { hasText: 'admin' }).waitFor();
        const eveRow = page.locator('[data-testid=admin-user][data-user=eve]');

        // disable: eve's browser is signed out at once and cannot sign in
        await eveRow.locator('[data-testid=admin-disable]').click();
        await eveRow.locator('.state-tag', { hasText: 'disabled' }).waitFor();
        await eve.page.locator('[data-testid=auth-page]').waitFor();
        await eve.page.locator('[data-testid=auth-error]', { hasText: 'session has ended' }).waitFor();
        await screenshot(page, 'accounts-admin');
        await screenshot(eve.page, 'accounts-disabled-signed-out');
        await submitAuth(eve.page, 'signin', 'eve', 'eve-password-1');
        await eve.page.locator('[data-testid=auth-error]', { hasText: 'Wrong name or password' }).waitFor();

        // enable, then a new password set by the admin
        await eveRow.locator('[data-testid=admin-enable]').click();
        await eveRow.locator('[data-testid=admin-disable]').waitFor();
        await eveRow.locator('[data-testid=admin-reset]').click();
        await eveRow.locator('[data-testid=admin-reset-input]').fill('eve-password-2');
        await eveRow.locator('[data-testid=admin-reset-save]').click();
        await page.locator('[data-testid=admin-status]', { hasText: 'password of eve was reset' }).waitFor();
        await submitAuth(eve.page, 'signin', 'eve', 'eve-password-1');
        await eve.page.locator('[data-testid=auth-error]', { hasText: 'Wrong name or password' }).waitFor();
        await enterAs(eve.page, 'signin', 'eve', 'eve-password-2');

        // a public room both are in, to be closed
        await page.keyboard.press('Escape');
        await page.locator('[data-testid=admin-dialog]').waitFor({ state: 'hidden' });
        await page.locator('[data-testid=new-room]').click();
        await page.locator('[data-testid=room-name]').fill('doomed');
        await page.locator('[data-testid=room-create]').click();
        await page.locator('[data-testid=room-dialog]').waitFor({ state: 'hidden' });
        await send(page, 'this room will close');
        await openRoomLink(eve.page, 'doomed');
        await waitForTexts(eve.page, ['this room will close']);
        await page.locator('[data-testid=change-name]').click();
        await page.locator('[data-testid=open-admin]').click();

        // close a room: its members are told and it leaves their list
        const doomed = page.locator('[data-testid=admin-room][data-room=doomed]');
        await doomed.locator('[data-testid=admin-close]').click();
        await doomed.locator('[data-testid=admin-close]', { hasText: 'Confirm' }).click();
        await doomed.locator('.state-tag', { hasText: 'closed' }).waitFor();
        await eve.page.locator('[data-testid=banner]', { hasText: 'closed' }).waitFor();
        await eve.page.locator('[data-testid=room-link][data-room=doomed]').waitFor({ state: 'detached' });

        // an invite link fills the sign-up form
        await page.locator('[data-testid=admin-invite]').click();
        const link = await page.locator('[data-testid=admin-invite-link]').first().inputValue();
        assert.match(link, /\/\?invite=/);
        await page.keyboard.press('Escape');
        await page.locator('[data-testid=admin-dialog]').waitFor({ state: 'hidden' });
        const fay = await openSignedOut(browser, server, { path: new URL(link).pathname + new URL(link).search });
        await fay.page.locator('[data-testid=auth-form][data-mode=signup]').waitFor();
        assert.equal(await fay.page.locator('[data-testid=auth-invite]').inputValue(), new URL(link).searchParams.get('invite'));
        await enterAs(fay.page, 'signup', 'fay', 'fay-password-1');
        assert.equal(new URL(fay.page.url()).search, '', 'the code leaves the address once used');

        for (const [who, opened] of [['ada', ada], ['eve', eve], ['fay', fay]]) assertClean(assert, opened.problems, who);
    });

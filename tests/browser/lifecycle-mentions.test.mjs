// Mentions in the UI (issue 8): `@` in the composer offers the room's members
// (online and seen writing), picked with the arrow keys and Enter or Tab and
// closed with Escape; @names are highlighted in the text and a message that
// mentions me stands out; a mention in a room not on screen puts a badge on
// the room, cleared when it is read; with the tab hidden and notifications
// allowed, a mention shows a browser notification (never asked for on load).
// Selectors: see helpers.mjs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, TIMEOUT, assertClean, launchBrowser, messageId, messageRow, openChat, postMessage,
    screenshot, send, waitForTexts, waitJoined } from './helpers.mjs';

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

function options(page) {
    return page.locator('[data-testid=mention-option]').evaluateAll((items) => items.map((i) => i.dataset.user));
}

function selected(page) {
    return page.locator('[data-testid=mention-option][aria-selected=true]').getAttribute('data-user');
}

test('@ autocomplete of room members: arrows, Enter and Tab pick, Escape closes', { timeout: 180000 }, async () => {
    const room = 'mentions-complete';
    await postMessage(server, room, 'barbara', 'seen writing, not online');
    const alice = await openChat(browser, server, { name: 'alice', room });
    const bob = await openChat(browser, server, { name: 'bob', room });
    const bea = await openChat(browser, server, { name: 'bea', room });
    await send(bob.page, 'bob was here');
    await waitForTexts(alice.page, ['seen writing, not online', 'bob was here']);
    await alice.page.locator('[data-testid=member][data-user=bea]').waitFor();

    const box = alice.page.locator('[data-testid=composer-input]');
    const list = alice.page.locator('[data-testid=mention-list]');
    await box.click();
    await alice.page.keyboard.type('hey @b');
    await list.waitFor();
    // online first, then those seen writing; never oneself
    assert.deepEqual(await options(alice.page), ['bea', 'bob', 'barbara']);
    assert.equal(await selected(alice.page), 'bea');
    await alice.page.keyboard.press('ArrowDown');
    assert.equal(await selected(alice.page), 'bob');
    await alice.page.keyboard.press('ArrowDown');
    await alice.page.keyboard.press('ArrowDown');
    assert.equal(await selected(alice.page), 'bea', 'the arrows wrap around');
    await alice.page.keyboard.press('ArrowUp');
    assert.equal(await selected(alice.page), 'barbara', 'both ways');
    await alice.page.keyboard.press('ArrowUp');
    assert.equal(await selected(alice.page), 'bob');
    await alice.page.keyboard.press('Enter');
    await list.waitFor({ state: 'hidden' });
    assert.equal(await box.inputValue(), 'hey @bob ', 'Enter picked bob and did not send');

    // typing narrows the list; Tab picks
    await alice.page.keyboard.type('and @bar');
    await list.waitFor();
    assert.deepEqual(await options(alice.page), ['barbara']);
    await screenshot(alice.page, 'lifecycle-autocomplete');
    await alice.page.keyboard.press('Tab');
    await list.waitFor({ state: 'hidden' });
    assert.equal(await box.inputValue(), 'hey @bob and @barbara ');
    assert.ok(await box.evaluate((e) => document.activeElement === e), 'Tab left the focus in the composer');

    // Escape closes the list and keeps the text
    await alice.page.keyboard.type('@be');
    await list.waitFor();
    await alice.page.keyboard.press('Escape');
    await list.waitFor({ state: 'hidden' });
    assert.equal(await box.inputValue(), 'hey @bob and @barbara @be');

    // the message sent shows its mentions highlighted
    await box.fill('hey @bob and @barbara');
    await box.press('Enter');
    const id = await messageId(bob.page, 'hey @bob and @barbara');
    const marks = messageRow(bob.page, id).locator('[data-testid=mention]');
    await marks.first().waitFor();
    assert.deepEqual(await marks.allTextContents(), ['@bob', '@barbara']);
    assert.deepEqual(await messageRow(bob.page, id).locator('.mention-me').allTextContents(), ['@bob'],
        'the mention of the reader stands out');
    assert.equal(await messageRow(bob.page, id).getAttribute('data-mentions-me'), 'true');
    assert.equal(await messageRow(bea.page, id).getAttribute('data-mentions-me'), null);
    for (const p of [alice, bob, bea]) assertClean(assert, p.problems, 'page');
    for (const p of [alice, bob, bea]) await p.context.close();
});

test('a mention in a room not on screen puts a badge on the room, cleared when read', { timeout: 180000 }, async () => {
    const open = 'mentions-open';
    const other = 'mentions-other';
    const unjoined = 'mentions-elsewhere';
    const carol = await openChat(browser, server, { name: 'carol', room: other });
    await send(carol.page, 'carol in other');
    await waitForTexts(carol.page, ['carol in other']);
    await carol.page.evaluate((r) => { location.hash = r; }, open);
    await waitJoined(carol.page, open);
    // carol wrote in "elsewhere" once, from another tool, and never joined it here
    await postMessage(server, unjoined, 'carol', 'carol elsewhere, long ago');

    const dan = await openChat(browser, server, { name: 'dan', room: other });
    await send(dan.page, 'ping @carol, look');
    await postMessage(server, unjoined, 'dan', '@carol over here too');

    const badge = carol.page.locator(`[data-testid=room-link][data-room="${other}"] [data-testid=room-mentions]`);
    await badge.waitFor();
    assert.equal(await badge.textContent(), '@1');
    const far = carol.page.locator(`[data-testid=other-rooms] [data-testid=room-link][data-room="${unjoined}"] [data-testid=room-mentions]`);
    await far.waitFor();
    await screenshot(carol.page, 'lifecycle-mention-badge');
    assert.equal(await carol.page.locator(`[data-testid=room-link][data-room="${open}"] [data-testid=room-mentions]`).count(), 0);

    // opening the room reads it: the badge goes, the message stands out
    await carol.page.locator(`[data-testid=room-link][data-room="${other}"]`).click();
    const id = await messageId(carol.page, 'ping @carol, look');
    await badge.waitFor({ state: 'detached' });
    assert.equal(await messageRow(carol.page, id).getAttribute('data-mentions-me'), 'true');
    assert.deepEqual(await messageRow(carol.page, id).locator('.mention-me').allTextContents(), ['@carol']);
    await carol.page.locator(`[data-testid=room-link][data-room="${unjoined}"]`).click();
    await waitForTexts(carol.page, ['@carol over here too']);
    await far.waitFor({ state: 'detached' });
    assertClean(assert, carol.problems, 'carol');
    assertClean(assert, dan.problems, 'dan');
    await carol.context.close();
    await dan.context.close();
});

// Records Notification constructions and lets the test hide the page.
function spyOnNotifications() {
    window.__notes = [];
    window.__asked = 0;
    const Real = window.Notification;
    class Spy {
        constructor(title, options = {}) {
            window.__notes.push({ title, body: options.body });
        }

        close() {}

        static get permission() {
            return Real ? Real.permission : 'default';
        }

        static requestPermission() {
            window.__asked += 1;
            return Real ? Real.requestPermission() : Promise.resolve('default');
        }
    }
    window.Notification = Spy;
    let hidden = false;
    Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => hidden });
    Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true,
        get: () => (hidden ? 'hidden' : 'visible') });
    window.__setHidden = (value) => {
        hidden = value;
        document.dispatchEvent(new Event('visibilitychange'));
    };
}

test('a mention while the tab is hidden shows a notification, once permission was granted', { timeout: 180000 },
    async () => {
        const room = 'mentions-notify';
        const erin = await openChat(browser, server, { name: 'erin', room });
        await erin.context.addInitScript(spyOnNotifications);
        await erin.context.grantPermissions(['notifications'], { origin: server.url });
        await erin.page.reload();
        await waitJoined(erin.page, room);
        await send(erin.page, 'erin is here');
        await waitForTexts(erin.page, ['erin is here']);
        // a second person who has not allowed notifications
        const fred = await openChat(browser, server, { name: 'fred', room });
        await fred.context.addInitScript(spyOnNotifications);
        await fred.page.reload();
        await waitJoined(fred.page, room);
        await send(fred.page, 'fred is here');
        await waitForTexts(erin.page, ['fred is here']);
        assert.equal(await erin.page.evaluate(() => window.__asked), 0, 'never asked on load');
        assert.equal(await fred.page.evaluate(() => window.__asked), 0, 'never asked on load');
        const toggle = erin.page.locator('[data-testid=notify-toggle]');
        assert.equal(await toggle.getAttribute('aria-pressed'), 'true', 'granted: notifications on');
        assert.notEqual(await fred.page.locator('[data-testid=notify-toggle]').getAttribute('aria-pressed'), 'true');

        // visible: no notification for a mention
        const gil = await openChat(browser, server, { name: 'gil', room });
        await send(gil.page, '@erin @fred while you look');
        await waitForTexts(erin.page, ['@erin @fred while you look']);
        await waitForTexts(fred.page, ['@erin @fred while you look']);
        assert.deepEqual(await erin.page.evaluate(() => window.__notes), []);

        // hidden: a notification with the mention's text for erin, none for fred
        await erin.page.evaluate(() => window.__setHidden(true));
        await fred.page.evaluate(() => window.__setHidden(true));
        await send(gil.page, '@erin @fred hidden tabs, look here');
        await erin.page.waitForFunction(() => window.__notes.length > 0, null, { timeout: TIMEOUT });
        const [note] = await erin.page.evaluate(() => window.__notes);
        assert.match(note.title, /gil/);
        assert.equal(note.body, '@erin @fred hidden tabs, look here');
        await waitForTexts(fred.page, ['@erin @fred hidden tabs, look here']);
        assert.deepEqual(await fred.page.evaluate(() => window.__notes), [], 'no permission, no notification');
        // hidden, the room counts the mention; visible again, it is read
        const badge = erin.page.locator(`[data-testid=room-link][data-room="${room}"] [data-testid=room-mentions]`);
        await badge.waitFor();
        await erin.page.evaluate(() => window.__setHidden(false));
        await badge.waitFor({ state: 'detached' });

        // the toggle turns them off; then nothing is shown
        await toggle.click();
        await erin.page.locator('[data-testid=notify-toggle][aria-pressed=false]').waitFor();
        await erin.page.evaluate(() => window.__setHidden(true));
        await send(gil.page, '@erin once more');
        await waitForTexts(erin.page, ['@erin once more']);
        await badge.waitFor();
        assert.equal(await erin.page.evaluate(() => window.__notes.length), 1, 'turned off: no notification');
        // fred's button asks the browser, on his click only
        await fred.page.locator('[data-testid=notify-toggle]').click();
        await fred.page.waitForFunction(() => window.__asked === 1);
        for (const p of [erin, fred, gil]) assertClean(assert, p.problems, 'page');
        for (const p of [erin, fred, gil]) await p.context.close();
    });

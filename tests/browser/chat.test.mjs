// Two people chat in a room: messages both ways, presence in the members
// panel, "is typing…", Shift+Enter newlines, links, hostile text rendered as
// text, joining a room by name (and a refused name), and the page's CSP.
// Selectors: see helpers.mjs; also [data-testid=join-input], [data-testid=join-error],
// [data-testid=member-list], [data-testid=room-title].
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, TIMEOUT, assertClean, launchBrowser, openChat, screenshot, send, storedTexts,
    waitForTexts, waitJoined } from './helpers.mjs';

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

test('two pages chat: messages, presence, typing, hostile text, CSP', { timeout: 120000 }, async () => {
    const alice = await openChat(browser, server, { name: 'alice', room: 'lobby' });
    assert.match(alice.csp, /script-src 'self'/, 'the page is served with a Content-Security-Policy');
    const bob = await openChat(browser, server, { name: 'bob', room: 'lobby' });

    // presence: each sees both in the members panel
    for (const p of [alice.page, bob.page]) {
        await p.locator('[data-testid=member][data-user=alice]').waitFor();
        await p.locator('[data-testid=member][data-user=bob]').waitFor();
    }

    // a round trip both ways
    await send(alice.page, 'hello bob');
    await waitForTexts(bob.page, ['hello bob']);
    await bob.page.locator('[data-testid=announcer]', { hasText: 'alice: hello bob' }).waitFor({ state: 'attached' });
    await send(bob.page, 'hi alice');
    await waitForTexts(alice.page, ['hello bob', 'hi alice']);
    const own = alice.page.locator('[data-testid=message].own [data-testid=message-text]', { hasText: 'hello bob' });
    assert.equal(await own.count(), 1, "alice's own message is marked as hers");

    // typing indicator: bob's message ended his "is typing"; typing again shows it again
    const bobTyping = alice.page.locator('[data-testid=typing]', { hasText: 'bob is typing' });
    await bobTyping.waitFor({ state: 'detached' });
    await bob.page.locator('[data-testid=composer-input]').fill('drafting');
    await bobTyping.waitFor();
    await bob.page.locator('[data-testid=composer-input]').fill('');

    // Shift+Enter keeps a newline; a link becomes a safe link
    const box = alice.page.locator('[data-testid=composer-input]');
    await box.fill('line one');
    await box.press('Shift+Enter');
    await box.pressSequentially('line two https://example.com/a?b=1.');
    await box.press('Enter');
    await waitForTexts(bob.page, ['line one\nline two https://example.com/a?b=1.']);
    const link = bob.page.locator('[data-testid=message-text] a', { hasText: 'https://example.com/a?b=1' });
    assert.equal(await link.getAttribute('href'), 'https://example.com/a?b=1');
    assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
    assert.equal(await link.getAttribute('target'), '_blank');

    // hostile text is text
    const hostile = ['<img src=x onerror=alert(1)>', '<script>alert(1)</script>', 'javascript:alert(1) <b>bold</b>'];
    for (const text of hostile) await send(alice.page, text);
    await waitForTexts(bob.page, hostile);
    await waitForTexts(alice.page, hostile);
    for (const p of [alice.page, bob.page]) {
        const texts = await storedTexts(p);
        for (const text of hostile) assert.ok(texts.includes(text), `shown verbatim: ${text}`);
        assert.equal(await p.locator('[data-testid=message-list] img, [data-testid=message-list] script, [data-testid=message-list] b').count(), 0);
    }

    await screenshot(alice.page, 'chat-alice-desktop');
    await screenshot(bob.page, 'chat-bob-desktop');

    // bob leaves: alice's members panel drops him
    await bob.context.close();
    await alice.page.locator('[data-testid=member][data-user=bob]').waitFor({ state: 'detached' });

    assertClean(assert, alice.problems, 'alice');
    assertClean(assert, bob.problems, 'bob');
    await alice.context.close();
});

test('rooms: join by name, refuse a bad name, switch, unread, leave', { timeout: 120000 }, async () => {
    const carol = await openChat(browser, server, { name: 'carol', room: 'general' });
    const page = carol.page;

    await page.locator('[data-testid=join-input]').fill('.hidden');
    await page.locator('[data-testid=join-input]').press('Enter');
    await page.locator('[data-testid=join-error]', { hasText: 'cannot start with' }).waitFor();

    await page.locator('[data-testid=join-input]').fill('team-2');
    await page.locator('[data-testid=join-input]').press('Enter');
    await waitJoined(page, 'team-2');
    assert.equal(new URL(page.url()).hash, '#team-2');
    await page.locator('[data-testid=room-title]', { hasText: '#team-2' }).waitFor();
    await send(page, 'in team-2');
    await waitForTexts(page, ['in team-2']);

    // a message in general while carol reads team-2 shows as unread
    const dave = await openChat(browser, server, { name: 'dave', room: 'general' });
    await send(dave.page, 'psst general');
    await waitForTexts(dave.page, ['psst general']);
    await page.locator('[data-testid=room-link][data-room=general] [data-testid=room-unread]', { hasText: '1' })
        .waitFor({ timeout: TIMEOUT });

    // switching back clears it and shows the message
    await page.locator('[data-testid=room-link][data-room=general]').click();
    await waitForTexts(page, ['psst general']);
    assert.equal(await page.locator('[data-testid=room-link][data-room=general] [data-testid=room-unread]').count(), 0);

    // leaving removes the room from "your rooms"
    await page.locator('[data-testid=leave-room]').click();
    await page.locator('[data-testid=my-rooms] [data-testid=room-link][data-room=general]').waitFor({ state: 'detached' });

    assertClean(assert, carol.problems, 'carol');
    assertClean(assert, dave.problems, 'dave');
    await carol.context.close();
    await dave.context.close();
});

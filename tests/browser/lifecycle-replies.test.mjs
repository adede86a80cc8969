// Replies in the UI (issue 8): the "reply" action puts a quote of the message
// above the composer (Escape or × cancels it); the message goes out with
// `reply_to` and shows the quote (author and first words) on every page; a
// click on the quote scrolls to the original and highlights it, loading it
// over REST, with the history in between, when it is not on screen; a deleted
// original leaves an erased quote.
// Selectors: see helpers.mjs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, assertClean, deleteOverRest, launchBrowser, messageId, messageRow, openChat, postMessage,
    rest, screenshot, send, storedTexts, waitForRowText, waitForTexts } from './helpers.mjs';

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

// Whether row is wholly inside the message pane's visible part.
function inView(page, id) {
    return page.$eval('[data-testid=messages]', (pane, i) => {
        const row = pane.querySelector(`[data-testid=message][data-id="${i}"]`);
        if (!row) return false;
        const p = pane.getBoundingClientRect();
        const r = row.getBoundingClientRect();
        return r.top >= p.top - 1 && r.bottom <= p.bottom + 1;
    }, id);
}

test('reply: a quote above the composer, Escape and × cancel, sent with reply_to, shown on every page',
    { timeout: 180000 }, async () => {
        const room = 'replies';
        const long = `the original question, ${'with many words '.repeat(10)}at the end`;
        const alice = await openChat(browser, server, { name: 'alice', room, record: true });
        const bob = await openChat(browser, server, { name: 'bob', room });
        await send(bob.page, long);
        const original = await messageId(alice.page, long);
        const row = messageRow(alice.page, original);
        const bar = alice.page.locator('[data-testid=reply-bar]');
        const box = alice.page.locator('[data-testid=composer-input]');

        // reply, then Escape in the composer cancels it
        await row.hover();
        await row.locator('[data-testid=action-reply]').click();
        await bar.waitFor();
        assert.equal(await alice.page.locator('[data-testid=reply-user]').textContent(), 'bob');
        const quoted = await alice.page.locator('[data-testid=reply-text]').textContent();
        assert.ok(quoted.startsWith('the original question, with many words'), quoted);
        assert.ok(quoted.endsWith('…') && [...quoted].length <= 101, `the first words only: ${quoted}`);
        assert.ok(await box.evaluate((e) => document.activeElement === e), 'the composer has the focus');
        await box.press('Escape');
        await bar.waitFor({ state: 'hidden' });

        // reply again, × cancels it
        await row.hover();
        await row.locator('[data-testid=action-reply]').click();
        await bar.waitFor();
        await alice.page.locator('[data-testid=reply-cancel]').click();
        await bar.waitFor({ state: 'hidden' });

        // and again: the answer goes out with reply_to
        await row.hover();
        await row.locator('[data-testid=action-reply]').click();
        await bar.waitFor();
        await send(alice.page, 'my answer');
        await bar.waitFor({ state: 'hidden' });
        const answer = await messageId(bob.page, 'my answer');
        const sent = alice.frames.sent.find((f) => f.type === 'send' && f.text === 'my answer');
        assert.equal(sent.reply_to, original, 'sent with reply_to');
        const plain = alice.frames.sent.filter((f) => f.type === 'send' && f.text !== 'my answer');
        assert.deepEqual(plain, [], 'the cancelled replies sent nothing');

        for (const p of [alice.page, bob.page]) {
            const quote = messageRow(p, answer).locator('[data-testid=reply-quote]');
            await quote.waitFor();
            assert.equal(await quote.getAttribute('data-target'), String(original));
            assert.match(await quote.textContent(), /bob.*the original question, with many words/);
        }
        // a click on the quote shows the original, highlighted
        await messageRow(bob.page, answer).locator('[data-testid=reply-quote]').click();
        await bob.page.locator(`[data-testid=message][data-id="${original}"].jumped`).waitFor();
        await screenshot(alice.page, 'lifecycle-reply');

        // the original is deleted: the quote is erased, the reply stays
        await deleteOverRest(server, room, original, 'bob');
        for (const p of [alice.page, bob.page]) {
            await waitForRowText(p, original, 'message deleted');
            await messageRow(p, answer).locator('[data-testid=reply-quote]', { hasText: 'message deleted' }).waitFor();
            await waitForRowText(p, answer, 'my answer');
        }
        assertClean(assert, alice.problems, 'alice');
        assertClean(assert, bob.problems, 'bob');
        await alice.context.close();
        await bob.context.close();
    });

test('the quote jumps to an original that is not on screen, loading it over REST', { timeout: 180000 }, async () => {
    const room = 'replies-far';
    const original = await postMessage(server, room, 'carl', 'far back: the original');
    const filler = Array.from({ length: 70 }, (_, i) => `filler ${String(i + 1).padStart(2, '0')}`);
    for (const text of filler) await postMessage(server, room, 'carl', text);
    const reply = await rest(server, 'POST', `/api/rooms/${room}/messages`,
        { user: 'dora', text: 'answering the first one', reply_to: original.id });
    assert.equal(reply.status, 201, reply.text);
    assert.equal(reply.body.reply_to?.id, original.id, 'the server recorded the reply');

    const { page, context, problems } = await openChat(browser, server, { name: 'eve', room });
    const requests = [];
    page.on('request', (req) => requests.push(new URL(req.url()).pathname + new URL(req.url()).search));
    await waitForTexts(page, ['answering the first one', 'filler 70']);
    assert.ok(!(await storedTexts(page)).includes('far back: the original'), 'the original is not loaded at first');

    await messageRow(page, reply.body.id).locator('[data-testid=reply-quote]').click();
    await page.locator(`[data-testid=message][data-id="${original.id}"].jumped`).waitFor();
    await waitForRowText(page, original.id, 'far back: the original');
    await page.waitForFunction((id) => {
        const pane = document.querySelector('[data-testid=messages]');
        const row = pane.querySelector(`[data-testid=message][data-id="${id}"]`);
        const p = pane.getBoundingClientRect();
        const r = row.getBoundingClientRect();
        return r.top >= p.top - 1 && r.bottom <= p.bottom + 1;
    }, original.id);
    assert.ok(await inView(page, original.id), 'the original is scrolled into view');
    assert.ok(requests.some((r) => r.startsWith(`/api/rooms/${room}/messages/${original.id}`)),
        `the original was asked for over REST (${requests.join(', ')})`);
    // the history between stays whole: every message once, in order
    const texts = await storedTexts(page);
    assert.deepEqual(texts, ['far back: the original', ...filler, 'answering the first one']);
    await screenshot(page, 'lifecycle-reply-jump');
    assertClean(assert, problems, 'eve');
    await context.close();
});

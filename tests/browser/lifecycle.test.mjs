// The life of a message in the UI (issue 8): the hover actions edit a message
// in place ("(edited)" with its time as a tooltip), react (a reaction bar with
// counts, who reacted in the title, a click toggles one's own) and delete it
// (a tombstone), and a second page sees each change live; a reload shows the
// same from history; Up in an empty composer edits one's last message and
// Escape cancels; a change the server refuses is explained next to the
// message. Replies, mentions, touch and replays: lifecycle-*.test.mjs.
// Selectors: see helpers.mjs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, assertClean, launchBrowser, messageId, messageRow, openChat, postMessage, reactOverRest,
    rest, screenshot, send, shownReactions, storedTexts, waitForReactions, waitForRowText,
    waitForTexts } from './helpers.mjs';

const MAX_REACTIONS = 3;

let server;
let browser;

before(async () => {
    server = await startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_MAX_REACTIONS: String(MAX_REACTIONS) },
        args: SERVER_ARGS });
    browser = await launchBrowser();
});

after(async () => {
    await browser?.close();
    await stopAll();
});

test('hover actions: edit in place, react and delete, seen live on a second page', { timeout: 180000 }, async () => {
    const room = 'life';
    const alice = await openChat(browser, server, { name: 'alice', room, record: true });
    const bob = await openChat(browser, server, { name: 'bob', room });
    const aliceFrames = alice.frames;
    await send(alice.page, 'helo wrold');
    const id = await messageId(bob.page, 'helo wrold');
    const mine = messageRow(alice.page, id);
    const theirs = messageRow(bob.page, id);

    // the actions show on hover; edit and delete only on one's own message
    assert.ok(await mine.locator('[data-testid=message-actions]').isHidden(), 'no actions before hovering');
    await theirs.hover();
    await theirs.locator('[data-testid=action-reply]').waitFor();
    await theirs.locator('[data-testid=action-react]').waitFor();
    assert.equal(await theirs.locator('[data-testid=action-edit], [data-testid=action-delete]').count(), 0,
        "no edit or delete on someone else's message");

    // edit in place: the row becomes an editor holding the text; Enter saves
    await mine.hover();
    await mine.locator('[data-testid=action-edit]').click();
    const editor = mine.locator('[data-testid=edit-input]');
    await editor.waitFor();
    assert.equal(await editor.inputValue(), 'helo wrold');
    assert.ok(await editor.evaluate((e) => document.activeElement === e), 'the editor has the focus');
    await editor.fill('hello world');
    await editor.press('Enter');
    for (const p of [alice.page, bob.page]) {
        await waitForRowText(p, id, 'hello world');
        const edited = messageRow(p, id).locator('[data-testid=message-edited]');
        await edited.waitFor();
        assert.equal(await edited.textContent(), '(edited)');
        assert.match(await edited.getAttribute('title'), /^Edited .*\d/, 'the edit time is the tooltip');
    }
    const edit = aliceFrames.sent.find((f) => f.type === 'edit');
    assert.deepEqual({ room: edit.room, id: edit.id, text: edit.text }, { room, id, text: 'hello world' });
    assert.ok(edit.ref, 'the edit carries a ref');

    // bob reacts from the picker; alice sees the count and who, and adds hers
    await theirs.hover();
    await theirs.locator('[data-testid=action-react]').click();
    await bob.page.locator('[data-testid=emoji-option][data-emoji="👍"]').click();
    await waitForReactions(alice.page, id, { '👍': 1 });
    let shown = await shownReactions(alice.page, id);
    assert.match(shown['👍'].title, /bob/);
    assert.equal(shown['👍'].mine, false);
    await mine.locator('[data-testid=reaction][data-emoji="👍"]').click();
    await waitForReactions(bob.page, id, { '👍': 2 });
    shown = await shownReactions(bob.page, id);
    assert.match(shown['👍'].title, /^bob, alice\b/, 'who reacted, in order');
    assert.equal(shown['👍'].mine, true, "bob's own reaction is pressed on his page");
    await waitForReactions(alice.page, id, { '👍': 2 }); // her page learns of her reaction by its update frame too
    assert.equal((await shownReactions(alice.page, id))['👍'].mine, true, "and alice's on hers");
    // a second emoji from the bar's "+"; a click on one's own takes it back
    await theirs.locator('[data-testid=reaction-add]').click();
    await bob.page.locator('[data-testid=emoji-option][data-emoji="🎉"]').click();
    await waitForReactions(alice.page, id, { '👍': 2, '🎉': 1 });
    await theirs.locator('[data-testid=reaction][data-emoji="👍"]').click();
    await waitForReactions(alice.page, id, { '👍': 1, '🎉': 1 });
    assert.equal((await shownReactions(alice.page, id))['👍'].title.includes('bob'), false, 'bob took his back');
    await screenshot(alice.page, 'lifecycle-edited-reactions');

    // delete, after a confirmation: a tombstone on both pages, nothing to act on
    await mine.hover();
    await mine.locator('[data-testid=action-delete]').click();
    await alice.page.locator('[data-testid=confirm-delete]').click();
    for (const p of [alice.page, bob.page]) {
        await waitForRowText(p, id, 'message deleted');
        const row = messageRow(p, id);
        assert.equal(await row.locator('[data-testid=reaction], [data-testid=message-edited]').count(), 0);
        await row.hover();
        assert.equal(await row.locator('[data-testid=message-actions]').count(), 0, 'a tombstone has no actions');
    }
    await screenshot(bob.page, 'lifecycle-deleted');

    assertClean(assert, alice.problems, 'alice');
    assertClean(assert, bob.problems, 'bob');
    await alice.context.close();
    await bob.context.close();
});

test('a reload shows edits, reactions and tombstones from history', { timeout: 120000 }, async () => {
    const room = 'life-history';
    const kept = await postMessage(server, room, 'carl', 'keep me');
    const gone = await postMessage(server, room, 'carl', 'delete me');
    const dana = await openChat(browser, server, { name: 'dana', room });
    await waitForTexts(dana.page, ['keep me', 'delete me']);
    await send(dana.page, 'dana was here');
    const own = await messageId(dana.page, 'dana was here');

    await messageRow(dana.page, own).hover();
    await messageRow(dana.page, own).locator('[data-testid=action-edit]').click();
    await messageRow(dana.page, own).locator('[data-testid=edit-input]').fill('dana was here, edited');
    await messageRow(dana.page, own).locator('[data-testid=edit-input]').press('Enter');
    await waitForRowText(dana.page, own, 'dana was here, edited');
    await reactOverRest(server, room, kept.id, 'carl', '🔥');
    await waitForReactions(dana.page, kept.id, { '🔥': 1 });
    const del = await rest(server, 'DELETE', `/api/rooms/${room}/messages/${gone.id}?user=carl`);
    assert.equal(del.status, 200);
    await waitForRowText(dana.page, gone.id, 'message deleted');

    await dana.page.reload();
    await waitForTexts(dana.page, ['keep me', 'message deleted', 'dana was here, edited']);
    await messageRow(dana.page, own).locator('[data-testid=message-edited]').waitFor();
    await waitForReactions(dana.page, kept.id, { '🔥': 1 });
    assert.deepEqual(await storedTexts(dana.page), ['keep me', 'message deleted', 'dana was here, edited']);
    assertClean(assert, dana.problems, 'dana');
    await dana.context.close();
});

test('keyboard: Up in an empty composer edits the last own message, Escape cancels, Enter saves',
    { timeout: 120000 }, async () => {
        const room = 'life-keys';
        const { page, context, problems, frames } = await openChat(browser, server, { name: 'erik', room, record: true });
        await send(page, 'first line');
        await send(page, 'second line');
        await postMessage(server, room, 'fay', 'not mine, and newest');
        const second = await messageId(page, 'second line');
        await waitForTexts(page, ['not mine, and newest']);

        const box = page.locator('[data-testid=composer-input]');
        await box.focus();
        await page.keyboard.press('ArrowUp');
        const editor = messageRow(page, second).locator('[data-testid=edit-input]');
        await editor.waitFor();
        assert.ok(await editor.evaluate((e) => document.activeElement === e), 'the editor has the focus');
        assert.equal(await editor.inputValue(), 'second line');

        // Escape: nothing changes, the composer has the focus again
        await page.keyboard.type(' with a typo');
        await page.keyboard.press('Escape');
        await editor.waitFor({ state: 'detached' });
        assert.ok(await box.evaluate((e) => document.activeElement === e), 'the focus is back in the composer');
        assert.equal(frames.sent.filter((f) => f.type === 'edit').length, 0, 'Escape sent nothing');
        await waitForRowText(page, second, 'second line');
        assert.equal(await messageRow(page, second).locator('[data-testid=message-edited]').count(), 0);

        // Up again, edit, Enter
        await page.keyboard.press('ArrowUp');
        await editor.waitFor();
        await page.keyboard.type(', edited');
        await page.keyboard.press('Enter');
        await waitForRowText(page, second, 'second line, edited');
        await messageRow(page, second).locator('[data-testid=message-edited]').waitFor();
        await page.locator('[data-testid=edit-input]').waitFor({ state: 'detached' });

        // Up in a composer with text moves the caret, it edits nothing
        await box.fill('draft');
        await page.keyboard.press('ArrowUp');
        assert.equal(await page.locator('[data-testid=edit-input]').count(), 0);
        assertClean(assert, problems, 'erik');
        await context.close();
    });

test('a change the server refuses is explained next to the message', { timeout: 120000 }, async () => {
    const room = 'life-refused';
    const message = await postMessage(server, room, 'gus', 'react to me');
    for (const emoji of ['😀', '😎', '🤖'].slice(0, MAX_REACTIONS)) await reactOverRest(server, room, message.id, 'gus', emoji);
    const { page, context, problems } = await openChat(browser, server, { name: 'hilde', room });
    await waitForReactions(page, message.id, { '😀': 1, '😎': 1, '🤖': 1 });
    const row = messageRow(page, message.id);
    await row.hover();
    await row.locator('[data-testid=action-react]').click();
    await page.locator('[data-testid=emoji-option][data-emoji="🚀"]').click();
    const notice = row.locator('[data-testid=message-notice]');
    await notice.waitFor();
    assert.match(await notice.textContent(), /all the different reactions it can take/);
    await screenshot(page, 'lifecycle-refused');
    // the notice can be dismissed, and the existing reactions still work
    await row.locator('[data-testid=notice-dismiss]').click();
    await notice.waitFor({ state: 'detached' });
    await row.locator('[data-testid=reaction][data-emoji="😀"]').click();
    await waitForReactions(page, message.id, { '😀': 2, '😎': 1, '🤖': 1 });
    assertClean(assert, problems, 'hilde');
    await context.close();
});

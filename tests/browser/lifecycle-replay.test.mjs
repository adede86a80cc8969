// Changes missed while away (issue 8): the page re-joins with `since` = the
// highest event id it saw (a reaction's id counts, ids of messages skip),
// and the replay (messages in their current state, then the update frames
// after them) ends in the state of the server however often a change reaches
// the page: an edit, a reaction counted once, a reaction taken back, a
// deleted message as a tombstone.
// Selectors: see helpers.mjs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { RELAXED_RATE_ENV, startServer, stopAll } from '../lib/server.mjs';
import { SERVER_ARGS, assertClean, deleteOverRest, editOverRest, launchBrowser, messageId, messageRow, openChat,
    postMessage, reactOverRest, recordFrames, screenshot, send, storedTexts, waitForReactions, waitForRowText,
    waitForTexts, waitOffline, waitOnline } from './helpers.mjs';

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

test('changes missed while away are replayed with since and applied once', { timeout: 180000 }, async () => {
    const room = 'replay';
    const nina = await openChat(browser, server, { name: 'nina', room });
    const frames = recordFrames(nina.page);
    await send(nina.page, 'before the break');
    const first = await messageId(nina.page, 'before the break');
    const reaction = await reactOverRest(server, room, first, 'otto', '👍');
    await waitForReactions(nina.page, first, { '👍': 1 });

    // while nina's server is down, another server process on the same
    // database takes changes of old and new messages
    const { port, dir, dbPath } = server;
    await server.stop();
    await waitOffline(nina.page);
    const other = await startServer({ env: RELAXED_RATE_ENV, args: SERVER_ARGS, dir, dbPath });
    await editOverRest(other, room, first, 'nina', 'before the break, edited');
    await reactOverRest(other, room, first, 'pia', '🎉');
    await reactOverRest(other, room, first, 'otto', '👍', false);
    const fresh = await postMessage(other, room, 'otto', 'during the break');
    await reactOverRest(other, room, fresh.id, 'pia', '🔥');
    await reactOverRest(other, room, fresh.id, 'otto', '🔥');
    const doomed = await postMessage(other, room, 'otto', 'said and taken back');
    await reactOverRest(other, room, doomed.id, 'pia', '😮');
    await deleteOverRest(other, room, doomed.id, 'otto');
    await other.stop();
    server = await startServer({ env: RELAXED_RATE_ENV, args: SERVER_ARGS, port, dir, dbPath });

    await waitOnline(nina.page);
    await waitForRowText(nina.page, first, 'before the break, edited');
    await waitForReactions(nina.page, first, { '🎉': 1 });
    await messageRow(nina.page, first).locator('[data-testid=message-edited]').waitFor();
    await waitForReactions(nina.page, fresh.id, { '🔥': 2 });
    await waitForRowText(nina.page, doomed.id, 'message deleted');
    assert.deepEqual(await storedTexts(nina.page), ['before the break, edited', 'during the break', 'message deleted']);
    const rejoin = frames.joins.at(-1);
    assert.equal(rejoin?.since, reaction.id, `re-joined with since = the reaction's id (${JSON.stringify(rejoin)})`);
    const replayed = frames.received.filter((f) => f.type === 'update' && f.room === room);
    assert.ok(replayed.length >= 5, `the changes came as update frames (${replayed.length})`);
    await screenshot(nina.page, 'lifecycle-replayed');

    // everything again: a reload reads the same state from history
    await nina.page.reload();
    await waitForTexts(nina.page, ['before the break, edited', 'during the break', 'message deleted']);
    await waitForReactions(nina.page, first, { '🎉': 1 });
    await waitForReactions(nina.page, fresh.id, { '🔥': 2 });
    assertClean(assert, nina.problems, 'nina');
    await nina.context.close();
});

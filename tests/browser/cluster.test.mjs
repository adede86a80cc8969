// Cluster mode in a real browser: two turbochat nodes (the real binary) on
// one plain Valkey started here. Two pages on different nodes chat, see each
// other in the members panel and see each other typing; then the node of one
// page is killed (kill -9) while the other page keeps sending, and restarted
// on the same port and database: the page reconnects to it by itself and
// shows every missed message exactly once, in order.
// Selectors: see helpers.mjs.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { stopAll } from '../lib/server.mjs';
import { startNode, startNodes, startValkey, stopAllValkey, waitHistoryCount } from '../lib/valkey.mjs';
import { SERVER_ARGS, assertClean, count, launchBrowser, openChat, recordFrames, screenshot, send, storedTexts,
    waitForTexts, waitOffline, waitOnline } from './helpers.mjs';

let vk;
let nodeA;
let nodeB;
let browser;

before(async () => {
    vk = await startValkey({ mode: 'plain' });
    [nodeA, nodeB] = await startNodes(vk.env, 2, { args: SERVER_ARGS });
    browser = await launchBrowser();
});

after(async () => {
    try {
        await browser?.close();
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

// On failure, the tails of both nodes' logs.
function withNodeLogs(fn) {
    return async (t) => {
        try {
            return await fn(t);
        } catch (err) {
            for (const [name, node] of [['A', nodeA], ['B', nodeB]]) {
                if (node) err.message += `\n--- node ${name} log ${node.logFile} (tail) ---\n${node.logTail(40)}`;
            }
            throw err;
        }
    };
}

// { id, text } of every stored message row (data-id), in page order.
function storedIds(page) {
    return page.$$eval('[data-testid=message][data-id]', (rows) => rows.map((r) => ({
        id: Number(r.dataset.id),
        text: r.querySelector('[data-testid=message-text]')?.textContent,
    })));
}

async function idOf(page, text) {
    const rows = (await storedIds(page)).filter((r) => r.text === text);
    assert.equal(rows.length, 1, `"${text}" shown once`);
    return rows[0].id;
}

test('two pages on two nodes: messages, members, typing', { timeout: 90000 }, withNodeLogs(async (t) => {
    const room = 'crossnode';
    const alice = await openChat(browser, nodeA, { name: 'alice', room });
    const bob = await openChat(browser, nodeB, { name: 'bob', room });

    // members panel: both users on both pages, though each is on another node
    for (const p of [alice.page, bob.page]) {
        await p.locator('[data-testid=member][data-user=alice]').waitFor();
        await p.locator('[data-testid=member][data-user=bob]').waitFor();
    }

    // messages both ways, each shown once, with the same id on both pages and
    // in the REST history of both nodes
    const expected = ['hello from node A', 'hello from node B'];
    await send(alice.page, expected[0]);
    await waitForTexts(bob.page, [expected[0]]);
    await send(bob.page, expected[1]);
    await waitForTexts(alice.page, expected);
    await waitForTexts(bob.page, expected);
    const ids = {};
    for (const text of expected) {
        ids[text] = await idOf(alice.page, text);
        assert.equal(await idOf(bob.page, text), ids[text], `"${text}" has the same id on both pages`);
    }
    for (const p of [alice.page, bob.page]) {
        assert.deepEqual((await storedTexts(p)).filter((x) => expected.includes(x)), expected, 'in order');
    }
    // an ack means Valkey has the message; each node logs it when it arrives
    const histories = await waitHistoryCount([nodeA, nodeB], room, expected.length);
    for (const [i, node] of [nodeA, nodeB].entries()) {
        const stored = histories[i].map((m) => ({ id: m.id, text: m.text }));
        assert.deepEqual(stored, expected.map((text) => ({ id: ids[text], text })), `REST history on ${node.url}`);
    }
    await screenshot(alice.page, 'cluster-alice-node-a');
    await screenshot(bob.page, 'cluster-bob-node-b');

    // typing crosses nodes, both ways (subtests: a failure here leaves the
    // rest of the report intact)
    const typing = async (from, fromName, to) => {
        const shown = to.page.locator('[data-testid=typing]', { hasText: `${fromName} is typing` });
        await shown.waitFor({ state: 'detached' }); // their last message ended it
        await from.page.locator('[data-testid=composer-input]').fill(`drafting (${fromName})`);
        try {
            await shown.waitFor();
        } finally {
            await from.page.locator('[data-testid=composer-input]').fill('');
        }
    };
    await t.test('typing on node B (bob) shows on node A (alice)', () => typing(bob, 'bob', alice));
    await t.test('typing on node A (alice) shows on node B (bob)', () => typing(alice, 'alice', bob));

    assertClean(assert, alice.problems, 'alice');
    assertClean(assert, bob.problems, 'bob');
    await alice.context.close();
    await bob.context.close();
}));

test("the page's node killed (-9) while the other page keeps sending; restarted, the page catches up exactly once",
    { timeout: 120000 }, withNodeLogs(async (t) => {
        const room = 'failover';
        const N = 12;
        const carol = await openChat(browser, nodeA, { name: 'carol', room });
        const frames = recordFrames(carol.page);
        const dave = await openChat(browser, nodeB, { name: 'dave', room });
        // dave answers once he sees carol's message, so the ids follow that order
        await send(carol.page, 'carol before kill');
        await waitForTexts(dave.page, ['carol before kill']);
        await send(dave.page, 'dave before kill');
        const before = ['carol before kill', 'dave before kill'];
        await waitForTexts(carol.page, before);
        await waitForTexts(dave.page, before);
        await screenshot(carol.page, 'cluster-before-kill');

        await nodeA.kill9();
        await waitOffline(carol.page);

        // dave (node B) keeps sending through the UI while node A is down
        const missed = Array.from({ length: N }, (_, i) => `missed while A down ${i + 1}`);
        for (const text of missed) await send(dave.page, text);
        await waitForTexts(dave.page, missed);
        await dave.page.locator('[data-testid=message][data-ref]').waitFor({ state: 'detached' });
        assert.ok(!(await isOnline(carol.page)), 'carol is offline while node A is down');
        await screenshot(carol.page, 'cluster-node-down');

        // node A back on the same port and database; carol's page reconnects there by itself
        const { dir, dbPath, port } = nodeA;
        nodeA = await startNode(vk.env, { dir, dbPath, port, args: SERVER_ARGS });
        await waitOnline(carol.page);
        const upToNow = [...before, ...missed];
        await waitForTexts(carol.page, upToNow);
        let texts = await storedTexts(carol.page);
        for (const text of upToNow) assert.equal(count(texts, text), 1, `"${text}" shown once on carol's page`);
        assert.deepEqual(texts.filter((x) => upToNow.includes(x)), upToNow, 'in order, without gaps');
        await screenshot(carol.page, 'cluster-after-reconnect');

        const rejoin = frames.joins.at(-1);
        assert.ok(rejoin && rejoin.since > 0, `re-joined with since (${JSON.stringify(rejoin)})`);
        const joined = frames.received.filter((f) => f.type === 'joined').at(-1);
        const overSocket = missed.filter((m) => frames.received.some((f) => f.type === 'message' && f.text === m)).length;
        t.diagnostic(`re-join ${JSON.stringify(rejoin)}; joined.recovered=${joined?.recovered}; ` +
            `missed messages that came over the socket: ${overSocket}/${N}`);

        // live chat goes on both ways
        await send(carol.page, 'carol after restart');
        await waitForTexts(dave.page, ['carol after restart']);
        await send(dave.page, 'dave after restart');
        const all = [...upToNow, 'carol after restart', 'dave after restart'];
        await waitForTexts(carol.page, all);
        await waitForTexts(dave.page, all);

        // both pages and both nodes agree: each text once, same ids, same order
        const pageIds = [];
        for (const [name, p] of [['carol', carol.page], ['dave', dave.page]]) {
            texts = await storedTexts(p);
            for (const text of all) assert.equal(count(texts, text), 1, `"${text}" shown once on ${name}'s page`);
            assert.deepEqual(texts.filter((x) => all.includes(x)), all, `${name}: in order`);
            const rows = (await storedIds(p)).filter((r) => all.includes(r.text));
            pageIds.push(rows);
        }
        assert.deepEqual(pageIds[1], pageIds[0], 'same ids on both pages');
        const histories = await waitHistoryCount([nodeA, nodeB], room, pageIds[0].length);
        for (const [i, node] of [nodeA, nodeB].entries()) {
            const stored = histories[i].map((m) => ({ id: m.id, text: m.text }));
            assert.deepEqual(stored, pageIds[0], `REST history on ${node.url} matches the pages`);
        }
        await screenshot(carol.page, 'cluster-after-live');

        assertClean(assert, carol.problems, 'carol');
        assertClean(assert, dave.problems, 'dave');
        await carol.context.close();
        await dave.context.close();
    }));

// Whether the page shows the online state right now (no waiting).
async function isOnline(page) {
    return (await page.locator('[data-testid=conn-state][data-state=online]').count()) > 0;
}

// Cluster retention: two nodes on one Valkey with a retention of a few
// seconds. Messages with edits, reactions and deletes expire on BOTH nodes,
// which then hold identical logs (every field of every event) without them;
// the room-state `retention` events stay, ids continue after the expired
// ones, and history says where it begins. A room's own retention (PATCH by a
// moderator) is an event every node applies: 0 keeps the room's messages,
// null gives the deployment's back. Non-moderators and bad values are refused.
// A Valkey that lost its data is seeded from the nodes' logs so that a room
// whose every message expired continues after its last id.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, connect, uniq } from '../lib/client.mjs';
import { allEvents, assertRestError, mintToken, restDelete, restEdit, restPost, restReact } from '../lib/lifecycle.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { startNodes, startValkey, stopAllValkey, waitFor, waitReady } from '../lib/valkey.mjs';

const T = { timeout: 240000 };
const SECRET = 'retention-test-secret-0123456789abcdef';
const RETENTION_DAYS = 0.00005; // 4.32 s; the purge runs every second
const EXPIRY_WAIT_MS = 90000; // generous: two cores shared with other suites

const tok = {};
let nodes;

before(async () => {
    const vk = await startValkey({ mode: 'plain' });
    nodes = await startNodes(vk.env, 2, {
        env: { TURBOCHAT_AUTH_SECRET: SECRET, TURBOCHAT_RETENTION_DAYS: String(RETENTION_DAYS) },
    });
    tok.alice = mintToken(SECRET, { user: 'alice', rooms: 'ret-*' });
    tok.bob = mintToken(SECRET, { user: 'bob', rooms: 'ret-*' });
    tok.admin = mintToken(SECRET, { user: 'ada', role: 'admin' });
    tok.mod = mintToken(SECRET, { user: 'maude', rooms: 'ret-*', role: 'mod' });
    tok.othermod = mintToken(SECRET, { user: 'otto', rooms: 'other-*', role: 'mod' });
});

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

const bearer = (who) => ({ Authorization: `Bearer ${tok[who]}` });

function patchRoom(node, room, body, who) {
    return api(node.url, `/api/rooms/${room}`, { method: 'PATCH', body, headers: bearer(who) });
}

async function post(node, who, room, text) {
    const r = await restPost(node.url, room, { text }, bearer(who));
    assert.equal(r.status, 201, `POST by ${who} in ${room}: ${r.status} ${r.text}`);
    return r.json;
}

async function history(node, room) {
    const r = await api(node.url, `/api/rooms/${room}/messages?limit=200`, { headers: bearer('alice') });
    assert.equal(r.status, 200, `history of ${room} on ${node.url}: ${r.status} ${r.text}`);
    return r.json;
}

// Wait until every node's history of room begins after id (its messages up
// to id expired there).
async function waitBegins(room, id, ns = nodes) {
    const last = [];
    await waitFor(
        async () => {
            for (const [i, n] of ns.entries()) last[i] = (await history(n, room)).begins;
            return last.every((b) => b > id);
        },
        { timeoutMs: EXPIRY_WAIT_MS, intervalMs: 250, what: `history of ${room} beginning after ${id} on both nodes` },
    ).catch((err) => {
        err.message += ` (begins: ${last.join(', ')})`;
        throw err;
    });
}

// Wait until node has message id of room (a change on another node than
// the message's checks it there).
function arrived(node, room, id) {
    return waitFor(async () => (await api(node.url, `/api/rooms/${room}/messages/${id}`, { headers: bearer('alice') })).status === 200, {
        what: `message ${id} of ${room} on ${node.url}`,
    });
}

// Some messages with an edit, reactions, a reply and a delete, from both
// nodes; resolves with the highest id.
async function chatter(room) {
    const a = await post(nodes[0], 'alice', room, 'first from node 0');
    const b = await post(nodes[1], 'bob', room, 'second from node 1 @alice');
    await arrived(nodes[1], room, a.id);
    await arrived(nodes[0], room, b.id);
    const r1 = await restReact(nodes[1].url, room, a.id, '👍', true, {}, bearer('bob'));
    assert.equal(r1.status, 200, r1.text);
    const r2 = await restReact(nodes[0].url, room, b.id, '🎉', true, {}, bearer('alice'));
    assert.equal(r2.status, 200, r2.text);
    const e = await restEdit(nodes[0].url, room, a.id, { text: 'first, edited' }, bearer('alice'));
    assert.equal(e.status, 200, e.text);
    const reply = await restPost(nodes[1].url, room, { text: 'a reply', reply_to: a.id }, bearer('bob'));
    assert.equal(reply.status, 201, reply.text);
    const c = await post(nodes[0], 'alice', room, 'third, to be deleted');
    await arrived(nodes[1], room, c.id);
    const d = await restDelete(nodes[1].url, room, c.id, {}, bearer('admin'));
    assert.equal(d.status, 200, d.text);
    return d.json.id;
}

describe('cluster retention', () => {
    it('expires the same events on both nodes: identical logs, room-state events kept, ids continue', T, withLogs(async () => {
        const room = uniq('ret-a');
        // the room's own retention, equal to the deployment's: a state event that stays
        const p = await patchRoom(nodes[1], room, { retention_days: RETENTION_DAYS }, 'admin');
        assert.equal(p.status, 200, p.text);
        assert.equal(p.json.room.retention_days, RETENTION_DAYS);
        const first = await history(nodes[0], room);
        assert.equal(first.begins, 1, 'nothing expired yet');
        const lastId = await chatter(room);
        const before = await allEvents(nodes[0].url, room, bearer('alice'));
        assert.ok(before.some((e) => e.type === 'message' && e.reactions && Object.keys(e.reactions).length), 'reactions stored');

        await waitBegins(room, lastId);
        const [e0, e1] = [await allEvents(nodes[0].url, room, bearer('alice')), await allEvents(nodes[1].url, room, bearer('alice'))];
        assert.deepEqual(e0, e1, 'both nodes hold the same log, every field of every event');
        assert.deepEqual(
            e0.map((e) => [e.id, e.kind]),
            [[1, 'retention']],
            'only the room-state event is left of the expired ones',
        );
        assert.equal(e0[0].days, RETENTION_DAYS);
        assert.equal(e0[0].by, 'ada');
        for (const n of nodes) {
            const h = await history(n, room);
            assert.equal(h.begins, lastId + 1, `history begins after the cutoff on ${n.url}`);
            assert.deepEqual(h.messages, [], 'the expired messages are gone');
            const one = await api(n.url, `/api/rooms/${room}/messages/2`, { headers: bearer('alice') });
            assert.equal(one.status, 404, 'an expired message is not found');
        }
        // a re-join from before the cutoff replays nothing expired (not even
        // from the Valkey window, which still holds it)
        const c = await connect(nodes[0].wsUrl);
        c.send({ type: 'hello', token: tok.alice });
        await c.next('welcome');
        const j = await c.join(room, 0);
        assert.equal(j.recovered, true);
        assert.equal(j.begins, lastId + 1);
        // ids continue after the expired ones, on both nodes
        const next = await post(nodes[1], 'bob', room, 'after the purge');
        assert.equal(next.id, lastId + 1, 'no id is given out twice');
        await c.next((f) => f.type === 'message' && f.id === next.id);
        const replayed = c.frames.filter((f) => (f.type === 'message' || f.type === 'update') && f.id <= lastId);
        assert.deepEqual(replayed, [], 'no expired event replayed');
        c.close();
        await waitFor(async () => (await history(nodes[0], room)).messages.some((m) => m.id === next.id), {
            what: 'the new message on node 0',
        });
        const rooms = await api(nodes[0].url, '/api/rooms', { headers: bearer('admin') });
        const item = rooms.json.rooms.find((r) => r.name === room);
        assert.ok(item, `room listed: ${rooms.text}`);
        assert.equal(item.last_id, next.id);
        assert.equal(item.retention_days, RETENTION_DAYS);
    }));

    it('a room\'s own retention: 0 keeps its messages, null gives the deployment\'s back; seen live as an update', T, withLogs(async () => {
        const keep = uniq('ret-keep');
        const expiring = uniq('ret-exp');
        // a member of keep on node 0 sees the change made on node 1
        const c = await connect(nodes[0].wsUrl);
        c.send({ type: 'hello', token: tok.alice });
        await c.next('welcome');
        const j = await c.join(keep);
        assert.equal(j.begins, 1);
        assert.equal(j.retention_days, RETENTION_DAYS, 'joined tells the retention');
        // set before the first message, so no purge can come in between
        const p = await patchRoom(nodes[1], keep, { retention_days: 0 }, 'mod');
        assert.equal(p.status, 200, p.text);
        assert.equal(p.json.room.retention_days, undefined, '0: kept forever, no retention_days');
        const u = await c.next((f) => f.type === 'update' && f.room === keep && f.kind === 'retention');
        assert.equal(u.days, 0);
        assert.equal(u.by, 'maude');
        assert.equal(u.target, undefined);
        const kept = [];
        kept.push((await post(nodes[0], 'alice', keep, 'kept one')).id);
        kept.push((await post(nodes[1], 'bob', keep, 'kept two')).id);
        // messages of another room sent later expire meanwhile
        const lastExp = (await post(nodes[0], 'alice', expiring, 'expires')).id;
        await waitBegins(expiring, lastExp);
        for (const n of nodes) {
            const h = await history(n, keep);
            assert.deepEqual(h.messages.map((m) => m.id), kept, `kept on ${n.url}`);
            assert.equal(h.begins, 1);
        }
        // null: the deployment's retention again, on both nodes
        const q = await patchRoom(nodes[0], keep, { retention_days: null }, 'admin');
        assert.equal(q.status, 200, q.text);
        assert.equal(q.json.room.retention_days, RETENTION_DAYS);
        await waitBegins(keep, kept[1]);
        const [e0, e1] = [await allEvents(nodes[0].url, keep, bearer('alice')), await allEvents(nodes[1].url, keep, bearer('alice'))];
        assert.deepEqual(e0, e1);
        assert.deepEqual(e0.map((e) => e.kind), ['retention', 'retention']);
        c.close();
    }));

    it('refuses a non-moderator and bad values', T, withLogs(async () => {
        const room = uniq('ret-ref');
        await post(nodes[0], 'alice', room, 'hello');
        assertRestError(await patchRoom(nodes[0], room, { retention_days: 1 }, 'alice'), 403, 'forbidden', 'a plain user');
        assertRestError(await patchRoom(nodes[1], room, { retention_days: 1 }, 'othermod'), 403, 'forbidden', 'a mod of other rooms');
        const noToken = await api(nodes[0].url, `/api/rooms/${room}`, { method: 'PATCH', body: { retention_days: 1 } });
        assertRestError(noToken, 401, undefined, 'no token');
        for (const body of [{ retention_days: -1 }, { retention_days: 36501 }, { retention_days: '7' }, {}, { days: 3 }]) {
            const r = await patchRoom(nodes[0], room, body, 'admin');
            assertRestError(r, 400, 'bad_request', JSON.stringify(body));
            assert.match(r.json.error.message, /retention_days/);
        }
        const m = await api(nodes[0].url, `/api/rooms/${room}`, { method: 'GET', headers: bearer('admin') });
        assertRestError(m, 405, undefined, 'GET of a room');
        const events = await allEvents(nodes[0].url, room, bearer('alice'));
        assert.ok(!events.some((e) => e.kind === 'retention'), 'nothing refused was stored');
    }));

    it('a room whose every message expired continues after its last id when Valkey lost its data', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain', persist: false });
        const env = { TURBOCHAT_AUTH_SECRET: SECRET, TURBOCHAT_RETENTION_DAYS: String(RETENTION_DAYS) };
        const ns = await startNodes(vk.env, 2, { env });
        const room = uniq('ret-lost');
        for (let k = 1; k <= 3; k++) assert.equal((await post(ns[k % 2], 'alice', room, `m${k}`)).id, k);
        await waitBegins(room, 3, ns);
        await vk.stop();
        for (const n of ns) await waitReady(n, { want: 503, timeoutMs: 15000 });
        await vk.restart(); // empty: no append-only file
        for (const n of ns) await waitReady(n, { timeoutMs: 30000 });
        const next = await post(ns[0], 'bob', room, 'after Valkey lost its data');
        assert.equal(next.id, 4, 'seeded from where history begins: no id reused, none skipped');
        await waitFor(async () => (await history(ns[1], room)).messages.some((m) => m.id === 4), {
            what: 'the new message on the other node',
        });
    }));
});

// Moderation in a cluster (docs/PROTOCOL.md "Moderation: mute and ban"): a
// mute or ban made on node A is an event of the room's log that every node
// stores, so it holds for the user's connections on node B: B refuses their
// send, takes them out of the room with left {reason: "banned"}, refuses their
// join, and lets them back once the unban made on A reaches it.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { connect, uniq } from '../lib/client.mjs';
import { http, show, tryJoin } from '../lib/accounts.mjs';
import { assertWsError, mintToken, wsSend } from '../lib/lifecycle.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { startNodes, startValkey, stopAllValkey, waitFor } from '../lib/valkey.mjs';

const T = { timeout: 180000 };
const SECRET = 'moderation-cluster-secret-0123456789';
const enc = encodeURIComponent;

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

async function client(node, token, rooms = []) {
    const c = await connect(node.wsUrl);
    c.send({ type: 'hello', token });
    const w = await c.next((x) => x.type === 'welcome' || x.type === 'error');
    assert.equal(w.type, 'welcome', JSON.stringify(w));
    c.user = w.user;
    for (const r of rooms) await c.join(r);
    return c;
}

function sanction(node, token, room, what, user, put = true) {
    return http(node.url, `/api/rooms/${enc(room)}/${what}/${enc(user)}`, {
        method: put ? 'PUT' : 'DELETE',
        headers: { Authorization: `Bearer ${token}` },
    });
}

describe('moderation across nodes', () => {
    it('a mute and a ban made on node A hold for the user on node B, and their lifting too', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain' });
        const [a, b] = await startNodes({ ...vk.env, TURBOCHAT_AUTH_SECRET: SECRET }, 2);
        const mod = mintToken(SECRET, { user: 'maude', rooms: 'team-*', role: 'mod' });
        const bobTok = mintToken(SECRET, { user: 'bob' });
        const room = uniq('team');
        const bob = await client(b, bobTok, [room]);
        assert.equal((await wsSend(bob, room, 'hello from B')).type, 'ack');

        // Mute on A; bob on B sees the update (B stored it), then B refuses his send.
        const m = await sanction(a, mod, room, 'mutes', 'bob');
        assert.equal(m.status, 200, show(m));
        const seen = await bob.next((x) => x.type === 'update' && x.kind === 'mute' && x.room === room);
        assert.equal(seen.id, m.json.id, JSON.stringify(seen));
        assert.equal(seen.member, 'bob');
        assertWsError(await wsSend(bob, room, 'muted on B'), 'forbidden', 'send on B after a mute on A');
        const list = await http(b.url, `/api/rooms/${enc(room)}/moderation`, { headers: { Authorization: `Bearer ${mod}` } });
        assert.deepEqual(list.json.muted.map((x) => x.user), ['bob'], `B lists the mute made on A: ${show(list)}`);

        const u = await sanction(a, mod, room, 'mutes', 'bob', false);
        assert.equal(u.status, 200, show(u));
        await bob.next((x) => x.type === 'update' && x.kind === 'unmute' && x.id === u.json.id);
        assert.equal((await wsSend(bob, room, 'free on B')).type, 'ack', 'send on B after the unmute on A');

        // Ban on A: bob's connection on B is taken out, his join on B refused.
        const bn = await sanction(a, mod, room, 'bans', 'bob');
        assert.equal(bn.status, 200, show(bn));
        const left = await bob.next((x) => x.type === 'left' && x.room === room);
        assert.equal(left.reason, 'banned', JSON.stringify(left));
        assertWsError(await tryJoin(bob, room), 'forbidden', 'join on B while banned on A');

        // Unban on A: once B has it, bob may join there again.
        const ub = await sanction(a, mod, room, 'bans', 'bob', false);
        assert.equal(ub.status, 200, show(ub));
        let joined;
        await waitFor(async () => {
            joined = await tryJoin(bob, room);
            return joined.type === 'joined';
        }, { what: `bob joins ${room} on B after the unban on A` });
        assert.equal((await wsSend(bob, room, 'back on B')).type, 'ack');
        bob.terminate();
    }));
});

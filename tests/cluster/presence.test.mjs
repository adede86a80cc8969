// Cluster-wide presence: members lists (joined.members and REST) and presence
// events span nodes; a user online on two nodes is one member; the members of
// a node that was killed with kill -9 disappear within 30 s.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { api, connectUser, uniq } from '../lib/client.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { startNodes, startValkey, stopAllValkey, waitFor } from '../lib/valkey.mjs';

const T = { timeout: 150000 };

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

async function members(node, room) {
    const r = await api(node.url, `/api/rooms/${room}/members`);
    assert.equal(r.status, 200, r.text);
    return [...r.json.members].sort();
}

// Wait until GET members on every node equals want (sorted).
async function waitMembers(nodes, room, want, timeoutMs = 10000) {
    let last = [];
    await waitFor(
        async () => {
            last = await Promise.all(nodes.map((n) => members(n, room)));
            return last.every((m) => JSON.stringify(m) === JSON.stringify([...want].sort()));
        },
        { timeoutMs, what: `members of ${room} = ${JSON.stringify(want)} on every node` },
    ).catch((err) => {
        err.message += ` (last: ${JSON.stringify(last)})`;
        throw err;
    });
}

const presence = (room, user, event) => (f) =>
    f.type === 'presence' && f.room === room && f.user === user && f.event === event;

describe('cluster presence', () => {
    it('members and presence events across nodes; kill -9 removes a node\'s members within 30 s', T, withLogs(async (t) => {
        const vk = await startValkey({ mode: 'plain' });
        const [A, B, C] = await startNodes(vk.env, 3);
        const room = uniq('pres');

        const alice = await connectUser(A.wsUrl, 'alice');
        const ja = await alice.join(room);
        assert.deepEqual(ja.members, ['alice']);
        await waitMembers([B], room, ['alice']); // alice's join reaches B through Valkey
        const bob = await connectUser(B.wsUrl, 'bob');
        const jb = await bob.join(room);
        assert.deepEqual([...jb.members].sort(), ['alice', 'bob'], 'joined.members on B includes alice from A');
        await alice.next(presence(room, 'bob', 'join'));
        await waitMembers([A, B, C], room, ['alice', 'bob']);
        let list;
        await waitFor(
            async () => {
                list = await api(C.url, '/api/rooms');
                const entry = list.json.rooms.find((r) => r.name === room);
                return entry && entry.online === 2;
            },
            { what: `GET /api/rooms on C lists ${room} with online 2 (users on A and B)` },
        ).catch((err) => {
            err.message += ` (last: ${list && list.text})`;
            throw err;
        });

        // alice also online on C: still one member, no second join event
        const alice2 = await connectUser(C.wsUrl, 'alice');
        const ja2 = await alice2.join(room);
        assert.deepEqual([...ja2.members].sort(), ['alice', 'bob'], 'a user on two nodes is one member');
        await waitMembers([A, B, C], room, ['alice', 'bob']);
        // carol joins on C: a barrier for events sent after alice's second join
        const carol = await connectUser(C.wsUrl, 'carol');
        const jc = await carol.join(room);
        assert.deepEqual([...jc.members].sort(), ['alice', 'bob', 'carol']);
        await bob.next(presence(room, 'carol', 'join'));
        await alice.next(presence(room, 'carol', 'join'));
        assert.equal(bob.seen(presence(room, 'alice', 'join')).length, 0, 'no join event for a user already online');

        // alice leaves on A: still online on C, no leave event
        await alice.leave(room);
        const dave = await connectUser(A.wsUrl, 'dave');
        await dave.join(room);
        await bob.next(presence(room, 'dave', 'join'));
        assert.equal(bob.seen(presence(room, 'alice', 'leave')).length, 0, 'no leave while alice is online on C');
        await waitMembers([A, B, C], room, ['alice', 'bob', 'carol', 'dave']);
        // alice disconnects on C: now she is gone
        await alice2.close();
        await bob.next(presence(room, 'alice', 'leave'));
        await dave.next(presence(room, 'alice', 'leave'));
        await waitMembers([A, B, C], room, ['bob', 'carol', 'dave']);

        // kill -9 of C: carol disappears within 30 s, seen from A and B
        const t0 = Date.now();
        await C.kill9();
        await bob.next(presence(room, 'carol', 'leave'), 40000);
        await dave.next(presence(room, 'carol', 'leave'), 10000);
        const took = Date.now() - t0;
        t.diagnostic(`presence leave of the killed node's member after ${took} ms`);
        assert.ok(took <= 32000, `carol's leave came after ${took} ms (limit 30 s)`);
        await waitMembers([A, B], room, ['bob', 'dave']);
        const jd = await (await connectUser(B.wsUrl, 'erin')).join(room);
        assert.deepEqual([...jd.members].sort(), ['bob', 'dave', 'erin']);
        await alice.close();
        await bob.close();
        await dave.close();
        await carol.close().catch(() => {});
        await stopAll();
        await vk.stop();
    }));
});

// kill -9 of a node during traffic, then a restart on the same database: the
// node catches up with what it missed (gap repair from the replay window)
// and its history becomes identical to the other nodes'.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { connectUser, uniq } from '../lib/client.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { historyOf, startNode, startNodes, startValkey, stopAllValkey, waitFor, waitHistoryCount } from '../lib/valkey.mjs';

const T = { timeout: 120000 };

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

// Send messages one after the other (alternating rooms) until stop() is
// called or the connection breaks. acks: every ack received.
function pump(client, rooms, tag) {
    const state = { acks: [], errors: [], stopped: false, broke: null };
    state.done = (async () => {
        for (let k = 0; !state.stopped; k++) {
            const room = rooms[k % rooms.length];
            const text = `${tag} ${k}`;
            let f;
            try {
                f = await client.sendMessage(room, text);
            } catch (err) {
                state.broke = err;
                return;
            }
            if (f.type === 'ack') state.acks.push({ ...f, text });
            else state.errors.push(f);
        }
    })();
    state.stop = () => {
        state.stopped = true;
        return state.done;
    };
    return state;
}

describe('cluster crash', () => {
    it('kill -9 of a node during traffic; restarted on its db, its log converges', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain' });
        const nodes = await startNodes(vk.env, 3);
        const rooms = [uniq('crash'), uniq('crash2')];
        const clients = [];
        for (let i = 0; i < 3; i++) clients.push(await connectUser(nodes[i].wsUrl, `p${i}`, rooms));
        const pumps = clients.map((c, i) => pump(c, rooms, `node${i}`));
        const acked = () => pumps.reduce((s, p) => s + p.acks.length, 0);

        await waitFor(() => acked() >= 60, { timeoutMs: 20000, what: '60 acks before the kill' });
        const victim = nodes[2];
        await victim.kill9();
        const atKill = acked();
        // traffic goes on on the survivors; the victim misses it
        // traffic goes on on the survivors; the victim misses it
        await waitFor(() => acked() >= atKill + 60, { timeoutMs: 20000, what: '60 more acks after the kill' });
        await pumps[2].done;
        assert.ok(pumps[2].broke, 'the pump on the killed node saw its connection break');

        // restart the victim on the same port and database while the
        // survivors keep sending: it must repair the gap and take live
        // messages at the same time
        const back = await startNode(vk.env, { dir: victim.dir, dbPath: victim.dbPath, port: victim.port });
        const watcher = await connectUser(back.wsUrl, 'watcher');
        const joins = [];
        for (const room of rooms) joins.push(await watcher.join(room));
        const atBack = acked();
        await waitFor(() => acked() >= atBack + 60, { timeoutMs: 20000, what: '60 more acks after the restart' });
        await Promise.all([pumps[0].stop(), pumps[1].stop()]);
        for (const p of pumps) assert.deepEqual(p.errors, [], 'no error frames during traffic');

        const survivors = nodes.slice(0, 2);
        const expected = {};
        for (const room of rooms) {
            const n = pumps.reduce((s, p) => s + p.acks.filter((a) => a.room === room).length, 0);
            const hs = await waitHistoryCount(survivors, room, n);
            assert.deepEqual(hs[1], hs[0], `survivors agree on ${room}`);
            expected[room] = hs[0];
        }
        // every acked message, including those acked by the victim before it died
        for (const p of pumps) {
            for (const a of p.acks) {
                const m = expected[a.room].find((x) => x.id === a.id);
                assert.ok(m, `acked ${a.room}#${a.id} is stored on the survivors`);
                assert.equal(m.text, a.text);
            }
        }
        for (const room of rooms) {
            let h;
            await waitFor(
                async () => {
                    h = await historyOf(back, room);
                    return h.length >= expected[room].length;
                },
                { timeoutMs: 20000, what: `restarted node catches up on ${room}` },
            ).catch((err) => {
                err.message += ` (has ${h && h.length} of ${expected[room].length}, ids ${h && h.map((m) => m.id).join(',')})`;
                throw err;
            });
            assert.deepEqual(h, expected[room], `history of ${room} on the restarted node equals the others`);
        }
        // the watcher on the restarted node got the live messages after its
        // join in id order, without gaps or duplicates
        for (const [i, room] of rooms.entries()) {
            const last = expected[room][expected[room].length - 1].id;
            await watcher.seenOrNext((f) => f.type === 'message' && f.room === room && f.id === last);
            const ids = watcher.seen((f) => f.type === 'message' && f.room === room).map((f) => f.id);
            const from = joins[i].last_id + 1;
            assert.deepEqual(
                ids,
                Array.from({ length: last - from + 1 }, (_, k) => from + k),
                `live ${room} on the restarted node after joined.last_id ${joins[i].last_id}`,
            );
        }
        await watcher.close();

        // and it is a full member again: a send there gets the next id and
        // reaches the others
        const c = await connectUser(back.wsUrl, 'again', [rooms[0]]);
        const ack = await c.sendMessage(rooms[0], 'after the crash');
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        assert.equal(ack.id, expected[rooms[0]].length + 1);
        const m = await clients[0].message(rooms[0], ack.id);
        assert.equal(m.text, 'after the crash');
        const hs = await waitHistoryCount([nodes[0], nodes[1], back], rooms[0], ack.id);
        assert.deepEqual(hs[2], hs[0]);
        assert.deepEqual(hs[1], hs[0]);
        await c.close();
        for (const cl of clients.slice(0, 2)) await cl.close();
        await stopAll();
        await vk.stop();
    }));
});

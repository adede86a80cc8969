// kill -9 of a node during traffic, then a restart on the same database: the
// node catches up with what it missed (gap repair from the replay window)
// and its history becomes identical to the other nodes'.
//
// Crash safety, measured (cluster): three nodes on one Valkey; twenty times
// over, one node (each in turn) is killed with SIGKILL during bursts of sends
// spread over all nodes (WebSocket, many in flight, and REST POSTs). After
// every kill its database passes PRAGMA integrity_check (sqlite3 CLI, on a
// copy of the files the dead process left); restarted on it, the node
// answers /readyz 200; and every message acked by any node in any round so
// far is, once the node has caught up, on every node with its text, the
// three histories identical.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { connectUser, fetchAllMessages, uniq, withTimeout } from '../lib/client.mjs';
import { haveSqliteCli, integrityCheck, prng, restBurst, wsBurst } from '../lib/crash.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import {
    historyOf,
    readyz,
    startNode,
    startNodes,
    startProxy,
    startValkey,
    stopAllValkey,
    waitFor,
    waitHistoryCount,
    waitSameHistory,
    waitReady,
} from '../lib/valkey.mjs';

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
            // not a count: a send of the victim may be stored without its ack
            const lastAcked = Math.max(0, ...pumps.flatMap((p) => p.acks.filter((a) => a.room === room).map((a) => a.id)));
            const hs = await waitSameHistory(survivors, room, lastAcked);
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

const ROUNDS = Number(process.env.TURBOCHAT_CRASH_ROUNDS) || 20;
const WS_WINDOW = 12; // sends in flight per WebSocket
const REST_WINDOW = 3; // POSTs in flight

// What is wrong with one node's history of room, or null: ids ascend, every
// stored message was sent (no stray or mangled rows), every acked message
// of the room is there with its text and user.
function historyProblem(hist, room, acked, sent) {
    let prev = 0;
    const byId = new Map();
    for (const m of hist) {
        if (!(m.id > prev)) return `ids of ${room} do not ascend (${prev} then ${m.id})`;
        prev = m.id;
        byId.set(m.id, m);
        const s = sent.get(m.text);
        if (!s || s.room !== room || s.user !== m.user) return `a stored message was never sent: ${JSON.stringify(m)}`;
    }
    const missing = [];
    for (const a of acked.values()) {
        if (a.room !== room) continue;
        const m = byId.get(a.id);
        if (!m || m.text !== a.text || m.user !== a.user) missing.push({ acked: a, stored: m ? { id: m.id, user: m.user, text: m.text } : null });
    }
    if (missing.length) return `${missing.length} acked messages of ${room} missing or changed (${hist.length} stored), e.g. ${JSON.stringify(missing.slice(0, 3))}`;
    return null;
}

describe('crash safety (cluster)', () => {
    it(`kill -9 of a node during bursts, ${ROUNDS} times: integrity_check ok, /readyz 200, every acked message on every node`, { timeout: 600000 }, withLogs(async (t) => {
        assert.ok(haveSqliteCli(), 'the sqlite3 CLI runs PRAGMA integrity_check (scripts/deps.sh --test installs it)');
        const seed = Number(process.env.TURBOCHAT_CRASH_SEED) || Math.floor(Math.random() * 2 ** 31);
        const rand = prng(seed);
        t.diagnostic(`seed ${seed} (TURBOCHAT_CRASH_SEED replays the kill points)`);
        const t0 = Date.now();
        const vk = await startValkey({ mode: 'plain' });
        const ids = [0, 1, 2].map((i) => uniq(`crash-n${i}`));
        // each node reaches Valkey through its own proxy, so that a node can
        // be restarted cut off from the cluster, on nothing but its own log
        const proxies = [];
        for (let i = 0; i < ids.length; i++) proxies.push(await startProxy(vk.port));
        const nodes = [];
        for (const [i, id] of ids.entries()) nodes.push(await startNode(proxies[i].env(vk.env), { args: ['--node-id', id] }));
        const rooms = [uniq('ccrash-a'), uniq('ccrash-b')];
        const acked = new Map(); // "room#id" -> { room, id, text, user }
        const sent = new Map(); // text -> { room, user }
        const perRound = [];
        let lastHists = null;

        for (let round = 1; round <= ROUNDS; round++) {
            const ctx = `round ${round} (seed ${seed})`;
            const v = (round - 1) % nodes.length; // the victim this round
            const killAt = 30 + Math.floor(rand() * 120); // acks this round before the kill
            const state = { stop: false, sent: 0 };
            const errors = [];
            let roundAcks = 0;
            const wanted = [];
            const want = (n) =>
                new Promise((resolve) => {
                    if (roundAcks >= n) resolve();
                    else wanted.push({ n, resolve });
                });
            const onAck = (node, a) => {
                const key = `${a.room}#${a.id}`;
                const old = acked.get(key);
                if (old && old.text !== a.text) errors.push(`id ${key} acked for two messages: ${JSON.stringify(old)} and ${JSON.stringify(a)}`);
                acked.set(key, { ...a, node });
                roundAcks += 1;
                for (const w of wanted.filter((x) => roundAcks >= x.n)) {
                    wanted.splice(wanted.indexOf(w), 1);
                    w.resolve();
                }
            };
            let victimDead = false;
            const clients = [];
            for (let i = 0; i < nodes.length; i++) clients.push(await connectUser(nodes[i].wsUrl, `ws${i}`, rooms));
            const opts = { sent, errors, state };
            const runs = clients.map((c, i) =>
                wsBurst(c, rooms, `ws${i}`, `r${round} ws${i}`, { ...opts, onAck: (a) => onAck(i, a), window: WS_WINDOW }),
            );
            const r = round % nodes.length; // the node taking REST this round
            runs.push(
                restBurst(nodes[r].url, rooms, 'rest', `r${round} rest`, {
                    ...opts,
                    dead: () => victimDead && r === v,
                    onAck: (a) => onAck(r, a),
                    window: REST_WINDOW,
                }),
            );
            const fail = async (e) => {
                state.stop = true;
                await Promise.all(runs);
                throw new Error(`${ctx}: ${e.message}; ${roundAcks} acked this round; errors: ${errors.slice(0, 5).join('; ')}`);
            };
            await withTimeout(want(killAt), 60000, `${killAt} acks before the kill`).catch(fail);
            const inflight = state.sent - roundAcks; // sent this round, not (yet) acked
            victimDead = true;
            await nodes[v].kill9();
            const ackedAtKill = roundAcks;
            // the survivors go on while the victim is down
            await withTimeout(want(ackedAtKill + 40), 60000, '40 acks on the survivors after the kill').catch(fail);
            state.stop = true;
            await withTimeout(clients[v].closed, 20000, 'the socket on the killed node closed');
            await Promise.all(runs);
            for (const [i, c] of clients.entries()) if (i !== v) await c.close();
            assert.deepEqual(errors.slice(0, 5), [], `${ctx}: sends refused or failed`);
            assert.ok(inflight > 0, `${ctx}: the kill came while sends were in flight`);

            assert.equal(integrityCheck(nodes[v].dbPath), 'ok', `${ctx}: PRAGMA integrity_check on node ${v} after kill -9`);
            // restart on the same database, first cut off from Valkey: its
            // own log alone has every message it acked (an ack comes after
            // the node's log stored the event)
            await proxies[v].cut();
            const back = await startNode(proxies[v].env(vk.env), {
                args: ['--node-id', ids[v]],
                dir: nodes[v].dir,
                dbPath: nodes[v].dbPath,
                ready: false,
            });
            nodes[v] = back;
            const cutOff = await readyz(back);
            assert.equal(cutOff.status, 503, `${ctx}: node ${v} is not ready while cut off from Valkey: ${cutOff.text}`);
            for (const room of rooms) {
                const hist = await fetchAllMessages(back.url, room);
                const p = historyProblem(hist, room, new Map([...acked].filter(([, a]) => a.node === v)), sent);
                assert.equal(p, null, `${ctx}: node ${v} restarted without Valkey, on its own log: ${p}`);
            }
            // then connected: /readyz 200 everywhere
            await proxies[v].restore();
            for (const n of nodes) await waitReady(n, { timeoutMs: 30000 });

            // every node has every acked message, and they agree
            let problem = null;
            await waitFor(
                async () => {
                    const hs = [];
                    for (const n of nodes) hs.push(await Promise.all(rooms.map((room) => fetchAllMessages(n.url, room))));
                    problem = null;
                    for (const [i, h] of hs.entries()) {
                        for (const [k, room] of rooms.entries()) {
                            const p = historyProblem(h[k], room, acked, sent);
                            if (p) problem = `node ${i}: ${p}`;
                        }
                    }
                    if (!problem && !hs.every((h) => JSON.stringify(h) === JSON.stringify(hs[0]))) {
                        problem = `histories differ: lengths ${hs.map((h) => h.map((x) => x.length).join('+')).join(', ')}`;
                    }
                    lastHists = hs;
                    return problem === null;
                },
                { timeoutMs: 60000, intervalMs: 250, what: `${ctx}: every acked message on every node after the restart of node ${v}` },
            ).catch((err) => {
                err.message += ` (last problem: ${problem})`;
                throw err;
            });
            perRound.push({ v, acked: ackedAtKill, after: roundAcks - ackedAtKill, inflight });
        }

        let gaps = 0;
        for (const h of lastHists[0]) h.forEach((m, i) => (gaps += m.id - (i ? h[i - 1].id : 0) - 1));
        const stored = lastHists[0].reduce((s, h) => s + h.length, 0);
        for (const n of nodes) await n.stop();
        for (const n of nodes) assert.equal(integrityCheck(n.dbPath), 'ok', `PRAGMA integrity_check on ${n.dbPath} after the clean stop`);
        for (const p of proxies) await p.close();
        await vk.stop();
        t.diagnostic(`rounds ${ROUNDS}, acked ${acked.size} in all, stored ${stored}, id gaps ${gaps}, ${Math.round((Date.now() - t0) / 1000)} s`);
        t.diagnostic(`victim:acks before/after the kill/in flight at the kill: ${perRound.map((x) => `${x.v}:${x.acked}/${x.after}/${x.inflight}`).join(' ')}`);
    }));
});

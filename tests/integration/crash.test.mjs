// Crash safety, measured (single node): twenty times over, the node is killed
// with SIGKILL while bursts of sends (WebSocket, many in flight, and REST
// POSTs) are under way, at a random point of the burst. After every kill the
// database passes PRAGMA integrity_check (sqlite3 CLI, on a copy of the files
// the dead process left, so that the node itself recovers the original);
// the node restarts on it and answers /readyz 200; and every message acked
// in any round so far is in its room's history with the text and user it
// was sent with (an ack promises that the event is stored).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { connectUser, fetchAllMessages, uniq, withTimeout } from '../lib/client.mjs';
import { haveSqliteCli, integrityCheck, prng, restBurst, wsBurst } from '../lib/crash.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';
import { waitReady } from '../lib/valkey.mjs';

const T = { timeout: 600000 };
const ROUNDS = Number(process.env.TURBOCHAT_CRASH_ROUNDS) || 20;
const WS_SENDERS = 3;
const WS_WINDOW = 16; // sends in flight per WebSocket
const REST_WINDOW = 3; // POSTs in flight

after(stopAll);

// Every acked message is in the history of its room on url, with its text
// and user; ids ascend; every stored message is one that was sent (no
// stray or mangled rows). Returns { stored, gaps } for the diagnostics.
async function checkHistory(url, rooms, acked, sent, ctx) {
    let stored = 0;
    let gaps = 0;
    for (const room of rooms) {
        const hist = await fetchAllMessages(url, room);
        stored += hist.length;
        const byId = new Map();
        let prev = 0;
        for (const m of hist) {
            assert.ok(m.id > prev, `${ctx}: ids of ${room} ascend (${prev} then ${m.id})`);
            gaps += m.id - prev - 1;
            prev = m.id;
            byId.set(m.id, m);
            const s = sent.get(m.text);
            assert.ok(s && s.room === room && s.user === m.user, `${ctx}: stored message was never sent: ${JSON.stringify(m)}`);
        }
        const missing = [];
        for (const a of acked.values()) {
            if (a.room !== room) continue;
            const m = byId.get(a.id);
            if (!m || m.text !== a.text || m.user !== a.user) missing.push({ acked: a, stored: m ? { id: m.id, user: m.user, text: m.text } : null });
        }
        assert.deepEqual(missing.slice(0, 10), [], `${ctx}: acked messages of ${room} missing or changed (${missing.length} of them; ${hist.length} stored)`);
    }
    return { stored, gaps };
}

// Record an ack; the same (room, id) acked twice with different texts is an
// id given out twice.
function recordAck(acked, a) {
    const key = `${a.room}#${a.id}`;
    const old = acked.get(key);
    assert.ok(!old || old.text === a.text, `id ${key} acked for two messages: ${JSON.stringify(old)} and ${JSON.stringify(a)}`);
    acked.set(key, a);
}

describe('crash safety (single node)', () => {
    it(`kill -9 during bursts of sends, ${ROUNDS} times: integrity_check ok, /readyz 200, every acked message kept`, T, withLogs(async (t) => {
        assert.ok(haveSqliteCli(), 'the sqlite3 CLI runs PRAGMA integrity_check (scripts/deps.sh --test installs it)');
        const seed = Number(process.env.TURBOCHAT_CRASH_SEED) || Math.floor(Math.random() * 2 ** 31);
        const rand = prng(seed);
        t.diagnostic(`seed ${seed} (TURBOCHAT_CRASH_SEED replays the kill points)`);
        const rooms = [uniq('crash-a'), uniq('crash-b')];
        const nodeArgs = ['--node-id', uniq('crash-node')];
        const acked = new Map(); // "room#id" -> { room, id, text, user }
        const sent = new Map(); // text -> { room, user }
        const t0 = Date.now();

        let s = await startServer({ env: RELAXED_RATE_ENV, args: nodeArgs });
        const { dir, dbPath } = s;
        const perRound = [];
        for (let round = 1; round <= ROUNDS; round++) {
            const ctx = `round ${round} (seed ${seed})`;
            await waitReady(s, { timeoutMs: 30000 });
            // every message acked in the rounds before is still there
            await checkHistory(s.url, rooms, acked, sent, `${ctx}, after restart`);

            const killAt = 30 + Math.floor(rand() * 150); // acks this round before the kill
            const state = { stop: false, killed: false, sent: 0 };
            const errors = [];
            let roundAcks = 0;
            let reached;
            const reachedKill = new Promise((r) => {
                reached = r;
            });
            const onAck = (a) => {
                recordAck(acked, a);
                roundAcks += 1;
                if (roundAcks >= killAt) reached();
            };
            const clients = [];
            for (let i = 0; i < WS_SENDERS; i++) clients.push(await connectUser(s.wsUrl, `ws${i}`, rooms));
            const opts = { onAck, sent, errors, state };
            const runs = clients.map((c, i) => wsBurst(c, rooms, `ws${i}`, `r${round} ws${i}`, { ...opts, window: WS_WINDOW }));
            runs.push(restBurst(s.url, rooms, 'rest', `r${round} rest`, { ...opts, window: REST_WINDOW }));
            try {
                await withTimeout(reachedKill, 60000, `${killAt} acks in round ${round}`);
            } catch (e) {
                state.stop = true;
                await Promise.all(runs);
                throw new Error(`${e.message}; ${roundAcks} acked; errors: ${errors.slice(0, 5).join('; ')}`);
            }
            const inflight = state.sent - roundAcks; // sent this round, not (yet) acked
            state.killed = true;
            await s.kill9();
            const ackedAtKill = roundAcks;
            state.stop = true;
            await withTimeout(Promise.all(clients.map((c) => c.closed)), 20000, 'sockets closed after kill -9');
            await Promise.all(runs);
            assert.deepEqual(errors.slice(0, 5), [], `${ctx}: sends refused or failed before the kill`);
            assert.ok(inflight > 0, `${ctx}: the kill came while sends were in flight`);

            assert.equal(integrityCheck(dbPath), 'ok', `${ctx}: PRAGMA integrity_check after kill -9`);
            s = await startServer({ env: RELAXED_RATE_ENV, args: nodeArgs, dir, dbPath });
            perRound.push({ killAt, acked: ackedAtKill, inflight });
        }

        // the last restart: readyz, everything acked in 20 rounds, and a
        // clean stop leaves a database that checks ok too
        await waitReady(s, { timeoutMs: 30000 });
        const { stored, gaps } = await checkHistory(s.url, rooms, acked, sent, 'after the last restart');
        const c = await connectUser(s.wsUrl, 'after', [rooms[0]]);
        const ack = await c.sendMessage(rooms[0], 'after the crashes');
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        const maxId = Math.max(...[...acked.values()].filter((a) => a.room === rooms[0]).map((a) => a.id));
        assert.ok(ack.id > maxId, `a new message gets an id (${ack.id}) above every acked one (${maxId})`);
        await c.close();
        await s.stop();
        assert.equal(integrityCheck(dbPath), 'ok', 'PRAGMA integrity_check after the clean stop');

        t.diagnostic(`rounds ${ROUNDS}, acked ${acked.size} in all, stored ${stored}, id gaps ${gaps}, ${Math.round((Date.now() - t0) / 1000)} s`);
        t.diagnostic(`acks/in flight at each kill: ${perRound.map((r) => `${r.acked}/${r.inflight}`).join(' ')}`);
    }));
});

// Durability and shutdown: history survives a clean restart, SIGTERM closes
// WebSockets with 1001 and exits 0 quickly, and after kill -9 in the middle of
// a burst every acknowledged message is still there (acked => durable).
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { api, connectUser, fetchAllMessages, uniq, withTimeout } from '../lib/client.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 180000 };

after(stopAll);

describe('restart', () => {
    it('messages survive SIGTERM and a restart on the same db; ids continue', T, withLogs(async () => {
        const s1 = await startServer({ env: RELAXED_RATE_ENV });
        const rooms = [uniq('keep'), uniq('keep2')];
        const c = await connectUser(s1.wsUrl, 'keeper', rooms);
        for (let i = 1; i <= 25; i++) {
            const ack = await c.sendMessage(rooms[i % 2], `ws ${i} \u00e9\u{1F600}`);
            assert.equal(ack.type, 'ack', JSON.stringify(ack));
        }
        for (let i = 1; i <= 5; i++) {
            const r = await api(s1.url, `/api/rooms/${rooms[0]}/messages`, {
                method: 'POST',
                body: { user: 'rester', text: `rest ${i}`, ref: `rr-${i}` },
            });
            assert.equal(r.status, 201, r.text);
        }
        const before0 = await fetchAllMessages(s1.url, rooms[0]);
        const before1 = await fetchAllMessages(s1.url, rooms[1]);
        assert.equal(before0.length + before1.length, 30);
        await s1.stop();

        const s2 = await startServer({ env: RELAXED_RATE_ENV, dir: s1.dir, dbPath: s1.dbPath });
        assert.deepEqual(await fetchAllMessages(s2.url, rooms[0]), before0, 'history of room 0 after restart');
        assert.deepEqual(await fetchAllMessages(s2.url, rooms[1]), before1, 'history of room 1 after restart');
        const list = await api(s2.url, '/api/rooms');
        for (const [room, hist] of [[rooms[0], before0], [rooms[1], before1]]) {
            const e = list.json.rooms.find((x) => x.name === room);
            assert.ok(e, `room ${room} listed after restart`);
            assert.equal(e.last_id, hist[hist.length - 1].id);
        }
        const c2 = await connectUser(s2.wsUrl, 'keeper');
        const j = await c2.join(rooms[0]);
        assert.equal(j.last_id, before0[before0.length - 1].id);
        const ack = await c2.sendMessage(rooms[0], 'after restart');
        assert.equal(ack.id, before0[before0.length - 1].id + 1, 'ids continue after a restart');
        // a ref accepted before the restart is still known (within 5 minutes)
        const retry = await api(s2.url, `/api/rooms/${rooms[0]}/messages`, {
            method: 'POST',
            body: { user: 'rester', text: 'rest 1 again', ref: 'rr-1' },
        });
        assert.ok([200, 201].includes(retry.status), retry.text);
        assert.equal(retry.status, 200, 'a ref accepted before the restart answers 200 with the original');
        assert.equal(retry.json.text, 'rest 1');
        await c2.close();
        await s2.stop();
    }));

    it('SIGTERM closes every WebSocket with 1001 and exits 0 within 5 s', T, withLogs(async () => {
        const s = await startServer({ env: RELAXED_RATE_ENV });
        const room = uniq('bye');
        const clients = await Promise.all(
            Array.from({ length: 5 }, (_, i) => connectUser(s.wsUrl, `bye${i}`, i < 3 ? [room] : [])),
        );
        await clients[0].sendMessage(room, 'before shutdown');
        const t0 = Date.now();
        const stopped = s.stop('SIGTERM', 10000);
        const closes = await withTimeout(Promise.all(clients.map((c) => c.closed)), 10000, 'WebSocket closes after SIGTERM');
        const res = await stopped;
        const elapsed = Date.now() - t0;
        for (const cl of closes) assert.equal(cl.code, 1001, `close code on shutdown: ${JSON.stringify(cl)}`);
        assert.equal(res.code, 0);
        assert.ok(elapsed < 5000, `exit took ${elapsed} ms`);
    }));

    it('kill -9 during a burst: after restart every acked message is in history', T, withLogs(async () => {
        const s1 = await startServer({ env: RELAXED_RATE_ENV });
        const rooms = [uniq('crash'), uniq('crash2')];
        const watcher = await connectUser(s1.wsUrl, 'watch', rooms);
        const senders = await Promise.all(
            Array.from({ length: 4 }, (_, i) => connectUser(s1.wsUrl, `burst${i}`, rooms)),
        );
        const acked = []; // { room, id, text, user }
        const TARGET = 300;
        let reached;
        const reachedTarget = new Promise((r) => {
            reached = r;
        });
        let stop = false;
        const sendErrors = [];
        const run = async (c, i) => {
            const inflight = new Set();
            let n = 0;
            while (!stop && !c.closeInfo) {
                if (inflight.size >= 16) {
                    await Promise.race(inflight);
                    continue;
                }
                n += 1;
                const room = rooms[n % 2];
                const text = `burst${i} #${n}`;
                const p = c
                    .sendMessage(room, text, `b${i}-${n}`)
                    .then((f) => {
                        if (f.type === 'ack') {
                            acked.push({ room, id: f.id, text, user: `burst${i}` });
                            if (acked.length >= TARGET) reached();
                        } else {
                            throw new Error(`send refused: ${JSON.stringify(f)}`);
                        }
                    })
                    .catch((e) => {
                        if (!c.closeInfo && !stop) sendErrors.push(e.message);
                    })
                    .finally(() => inflight.delete(p));
                inflight.add(p);
                // let the event loop breathe so acks can be processed
                if (n % 8 === 0) await new Promise((r) => setImmediate(r));
            }
            await Promise.allSettled([...inflight]);
        };
        const runs = senders.map((c, i) => run(c, i));
        try {
            await withTimeout(reachedTarget, 60000, `${TARGET} acks before the crash`);
        } catch (e) {
            stop = true;
            throw new Error(`${e.message}; ${acked.length} acked; send errors: ${sendErrors.slice(0, 5).join('; ')}`);
        }
        await s1.kill9();
        stop = true;
        await withTimeout(Promise.all([watcher, ...senders].map((c) => c.closed)), 10000, 'sockets closed after kill -9');
        await Promise.all(runs);
        assert.deepEqual(sendErrors, [], 'sends refused before the crash');
        const ackedSnapshot = [...acked];
        const seen = watcher.seen('message');

        const s2 = await startServer({ env: RELAXED_RATE_ENV, dir: s1.dir, dbPath: s1.dbPath });
        for (const room of rooms) {
            const hist = await fetchAllMessages(s2.url, room);
            const byId = new Map(hist.map((m) => [m.id, m]));
            const mine = ackedSnapshot.filter((a) => a.room === room);
            const missing = mine.filter((a) => !byId.has(a.id) || byId.get(a.id).text !== a.text);
            assert.deepEqual(missing, [], `acked but missing or different after kill -9 in ${room} (${mine.length} acked, ${hist.length} stored)`);
            for (const m of seen.filter((x) => x.room === room)) {
                const h = byId.get(m.id);
                if (h) assert.equal(h.text, m.text, `id ${m.id} broadcast as ${m.text} but stored as ${h.text}`);
            }
            // ids are never reused: a new message does not take an id that was broadcast before
            const c = await connectUser(s2.wsUrl, 'after', [room]);
            const ack = await c.sendMessage(room, 'after crash');
            assert.equal(ack.type, 'ack');
            const lostSeen = seen.filter((x) => x.room === room && !byId.has(x.id)).map((x) => x.id);
            assert.ok(!lostSeen.includes(ack.id), `id ${ack.id} reused after crash (broadcast earlier)`);
            assert.ok(ack.id > Math.max(0, ...mine.map((a) => a.id)), `new id ${ack.id} not above acked ids`);
            await c.close();
        }
        await s2.stop();
    }));
});

// Broker outage. Valkey (with its append-only file, as a managed Valkey
// keeps its data) is stopped for a few seconds during traffic and restarted
// on the same port: while it is down, sends get `unavailable` (nothing
// stored; a send already in flight when Valkey died may be stored, once, and
// its retry answers that id), REST history keeps working and /readyz is 503; afterwards every
// node is ready again by itself, and no acked message is missing anywhere.
// Second case: Valkey comes back EMPTY (lost its data); ids must still never
// be reused for another message of the room.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { api, connectUser, uniq } from '../lib/client.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import {
    readyz,
    startNodes,
    startValkey,
    stopAllValkey,
    waitFor,
    waitHistoryCount,
    waitSameHistory,
    waitReady,
} from '../lib/valkey.mjs';

const T = { timeout: 150000 };
const BACK_MS = 30000; // reconnect backoff may be a few seconds
const OUTAGE_MS = 3000; // how long Valkey stays down

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

// Sends one after the other with unique refs until stopped; records acks and
// error frames. Unavailable answers are retried later by the test.
function pump(client, room, tag) {
    const st = { acks: [], errors: [], stopped: false };
    st.done = (async () => {
        for (let k = 0; !st.stopped; k++) {
            const text = `${tag} ${k}`;
            const ref = `${tag}-${k}`;
            const sentAt = Date.now();
            let f;
            try {
                f = await client.sendMessage(room, text, ref);
            } catch (err) {
                // no answer at all (or the connection broke): recorded as such
                f = { type: 'error', code: `no answer: ${err.message.split('\n')[0]}` };
                if (!client.isOpen) {
                    st.errors.push({ ...f, text, ref, sentAt });
                    return;
                }
            }
            if (f.type === 'ack') st.acks.push({ ...f, text });
            else {
                st.errors.push({ ...f, text, ref, sentAt });
                // do not spin while the broker is down
                await new Promise((r) => setTimeout(r, 20));
            }
        }
    })();
    st.stop = () => {
        st.stopped = true;
        return st.done;
    };
    return st;
}

describe('cluster: Valkey outage', () => {
    for (const mode of ['plain', 'aiven']) {
        it(`${mode} Valkey stopped during traffic and restarted with its data: unavailable, 503, then ready again, nothing acked lost`, T, withLogs(async () => {
            const vk = await startValkey({ mode, persist: true });
            const nodes = await startNodes(vk.env, 3);
            const room = uniq('outage');
            const clients = [];
            for (let i = 0; i < 3; i++) clients.push(await connectUser(nodes[i].wsUrl, `o${i}`, [room]));
            const quiet = await connectUser(nodes[1].wsUrl, 'quiet', [room]);
            const pumps = clients.map((c, i) => pump(c, room, `n${i}`));
            const acked = () => pumps.reduce((s, p) => s + p.acks.length, 0);
            await waitFor(() => acked() >= 45, { timeoutMs: 20000, what: '45 acks before the outage' });
            const ackedBefore = pumps.flatMap((p) => [...p.acks]);

            await vk.stop();
            const downSince = Date.now();
            // every node notices
            for (const nd of nodes) await waitReady(nd, { want: 503, timeoutMs: 15000 });
            const r503 = await readyz(nodes[0]);
            assert.ok(r503.text.length > 0, '/readyz 503 gives a reason');
            // the pumps now see unavailable
            await waitFor(() => pumps.every((p) => p.errors.length > 0), {
                timeoutMs: 15000,
                what: 'every node answers sends with an error while Valkey is down',
            });
            const errCodes = new Set(pumps.flatMap((p) => p.errors.map((e) => e.code)));
            assert.deepEqual([...errCodes], ['unavailable'], 'the only error while Valkey is down is unavailable');
            // explicit checks on a quiet client and over REST
            const down = await quiet.sendMessage(room, 'sent while down', 'quiet-1');
            assert.equal(down.type, 'error', JSON.stringify(down));
            assert.equal(down.code, 'unavailable');
            assert.equal(down.ref, 'quiet-1', 'the error carries the ref');
            const rest = await api(nodes[2].url, `/api/rooms/${room}/messages`, {
                method: 'POST',
                body: { user: 'rest', text: 'REST while down', ref: 'rest-down' },
            });
            assert.equal(rest.status, 503, rest.text);
            assert.equal(rest.json && rest.json.error && rest.json.error.code, 'unavailable', rest.text);
            // history keeps working from the local log
            for (const nd of nodes) {
                const h = await api(nd.url, `/api/rooms/${room}/messages?limit=5`);
                assert.equal(h.status, 200, `history while Valkey is down: ${h.text}`);
            }
            // keep Valkey down for 3 s (through several reconnect attempts),
            // checking all along: /readyz 503 on every node, sends refused
            const downTexts = [];
            for (let k = 0; Date.now() - downSince < OUTAGE_MS; k++) {
                for (const nd of nodes) assert.equal((await readyz(nd)).status, 503, 'readyz during the outage');
                const text = `quiet down ${k}`;
                downTexts.push(text);
                const f = await quiet.sendMessage(room, text, `quiet-down-${k}`);
                assert.equal(f.code, 'unavailable', JSON.stringify(f));
                await new Promise((r) => setTimeout(r, 100)); // pace the checks
            }

            await vk.restart();
            for (const nd of nodes) await waitReady(nd, { timeoutMs: BACK_MS });
            // traffic flows again on every node
            const base = pumps.map((p) => p.acks.length);
            await waitFor(() => pumps.every((p, i) => p.acks.length >= base[i] + 10), {
                timeoutMs: 20000,
                what: '10 more acks on every node after Valkey is back',
            });
            await Promise.all(pumps.map((p) => p.stop()));
            // the quiet client retries with the same ref: accepted now, once
            const retry = await quiet.sendMessage(room, 'sent while down', 'quiet-1');
            assert.equal(retry.type, 'ack', JSON.stringify(retry));
            const retry2 = await quiet.sendMessage(room, 'sent while down (again)', 'quiet-1');
            assert.equal(retry2.id, retry.id, 'a second retry answers the same id');

            const allAcks = [...pumps.flatMap((p) => p.acks), { ...retry, text: 'sent while down' }];
            const maxId = Math.max(...allAcks.map((a) => a.id));
            // not a count: a send answered unavailable may be stored too
            const hs = await waitSameHistory(nodes, room, maxId);
            const byId = new Map(hs[0].map((m) => [m.id, m]));
            for (const a of allAcks) {
                assert.ok(byId.has(a.id), `acked id ${a.id} is in history`);
                assert.equal(byId.get(a.id).text, a.text, `text of acked id ${a.id}`);
            }
            for (const a of ackedBefore) assert.equal(byId.get(a.id).text, a.text, `acked before the outage: ${a.id}`);
            // ids unique and without gaps; nothing refused was stored
            assert.deepEqual(hs[0].map((m) => m.id), Array.from({ length: hs[0].length }, (_, k) => k + 1));
            const acceptedTexts = new Set(allAcks.map((a) => a.text));
            const refused = pumps.flatMap((p) => p.errors.map((e) => e.text)).filter((t) => !acceptedTexts.has(t));
            const stored = new Set(hs[0].map((m) => m.text));
            // A send whose script reached Valkey just before it went down has an
            // outcome no node can know: it is answered unavailable and may be
            // stored (docs/PROTOCOL.md). It must have been sent before Valkey
            // stopped, be stored once, and a retry with its ref returns that id.
            const leaked = refused.filter((t) => stored.has(t));
            const pumpErrors = pumps.flatMap((p) => p.errors);
            for (const t of leaked) {
                const e = pumpErrors.find((x) => x.text === t);
                const m = hs[0].find((x) => x.text === t);
                assert.ok(e.sentAt < downSince, `${JSON.stringify(t)} was stored after an unavailable answer ` +
                    `but was sent ${e.sentAt - downSince} ms after Valkey had stopped (id ${m.id})`);
                assert.equal(hs[0].filter((x) => x.text === t).length, 1, `${t} stored once`);
                const owner = clients[pumps.findIndex((p) => p.errors.includes(e))];
                const again = await owner.sendMessage(room, t, e.ref);
                assert.equal(again.type, 'ack', JSON.stringify(again));
                assert.equal(again.id, m.id, `retrying ${e.ref} answers the stored id`);
            }
            assert.ok(!stored.has('REST while down'));
            for (const t of downTexts) assert.ok(!stored.has(t), `${t} (refused during the outage) is not stored`);
            assert.equal(hs[0].length, allAcks.length + leaked.length,
                `stored exactly the acked messages and the in-flight ones (max id ${maxId})`);
            assert.equal(hs[0].filter((m) => m.text === 'sent while down').length, 1, 'retried ref stored once');
            await quiet.close();
            for (const c of clients) await c.close();
            await stopAll();
            await vk.stop();
        }));
    }

    it('Valkey restarted EMPTY (data lost): ids are not reused, histories stay consistent', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain', persist: false });
        const nodes = await startNodes(vk.env, 2);
        const room = uniq('lost');
        const a = await connectUser(nodes[0].wsUrl, 'lo0', [room]);
        const b = await connectUser(nodes[1].wsUrl, 'lo1', [room]);
        for (let k = 1; k <= 6; k++) {
            const ack = await (k % 2 ? a : b).sendMessage(room, `before ${k}`);
            assert.equal(ack.id, k);
        }
        await waitHistoryCount(nodes, room, 6);
        await vk.stop();
        for (const nd of nodes) await waitReady(nd, { want: 503, timeoutMs: 15000 });
        await vk.restart();
        // (no append-only file: the restarted Valkey started empty; the nodes
        // may write their own keys as soon as they reconnect)
        for (const nd of nodes) await waitReady(nd, { timeoutMs: BACK_MS });
        const ack = await b.sendMessage(room, 'after data loss');
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        assert.ok(ack.id > 6, `the first id after Valkey lost its data is ${ack.id}; ids 1..6 are already taken`);
        const m = await a.message(room, ack.id);
        assert.equal(m.text, 'after data loss');
        const hs = await waitHistoryCount(nodes, room, 7);
        assert.deepEqual(hs[1], hs[0], 'both nodes agree');
        assert.deepEqual(
            hs[0].filter((x) => x.id <= 6).map((x) => x.text),
            [1, 2, 3, 4, 5, 6].map((k) => `before ${k}`),
            'stored messages were not overwritten',
        );
        const joined = await (await connectUser(nodes[1].wsUrl, 'late', [])).join(room);
        assert.equal(joined.last_id, ack.id);
        await a.close();
        await b.close();
        await stopAll();
        await vk.stop();
    }));
});

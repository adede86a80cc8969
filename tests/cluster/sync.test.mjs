// Cluster sync (issue 10): a node added after the replay window lost the
// beginning of the log copies what it lacks from a live peer before it
// reports ready (/readyz 503 with the progress meanwhile), then every node's
// log is identical; a peer killed during the copy leaves the work to another;
// accounts made before the window was lost sign in on the new node; the peer
// endpoints refuse requests without a valid signature.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, describe, it } from 'node:test';
import { accountsEnv, describeCli, runCli, signin, signup, uname } from '../lib/accounts.mjs';
import { api, connectUser, sendMany, uniq } from '../lib/client.mjs';
import { freePort, stopAll, withLogs } from '../lib/server.mjs';
import { readyz, startNode, startNodes, startValkey, stopAllValkey, waitFor, waitReady } from '../lib/valkey.mjs';

const T = { timeout: 280000 };
// replay_max low so the window lost most of the log; small pages so the copy
// is slow enough to be watched.
const SYNC_ENV = { TURBOCHAT_REPLAY_MAX: '1000', TURBOCHAT_SYNC_PAGE_SIZE: '100' };
const BIG = 30000;

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

async function getJson(node, path) {
    const r = await api(node.url, path);
    assert.equal(r.status, 200, `${path} on ${node.url}: ${r.status} ${r.text}`);
    return r.json;
}

// Every event of room on node, all fields, by paging /events.
async function eventsOf(node, room) {
    const out = [];
    let afterId = 0;
    for (;;) {
        const page = await getJson(node, `/api/rooms/${room}/events?after=${afterId}&limit=200`);
        out.push(...page.events);
        if (!page.has_more || page.events.length === 0) return out;
        afterId = page.events[page.events.length - 1].id;
    }
}

async function roomsOf(node) {
    const { rooms } = await getJson(node, '/api/rooms');
    return rooms.map((r) => ({ name: r.name, last_id: r.last_id })).sort((a, b) => (a.name < b.name ? -1 : 1));
}

async function assertSameLog(a, b, rooms, counts) {
    assert.deepEqual(await roomsOf(b), await roomsOf(a), `GET /api/rooms of ${b.url} and ${a.url}`);
    for (const room of rooms) {
        const [ea, eb] = [await eventsOf(a, room), await eventsOf(b, room)];
        if (counts[room]) assert.equal(ea.length, counts[room], `events of ${room} on ${a.url}`);
        assert.equal(eb.length, ea.length, `as many events of ${room} on ${b.url} as on ${a.url}`);
        for (let i = 0; i < ea.length; i++) {
            assert.equal(eb[i].id, i + 1, `${room}: ids without gaps on ${b.url}`);
            assert.deepEqual(eb[i], ea[i], `${room}: event ${ea[i].id} on ${b.url} as on ${a.url}`);
        }
    }
}

// Every log of node as its peer endpoints serve it (the stored rows, every
// column, and each log's claims), signed with the cluster secret of vk.
async function dumpLogs(vk, node) {
    const secret = String(await vk.command('GET', 'turbochat:cluster-secret'));
    const get = async (target) => {
        const ms = Date.now();
        const sig = crypto.createHmac('sha256', secret).update(`GET\n${target}\n${ms}`).digest('hex');
        const r = await api(node.url, target, { headers: { 'X-TurboChat-Peer': `${ms}.${sig}` } });
        assert.equal(r.status, 200, `${target} on ${node.url}: ${r.text.slice(0, 300)}`);
        return r;
    };
    const { logs } = (await get('/internal/logs')).json;
    const out = { logs, rows: {} };
    for (const { log } of logs) {
        const rows = [];
        for (let afterId = 0, first = true; ; first = false) {
            const r = await get(`/internal/logs/${log}/events?after=${afterId}&limit=20000${first ? '&claims=1' : ''}`);
            const lines = r.text.trim().split('\n').map((l) => JSON.parse(l));
            if (first) rows.push(lines[0]);
            const events = lines.slice(1, -1);
            rows.push(...events);
            if (events.length === 0) break;
            afterId = events[events.length - 1].id;
        }
        out.rows[log] = rows;
    }
    return out;
}

async function assertSameStore(vk, a, b) {
    const [da, db] = [await dumpLogs(vk, a), await dumpLogs(vk, b)];
    assert.deepEqual(db.logs, da.logs, `the logs of ${b.url} and ${a.url}`);
    for (const { log } of da.logs) assert.deepEqual(db.rows[log], da.rows[log], `log ${log}: every row and claim of ${b.url} as of ${a.url}`);
}

// Poll /readyz until 200; the 503 answers with copy progress seen on the way.
async function watchCopy(node, { onProgress, timeoutMs = 120000 } = {}) {
    const seen = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const r = await readyz(node);
        if (r.status === 200) return seen;
        if (r.status === 503) {
            let body = null;
            try {
                body = JSON.parse(r.text);
            } catch {
                /* not JSON */
            }
            if (body && body.copy) {
                seen.push(body);
                if (onProgress) await onProgress(body);
            }
        }
        assert.ok(Date.now() < deadline, `${node.url} not ready within ${timeoutMs} ms; last ${r.status} ${r.text}`);
        await new Promise((res) => setTimeout(res, 5));
    }
}

// 30,000 messages into one room over six WebSockets, many in flight, and a
// few edits, reactions, replies and deletes in another.
async function fill(nodes, big, small) {
    const senders = [];
    for (let i = 0; i < nodes.length; i++) {
        for (let k = 0; k < 2; k++) senders.push(await connectUser(nodes[i].wsUrl, `s${i}${k}`, [big]));
    }
    const per = BIG / senders.length;
    await Promise.all(
        senders.map((c, si) => sendMany(c, big, per, (i) => `m ${si}.${i}`, { ref: (i) => `r${si}-${i}`, window: 64 })),
    );
    for (const c of senders) c.close();
    const base = (n) => nodes[n % nodes.length].url;
    const ids = [];
    for (let i = 0; i < 20; i++) {
        const body = { user: `w${i % 3}`, text: `small ${i} @w${(i + 1) % 3}` };
        if (i === 1) body.text = 'quotes " and \\ back\\slash, </script> ünïcödé 😀 \u2028 done';
        if (i > 0 && i % 4 === 0) body.reply_to = ids[i - 1];
        // a reply goes where its original is sure to be already
        const r = await api(base(body.reply_to ? i - 1 : i), `/api/rooms/${small}/messages`, { method: 'POST', body });
        assert.equal(r.status, 201, r.text);
        ids.push(r.json.id);
    }
    // a change goes to any node: each must have its target, and the change
    // before it (a reaction removed where it was not made), first
    const everyNodeHas = (lastId) =>
        waitFor(async () => {
            for (const node of nodes) if ((await roomsOf(node)).find((r) => r.name === small)?.last_id !== lastId) return false;
            return true;
        }, { timeoutMs: 30000, what: `the ${lastId} events of ${small} on every node` });
    await everyNodeHas(20);
    const changes = [
        [0, 'PATCH', `/messages/${ids[0]}`, { user: 'w0', text: 'edited 0' }],
        [1, 'PUT', `/messages/${ids[2]}/reactions/${encodeURIComponent('👍')}?user=w1`],
        [2, 'PUT', `/messages/${ids[2]}/reactions/${encodeURIComponent('🎉')}?user=w2`],
        [0, 'DELETE', `/messages/${ids[2]}/reactions/${encodeURIComponent('🎉')}?user=w2`],
        [1, 'DELETE', `/messages/${ids[3]}?user=w0`],
        [2, 'PATCH', `/messages/${ids[5]}`, { user: 'w2', text: 'edited 5' }],
        [0, 'DELETE', `/messages/${ids[7]}?user=w1`],
    ];
    for (const [k, [n, method, p, body]] of changes.entries()) {
        const r = await api(base(n), `/api/rooms/${small}${p}`, { method, body, headers: body ? {} : { 'Content-Length': 0 } });
        assert.equal(r.status, 200, `${method} ${p}: ${r.text}`);
        await everyNodeHas(20 + k + 1);
    }
    return { [big]: BIG, [small]: 20 + changes.length };
}

describe('cluster sync', () => {
    it('a new node copies the log beyond the window before it is ready; a killed peer hands over', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain' });
        const nodes = await startNodes(vk.env, 3, { env: SYNC_ENV });
        const [big, small] = [uniq('big'), uniq('small')];
        const counts = await fill(nodes, big, small);
        // every peer has it all before the fourth node comes
        await waitFor(async () => (await roomsOf(nodes[2])).find((r) => r.name === big)?.last_id === BIG, {
            timeoutMs: 60000,
            what: 'the whole log on node 3',
        });
        const windowLen = await vk.command('XLEN', `turbochat:{${big}}:log`);
        assert.ok(windowLen < BIG / 2, `the replay window lost most of the log (XLEN ${windowLen})`);

        const fourth = await startNode(vk.env, { env: SYNC_ENV, ready: false });
        const seen = await watchCopy(fourth);
        assert.ok(seen.length > 0, '/readyz answered 503 with the progress at least once');
        const last = seen[seen.length - 1];
        assert.equal(last.error.code, 'unavailable');
        assert.match(last.error.message, /^copying the log/);
        assert.ok(seen.some((b) => b.copy.peer && b.copy.total >= BIG && b.copy.copied < b.copy.total), JSON.stringify(seen.slice(-3)));
        assert.match(fourth.logs(), /sync_done/);
        await assertSameLog(nodes[0], fourth, [big, small], counts);
        await assertSameStore(vk, nodes[0], fourth);

        // a fifth node whose peer dies in the middle of the copy
        const fifth = await startNode(vk.env, { env: SYNC_ENV, ready: false });
        let victim = null;
        await watchCopy(fifth, {
            onProgress: async (b) => {
                if (victim || !b.copy.peer || b.copy.copied === 0) return;
                const port = Number(new URL(b.copy.peer).port);
                victim = [...nodes, fourth].find((n) => n.port === port);
                assert.ok(victim, `the peer ${b.copy.peer} is one of ours`);
                await victim.kill9();
            },
        });
        assert.ok(victim, 'a peer was killed during the copy');
        assert.match(fifth.logs(), /sync_peer_failed/);
        const survivor = [...nodes, fourth].find((n) => n !== victim);
        await assertSameLog(survivor, fifth, [big, small], counts);
        await assertSameStore(vk, survivor, fifth);
    }));

    it('an account made before the window was lost signs in on a new node', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain' });
        const env = accountsEnv(SYNC_ENV);
        const nodes = await startNodes(vk.env, 2, { env });
        const name = uname('old');
        await signup(nodes[0].url, uname('admin'), 'first-admin-pw-1');
        await signup(nodes[1].url, name, 'old-account-pw-1');
        // whichever node the third copies from has both accounts
        const sameStores = async () => JSON.stringify(await dumpLogs(vk, nodes[0])) === JSON.stringify(await dumpLogs(vk, nodes[1]));
        await waitFor(sameStores, { what: 'both accounts on both nodes' });
        // the window forgets everything (as replay_ttl_s does to an idle log)
        const keys = await vk.command('KEYS', 'turbochat:{*}:log');
        assert.ok(keys.length > 0, 'replay windows exist');
        await vk.command('DEL', ...keys);

        const third = await startNode(vk.env, { env });
        assert.match(third.logs(), /sync_done/);
        await assertSameStore(vk, nodes[0], third);
        await signin(third.url, name, 'old-account-pw-1');
    }));

    it('announced peers that do not answer: the node retries until their entries expire, then is ready', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain' });
        const dead = await freePort();
        await vk.command('HSET', 'turbochat:peers', 'gone-node', `${Date.now() + 4000} http://127.0.0.1:${dead}`);
        const node = await startNode(vk.env, { env: SYNC_ENV, ready: false });
        const seen = await watchCopy(node, { timeoutMs: 30000 });
        assert.ok(seen.length > 0, '/readyz 503 while the announced peer is tried');
        assert.match(node.logs(), /sync_peer_failed[^\n]*gone-node/);
        assert.match(node.logs(), /sync_gave_up/);
        // it announces itself once ready, and a clean stop withdraws it
        const entry = await waitFor(async () => vk.command('HGET', 'turbochat:peers', `test-${node.port}`), { what: 'its entry' });
        assert.match(String(entry), new RegExp(`^\\d+ http://127\\.0\\.0\\.1:${node.port}$`));
        await node.stop();
        assert.equal(await vk.command('HGET', 'turbochat:peers', `test-${node.port}`), null);
    }));

    it('a Valkey restarted empty gets the secret back from the nodes, and a new node still copies', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain' });
        const [first] = await startNodes(vk.env, 1, { env: SYNC_ENV });
        const room = uniq('kept');
        const c = await connectUser(first.wsUrl, 'keeper', [room]);
        await sendMany(c, room, 50, (i) => `kept ${i}`);
        const secret = await vk.command('GET', 'turbochat:cluster-secret');
        await vk.stop();
        await vk.restart(); // no persistence: no window, no peers, no secret
        await waitReady(first, { timeoutMs: 30000 });
        await waitFor(async () => (await vk.command('HGET', 'turbochat:peers', `test-${first.port}`)) !== null, {
            timeoutMs: 30000,
            what: 'the node announced again',
        });
        assert.equal(await vk.command('GET', 'turbochat:cluster-secret'), secret, 'the surviving node put its secret back');
        const second = await startNode(vk.env, { env: SYNC_ENV });
        assert.match(second.logs(), /sync_done[^\n]*events=50/);
        await assertSameLog(first, second, [room], { [room]: 50 });
    }));

    it('peer_url and cluster_secret are checked', T, () => {
        for (const [env, re] of [
            [{ TURBOCHAT_PEER_URL: 'https://10.0.0.1:8443' }, /TURBOCHAT_PEER_URL.*http:\/\//],
            [{ TURBOCHAT_PEER_URL: 'http://10.0.0.1' }, /TURBOCHAT_PEER_URL.*port/],
            [{ TURBOCHAT_CLUSTER_SECRET: 'tiny-secret-xyz' }, /TURBOCHAT_CLUSTER_SECRET.*32 bytes/],
            [{ TURBOCHAT_SYNC_PAGE_SIZE: '99' }, /TURBOCHAT_SYNC_PAGE_SIZE/],
        ]) {
            const r = runCli(['--check-config'], { env });
            assert.equal(r.status, 1, describeCli(['--check-config'], r));
            assert.match(r.stdout + r.stderr, re, describeCli(['--check-config'], r));
            assert.doesNotMatch(r.stdout + r.stderr, /tiny-secret-xyz/, 'the secret is not printed');
        }
        const ok = runCli(['--check-config'], { env: { TURBOCHAT_PEER_URL: 'http://[fd00::1]:8080', TURBOCHAT_CLUSTER_SECRET: 's'.repeat(32) } });
        assert.equal(ok.status, 0, describeCli(['--check-config'], ok));
        assert.match(ok.stdout, /peer_url = http:\/\/\[fd00::1\]:8080/);
        assert.match(ok.stdout, /cluster_secret = \*\*\*\*/);
    });

    it('the peer endpoints refuse a missing, wrong or old signature', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain' });
        const [node] = await startNodes(vk.env, 1);
        await connectUser(node.wsUrl, 'someone', ['general']).then((c) => c.sendMessage('general', 'hi'));
        const secret = await vk.command('GET', 'turbochat:cluster-secret');
        assert.match(String(secret), /^[0-9a-f]{64}$/, 'one random secret kept in Valkey');
        const sign = (target, ms, key = secret) =>
            `${ms}.${crypto.createHmac('sha256', key).update(`GET\n${target}\n${ms}`).digest('hex')}`;
        const target = '/internal/logs';
        const get = (headers, t = target) => api(node.url, t, { headers });
        const refused = [
            ['missing', {}],
            ['wrong key', { 'X-TurboChat-Peer': sign(target, Date.now(), 'x'.repeat(64)) }],
            ['other path', { 'X-TurboChat-Peer': sign('/internal/logs/general/events', Date.now()) }],
            ['old', { 'X-TurboChat-Peer': sign(target, Date.now() - 120000) }],
            ['garbage', { 'X-TurboChat-Peer': 'nope' }],
        ];
        for (const [what, headers] of refused) {
            const r = await get(headers);
            assert.equal(r.status, 401, `${what}: ${r.status} ${r.text}`);
            assert.equal(r.json?.error?.code, 'unauthorized', `${what}: ${r.text}`);
        }
        const ok = await get({ 'X-TurboChat-Peer': sign(target, Date.now()) });
        assert.equal(ok.status, 200, ok.text);
        assert.deepEqual(ok.json.logs.find((l) => l.log === 'general'), { log: 'general', last: 1 });
        const events = '/internal/logs/general/events?after=0&limit=100&claims=1';
        const page = await get({ 'X-TurboChat-Peer': sign(events, Date.now()) }, events);
        assert.equal(page.status, 200, page.text);
        const lines = page.text.trim().split('\n').map((l) => JSON.parse(l));
        assert.deepEqual(lines[0], { log: 'general', claims: [] });
        assert.equal(lines[1].id, 1);
        assert.equal(lines[1].t, 'hi');
        assert.deepEqual(lines[lines.length - 1], { end: true, count: 1 });
        await waitReady(node);
    }));
});

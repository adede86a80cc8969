// Cluster configuration and failure to connect:
// - Valkey unreachable: the node serves (healthz 200) but is not ready, sends
//   get unavailable (nothing stored); it never falls back to a local broker;
//   once a Valkey appears on that port it becomes ready by itself.
// - TLS with a CA that does not verify the server: not ready, logs why.
// - AUTH with a wrong password: not ready, logs why.
// - REDIS_URL forms (rediss://, valkeys://) work.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { api, connectUser, uniq } from '../lib/client.mjs';
import { freePort, stopAll, withLogs } from '../lib/server.mjs';
import {
    makeCa,
    readyz,
    startNode,
    startValkey,
    stopAllValkey,
    waitFor,
    waitHistoryCount,
    waitReady,
} from '../lib/valkey.mjs';

const T = { timeout: 90000 };

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

// The node is not ready: its log shows a failed connection attempt matching
// re (so the answer is not just "still starting") and /readyz answers 503
// before and after it.
async function assertStaysUnready(node, re, what) {
    const r0 = await readyz(node);
    assert.equal(r0.status, 503, `${what}: /readyz ${r0.status} ${r0.text}`);
    await waitFor(() => re.test(node.logs()), { timeoutMs: 15000, what: `log line matching ${re} (${what})` });
    const r = await readyz(node);
    assert.equal(r.status, 503, `${what}: /readyz ${r.status} ${r.text}`);
}

async function assertRefusesSends(node, what) {
    const room = uniq('refuse');
    const c = await connectUser(node.wsUrl, 'sender');
    // joining may or may not work without a broker; a send must be refused
    c.send({ type: 'join', room });
    await c.next((f) => (f.type === 'joined' || f.type === 'error') && f.room === room);
    const f = await c.sendMessage(room, 'must not be stored');
    assert.equal(f.type, 'error', `${what}: ${JSON.stringify(f)}`);
    assert.ok(['unavailable', 'not_joined'].includes(f.code), `${what}: ${JSON.stringify(f)}`);
    const r = await api(node.url, `/api/rooms/${room}/messages`, {
        method: 'POST',
        body: { user: 'rest', text: 'must not be stored either' },
    });
    assert.equal(r.status, 503, `${what}: REST send ${r.status} ${r.text}`);
    assert.equal(r.json && r.json.error && r.json.error.code, 'unavailable', r.text);
    const h = await api(node.url, `/api/rooms/${room}/messages`);
    assert.equal(h.status, 200, h.text);
    assert.deepEqual(h.json.messages, [], `${what}: nothing stored`);
    await c.close();
    return room;
}

describe('cluster configuration', () => {
    it('Valkey unreachable: healthz 200, readyz 503, sends unavailable, no local fallback; ready once Valkey is there', T, withLogs(async (t) => {
        const port = await freePort();
        const node = await startNode({ REDIS_HOST: '127.0.0.1', REDIS_PORT: String(port) }, { ready: false });
        assert.equal((await api(node.url, '/healthz')).status, 200);
        assert.equal((await readyz(node)).status, 503);
        await assertStaysUnready(node, /connection refused/i, 'nothing listens on the Valkey port');
        // with WebSocket join required for send, check the join path too
        const room = uniq('unreach');
        const c = await connectUser(node.wsUrl, 'waiter');
        c.send({ type: 'join', room });
        const jf = await c.next((f) => (f.type === 'joined' || f.type === 'error') && f.room === room);
        t.diagnostic(`join while Valkey is unreachable answers ${JSON.stringify(jf)}`);
        if (jf.type === 'joined') {
            const f = await c.sendMessage(room, 'not now', 'unreach-1');
            assert.equal(f.type, 'error', JSON.stringify(f));
            assert.equal(f.code, 'unavailable', JSON.stringify(f));
        } else {
            assert.equal(jf.code, 'unavailable', `join without a broker: ${JSON.stringify(jf)}`);
        }
        await assertRefusesSends(node, 'Valkey unreachable');
        // a Valkey appears on that port: the node becomes ready without a restart
        const vk = await startValkey({ mode: 'plain', port });
        await waitReady(node, { timeoutMs: 30000 });
        if (jf.type !== 'joined') await c.join(room);
        const ack = await c.sendMessage(room, 'now', 'unreach-1');
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        assert.equal(ack.id, 1, 'the refused send took no id');
        await c.message(room, 1);
        await c.close();
        await stopAll();
        await vk.stop();
    }));

    it('TLS with a CA that does not verify the server: not ready, logs a verification error', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'aiven' });
        const wrong = await makeCa(vk.dir, 'wrongca');
        const node = await startNode({ ...vk.env, REDIS_CA_FILE: wrong.caCert }, { ready: false });
        await assertStaysUnready(node, /verif/i, 'wrong CA');
        await assertRefusesSends(node, 'wrong CA');
        // nothing reached Valkey
        assert.deepEqual(await vk.command('DBSIZE'), 0);
        await stopAll();
        await vk.stop();
    }));

    it('TLS without REDIS_CA_FILE against a private CA: not ready (system store does not trust it)', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'aiven' });
        const env = { ...vk.env };
        delete env.REDIS_CA_FILE;
        const node = await startNode(env, { ready: false });
        await assertStaysUnready(node, /verif/i, 'system CA store');
        await stopAll();
        await vk.stop();
    }));

    it('AUTH with a wrong password: not ready, logs the refusal', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'aiven' });
        const node = await startNode({ ...vk.env, REDIS_PASSWORD: 'not-the-password' }, { ready: false });
        await assertStaysUnready(node, /WRONGPASS/, 'wrong password');
        await assertRefusesSends(node, 'wrong password');
        assert.ok(!node.logs().includes('not-the-password'), 'the password is not logged');
        await stopAll();
        await vk.stop();
    }));

    it('REDIS_URL forms: rediss:// and valkeys:// with user and password, redis:// plain', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'aiven' });
        const pv = await startValkey({ mode: 'plain' });
        const n1 = await startNode(vk.urlEnv); // rediss://app:PW@localhost:P
        const n2 = await startNode({
            REDIS_URL: vk.url.replace(/^rediss:/, 'valkeys:'),
            REDIS_CA_FILE: vk.ca.caCert,
        });
        const n3 = await startNode(pv.urlEnv);
        for (const n of [n1, n2, n3]) {
            assert.ok(!n.logs().includes(vk.password), `the password is not logged (${path.basename(n.logFile)})`);
        }
        const room = uniq('url');
        const c1 = await connectUser(n1.wsUrl, 'u1', [room]);
        const c2 = await connectUser(n2.wsUrl, 'u2', [room]);
        const ack = await c1.sendMessage(room, 'over rediss');
        assert.equal(ack.type, 'ack', JSON.stringify(ack));
        const m = await c2.message(room, ack.id);
        assert.equal(m.text, 'over rediss');
        await waitHistoryCount([n1, n2], room, 1);
        // the plain node is on another Valkey: a separate cluster
        const c3 = await connectUser(n3.wsUrl, 'u3', [room]);
        const a3 = await c3.sendMessage(room, 'other cluster');
        assert.equal(a3.id, 1, 'another Valkey, another id sequence');
        // the aiven Valkey holds keys now, under the ACL user
        assert.ok((await vk.command('DBSIZE')) > 0);
        for (const c of [c1, c2, c3]) await c.close();
        await stopAll();
        await vk.stop();
        await pv.stop();
    }));
});

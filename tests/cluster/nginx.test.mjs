// deploy/nginx.conf in front of three real nodes and one real Valkey: Debian's
// nginx, run as this test's own process (no root, no daemon) on a free
// loopback port, with a config made from deploy/nginx.conf by replacing only
// the upstream servers, the listen address and the file paths.
// - REST and the site are balanced over the nodes, and writes pass the nodes'
//   Origin check because Host goes through unchanged;
// - WebSocket clients land on different nodes and chat with each other; a
//   foreign origin's handshake is refused without nginx leaving a node out;
// - a node stopped with SIGTERM sends its clients 1001; they reconnect
//   through nginx to the other nodes and, joining with since, get what was
//   sent meanwhile, once each; REST through nginx keeps working.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { api, connect, connectUser, fetchAllMessages, uniq, WAIT_MS, withTimeout } from '../lib/client.mjs';
import { restPost } from '../lib/lifecycle.mjs';
import { freePort, stopAll, withLogs } from '../lib/server.mjs';
import { startNodes, startValkey, stopAllValkey, waitFor, waitHistoryCount } from '../lib/valkey.mjs';

const T = { timeout: 180000 };
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const NGINX_BIN = process.env.NGINX_BIN || '/usr/sbin/nginx';
// What deploy/nginx.conf asks the nodes behind it to set (see its header):
// the proxy's address, whose X-Forwarded-For names the client.
const NODE_ENV = { TURBOCHAT_TRUSTED_PROXIES: '127.0.0.1' };

let vk;
let nodes;
let nginx;

// deploy/nginx.conf for this test: the three `server nodeN:8080 ...;` lines
// of the upstream point at ports (their parameters kept), `listen 80` becomes
// a loopback port, and the access log and temporary files go to dir.
function nginxConfig(source, { ports, listenPort, dir }) {
    const serverRe = /^(\s*server\s+)node\d+:8080(\s[^;]*)?;/gm;
    const found = source.match(serverRe) || [];
    assert.equal(found.length, ports.length, `deploy/nginx.conf has ${ports.length} upstream servers node1..`);
    let i = 0;
    let conf = source.replace(serverRe, (_, head, params = '') => `${head}127.0.0.1:${ports[i++]}${params};`);
    const listenRe = /^(\s*)listen 80;/m;
    assert.match(conf, listenRe, 'deploy/nginx.conf listens on port 80');
    conf = conf.replace(listenRe, `$1listen 127.0.0.1:${listenPort};`);
    const logRe = /^(\s*access_log\s+)\S+/m;
    assert.match(conf, logRe, 'deploy/nginx.conf has an access_log');
    conf = conf.replace(logRe, `$1${path.join(dir, 'access.log')}`);
    // Debian's nginx keeps its temporary files under /var/lib/nginx (root's).
    const temps = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
        .map((t) => `    ${t}_temp_path ${path.join(dir, `${t}_temp`)};\n`)
        .join('');
    assert.match(conf, /^http \{\n/m);
    return conf.replace(/^http \{\n/m, `http {\n${temps}`);
}

async function startNginx(ports) {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'turbochat-nginx-'));
    const source = await fsp.readFile(path.join(REPO, 'deploy', 'nginx.conf'), 'utf8');
    const port = await freePort();
    const confFile = path.join(dir, 'nginx.conf');
    await fsp.writeFile(confFile, nginxConfig(source, { ports, listenPort: port, dir }));
    const errorLog = path.join(dir, 'error.log');
    const args = ['-p', dir, '-c', confFile, '-e', errorLog, '-g', `daemon off; pid ${path.join(dir, 'nginx.pid')};`];
    // The configuration must be valid and draw no warning.
    const check = spawnSync(NGINX_BIN, ['-t', ...args], { encoding: 'utf8', timeout: 30000 });
    const checkOut = `${check.stdout}${check.stderr}${fs.existsSync(errorLog) ? fs.readFileSync(errorLog, 'utf8') : ''}`;
    assert.equal(check.status, 0, `nginx -t failed:\n${checkOut}`);
    assert.doesNotMatch(checkOut, /\[(warn|emerg|alert|crit)\]/, `nginx -t warns:\n${checkOut}`);
    const out = fs.openSync(path.join(dir, 'nginx.out'), 'a');
    const proc = spawn(NGINX_BIN, args, { cwd: dir, stdio: ['ignore', out, out] });
    fs.closeSync(out);
    const n = {
        dir,
        port,
        proc,
        url: `http://127.0.0.1:${port}`,
        wsUrl: `ws://127.0.0.1:${port}/ws`,
        origin: `http://127.0.0.1:${port}`,
        exited: new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal }))),
        errorLog: () => (fs.existsSync(errorLog) ? fs.readFileSync(errorLog, 'utf8') : ''),
        accessLog: () => fs.readFileSync(path.join(dir, 'access.log'), 'utf8'),
    };
    let exitInfo = null;
    n.exited.then((e) => {
        exitInfo = e;
    });
    await waitFor(
        async () => {
            if (exitInfo) throw new Error(`nginx exited ${JSON.stringify(exitInfo)}:\n${n.errorLog()}`);
            const r = await api(n.url, '/healthz', { timeoutMs: 2000 });
            return r.status === 200;
        },
        { timeoutMs: 20000, what: `nginx on ${n.url} proxying /healthz` },
    );
    return n;
}

async function stopNginx(n) {
    if (!n || n.proc.exitCode !== null || n.proc.signalCode !== null) return;
    n.proc.kill('SIGTERM'); // fast shutdown of master and workers
    await withTimeout(n.exited, 15000, 'nginx exit after SIGTERM');
    if (!process.env.TURBOCHAT_KEEP_TMP) await fsp.rm(n.dir, { recursive: true, force: true });
}

// On failure, nginx's error log goes with the nodes' logs.
function withAllLogs(fn) {
    const inner = withLogs(fn);
    return async (...a) => {
        try {
            return await inner(...a);
        } catch (err) {
            if (nginx) err.message += `\n--- nginx error.log ---\n${nginx.errorLog().split('\n').slice(-40).join('\n')}`;
            throw err;
        }
    };
}

before(async () => {
    vk = await startValkey({ mode: 'plain' });
    nodes = await startNodes(vk.env, 3, { env: NODE_ENV });
    nginx = await startNginx(nodes.map((n) => n.port));
});

after(async () => {
    try {
        await stopNginx(nginx);
    } finally {
        try {
            await stopAll();
        } finally {
            await stopAllValkey();
        }
    }
});

const nodeIds = () => nodes.map((n) => `test-${n.port}`);

// A chat client through nginx, with the site's own Origin as a browser sends it.
const viaNginx = (name, rooms) => connectUser(nginx.wsUrl, name, rooms, { origin: nginx.origin });

describe('deploy/nginx.conf in front of three nodes', () => {
    it('balances REST over the nodes; writes through it pass the Origin check', T, withAllLogs(async () => {
        // /healthz names the node that answered: sequential requests find all three.
        const seen = new Set();
        await waitFor(
            async () => {
                const r = await api(nginx.url, '/healthz');
                assert.equal(r.status, 200, r.text);
                seen.add(r.json.node);
                return seen.size === 3;
            },
            { timeoutMs: 20000, intervalMs: 10, what: 'three nodes answering /healthz through nginx' },
        );
        assert.deepEqual([...seen].sort(), nodeIds().sort());
        const room = uniq('ngx-rest');
        const ids = [];
        for (let i = 0; i < 6; i++) {
            // A browser on the site sends its Origin; Host reaches the node unchanged.
            const p = await restPost(nginx.url, room, { user: 'rest', text: `via nginx ${i}` }, { Origin: nginx.origin });
            assert.equal(p.status, 201, `POST ${i} through nginx: ${p.status} ${p.text}`);
            ids.push(p.json.id);
        }
        const foreign = await restPost(nginx.url, room, { user: 'rest', text: 'x' }, { Origin: 'http://evil.example' });
        assert.equal(foreign.status, 403, `a foreign Origin through nginx: ${foreign.status} ${foreign.text}`);
        assert.equal(foreign.json?.error?.code, 'forbidden');
        // History through nginx (from whichever node) has them all, in order.
        await waitFor(
            async () => {
                const h = await fetchAllMessages(nginx.url, room);
                return h.map((m) => m.id).join() === ids.join() && h.every((m, i) => m.text === `via nginx ${i}`);
            },
            { timeoutMs: WAIT_MS, what: `the ${ids.length} posted messages in every node's history` },
        );
        // And on every node directly: the posts landed on several nodes and
        // reach all three (the read above proved only the node it landed on).
        const hs = await waitHistoryCount(nodes, room, ids.length, WAIT_MS);
        for (const [i, h] of hs.entries()) assert.deepEqual(h.map((m) => m.id), ids, `history of ${room} on ${nodes[i].url}`);
        const upstreams = new Set([...nginx.accessLog().matchAll(/"POST [^"]*" 201 \d+ upstream=(\S+)/g)].map((m) => m[1]));
        assert.ok(upstreams.size >= 2, `POSTs went to more than one node: ${[...upstreams].join(' ')}`);
    }));

    it('WebSocket clients land on different nodes and chat; a foreign Origin is refused', T, withAllLogs(async () => {
        const room = uniq('ngx-chat');
        const clients = [];
        for (const name of ['ann', 'bob', 'cid']) clients.push(await viaNginx(name, [room]));
        // least_conn: with one open socket per node the three land apart.
        assert.deepEqual(clients.map((c) => c.welcome.node).sort(), nodeIds().sort(), 'one client per node');
        for (const [i, c] of clients.entries()) {
            const a = await c.sendMessage(room, `hello from ${c.user}`);
            assert.equal(a.type, 'ack', JSON.stringify(a));
            for (const [j, o] of clients.entries()) {
                const m = await o.message(room, a.id);
                assert.equal(m.text, `hello from ${c.user}`, `client ${j} got client ${i}'s message`);
            }
        }
        await Promise.all(clients.map((c) => c.close()));
        // A foreign origin's handshake is answered 403, which nginx passes on
        // without counting a failure: however many arrive, no node is left
        // out (a hang-up would make nginx retry every node and mark each failed).
        for (let i = 0; i < 8; i++) {
            await assert.rejects(
                connect(nginx.wsUrl, { origin: 'http://evil.example' }),
                (err) => err.statusCode === 403,
                `handshake ${i} from a foreign origin is refused with 403`,
            );
        }
        const after = [];
        for (const name of ['hal', 'ivy', 'jon']) after.push(await viaNginx(name, [room]));
        assert.deepEqual(after.map((c) => c.welcome.node).sort(), nodeIds().sort(), 'all three nodes still taken');
        await Promise.all(after.map((c) => c.close()));
    }));

    it('a node stopped with SIGTERM: its clients get 1001, reconnect through nginx and recover what they missed', T, withAllLogs(async () => {
        const room = uniq('ngx-fail');
        const names = ['dan', 'eve', 'fay'];
        const clients = [];
        for (const name of names) clients.push(await viaNginx(name, [room]));
        const byNode = new Map(clients.map((c) => [c.welcome.node, c]));
        assert.equal(byNode.size, 3, 'one client per node');
        const victimNode = nodes[1];
        const victimId = `test-${victimNode.port}`;
        const victim = byNode.get(victimId);
        const others = clients.filter((c) => c !== victim);

        // Traffic before the stop, seen live by everyone.
        const before = [];
        for (const c of clients) {
            const a = await c.sendMessage(room, `before from ${c.user}`);
            assert.equal(a.type, 'ack');
            before.push(a.id);
        }
        for (const id of before) await victim.message(room, id);
        const lastSeen = before[before.length - 1];

        const stopping = victimNode.stop('SIGTERM'); // resolves once it exited with 0
        const closed = await withTimeout(victim.closed, WAIT_MS, 'the victim client closed');
        assert.equal(closed.code, 1001, `close code after SIGTERM: ${JSON.stringify(closed)}`);
        // Reconnect at once, as the web client does, while the node may still
        // be draining (it answers upgrades 503, which nginx retries elsewhere)
        // or already gone (connection refused, retried too).
        const t0 = performance.now();
        const back = await connect(nginx.wsUrl, { origin: nginx.origin });
        back.welcome = await back.hello(victim.user);
        console.log(`reconnect through nginx after 1001: welcome from ${back.welcome.node} in ${(performance.now() - t0).toFixed(0)} ms`);
        assert.notEqual(back.welcome.node, victimId, 'the reconnect lands on a live node');
        assert.ok(nodeIds().includes(back.welcome.node));
        await stopping;
        for (const o of others) assert.ok(o.isOpen, `${o.user} on a live node stays connected`);

        // Before the victim rejoins the others keep talking, over WS and over
        // REST through nginx (never sent to the stopped node).
        const missed = [];
        for (let i = 0; i < 6; i++) {
            const a = await others[i % 2].sendMessage(room, `while away ${i}`);
            assert.equal(a.type, 'ack', JSON.stringify(a));
            missed.push(a.id);
        }
        for (let i = 0; i < 6; i++) {
            const p = await restPost(nginx.url, room, { user: 'rest', text: `rest while away ${i}` }, { Origin: nginx.origin });
            assert.equal(p.status, 201, `POST ${i} with one node down: ${p.status} ${p.text}`);
            missed.push(p.json.id);
        }

        // The reconnected client joins with since: it gets what it missed.
        const joined = await back.join(room, lastSeen);
        assert.equal(joined.recovered, true, JSON.stringify(joined));
        for (const id of missed) await back.message(room, id);
        // A live message after the replay, then no id was delivered twice and
        // nothing from before the disconnect came again.
        const mark = await others[0].sendMessage(room, 'after the rejoin');
        await back.message(room, mark.id);
        const got = back.seen((f) => f.type === 'message' && f.room === room).map((f) => f.id);
        assert.deepEqual(got, [...missed, mark.id], 'replayed then live, in id order, each once');

        // A new client through nginx also avoids the stopped node, and REST
        // reads keep answering once both live nodes have the mark (its
        // sender and the rejoined client may share one node).
        const fresh = await viaNginx('gus', [room]);
        assert.notEqual(fresh.welcome.node, victimId);
        const everything = before.length + missed.length + 1;
        await waitHistoryCount(nodes.filter((n) => n !== victimNode), room, everything, WAIT_MS);
        for (let i = 0; i < 6; i++) {
            const h = await fetchAllMessages(nginx.url, room);
            assert.deepEqual(h.map((m) => m.id), [...before, ...missed, mark.id], `history ${i} with one node down`);
        }
        await Promise.all([...others, back, fresh].map((c) => c.close()));
    }));
});

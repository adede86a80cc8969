// `turbochat backup FILE` while a client writes continuously: the command
// exits 0, the copy opens (a node started on it serves its history), every
// message acked before the backup started is in it, ids continue after it,
// an existing FILE is kept unless --force. In a cluster, a node started from
// the backup catches up and converges with the others.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { connectUser, fetchAllMessages, uniq } from '../lib/client.mjs';
import { allEvents } from '../lib/lifecycle.mjs';
import { binaryPath, RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';
import { startNode, startNodes, startValkey, stopAllValkey, waitFor } from '../lib/valkey.mjs';

const T = { timeout: 240000 };
const tmpDirs = [];

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
        for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
    }
});

function tmpDir() {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-backup-'));
    tmpDirs.push(d);
    return d;
}

// Run `turbochat backup ...` without blocking the event loop (the writer
// keeps writing meanwhile); resolves { code, stdout, stderr }.
function runBackup(dbPath, file, extra = []) {
    const cwd = tmpDir();
    const env = { PATH: process.env.PATH, HOME: process.env.HOME };
    for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'TSAN_OPTIONS']) if (process.env[k]) env[k] = process.env[k];
    return new Promise((resolve, reject) => {
        const p = spawn(binaryPath(), ['backup', file, '--db', dbPath, ...extra], { cwd, env });
        let stdout = '';
        let stderr = '';
        p.stdout.on('data', (d) => (stdout += d));
        p.stderr.on('data', (d) => (stderr += d));
        const timer = setTimeout(() => p.kill('SIGKILL'), 60000);
        p.on('error', reject);
        p.on('close', (code) => {
            clearTimeout(timer);
            resolve({ code, stdout, stderr });
        });
    });
}

// A client sending into room as fast as acks come back (a few in flight);
// acked holds { id, text } in ack order. stop() resolves once nothing is in flight.
function startWriter(c, room) {
    const acked = [];
    let running = true;
    let n = 0;
    const errors = [];
    const lane = async () => {
        while (running) {
            const text = `w${++n}`;
            const f = await c.sendMessage(room, text, uniq('b'));
            if (f.type === 'ack') acked.push({ id: f.id, text });
            else errors.push(f);
        }
    };
    const lanes = [lane(), lane(), lane(), lane()];
    return {
        acked,
        async stop() {
            running = false;
            await Promise.all(lanes);
            assert.deepEqual(errors.slice(0, 3), [], 'sends refused while writing');
        },
    };
}

function copyDb(file) {
    const dir = tmpDir();
    const dbPath = path.join(dir, 'restored.db');
    fs.copyFileSync(file, dbPath);
    return { dir, dbPath };
}

describe('turbochat backup', () => {
    it('copies a serving node under write load into a database a node starts from', T, withLogs(async () => {
        const srv = await startServer({ env: RELAXED_RATE_ENV });
        const room = uniq('bk');
        const c = await connectUser(srv.wsUrl, 'writer', [room]);
        const w = startWriter(c, room);
        await waitFor(() => w.acked.length >= 300, { timeoutMs: 60000, what: '300 acked sends' });
        const before = w.acked.slice(); // acked before the backup started
        const file = path.join(tmpDir(), 'chat.backup');
        const r = await runBackup(srv.dbPath, file);
        assert.equal(r.code, 0, `backup: ${r.stdout} ${r.stderr}`);
        assert.match(r.stdout, /copied .* \d+ bytes, \d+ pages, \d+ events/);
        assert.ok(!fs.existsSync(`${file}.tmp`), 'no temporary file is left');
        const during = w.acked.length;
        await waitFor(() => w.acked.length >= during + 50, { timeoutMs: 60000, what: 'sends after the backup' });
        await w.stop();
        c.close();

        // an existing file is kept unless --force
        const size = fs.statSync(file).size;
        const again = await runBackup(srv.dbPath, file);
        assert.equal(again.code, 1, again.stdout);
        assert.match(again.stderr, /exists.*--force/);
        assert.equal(fs.statSync(file).size, size);
        const missing = await runBackup(path.join(tmpDir(), 'none.db'), path.join(tmpDir(), 'x.db'));
        assert.equal(missing.code, 1);
        assert.match(missing.stderr, /cannot read the database/);

        // a node on a copy of the backup, with the embedded broker
        const copy = copyDb(file);
        const restored = await startServer({ dir: copy.dir, dbPath: copy.dbPath, env: RELAXED_RATE_ENV });
        const history = await fetchAllMessages(restored.url, room);
        const byId = new Map(history.map((m) => [m.id, m.text]));
        for (const m of before) assert.equal(byId.get(m.id), m.text, `message ${m.id} acked before the backup`);
        assert.deepEqual(
            history.map((m) => m.id),
            history.map((_, i) => i + 1),
            'a prefix of the log without holes',
        );
        const next = await connectUser(restored.wsUrl, 'later', [room]);
        const f = await next.sendMessage(room, 'on the restored node', uniq('r'));
        assert.equal(f.id, history.length + 1, 'ids continue after the copy');
        next.close();
        const forced = await runBackup(srv.dbPath, file, ['--force']);
        assert.equal(forced.code, 0, forced.stderr);
        assert.ok(fs.statSync(file).size >= size);
    }));

    it('a cluster node started from a backup catches up and converges', T, withLogs(async () => {
        const vk = await startValkey({ mode: 'plain' });
        const nodes = await startNodes(vk.env, 2);
        const room = uniq('bkc');
        const c = await connectUser(nodes[0].wsUrl, 'writer', [room]);
        const w = startWriter(c, room);
        await waitFor(() => w.acked.length >= 200, { timeoutMs: 60000, what: '200 acked sends' });
        const file = path.join(tmpDir(), 'node0.backup');
        const r = await runBackup(nodes[0].dbPath, file);
        assert.equal(r.code, 0, `backup: ${r.stdout} ${r.stderr}`);
        const during = w.acked.length;
        await waitFor(() => w.acked.length >= during + 100, { timeoutMs: 60000, what: 'sends after the backup' });
        await w.stop();

        const copy = copyDb(file);
        const third = await startNode(vk.env, { dir: copy.dir, dbPath: copy.dbPath });
        const late = await connectUser(nodes[1].wsUrl, 'late', [room]);
        const f = await late.sendMessage(room, 'after the restore', uniq('l'));
        assert.equal(f.type, 'ack');
        const all = [...nodes, third];
        let logs = [];
        await waitFor(
            async () => {
                logs = await Promise.all(all.map((n) => allEvents(n.url, room)));
                return logs.every((l) => l.length && l[l.length - 1].id === f.id);
            },
            { timeoutMs: 60000, what: 'every node, the restored one too, up to the last message' },
        );
        assert.deepEqual(logs[2], logs[0], 'the restored node holds the same log');
        assert.deepEqual(logs[1], logs[0]);
        assert.equal(logs[0].length, w.acked.length + 1);
        c.close();
        late.close();
    }));
});

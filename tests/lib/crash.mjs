// Shared by the crash tests (tests/integration/crash.test.mjs and
// tests/cluster/crash.test.mjs): a seeded PRNG for the kill points, PRAGMA
// integrity_check of a killed node's database, and bursts of WebSocket and
// REST sends that record every ack.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { restPost } from './lifecycle.mjs';

// A small seeded PRNG (mulberry32), so that a failing run can be replayed
// with TURBOCHAT_CRASH_SEED.
export function prng(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

export function haveSqliteCli() {
    const r = spawnSync('sqlite3', ['-version'], { encoding: 'utf8' });
    return r.status === 0;
}

// PRAGMA integrity_check with the sqlite3 CLI on a copy of the database and
// its WAL (not the -shm: the CLI rebuilds it from the WAL, as a restarted
// node does). The original is left as the dead node left it. Resolves with
// the CLI's output, trimmed.
export function integrityCheck(dbPath) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-icheck-'));
    try {
        const copy = path.join(tmp, 'copy.db');
        fs.copyFileSync(dbPath, copy);
        if (fs.existsSync(`${dbPath}-wal`)) fs.copyFileSync(`${dbPath}-wal`, `${copy}-wal`);
        const r = spawnSync('sqlite3', [copy, 'PRAGMA integrity_check;'], { encoding: 'utf8', timeout: 120000 });
        assert.equal(r.status, 0, `sqlite3 ${copy} failed: ${r.stdout}\n${r.stderr}`);
        return `${r.stdout}${r.stderr}`.trim();
    } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
    }
}

// Keep `window` sends in flight on a WebSocket until stopped or the
// connection breaks. Every ack is recorded with onAck; an answer that is
// not an ack, or a failure while the connection is open, goes to errors.
export function wsBurst(c, rooms, user, tag, { window, onAck, sent, errors, state }) {
    return (async () => {
        const inflight = new Set();
        let n = 0;
        while (!state.stop && !c.closeInfo) {
            if (inflight.size >= window) {
                await Promise.race(inflight);
                continue;
            }
            n += 1;
            const room = rooms[n % rooms.length];
            const text = `${tag} #${n}`;
            sent.set(text, { room, user });
            state.sent += 1;
            const p = c
                .sendMessage(room, text, `${tag}-${n}`, 60000)
                .then((f) => {
                    if (f.type === 'ack') onAck({ room, id: f.id, text, user });
                    else errors.push(`${tag}: ${JSON.stringify(f)}`);
                })
                .catch((e) => {
                    if (!c.closeInfo && !state.killed) errors.push(`${tag}: ${e.message.slice(0, 300)}`);
                })
                .finally(() => inflight.delete(p));
            inflight.add(p);
            if (n % 8 === 0) await new Promise((r) => setImmediate(r));
        }
        await Promise.allSettled([...inflight]);
    })();
}

// The same over REST: `window` POSTs in flight until stopped or the node is
// dead (dead(): by default state.killed); a POST cut by the kill is not acked
// and not an error.
export function restBurst(url, rooms, user, tag, { window, onAck, sent, errors, state, dead = () => state.killed }) {
    return (async () => {
        const inflight = new Set();
        let n = 0;
        while (!state.stop && !dead()) {
            if (inflight.size >= window) {
                await Promise.race(inflight);
                continue;
            }
            n += 1;
            const room = rooms[n % rooms.length];
            const text = `${tag} #${n}`;
            sent.set(text, { room, user });
            state.sent += 1;
            const p = restPost(url, room, { user, text, ref: `${tag}-${n}` })
                .then((r) => {
                    if (r.status === 201 && r.json && r.json.text === text) onAck({ room, id: r.json.id, text, user });
                    else if (!dead()) errors.push(`${tag}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
                })
                .catch((e) => {
                    if (!dead()) errors.push(`${tag}: ${e.message.slice(0, 300)}`);
                })
                .finally(() => inflight.delete(p));
            inflight.add(p);
        }
        await Promise.allSettled([...inflight]);
    })();
}

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

export { prng } from './prng.mjs';

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

// Keep `window` sends in flight while running(): send(room, text, ref) is
// the n-th, to rooms in turn, recorded in sent before it goes.
function burst(rooms, user, tag, { window, sent, state }, running, send) {
    return (async () => {
        const inflight = new Set();
        let n = 0;
        while (running()) {
            if (inflight.size >= window) {
                await Promise.race(inflight);
                continue;
            }
            n += 1;
            const room = rooms[n % rooms.length];
            const text = `${tag} #${n}`;
            sent.set(text, { room, user });
            state.sent += 1;
            const p = send(room, text, `${tag}-${n}`).finally(() => inflight.delete(p));
            inflight.add(p);
            if (n % 8 === 0) await new Promise((r) => setImmediate(r));
        }
        await Promise.allSettled([...inflight]);
    })();
}

// Sends on a WebSocket until stopped or the connection breaks. Every ack is
// recorded with onAck; an answer that is not an ack, or a failure while the
// connection is open, goes to errors.
export function wsBurst(c, rooms, user, tag, opts) {
    const { onAck, errors, state } = opts;
    return burst(rooms, user, tag, opts, () => !state.stop && !c.closeInfo, (room, text, ref) =>
        c
            .sendMessage(room, text, ref, 60000)
            .then((f) => {
                if (f.type === 'ack') onAck({ room, id: f.id, text, user });
                else errors.push(`${tag}: ${JSON.stringify(f)}`);
            })
            .catch((e) => {
                if (!c.closeInfo && !state.killed) errors.push(`${tag}: ${e.message.slice(0, 300)}`);
            }),
    );
}

// The same over REST until stopped or the node is dead (dead(): by default
// state.killed); a POST cut by the kill is not acked and not an error.
export function restBurst(url, rooms, user, tag, opts) {
    const { onAck, errors, state, dead = () => state.killed } = opts;
    return burst(rooms, user, tag, opts, () => !state.stop && !dead(), (room, text, ref) =>
        restPost(url, room, { user, text, ref })
            .then((r) => {
                if (r.status === 201 && r.json && r.json.text === text) onAck({ room, id: r.json.id, text, user });
                else if (!dead()) errors.push(`${tag}: HTTP ${r.status} ${r.text.slice(0, 300)}`);
            })
            .catch((e) => {
                if (!dead()) errors.push(`${tag}: ${e.message.slice(0, 300)}`);
            }),
    );
}

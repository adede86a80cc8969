// Retention on one node with the embedded broker: messages expire after a
// few seconds, history and `joined` say where history begins, the metric
// counts what went, and a room whose every message expired continues from
// the right id after a restart (the embedded broker seeds its counter from
// the store). A bad retention_days is refused at start-up, naming it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { accountsEnv, addMember, createRoom, expectStatus, http, signup, uname } from '../lib/accounts.mjs';
import { api, connectUser, uniq } from '../lib/client.mjs';
import { binaryPath, RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';
import { waitFor } from '../lib/valkey.mjs';

const T = { timeout: 180000 };
const ENV = { ...RELAXED_RATE_ENV, TURBOCHAT_RETENTION_DAYS: '0.00005' }; // 4.32 s

after(stopAll);

async function history(srv, room) {
    const r = await api(srv.url, `/api/rooms/${room}/messages`);
    assert.equal(r.status, 200, r.text);
    return r.json;
}

describe('retention on one node', () => {
    it('expires messages, says where history begins, and ids continue after a restart', T, withLogs(async () => {
        let srv = await startServer({ env: ENV });
        const room = uniq('ret');
        const c = await connectUser(srv.wsUrl, 'amy', [room]);
        for (let i = 1; i <= 3; i++) assert.equal((await c.sendMessage(room, `m${i}`)).id, i);
        const h0 = await history(srv, room);
        assert.equal(h0.begins, 1);
        assert.equal(h0.retention_days, 0.00005);
        assert.equal(h0.messages.length, 3);
        await waitFor(async () => (await history(srv, room)).begins === 4, {
            timeoutMs: 60000,
            intervalMs: 250,
            what: 'history beginning after id 3',
        });
        assert.deepEqual((await history(srv, room)).messages, []);
        const again = await connectUser(srv.wsUrl, 'bob', []);
        const j = await again.join(room);
        assert.equal(j.begins, 4, 'joined says where history begins');
        assert.equal(j.last_id, 3, 'the last id stays');
        const metrics = await api(srv.url, '/metrics');
        const purged = Number(/^turbochat_retention_purged_total (\d+)$/m.exec(metrics.text)?.[1]);
        assert.ok(purged >= 3, `turbochat_retention_purged_total: ${purged}`);
        c.close();
        again.close();

        // restart on the same database: the room continues at 4
        await srv.stop();
        srv = await startServer({ dir: srv.dir, dbPath: srv.dbPath, env: ENV });
        const d = await connectUser(srv.wsUrl, 'cat', [room]);
        const ack = await d.sendMessage(room, 'after the restart');
        assert.equal(ack.id, 4, 'no id is given out twice');
        const rooms = await api(srv.url, '/api/rooms');
        assert.equal(rooms.json.rooms.find((r) => r.name === room)?.last_id, 4);
        d.close();
    }));

    it('under accounts: an admin, the owner of a private room or the maker of a public one sets its retention', T, withLogs(async () => {
        const srv = await startServer({ env: accountsEnv() });
        const admin = await signup(srv.url, uname('adm'), 'password-admin-1');
        const owner = await signup(srv.url, uname('own'), 'password-owner-1');
        const member = await signup(srv.url, uname('mem'), 'password-member-1');
        const room = uniq('priv');
        await createRoom(srv.url, owner, room, true);
        await addMember(srv.url, owner, room, member.name);
        const patch = (s, body) => http(srv.url, `/api/rooms/${room}`, { method: 'PATCH', body, headers: s.bearer() });
        expectStatus(await patch(member, { retention_days: 7 }), 403, 'forbidden', 'a plain member');
        expectStatus(await patch(admin, { retention_days: 7 }), 404, 'not_found', 'the admin outside the private room');
        const r = expectStatus(await patch(owner, { retention_days: 7 }), 200, undefined, 'the owner');
        assert.equal(r.json.room.retention_days, 7);
        assert.equal(r.json.room.name, room);
        const pub = uniq('pub');
        await createRoom(srv.url, owner, pub, false);
        const patchPub = (s, body) => http(srv.url, `/api/rooms/${pub}`, { method: 'PATCH', body, headers: s.bearer() });
        // the maker of a public room moderates it (as for mutes and bans); anyone else does not
        expectStatus(await patchPub(owner, { retention_days: 1 }), 200, undefined, 'the maker of a public room');
        expectStatus(await patchPub(member, { retention_days: 1 }), 403, 'forbidden', 'a member of a public room');
        const a = expectStatus(await patchPub(admin, { retention_days: 1.5 }), 200, undefined, 'the admin');
        assert.equal(a.json.room.retention_days, 1.5);
        const list = await http(srv.url, '/api/rooms', { headers: member.bearer() });
        assert.equal(list.json.rooms.find((x) => x.name === room)?.retention_days, 7);
        assert.equal(list.json.rooms.find((x) => x.name === pub)?.retention_days, 1.5);
        const h = await http(srv.url, `/api/rooms/${room}/messages`, { headers: member.bearer() });
        assert.equal(h.json.retention_days, 7);
        assert.equal(h.json.begins, 1);
    }));

    it('refuses a retention_days out of range, naming it', T, () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-ret-'));
        try {
            for (const bad of ['-1', '36501', 'week']) {
                const r = spawnSync(binaryPath(), ['--check-config'], {
                    cwd: dir,
                    env: { PATH: process.env.PATH, TURBOCHAT_RETENTION_DAYS: bad },
                    encoding: 'utf8',
                });
                assert.equal(r.status, 1, `${bad}: ${r.stdout}`);
                assert.match(r.stderr, /TURBOCHAT_RETENTION_DAYS/, `${bad}: ${r.stderr}`);
            }
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});

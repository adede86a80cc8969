// Migration from a database made by the previous release (issue 9: "existing
// databases migrate forward without loss"). The release before issue 9 (by
// default d5dfba9, PROTOCOL: what a tombstone keeps; TURBOCHAT_BASELINE_REV
// or TURBOCHAT_BASELINE_BIN choose another) is built from `git archive` with
// CMake into /tmp (once, then cached), run with auth off to make a database
// with messages, edits, a delete, reactions, replies and mentions in several
// rooms; then the new binary opens it
// - in auth = accounts: every old room and message is there (history, one
//   message, events), the rooms are listed, new messages continue the ids;
// - in auth = off, on a copy of the old database and again on the database
//   the accounts run left: the same history, and chatting goes on.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { api, fetchAllMessages } from '../lib/client.mjs';
import { accountsEnv, baselineBinary, expectStatus, http, listRooms, show, signup, uname, wsSession } from '../lib/accounts.mjs';
import { allEvents, proj, restDelete, restEdit, restPost, restReact } from '../lib/lifecycle.mjs';
import { RELAXED_RATE_ENV, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 60000 };
const ROOMS = ['general', 'legacy-room', 'old.team_2'];

let old; // { bin, sha }
let dir;
let dbPath;
let copyDb;
const before_ = {}; // room -> { messages, events }
let oldRooms;

// Start a server with binary bin (swapping TURBOCHAT_BIN for the launch).
async function startWith(bin, opts) {
    const saved = process.env.TURBOCHAT_BIN;
    process.env.TURBOCHAT_BIN = bin;
    try {
        return await startServer(opts);
    } finally {
        if (saved === undefined) delete process.env.TURBOCHAT_BIN;
        else process.env.TURBOCHAT_BIN = saved;
    }
}

function copyDatabase(from, to) {
    for (const suffix of ['', '-wal', '-shm']) {
        if (fs.existsSync(from + suffix)) fs.copyFileSync(from + suffix, to + suffix);
    }
}

async function ok(p, status, ctx) {
    const r = await p;
    assert.equal(r.status, status, `${ctx}: ${r.status} ${r.text.slice(0, 300)}`);
    return r.json;
}

before(async () => {
    old = baselineBinary();
    // The old release knows no address budget (an unknown TURBOCHAT_* is refused).
    const { TURBOCHAT_ADDRESS_RATE_LIMIT: _, ...oldRelaxed } = RELAXED_RATE_ENV;
    const s = await startWith(old.bin, { env: oldRelaxed });
    dir = s.dir;
    dbPath = s.dbPath;
    for (const room of ROOMS) {
        const ids = [];
        await ok(restPost(s.url, room, { user: 'oldtimer', text: `hello from the old days in ${room}` }), 201, 'first');
        for (let i = 1; i <= 25; i++) {
            const who = i % 3 === 0 ? 'alice' : 'oldtimer';
            ids.push((await ok(restPost(s.url, room, { user: who, text: `${room} message ${i} @oldtimer` }), 201, `post ${i}`)).id);
        }
        await ok(restPost(s.url, room, { user: 'alice', text: 'a reply', reply_to: ids[0] }), 201, 'reply');
        await ok(restEdit(s.url, room, ids[1], { user: 'oldtimer', text: 'edited in the old release' }), 200, 'edit');
        await ok(restDelete(s.url, room, ids[2], { user: 'alice' }), 200, 'delete');
        await ok(restReact(s.url, room, ids[4], '🎉', true, { user: 'alice' }), 200, 'react');
        await ok(restReact(s.url, room, ids[4], '👍', true, { user: 'oldtimer' }), 200, 'react 2');
        await ok(restReact(s.url, room, ids[4], '👍', false, { user: 'oldtimer' }), 200, 'unreact');
        await ok(restDelete(s.url, room, ids[0], { user: 'oldtimer' }), 200, 'delete the replied-to');
    }
    for (const room of ROOMS) {
        before_[room] = { messages: (await fetchAllMessages(s.url, room)).map(proj), events: (await allEvents(s.url, room)).map(proj) };
        assert.ok(before_[room].messages.length >= 27, `${room} has its messages in the old release`);
    }
    oldRooms = (await api(s.url, '/api/rooms')).json.rooms;
    await s.stop();
    copyDb = `${dbPath}.copy`;
    copyDatabase(dbPath, copyDb);
}, { timeout: 600000 });

after(stopAll);

function sameHistory(got, room, ctx) {
    const want = before_[room].messages;
    assert.equal(got.length, want.length, `${ctx}: ${room} has ${got.length} messages, the old release had ${want.length}`);
    for (let i = 0; i < want.length; i++) assert.deepEqual(proj(got[i]), want[i], `${ctx}: ${room} message ${want[i].id}`);
}

function sameEvents(got, room, ctx) {
    const want = before_[room].events;
    const lastOld = want[want.length - 1].id;
    const upTo = got.filter((e) => e.id <= lastOld).map(proj);
    // the new release may add events of its own kinds (e.g. a room event),
    // but every old event is there unchanged
    const byId = new Map(upTo.map((e) => [e.id, e]));
    for (const e of want) assert.deepEqual(byId.get(e.id), e, `${ctx}: event ${e.id} of ${room}`);
}

describe(`migration from the previous release`, () => {
    it('auth = accounts on the old database: history, events and rooms intact; ids continue', T, withLogs(async () => {
        const s = await startServer({ dir, dbPath, env: accountsEnv() });
        const admin = await signup(s.url, uname('migrated'), 'migration password');
        assert.equal(admin.user.role, 'admin', 'the first account on a migrated database is admin');
        const user = await signup(s.url, uname('newbie'), 'migration password');
        const listed = await listRooms(s.url, user);
        for (const r of oldRooms) {
            const x = listed.find((y) => y.name === r.name);
            assert.ok(x, `old room ${r.name} listed in accounts mode: ${JSON.stringify(listed)}`);
            assert.equal(x.private, false, `an old room is public: ${JSON.stringify(x)}`);
            assert.ok(x.last_id >= r.last_id, `last_id of ${r.name}: ${JSON.stringify(x)} vs ${JSON.stringify(r)}`);
        }
        for (const room of ROOMS) {
            const got = [];
            let afterId = 0;
            for (;;) {
                const r = await http(s.url, `/api/rooms/${room}/messages?after=${afterId}&limit=200`, { headers: user.bearer() });
                expectStatus(r, 200, undefined, `history of ${room} in accounts mode`);
                got.push(...r.json.messages);
                if (!r.json.has_more || !r.json.messages.length) break;
                afterId = r.json.messages[r.json.messages.length - 1].id;
            }
            sameHistory(got, room, 'accounts mode');
            const one = before_[room].messages[5];
            const r1 = await http(s.url, `/api/rooms/${room}/messages/${one.id}`, { headers: user.bearer() });
            expectStatus(r1, 200, undefined, 'one old message');
            assert.deepEqual(proj(r1.json), one, show(r1));
            sameEvents(await allEvents(s.url, room, user.bearer()), room, 'accounts mode');
        }
        // chatting goes on in an old room with ids after the old ones
        const c = await wsSession(s.url, user, { rooms: ['legacy-room'] });
        c.send({ type: 'send', room: 'legacy-room', text: 'a new message after the upgrade', ref: 'mig-1' });
        const a = await c.next((x) => (x.type === 'ack' || x.type === 'error') && (x.ref === 'mig-1' || x.room === 'legacy-room'));
        assert.equal(a.type, 'ack', JSON.stringify(a));
        const oldLast = before_['legacy-room'].events[before_['legacy-room'].events.length - 1].id;
        assert.ok(a.id > oldLast, `new id ${a.id} after the old ${oldLast}`);
        const p = await http(s.url, '/api/rooms/legacy-room/messages', { method: 'POST', body: { text: 'and one over REST' }, headers: user.bearer() });
        expectStatus(p, 201, undefined, 'POST in an old room');
        await c.close();
        await s.stop();
    }));

    it('auth = off on a copy of the old database, and on the database after the accounts run: the same history', T, withLogs(async () => {
        const s = await startServer({ dbPath: copyDb, env: { ...RELAXED_RATE_ENV } });
        for (const room of ROOMS) {
            sameHistory(await fetchAllMessages(s.url, room), room, 'off mode on the old database');
            sameEvents(await allEvents(s.url, room), room, 'off mode on the old database');
        }
        const r = await restPost(s.url, 'legacy-room', { user: 'oldtimer', text: 'still chatting' });
        expectStatus(r, 201, undefined, 'a message in off mode after the upgrade');
        await s.stop();
        const s2 = await startServer({ dir, dbPath, env: { ...RELAXED_RATE_ENV } });
        for (const room of ROOMS) {
            const got = await fetchAllMessages(s2.url, room);
            const n = before_[room].messages.length;
            sameHistory(got.slice(0, n), room, 'off mode after the accounts run');
            if (room === 'legacy-room') {
                assert.deepEqual(got.slice(n).map((m) => m.text), ['a new message after the upgrade', 'and one over REST'], 'the accounts-mode messages are there in off mode');
            } else {
                assert.equal(got.length, n, `${room}: nothing new`);
            }
        }
        await s2.stop();
    }));
});

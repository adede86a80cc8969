// Admin across a cluster (issue 9, docs/PROTOCOL.md, "Accounts"), three nodes on
// one Valkey:
// - `turbochat user add/passwd/disable/enable/list` in cluster mode, with the
//   nodes running (it publishes through Valkey): an account added on the
//   command line signs in on every node, a disable closes its WebSockets on
//   the nodes (1008), passwd changes the password everywhere;
// - an admin closing a room on A: its members on B and C are told `left
//   {reason: closed}` and joins and sends are not_found on every node;
// - a non-admin gets 403 on every node.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { uniq } from '../lib/client.mjs';
import {
    accountsEnv,
    adminCall,
    answerOf,
    assertNoSecret,
    createRoom,
    describeCli,
    expectAlive,
    expectClosed,
    expectStatus,
    me,
    runCli,
    sessionOf,
    show,
    signinRaw,
    signup,
    tryJoin,
    uname,
    wsSession,
} from '../lib/accounts.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { startNodes, startValkey, stopAllValkey, waitFor } from '../lib/valkey.mjs';

const T = { timeout: 90000 };
const PW = 'cluster admin password';

let vk;
let A;
let B;
let C;
let root;
let user;

before(async () => {
    vk = await startValkey({ mode: 'plain' });
    [A, B, C] = await startNodes(vk.env, 3, { env: accountsEnv() });
    root = await signup(A.url, uname('root'), PW);
    user = await signup(B.url, uname('user'), PW);
    for (const n of [A, B, C]) {
        for (const s of [root, user]) {
            await waitFor(async () => (await me(n.url, s)).status === 200, { timeoutMs: 15000, what: `session of ${s.name} on ${n.url}` });
        }
    }
});

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

async function signinEventually(url, name, password, timeoutMs = 15000) {
    let last;
    await waitFor(async () => {
        last = await signinRaw(url, name, password);
        return last.status === 200;
    }, { timeoutMs, what: `sign-in of ${name} on ${url}` }).catch((err) => {
        err.message += ` (last: ${last && show(last)})`;
        throw err;
    });
    return sessionOf(url, last, password, `sign-in of ${name} on ${url}`);
}

async function refusedEventually(url, name, password, timeoutMs = 15000) {
    let last;
    await waitFor(async () => {
        last = await signinRaw(url, name, password);
        return last.status === 401;
    }, { timeoutMs, what: `sign-in of ${name} refused on ${url}` }).catch((err) => {
        err.message += ` (last: ${last && show(last)})`;
        throw err;
    });
}

async function joinEventually(c, room, timeoutMs = 15000) {
    let last;
    await waitFor(async () => {
        last = await tryJoin(c, room);
        return last.type === 'joined';
    }, { timeoutMs, what: `join of ${room} on ${c.url}` }).catch((err) => {
        err.message += ` (last: ${JSON.stringify(last)})`;
        throw err;
    });
    return last;
}

describe('turbochat user in cluster mode, nodes running', () => {
    it('add, passwd, disable, enable and list reach every node through Valkey', T, withLogs(async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-usercli-'));
        // the configuration of node A: its Valkey, its database, accounts
        const env = { ...vk.env, TURBOCHAT_AUTH: 'accounts', TURBOCHAT_DB: A.dbPath };
        const P1 = 'cli cluster pass one';
        const P2 = 'cli cluster pass two';
        const cli = (args, input = '') => {
            const r = runCli(args, { env, cwd: dir, input });
            assertNoSecret(r.stdout + r.stderr, [P1, P2], describeCli(args, r));
            assert.equal(r.status, 0, describeCli(args, r));
            return r;
        };
        const name = uname('clidora');
        cli(['user', 'add', name], `${P1}\n`);
        const sessions = [];
        for (const n of [A, B, C]) sessions.push(await signinEventually(n.url, name, P1));
        assert.equal(sessions[0].user.role, 'user');
        const admName = uname('cliadm');
        cli(['user', 'add', admName, '--admin'], `${P1}\n`);
        const adm = await signinEventually(C.url, admName, P1);
        assert.equal(adm.user.role, 'admin', 'added with --admin');
        const list = cli(['user', 'list']);
        assert.ok(list.stdout.includes(name) && list.stdout.includes(root.name), `list shows the accounts of the cluster:\n${list.stdout}`);
        // disable: the WebSockets on every node close with 1008
        const ws = [];
        for (const [i, n] of [A, B, C].entries()) ws.push(await wsSession(n.url, sessions[i], { rooms: ['general'] }));
        const other = await wsSession(B.url, user, { rooms: ['general'] });
        cli(['user', 'disable', name]);
        for (const [i, w] of ws.entries()) await expectClosed(w, 1008, `WebSocket on ${'ABC'[i]} after user disable`);
        for (const n of [A, B, C]) {
            for (const s of sessions) expectStatus(await me(n.url, s), 401, undefined, `session after user disable on ${n.url}`);
            await refusedEventually(n.url, name, P1);
        }
        await expectAlive(other, 'another account');
        const listed = cli(['user', 'list']).stdout.split('\n').find((l) => l.includes(name)) || '';
        assert.match(listed, /disabled/i, `disabled in the list: ${listed}`);
        cli(['user', 'enable', name]);
        for (const n of [A, B, C]) await signinEventually(n.url, name, P1);
        // passwd: the new password everywhere, the old nowhere
        const s = await signinEventually(B.url, name, P1);
        const w = await wsSession(B.url, s, { rooms: ['general'] });
        cli(['user', 'passwd', name], `${P2}\n`);
        await expectClosed(w, 1008, 'a session after user passwd');
        for (const n of [A, B, C]) {
            await signinEventually(n.url, name, P2);
            await refusedEventually(n.url, name, P1);
        }
        await other.close();
        fs.rmSync(dir, { recursive: true, force: true });
    }));
});

describe('admin across nodes', () => {
    it('a room closed on A: its members on B and C get left {reason: closed}; join and send not_found everywhere', T, withLogs(async () => {
        const room = uniq('closing').replace(/[^A-Za-z0-9_.-]/g, '');
        await createRoom(B.url, user, room, false);
        const other = await signup(C.url, uname('member'), PW);
        const wb = await wsSession(B.url, user);
        await joinEventually(wb, room);
        await waitFor(async () => (await me(C.url, other)).status === 200, { timeoutMs: 15000, what: 'session on C' });
        const wc = await wsSession(C.url, other);
        await joinEventually(wc, room);
        await waitFor(async () => {
            const r = await adminCall(A.url, root, 'GET', '/rooms');
            return r.json && r.json.rooms.some((y) => y.name === room);
        }, { timeoutMs: 10000, what: 'the room made on B in GET /api/admin/rooms on A' });
        const del = await adminCall(A.url, root, 'DELETE', `/rooms/${room}`);
        expectStatus(del, 200, undefined, 'close on A');
        for (const c of [wb, wc]) {
            const left = await c.next((x) => x.type === 'left' && x.room === room);
            assert.equal(left.reason, 'closed', JSON.stringify(left));
        }
        for (const c of [wb, wc]) {
            assert.equal((await tryJoin(c, room)).code, 'not_found', `join of a closed room on ${c.url}`);
            const ref = uniq('ref');
            c.send({ type: 'send', room, text: 'hello?', ref });
            assert.equal((await answerOf(c, room, ref)).code, 'not_found', `send to a closed room on ${c.url}`);
        }
        await waitFor(async () => {
            const r = await adminCall(C.url, root, 'GET', '/rooms');
            const x = r.json && r.json.rooms.find((y) => y.name === room);
            return x && x.closed === true;
        }, { timeoutMs: 10000, what: 'the room closed in GET /api/admin/rooms on C' });
        await wb.close();
        await wc.close();
    }));

    it('a non-admin gets 403 on every node', T, withLogs(async () => {
        for (const n of [A, B, C]) {
            expectStatus(await adminCall(n.url, user, 'GET', '/users'), 403, 'forbidden', `admin users on ${n.url}`);
            expectStatus(await adminCall(n.url, user, 'POST', `/users/${encodeURIComponent(root.name)}/disable`), 403, 'forbidden', `disable on ${n.url}`);
        }
        for (const n of [A, B, C]) expectStatus(await me(n.url, root), 200, undefined, `the admin is not disabled on ${n.url}`);
    }));
});

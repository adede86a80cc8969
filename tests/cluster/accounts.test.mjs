// Accounts and sessions across a cluster (issue 9, docs/PROTOCOL.md, "Accounts"),
// three nodes on one Valkey:
// - the first account of an empty deployment is the only admin, also when
//   two people sign up at once on two nodes;
// - sign-up races for one name on two (and three) nodes: exactly one wins,
//   the others get 409 name_taken, also when the names differ only in case;
// - an account made on one node signs in on every other; a session made on
//   one node (token and cookie) is accepted on every node;
// - sign-out on one node ends the session on every node (its WebSockets
//   closed 1008 everywhere); sign out everywhere, a password change and an
//   admin's password reset end the account's sessions on every node;
// - a disabled account is cut off everywhere at once, and signs in again
//   once enabled;
// - an invite code is single-use across the cluster (two nodes at once).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
    accountsEnv,
    adminCall,
    expectAlive,
    expectClosed,
    expectHelloRefused,
    expectStatus,
    http,
    me,
    sessionOf,
    show,
    signin,
    signinRaw,
    signout,
    signup,
    signupRaw,
    uname,
    wsSession,
} from '../lib/accounts.mjs';
import { stopAll, withLogs } from '../lib/server.mjs';
import { startNode, startNodes, startValkey, stopAllValkey, waitFor, waitReady } from '../lib/valkey.mjs';

const T = { timeout: 90000 };
const PW = 'cluster password one';

let vk;
let A;
let B;
let C;
let admin;

before(async () => {
    vk = await startValkey({ mode: 'plain', persist: true });
    [A, B, C] = await startNodes(vk.env, 3, { env: accountsEnv() });
});

after(async () => {
    try {
        await stopAll();
    } finally {
        await stopAllValkey();
    }
});

// Sign in on node url, retrying while the account has not reached it yet
// (401); resolves the session.
async function signinEventually(url, name, password, timeoutMs = 15000) {
    let last;
    await waitFor(
        async () => {
            last = await signinRaw(url, name, password);
            return last.status === 200;
        },
        { timeoutMs, what: `sign-in of ${name} on ${url}` },
    ).catch((err) => {
        err.message += ` (last: ${last && show(last)})`;
        throw err;
    });
    return sessionOf(url, last, password, `sign-in of ${name} on ${url}`);
}

// Wait until GET /api/me with s (its token, or cookie) answers want on url.
async function meEventually(url, s, want, via = 'bearer', timeoutMs = 15000) {
    let last;
    await waitFor(
        async () => {
            last = await me(url, s, via);
            return last.status === want;
        },
        { timeoutMs, what: `GET /api/me (${via}) of ${s.name} = ${want} on ${url}` },
    ).catch((err) => {
        err.message += ` (last: ${last && show(last)})`;
        throw err;
    });
}

// A session of name made on home, with WebSockets on every node (each
// retried until the session has reached that node).
async function wsEverywhere(s, nodes) {
    const out = [];
    for (const n of nodes) {
        await meEventually(n.url, s, 200);
        out.push(await wsSession(n.url, s, { rooms: ['general'] }));
    }
    return out;
}

describe('cluster accounts', () => {
    it('the first account of an empty deployment is the only admin, also when two sign up at once', T, withLogs(async () => {
        const [ra, rb] = await Promise.all([signupRaw(A.url, uname('firstA'), PW), signupRaw(B.url, uname('firstB'), PW)]);
        expectStatus(ra, 201, undefined, 'first signup on A');
        expectStatus(rb, 201, undefined, 'first signup on B');
        const roles = [ra.json.user.role, rb.json.user.role].sort();
        assert.deepEqual(roles, ['admin', 'user'], `exactly one admin: ${show(ra)} / ${show(rb)}`);
        const win = ra.json.user.role === 'admin' ? ra : rb;
        admin = sessionOf(win === ra ? A.url : B.url, win, PW, 'admin');
        const later = await signup(C.url, uname('third'), PW);
        assert.equal(later.user.role, 'user');
    }));

    it('sign-up races for one name on two nodes: exactly one wins, the other gets 409 name_taken', T, withLogs(async () => {
        const rounds = [];
        for (let i = 0; i < 6; i++) {
            const base = uname(`Race${i}`);
            // even rounds: the same spelling; odd rounds: names differing only in case
            const names = i % 2 === 0 ? [base, base] : [base, base.toLowerCase()];
            const pws = [`first password ${i}`, `second password ${i}`];
            const [r1, r2] = await Promise.all([signupRaw(A.url, names[0], pws[0]), signupRaw(B.url, names[1], pws[1])]);
            rounds.push({ names, pws, rs: [r1, r2] });
        }
        // and one round on three nodes at once
        const tri = uname('Tri');
        const triNames = [tri, tri.toUpperCase(), tri.toLowerCase()];
        const triPws = ['tri password a', 'tri password b', 'tri password c'];
        const triRs = await Promise.all([A, B, C].map((n, i) => signupRaw(n.url, triNames[i], triPws[i])));
        rounds.push({ names: triNames, pws: triPws, rs: triRs });
        for (const { names, pws, rs } of rounds) {
            const ctx = `race for ${names.join('/')}: ${rs.map(show).join(' | ')}`;
            const wins = rs.filter((r) => r.status === 201);
            assert.equal(wins.length, 1, `exactly one wins: ${ctx}`);
            for (const r of rs) if (r.status !== 201) expectStatus(r, 409, 'name_taken', ctx);
            const wi = rs.indexOf(wins[0]);
            // the winner's password signs in on every node; the losers' nowhere
            for (const n of [A, B, C]) await signinEventually(n.url, names[wi], pws[wi]);
            for (const [i, pw] of pws.entries()) {
                if (i === wi) continue;
                for (const n of [A, B, C]) expectStatus(await signinRaw(n.url, names[wi], pw), 401, 'unauthorized', `loser's password on ${n.url}: ${ctx}`);
            }
        }
    }));

    it('an account made on A signs in on B and C; a session of A is accepted on B and C', T, withLogs(async () => {
        const name = uname('anynode');
        const s = await signup(A.url, name, PW);
        const sb = await signinEventually(B.url, name, PW);
        const sc = await signinEventually(C.url, name, PW);
        assert.equal(sb.user.name, name);
        assert.equal(sc.user.name, name);
        for (const n of [B, C]) {
            await meEventually(n.url, s, 200, 'bearer');
            await meEventually(n.url, s, 200, 'cookie');
            const w = await wsSession(n.url, s, { rooms: ['general'] });
            assert.equal(w.welcome.user, name);
            await w.close();
        }
        // a session made on C works on A
        await meEventually(A.url, sc, 200);
    }));

    it('sign-out on B ends the session on every node; another session of the account lives on', T, withLogs(async () => {
        const name = uname('outall');
        const s1 = await signup(A.url, name, PW);
        const s2 = await signinEventually(C.url, name, PW);
        const w1 = await wsEverywhere(s1, [A, B, C]);
        const w2 = await wsEverywhere(s2, [A, B, C]);
        const r = await signout(B.url, s1, { via: 'cookie' });
        expectStatus(r, 200, undefined, 'sign-out on B');
        for (const [i, w] of w1.entries()) await expectClosed(w, 1008, `the ended session's WebSocket on node ${'ABC'[i]}`);
        for (const n of [A, B, C]) {
            // its WebSocket on that node was closed, so the node knows: no waiting
            expectStatus(await me(n.url, s1, 'bearer'), 401, undefined, `ended token on ${n.url}`);
            expectStatus(await me(n.url, s1, 'cookie'), 401, undefined, `ended cookie on ${n.url}`);
            await expectHelloRefused(n.url, { token: s1.token }, {}, `hello with the ended token on ${n.url}`);
        }
        for (const [i, w] of w2.entries()) await expectAlive(w, `the other session on node ${'ABC'[i]}`);
        for (const n of [A, B, C]) expectStatus(await me(n.url, s2), 200, undefined, `the other session on ${n.url}`);
        for (const w of w2) await w.close();
    }));

    it('sign out everywhere on C ends sessions made on A and B, on every node', T, withLogs(async () => {
        const name = uname('evall');
        const sa = await signup(A.url, name, PW);
        const sb = await signinEventually(B.url, name, PW);
        const sc = await signinEventually(C.url, name, PW);
        await meEventually(A.url, sc, 200); // the session made on C has reached A
        const ws = [...(await wsEverywhere(sa, [A, B, C])), ...(await wsEverywhere(sb, [C])), await wsSession(A.url, sc)];
        expectStatus(await signout(C.url, sc, { everywhere: true }), 200, undefined, 'sign out everywhere on C');
        for (const [i, w] of ws.entries()) await expectClosed(w, 1008, `WebSocket ${i}`);
        for (const n of [A, B, C]) for (const s of [sa, sb, sc]) expectStatus(await me(n.url, s), 401, undefined, `a session after sign out everywhere, on ${n.url}`);
        await signin(B.url, name, PW);
    }));

    it('a password change on A ends every other session on every node; an admin reset on B ends them all', T, withLogs(async () => {
        const name = uname('pwall');
        const sa = await signup(A.url, name, PW);
        const sc = await signinEventually(C.url, name, PW);
        const wc = await wsEverywhere(sc, [A, B, C]);
        const wa = await wsSession(B.url, sa, { rooms: ['general'] });
        const NEW = 'cluster password two';
        const p = await http(A.url, '/api/me', { method: 'PATCH', body: { password: NEW, old_password: PW }, headers: sa.bearer() });
        expectStatus(p, 200, undefined, 'password change on A');
        for (const [i, w] of wc.entries()) await expectClosed(w, 1008, `other session's WebSocket on ${'ABC'[i]} after a password change`);
        for (const n of [A, B, C]) expectStatus(await me(n.url, sc), 401, undefined, `other session on ${n.url} after a password change`);
        // the changing session goes on ("every other session"): recorded now, asserted at the end
        await wa.ping().catch(() => {});
        const changer = { ws: wa.isOpen ? 'open' : JSON.stringify(wa.closeInfo), me: [] };
        for (const n of [A, B, C]) changer.me.push((await me(n.url, sa)).status);
        for (const n of [A, B, C]) {
            await signinEventually(n.url, name, NEW);
            expectStatus(await signinRaw(n.url, name, PW), 401, 'unauthorized', `old password on ${n.url}`);
        }
        // an admin resets the password on B: every session ends, on every node
        await meEventually(B.url, admin, 200);
        const s2 = await signin(C.url, name, NEW);
        const w2 = await wsEverywhere(s2, [A, C]);
        const RESET = 'cluster password three';
        const rr = await adminCall(B.url, admin, 'POST', `/users/${encodeURIComponent(name)}/password`, { password: RESET });
        expectStatus(rr, 200, undefined, 'admin password reset on B');
        assert.equal(rr.json.user.name, name, show(rr));
        for (const w of [...(changer.ws === 'open' ? [wa] : []), ...w2]) await expectClosed(w, 1008, 'a session after an admin reset');
        for (const n of [A, B, C]) for (const s of [sa, s2]) expectStatus(await me(n.url, s), 401, undefined, `a session on ${n.url} after a reset`);
        for (const n of [A, B, C]) await signinEventually(n.url, name, RESET);
        assert.deepEqual(changer, { ws: 'open', me: [200, 200, 200] }, 'the session that changed its password stays signed in on every node, its WebSocket open');
    }));

    it('a disabled account is cut off on every node at once, and signs in again once enabled', T, withLogs(async () => {
        const name = uname('dis');
        const s1 = await signup(B.url, name, PW);
        const s2 = await signinEventually(C.url, name, PW);
        const ws = [...(await wsEverywhere(s1, [A, B, C])), ...(await wsEverywhere(s2, [A, B, C]))];
        const bystander = await signup(C.url, uname('by'), PW);
        const wb = await wsEverywhere(bystander, [A, B]);
        await meEventually(A.url, admin, 200);
        const r = await adminCall(A.url, admin, 'POST', `/users/${encodeURIComponent(name)}/disable`);
        expectStatus(r, 200, undefined, 'disable on A');
        assert.equal(r.json.user.disabled, true, show(r));
        for (const [i, w] of ws.entries()) await expectClosed(w, 1008, `WebSocket ${i} of the disabled account (nodes A,B,C,A,B,C)`);
        const wrong = await signinRaw(A.url, uname('never'), PW);
        for (const n of [A, B, C]) {
            for (const s of [s1, s2]) {
                expectStatus(await me(n.url, s, 'bearer'), 401, undefined, `token of the disabled account on ${n.url}`);
                expectStatus(await me(n.url, s, 'cookie'), 401, undefined, `cookie of the disabled account on ${n.url}`);
                await expectHelloRefused(n.url, { token: s.token }, {}, `hello of the disabled account on ${n.url}`);
            }
            const si = await signinRaw(n.url, name, PW);
            expectStatus(si, 401, 'unauthorized', `sign-in of the disabled account on ${n.url}`);
            assert.equal(si.text, wrong.text, `a disabled account gets the same answer as an unknown name on ${n.url}`);
        }
        for (const w of wb) await expectAlive(w, 'another account');
        const e = await adminCall(C.url, admin, 'POST', `/users/${encodeURIComponent(name)}/enable`);
        expectStatus(e, 200, undefined, 'enable on C');
        assert.equal(e.json.user.disabled, false, show(e));
        for (const n of [A, B, C]) await signinEventually(n.url, name, PW);
        for (const w of wb) await w.close();
    }));
});

describe('cluster accounts while Valkey is down', () => {
    it('an account made on A signs in on B and C while Valkey is away (a sealed session any node checks); a sign-out once Valkey is back ends it', T, withLogs(async () => {
        const name = uname('offline');
        await signup(A.url, name, PW);
        for (const n of [B, C]) await signinEventually(n.url, name, PW);
        await vk.stop();
        const sealed = [];
        try {
            for (const n of [A, B, C]) await waitReady(n, { want: 503 }); // every node knows Valkey is away
            for (const n of [B, C]) {
                const r = await signinRaw(n.url, name, PW);
                expectStatus(r, 200, undefined, `sign-in on ${n.url} with Valkey away`);
                const s = sessionOf(n.url, r, PW, 'sign-in with Valkey away');
                assert.match(s.token, /^tco_/, `a sealed session while Valkey is away: ${show(r)}`);
                sealed.push(s);
                for (const m of [A, B, C]) expectStatus(await me(m.url, s), 200, undefined, `the session made on ${n.url} checked on ${m.url} with Valkey away`);
                expectStatus(await me(n.url, s, 'cookie'), 200, undefined, 'its cookie with Valkey away');
                expectStatus(await signinRaw(n.url, name, 'wrong password!'), 401, 'unauthorized', 'a wrong password with Valkey away');
            }
        } finally {
            await vk.restart();
        }
        for (const n of [A, B, C]) await waitReady(n);
        // a sign-out once Valkey is back ends the session on every node
        const s = sealed[0];
        const w = await wsSession(C.url, s, { rooms: ['general'] });
        expectStatus(await signout(A.url, s), 200, undefined, 'sign-out of the session made while Valkey was away');
        await expectClosed(w, 1008, 'its WebSocket on C');
        for (const n of [A, B, C]) await meEventually(n.url, s, 401);
        // the other one still works
        for (const n of [A, B, C]) expectStatus(await me(n.url, sealed[1]), 200, undefined, `the other session on ${n.url}`);
    }));
});

describe('cluster invites', () => {
    it('an invite code made on one node is used once: two sign-ups with it at once on two nodes, one wins', T, withLogs(async () => {
        // a separate pair of nodes on their own Valkey: signup open to make the
        // admin, then both restarted with signup = invite
        const v2 = await startValkey({ mode: 'plain' });
        let [P, Q] = await startNodes(v2.env, 2, { env: accountsEnv() });
        const boss = await signup(P.url, uname('boss'), PW);
        assert.equal(boss.user.role, 'admin');
        await signinEventually(Q.url, boss.name, PW);
        const dirs = [P.dir, Q.dir];
        await P.stop();
        await Q.stop();
        [P, Q] = await Promise.all(dirs.map((dir) => startNode(v2.env, { dir, env: accountsEnv({ TURBOCHAT_SIGNUP: 'invite' }) })));
        const bossP = await signin(P.url, boss.name, PW);
        const mode = await http(Q.url, '/api/auth/mode');
        assert.equal(mode.json.signup, 'invite', show(mode));
        expectStatus(await signupRaw(Q.url, uname('noinv'), PW), 403, 'invite_invalid', 'signup without an invite');
        expectStatus(await signupRaw(Q.url, uname('badinv'), PW, { invite: 'not-a-code' }), 403, 'invite_invalid', 'signup with a bad invite');
        for (let round = 0; round < 3; round++) {
            const inv = await http(P.url, '/api/auth/invites', { method: 'POST', body: {}, headers: bossP.bearer() });
            expectStatus(inv, 201, undefined, 'invite on P');
            const code = inv.json.code;
            const names = [uname('invP'), uname('invQ')];
            // both at once (whether Q already knows the code or asks for it,
            // only one account may be made with it)
            const rs = await Promise.all([signupRaw(P.url, names[0], PW, { invite: code }), signupRaw(Q.url, names[1], PW, { invite: code })]);
            const ctx = rs.map(show).join(' | ');
            const wins = rs.filter((r) => r.status === 201);
            assert.equal(wins.length, 1, `exactly one sign-up with the code: ${ctx}`);
            for (const r of rs) if (r.status !== 201) expectStatus(r, 403, 'invite_invalid', ctx);
            // and it stays used
            expectStatus(await signupRaw(Q.url, uname('late'), PW, { invite: code }), 403, 'invite_invalid', 'a used code, later');
        }
        // an unused code made on P works on Q once it has arrived
        const inv = await http(P.url, '/api/auth/invites', { method: 'POST', body: {}, headers: bossP.bearer() });
        expectStatus(inv, 201, undefined, 'invite on P');
        let last;
        const qname = uname('onQ');
        await waitFor(async () => {
            last = await signupRaw(Q.url, qname, PW, { invite: inv.json.code });
            return last.status === 201;
        }, { timeoutMs: 10000, what: 'sign-up on Q with a code made on P' }).catch((err) => {
            err.message += ` (last: ${show(last)})`;
            throw err;
        });
        await P.stop();
        await Q.stop();
        await v2.stop();
    }));
});

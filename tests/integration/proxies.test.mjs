// Behind a proxy (issue 11, deploy/nginx.conf): every client arrives from the
// proxy's address, so the per-address limits (write budget, WebSockets per
// address) and the sign-in limits would lump all of them together. With
// trusted_proxies naming the proxy, X-Forwarded-For names the client (and
// X-Forwarded-Proto the scheme its page was served over); from anyone else
// both are ignored, so a client cannot pick its address.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { api, connect } from '../lib/client.mjs';
import { startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 60000 };
const BUDGET = { TURBOCHAT_ADDRESS_RATE_LIMIT: '0.01', TURBOCHAT_ADDRESS_RATE_BURST: '2',
    TURBOCHAT_RATE_LIMIT: '1000', TURBOCHAT_RATE_BURST: '1000', TURBOCHAT_MAX_CONNECTIONS_PER_IP: '1' };

after(stopAll);

function post(srv, user, forwardedFor) {
    const headers = forwardedFor ? { 'X-Forwarded-For': forwardedFor } : {};
    return api(srv.url, '/api/rooms/proxied/messages', { method: 'POST', body: { user, text: 'hi' }, headers });
}

async function statuses(srv, forwardedFor, n) {
    const out = [];
    for (let i = 0; i < n; i++) out.push((await post(srv, `u${i}`, forwardedFor)).status);
    return out;
}

async function upgrade(srv, forwardedFor) {
    try {
        const c = await connect(srv.wsUrl, { headers: { 'X-Forwarded-For': forwardedFor } });
        return { status: 101, c };
    } catch (err) {
        return { status: err.statusCode || 0 };
    }
}

describe('with trusted_proxies', () => {
    let srv;
    before(async () => {
        // the proxy this test speaks from by a range, a second hop by address and a third by range
        srv = await startServer({ env: { ...BUDGET, TURBOCHAT_TRUSTED_PROXIES: '127.0.0.0/8, 10.9.9.9, 10.8.0.0/16' } });
    });

    it('each forwarded client has its own write budget', T, withLogs(async () => {
        assert.deepEqual(await statuses(srv, '10.0.0.1', 3), [201, 201, 429]);
        assert.deepEqual(await statuses(srv, '10.0.0.2', 2), [201, 201], 'another client is not held back');
        // the rightmost address that is not a trusted proxy's counts
        assert.deepEqual(await statuses(srv, '10.0.0.3, 10.9.9.9', 2), [201, 201]);
        assert.deepEqual(await statuses(srv, '10.0.0.4, 10.8.200.1', 2), [201, 201], 'a hop within a trusted range');
        assert.deepEqual(await statuses(srv, '10.0.0.4, 10.7.0.1', 1), [201], '10.7.0.1 is no proxy: it is the client');
        assert.deepEqual(await statuses(srv, '6.6.6.6, 10.0.0.3', 1), [429], 'a spoofed left part is ignored');
    }));

    it('the scheme a trusted proxy forwards makes the https page its own origin', T, withLogs(async () => {
        const host = new URL(srv.url).host;
        const https = { origin: `https://${host}` };
        const viaTls = await connect(srv.wsUrl, { ...https, headers: { 'X-Forwarded-Proto': 'https', 'X-Forwarded-For': '10.2.0.1' } });
        viaTls.close();
        await assert.rejects(connect(srv.wsUrl, { ...https, headers: { 'X-Forwarded-For': '10.2.0.2' } }),
            (err) => err.statusCode === 403, 'without X-Forwarded-Proto the listener is plain HTTP');
    }));

    it('WebSockets per address count the forwarded client', T, withLogs(async () => {
        const a = await upgrade(srv, '10.1.0.1');
        const b = await upgrade(srv, '10.1.0.2');
        const again = await upgrade(srv, '10.1.0.1');
        assert.deepEqual([a.status, b.status, again.status], [101, 101, 503]);
        a.c.close();
        b.c.close();
    }));
});

describe('without trusted_proxies', () => {
    let srv;
    before(async () => {
        srv = await startServer({ env: BUDGET });
    });

    it('X-Forwarded-For is ignored: a client cannot choose its address', T, withLogs(async () => {
        assert.deepEqual(await statuses(srv, '10.0.0.1', 2), [201, 201]);
        assert.deepEqual(await statuses(srv, '10.0.0.2', 1), [429]);
    }));

    it('X-Forwarded-Proto is ignored too', T, withLogs(async () => {
        const origin = `https://${new URL(srv.url).host}`;
        await assert.rejects(connect(srv.wsUrl, { origin, headers: { 'X-Forwarded-Proto': 'https' } }),
            (err) => err.statusCode === 403);
    }));

    it('a bad trusted_proxies entry is refused at start', T, withLogs(async () => {
        await assert.rejects(startServer({ env: { TURBOCHAT_TRUSTED_PROXIES: '127.0.0.1, nginx' }, startTimeoutMs: 8000 }),
            /'nginx': not an IPv4 or IPv6 address, nor a range of them \(ADDRESS\/BITS\)/);
    }));
});

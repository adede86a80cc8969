// HTTP edges an outsider reaches with raw requests: CORS preflights answered
// by the allowed_origins policy, request bodies whose framing is ambiguous
// (short, two Content-Lengths, Content-Length with Transfer-Encoding), the
// --www directory (directories, files over 8 MiB), WebSocket handshakes
// refused by Origin (403 with a JSON body, the scheme compared), and HSTS on
// TLS listeners. Raw sockets: a client library would not send these requests.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { accountsEnv } from '../lib/accounts.mjs';
import { api, uniq } from '../lib/client.mjs';
import { RELAXED_RATE_ENV, startServer, withLogs } from '../lib/server.mjs';
import { startTlsServer, stopTlsServers } from '../lib/tls.mjs';

const T = { timeout: 120000 };
const REQUEST_TIMEOUT_MS = 2000;
const WAIT_MS = 15000;
const EVIL = 'https://evil.example';
const FRIEND = 'https://app.example';

// Send data on a new connection (plain, or TLS with { ca }) and read the
// first response: { status, headers (lower-case names; repeated ones joined
// with ", "), body (Buffer), closed (the server closed the socket within
// closeWithinMs after the response) }. With end, the client half-closes after
// writing.
function rawHttp(port, data, { ca, end = false, closeWithinMs = 0, timeoutMs = WAIT_MS } = {}) {
    return new Promise((resolve, reject) => {
        const s = ca
            ? tls.connect({ port, host: '127.0.0.1', ca, servername: 'localhost' })
            : net.connect(port, '127.0.0.1');
        let buf = Buffer.alloc(0);
        let parsed = null;
        let done = false;
        let closeTimer = null;
        const finish = (closed) => {
            if (done) return;
            done = true;
            clearTimeout(guard);
            clearTimeout(closeTimer);
            s.destroy();
            if (!parsed) parsed = parse(true);
            if (!parsed) return reject(new Error(`no HTTP response; got ${JSON.stringify(buf.toString('latin1').slice(0, 200))}`));
            resolve({ ...parsed, closed });
        };
        const guard = setTimeout(() => finish(false), timeoutMs);
        const parse = (atClose) => {
            const headEnd = buf.indexOf('\r\n\r\n');
            if (headEnd < 0) return null;
            const lines = buf.subarray(0, headEnd).toString('latin1').split('\r\n');
            const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1]);
            const headers = {};
            for (const line of lines.slice(1)) {
                const i = line.indexOf(':');
                const name = line.slice(0, i).trim().toLowerCase();
                const value = line.slice(i + 1).trim();
                headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
            }
            const rest = buf.subarray(headEnd + 4);
            if (status === 101 || status === 204 || status === 304) return { status, headers, body: Buffer.alloc(0) };
            const len = headers['content-length'] !== undefined ? Number(headers['content-length']) : null;
            if (len === null) return atClose ? { status, headers, body: rest } : null;
            if (rest.length < len && !atClose) return null;
            return { status, headers, body: rest.subarray(0, len) };
        };
        const onConnect = () => {
            s.write(data);
            if (end) s.end();
        };
        s.once(ca ? 'secureConnect' : 'connect', onConnect);
        s.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            if (!parsed) {
                parsed = parse(false);
                if (parsed) {
                    if (closeWithinMs > 0) closeTimer = setTimeout(() => finish(false), closeWithinMs);
                    else finish(false);
                }
            }
        });
        s.on('close', () => finish(true));
        s.on('error', () => finish(true));
    });
}

function json(res) {
    return JSON.parse(res.body.toString('utf8'));
}

function upgradeRequest(port, origin, host = `127.0.0.1:${port}`) {
    return (
        `GET /ws HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n` +
        `Origin: ${origin}\r\n\r\n`
    );
}

async function messagesOf(srv, room) {
    const r = await api(srv.url, `/api/rooms/${room}/messages`);
    assert.equal(r.status, 200, JSON.stringify(r.json));
    return r.json.messages;
}

let srv; // default policy: only the server's own origin
let friendly; // allowed_origins = FRIEND

before(async () => {
    srv = await startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) } });
    friendly = await startServer({ env: { ...RELAXED_RATE_ENV, TURBOCHAT_ALLOWED_ORIGINS: FRIEND } });
});

after(stopTlsServers);

describe('CORS preflights follow allowed_origins', () => {
    const preflight = (port, origin) =>
        `OPTIONS /api/rooms/lobby/messages HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nOrigin: ${origin}\r\n` +
        'Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n';

    it('a listed origin gets its own origin back, Vary: Origin, the methods and headers the API uses', T, withLogs(async () => {
        const r = await rawHttp(friendly.port, preflight(friendly.port, FRIEND));
        assert.equal(r.status, 204, JSON.stringify(r.headers));
        assert.equal(r.headers['access-control-allow-origin'], FRIEND);
        assert.match(r.headers.vary || '', /\bOrigin\b/);
        for (const m of ['GET', 'POST', 'PATCH', 'PUT', 'DELETE']) {
            assert.match(r.headers['access-control-allow-methods'] || '', new RegExp(`\\b${m}\\b`));
        }
        assert.match(r.headers['access-control-allow-headers'] || '', /content-type/i);
        assert.match(r.headers['access-control-allow-headers'] || '', /authorization/i);
        assert.equal(r.headers['access-control-allow-credentials'], undefined, 'no cookies without auth = accounts');
    }));

    it('an origin that is not listed gets 403 forbidden and no Access-Control-Allow-Origin', T, withLogs(async () => {
        for (const [server, origin] of [[friendly, EVIL], [srv, EVIL], [friendly, `http://127.0.0.1:${friendly.port}`]]) {
            const r = await rawHttp(server.port, preflight(server.port, origin));
            assert.equal(r.headers['access-control-allow-origin'], undefined, `${origin}: ${JSON.stringify(r.headers)}`);
            assert.equal(r.status, 403, origin);
            assert.equal(json(r).error.code, 'forbidden');
        }
    }));

    it('by default the server\'s own origin passes the preflight', T, withLogs(async () => {
        const own = `http://127.0.0.1:${srv.port}`;
        const r = await rawHttp(srv.port, preflight(srv.port, own));
        assert.equal(r.status, 204);
        assert.equal(r.headers['access-control-allow-origin'], own);
    }));

    it('with auth = accounts a listed origin may send the session cookie, one let in by "*" may not; preflights need no session', T, withLogs(async () => {
        const acc = await startServer({ env: accountsEnv({ TURBOCHAT_ALLOWED_ORIGINS: FRIEND }) });
        const anyone = await startServer({ env: accountsEnv({ TURBOCHAT_ALLOWED_ORIGINS: '*' }) });
        const star = await rawHttp(anyone.port, preflight(anyone.port, EVIL));
        assert.equal(star.status, 204, star.body.toString());
        assert.equal(star.headers['access-control-allow-origin'], EVIL);
        assert.equal(star.headers['access-control-allow-credentials'], undefined, '"*" lets origins in, not their cookies');
        const r = await rawHttp(acc.port, preflight(acc.port, FRIEND));
        assert.equal(r.status, 204, r.body.toString());
        assert.equal(r.headers['access-control-allow-origin'], FRIEND);
        assert.equal(r.headers['access-control-allow-credentials'], 'true');
        const refused = await rawHttp(acc.port, preflight(acc.port, EVIL));
        assert.equal(refused.status, 403);
        assert.equal(refused.headers['access-control-allow-origin'], undefined);
        assert.equal(refused.headers['access-control-allow-credentials'], undefined);
    }));

    it('no response anywhere says Access-Control-Allow-Origin: *', T, withLogs(async () => {
        const paths = ['/', '/index.html', '/nope', '/api/rooms', '/api/rooms/lobby/messages', '/healthz', '/readyz', '/metrics'];
        for (const method of ['GET', 'OPTIONS', 'POST']) {
            for (const p of paths) {
                const r = await rawHttp(srv.port,
                    `${method} ${p} HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nOrigin: ${EVIL}\r\n` +
                    'Access-Control-Request-Method: POST\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
                assert.equal(r.headers['access-control-allow-origin'], undefined, `${method} ${p}: ${JSON.stringify(r.headers)}`);
            }
        }
    }));
});

describe('request bodies with ambiguous framing are refused with 400 and not stored', () => {
    const post = (port, room, extraHeaders, body) =>
        `POST /api/rooms/${room}/messages HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
        `Content-Type: application/json\r\n${extraHeaders}\r\n${body}`;
    const message = (text) => JSON.stringify({ user: 'edge', text });

    // Waiting, the client cannot be told from a slow one: the body's deadline
    // passes and it is 408 (docs/PROTOCOL.md, REST), never stored.
    it('a body shorter than its Content-Length, then the client waits: 408 at the deadline, not stored', T, withLogs(async () => {
        const room = uniq('short');
        const body = message('short and waiting');
        const r = await rawHttp(srv.port, post(srv.port, room, `Content-Length: ${body.length + 40}\r\n`, body),
            { closeWithinMs: WAIT_MS });
        assert.equal(r.status, 408, r.body.toString());
        assert.equal(json(r).error.code, 'timeout');
        assert.ok(r.closed, 'the rest of the connection cannot be read as requests');
        assert.deepEqual(await messagesOf(srv, room), []);
    }));

    it('a body shorter than its Content-Length, then the client half-closes', T, withLogs(async () => {
        const room = uniq('shortfin');
        const body = message('short and gone');
        const r = await rawHttp(srv.port, post(srv.port, room, `Content-Length: ${body.length + 40}\r\n`, body), { end: true });
        assert.equal(r.status, 400, r.body.toString());
        assert.equal(json(r).error.code, 'bad_request');
        assert.deepEqual(await messagesOf(srv, room), []);
    }));

    it('two different Content-Length headers: 400 and the connection closes', T, withLogs(async () => {
        const room = uniq('twocl');
        const body = message('two lengths');
        const r = await rawHttp(srv.port,
            post(srv.port, room, `Content-Length: ${body.length}\r\nContent-Length: ${body.length + 30}\r\n`, body + 'x'.repeat(30)),
            { closeWithinMs: WAIT_MS });
        assert.equal(r.status, 400, r.body.toString());
        assert.equal(json(r).error.code, 'bad_request');
        assert.ok(r.closed, 'the server closes a connection whose framing it cannot trust');
        assert.deepEqual(await messagesOf(srv, room), []);
    }));

    it('a Content-Length that is not just digits ("N, N", "N junk", "+N"): 400 and the connection closes', T, withLogs(async () => {
        const body = message('odd length');
        for (const value of [`${body.length}, ${body.length}`, `${body.length} junk`, `+${body.length}`]) {
            const room = uniq('oddcl');
            const r = await rawHttp(srv.port, post(srv.port, room, `Content-Length: ${value}\r\n`, body),
                { closeWithinMs: WAIT_MS });
            assert.equal(r.status, 400, `${value}: ${r.body.toString()}`);
            assert.equal(json(r).error.code, 'bad_request');
            assert.ok(r.closed, value);
            assert.deepEqual(await messagesOf(srv, room), [], value);
        }
    }));

    it('Content-Length with Transfer-Encoding: 400 and the connection closes, nothing smuggled', T, withLogs(async () => {
        const room = uniq('clte');
        const smuggled = `GET /api/rooms/${room}/messages HTTP/1.1\r\nHost: x\r\n\r\n`;
        const body = message('cl and te');
        const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n${smuggled}`;
        const r = await rawHttp(srv.port,
            post(srv.port, room, `Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n`, chunked),
            { closeWithinMs: WAIT_MS });
        assert.equal(r.status, 400, r.body.toString());
        assert.equal(json(r).error.code, 'bad_request');
        assert.ok(r.closed, 'the server closes a connection whose framing it cannot trust');
        assert.deepEqual(await messagesOf(srv, room), []);
    }));

    it('well-framed bodies are still stored: trailing whitespace, a repeated equal Content-Length (control)', T, withLogs(async () => {
        const body = message('fine');
        const n = Buffer.byteLength(body);
        for (const headers of [`Content-Length: ${n}\r\n`, `Content-Length: ${n}  \r\n`, `Content-Length: ${n}\r\nContent-Length: ${n}\r\n`]) {
            const room = uniq('control');
            const r = await rawHttp(srv.port, post(srv.port, room, headers, body));
            assert.equal(r.status, 201, `${JSON.stringify(headers)}: ${r.body.toString()}`);
            assert.equal((await messagesOf(srv, room)).length, 1);
        }
    }));
});

describe('--www DIR', () => {
    let www;
    let site;
    const big = crypto.randomBytes(9 * 1024 * 1024 + 123);

    before(async () => {
        www = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-www-'));
        fs.writeFileSync(path.join(www, 'index.html'), '<!doctype html><title>edge</title>\n');
        fs.writeFileSync(path.join(www, 'big.bin'), big);
        fs.mkdirSync(path.join(www, 'sub'));
        fs.writeFileSync(path.join(www, 'sub', 'a.txt'), 'inside\n');
        site = await startServer({ args: ['--www', www] });
    });

    after(() => fs.rmSync(www, { recursive: true, force: true }));

    const get = (p, extra = '', method = 'GET') =>
        rawHttp(site.port, `${method} ${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}Connection: close\r\n\r\n`, { timeoutMs: 60000 });

    it('a directory is 404, with or without a trailing slash; a file inside it is served', T, withLogs(async () => {
        for (const p of ['/sub', '/sub/']) {
            const r = await get(p);
            assert.equal(r.status, 404, `${p}: ${r.status} ${JSON.stringify(r.headers)}`);
        }
        const r = await get('/sub/a.txt');
        assert.equal(r.status, 200);
        assert.equal(r.body.toString(), 'inside\n');
    }));

    it('a file over 8 MiB is served whole, and revalidates with its ETag', T, withLogs(async () => {
        const r = await get('/big.bin');
        assert.equal(r.status, 200);
        assert.equal(Number(r.headers['content-length']), big.length);
        assert.equal(r.body.length, big.length);
        assert.ok(r.body.equals(big), 'the bytes served are the file');
        const again = await get('/big.bin', `If-None-Match: ${r.headers.etag}\r\n`);
        assert.equal(again.status, 304);
        const head = await get('/big.bin', '', 'HEAD');
        assert.equal(head.status, 200);
        assert.equal(Number(head.headers['content-length']), big.length);
    }));
});

describe('Origin at the WebSocket handshake', () => {
    it('a refused origin gets 403 with the JSON error body, not a bare close', T, withLogs(async () => {
        const r = await rawHttp(srv.port, upgradeRequest(srv.port, EVIL));
        assert.equal(r.status, 403);
        assert.match(r.headers['content-type'] || '', /application\/json/);
        assert.equal(json(r).error.code, 'forbidden');
    }));

    it('on a plain listener an https Origin with the same host is another origin', T, withLogs(async () => {
        const same = `http://127.0.0.1:${srv.port}`;
        const other = `https://127.0.0.1:${srv.port}`;
        assert.equal((await rawHttp(srv.port, upgradeRequest(srv.port, same))).status, 101);
        assert.equal((await rawHttp(srv.port, upgradeRequest(srv.port, other))).status, 403);
        const room = uniq('scheme');
        const post = (origin) => api(srv.url, `/api/rooms/${room}/messages`, {
            method: 'POST', headers: { Origin: origin }, body: { user: 'scheme', text: origin },
        });
        assert.equal((await post(other)).status, 403);
        assert.equal((await post(same)).status, 201);
        assert.deepEqual((await messagesOf(srv, room)).map((m) => m.text), [same]);
    }));
});

describe('TLS listeners', () => {
    let tlsPort;
    let ca;
    let plainPort;

    before(async () => {
        let tlsSrv;
        ({ srv: tlsSrv, tlsPort, ca } = await startTlsServer({ tmpPrefix: 'turbochat-edges-' }));
        plainPort = tlsSrv.port;
    });

    it('send Strict-Transport-Security on every kind of response; the plain listener does not', T, withLogs(async () => {
        for (const p of ['/', '/nope', '/healthz', '/api/rooms', '/api/rooms/x/messages/abc', '/metrics']) {
            const req = `GET ${p} HTTP/1.1\r\nHost: 127.0.0.1:${tlsPort}\r\nConnection: close\r\n\r\n`;
            const secure = await rawHttp(tlsPort, req, { ca });
            assert.match(secure.headers['strict-transport-security'] || '', /^max-age=31536000\b/, `${p}: ${JSON.stringify(secure.headers)}`);
            const plain = await rawHttp(plainPort, req);
            assert.equal(plain.headers['strict-transport-security'], undefined, p);
        }
    }));

    it('an http Origin is another origin for the TLS listener, its https one is the same', T, withLogs(async () => {
        const upgrade = (origin) => rawHttp(tlsPort, upgradeRequest(tlsPort, origin), { ca });
        assert.equal((await upgrade(`http://127.0.0.1:${tlsPort}`)).status, 403);
        assert.equal((await upgrade(`https://127.0.0.1:${tlsPort}`)).status, 101);
    }));
});

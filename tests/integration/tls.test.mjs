// HTTPS and WSS from the binary itself: CivetWeb compiled with OpenSSL 3 (the
// reason it is built from Debian's source), a certificate and key given as two
// PEM files, and a listener written with an 's' suffix next to a plain one.
import assert from 'node:assert/strict';
import https from 'node:https';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { withLogs } from '../lib/server.mjs';
import { startTlsServer, stopTlsServers } from '../lib/tls.mjs';

const T = { timeout: 60000 };
let tlsPort;
let ca;

function httpsGet(pathname) {
    return new Promise((resolve, reject) => {
        const req = https.get({ host: '127.0.0.1', port: tlsPort, path: pathname, ca }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode, body }));
        });
        req.on('error', reject);
        req.setTimeout(10000, () => req.destroy(new Error('https request timed out')));
    });
}

before(async () => {
    ({ tlsPort, ca } = await startTlsServer({ tmpPrefix: 'turbochat-tls-' }));
});

after(stopTlsServers);

describe('TLS listener', () => {
    it('serves HTTPS with a certificate chain the client verifies', T, withLogs(async () => {
        const r = await httpsGet('/healthz');
        assert.equal(r.status, 200);
        assert.equal(JSON.parse(r.body).status, 'ok');
        const page = await httpsGet('/');
        assert.equal(page.status, 200);
        assert.match(page.body, /<html/i);
    }));

    it('carries a chat over WSS', T, withLogs(async () => {
        const ws = new WebSocket(`wss://127.0.0.1:${tlsPort}/ws`, { ca, perMessageDeflate: false });
        const frames = [];
        const waitFor = (type) => new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no ${type} frame; saw ${JSON.stringify(frames)}`)), 10000);
            const check = () => {
                const f = frames.find((x) => x.type === type);
                if (f) {
                    clearTimeout(timer);
                    resolve(f);
                }
            };
            ws.on('message', () => check());
            check();
        });
        ws.on('message', (d) => frames.push(JSON.parse(d)));
        await new Promise((resolve, reject) => {
            ws.once('open', resolve);
            ws.once('error', reject);
        });
        ws.send(JSON.stringify({ type: 'hello', name: 'tls-user' }));
        assert.equal((await waitFor('welcome')).user, 'tls-user');
        ws.send(JSON.stringify({ type: 'join', room: 'secure' }));
        await waitFor('joined');
        ws.send(JSON.stringify({ type: 'send', room: 'secure', text: 'over tls', ref: 't1' }));
        const ack = await waitFor('ack');
        assert.equal(ack.ref, 't1');
        assert.equal((await waitFor('message')).text, 'over tls');
        ws.close();
    }));

    it('refuses a client that does not trust the certificate', T, async () => {
        await assert.rejects(
            () => new Promise((resolve, reject) => {
                https.get({ host: '127.0.0.1', port: tlsPort, path: '/healthz' }, resolve).on('error', reject);
            }),
            /self[- ]signed|unable to verify|certificate/i,
        );
    });
});

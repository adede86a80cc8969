// HTTPS and WSS from the binary itself: CivetWeb compiled with OpenSSL 3 (the
// reason it is built from Debian's source), a certificate and key given as two
// PEM files, and a listener written with an 's' suffix next to a plain one.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { freePort, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 60000 };
let srv;
let tlsPort;
let ca;
let certDir;

// A CA and a server certificate for 127.0.0.1, made with the openssl CLI.
function makeCertificates(dir) {
    const run = (args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=test-ca',
        '-keyout', 'ca.key', '-out', 'ca.pem']);
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key',
        '-out', 'server.csr']);
    fs.writeFileSync(path.join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
    run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
        '-days', '2', '-extfile', 'san.ext', '-out', 'server.pem']);
    return fs.readFileSync(path.join(dir, 'ca.pem'));
}

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
    certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-tls-'));
    ca = makeCertificates(certDir);
    tlsPort = await freePort();
    const port = await freePort();
    srv = await startServer({
        port,
        args: ['--listen', `127.0.0.1:${port},127.0.0.1:${tlsPort}s`],
        env: {
            TURBOCHAT_TLS_CERT: path.join(certDir, 'server.pem'),
            TURBOCHAT_TLS_KEY: path.join(certDir, 'server.key'),
        },
    });
});

after(async () => {
    await stopAll();
    fs.rmSync(certDir, { recursive: true, force: true });
});

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

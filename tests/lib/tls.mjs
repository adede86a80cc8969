// A turbochat with a TLS listener for the integration tests: a CA and a server
// certificate for 127.0.0.1 made with the openssl CLI in a temporary
// directory, and a server on a plain port plus a TLS one (the listener
// written with an 's' suffix). stopTlsServers() stops every server (stopAll)
// and then removes the certificate directories.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort, startServer, stopAll } from './server.mjs';

const certDirs = new Set();

// A CA and a server certificate for 127.0.0.1 in dir (ca.pem, server.pem,
// server.key), made with the openssl CLI. Returns the CA certificate (PEM).
export function makeCertificates(dir) {
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

// Start turbochat listening on 127.0.0.1:<port> and 127.0.0.1:<tlsPort>s with
// fresh certificates in a temporary directory named <tmpPrefix>XXXXXX; env is
// merged under TURBOCHAT_TLS_CERT and TURBOCHAT_TLS_KEY. Resolves with
// { srv, tlsPort, ca } (ca: the CA certificate the clients trust).
export async function startTlsServer({ tmpPrefix = 'turbochat-tls-', env = {} } = {}) {
    const certDir = fs.mkdtempSync(path.join(os.tmpdir(), tmpPrefix));
    certDirs.add(certDir);
    const ca = makeCertificates(certDir);
    const tlsPort = await freePort();
    const port = await freePort();
    const srv = await startServer({
        port,
        args: ['--listen', `127.0.0.1:${port},127.0.0.1:${tlsPort}s`],
        env: {
            ...env,
            TURBOCHAT_TLS_CERT: path.join(certDir, 'server.pem'),
            TURBOCHAT_TLS_KEY: path.join(certDir, 'server.key'),
        },
    });
    return { srv, tlsPort, ca };
}

// stopAll(), then remove the certificate directories of startTlsServer.
export async function stopTlsServers() {
    await stopAll();
    for (const dir of certDirs) {
        fs.rmSync(dir, { recursive: true, force: true });
        certDirs.delete(dir);
    }
}

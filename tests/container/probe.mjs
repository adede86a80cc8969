// The container test (make test-container): run by ../shared/tools/container-check
// on the host, with host networking, while the image built from the
// Dockerfile runs (CC_CONTAINER, listening on 8080; CC_IMAGE the image). It
// exits 0 once:
//   - two clients chat through the container (WebSocket and REST history);
//   - the server in it runs as a user other than root;
//   - a stop drains: a second container of the image, stopped with
//     `podman stop` (SIGTERM), closes its client with 1001.
// container-check repeats it until it passes (each try at most 15 s) or
// its limit ends, so a try that finds the server not ready yet exits 1 fast.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { api, connectUser } from '../lib/client.mjs';

const URL_MAIN = 'http://127.0.0.1:8080';
const WAIT_MS = 8000;

function fail(why) {
    console.error(`container probe: ${why}`);
    process.exit(1);
}

function podman(...args) {
    return execFileSync('podman', args, { encoding: 'utf8', timeout: 20000 }).trim();
}

async function ready(url) {
    try {
        return (await api(url, '/readyz', { timeoutMs: 1000 })).status === 200;
    } catch {
        return false;
    }
}

async function waitReady(url, ms) {
    for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 100)))
        if (await ready(url)) return;
    fail(`${url} not ready within ${ms} ms`);
}

function freePort() {
    return new Promise((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

async function chat(url) {
    const ws = url.replace('http', 'ws') + '/ws';
    const room = `probe${process.pid}`;
    const alice = await connectUser(ws, 'alice', [room]);
    const bob = await connectUser(ws, 'bob', [room]);
    alice.send({ type: 'send', room, text: 'hello from the container', ref: 'p1' });
    const got = await bob.next((f) => f.type === 'message' && f.room === room, WAIT_MS);
    if (got.text !== 'hello from the container') fail(`bob got ${JSON.stringify(got)}`);
    const history = (await api(url, `/api/rooms/${room}/messages`)).json;
    if (!history.messages.some((m) => m.text === 'hello from the container')) fail('not in history');
    alice.close();
    bob.close();
}

function notRoot(container) {
    const pid = podman('inspect', '--format', '{{.State.Pid}}', container);
    const uid = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    if (uid === undefined || uid === '0') fail(`the server runs as uid ${uid}`);
    return uid;
}

async function drains(image) {
    const port = await freePort();
    const name = `turbochat-drain-${process.pid}`;
    podman('run', '-d', '--rm', '--name', name, '--network', 'host', '-e', `TURBOCHAT_LISTEN=127.0.0.1:${port}`,
        '-e', 'TURBOCHAT_DB=/tmp/drain.db', image);
    try {
        const url = `http://127.0.0.1:${port}`;
        await waitReady(url, 8000);
        const c = await connectUser(url.replace('http', 'ws') + '/ws', 'carol', ['general']);
        const closed = new Promise((resolve) => c.ws.once('close', (code) => resolve(code)));
        const stop = spawn('podman', ['stop', '-t', '10', name], { stdio: 'ignore' });
        const code = await Promise.race([closed, new Promise((r) => setTimeout(() => r('timeout'), WAIT_MS))]);
        await new Promise((resolve) => stop.once('exit', resolve));
        if (code !== 1001) fail(`a stopped container closed its client with ${code}, not 1001`);
    } finally {
        try {
            podman('rm', '-f', '-t', '1', name);
        } catch {
            /* gone with --rm */
        }
    }
}

if (!(await ready(URL_MAIN))) fail('not ready yet');
await chat(URL_MAIN);
const uid = notRoot(process.env.CC_CONTAINER);
await drains(process.env.CC_IMAGE);
console.log(`container probe: chat ok, runs as uid ${uid}, a stop drains with 1001`);
process.exit(0);

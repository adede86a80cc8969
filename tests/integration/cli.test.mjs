// Operator interface of docs/PROTOCOL.md: --help, --version, --check-config,
// and the precedence of settings: default < turbochat.conf < .env <
// environment < command-line flag.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { connect } from '../lib/client.mjs';
import { binaryPath, startServer, stopAll, withLogs } from '../lib/server.mjs';

const T = { timeout: 60000 };
const dirs = [];

after(async () => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    await stopAll();
});

function tmpdir() {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-cli-'));
    dirs.push(d);
    return d;
}

// Run the binary to completion in dir with a clean environment plus env.
function run(args, { env = {}, dir = tmpdir() } = {}) {
    const base = { PATH: process.env.PATH, HOME: process.env.HOME };
    for (const k of ['ASAN_OPTIONS', 'UBSAN_OPTIONS', 'LSAN_OPTIONS', 'TSAN_OPTIONS']) if (process.env[k]) base[k] = process.env[k];
    const r = spawnSync(binaryPath(), args, { cwd: dir, env: { ...base, ...env }, encoding: 'utf8', timeout: 20000 });
    assert.doesNotMatch(r.stderr || '', /ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer/, `sanitizer report:\n${r.stderr}`);
    return r;
}

// Effective node id printed by --check-config ("node_id = VALUE").
function nodeIdOf(r) {
    const m = /^\s*node_id\s*[=:]\s*"?([^"\s]+)"?\s*$/m.exec(`${r.stdout}\n${r.stderr}`);
    assert.ok(m, `no node_id line in --check-config output:\n${r.stdout}\n${r.stderr}`);
    return m[1];
}

describe('command line', () => {
    it('--version and --help exit 0', T, () => {
        const v = run(['--version']);
        assert.equal(v.status, 0, v.stderr);
        assert.match(v.stdout + v.stderr, /turbochat/i);
        const h = run(['--help']);
        assert.equal(h.status, 0, h.stderr);
        for (const flag of ['--listen', '--db', '--node-id', '--config', '--check-config', '--log-level']) {
            assert.ok((h.stdout + h.stderr).includes(flag), `--help mentions ${flag}`);
        }
    });

    it('an unknown flag or a bad value fails with a non-zero exit', T, () => {
        const u = run(['--no-such-flag']);
        assert.notEqual(u.status, 0);
        const b = run(['--check-config'], { env: { TURBOCHAT_RATE_BURST: 'lots' } });
        assert.notEqual(b.status, 0, `bad TURBOCHAT_RATE_BURST accepted:\n${b.stdout}`);
        assert.match(b.stdout + b.stderr, /TURBOCHAT_RATE_BURST|rate_burst/, 'the error names the setting');
        const l = run(['--check-config', '--log-level', 'loud']);
        assert.notEqual(l.status, 0);
    });

    it('--check-config: conf < .env < environment < flag', T, () => {
        const dir = tmpdir();
        fs.writeFileSync(path.join(dir, 'turbochat.conf'), 'node_id = from-conf\n');
        assert.equal(nodeIdOf(run(['--check-config'], { dir })), 'from-conf');
        fs.writeFileSync(path.join(dir, '.env'), 'TURBOCHAT_NODE_ID=from-dotenv\n');
        assert.equal(nodeIdOf(run(['--check-config'], { dir })), 'from-dotenv');
        const env = { TURBOCHAT_NODE_ID: 'from-env' };
        assert.equal(nodeIdOf(run(['--check-config'], { dir, env })), 'from-env');
        assert.equal(nodeIdOf(run(['--check-config', '--node-id', 'from-flag'], { dir, env })), 'from-flag');
        const c = run(['--check-config'], { dir });
        assert.equal(c.status, 0, c.stderr);
    });

    it('--check-config does not print secrets', T, () => {
        const r = run(['--check-config'], {
            env: { TURBOCHAT_AUTH_SECRET: 'SuperSecretValue123-0123456789abcdef', REDIS_PASSWORD: 'AnotherSecret456', REDIS_HOST: '127.0.0.1' },
        });
        const out = r.stdout + r.stderr;
        assert.ok(!out.includes('SuperSecretValue123-0123456789abcdef'), 'auth secret printed');
        assert.ok(!out.includes('AnotherSecret456'), 'Valkey password printed');
    });

    it('the server reads turbochat.conf from its working directory', T, withLogs(async () => {
        const dir = tmpdir();
        fs.writeFileSync(path.join(dir, 'turbochat.conf'), '# test\nnode_id = conf-node\nlog_level = info\n');
        // a refill too slow to add a token during the test: exactly the burst is accepted
        fs.writeFileSync(path.join(dir, '.env'), 'TURBOCHAT_RATE_BURST=3\nTURBOCHAT_RATE_LIMIT=0.01\n');
        // startServer passes --node-id test-PORT, which wins over the file
        const s = await startServer({ dir });
        const c = await connect(s.wsUrl);
        const w = await c.hello('cfg');
        assert.equal(w.node, `test-${s.port}`, 'the flag wins over turbochat.conf');
        // the .env burst of 3 applies
        const room = 'cfg';
        await c.join(room);
        const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => c.sendMessage(room, `m${i}`)));
        const acks = answers.filter((a) => a.type === 'ack').length;
        assert.equal(acks, 3, `burst from .env is 3, got ${acks} acks: ${JSON.stringify(answers)}`);
        await c.close();
        await s.stop();
    }));
});

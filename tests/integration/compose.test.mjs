// deploy/docker-compose.yml without Docker: the YAML parses (Debian's
// python3-yaml), it holds Valkey, three nodes built from the repository's
// Dockerfile and nginx with deploy/nginx.conf, and it agrees with that file
// (service names, ports). Each node's environment passes the real binary's
// --check-config, so a misspelt or out-of-range setting fails here.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { binaryPath } from '../lib/server.mjs';

const T = { timeout: 60000 };
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEPLOY = path.join(REPO, 'deploy');
const PYTHON = process.env.PYTHON3 || '/usr/bin/python3';
const NODES = ['node1', 'node2', 'node3'];
const dirs = [];

after(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

// The compose file as plain data (YAML merge keys resolved).
function loadCompose() {
    const r = spawnSync(
        PYTHON,
        ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', path.join(DEPLOY, 'docker-compose.yml')],
        { encoding: 'utf8', timeout: 20000 },
    );
    assert.equal(r.error, undefined, `${PYTHON} did not run: ${r.error && r.error.message}`);
    assert.doesNotMatch(r.stderr, /No module named .?yaml/, 'PyYAML missing: apt-get install python3-yaml (scripts/deps.sh --test)');
    assert.equal(r.status, 0, `deploy/docker-compose.yml does not parse:\n${r.stderr}`);
    return JSON.parse(r.stdout);
}

// environment as an object, whether written as a map or as a NAME=value list.
function envOf(service) {
    const e = service.environment || {};
    if (!Array.isArray(e)) return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, String(v)]));
    return Object.fromEntries(e.map((s) => [s.slice(0, s.indexOf('=')), s.slice(s.indexOf('=') + 1)]));
}

describe('deploy/docker-compose.yml', () => {
    const compose = loadCompose();
    const services = compose.services || {};
    const nginxConf = fs.readFileSync(path.join(DEPLOY, 'nginx.conf'), 'utf8');

    it('has Valkey, three nodes and nginx', T, () => {
        assert.deepEqual(Object.keys(services).sort(), ['nginx', ...NODES, 'valkey'].sort());
        assert.match(services.valkey.image, /^valkey\/valkey:[\w.]+-bookworm$/, 'a Debian-based Valkey image');
        assert.match(services.nginx.image, /^nginx:[\w.]+-bookworm$/, 'a Debian-based nginx image');
    });

    it('builds every node from the repository Dockerfile, each with its own volume for its log', T, () => {
        const ids = new Set();
        const volumes = new Set();
        for (const name of NODES) {
            const s = services[name];
            const dockerfile = path.resolve(DEPLOY, s.build.context, s.build.dockerfile || 'Dockerfile');
            assert.equal(dockerfile, path.join(REPO, 'Dockerfile'), `${name} builds the repository's Dockerfile`);
            const env = envOf(s);
            assert.equal(new URL(env.REDIS_URL).hostname, 'valkey', `${name}: REDIS_URL points at the valkey service`);
            assert.equal(new URL(env.REDIS_URL).port || '6379', '6379');
            assert.equal(env.TURBOCHAT_TRUSTED_PROXIES, compose.services.nginx.networks.default.ipv4_address,
                `${name}: trusts X-Forwarded-For from nginx's fixed address`);
            ids.add(env.TURBOCHAT_NODE_ID);
            const data = (s.volumes || []).map((v) => v.split(':')).filter(([, target]) => target === path.posix.dirname(env.TURBOCHAT_DB));
            assert.equal(data.length, 1, `${name}: one volume holds the directory of TURBOCHAT_DB ${env.TURBOCHAT_DB}`);
            assert.ok(data[0][0] in (compose.volumes || {}), `${name}: ${data[0][0]} is a named volume`);
            volumes.add(data[0][0]);
            assert.ok(Number(s.ulimits.nofile.soft) >= 65536, `${name}: the open-file limit sizes max_connections`);
        }
        assert.equal(ids.size, 3, 'three distinct node ids');
        assert.equal(volumes.size, 3, 'three distinct volumes');
    });

    it("gives every node settings the binary accepts (--check-config)", T, () => {
        for (const name of NODES) {
            const env = envOf(services[name]);
            const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'turbochat-compose-'));
            dirs.push(dir);
            const r = spawnSync(binaryPath(), ['--check-config'], {
                cwd: dir,
                env: { PATH: process.env.PATH, ...env },
                encoding: 'utf8',
                timeout: 20000,
            });
            assert.equal(r.status, 0, `${name}: --check-config refused its environment:\n${r.stdout}\n${r.stderr}`);
            assert.match(r.stdout, new RegExp(`^node_id = ${env.TURBOCHAT_NODE_ID}$`, 'm'));
            assert.match(r.stdout, /^redis_tls = off$/m, `${name}: plain-text Valkey on the private network`);
            assert.match(r.stdout, /^redis_host = valkey$/m);
        }
    });

    it('runs nginx with deploy/nginx.conf, whose upstream is the three nodes, on the one published port', T, () => {
        const ng = services.nginx;
        const mount = (ng.volumes || []).map((v) => v.split(':')).find(([, target]) => target === '/etc/nginx/nginx.conf');
        assert.ok(mount, 'deploy/nginx.conf is mounted as /etc/nginx/nginx.conf');
        assert.equal(path.resolve(DEPLOY, mount[0]), path.join(DEPLOY, 'nginx.conf'));
        assert.equal((ng.ports || []).length, 1, 'nginx publishes one port');
        const inner = String(ng.ports[0]).split(':').pop();
        assert.match(nginxConf, new RegExp(`^\\s*listen ${inner};`, 'm'), `nginx.conf listens on the published port ${inner}`);
        for (const name of Object.keys(services)) {
            if (name !== 'nginx') assert.equal(services[name].ports, undefined, `${name} publishes no port`);
        }
        const upstream = [...nginxConf.matchAll(/^\s*server\s+([\w.-]+):(\d+)[\s;]/gm)].map((m) => `${m[1]}:${m[2]}`);
        const expected = NODES.map((n) => `${n}:${envOf(services[n]).TURBOCHAT_LISTEN}`);
        assert.deepEqual(upstream.sort(), expected.sort(), 'the upstream servers are the compose nodes on their listen port');
    });
});

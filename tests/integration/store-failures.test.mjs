// The log's own failures (issue 11): while commits fail (a full disk; here
// a file size limit set on the running node with prlimit) every send is
// refused and /readyz answers 503, then 200 again once a write succeeds,
// without traffic; and a second process on the same database is refused at
// start with a clear error (two used to ack the same ids, and one acked
// message silently went).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { api } from '../lib/client.mjs';
import { restPost } from '../lib/lifecycle.mjs';
import { RELAXED_RATE_ENV, binaryPath, freePort, startServer, stopAll, withLogs } from '../lib/server.mjs';
import { waitFor } from '../lib/valkey.mjs';

const T = { timeout: 60000 };

after(stopAll);

// The soft limit only: raising a hard limit again needs CAP_SYS_RESOURCE.
function setFileSizeLimit(pid, bytes) {
    execFileSync('prlimit', ['--pid', String(pid), `--fsize=${bytes}:`]);
}

describe('commits that fail', () => {
    let srv;
    before(async () => {
        srv = await startServer({ env: RELAXED_RATE_ENV });
    });

    it('/readyz is 503 while commits fail and 200 once they work again', T, withLogs(async () => {
        assert.equal((await restPost(srv.url, 'disk', { user: 'ann', text: 'before' })).status, 201);
        assert.equal((await api(srv.url, '/readyz')).status, 200);

        setFileSizeLimit(srv.proc.pid, 1);
        const refused = await restPost(srv.url, 'disk', { user: 'ann', text: 'while full' });
        assert.equal(refused.status, 503, `a send whose commit fails: ${refused.status} ${refused.text}`);
        const ready = await api(srv.url, '/readyz');
        assert.equal(ready.status, 503, `readyz while commits fail: ${ready.text}`);
        assert.match(ready.json.error.message, /commit/);

        setFileSizeLimit(srv.proc.pid, 'unlimited');
        await waitFor(async () => (await api(srv.url, '/readyz')).status === 200,
            { timeoutMs: 15000, what: '/readyz 200 after the disk has room again' });
        assert.equal((await restPost(srv.url, 'disk', { user: 'ann', text: 'after' })).status, 201);
        const texts = (await api(srv.url, '/api/rooms/disk/messages')).json.messages.map((m) => m.text);
        assert.deepEqual(texts, ['before', 'after'], 'the refused send was not stored');
        assert.match(srv.logs(), /store_commits_recovered/);
    }));
});

describe('one database, one process', () => {
    it('a second turbochat on the same database is refused at start', T, withLogs(async () => {
        const first = await startServer({});
        const port = await freePort();
        const second = spawnSync(binaryPath(), ['--listen', `127.0.0.1:${port}`, '--db', first.dbPath],
            { encoding: 'utf8', timeout: 20000, env: { PATH: process.env.PATH } });
        assert.notEqual(second.status, 0, 'the second process must not serve');
        assert.equal(second.signal, null, `it exits by itself: ${second.signal}`);
        assert.match(second.stdout + second.stderr, /in use by another turbochat process/);
        assert.equal((await api(first.url, '/readyz')).status, 200, 'the first serves on');
    }));
});

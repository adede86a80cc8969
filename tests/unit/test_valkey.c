/* test_valkey: the Valkey connection against real valkey-server processes
 * (plain, password, ACL user, TLS with a CA generated here), plus a fake
 * server for partial replies and command timeouts. Never skipped: a missing
 * valkey-server or openssl is a failure. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* MSG_NOSIGNAL, SOCK_NONBLOCK, TCP_KEEPIDLE, prctl */
#endif
#include "valkey.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "test_help.h"
#include "test_net.h"
#include "util.h"

#define MAX_SERVERS 8

/* Test fixture state: child processes to reap and the temp directory. */
static pid_t servers[MAX_SERVERS];
static size_t nservers;
static char tmpdir[256];
static bool certs_made;

/* ---------------------------------------------------------------------------
 * Fixture helpers
 * ------------------------------------------------------------------------- */

static void stop_server(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 200; i++) {
        if (waitpid(pid, NULL, WNOHANG) == pid)
            return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

static void cleanup(void)
{
    for (size_t i = 0; i < nservers; i++)
        stop_server(servers[i]);
    nservers = 0;
    if (tmpdir[0]) {
        char cmd[320];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "cannot remove %s\n", tmpdir);
        tmpdir[0] = '\0';
    }
}

static const char *get_tmpdir(void)
{
    if (!tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(tmpdir, sizeof(tmpdir), "%s/test_valkey.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(cleanup);
    }
    return tmpdir;
}

/* A loopback port nobody listens on right now. */
static void dump_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[512];
    if (!f)
        return;
    fprintf(stderr, "---- %s\n", path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

/* Start valkey-server listening on port (plain, or TLS when tls is true),
 * with extra arguments (NULL-terminated list). Waits until it accepts.
 * Returns the pid, or -1 after dumping its log. */
static pid_t start_server(int port, bool tls, const char *const *extra)
{
    const char *dir = get_tmpdir();
    char portstr[16], logpath[320], cert[300], key[300], ca[300];
    snprintf(portstr, sizeof(portstr), "%d", port);
    snprintf(logpath, sizeof(logpath), "%s/valkey-%d.log", dir, port);
    snprintf(cert, sizeof(cert), "%s/server.crt", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    snprintf(ca, sizeof(ca), "%s/ca.crt", dir);

    const char *argv[40];
    int argc = 0;
    argv[argc++] = "valkey-server";
    argv[argc++] = "--bind";
    argv[argc++] = "127.0.0.1";
    argv[argc++] = "--save";
    argv[argc++] = "";
    argv[argc++] = "--appendonly";
    argv[argc++] = "no";
    argv[argc++] = "--dir";
    argv[argc++] = dir;
    if (tls) {
        argv[argc++] = "--port";
        argv[argc++] = "0";
        argv[argc++] = "--tls-port";
        argv[argc++] = portstr;
        argv[argc++] = "--tls-cert-file";
        argv[argc++] = cert;
        argv[argc++] = "--tls-key-file";
        argv[argc++] = key;
        argv[argc++] = "--tls-ca-cert-file";
        argv[argc++] = ca;
        argv[argc++] = "--tls-auth-clients";
        argv[argc++] = "no";
    } else {
        argv[argc++] = "--port";
        argv[argc++] = portstr;
    }
    for (size_t i = 0; extra && extra[i]; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;

    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a crashed test */
        int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execvp("valkey-server", (char *const *)argv);
        execv("/usr/bin/valkey-server", (char *const *)argv);
        fprintf(stderr, "cannot run valkey-server: %s\n", strerror(errno));
        _exit(127);
    }
    if (nservers < MAX_SERVERS)
        servers[nservers++] = pid;
    for (int i = 0; i < 500; i++) { /* up to 5 s */
        if (test_port_accepts(port))
            return pid;
        if (waitpid(pid, NULL, WNOHANG) == pid)
            break;
        usleep(10000);
    }
    fprintf(stderr, "valkey-server on port %d did not start\n", port);
    dump_file(logpath);
    return -1;
}

static int run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

/* A CA and a server certificate for localhost / 127.0.0.1, made once. */
static int make_certs(void)
{
    if (certs_made)
        return 0;
    const char *d = get_tmpdir();
    char path[320], cmd[2048];
    snprintf(path, sizeof(path), "%s/openssl.cnf", d);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("[req]\ndistinguished_name = dn\nprompt = no\n"
          "[dn]\nCN = TurboChat Test CA\n"
          "[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
          "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"
          "[v3_srv]\nbasicConstraints = CA:FALSE\n"
          "keyUsage = critical,digitalSignature,keyEncipherment\n"
          "extendedKeyUsage = serverAuth\n"
          "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
          "authorityKeyIdentifier = keyid\n",
          f);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && "
             "openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-config openssl.cnf -extensions v3_ca -days 2 -keyout ca.key -out ca.crt "
             ">openssl.log 2>&1 && "
             "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-config openssl.cnf -subj /CN=localhost -keyout server.key -out server.csr "
             ">>openssl.log 2>&1 && "
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
             "-days 2 -extfile openssl.cnf -extensions v3_srv -out server.crt "
             ">>openssl.log 2>&1",
             d);
    if (run(cmd) != 0) {
        snprintf(path, sizeof(path), "%s/openssl.log", d);
        dump_file(path);
        return -1;
    }
    certs_made = true;
    return 0;
}

static int64_t elapsed_ms(uint64_t start_ns)
{
    return (int64_t)((util_mono_ns() - start_ns) / 1000000u);
}

static struct valkey_options plain_opts(int port)
{
    struct valkey_options o = {
        .host = "127.0.0.1", .port = port, .connect_timeout_ms = 2000, .command_timeout_ms = 2000};
    return o;
}

/* Connect, expecting failure with needle in the message (printed, so the
 * log shows what an operator would read). Checks no secret leaks into it. */
static bool expect_fail(const struct valkey_options *o, const char *needle)
{
    char err[256];
    struct valkey_conn *c = valkey_connect(o, err, sizeof(err));
    if (c) {
        fprintf(stderr, "connect unexpectedly succeeded (expected \"%s\")\n", needle);
        valkey_close(c);
        return false;
    }
    fprintf(stderr, "expected failure: %s\n", err);
    if (o->password && strstr(err, o->password)) {
        fprintf(stderr, "the error names the password\n");
        return false;
    }
    return err[0] != '\0' && strstr(err, needle) != NULL;
}

/* Run a command built from C strings; returns the reply or NULL. */
static struct valkey_reply *cmd(struct valkey_conn *c, int argc, const char **argv)
{
    struct valkey_reply *r = NULL;
    if (valkey_command(c, &r, argc, argv, NULL) != 0) {
        fprintf(stderr, "command %s failed: %s\n", argv[0], valkey_last_error(c));
        return NULL;
    }
    return r;
}

/* Run a command and check for a status reply such as OK or PONG. */
static bool cmd_status(struct valkey_conn *c, const char *status, int argc, const char **argv)
{
    struct valkey_reply *r = cmd(c, argc, argv);
    bool ok = r && r->type == VALKEY_REPLY_STATUS && strcmp(r->str, status) == 0;
    if (r && !ok)
        fprintf(stderr, "%s: unexpected reply type %d %s\n", argv[0], r->type,
                r->str ? r->str : "");
    valkey_reply_free(r);
    return ok;
}

/* ---------------------------------------------------------------------------
 * Shared scenarios, run over TCP and over TLS
 * ------------------------------------------------------------------------- */

/* PING, SET/GET of binary and 1 MB values, nested arrays, server errors,
 * 1000 pipelined INCRs read back in order. */
static int exercise_commands(struct valkey_conn *c)
{
    struct valkey_reply *r;
    TEST_ASSERT(cmd_status(c, "PONG", 1, (const char *[]){"PING"}));

    const char *bin = "a\0b\r\nc";
    const char *setv[] = {"SET", "bin", bin};
    const size_t setl[] = {3, 3, 6};
    TEST_ASSERT_INT(valkey_command(c, &r, 3, setv, setl), 0);
    TEST_ASSERT(r->type == VALKEY_REPLY_STATUS);
    valkey_reply_free(r);
    r = cmd(c, 2, (const char *[]){"GET", "bin"});
    TEST_ASSERT(r && r->type == VALKEY_REPLY_STRING);
    TEST_ASSERT_INT(r->len, 6);
    TEST_ASSERT(memcmp(r->str, bin, 6) == 0 && r->str[6] == '\0');
    valkey_reply_free(r);

    r = cmd(c, 2, (const char *[]){"GET", "missing"});
    TEST_ASSERT(r && r->type == VALKEY_REPLY_NIL);
    valkey_reply_free(r);

    size_t big = 1u << 20;
    char *val = xmalloc(big);
    for (size_t i = 0; i < big; i++)
        val[i] = (char)('a' + i % 26);
    const char *bigv[] = {"SET", "big", val};
    const size_t bigl[] = {3, 3, big};
    TEST_ASSERT_INT(valkey_command(c, &r, 3, bigv, bigl), 0);
    valkey_reply_free(r);
    r = cmd(c, 2, (const char *[]){"GET", "big"});
    TEST_ASSERT(r && r->type == VALKEY_REPLY_STRING && r->len == big);
    TEST_ASSERT(memcmp(r->str, val, big) == 0);
    valkey_reply_free(r);
    free(val);

    r = cmd(c, 3, (const char *[]){"EVAL", "return {1, {'x', 2}, redis.status_reply('OK')}", "0"});
    TEST_ASSERT(r && r->type == VALKEY_REPLY_ARRAY && r->elements == 3);
    TEST_ASSERT(r->element[0]->type == VALKEY_REPLY_INTEGER && r->element[0]->integer == 1);
    TEST_ASSERT(r->element[1]->type == VALKEY_REPLY_ARRAY && r->element[1]->elements == 2);
    TEST_ASSERT_STR(r->element[1]->element[0]->str, "x");
    TEST_ASSERT_INT(r->element[1]->element[1]->integer, 2);
    TEST_ASSERT(r->element[2]->type == VALKEY_REPLY_STATUS);
    valkey_reply_free(r);

    /* A server error is a reply, not a broken connection. */
    r = cmd(c, 2, (const char *[]){"INCR", "bin"});
    TEST_ASSERT(r && r->type == VALKEY_REPLY_ERROR && strncmp(r->str, "ERR", 3) == 0);
    valkey_reply_free(r);
    TEST_ASSERT(!valkey_is_broken(c));

    r = cmd(c, 2, (const char *[]){"DEL", "counter"});
    valkey_reply_free(r);
    for (int i = 0; i < 1000; i++)
        TEST_ASSERT_INT(valkey_append(c, 2, (const char *[]){"INCR", "counter"}, NULL), 0);
    TEST_ASSERT_INT(valkey_flush(c), 0);
    for (int i = 0; i < 1000; i++) {
        TEST_ASSERT_INT(valkey_read_reply(c, &r, VALKEY_TIMEOUT_COMMAND), 0);
        TEST_ASSERT(r->type == VALKEY_REPLY_INTEGER);
        TEST_ASSERT_INT(r->integer, i + 1);
        valkey_reply_free(r);
    }
    /* Nothing outstanding: a zero wait is -EAGAIN and harmless. */
    TEST_ASSERT_INT(valkey_read_reply(c, &r, 0), -EAGAIN);
    TEST_ASSERT(r == NULL);
    TEST_ASSERT(!valkey_is_broken(c));
    /* read_reply flushes appended commands itself. */
    TEST_ASSERT_INT(valkey_append(c, 1, (const char *[]){"PING"}, NULL), 0);
    TEST_ASSERT_INT(valkey_read_reply(c, &r, 2000), 0);
    TEST_ASSERT_STR(r->str, "PONG");
    valkey_reply_free(r);
    return 0;
}

/* SUBSCRIBE on one connection, PUBLISH on another, read the pushes. */
static int exercise_pubsub(const struct valkey_options *o)
{
    char err[256];
    struct valkey_reply *r;
    struct valkey_conn *sub = valkey_connect(o, err, sizeof(err));
    struct valkey_conn *pub = valkey_connect(o, err, sizeof(err));
    TEST_ASSERT(sub && pub);

    TEST_ASSERT_INT(valkey_append(sub, 2, (const char *[]){"SUBSCRIBE", "room:{a}"}, NULL), 0);
    TEST_ASSERT_INT(valkey_read_reply(sub, &r, VALKEY_TIMEOUT_COMMAND), 0);
    TEST_ASSERT(r->type == VALKEY_REPLY_ARRAY && r->elements == 3);
    TEST_ASSERT_STR(r->element[0]->str, "subscribe");
    TEST_ASSERT_STR(r->element[1]->str, "room:{a}");
    TEST_ASSERT_INT(r->element[2]->integer, 1);
    valkey_reply_free(r);

    /* Idle subscriber: short waits time out without breaking anything. */
    TEST_ASSERT_INT(valkey_read_reply(sub, &r, 0), -EAGAIN);
    TEST_ASSERT_INT(valkey_read_reply(sub, &r, 50), -EAGAIN);
    TEST_ASSERT(!valkey_is_broken(sub));

    r = cmd(pub, 3, (const char *[]){"PUBLISH", "room:{a}", "hello"});
    TEST_ASSERT(r && r->type == VALKEY_REPLY_INTEGER && r->integer == 1);
    valkey_reply_free(r);
    TEST_ASSERT_INT(valkey_read_reply(sub, &r, 2000), 0);
    TEST_ASSERT(r->type == VALKEY_REPLY_ARRAY && r->elements == 3);
    TEST_ASSERT_STR(r->element[0]->str, "message");
    TEST_ASSERT_STR(r->element[1]->str, "room:{a}");
    TEST_ASSERT_STR(r->element[2]->str, "hello");
    valkey_reply_free(r);

    /* A pipelined burst arrives in order, many replies per read. */
    char msg[32];
    for (int i = 0; i < 500; i++) {
        snprintf(msg, sizeof(msg), "m%d", i);
        TEST_ASSERT_INT(valkey_append(pub, 3, (const char *[]){"PUBLISH", "room:{a}", msg}, NULL),
                        0);
    }
    TEST_ASSERT_INT(valkey_flush(pub), 0);
    for (int i = 0; i < 500; i++) {
        TEST_ASSERT_INT(valkey_read_reply(pub, &r, VALKEY_TIMEOUT_COMMAND), 0);
        TEST_ASSERT_INT(r->integer, 1);
        valkey_reply_free(r);
    }
    for (int i = 0; i < 500; i++) {
        snprintf(msg, sizeof(msg), "m%d", i);
        TEST_ASSERT_INT(valkey_read_reply(sub, &r, 2000), 0);
        TEST_ASSERT(r->type == VALKEY_REPLY_ARRAY && r->elements == 3);
        TEST_ASSERT_STR(r->element[2]->str, msg);
        valkey_reply_free(r);
    }
    /* PING is allowed in subscribe mode (RESP2 answers an array). */
    TEST_ASSERT_INT(valkey_append(sub, 1, (const char *[]){"PING"}, NULL), 0);
    TEST_ASSERT_INT(valkey_read_reply(sub, &r, VALKEY_TIMEOUT_COMMAND), 0);
    TEST_ASSERT(r->type == VALKEY_REPLY_ARRAY && r->elements == 2);
    TEST_ASSERT_STR(r->element[0]->str, "pong");
    valkey_reply_free(r);

    valkey_close(sub);
    valkey_close(pub);
    return 0;
}

/* The server drops the connection: the next command fails, broken. */
static int exercise_server_kill(const struct valkey_options *o)
{
    char err[256];
    struct valkey_reply *r;
    struct valkey_conn *victim = valkey_connect(o, err, sizeof(err));
    struct valkey_conn *killer = valkey_connect(o, err, sizeof(err));
    TEST_ASSERT(victim && killer);
    r = cmd(victim, 2, (const char *[]){"CLIENT", "ID"});
    TEST_ASSERT(r && r->type == VALKEY_REPLY_INTEGER);
    char id[32];
    snprintf(id, sizeof(id), "%lld", r->integer);
    valkey_reply_free(r);
    r = cmd(killer, 4, (const char *[]){"CLIENT", "KILL", "ID", id});
    TEST_ASSERT(r && r->type == VALKEY_REPLY_INTEGER && r->integer == 1);
    valkey_reply_free(r);

    int rc = valkey_command(victim, &r, 1, (const char *[]){"PING"}, NULL);
    TEST_ASSERT(rc < 0 && rc != -EAGAIN && rc != -ETIMEDOUT);
    TEST_ASSERT(r == NULL);
    TEST_ASSERT(valkey_is_broken(victim));
    TEST_ASSERT(valkey_last_error(victim)[0] != '\0');
    TEST_ASSERT_INT(valkey_command(victim, &r, 1, (const char *[]){"PING"}, NULL), -ENOTCONN);
    TEST_ASSERT_INT(valkey_append(victim, 1, (const char *[]){"PING"}, NULL), -ENOTCONN);
    valkey_close(victim);
    valkey_close(killer);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Test cases
 * ------------------------------------------------------------------------- */

static int test_plain(void)
{
    int port = test_free_port();
    TEST_ASSERT(start_server(port, false, NULL) > 0);
    struct valkey_options o = plain_opts(port);
    char err[256];
    struct valkey_conn *c = valkey_connect(&o, err, sizeof(err));
    if (!c)
        fprintf(stderr, "connect: %s\n", err);
    TEST_ASSERT(c);
    TEST_ASSERT(!valkey_is_tls(c));
    TEST_ASSERT(valkey_fd(c) >= 0);
    TEST_ASSERT(exercise_commands(c) == 0);
    valkey_close(c);

    /* "localhost" may resolve to ::1 first, where nobody listens. */
    o.host = "localhost";
    c = valkey_connect(&o, err, sizeof(err));
    if (!c)
        fprintf(stderr, "connect: %s\n", err);
    TEST_ASSERT(c);
    valkey_close(c);

    o.host = "127.0.0.1";
    TEST_ASSERT(exercise_pubsub(&o) == 0);
    TEST_ASSERT(exercise_server_kill(&o) == 0);

    /* TLS to a plain port: Valkey never answers a ClientHello. */
    o.tls = true;
    o.connect_timeout_ms = 300;
    TEST_ASSERT(expect_fail(&o, "TLS handshake timed out"));

    valkey_close(NULL);
    valkey_reply_free(NULL);
    return 0;
}

static int test_password_auth(void)
{
    int port = test_free_port();
    TEST_ASSERT(start_server(port, false, (const char *[]){"--requirepass", "pw-s3cret", NULL}) >
                0);
    struct valkey_options o = plain_opts(port);
    char err[256];

    o.password = "pw-s3cret";
    struct valkey_conn *c = valkey_connect(&o, err, sizeof(err));
    TEST_ASSERT(c);
    TEST_ASSERT(cmd_status(c, "PONG", 1, (const char *[]){"PING"}));
    valkey_close(c);

    o.password = "wrong-pw-xyz";
    TEST_ASSERT(expect_fail(&o, "authentication failed"));

    o.password = NULL;
    TEST_ASSERT(expect_fail(&o, "NOAUTH"));
    return 0;
}

/* Create the ACL user "app" and disable "default", as on Aiven. */
static int setup_acl(const struct valkey_options *admin)
{
    char err[256];
    struct valkey_conn *c = valkey_connect(admin, err, sizeof(err));
    if (!c)
        fprintf(stderr, "admin connect: %s\n", err);
    TEST_ASSERT(c);
    TEST_ASSERT(cmd_status(
        c, "OK", 8,
        (const char *[]){"ACL", "SETUSER", "app", "on", ">app-s3cret", "~*", "&*", "+@all"}));
    TEST_ASSERT(cmd_status(c, "OK", 4, (const char *[]){"ACL", "SETUSER", "default", "off"}));
    valkey_close(c);
    return 0;
}

static int test_acl_user(void)
{
    int port = test_free_port();
    TEST_ASSERT(start_server(port, false, NULL) > 0);
    struct valkey_options o = plain_opts(port);
    TEST_ASSERT(setup_acl(&o) == 0);
    char err[256];

    o.username = "app";
    o.password = "app-s3cret";
    struct valkey_conn *c = valkey_connect(&o, err, sizeof(err));
    if (!c)
        fprintf(stderr, "connect: %s\n", err);
    TEST_ASSERT(c);
    struct valkey_reply *r = cmd(c, 2, (const char *[]){"ACL", "WHOAMI"});
    TEST_ASSERT(r && r->type == VALKEY_REPLY_STRING);
    TEST_ASSERT_STR(r->str, "app");
    valkey_reply_free(r);
    valkey_close(c);

    o.password = "not-the-one";
    TEST_ASSERT(expect_fail(&o, "authentication failed"));

    o.username = NULL; /* "default" is off: password-only AUTH fails too */
    o.password = "app-s3cret";
    TEST_ASSERT(expect_fail(&o, "authentication failed"));

    o.password = NULL;
    TEST_ASSERT(expect_fail(&o, ""));
    return 0;
}

static int test_tls(void)
{
    TEST_ASSERT(make_certs() == 0);
    char ca[320], err[256];
    snprintf(ca, sizeof(ca), "%s/ca.crt", get_tmpdir());
    int port = test_free_port();
    TEST_ASSERT(start_server(port, true, NULL) > 0);

    struct valkey_options o = plain_opts(port);
    o.tls = true;
    o.ca_file = ca;
    TEST_ASSERT(setup_acl(&o) == 0); /* default user, before it is disabled */
    o.username = "app";
    o.password = "app-s3cret";

    /* IP address: verified against the IP SAN, no SNI. */
    struct valkey_conn *c = valkey_connect(&o, err, sizeof(err));
    if (!c)
        fprintf(stderr, "connect: %s\n", err);
    TEST_ASSERT(c);
    TEST_ASSERT(valkey_is_tls(c));
    TEST_ASSERT(exercise_commands(c) == 0);
    valkey_close(c);

    /* Host name: SNI and DNS SAN. */
    o.host = "localhost";
    c = valkey_connect(&o, err, sizeof(err));
    if (!c)
        fprintf(stderr, "connect: %s\n", err);
    TEST_ASSERT(c);
    valkey_close(c);
    o.host = "127.0.0.1";

    TEST_ASSERT(exercise_pubsub(&o) == 0);
    TEST_ASSERT(exercise_server_kill(&o) == 0);

    /* System CA store: our test CA is unknown there. */
    o.ca_file = NULL;
    TEST_ASSERT(expect_fail(&o, "certificate verification failed"));
    o.ca_file = ca;

    /* Right chain, wrong name. */
    o.server_name = "valkey.example.com";
    TEST_ASSERT(expect_fail(&o, "certificate verification failed: hostname mismatch"));
    o.server_name = "127.0.0.2";
    TEST_ASSERT(expect_fail(&o, "certificate verification failed: IP address mismatch"));
    o.server_name = NULL;

    o.ca_file = "/nonexistent/ca.pem";
    TEST_ASSERT(expect_fail(&o, "CA file"));
    o.ca_file = ca;

    o.password = "wrong";
    TEST_ASSERT(expect_fail(&o, "authentication failed"));
    o.password = "app-s3cret";

    /* A server that only speaks TLS 1.2. */
    int port12 = test_free_port();
    TEST_ASSERT(start_server(port12, true, (const char *[]){"--tls-protocols", "TLSv1.2", NULL}) >
                0);
    struct valkey_options o12 = plain_opts(port12);
    o12.tls = true;
    o12.ca_file = ca;
    struct valkey_conn *c12 = valkey_connect(&o12, err, sizeof(err));
    if (!c12)
        fprintf(stderr, "connect: %s\n", err);
    TEST_ASSERT(c12);
    TEST_ASSERT(exercise_commands(c12) == 0);
    valkey_close(c12);

    /* Plain RESP to a TLS port fails quickly and clearly. */
    o.tls = false;
    uint64_t t0 = util_mono_ns();
    TEST_ASSERT(expect_fail(&o, "does the server require TLS?"));
    TEST_ASSERT(elapsed_ms(t0) < 1000);
    return 0;
}

/* A fake server: answers the first command with +PONG, the second with a
 * bulk string sent in two halves, and then never answers again. */
static pid_t start_fake_server(int listen_fd)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = accept(listen_fd, NULL, NULL);
    char buf[4096];
    if (fd < 0 || read(fd, buf, sizeof(buf)) <= 0 || write(fd, "+PONG\r\n", 7) != 7)
        _exit(1);
    if (read(fd, buf, sizeof(buf)) <= 0 || write(fd, "$5\r\nhel", 7) != 7)
        _exit(1);
    usleep(300000);
    if (write(fd, "lo\r\n", 4) != 4)
        _exit(1);
    while (read(fd, buf, sizeof(buf)) > 0) /* swallow everything, answer nothing */
        ;
    _exit(0);
}

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 8) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

static int test_timeouts(void)
{
    int port, lfd = listen_loopback(&port);
    TEST_ASSERT(lfd >= 0);
    char err[256];
    struct valkey_options o = plain_opts(port);
    o.connect_timeout_ms = 300;
    o.command_timeout_ms = 300;

    /* Nobody accepts: the TCP handshake completes but PING never returns. */
    uint64_t t0 = util_mono_ns();
    TEST_ASSERT(valkey_connect(&o, err, sizeof(err)) == NULL);
    int64_t ms = elapsed_ms(t0);
    TEST_ASSERT(strstr(err, "timed out") != NULL);
    TEST_ASSERT(ms >= 250 && ms < 1500);
    close(lfd);

    lfd = listen_loopback(&port);
    TEST_ASSERT(lfd >= 0);
    o.port = port;
    pid_t pid = start_fake_server(lfd);
    TEST_ASSERT(pid > 0);
    close(lfd);
    struct valkey_conn *c = valkey_connect(&o, err, sizeof(err));
    TEST_ASSERT(c);

    /* Half a reply: -EAGAIN keeps it buffered, the rest completes it. */
    struct valkey_reply *r;
    TEST_ASSERT_INT(valkey_append(c, 2, (const char *[]){"GET", "k"}, NULL), 0);
    TEST_ASSERT_INT(valkey_read_reply(c, &r, 100), -EAGAIN);
    TEST_ASSERT_INT(valkey_read_reply(c, &r, 0), -EAGAIN);
    TEST_ASSERT(!valkey_is_broken(c));
    TEST_ASSERT_INT(valkey_read_reply(c, &r, 2000), 0);
    TEST_ASSERT(r->type == VALKEY_REPLY_STRING);
    TEST_ASSERT_STR(r->str, "hello");
    valkey_reply_free(r);

    /* No answer: -ETIMEDOUT after the command timeout, then broken. */
    t0 = util_mono_ns();
    TEST_ASSERT_INT(valkey_command(c, &r, 1, (const char *[]){"PING"}, NULL), -ETIMEDOUT);
    ms = elapsed_ms(t0);
    TEST_ASSERT(ms >= 250 && ms < 1500);
    TEST_ASSERT(valkey_is_broken(c));
    TEST_ASSERT(strstr(valkey_last_error(c), "timed out") != NULL);
    TEST_ASSERT_INT(valkey_command(c, &r, 1, (const char *[]){"PING"}, NULL), -ENOTCONN);
    valkey_close(c);
    TEST_ASSERT(waitpid(pid, NULL, 0) == pid);
    return 0;
}

static int test_connect_errors(void)
{
    struct valkey_options o = plain_opts(test_free_port());
    TEST_ASSERT(expect_fail(&o, "refused"));

    /* Invalid host name syntax: fails in the resolver without any DNS
     * traffic, so the test does not depend on the network. */
    o.host = "no such host!.invalid";
    TEST_ASSERT(expect_fail(&o, "cannot resolve"));

    o.host = NULL;
    TEST_ASSERT(expect_fail(&o, ""));
    return 0;
}

TEST_MAIN(TEST_CASE(test_plain), TEST_CASE(test_password_auth), TEST_CASE(test_acl_user),
          TEST_CASE(test_tls), TEST_CASE(test_timeouts), TEST_CASE(test_connect_errors))

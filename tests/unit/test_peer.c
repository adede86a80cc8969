/* Unit tests for peer: the signature of a peer request (a known HMAC, the
 * time window, tampering) and the peer_url parser. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "peer.h"
#include "util.h"
#include "test_help.h"

#define SECRET "0123456789abcdef0123456789abcdef"

static int test_sign_known_vector(void)
{
    char h[PEER_HEADER_MAX];
    /* printf 'GET\n/internal/logs\n1700000000000' |
     *   openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef */
    peer_sign(SECRET, "GET", "/internal/logs", 1700000000000, h, sizeof(h));
    TEST_ASSERT_STR(
        h, "1700000000000.2b2ecbfb3301166a6978bb09c09120b14011462cb1c45918c1dec476cec63a18");
    return 0;
}

static int test_verify(void)
{
    const char *t = "/internal/logs/general/events?after=0&limit=100";
    int64_t now = 1700000000000;
    char h[PEER_HEADER_MAX];
    peer_sign(SECRET, "GET", t, now, h, sizeof(h));
    TEST_ASSERT(peer_auth_is_valid(SECRET, "GET", t, h, now));
    TEST_ASSERT(peer_auth_is_valid(SECRET, "GET", t, h, now + PEER_AUTH_WINDOW_MS));
    TEST_ASSERT(peer_auth_is_valid(SECRET, "GET", t, h, now - PEER_AUTH_WINDOW_MS));
    TEST_ASSERT(!peer_auth_is_valid(SECRET, "GET", t, h, now + PEER_AUTH_WINDOW_MS + 1));
    TEST_ASSERT(!peer_auth_is_valid(SECRET, "GET", t, h, now - PEER_AUTH_WINDOW_MS - 1));
    TEST_ASSERT(!peer_auth_is_valid(SECRET "x", "GET", t, h, now));
    TEST_ASSERT(!peer_auth_is_valid(SECRET, "POST", t, h, now));
    TEST_ASSERT(
        !peer_auth_is_valid(SECRET, "GET", "/internal/logs/general/events?after=1", h, now));
    TEST_ASSERT(!peer_auth_is_valid(SECRET, "GET", t, NULL, now));
    TEST_ASSERT(!peer_auth_is_valid("", "GET", t, h, now));
    /* a changed time with the old MAC, a changed MAC, malformed values */
    char moved[PEER_HEADER_MAX];
    snprintf(moved, sizeof(moved), "%s", h);
    moved[12] = moved[12] == '1' ? '2' : '1';
    TEST_ASSERT(!peer_auth_is_valid(SECRET, "GET", t, moved, now));
    snprintf(moved, sizeof(moved), "%s", h);
    moved[strlen(moved) - 1] = moved[strlen(moved) - 1] == 'a' ? 'b' : 'a';
    TEST_ASSERT(!peer_auth_is_valid(SECRET, "GET", t, moved, now));
    TEST_ASSERT(!peer_auth_is_valid(SECRET, "GET", t, "", now));
    TEST_ASSERT(!peer_auth_is_valid(SECRET, "GET", t, ".abc", now));
    TEST_ASSERT(!peer_auth_is_valid(SECRET, "GET", t, "-5.abc", now));
    TEST_ASSERT(!peer_auth_is_valid(SECRET, "GET", t, h + 1, now));
    return 0;
}

static int test_url_parse(void)
{
    char host[64], why[128];
    int port = 0;
    TEST_ASSERT_INT(
        util_parse_http_url("http://10.0.0.5:8080", host, sizeof(host), &port, why, sizeof(why)),
        0);
    TEST_ASSERT_STR(host, "10.0.0.5");
    TEST_ASSERT_INT(port, 8080);
    TEST_ASSERT_INT(
        util_parse_http_url("http://[fd00::1]:81/", host, sizeof(host), &port, why, sizeof(why)),
        0);
    TEST_ASSERT_STR(host, "fd00::1");
    TEST_ASSERT_INT(port, 81);
    TEST_ASSERT_INT(util_parse_http_url("http://chat-1.internal:9000", host, sizeof(host), &port,
                                        why, sizeof(why)),
                    0);
    const char *bad[] = {
        "https://a:1",    "a:1",           "http://a",     "http://:80",    "http://a:0",
        "http://a:65536", "http://a:80/x", "http://[::1]", "http://a b:80", "http://u@a:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = '\0';
        TEST_ASSERT_INT(util_parse_http_url(bad[i], host, sizeof(host), &port, why, sizeof(why)),
                        -EINVAL);
        TEST_ASSERT(why[0] != '\0');
    }
    return 0;
}

TEST_MAIN(TEST_CASE(test_sign_known_vector), TEST_CASE(test_verify), TEST_CASE(test_url_parse))

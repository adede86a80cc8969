/* Unit tests for log: log_quote makes any value one field of one line, and
 * log_write keeps a forged value inside its field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "test_help.h"

static const char *q(const char *value)
{
    static char buf[LOG_VALUE_MAX];
    return log_quote(buf, sizeof(buf), value);
}

static int test_quote_plain_and_escaped(void)
{
    TEST_ASSERT_STR(q("alice"), "alice");
    TEST_ASSERT_STR(q("127.0.0.1"), "127.0.0.1");
    TEST_ASSERT_STR(q("https://chat.example:8443"), "https://chat.example:8443");
    TEST_ASSERT_STR(q(""), "\"\"");
    TEST_ASSERT_STR(q(NULL), "\"\"");
    TEST_ASSERT_STR(q("ana maria"), "\"ana maria\"");
    TEST_ASSERT_STR(q("x\" role=admin"), "\"x\\\" role=admin\"");
    TEST_ASSERT_STR(q("a=b"), "\"a=b\"");
    TEST_ASSERT_STR(q("back\\slash"), "\"back\\\\slash\"");
    TEST_ASSERT_STR(q("two\nlines\r\tx"), "\"two\\nlines\\r\\tx\"");
    TEST_ASSERT_STR(q("bell\x07 del\x7f"), "\"bell\\x07 del\\x7F\"");
    /* UTF-8 stays readable; bytes that are not UTF-8 are escaped */
    TEST_ASSERT_STR(q("Zo\xc3\xab"), "\"Zo\xc3\xab\"");
    TEST_ASSERT_STR(q("bad\xff\xc0\xaf"), "\"bad\\xFF\\xC0\\xAF\"");
    /* characters that hide or reorder text */
    TEST_ASSERT_STR(q("\xe2\x80\xae"
                      "evil"),
                    "\"\\u202Eevil\"");
    TEST_ASSERT_STR(q("a\xe2\x80\x8b"
                      "b\xc2\x85"),
                    "\"a\\u200Bb\\u0085\"");
    TEST_ASSERT_STR(q("x\xe2\x80\xa8y"), "\"x\\u2028y\"");
    return 0;
}

static int test_quote_cuts_to_fit(void)
{
    char big[2000];
    memset(big, '"', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *out = q(big);
    size_t len = strlen(out);
    TEST_ASSERT(len < LOG_VALUE_MAX);
    TEST_ASSERT(out[0] == '"' && out[len - 1] == '"');
    TEST_ASSERT(strcmp(out + len - 4, "...\"") == 0);
    /* every quote inside is escaped: the value cannot end early */
    for (size_t i = 1; i + 4 < len; i += 2)
        TEST_ASSERT(out[i] == '\\' && out[i + 1] == '"');

    char small[8];
    TEST_ASSERT_STR(log_quote(small, sizeof(small), "a b c d e f"), "\"a ...\"");
    /* a long plain value is quoted and cut too */
    memset(big, 'a', sizeof(big) - 1);
    out = q(big);
    TEST_ASSERT(strlen(out) < LOG_VALUE_MAX && out[0] == '"');
    return 0;
}

/* What log_msg writes for a hostile value: one line, the value in one field. */
static int test_log_line_is_not_forged(void)
{
    char path[] = "/tmp/test_log_XXXXXX";
    int fd = mkstemp(path);
    TEST_ASSERT(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    log_msg(LOG_INFO, "signin", "user=%s remote=%s", log_value("x\" role=admin\nfake line"),
            log_value("127.0.0.1"));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char line[1024] = {0};
    lseek(fd, 0, SEEK_SET);
    ssize_t n = read(fd, line, sizeof(line) - 1);
    close(fd);
    unlink(path);
    TEST_ASSERT(n > 0);
    TEST_ASSERT(strchr(line, '\n') == line + n - 1);
    TEST_ASSERT(
        strstr(line, " info signin user=\"x\\\" role=admin\\nfake line\" remote=127.0.0.1\n"));
    return 0;
}

TEST_MAIN(TEST_CASE(test_quote_plain_and_escaped), TEST_CASE(test_quote_cuts_to_fit),
          TEST_CASE(test_log_line_is_not_forged))

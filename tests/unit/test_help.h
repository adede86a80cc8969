/* test_help: the tiny unit-test runner every tests/unit/test_<module>.c uses.
 * TEST_ASSERT prints file:line and fails the current test; main() runs them all. */
#ifndef TURBOCHAT_TEST_HELP_H
#define TURBOCHAT_TEST_HELP_H

#include <stdio.h>
#include <string.h>

typedef int (*test_fn)(void);

struct test_case {
    const char *name;
    test_fn fn;
};

#define TEST_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);           \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#define TEST_ASSERT_STR(actual, expected)                                                          \
    do {                                                                                           \
        const char *test_a_ = (actual), *test_e_ = (expected);                                     \
        if (test_a_ == NULL || test_e_ == NULL || strcmp(test_a_, test_e_) != 0) {                 \
            fprintf(stderr, "%s:%d: expected \"%s\", got \"%s\"\n", __FILE__, __LINE__,            \
                    test_e_ ? test_e_ : "(null)", test_a_ ? test_a_ : "(null)");                   \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#define TEST_ASSERT_INT(actual, expected)                                                          \
    do {                                                                                           \
        long long test_a_ = (long long)(actual), test_e_ = (long long)(expected);                  \
        if (test_a_ != test_e_) {                                                                  \
            fprintf(stderr, "%s:%d: %s: expected %lld, got %lld\n", __FILE__, __LINE__, #actual,   \
                    test_e_, test_a_);                                                             \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* Run every case, or only the one named by argv[1] ("--single NAME" also works). */
static inline int test_run_all(const struct test_case *cases, size_t n, int argc, char **argv)
{
    const char *only = NULL;
    if (argc > 2 && strcmp(argv[1], "--single") == 0)
        only = argv[2];
    else if (argc > 1)
        only = argv[1];
    int failed = 0, ran = 0;
    for (size_t i = 0; i < n; i++) {
        if (only && strcmp(only, cases[i].name) != 0)
            continue;
        ran++;
        int rc = cases[i].fn();
        printf("[%s] %s\n", rc == 0 ? "ok" : "FAIL", cases[i].name);
        failed += rc != 0;
    }
    printf("%d passed, %d failed\n", ran - failed, failed);
    return failed || ran == 0 ? 1 : 0;
}

#define TEST_MAIN(...)                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        static const struct test_case cases[] = {__VA_ARGS__};                                     \
        return test_run_all(cases, sizeof(cases) / sizeof(cases[0]), argc, argv);                  \
    }

#define TEST_CASE(fn)                                                                              \
    {                                                                                              \
#fn, fn                                                                                    \
    }

#endif

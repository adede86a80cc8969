/* util: allocation that aborts on failure, clocks and monotonic timed waits,
 * UTF-8 checks and the project's error codes; helpers every module shares. */
#ifndef TURBOCHAT_UTIL_H
#define TURBOCHAT_UTIL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Project error codes beyond errno; actions return 0 or a negative code. */
#define TC_EUNAVAILABLE 1002 /* the broker cannot accept messages now */
#define TC_ESTORE 1003       /* SQLite failed; details are in the log */
#define TC_ECLAIMED 1004     /* another event took the event's claim: nothing was stored */

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Make room for one more element in the dynamic array ptr holding count of
 * cap elements: doubles cap (from 4) through xrealloc when it is full. */
#define UTIL_GROW(ptr, count, cap)                                                                 \
    do {                                                                                           \
        if ((count) == (cap)) {                                                                    \
            (cap) = (cap) ? (cap)*2 : 4;                                                           \
            (ptr) = xrealloc((ptr), (cap) * sizeof(*(ptr)));                                       \
        }                                                                                          \
    } while (0)

/* An intrusive FIFO of structs linked through their own pointer member
 * `link` (the struct may sit in several FIFOs through several members). */
#define UTIL_FIFO(type)                                                                            \
    struct {                                                                                       \
        type *head; /* oldest */                                                                   \
        type *tail; /* newest */                                                                   \
    }

/* Append item at the tail. */
#define UTIL_FIFO_PUSH(q, item, link)                                                              \
    do {                                                                                           \
        (item)->link = NULL;                                                                       \
        if ((q)->tail)                                                                             \
            (q)->tail->link = (item);                                                              \
        else                                                                                       \
            (q)->head = (item);                                                                    \
        (q)->tail = (item);                                                                        \
    } while (0)

/* Detach at most max items from the head: out gets them as a list ending in
 * NULL (NULL when q is empty), n their number. */
#define UTIL_FIFO_TAKE(q, max, link, out, n)                                                       \
    do {                                                                                           \
        __typeof__((q)->head) last_ = NULL;                                                        \
        (out) = (q)->head;                                                                         \
        (n) = 0;                                                                                   \
        for (__typeof__((q)->head) it_ = (q)->head; it_ && (size_t)(n) < (size_t)(max);            \
             it_ = it_->link, (n)++)                                                               \
            last_ = it_;                                                                           \
        if (last_) {                                                                               \
            (q)->head = last_->link;                                                               \
            if (!(q)->head)                                                                        \
                (q)->tail = NULL;                                                                  \
            last_->link = NULL;                                                                    \
        }                                                                                          \
    } while (0)

/* Allocate or abort with a log line; never return NULL. Free with free(). */
void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *ptr, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Wall-clock time in milliseconds since the Unix epoch. */
int64_t util_now_ms(void);
/* Monotonic time in nanoseconds, for durations. */
uint64_t util_mono_ns(void);
/* Monotonic time in milliseconds. */
int64_t util_mono_ms(void);

/* A condition variable whose timed waits use CLOCK_MONOTONIC. */
void util_cond_init_monotonic(pthread_cond_t *cond);
/* Wait on such a cond (lock held) for at most ms milliseconds. */
void util_cond_wait_ms(pthread_cond_t *cond, pthread_mutex_t *lock, int64_t ms);

/* True when buf[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). */
bool util_utf8_is_valid(const char *buf, size_t len);
/* Number of code points in valid UTF-8. */
size_t util_utf8_count(const char *buf, size_t len);

/* Format a reason for a person into err (err may be NULL or errlen 0: nothing). */
void util_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Constant-time comparison of two byte strings of possibly different length. */
bool util_secret_equals(const char *a, size_t alen, const char *b, size_t blen);

/* Parse a whole decimal string into [min, max]; 0 or -EINVAL / -ERANGE. */
int util_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Growable byte buffer; init/dispose, the caller embeds it. */
struct util_buf {
    char *data; /* NUL-terminated while len < cap */
    size_t len;
    size_t cap;
};
void util_buf_init(struct util_buf *b);
void util_buf_dispose(struct util_buf *b);
void util_buf_append(struct util_buf *b, const void *data, size_t len);
void util_buf_appendf(struct util_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hand the data to the caller (free() it) and reset the buffer. */
char *util_buf_take(struct util_buf *b, size_t *len);

/* Split an "http://host:port[/]" URL (an IPv6 host in brackets) into host
 * (without brackets, hostlen bytes) and port. 0, or -EINVAL with the reason
 * in why. */
int util_parse_http_url(const char *url, char *host, size_t hostlen, int *port, char *why,
                        size_t whylen);

#endif

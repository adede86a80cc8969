/* log: leveled, one line per event on stderr with an ISO-8601 UTC timestamp.
 * Lines are written with one fputs under the stdio lock, so threads never interleave. */
#define _GNU_SOURCE
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int log_threshold = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_parse_level(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
    return level >= LOG_DEBUG && level <= LOG_ERROR ? level_names[level] : "info";
}

void log_set_level(enum log_level level)
{
    log_threshold = level;
}

static bool is_bare(unsigned char c)
{
    return c > 0x20 && c < 0x7F && c != '"' && c != '=' && c != '\\';
}

/* Length of the UTF-8 sequence at s (at most n bytes) and its code point;
 * 0 when s does not start a valid, shortest-form sequence. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (len == 0 || len > n || (s[0] >= 0xF5))
        return 0;
    uint32_t v = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* Code points that would hide or reorder the text around them in a log. */
static bool is_hiding(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9F) || (cp >= 0x200B && cp <= 0x200F) ||
           (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x206F) || cp == 0xFEFF;
}

const char *log_quote(char *buf, size_t size, const char *value)
{
    const unsigned char *v = (const unsigned char *)(value ? value : "");
    size_t n = strlen((const char *)v);
    bool bare = n > 0 && n < size;
    for (size_t i = 0; bare && i < n; i++)
        bare = is_bare(v[i]);
    if (bare) {
        memcpy(buf, v, n + 1);
        return buf;
    }
    size_t o = 0, limit = size - 5; /* room for ...", the quote and NUL */
    buf[o++] = '"';
    for (size_t i = 0; i < n;) {
        char esc[16];
        size_t step = 1, elen;
        uint32_t cp;
        unsigned char c = v[i];
        if (c == '"' || c == '\\')
            elen = (size_t)snprintf(esc, sizeof(esc), "\\%c", c);
        else if (c == '\n')
            elen = (size_t)snprintf(esc, sizeof(esc), "\\n");
        else if (c == '\r')
            elen = (size_t)snprintf(esc, sizeof(esc), "\\r");
        else if (c == '\t')
            elen = (size_t)snprintf(esc, sizeof(esc), "\\t");
        else if (c < 0x20 || c == 0x7F)
            elen = (size_t)snprintf(esc, sizeof(esc), "\\x%02X", c);
        else if (c < 0x80) {
            esc[0] = (char)c;
            elen = 1;
        } else if ((step = utf8_decode(v + i, n - i, &cp)) == 0) {
            step = 1;
            elen = (size_t)snprintf(esc, sizeof(esc), "\\x%02X", c);
        } else if (is_hiding(cp)) {
            elen = (size_t)snprintf(esc, sizeof(esc), "\\u%04X", (unsigned)cp);
        } else {
            memcpy(esc, v + i, step);
            elen = step;
        }
        if (o + elen > limit) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        memcpy(buf + o, esc, elen);
        o += elen;
        i += step;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

void log_write(enum log_level level, const char *event, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, log_level_name(level), event);
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    /* Fields may carry client text: one event must stay one line. */
    for (size_t i = (size_t)n; i < len; i++) {
        if ((unsigned char)line[i] < 0x20)
            line[i] = '?';
    }
    line[len++] = '\n';
    line[len] = '\0';
    fputs(line, stderr);
}

/* log: one line per event on stderr, "ts level event key=value ...".
 * The level is checked before anything is formatted. Every value that did
 * not come from our own code goes through log_value(), so that no client,
 * peer or file can forge a field or a line. */
#ifndef TURBOCHAT_LOG_H
#define TURBOCHAT_LOG_H

#include <stdbool.h>
#include <stddef.h>

#define LOG_VALUE_MAX 256 /* bytes of one quoted value, quotes and NUL included */

enum log_level {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
};

/* The current threshold; set once at start-up, read by every thread. */
extern int log_threshold;

/* Parse "debug|info|warn|error"; 0 or -EINVAL. */
int log_parse_level(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);
void log_set_level(enum log_level level);

/* Write one line: timestamp, level, event name, then the formatted fields
 * (by convention "key=value key=value"). Thread-safe. */
void log_write(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* value as one field value, written into buf (size >= 8): as is when it is
 * printable ASCII without space, '"', '=' or '\\'; else in double quotes with
 * '"' and '\\' escaped, control characters as \n \r \t or \xHH, bytes that
 * are not UTF-8 as \xHH, and the characters that hide or reorder text (C1,
 * zero-width, bidi controls, line separators, BOM) as \uHHHH; cut to fit with
 * "..." before the closing quote. NULL is "". Returns buf. Any thread. */
const char *log_quote(char *buf, size_t size, const char *value);

/* log_quote into a buffer that lives until the end of the log_msg it is an
 * argument of: log_msg(LOG_INFO, "signin", "user=%s", log_value(name)). */
#define log_value(s) log_quote((char[LOG_VALUE_MAX]){0}, LOG_VALUE_MAX, (s))

#define log_msg(level, event, ...)                                                                 \
    do {                                                                                           \
        if ((int)(level) >= log_threshold)                                                         \
            log_write((level), (event), __VA_ARGS__);                                              \
    } while (0)

#endif

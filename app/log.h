/* log: one line per event on stderr, "ts level event key=value ...".
 * The level is checked before anything is formatted. */
#ifndef TURBOCHAT_LOG_H
#define TURBOCHAT_LOG_H

#include <stdbool.h>

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

#define log_msg(level, event, ...)                                                                 \
    do {                                                                                           \
        if ((int)(level) >= log_threshold)                                                         \
            log_write((level), (event), __VA_ARGS__);                                              \
    } while (0)

#endif

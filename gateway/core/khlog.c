/* khlog.c: JSON-lines operational log on stderr. Thread-safe: each line is
 * formatted into a local buffer and written with one write(2). */
#include "khlog.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* read by every thread, changed by a reload (SIGHUP) */
static atomic_int log_min = KH_LOG_INFO;
static const char *log_component = "kakehashi";
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void kh_log_set_level(kh_log_level min)
{
    log_min = min;
}

void kh_log_set_component(const char *name)
{
    log_component = name;
}

/* Appends raw text to buf[*pos..cap), keeping room for the closing "}\n". */
static void append_raw(char *buf, size_t cap, size_t *pos, const char *s)
{
    for (; *s && *pos + 4 < cap; s++)
        buf[(*pos)++] = *s;
}

/* Appends s as JSON string content, escaping quotes, backslashes and controls. */
static void append_json(char *buf, size_t cap, size_t *pos, const char *s)
{
    for (; *s && *pos + 10 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[(*pos)++] = '\\';
            buf[(*pos)++] = (char)c;
        } else if (c < 0x20) {
            *pos += (size_t)snprintf(buf + *pos, cap - *pos, "\\u%04x", c);
        } else {
            buf[(*pos)++] = (char)c;
        }
    }
}

void kh_log(kh_log_level lvl, const char *sub, const char *fmt, ...)
{
    if ((int)lvl < log_min)
        return;
    char msg[1024], head[96], line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(head, sizeof head,
             "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"comp\":\"",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             ts.tv_nsec / 1000000, level_names[lvl]);
    size_t pos = 0;
    append_raw(line, sizeof line, &pos, head);
    append_json(line, sizeof line, &pos, log_component);
    append_raw(line, sizeof line, &pos, "\",\"sub\":\"");
    append_json(line, sizeof line, &pos, sub);
    append_raw(line, sizeof line, &pos, "\",\"msg\":\"");
    append_json(line, sizeof line, &pos, msg);
    line[pos++] = '"';
    line[pos++] = '}';
    line[pos++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, pos);
    (void)w;
}

long long kh_mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/*
 * log: leveled logging to stderr.
 *
 * On a terminal each line starts with a time and a level word; otherwise with
 * a syslog priority prefix ("<4>") that journald understands. A message logged
 * again and again from one call site is rate-limited per second, and the
 * number suppressed is reported when the site speaks next.
 */
#ifndef VROOM_NODE_LOG_H
#define VROOM_NODE_LOG_H

#include <stdio.h>

enum log_level { LOG_ERR = 3, LOG_WARN = 4, LOG_NOTICE = 5, LOG_INFO = 6, LOG_DEBUG = 7 };

struct vlog;

/* A logger writing to out at level and above (more important). */
struct vlog *vlog_new(FILE *out, int level);
void vlog_free(struct vlog *l);
void vlog_set_level(struct vlog *l, int level);
int vlog_level(const struct vlog *l);
/* "error", "warn", "notice", "info", "debug" to a level; -1 if none. */
int vlog_parse_level(const char *name);
const char *vlog_level_name(int level);

/* Logs one line; `fmt` identifies the call site for rate limiting. */
void vlog(struct vlog *l, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

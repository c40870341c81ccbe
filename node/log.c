#include "node/log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SITES	  32 /* call sites tracked for rate limiting */
#define PER_SEC	  20 /* lines per site per second before suppression */

struct site {
	const char *fmt; /* identity of the call site */
	time_t second;
	unsigned lines;
	unsigned long suppressed;
};

struct vlog {
	FILE *out;
	int level;
	int tty;
	time_t swept; /* the second whose suppressed counts were last reported */
	struct site sites[SITES];
	unsigned next; /* round-robin victim when all sites are taken */
};

static const char *names[] = {"emerg", "alert", "crit", "error", "warn", "notice", "info", "debug"};

struct vlog *vlog_new(FILE *out, int level)
{
	struct vlog *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->out = out;
	l->level = level;
	l->tty = isatty(fileno(out));
	return l;
}

static void prefix(struct vlog *l, int level);

/* Reports what a site suppressed and forgets it. */
static void report(struct vlog *l, struct site *s)
{
	if (s->suppressed) {
		prefix(l, LOG_WARN);
		fprintf(l->out, "%lu similar messages suppressed: \"%s\"\n", s->suppressed,
			s->fmt);
		fflush(l->out);
	}
	s->suppressed = 0;
}

void vlog_free(struct vlog *l)
{
	if (!l)
		return;
	for (unsigned i = 0; i < SITES; i++)
		if (l->sites[i].fmt)
			report(l, &l->sites[i]);
	free(l);
}

void vlog_set_level(struct vlog *l, int level)
{
	l->level = level;
}

int vlog_level(const struct vlog *l)
{
	return l->level;
}

int vlog_parse_level(const char *name)
{
	for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	if (strcmp(name, "warning") == 0)
		return LOG_WARN;
	return -1;
}

const char *vlog_level_name(int level)
{
	return level >= 0 && level <= LOG_DEBUG ? names[level] : "?";
}

static struct site *site_of(struct vlog *l, const char *fmt)
{
	for (unsigned i = 0; i < SITES; i++)
		if (l->sites[i].fmt == fmt)
			return &l->sites[i];
	struct site *s = &l->sites[l->next++ % SITES];
	if (s->fmt)
		report(l, s);
	memset(s, 0, sizeof(*s));
	s->fmt = fmt;
	return s;
}

static void prefix(struct vlog *l, int level)
{
	if (l->tty) {
		char ts[32];
		struct timespec now;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &now);
		localtime_r(&now.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
		fprintf(l->out, "%s.%03ld %-6s ", ts, now.tv_nsec / 1000000, names[level]);
	} else {
		fprintf(l->out, "<%d>", level);
	}
}

void vlog(struct vlog *l, int level, const char *fmt, ...)
{
	if (level > l->level)
		return;
	time_t now = time(NULL);
	if (l->swept != now) {
		/* A new second: report what every site suppressed before it,
		 * not only this one (a flood may have stopped). */
		l->swept = now;
		for (unsigned i = 0; i < SITES; i++)
			if (l->sites[i].suppressed && l->sites[i].second != now)
				report(l, &l->sites[i]);
	}
	struct site *s = site_of(l, fmt);
	if (s->second != now) {
		report(l, s);
		s->second = now;
		s->lines = 0;
	}
	if (++s->lines > PER_SEC) {
		s->suppressed++;
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	prefix(l, level);
	vfprintf(l->out, fmt, ap);
	fputc('\n', l->out);
	va_end(ap);
	fflush(l->out);
}

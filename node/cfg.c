#include "node/cfg.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "node/log.h"
#include "stream/addr.h"
#include "stream/wire.h"

enum { T_ADDR, T_STATS, T_BOOL, T_LEVEL, T_SIZE, T_COUNT, T_SECS, T_STR };

#define F(field) offsetof(struct cfg, field), sizeof(((struct cfg *)0)->field)

/*
 * Every setting, in --help order. The flag is the key with '-' for '_'.
 * live: SIGHUP applies a new value while running. The others are bound at
 * start: sockets (listen, stats, insecure) and what the node announces in
 * WELCOME and sizes its decoder with (frame_max, chunk_max, stream_window).
 */
static const struct cfg_opt opts[] = {
	{"node", "listen", T_ADDR, F(listen), 0, "HOST:PORT",
	 "client listener (port 0 picks a free one)"},
	{"node", "insecure", T_BOOL, F(insecure), 0, NULL,
	 "allow a non-loopback client listener or stats port without tokens"},
	{"node", "stats", T_STATS, F(stats), 0, "HOST:PORT",
	 "stats port (HTTP): HOST:PORT, auto (127.0.0.1, client port + 2) or off"},
	{"node", "log_level", T_LEVEL, F(log_level), 1, "LEVEL",
	 "error, warn, notice, info or debug"},
	{"node", "drain_timeout", T_SECS, F(drain_timeout_ms), 1, "SECONDS",
	 "on SIGTERM, longest wait for clients to take their last bytes"},
	{"limits", "frame_max", T_SIZE, F(frame_max), 0, "BYTES", "largest frame accepted"},
	{"limits", "max_pending", T_SIZE, F(max_pending), 1, "BYTES",
	 "pending output per connection before it is dropped as a slow consumer"},
	{"limits", "max_conns", T_COUNT, F(max_conns), 1, "N", "client connections"},
	{"limits", "max_subs", T_COUNT, F(max_subs), 1, "N", "subscriptions per connection"},
	{"limits", "max_grants", T_COUNT, F(max_grants), 1, "N", "grants per room"},
	{"limits", "max_streams", T_COUNT, F(max_streams), 1, "N",
	 "streams a connection may send at once"},
	{"limits", "chunk_max", T_SIZE, F(chunk_max), 0, "BYTES", "largest stream chunk"},
	{"limits", "stream_window", T_SIZE, F(stream_window), 0, "BYTES",
	 "bytes of one stream the node holds"},
	/* abuse limits (docs/protocol.md "Limits") */
	{"limits", "max_rooms", T_COUNT, F(max_rooms), 1, "N", "rooms on the node"},
	{"limits", "max_rooms_per_identity", T_COUNT, F(max_rooms_per_identity), 1, "N",
	 "rooms one identity may own"},
	{"limits", "max_in_rate", T_SIZE, F(max_in_rate), 0, "BYTES",
	 "inbound bytes per second per connection (a token bucket); 0: no limit"},
	{"limits", "max_hello_failures", T_COUNT, F(max_hello_failures), 1, "N",
	 "failed HELLOs per source address (IPv6: per /64) per minute before its new "
	 "connections are refused; 0: no limit"},
	{"timeouts", "room_idle_timeout", T_SECS, F(room_idle_ms), 1, "SECONDS",
	 "destroy rooms with no data for this long"},
	{"timeouts", "hello_timeout", T_SECS, F(hello_timeout_ms), 1, "SECONDS",
	 "close connections without HELLO this long after accept"},
	{"timeouts", "stream_idle_timeout", T_SECS, F(stream_idle_ms), 1, "SECONDS",
	 "end streams whose sender is silent this long"},
	{"timeouts", "slow_timeout", T_SECS, F(slow_timeout_ms), 1, "SECONDS",
	 "drop receivers whose output makes no progress this long"},
	/* The cluster: none of it changes while running. */
	{"cluster", "cluster", T_STR, F(cluster), 0, "IP:PORT",
	 "this node's cluster address (udp+tcp); empty: a single node"},
	{"cluster", "seeds", T_STR, F(seeds), 0, "IP:PORT,...",
	 "members to join through (empty: found a new cluster)"},
	{"cluster", "cluster_key", T_STR, F(cluster_key), 0, "FILE",
	 "the cluster key (make one with 'vroom cluster keygen FILE')"},
	{"cluster", "node_name", T_STR, F(node_name), 0, "NAME",
	 "this node's unique name (default: its cluster address)"},
	{"cluster", "replicas", T_COUNT, F(replicas), 0, "N",
	 "nodes per room: its relay and replicas - 1 ordered backups"},
	{"cluster", "probe_interval", T_SECS, F(probe_interval_ms), 0, "SECONDS",
	 "membership: one probe per period"},
	{"cluster", "probe_timeout", T_SECS, F(probe_timeout_ms), 0, "SECONDS",
	 "membership: a direct probe's ack deadline, then indirect probes"},
	{"cluster", "suspicion_timeout", T_SECS, F(suspicion_ms), 0, "SECONDS",
	 "membership: a suspect member is declared dead after this"},
	{"cluster", "sync_interval", T_SECS, F(sync_interval_ms), 0, "SECONDS",
	 "membership: full state exchange with one member"},
	/* Tokens (docs/protocol.md "Tokens"): the file is re-read on every
	 * SIGHUP; a new path needs a restart. */
	{"auth", "trusted_keys", T_STR, F(trusted_keys), 0, "FILE",
	 "issuer public keys to trust, one base64 key per line (none: clients are "
	 "trusted for their identity and the node serves loopback only)"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

void cfg_defaults(struct cfg *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->listen, sizeof(c->listen), "%s", CFG_DEFAULT_LISTEN);
	snprintf(c->stats, sizeof(c->stats), "%s", CFG_DEFAULT_STATS);
	c->log_level = LOG_INFO;
	c->room_idle_ms = 300 * 1000;
	c->hello_timeout_ms = 5 * 1000;
	c->frame_max = WIRE_FRAME_MAX;
	c->max_pending = 8u << 20;
	c->max_conns = 10000;
	c->max_subs = 1024;
	c->max_grants = 256;
	c->max_streams = 64;
	c->chunk_max = 128u << 10;
	c->stream_window = 1u << 20;
	c->stream_idle_ms = 30 * 1000;
	c->slow_timeout_ms = 10 * 1000;
	c->drain_timeout_ms = 3 * 1000;
	c->max_rooms = 100000; /* tokens and abuse limits */
	c->max_rooms_per_identity = 1000;
	c->max_in_rate = 1u << 30;
	c->max_hello_failures = 60;
	c->replicas = 3;
	/* LAN defaults (cluster/memb.h): a crash is seen within 3 s on 10 nodes. */
	c->probe_interval_ms = 200;
	c->probe_timeout_ms = 80;
	c->suspicion_ms = 1000;
	c->sync_interval_ms = 2000;
}

int cfg_check(const struct cfg *c, char *why, size_t whylen)
{
	char host[256], addr[300];
	int port;
	if (addr_split(c->listen, "127.0.0.1", host, sizeof(host), &port) < 0) {
		snprintf(why, whylen, "listen '%s' is not HOST:PORT", c->listen);
		return -1;
	}
	if (cfg_stats_addr(c, addr, sizeof(addr), why, whylen) < 0)
		return -1;
	if (c->cluster[0]) {
		if (addr_split(c->cluster, "", host, sizeof(host), &port) < 0 || !host[0] ||
		    port == 0) {
			snprintf(why, whylen, "cluster '%s' is not IP:PORT with a port", c->cluster);
			return -1;
		}
		if (!c->cluster_key[0]) {
			snprintf(why, whylen, "a cluster needs cluster_key (make one with "
					      "'vroom cluster keygen FILE')");
			return -1;
		}
		if (c->probe_timeout_ms < 10 || c->probe_timeout_ms >= c->probe_interval_ms ||
		    c->suspicion_ms < c->probe_interval_ms || c->sync_interval_ms < 100) {
			snprintf(why, whylen, "membership timers: probe_timeout (at least 10 ms) must "
					      "be under probe_interval, suspicion_timeout at least "
					      "probe_interval, sync_interval at least 100 ms");
			return -1;
		}
		if (c->replicas < 1 || c->replicas > 16) {
			snprintf(why, whylen, "replicas must be between 1 and 16");
			return -1;
		}
	} else if (c->seeds[0] || c->cluster_key[0]) {
		snprintf(why, whylen, "seeds and cluster_key need cluster (this node's cluster address)");
		return -1;
	}
	if (c->room_idle_ms < 1000) {
		snprintf(why, whylen, "room_idle_timeout must be at least 1 second");
		return -1;
	}
	if (c->frame_max < WIRE_FRAME_MIN_MAX || c->frame_max > (64u << 20)) {
		snprintf(why, whylen, "frame_max must be between %u and %u bytes",
			 WIRE_FRAME_MIN_MAX, 64u << 20);
		return -1;
	}
	if (c->max_pending < 2 * (c->frame_max + WIRE_HDR)) {
		snprintf(why, whylen, "max_pending (%zu) must be at least twice frame_max (%zu)",
			 c->max_pending, c->frame_max);
		return -1;
	}
	if (c->hello_timeout_ms < 100) {
		snprintf(why, whylen, "hello_timeout must be at least 100 ms");
		return -1;
	}
	if (c->chunk_max < 1024 || c->chunk_max + 512 > c->frame_max) {
		snprintf(why, whylen, "chunk_max must be at least 1024 and 512 bytes under frame_max");
		return -1;
	}
	if (c->stream_window < c->chunk_max || c->stream_window > c->max_pending) {
		snprintf(why, whylen, "stream_window must be between chunk_max and max_pending");
		return -1;
	}
	if (c->stream_idle_ms < 100 || c->slow_timeout_ms < 100) {
		snprintf(why, whylen, "stream_idle_timeout and slow_timeout must be at least 100 ms");
		return -1;
	}
	if (c->drain_timeout_ms > 3600 * 1000) {
		snprintf(why, whylen, "drain_timeout must be at most an hour");
		return -1;
	}
	if (c->max_conns < 1 || c->max_subs < 1 || c->max_streams < 1) {
		snprintf(why, whylen, "max_conns, max_subs and max_streams must be at least 1");
		return -1;
	}
	/* tokens and abuse limits */
	if (c->max_rooms < 1 || c->max_rooms_per_identity < 1) {
		snprintf(why, whylen, "max_rooms and max_rooms_per_identity must be at least 1");
		return -1;
	}
	if (c->max_in_rate != 0 && (c->max_in_rate < 4096 || c->max_in_rate > (1ull << 40))) {
		snprintf(why, whylen, "max_in_rate must be 0 (no limit) or 4096 bytes to 1 TiB");
		return -1;
	}
	return 0;
}

int cfg_stats_addr(const struct cfg *c, char *out, size_t len, char *why, size_t whylen)
{
	char host[256];
	int port;
	if (strcmp(c->stats, "off") == 0) {
		snprintf(out, len, "%s", "");
		return 0;
	}
	if (strcmp(c->stats, "auto") != 0) {
		if (addr_split(c->stats, "127.0.0.1", host, sizeof(host), &port) < 0) {
			snprintf(why, whylen, "stats '%s' is not HOST:PORT, auto or off", c->stats);
			return -1;
		}
		snprintf(out, len, "%s", c->stats);
		return 0;
	}
	if (addr_split(c->listen, "127.0.0.1", host, sizeof(host), &port) < 0) {
		snprintf(why, whylen, "listen '%s' is not HOST:PORT", c->listen);
		return -1;
	}
	if (port > 65533) {
		snprintf(why, whylen, "stats = auto means the client port + 2, and %d + 2 is no "
			 "port: set stats to HOST:PORT", port);
		return -1;
	}
	snprintf(out, len, "127.0.0.1:%d", port ? port + 2 : 0);
	return 0;
}

const struct cfg_opt *cfg_opt_at(size_t i)
{
	return i < NOPTS ? &opts[i] : NULL;
}

const char *cfg_opt_flag(const struct cfg_opt *o, char *buf, size_t len)
{
	snprintf(buf, len, "%s", o->key);
	for (char *p = buf; *p; p++)
		if (*p == '_')
			*p = '-';
	return buf;
}

const struct cfg_opt *cfg_opt_by_flag(const char *flag)
{
	char buf[64];
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(cfg_opt_flag(&opts[i], buf, sizeof(buf)), flag) == 0)
			return &opts[i];
	return NULL;
}

/* ---------------------------------------------------------------- values */

static int parse_bool(const char *s, int *out)
{
	static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0)
			return *out = 1, 0;
		if (strcasecmp(s, no[i]) == 0)
			return *out = 0, 0;
	}
	return -1;
}

/* Digits, then an optional unit from units[] (matched whole, any case). */
struct unit {
	const char *name;
	double scale;
};

static int parse_scaled(const char *s, int fraction, const struct unit *units, double dflt,
			double *out)
{
	const char *p = s;
	while (isdigit((unsigned char)*p) || (fraction && *p == '.'))
		p++;
	if (p == s || !isdigit((unsigned char)s[0]))
		return -1;
	char num[64];
	if ((size_t)(p - s) >= sizeof(num))
		return -1;
	memcpy(num, s, (size_t)(p - s));
	num[p - s] = '\0';
	char *end;
	errno = 0;
	double v = strtod(num, &end);
	if (*end != '\0' || errno || !isfinite(v))
		return -1;
	double scale = dflt;
	if (*p) {
		scale = 0;
		for (const struct unit *u = units; u && u->name; u++)
			if (strcasecmp(p, u->name) == 0)
				scale = u->scale;
		if (scale == 0)
			return -1;
	}
	*out = v * scale;
	return 0;
}

static const struct unit size_units[] = {
	{"b", 1}, {"k", 1024.0}, {"kib", 1024.0}, {"m", 1048576.0}, {"mib", 1048576.0},
	{"g", 1073741824.0}, {"gib", 1073741824.0}, {NULL, 0},
};
static const struct unit time_units[] = {
	{"ms", 1}, {"s", 1000}, {"m", 60000}, {"min", 60000}, {"h", 3600000}, {NULL, 0},
};

static void put_u64(struct cfg *c, const struct cfg_opt *o, uint64_t v)
{
	char *p = (char *)c + o->off;
	if (o->size == sizeof(uint64_t)) {
		memcpy(p, &v, sizeof(v));
	} else {
		size_t z = (size_t)v;
		memcpy(p, &z, sizeof(z));
	}
}

static uint64_t get_u64(const struct cfg *c, const struct cfg_opt *o)
{
	const char *p = (const char *)c + o->off;
	if (o->size == sizeof(uint64_t)) {
		uint64_t v;
		memcpy(&v, p, sizeof(v));
		return v;
	}
	size_t z;
	memcpy(&z, p, sizeof(z));
	return z;
}

int cfg_set(struct cfg *c, const struct cfg_opt *o, const char *value, char *why, size_t whylen)
{
	char host[256];
	int port, b;
	double v;
	char *field = (char *)c + o->off;

	switch (o->type) {
	case T_ADDR:
	case T_STATS:
		if (strlen(value) >= o->size) {
			snprintf(why, whylen, "'%.40s...' is too long", value);
			return -1;
		}
		if (o->type == T_STATS && (strcmp(value, "auto") == 0 || strcmp(value, "off") == 0)) {
			memcpy(field, value, strlen(value) + 1);
			return 0;
		}
		if (addr_split(value, "127.0.0.1", host, sizeof(host), &port) < 0) {
			snprintf(why, whylen, "'%s' is not HOST:PORT (a port from 0 to 65535; "
				 "an IPv6 host in brackets)%s",
				 value, o->type == T_STATS ? ", auto or off" : "");
			return -1;
		}
		memcpy(field, value, strlen(value) + 1);
		return 0;
	case T_STR:
		if (strlen(value) >= o->size) {
			snprintf(why, whylen, "'%.40s...' is too long", value);
			return -1;
		}
		memcpy(field, value, strlen(value) + 1);
		return 0;
	case T_BOOL:
		if (parse_bool(value, &b) < 0) {
			snprintf(why, whylen, "'%s' is not true or false (yes/no, on/off, 1/0)", value);
			return -1;
		}
		memcpy(field, &b, sizeof(b));
		return 0;
	case T_LEVEL:
		if ((b = vlog_parse_level(value)) < 0) {
			snprintf(why, whylen, "'%s' is not one of error, warn, notice, info, debug",
				 value);
			return -1;
		}
		memcpy(field, &b, sizeof(b));
		return 0;
	case T_SIZE:
		if (parse_scaled(value, 0, size_units, 1, &v) < 0 || v > 1e15) {
			snprintf(why, whylen, "'%s' is not a size in bytes (digits and an optional "
				 "K, KiB, M, MiB, G or GiB)", value);
			return -1;
		}
		put_u64(c, o, (uint64_t)v);
		return 0;
	case T_COUNT:
		if (parse_scaled(value, 0, NULL, 1, &v) < 0 || v > 1e9) {
			snprintf(why, whylen, "'%s' is not a whole number up to 1000000000", value);
			return -1;
		}
		put_u64(c, o, (uint64_t)v);
		return 0;
	case T_SECS:
		if (parse_scaled(value, 1, time_units, 1000, &v) < 0 || v > 1e12) {
			snprintf(why, whylen, "'%s' is not a duration (seconds, or a number with "
				 "ms, s, m or h)", value);
			return -1;
		}
		put_u64(c, o, (uint64_t)llround(v));
		return 0;
	}
	snprintf(why, whylen, "setting of unknown type");
	return -1;
}

const char *cfg_format(const struct cfg *c, const struct cfg_opt *o, char *buf, size_t len)
{
	const char *field = (const char *)c + o->off;
	uint64_t v;
	int i;
	switch (o->type) {
	case T_ADDR:
	case T_STATS:
	case T_STR:
		snprintf(buf, len, "%s", field);
		break;
	case T_BOOL:
		memcpy(&i, field, sizeof(i));
		snprintf(buf, len, "%s", i ? "true" : "false");
		break;
	case T_LEVEL:
		memcpy(&i, field, sizeof(i));
		snprintf(buf, len, "%s", vlog_level_name(i));
		break;
	case T_SIZE:
		v = get_u64(c, o);
		if (v && v % (1u << 30) == 0)
			snprintf(buf, len, "%lluGiB", (unsigned long long)(v >> 30));
		else if (v && v % (1u << 20) == 0)
			snprintf(buf, len, "%lluMiB", (unsigned long long)(v >> 20));
		else if (v && v % 1024 == 0)
			snprintf(buf, len, "%lluKiB", (unsigned long long)(v >> 10));
		else
			snprintf(buf, len, "%llu", (unsigned long long)v);
		break;
	case T_COUNT:
		snprintf(buf, len, "%llu", (unsigned long long)get_u64(c, o));
		break;
	case T_SECS:
		v = get_u64(c, o);
		if (v % 1000 == 0)
			snprintf(buf, len, "%llus", (unsigned long long)(v / 1000));
		else
			snprintf(buf, len, "%llums", (unsigned long long)v);
		break;
	default:
		snprintf(buf, len, "?");
	}
	return buf;
}

int cfg_differs(const struct cfg *a, const struct cfg *b, const struct cfg_opt *o)
{
	return memcmp((const char *)a + o->off, (const char *)b + o->off, o->size) != 0;
}

void cfg_print(FILE *f, const struct cfg *c)
{
	const char *section = NULL;
	char buf[300];
	for (size_t i = 0; i < NOPTS; i++) {
		if (!section || strcmp(section, opts[i].section) != 0) {
			section = opts[i].section;
			fprintf(f, "%s[%s]\n", i ? "\n" : "", section);
		}
		fprintf(f, "%s = %s\n", opts[i].key, cfg_format(c, &opts[i], buf, sizeof(buf)));
	}
}

int cfg_reload(struct cfg *cur, const struct cfg *next,
	       void (*each)(void *arg, const struct cfg_opt *o, const char *before,
			    const char *after, int live),
	       void *arg)
{
	char before[300], after[300];
	int changed = 0;
	for (size_t i = 0; i < NOPTS; i++) {
		const struct cfg_opt *o = &opts[i];
		if (!cfg_differs(cur, next, o))
			continue;
		changed++;
		cfg_format(cur, o, before, sizeof(before));
		cfg_format(next, o, after, sizeof(after));
		if (o->live)
			memcpy((char *)cur + o->off, (const char *)next + o->off, o->size);
		if (each)
			each(arg, o, before, after, o->live);
	}
	return changed;
}

/* ---------------------------------------------------------------- the file */

#define SEEN_WORDS ((sizeof(opts) / sizeof(opts[0]) + 31) / 32)

struct load {
	struct cfg *c;
	const char *path;
	FILE *f;
	int line;	     /* of the text the reader returned last */
	int bad_line;	     /* the last line the reader reported as malformed */
	int after_key;	     /* the last line set a key (an indented line continues it) */
	char bad_section[64]; /* an unknown section, reported once */
	int section_line;     /* where the current [section] began */
	int errors;
	unsigned seen_line[NOPTS]; /* where each key was set, for duplicates */
	cfg_err_fn err;
	void *arg;
};

static void load_err(struct load *l, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void load_err(struct load *l, int line, const char *fmt, ...)
{
	char msg[768], full[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(full, sizeof(full), "%s:%d: %s", l->path, line, msg);
	else
		snprintf(full, sizeof(full), "%s: %s", l->path, msg);
	l->errors++;
	if (l->err)
		l->err(l->arg, full);
}

/* Whether inih will take this line: blank, a comment, "[section]",
 * "key = value" (or "key: value"), or an indented line after a key (which
 * continues that key's value). inih reports only the first line it cannot
 * parse; checking here reports them all. */
static int line_ok(struct load *l, const char *s)
{
	const char *p = s;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	int indented = p > s && *p;
	if (!*p || *p == ';' || *p == '#')
		return 1;
	if (indented && l->after_key)
		return 1;
	if (*p == '[') {
		l->after_key = 0;
		l->section_line = l->line;
		return strchr(p, ']') != NULL;
	}
	l->after_key = strpbrk(p, "=:") != NULL;
	return l->after_key;
}

/* inih's reader: fgets that counts lines, so that the handler knows where
 * it is (Debian's libinih is built without INI_HANDLER_LINENO), and checks
 * each line's shape. A line longer than inih's buffer is an error: its rest
 * is skipped, not read as a line of its own. */
static char *reader(char *str, int num, void *stream)
{
	struct load *l = stream;
	if (!fgets(str, num, l->f))
		return NULL;
	l->line++;
	size_t len = strlen(str);
	if (len == (size_t)num - 1 && str[len - 1] != '\n' && !feof(l->f)) {
		int ch;
		while ((ch = fgetc(l->f)) != EOF && ch != '\n')
			;
		load_err(l, l->line, "line longer than %d bytes", num - 2);
		l->bad_line = l->line;
		l->after_key = 0;
		str[0] = '\n';
		str[1] = '\0';
	} else if (!line_ok(l, str)) {
		load_err(l, l->line, "not a [section], a 'key = value' line or a comment");
		l->bad_line = l->line;
	}
	return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct load *l = user;
	char why[512];
	const struct cfg_opt *o = NULL, *elsewhere = NULL;
	int known_section = 0;
	for (size_t i = 0; i < NOPTS; i++) {
		if (strcmp(opts[i].section, section) == 0) {
			known_section = 1;
			if (strcmp(opts[i].key, name) == 0)
				o = &opts[i];
		} else if (strcmp(opts[i].key, name) == 0) {
			elsewhere = &opts[i];
		}
	}
	if (!o) {
		if (section[0] == '\0')
			load_err(l, l->line, "'%s' is outside any [section]%s%s%s", name,
				 elsewhere ? ": it belongs in [" : "",
				 elsewhere ? elsewhere->section : "", elsewhere ? "]" : "");
		else if (!known_section && strcmp(section, l->bad_section) != 0) {
			char known[256] = "";
			for (size_t i = 0; i < NOPTS; i++)
				if (i == 0 || strcmp(opts[i].section, opts[i - 1].section) != 0)
					snprintf(known + strlen(known), sizeof(known) - strlen(known),
						 "%s%s", i ? ", " : "", opts[i].section);
			load_err(l, l->section_line, "unknown section [%s] (known: %s)", section,
				 known);
			snprintf(l->bad_section, sizeof(l->bad_section), "%s", section);
		} else if (!known_section)
			; /* its keys are not reported one by one */
		else if (elsewhere)
			load_err(l, l->line, "'%s' belongs in [%s], not [%s]", name,
				 elsewhere->section, section);
		else
			load_err(l, l->line, "unknown key '%s' in [%s]", name, section);
		return 1; /* go on: report every problem */
	}
	size_t idx = (size_t)(o - opts);
	if (l->seen_line[idx]) {
		load_err(l, l->line, "[%s] %s is set again (first on line %u; an indented line "
			 "continues the line above)", section, name, l->seen_line[idx]);
		return 1;
	}
	l->seen_line[idx] = (unsigned)l->line;
	if (cfg_set(l->c, o, value, why, sizeof(why)) < 0)
		load_err(l, l->line, "[%s] %s: %s", section, name, why);
	return 1;
}

int cfg_load(struct cfg *c, const char *path, cfg_err_fn err, void *arg)
{
	struct load l = {.c = c, .path = path, .err = err, .arg = arg};
	l.f = fopen(path, "r");
	if (!l.f) {
		load_err(&l, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	int rc = ini_parse_stream(reader, &l, handler, &l);
	if (ferror(l.f))
		load_err(&l, 0, "cannot read: %s", strerror(errno));
	fclose(l.f);
	/* inih returns the first line it could not parse (the handler never
	 * fails, so it is a syntax error the reader has normally reported
	 * already) or -1/-2 for I/O or memory. */
	if (rc > 0 && !l.errors)
		load_err(&l, rc, "not a [section], a 'key = value' line or a comment");
	else if (rc < 0)
		load_err(&l, 0, "cannot parse: %s", rc == -2 ? "out of memory" : "read error");
	return l.errors ? -1 : 0;
}

#include "node/guard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>

#include "node/conn.h"
#include "node/node.h"
#include "stream/gate.h"
#include "stream/room.h"
#include "stream/wire.h"

#define KEYS_FILE_MAX (1u << 20) /* a keys file is a few kilobytes; refuse a huge one */

struct guard {
	struct node *n;
	int keyed; /* a keys file is configured */
	struct token_keys keys;
	struct quota_window *sources; /* failed HELLOs per source */
	struct quota_count *owners;   /* rooms per owner identity */
	struct ev_token_bucket_cfg *bucket;
};

/* Reads path into keys. 0, or -1 with why set. */
static int read_keys(const char *path, struct token_keys *keys, char *why, size_t whylen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(why, whylen, "trusted keys %s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	char *buf = malloc(KEYS_FILE_MAX + 1);
	size_t len = buf ? fread(buf, 1, KEYS_FILE_MAX + 1, f) : 0;
	int err = !buf || ferror(f);
	fclose(f);
	char what[160];
	int rc = -1;
	if (err)
		snprintf(why, whylen, "trusted keys %s: cannot read it", path);
	else if (len > KEYS_FILE_MAX)
		snprintf(why, whylen, "trusted keys %s: over %u bytes", path, KEYS_FILE_MAX);
	else if (token_keys_parse(keys, buf, len, what, sizeof(what)) < 0)
		snprintf(why, whylen, "trusted keys %s: %s", path, what);
	else if (keys->n == 0)
		snprintf(why, whylen, "trusted keys %s: no key in the file", path);
	else
		rc = 0;
	free(buf);
	return rc;
}

struct guard *guard_new(struct node *n, char *why, size_t whylen)
{
	const struct cfg *cfg = node_cfg(n);
	struct guard *g = calloc(1, sizeof(*g));
	if (!g) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	g->n = n;
	g->sources = quota_window_new(GUARD_SOURCES, GATE_HELLO_WINDOW_MS);
	g->owners = quota_count_new();
	if (!g->sources || !g->owners) {
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	if (cfg->trusted_keys[0]) {
		g->keyed = 1;
		if (read_keys(cfg->trusted_keys, &g->keys, why, whylen) < 0)
			goto fail;
		vlog(node_log(n), LOG_NOTICE, "trusted keys: %zu from %s; clients need tokens",
		     g->keys.n, cfg->trusted_keys);
	}
	if (cfg->max_in_rate) {
		struct gate_bucket b = gate_bucket_of(cfg->max_in_rate);
		struct timeval tick = {0, GATE_BUCKET_TICK_MS * 1000};
		g->bucket = ev_token_bucket_cfg_new(b.rate, b.burst, EV_RATE_LIMIT_MAX,
						    EV_RATE_LIMIT_MAX, &tick);
		if (!g->bucket) {
			snprintf(why, whylen, "cannot set up the max_in_rate bucket");
			goto fail;
		}
	}
	return g;
fail:
	guard_free(g);
	return NULL;
}

void guard_free(struct guard *g)
{
	if (!g)
		return;
	quota_window_free(g->sources);
	quota_count_free(g->owners);
	if (g->bucket)
		ev_token_bucket_cfg_free(g->bucket);
	free(g);
}

const struct token_keys *guard_keys(const struct guard *g)
{
	return g->keyed ? &g->keys : NULL;
}

int guard_reload(struct guard *g)
{
	const char *path = node_cfg(g->n)->trusted_keys;
	struct token_keys keys;
	char why[600];
	if (!g->keyed)
		return 0;
	if (read_keys(path, &keys, why, sizeof(why)) < 0) {
		vlog(node_log(g->n), LOG_ERR, "reload: %s; keeping the %zu keys in use", why,
		     g->keys.n);
		return -1;
	}
	g->keys = keys;
	vlog(node_log(g->n), LOG_NOTICE, "reload: trusted keys: %zu from %s", keys.n, path);
	return 0;
}

/* ---- sources ---- */

size_t guard_source(const struct sockaddr *sa, uint8_t key[QUOTA_WKEY_MAX])
{
	return gate_source(sa, key);
}

int guard_accept(struct guard *g, const uint8_t *src, size_t len, const char *peer)
{
	const struct cfg *cfg = node_cfg(g->n);
	uint64_t fails =
	    gate_hello_refused(g->sources, src, len, cfg->max_hello_failures, node_now_ms(g->n));
	if (!fails)
		return 0;
	struct node_counters *k = node_counters(g->n);
	k->hello_refused++;
	k->limits_hit++;
	vlog(node_log(g->n), LOG_WARN,
	     "refused %s: %llu failed HELLOs from its address within a minute (max_hello_failures %zu)",
	     peer, (unsigned long long)fails, cfg->max_hello_failures);
	return -1;
}

void guard_hello_failed(struct guard *g, const uint8_t *src, size_t len)
{
	node_counters(g->n)->hello_failures++;
	gate_hello_failed(g->sources, src, len, node_cfg(g->n)->max_hello_failures,
			  node_now_ms(g->n));
}

struct ev_token_bucket_cfg *guard_bucket(const struct guard *g)
{
	return g->bucket;
}

/* ---- HELLO ---- */

/* A client-chosen string made safe for one log line. */
static void printable(char *out, size_t cap, const char *p, size_t len)
{
	size_t j = 0;
	for (size_t i = 0; i < len && j + 4 < cap; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch < 0x20 || ch == 0x7f || ch == '\\') {
			j += (size_t)snprintf(out + j, cap - j, "\\x%02x", ch);
		} else {
			out[j++] = (char)ch;
		}
	}
	out[j] = '\0';
}

static int refuse(struct guard *g, struct conn *c, const struct wire_msg *m, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int refuse(struct guard *g, struct conn *c, const struct wire_msg *m, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	node_counters(g->n)->auth_failures++;
	vlog(node_log(g->n), LOG_INFO, "conn %llu %s: authentication failed: %s",
	     (unsigned long long)conn_id(c), conn_peer(c), why);
	/* One answer for every cause: the log says which. */
	conn_error(c, m->rid, WIRE_E_AUTH, "authentication failed");
	return -1;
}

int guard_hello(struct guard *g, struct conn *c, const struct wire_msg *m,
		struct token_claims *cl)
{
	const char *why;
	char claimed[4 * WIRE_IDENTITY_MAX + 8];
	if (m->nfields < 3)
		return refuse(g, c, m, "no token in HELLO");
	uint64_t now = node_now_ms(g->n) / 1000;
	const struct wire_str *t = &m->f[2].s;
	enum token_err e = token_verify((const uint8_t *)t->ptr, t->len, &g->keys, now, cl, &why);
	if (e == TOKEN_E_EXPIRED || e == TOKEN_E_NOT_YET_VALID)
		return refuse(g, c, m, "%s: token for '%s' valid from %llu to %llu, now %llu",
			      token_err_name(e), cl->identity, (unsigned long long)cl->iat,
			      (unsigned long long)cl->exp, (unsigned long long)now);
	if (e != TOKEN_OK)
		return refuse(g, c, m, "%s (%s)", token_err_name(e), why);
	const struct wire_str *id = &m->f[1].s;
	if (id->len && (id->len != cl->idlen || memcmp(id->ptr, cl->identity, id->len) != 0)) {
		printable(claimed, sizeof(claimed), id->ptr, id->len > 200 ? 200 : id->len);
		return refuse(g, c, m, "HELLO claims identity '%s' but the token is for '%s'",
			      claimed, cl->identity);
	}
	return 0;
}

void guard_admit(struct guard *g, struct conn *c, const struct token_claims *cl)
{
	uint64_t exp_ms = cl->exp <= UINT64_MAX / 1000 ? cl->exp * 1000 : 0;
	if (conn_set_token(c, cl->has_grants ? &cl->grants : NULL, exp_ms) < 0) {
		/* never serve a restricted token unrestricted */
		conn_close(c, WIRE_E_INTERNAL, 0, "out of memory keeping the token's grants");
		return;
	}
	vlog(node_log(g->n), LOG_DEBUG, "conn %llu %s: token for %s, expires %llu%s",
	     (unsigned long long)conn_id(c), conn_peer(c), cl->identity,
	     (unsigned long long)cl->exp, cl->has_grants ? ", with grants" : "");
}

/* ---- grants and rooms ---- */

static int allowed(const struct conn *c, const struct room *r, enum token_grant_kind kind)
{
	return gate_allowed(conn_grants(c), r, conn_identity(c), conn_identity_len(c), kind);
}

int guard_may(struct guard *g, struct conn *c, const struct room *r, enum token_grant_kind kind,
	      uint64_t rid)
{
	if (allowed(c, r, kind))
		return 1;
	node_counters(g->n)->grant_refusals++;
	conn_error(c, rid, WIRE_E_FORBIDDEN,
		   kind == TOKEN_SUB ? "this identity's token does not grant subscribing to the room"
				     : "this identity's token does not grant pushing to the room");
	return 0;
}

int guard_may_info(struct guard *g, struct conn *c, const struct room *r, uint64_t rid)
{
	if (allowed(c, r, TOKEN_SUB) || allowed(c, r, TOKEN_PUSH))
		return 1;
	node_counters(g->n)->grant_refusals++;
	conn_error(c, rid, WIRE_E_FORBIDDEN, "this identity's token does not grant the room");
	return 0;
}

int guard_may_route(struct guard *g, struct conn *c, const struct wire_msg *m)
{
	const struct token_grants *gr = conn_grants(c);
	if (!gr || !node_clus(g->n))
		return 1;
	if (gate_may_route(gr, m->type, &m->f[0].s, node_rooms(g->n)))
		return 1;
	if (m->type == WIRE_CREATE)
		return guard_may_create(g, c, m->rid); /* replies `forbidden` */
	node_counters(g->n)->grant_refusals++;
	conn_error(c, m->rid, WIRE_E_FORBIDDEN, "this identity's token does not grant the room");
	return 0;
}

int guard_may_create(struct guard *g, struct conn *c, uint64_t rid)
{
	const struct cfg *cfg = node_cfg(g->n);
	struct node_counters *k = node_counters(g->n);
	switch (gate_may_create(conn_grants(c), rooms_count(node_rooms(g->n)), cfg->max_rooms,
				quota_count_get(g->owners, conn_identity(c), conn_identity_len(c)),
				cfg->max_rooms_per_identity)) {
	case GATE_CREATE_OK:
		return 1;
	case GATE_CREATE_FORBIDDEN:
		k->grant_refusals++;
		conn_error(c, rid, WIRE_E_FORBIDDEN,
			   "this identity's token does not grant creating rooms");
		return 0;
	case GATE_CREATE_MAX_ROOMS:
		k->limit_rooms++;
		k->limits_hit++;
		vlog(node_log(g->n), LOG_WARN, "conn %llu %s (%s): CREATE refused: max_rooms (%zu)",
		     (unsigned long long)conn_id(c), conn_peer(c), conn_identity(c), cfg->max_rooms);
		conn_error(c, rid, WIRE_E_LIMIT, "the node holds as many rooms as it may (max_rooms)");
		return 0;
	case GATE_CREATE_MAX_OWNED:
		k->limit_owner++;
		k->limits_hit++;
		conn_error(c, rid, WIRE_E_LIMIT,
			   "this identity owns as many rooms as it may (max_rooms_per_identity)");
		return 0;
	}
	return 0;
}

void guard_room_added(struct guard *g, const struct room *r)
{
	const char *owner = room_owner(r);
	if (quota_count_add(g->owners, owner, strlen(owner), 1) < 0)
		vlog(node_log(g->n), LOG_ERR, "out of memory counting the rooms of %s", owner);
}

void guard_room_gone(struct guard *g, const struct room *r)
{
	const char *owner = room_owner(r);
	quota_count_add(g->owners, owner, strlen(owner), -1);
}

size_t guard_owned(const struct guard *g, const char *identity, size_t len)
{
	return quota_count_get(g->owners, identity, len);
}

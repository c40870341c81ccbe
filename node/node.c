#include "node/node.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/listener.h>
#include <event2/util.h>
#include <sodium.h>

#include "node/clus.h"
#include "node/conn.h"
#include "node/guard.h"
#include "node/mem.h"
#include "node/peer.h"
#include "node/park.h"
#include "node/repl.h"
#include "node/srepl.h"
#include "node/route.h"
#include "node/streams.h"
#include "stream/addr.h"
#include "stream/blob.h"
#include "stream/room.h"
#include "stream/strm.h"
#include "stream/wire.h"

#define TRIM_EVERY_MS	  10000
#define TRIM_QUIET_FRAMES 10000
#define SCRATCH_KEEP	  (64u << 10) /* a scratch buffer grown over this is freed when quiet */

struct node {
	struct event_base *base;
	struct cfg cfg;
	struct vlog *log;
	struct rooms *rooms;
	struct strms *strms;
	struct conns *conns;
	struct clus *clus;   /* NULL: a single node */
	struct route *route;
	struct repl *repl;
	struct srepl *srepl; /* byte streams' replicas */
	struct park *park;
	struct wire_dec *dec;
	struct wire_buf scratch;
	struct evconnlistener *lev;
	struct event *reaper; /* made active to run after the current loop turn */
	struct event *sweep;  /* idle-room expiry */
	struct event *drain;  /* shutdown progress */
	uint64_t drain_deadline;
	uint64_t trimmed_at, trim_frames; /* malloc_trim when quiet */
	int draining;
	uint64_t read_ns; /* start of the current read callback */
	char addr[80];	  /* the client listener's bound HOST:PORT */
	char id[17];
	struct node_counters k;
	struct guard *guard; /* tokens and abuse limits */
	struct stats *stats; /* the stats port, if any (borrowed: it registers itself) */
};

/* After a loop turn: stream windows that moved, then dead connections
 * (freeing one may release chunks and queue more credit, hence the loop). */
static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;
	struct strm *s;
	do {
		while ((s = strms_pop_due(n->strms)) != NULL) {
			streams_flush_due(n, s);
			strm_unref(s);
		}
		conns_reap(n->conns);
		route_flush(n);
		repl_flush_acks(n);
	} while (strms_due(n->strms));
}

static void kick_reaper(void *arg)
{
	node_schedule_reap(arg);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;
	struct room *r;
	uint64_t now = node_now_ms(n);
	while ((r = rooms_idle(n->rooms, now, n->cfg.room_idle_ms)) != NULL) {
		n->k.rooms_expired++;
		vlog(n->log, LOG_DEBUG, "room %s expired", room_id(r));
		node_room_close(n, r, "expired");
	}
	streams_sweep(n);
	if (n->clus) {
		route_sweep(n);
		park_sweep(n);
		repl_sweep(n);
	}
	/* Give freed memory back to the system (node/mem.h) when the node is
	 * quiet, at most every TRIM_EVERY_MS: after a burst (clients gone,
	 * rooms expired, tables shrunk) RSS follows the load down, not only
	 * up. Quiet: fewer than TRIM_QUIET_FRAMES frames came in since the
	 * last trim or, once one is put off, within the last tick. So it runs
	 * TRIM_EVERY_MS (one tick at most) after the load stops, then every
	 * TRIM_EVERY_MS while idle: under 1 ms on a settled heap, 10-20 ms on
	 * one a load left in pieces (node/mem.h; logged at debug). */
	if (now - n->trimmed_at >= TRIM_EVERY_MS) {
		if (n->k.frames_in - n->trim_frames < TRIM_QUIET_FRAMES) {
			uint64_t t0 = node_mono_ns();
			wire_buf_shrink(&n->scratch, SCRATCH_KEEP);
			if (n->clus)
				route_shrink(n, SCRATCH_KEEP);
			mem_give_back();
			n->trimmed_at = now;
			vlog(n->log, LOG_DEBUG, "gave freed memory back in %.1f ms",
			     (double)(node_mono_ns() - t0) / 1e6);
		}
		n->trim_frames = n->k.frames_in;
	}
}

struct node *node_new(struct event_base *base, const struct cfg *c, struct vlog *log,
		      const char **cause)
{
	struct node *n = calloc(1, sizeof(*n));
	if (!n) {
		*cause = "out of memory";
		return NULL;
	}
	n->base = base;
	n->cfg = *c;
	n->log = log;
	n->rooms = rooms_new(c->max_grants);
	n->strms = strms_new(kick_reaper, n);
	n->conns = conns_new();
	n->route = route_new(n);
	n->repl = repl_new();
	n->srepl = srepl_new(n->cfg.frame_max);
	n->park = park_new(c->frame_max);
	n->dec = wire_dec_new(c->frame_max);
	n->reaper = event_new(base, -1, 0, on_reap, n);
	n->sweep = event_new(base, -1, EV_PERSIST, on_sweep, n);
	wire_buf_init(&n->scratch);
	if (!n->rooms || !n->strms || !n->conns || !n->route || !n->repl || !n->srepl || !n->park ||
	    !n->dec || !n->reaper || !n->sweep) {
		*cause = "out of memory";
		node_free(n);
		return NULL;
	}
	unsigned char raw[8];
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(n->id, sizeof(n->id), raw, sizeof(raw));
	return n;
}

void node_free(struct node *n)
{
	if (!n)
		return;
	if (n->lev)
		evconnlistener_free(n->lev);
	conns_free(n->conns); /* first: it ends streams and subscriptions */
	guard_free(n->guard); /* after the connections reading through its bucket */
	route_free(n->route);
	repl_free(n->repl);
	srepl_free(n->srepl);
	park_free(n->park);
	clus_free(n->clus);
	strms_free(n->strms);
	rooms_free(n->rooms);
	wire_dec_free(n->dec);
	wire_buf_free(&n->scratch);
	if (n->reaper)
		event_free(n->reaper);
	if (n->sweep)
		event_free(n->sweep);
	if (n->drain)
		event_free(n->drain);
	free(n);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct node *n = arg;
	char host[INET6_ADDRSTRLEN] = "?", peer[64];
	int port = 0;
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)sa;
		evutil_inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
		evutil_inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(peer, sizeof(peer), "%s:%d", host, port);

	if (n->draining || conns_count(n->conns) >= n->cfg.max_conns) {
		/* A fresh socket's send buffer is empty: the short error
		 * frame fits without blocking. */
		struct wire_buf *b = node_scratch(n);
		wire_enc_error(b, 0, n->draining ? WIRE_E_SHUTDOWN : WIRE_E_LIMIT,
			       n->draining ? "node is shutting down"
					   : "too many connections (max_conns)");
		(void)send(fd, b->p, b->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		evutil_closesocket(fd);
		n->k.conns_rejected++;
		if (!n->draining) {
			n->k.limits_hit++;
			n->k.limit_conns++;
			vlog(n->log, LOG_WARN, "refused %s: max_conns (%zu) reached", peer,
			     n->cfg.max_conns);
		}
		return;
	}
	uint8_t src[QUOTA_WKEY_MAX];
	size_t srclen = guard_source(sa, src);
	if (guard_accept(n->guard, src, srclen, peer) < 0) {
		struct wire_buf *b = node_scratch(n);
		wire_enc_error(b, 0, WIRE_E_LIMIT,
			       "too many failed HELLOs from this address; try again in a minute "
			       "(max_hello_failures)");
		(void)send(fd, b->p, b->len, MSG_NOSIGNAL | MSG_DONTWAIT);
		evutil_closesocket(fd);
		n->k.conns_rejected++;
		return;
	}
	evutil_make_socket_nonblocking(fd);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* Keep unsent bytes in the node, where a push can pass stream chunks,
	 * rather than in the kernel, where it cannot. */
	int lowat = 128 << 10;
	setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
	struct conn *c = conn_new(n, fd, peer);
	if (!c) {
		vlog(n->log, LOG_ERR, "refused %s: out of memory", peer);
		return;
	}
	conn_set_source(c, src, srclen);
	n->k.conns_accepted++;
}

static void arm_sweep(struct node *n)
{
	uint64_t shortest = n->cfg.room_idle_ms < n->cfg.stream_idle_ms ? n->cfg.room_idle_ms
									: n->cfg.stream_idle_ms;
	uint64_t tick = shortest < 10000 ? 250 : 1000;
	struct timeval tv = {(time_t)(tick / 1000), (suseconds_t)(tick % 1000) * 1000};
	event_add(n->sweep, &tv);
}

static int is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return 0;
}

struct evutil_addrinfo *node_resolve_listen(const char *addr, const char *what, char *why,
					    size_t whylen)
{
	char host[256], portstr[8];
	int port;
	if (addr_split(addr, "127.0.0.1", host, sizeof(host), &port) < 0) {
		snprintf(why, whylen, "%s address '%s' is not HOST:PORT", what, addr);
		return NULL;
	}
	struct evutil_addrinfo hints = {0}, *ai = NULL;
	snprintf(portstr, sizeof(portstr), "%d", port);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_ADDRCONFIG;
	int rc = evutil_getaddrinfo(host, portstr, &hints, &ai);
	if (rc != 0 || !ai) {
		snprintf(why, whylen, "cannot resolve %s host '%s': %s", what, host,
			 evutil_gai_strerror(rc));
		return NULL;
	}
	return ai;
}

int node_start(struct node *n, char *why, size_t whylen)
{
	char host[256];
	if (!n->guard && !(n->guard = guard_new(n, why, whylen)))
		return -1;
	struct evutil_addrinfo *ai = node_resolve_listen(n->cfg.listen, "listen", why, whylen);
	if (!ai)
		return -1;
	if (addr_split(n->cfg.listen, "127.0.0.1", host, sizeof(host), &(int){0}) < 0)
		host[0] = '\0';
	if (!is_loopback(ai->ai_addr) && !n->cfg.insecure && !guard_keys(n->guard)) {
		snprintf(why, whylen,
			 "refusing to listen on %s: without trusted keys a node trusts the "
			 "identity each client claims, so it serves loopback only; pass "
			 "--trusted-keys FILE to require tokens, or --insecure to listen on %s "
			 "anyway",
			 n->cfg.listen, host);
		evutil_freeaddrinfo(ai);
		return -1;
	}
	n->lev = evconnlistener_new_bind(n->base, on_accept, n,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 512,
					 ai->ai_addr, (int)ai->ai_addrlen);
	evutil_freeaddrinfo(ai);
	if (!n->lev) {
		snprintf(why, whylen, "cannot listen on %s: %s", n->cfg.listen,
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return -1;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char shost[INET6_ADDRSTRLEN] = "?";
	int sport = 0;
	getsockname(evconnlistener_get_fd(n->lev), (struct sockaddr *)&ss, &sl);
	if (ss.ss_family == AF_INET) {
		evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, shost,
				 sizeof(shost));
		sport = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		evutil_inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, shost,
				 sizeof(shost));
		sport = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	snprintf(n->addr, sizeof(n->addr), ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", shost,
		 sport);
	/* Tests and scripts read this line to learn an ephemeral port. */
	vlog(n->log, LOG_NOTICE, "node %s listening on %s:%d (clients)", n->id, shost, sport);

	if (n->cfg.cluster[0]) {
		struct clus_cfg cc = {
			.addr = n->cfg.cluster,
			.seeds = n->cfg.seeds,
			.key_file = n->cfg.cluster_key,
			.name = n->cfg.node_name,
			.client_addr = n->addr,
			.replicas = (unsigned)n->cfg.replicas,
			.probe_interval_ms = n->cfg.probe_interval_ms,
			.probe_timeout_ms = n->cfg.probe_timeout_ms,
			.suspicion_ms = n->cfg.suspicion_ms,
			.sync_interval_ms = n->cfg.sync_interval_ms,
		};
		if (!(n->clus = clus_new(n, &cc, why, whylen)))
			return -1;
	}
	arm_sweep(n);
	return 0;
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
	struct node *n = arg;
	if (conns_all_dead(n->conns) || node_now_ms(n) >= n->drain_deadline) {
		vlog(n->log, LOG_NOTICE, "shutdown complete");
		event_base_loopexit(n->base, NULL);
	}
}

void node_shutdown(struct node *n)
{
	if (n->draining) {
		vlog(n->log, LOG_NOTICE, "second stop request: exiting now");
		event_base_loopbreak(n->base);
		return;
	}
	n->draining = 1;
	vlog(n->log, LOG_NOTICE, "shutting down: closing %zu connections",
	     conns_count(n->conns));
	if (n->clus)
		clus_leave(n->clus);
	if (n->lev)
		evconnlistener_disable(n->lev);
	conns_close_all(n->conns, WIRE_E_SHUTDOWN, "node is shutting down");
	n->drain_deadline = node_now_ms(n) + n->cfg.drain_timeout_ms;
	n->drain = event_new(n->base, -1, EV_PERSIST, on_drain, n);
	struct timeval tv = {0, 50 * 1000};
	event_add(n->drain, &tv);
}

struct event_base *node_base(struct node *n)
{
	return n->base;
}

const struct cfg *node_cfg(const struct node *n)
{
	return &n->cfg;
}

struct vlog *node_log(struct node *n)
{
	return n->log;
}

struct rooms *node_rooms(struct node *n)
{
	return n->rooms;
}

struct strms *node_strms(struct node *n)
{
	return n->strms;
}

struct conns *node_conns(struct node *n)
{
	return n->conns;
}

struct node_counters *node_counters(struct node *n)
{
	return &n->k;
}

const char *node_id(const struct node *n)
{
	return n->id;
}

struct wire_dec *node_decoder(struct node *n)
{
	return n->dec;
}

uint64_t node_now_ms(struct node *n)
{
	struct timeval tv;
	event_base_gettimeofday_cached(n->base, &tv);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

struct wire_buf *node_scratch(struct node *n)
{
	wire_buf_reset(&n->scratch);
	return &n->scratch;
}

void node_schedule_reap(struct node *n)
{
	event_active(n->reaper, 0, 0);
}

struct clus *node_clus(struct node *n)
{
	return n->clus;
}

struct route *node_route(struct node *n)
{
	return n->route;
}

struct park *node_park(struct node *n)
{
	return n->park;
}

struct srepl *node_srepl(struct node *n)
{
	return n->srepl;
}

struct repl *node_repl(struct node *n)
{
	return n->repl;
}

void node_set_stats(struct node *n, struct stats *s)
{
	n->stats = s;
}

struct stats *node_stats(struct node *n)
{
	return n->stats;
}

int node_send_blob(struct node *n, struct room_sub *s, struct blob *frame)
{
	void *who = room_sub_who(s);
	if (!who)
		return -1;
	if (room_sub_is_peer(s))
		return peer_send(who, blob_data(frame), blob_len(frame));
	return conn_send_blob(who, frame);
}

int node_send_bulk(struct node *n, struct room_sub *s, struct blob *frame)
{
	void *who = room_sub_who(s);
	if (!who)
		return -1;
	if (room_sub_is_peer(s))
		return peer_send(who, blob_data(frame), blob_len(frame));
	return conn_send_bulk(who, frame);
}

void node_room_close(struct node *n, struct room *r, const char *reason)
{
	repl_room_gone(n, r);
	if (room_streams(r))
		streams_room_closed(n, r);
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_ROOM_CLOSED, 0, 2);
	wire_pack_cstr(pk, room_id(r));
	wire_pack_cstr(pk, reason);
	wire_end(b, 0);
	struct blob *frame = blob_new(b->len);
	if (frame)
		memcpy(blob_data(frame), b->p, b->len);

	struct room_sub *s, *next;
	for (s = room_subs(r); s; s = next) {
		next = room_sub_next(s);
		void *to = room_sub_who(s);
		/* A slow consumer is dropped by conn_send_blob, and its
		 * subscription with it. */
		if (room_sub_is_peer(s)) {
			if (frame)
				peer_send(to, blob_data(frame), blob_len(frame));
			room_unsubscribe(s);
		} else if (!frame || conn_send_bulk(to, frame) == 0) {
			/* Behind the END frames of the room's streams. */
			conn_unsubscribe(to, s);
		}
	}
	blob_unref(frame);
	guard_room_gone(n->guard, r);
	rooms_destroy(n->rooms, r);
}

const char *node_addr(const struct node *n)
{
	return n->addr;
}

int node_draining(const struct node *n)
{
	return n->draining;
}

void node_reconfigure(struct node *n, const struct cfg *c)
{
	n->cfg = *c;
	vlog_set_level(n->log, c->log_level);
	rooms_set_max_grants(n->rooms, c->max_grants);
	arm_sweep(n); /* the tick follows the shorter idle timeout */
	node_reload_keys(n);
}

uint64_t node_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void node_mark_read(struct node *n)
{
	n->read_ns = node_mono_ns();
}

uint64_t node_read_ns(const struct node *n)
{
	return n->read_ns;
}

/* Coarse buckets: a hand-off takes microseconds; tens of milliseconds mean
 * a loop turn held up by a large fan-out or a busy machine. */
static const uint64_t lat_bounds_us[NODE_LAT_BUCKETS] = {
	5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 50000, 0,
};

uint64_t node_lat_bound_us(size_t i)
{
	return i < NODE_LAT_BUCKETS ? lat_bounds_us[i] : 0;
}

void node_latency_add(struct node *n, uint64_t ns)
{
	size_t i = 0;
	while (i < NODE_LAT_BUCKETS - 1 && ns > lat_bounds_us[i] * 1000)
		i++;
	n->k.lat_bucket[i]++;
	n->k.lat_count++;
	n->k.lat_sum_ns += ns;
}

/* ---- tokens and abuse limits ---- */

struct guard *node_guard(struct node *n)
{
	return n->guard;
}

int node_reload_keys(struct node *n)
{
	return guard_reload(n->guard);
}

#include "node/conn.h"

#include "node/bevio.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <sodium.h>

#include "node/guard.h"
#include "node/node.h"
#include "node/park.h"
#include "node/repl.h"
#include "node/ops.h"
#include "node/route.h"
#include "node/streams.h"
#include "stream/blob.h"
#include "stream/room.h"
#include "stream/smap.h"
#include "stream/wire.h"

#define LINGER_MS 2000 /* how long a closing connection may take to flush */
/* Stream chunks wait in the bulk queue and enter the output only while it
 * holds less than this: pushes and replies, which go straight to the
 * output, pass at most this much stream data. */
#define BULK_LOW (64u << 10)
/* Bytes per read and per write system call at most (see conn_new). */
#define MAX_READ (256u << 10)
#define MAX_WRITE (1u << 20)
/* A frame this short is copied into a receiver's output rather than
 * referenced: a reference costs a chain (a malloc and a free) per receiver
 * and an iovec per frame in writev, more than copying a few hundred bytes
 * next to the frames already there. The frame is still encoded once. A
 * stream chunk is always referenced: its release returns window credit. */
#define COPY_MAX 2048

enum conn_state { CONN_HELLO, CONN_READY, CONN_CLOSING, CONN_DEAD };

static const char *state_names[] = {"hello", "ready", "closing", "dead"};

/* A chunk or close of a stream sent through another node's relay, kept
 * until the relay says every receiver took it (credit's acked), so that a
 * new relay can be sent it again (node/srepl.h). */
struct kept {
	struct kept *next;
	uint64_t off, rid; /* a close: off is UINT64_MAX */
	size_t dlen, len;  /* the chunk's bytes (the frame's last), the frame's */
	uint8_t frame[];
};

/* A stream this client sends through another node's relay. */
struct rstream {
	char id[WIRE_STREAM_ID_MAX + 1];
	struct peer *p;	    /* NULL: its relay went, a new one has not spoken yet */
	uint64_t open_rid;  /* the OPEN's rid: an error to it means refused */
	uint64_t close_rid; /* 0 until its CLOSE is forwarded */
	uint64_t orphan_ms; /* since when p is NULL */
	struct kept *kept, *ktail;
	size_t kbytes;
	int unkept; /* past the bound: it cannot be sent again */
};

static void rstream_clear(struct rstream *r)
{
	struct kept *k;
	while ((k = r->kept) != NULL) {
		r->kept = k->next;
		free(k);
	}
	r->ktail = NULL;
	r->kbytes = 0;
}

struct conn {
	struct node *node;
	struct conns *set;
	uint64_t id;
	uint64_t sid;	   /* random: names the session across nodes */
	uint64_t push_key; /* names the publisher across sessions (0: sid); see conn.h */
	struct peer *proxy; /* set: a remote session relayed here over this link */
	int session_ended;  /* SESSION_END: its session is over, its streams end */
	enum conn_state state;
	struct bufferevent *bev;
	struct event *timer; /* HELLO deadline, then the linger deadline */
	char peer[64];
	char *identity;
	size_t idlen;
	struct room_sub **subs; /* at most cfg.max_subs */
	size_t nsubs, capsubs;
	struct strm **streams; /* at most cfg.max_streams */
	size_t nstreams;
	struct rstream *rstreams; /* at most cfg.max_streams */
	size_t nrstreams;
	struct peer **used; /* links that carried this session's requests */
	size_t nused;
	struct blob **bulk; /* stream chunks not yet in the output, oldest first */
	size_t bulk_head, bulk_len, bulk_cap, bulk_bytes;
	/* tokens and limits (node/guard.c) */
	struct token_grants *grants; /* the token's; NULL: unrestricted */
	uint64_t token_exp_ms;	     /* the session ends then (Unix ms); 0: never */
	uint8_t src[QUOTA_WKEY_MAX]; /* failed HELLOs count under this source */
	uint8_t srclen;
	TAILQ_ENTRY(conn) link; /* in set->live or set->dead */
};

struct conns {
	TAILQ_HEAD(, conn) live, dead;
	size_t nlive, nproxies;
	uint64_t next_id;
	struct smap *bysid; /* local client connections by session id */
};

/* Takes rstream i out (the last one moves into its place). */
static void rstream_del(struct conn *c, size_t i)
{
	rstream_clear(&c->rstreams[i]);
	c->rstreams[i] = c->rstreams[--c->nrstreams];
}

struct conns *conns_new(void)
{
	struct conns *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	TAILQ_INIT(&s->live);
	TAILQ_INIT(&s->dead);
	if (!(s->bysid = smap_new())) {
		free(s);
		return NULL;
	}
	return s;
}

static void conn_free(struct conn *c)
{
	if (!c->proxy)
		smap_del(c->set->bysid, &c->sid, sizeof(c->sid));
	if (c->timer)
		event_free(c->timer);
	if (c->bev)
		bufferevent_free(c->bev); /* closes the socket, unrefs queued blobs */
	free(c->subs);
	free(c->streams);
	while (c->nrstreams)
		rstream_del(c, c->nrstreams - 1);
	free(c->rstreams);
	free(c->used);
	for (size_t i = 0; i < c->bulk_len; i++)
		blob_unref(c->bulk[(c->bulk_head + i) % c->bulk_cap]);
	free(c->bulk);
	free(c->grants);
	free(c->identity);
	free(c);
}

/* Ends the connection's part in rooms and streams. A stream it sends
 * outlives it when its client may come back on another session and claim
 * it: a publisher key (HELLO's publisher id), a cluster (another node to
 * come back through), and the session not ended for good (SESSION_END). */
static void drop_subs(struct conn *c)
{
	int keep = c->push_key && !c->session_ended && node_clus(c->node);
	while (c->nstreams > 0) {
		struct strm *s = c->streams[c->nstreams - 1];
		if (keep)
			streams_sender_lost(c->node, s, c->push_key);
		else
			streams_sender_gone(c->node, s);
	}
	while (c->nsubs > 0)
		conn_unsubscribe(c, c->subs[c->nsubs - 1]);
}

void conns_free(struct conns *s)
{
	if (!s)
		return;
	struct conn *c;
	while ((c = TAILQ_FIRST(&s->live)) != NULL) {
		TAILQ_REMOVE(&s->live, c, link);
		c->session_ended = 1; /* the node stops: nobody claims */
		drop_subs(c);
		conn_free(c);
	}
	conns_reap(s);
	smap_free(s->bysid);
	free(s);
}

size_t conns_count(const struct conns *s)
{
	return s->nlive - s->nproxies;
}

struct conn *conns_find_sid(const struct conns *s, uint64_t sid)
{
	return smap_get(s->bysid, &sid, sizeof(sid));
}

static long rstream_index(const struct conn *c, const char *id, size_t len);

struct conn *conns_find_sender(const struct conns *s, uint64_t key, const char *id, size_t len)
{
	struct conn *c = conns_find_sid(s, key);
	if (c)
		return c;
	/* A key, not a session id: the client's session (maybe a new one)
	 * that sends the stream through another node. Rare (a takeover):
	 * a walk over the connections is enough. */
	TAILQ_FOREACH(c, &s->live, link)
		if (!c->proxy && c->push_key == key && rstream_index(c, id, len) >= 0)
			return c;
	return NULL;
}

void conns_forget_peer(struct conns *s, struct peer *p)
{
	struct conn *c, *next;
	for (c = TAILQ_FIRST(&s->live); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->proxy == p) {
			conn_close(c, 0, 0, NULL);
			continue;
		}
		for (size_t i = 0; i < c->nused;)
			if (c->used[i] == p)
				c->used[i] = c->used[--c->nused];
			else
				i++;
		/* Streams through that relay wait for a new one, which says
		 * where it takes them up (conn_rstream_resume). */
		for (size_t i = 0; i < c->nrstreams; i++)
			if (c->rstreams[i].p == p) {
				c->rstreams[i].p = NULL;
				c->rstreams[i].orphan_ms = node_now_ms(c->node);
			}
	}
}

void conns_rstreams_expire(struct conns *s, uint64_t now_ms, uint64_t max_ms,
			   void (*fn)(struct conn *c, const char *id, void *arg), void *arg)
{
	struct conn *c;
	TAILQ_FOREACH(c, &s->live, link) {
		for (size_t i = 0; i < c->nrstreams;) {
			struct rstream *r = &c->rstreams[i];
			if (r->p || now_ms - r->orphan_ms < max_ms) {
				i++;
				continue;
			}
			char id[WIRE_STREAM_ID_MAX + 1];
			memcpy(id, r->id, sizeof(id));
			rstream_del(c, i);
			fn(c, id, arg);
			i = 0; /* fn may have sent: start over */
		}
	}
}

void conns_reap(struct conns *s)
{
	struct conn *c;
	while ((c = TAILQ_FIRST(&s->dead)) != NULL) {
		TAILQ_REMOVE(&s->dead, c, link);
		conn_free(c);
	}
}

int conns_all_dead(const struct conns *s)
{
	return TAILQ_EMPTY(&s->live);
}

/* The one place a connection changes state. */
static void conn_set_state(struct conn *c, enum conn_state to, const char *why)
{
	assert(to > c->state || (to == CONN_DEAD && c->state != CONN_DEAD));
	vlog(node_log(c->node), LOG_DEBUG, "conn %llu %s: %s -> %s (%s)",
	     (unsigned long long)c->id, c->peer, state_names[c->state], state_names[to], why);
	if (to == CONN_DEAD) {
		TAILQ_REMOVE(&c->set->live, c, link);
		TAILQ_INSERT_TAIL(&c->set->dead, c, link);
		c->set->nlive--;
		if (c->proxy)
			c->set->nproxies--;
		node_schedule_reap(c->node);
	}
	c->state = to;
}

/* Ends the connection now, dropping any output not yet written. */
static void conn_kill(struct conn *c, const char *why)
{
	if (c->state == CONN_DEAD)
		return;
	drop_subs(c);
	park_conn_gone(c->node, c);
	repl_conn_gone(c->node, c);
	if (!c->proxy)
		route_conn_gone(c->node, c);
	else
		route_proxy_gone(c->node, c->proxy, c->sid);
	if (c->bev)
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	if (c->timer)
		event_del(c->timer);
	conn_set_state(c, CONN_DEAD, why);
}

void conns_close_all(struct conns *s, int code, const char *msg)
{
	struct conn *c, *next;
	for (c = TAILQ_FIRST(&s->live); c; c = next) {
		next = TAILQ_NEXT(c, link);
		/* A proxy's client is not going anywhere: its node will learn
		 * of this node's leave; only local clients are told. */
		conn_close(c, c->proxy ? 0 : code, 0, msg);
	}
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/*
 * libevent 2.1 reads at most 4096 bytes per callback (EVBUFFER_MAX_READ in
 * evbuffer_read, whatever bufferevent_set_max_single_read says), so a busy
 * publisher cost one loop turn, and one writev per subscriber, per 4 KiB of
 * pushes. This tops the input up with one readv of up to MAX_READ bytes into
 * space reserved in the input buffer, within the read high watermark and
 * the max_in_rate bucket (charged for what it reads). End of file and
 * errors are left for libevent's next read to report.
 */
static void read_more(struct conn *c, struct evbuffer *in)
{
	size_t have = evbuffer_get_length(in);
	size_t high = node_cfg(c->node)->frame_max + WIRE_HDR + 65536;
	if (have >= high)
		return;
	size_t want = high - have < MAX_READ ? high - have : MAX_READ;
	if (guard_bucket(node_guard(c->node))) {
		ev_ssize_t lim = bufferevent_get_read_limit(c->bev);
		if (lim <= 0)
			return;
		if ((size_t)lim < want)
			want = (size_t)lim;
	}
	size_t got = bevio_read_more(c->bev, want);
	if (got == 0)
		return;
	if (guard_bucket(node_guard(c->node)))
		bufferevent_decrement_read_limit(c->bev, (ev_ssize_t)got);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct node *n = c->node;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct node_counters *k = node_counters(n);
	struct wire_msg msg;

	/* A full 4 KiB read means more is likely waiting. */
	if (evbuffer_get_length(in) >= 4096 && (c->state == CONN_HELLO || c->state == CONN_READY))
		read_more(c, in);
	node_mark_read(n); /* the delivery latency starts here */
	while (c->state == CONN_HELLO || c->state == CONN_READY) {
		size_t avail = evbuffer_get_length(in);
		uint8_t hdr[WIRE_HDR];
		if (avail < WIRE_HDR)
			break;
		evbuffer_copyout(in, hdr, WIRE_HDR);
		uint32_t flen = be32(hdr);
		/* The prefix alone decides a too-large frame: nothing is
		 * pulled up or allocated for it. */
		size_t need = flen <= node_cfg(n)->frame_max ? WIRE_HDR + (size_t)flen : WIRE_HDR;
		if (avail < need)
			break;
		const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)need);
		size_t used;
		enum wire_status st = wire_parse(node_decoder(n), p, need, &msg, &used);
		if (st != WIRE_OK_) {
			const char *why;
			int code = wire_dec_error(node_decoder(n), &why);
			k->bad_frames++;
			if (code == WIRE_E_TOO_LARGE) {
				k->limit_frame++;
				k->limits_hit++;
			}
			vlog(node_log(n), LOG_INFO, "conn %llu %s: bad frame: %s",
			     (unsigned long long)c->id, c->peer, why);
			conn_close(c, code, 0, why);
			break;
		}
		k->frames_in++;
		k->bytes_in += used;
		ops_dispatch(n, c, &msg, p, used);
		evbuffer_drain(in, used);
	}
	/* max_in_rate: the bucket ran dry, so libevent holds reading back. */
	if (c->bev && guard_bucket(node_guard(n)) && bufferevent_get_read_limit(c->bev) <= 0)
		k->rate_limited++;
}

static void unref_blob(const void *data, size_t len, void *arg);

/* Moves queued stream chunks into the output while it is short. */
static void bulk_refill(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	while (c->bulk_len && evbuffer_get_length(out) < BULK_LOW) {
		struct blob *b = c->bulk[c->bulk_head];
		c->bulk_head = (c->bulk_head + 1) % c->bulk_cap;
		c->bulk_len--;
		c->bulk_bytes -= blob_len(b);
		/* The queue's reference passes to the output. */
		if (evbuffer_add_reference(out, blob_data(b), blob_len(b), unref_blob, b) < 0)
			blob_unref(b);
	}
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->state == CONN_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			conn_kill(c, "flushed");
		return;
	}
	bulk_refill(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what & BEV_EVENT_TIMEOUT) {
		node_counters(c->node)->slow_consumers++;
		vlog(node_log(c->node), LOG_WARN,
		     "conn %llu %s (%s): slow consumer: no write progress for %llu ms; disconnected",
		     (unsigned long long)c->id, c->peer, conn_identity(c),
		     (unsigned long long)node_cfg(c->node)->slow_timeout_ms);
		conn_kill(c, "slow consumer (stalled)");
	} else if (what & BEV_EVENT_EOF)
		conn_kill(c, "peer closed");
	else if (what & BEV_EVENT_ERROR)
		conn_kill(c, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void arm_expiry(struct conn *c, uint64_t now);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	if (c->state == CONN_HELLO) {
		node_counters(c->node)->hello_timeouts++;
		vlog(node_log(c->node), LOG_INFO, "conn %llu %s: no HELLO in time",
		     (unsigned long long)c->id, c->peer);
		conn_close(c, WIRE_E_TIMEOUT, 0, "no HELLO within the hello timeout");
	} else if (c->state == CONN_CLOSING) {
		conn_kill(c, "linger deadline");
	} else if (c->state == CONN_READY && c->token_exp_ms) {
		uint64_t now = node_now_ms(c->node);
		if (now < c->token_exp_ms) {
			arm_expiry(c, now);
			return;
		}
		node_counters(c->node)->tokens_expired++;
		vlog(node_log(c->node), LOG_INFO, "conn %llu %s (%s): token expired",
		     (unsigned long long)c->id, c->peer, conn_identity(c));
		conn_close(c, WIRE_E_AUTH, 0, "token expired");
	}
}

static void arm(struct conn *c, uint64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	event_add(c->timer, &tv);
}

struct conn *conn_new(struct node *n, evutil_socket_t fd, const char *peer)
{
	struct conns *s = node_conns(n);
	const struct cfg *cfg = node_cfg(n);
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->node = n;
	c->set = s;
	c->id = ++s->next_id;
	randombytes_buf(&c->sid, sizeof(c->sid));
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->bev = bufferevent_socket_new(node_base(n), fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(node_base(n), on_timer, c);
	if (!c->bev || !c->timer) {
		if (!c->bev)
			evutil_closesocket(fd);
		conn_free(c);
		return NULL;
	}
	if (smap_put(s->bysid, &c->sid, sizeof(c->sid), c) < 0) {
		conn_free(c);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&s->live, c, link);
	s->nlive++;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	/* Never buffer more than one largest frame plus a read's worth. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, cfg->frame_max + WIRE_HDR + 65536);
	/* on_write runs whenever the output drops under BULK_LOW. */
	bufferevent_setwatermark(c->bev, EV_WRITE, BULK_LOW, 0);
	/* libevent writes at most 16 KiB per call by default: a subscriber's
	 * output took four writevs per 64 KiB push. Larger calls batch more
	 * frames per system call. (Reads: 2.1 caps each at 4 KiB whatever
	 * this says; see read_more.) */
	bufferevent_set_max_single_read(c->bev, MAX_READ);
	bufferevent_set_max_single_write(c->bev, MAX_WRITE);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	struct timeval wt = {(time_t)(cfg->slow_timeout_ms / 1000),
			     (suseconds_t)(cfg->slow_timeout_ms % 1000) * 1000};
	bufferevent_set_timeouts(c->bev, NULL, &wt);
	struct ev_token_bucket_cfg *bucket = guard_bucket(node_guard(n));
	if (bucket)
		bufferevent_set_rate_limit(c->bev, bucket); /* max_in_rate */
	arm(c, cfg->hello_timeout_ms);
	return c;
}

struct conn *conn_new_proxy(struct node *n, struct peer *p, uint64_t sid, const char *identity,
			    size_t len)
{
	struct conns *s = node_conns(n);
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->node = n;
	c->set = s;
	c->id = ++s->next_id;
	c->sid = sid;
	c->proxy = p;
	snprintf(c->peer, sizeof(c->peer), "proxy:%016llx", (unsigned long long)sid);
	c->identity = strndup(identity, len);
	c->idlen = c->identity ? len : 0;
	c->state = CONN_READY;
	TAILQ_INSERT_TAIL(&s->live, c, link);
	s->nlive++;
	s->nproxies++;
	return c;
}

uint64_t conn_sid(const struct conn *c)
{
	return c->sid;
}

void conn_end_session(struct conn *c)
{
	c->session_ended = 1;
}

uint64_t conn_push_key(const struct conn *c)
{
	return c->push_key ? c->push_key : c->sid;
}

void conn_set_push_key(struct conn *c, uint64_t key)
{
	c->push_key = key;
}

struct peer *conn_proxy_peer(const struct conn *c)
{
	return c->proxy;
}

int conn_note_peer(struct conn *c, struct peer *p)
{
	for (size_t i = 0; i < c->nused; i++)
		if (c->used[i] == p)
			return 0;
	struct peer **v = realloc(c->used, (c->nused + 1) * sizeof(*v));
	if (!v)
		return -1;
	c->used = v;
	v[c->nused++] = p;
	return 0;
}

size_t conn_peers_used(const struct conn *c, struct peer *const **list)
{
	*list = c->used;
	return c->nused;
}

int conn_rstream_add(struct conn *c, const char *id, size_t len, struct peer *p, uint64_t rid)
{
	if (c->nrstreams + c->nstreams >= node_cfg(c->node)->max_streams || len > WIRE_STREAM_ID_MAX)
		return -1;
	struct rstream *v = realloc(c->rstreams, (c->nrstreams + 1) * sizeof(*v));
	if (!v)
		return -1;
	c->rstreams = v;
	memcpy(v[c->nrstreams].id, id, len);
	v[c->nrstreams].id[len] = '\0';
	v[c->nrstreams].p = p;
	v[c->nrstreams].open_rid = rid;
	v[c->nrstreams].close_rid = 0;
	v[c->nrstreams].orphan_ms = 0;
	v[c->nrstreams].kept = v[c->nrstreams].ktail = NULL;
	v[c->nrstreams].kbytes = 0;
	v[c->nrstreams].unkept = 0;
	c->nrstreams++;
	return 0;
}

static long rstream_index(const struct conn *c, const char *id, size_t len)
{
	for (size_t i = 0; i < c->nrstreams; i++)
		if (strlen(c->rstreams[i].id) == len && memcmp(c->rstreams[i].id, id, len) == 0)
			return (long)i;
	return -1;
}

struct peer *conn_rstream(const struct conn *c, const char *id, size_t len)
{
	long i = rstream_index(c, id, len);
	return i < 0 ? NULL : c->rstreams[i].p;
}

void conn_rstream_closing(struct conn *c, const char *id, size_t len, uint64_t rid)
{
	long i = rstream_index(c, id, len);
	if (i >= 0)
		c->rstreams[i].close_rid = rid ? rid : 1;
}

void conn_rstream_refused(struct conn *c, uint64_t rid)
{
	for (size_t i = 0; i < c->nrstreams; i++) {
		if (rid && c->rstreams[i].open_rid == rid) {
			rstream_del(c, i);
			return;
		}
	}
}

void conn_rstream_done(struct conn *c, const char *id, size_t len, uint64_t rid)
{
	for (size_t i = 0; i < c->nrstreams; i++) {
		struct rstream *r = &c->rstreams[i];
		int hit = id ? strlen(r->id) == len && memcmp(r->id, id, len) == 0
			     : r->close_rid != 0 && r->close_rid == rid;
		if (hit) {
			rstream_del(c, i);
			return;
		}
	}
}

int conn_rstream_has(const struct conn *c, const char *id, size_t len)
{
	return rstream_index(c, id, len) >= 0;
}

int conn_rstream_is_close(const struct conn *c, uint64_t rid)
{
	for (size_t i = 0; rid && i < c->nrstreams; i++)
		if (c->rstreams[i].close_rid == rid)
			return 1;
	return 0;
}

void conn_rstream_keep(struct conn *c, const char *id, size_t len, const uint8_t *frame,
		       size_t flen, uint64_t rid, uint64_t off, size_t dlen)
{
	long i = rstream_index(c, id, len);
	if (i < 0)
		return;
	struct rstream *r = &c->rstreams[i];
	/* A sender within its window has at most about two windows unacked
	 * here (the old relay's and, after a takeover, the floor). */
	size_t bound = 2 * node_cfg(c->node)->stream_window + node_cfg(c->node)->frame_max;
	struct kept *k = NULL;
	if (r->unkept || r->kbytes + flen > bound || !(k = malloc(sizeof(*k) + flen))) {
		if (!r->unkept)
			vlog(node_log(c->node), LOG_WARN,
			     "stream %s: over %zu bytes unacknowledged; it cannot move to a new "
			     "relay",
			     r->id, bound);
		r->unkept = 1;
		rstream_clear(r);
		return;
	}
	*k = (struct kept){.off = off, .rid = rid, .dlen = dlen, .len = flen};
	memcpy(k->frame, frame, flen);
	if (r->ktail)
		r->ktail->next = k;
	else
		r->kept = k;
	r->ktail = k;
	r->kbytes += flen;
}

void conn_rstream_acked(struct conn *c, const char *id, size_t len, uint64_t acked)
{
	long i = rstream_index(c, id, len);
	if (i < 0)
		return;
	struct rstream *r = &c->rstreams[i];
	struct kept *k;
	while ((k = r->kept) != NULL && k->off != UINT64_MAX && k->off + k->dlen <= acked) {
		r->kept = k->next;
		r->kbytes -= k->len;
		free(k);
	}
	if (!r->kept)
		r->ktail = NULL;
}

/* A chunk cut to start at from: [301, rid, id, from, data]. */
static void send_cut(const char *id, const struct kept *k, uint64_t from,
		     void (*send)(void *arg, const uint8_t *frame, size_t len), void *arg)
{
	struct wire_buf b;
	wire_buf_init(&b);
	size_t skip = (size_t)(from - k->off), dlen = k->dlen - skip;
	msgpack_packer *pk = wire_begin(&b, WIRE_STREAM_CHUNK, k->rid, 3);
	wire_pack_cstr(pk, id);
	msgpack_pack_uint64(pk, from);
	wire_pack_bin(pk, k->frame + k->len - k->dlen + skip, dlen);
	wire_end(&b, 0);
	send(arg, b.p, b.len);
	wire_buf_free(&b);
}

int conn_rstream_resume(struct conn *c, const char *id, size_t len, struct peer *p, uint64_t off,
			void (*send)(void *arg, const uint8_t *frame, size_t len), void *arg)
{
	long i = rstream_index(c, id, len);
	if (i < 0 || c->rstreams[i].unkept)
		return -1;
	struct rstream *r = &c->rstreams[i];
	char sid[WIRE_STREAM_ID_MAX + 1];
	memcpy(sid, r->id, sizeof(sid));
	/* Without a link (the relay is this node now) the frames go through
	 * this node's own handlers: the entry goes first. */
	struct kept *list = r->kept;
	if (!p) {
		r->kept = r->ktail = NULL;
		r->kbytes = 0;
		rstream_del(c, (size_t)i);
	} else {
		r->p = p;
		r->orphan_ms = 0;
	}
	for (struct kept *k = list; k; k = k->next) {
		if (k->off == UINT64_MAX || k->off >= off)
			send(arg, k->frame, k->len);
		else if (k->off + k->dlen > off)
			send_cut(sid, k, off, send, arg);
	}
	if (!p) {
		struct kept *k;
		while ((k = list) != NULL) {
			list = k->next;
			free(k);
		}
	}
	return 0;
}

uint64_t conn_id(const struct conn *c)
{
	return c->id;
}

const char *conn_peer(const struct conn *c)
{
	return c->peer;
}

const char *conn_identity(const struct conn *c)
{
	return c->identity ? c->identity : "";
}

size_t conn_identity_len(const struct conn *c)
{
	return c->idlen;
}

int conn_is_ready(const struct conn *c)
{
	return c->state == CONN_READY;
}

int conn_alive(const struct conn *c)
{
	return c->state == CONN_HELLO || c->state == CONN_READY;
}

void conn_set_ready(struct conn *c, const char *identity, size_t len)
{
	free(c->identity);
	c->identity = strndup(identity, len);
	c->idlen = c->identity ? len : 0;
	event_del(c->timer);
	conn_set_state(c, CONN_READY, "hello");
}

/* Whether queueing len more bytes passes max_pending; if so the connection
 * is dropped as a slow consumer. Replies count as much as deliveries: a
 * client that sends requests and never reads the answers is slow too. */
static int over_pending(struct conn *c, size_t len)
{
	struct node *n = c->node;
	size_t pending = evbuffer_get_length(bufferevent_get_output(c->bev)) + c->bulk_bytes;
	if (pending + len <= node_cfg(n)->max_pending)
		return 0;
	node_counters(n)->slow_consumers++;
	vlog(node_log(n), LOG_WARN,
	     "conn %llu %s (%s): slow consumer: %zu bytes pending, limit %zu; disconnected",
	     (unsigned long long)c->id, c->peer, conn_identity(c), pending,
	     node_cfg(n)->max_pending);
	conn_kill(c, "slow consumer");
	return 1;
}

void conn_send_raw(struct conn *c, const uint8_t *frame, size_t len)
{
	if (!conn_alive(c))
		return;
	if (c->proxy) {
		route_proxy_send(c->node, c->proxy, c->sid, frame, len);
		return;
	}
	if (over_pending(c, len))
		return;
	struct node_counters *k = node_counters(c->node);
	evbuffer_add(bufferevent_get_output(c->bev), frame, len);
	k->frames_out++;
	k->bytes_out += len;
}

void conn_send(struct conn *c, const struct wire_buf *b)
{
	conn_send_raw(c, b->p, b->len);
}

static void unref_blob(const void *data, size_t len, void *arg)
{
	blob_unref(arg);
}

int conn_send_blob(struct conn *c, struct blob *b)
{
	if (!conn_alive(c))
		return 0;
	if (c->proxy) {
		route_proxy_send(c->node, c->proxy, c->sid, blob_data(b), blob_len(b));
		return 0;
	}
	struct node *n = c->node;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t len = blob_len(b);
	if (over_pending(c, len))
		return -1;
	if (len <= COPY_MAX && !blob_has_release(b)) {
		if (evbuffer_add(out, blob_data(b), len) < 0) {
			conn_kill(c, "out of memory");
			return -1;
		}
	} else if (evbuffer_add_reference(out, blob_data(b), len, unref_blob, blob_ref(b)) < 0) {
		blob_unref(b);
		conn_kill(c, "out of memory");
		return -1;
	}
	node_counters(n)->frames_out++;
	node_counters(n)->bytes_out += len;
	return 0;
}

int conn_send_bulk(struct conn *c, struct blob *b)
{
	if (!conn_alive(c))
		return 0;
	if (c->proxy || (c->bulk_len == 0 && evbuffer_get_length(bufferevent_get_output(c->bev)) <
						 BULK_LOW))
		return conn_send_blob(c, b);
	if (over_pending(c, blob_len(b)))
		return -1;
	if (c->bulk_len == c->bulk_cap) {
		size_t cap = c->bulk_cap ? 2 * c->bulk_cap : 16;
		struct blob **v = malloc(cap * sizeof(*v));
		if (!v) {
			conn_kill(c, "out of memory");
			return -1;
		}
		for (size_t i = 0; i < c->bulk_len; i++)
			v[i] = c->bulk[(c->bulk_head + i) % c->bulk_cap];
		free(c->bulk);
		c->bulk = v;
		c->bulk_head = 0;
		c->bulk_cap = cap;
	}
	c->bulk[(c->bulk_head + c->bulk_len) % c->bulk_cap] = blob_ref(b);
	c->bulk_len++;
	c->bulk_bytes += blob_len(b);
	node_counters(c->node)->frames_out++;
	node_counters(c->node)->bytes_out += blob_len(b);
	return 0;
}

void conn_close(struct conn *c, int code, uint64_t rid, const char *msg)
{
	if (!conn_alive(c))
		return;
	if (code) {
		struct wire_buf *b = node_scratch(c->node);
		wire_enc_error(b, rid, code, msg);
		conn_send(c, b);
		node_counters(c->node)->errors_sent++;
	}
	/* max_hello_failures: the node ends a connection that never got in */
	if (c->state == CONN_HELLO && code && code != WIRE_E_SHUTDOWN && !c->proxy)
		guard_hello_failed(node_guard(c->node), c->src, c->srclen);
	if (c->proxy) {
		conn_kill(c, code ? wire_err_name(code) : "closed");
		return;
	}
	drop_subs(c);
	bufferevent_disable(c->bev, EV_READ);
	conn_set_state(c, CONN_CLOSING, code ? wire_err_name(code) : "closed");
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_kill(c, "nothing to flush");
	else
		arm(c, LINGER_MS);
}

void conn_error(struct conn *c, uint64_t rid, int code, const char *msg)
{
	if (wire_err_fatal(code)) {
		conn_close(c, code, rid, msg);
		return;
	}
	struct wire_buf *b = node_scratch(c->node);
	wire_enc_error(b, rid, code, msg);
	conn_send(c, b);
	node_counters(c->node)->errors_sent++;
}

struct room_sub *conn_find_sub(const struct conn *c, const struct room *r)
{
	for (size_t i = 0; i < c->nsubs; i++)
		if (room_sub_room(c->subs[i]) == r)
			return c->subs[i];
	return NULL;
}

int conn_subscribe(struct conn *c, struct room *r)
{
	if (c->nsubs >= node_cfg(c->node)->max_subs)
		return -1;
	if (c->nsubs == c->capsubs) {
		size_t cap = c->capsubs ? c->capsubs * 2 : 4;
		struct room_sub **v = realloc(c->subs, cap * sizeof(*v));
		if (!v)
			return -2;
		c->subs = v;
		c->capsubs = cap;
	}
	struct room_sub *s = room_subscribe(r, c);
	if (!s)
		return -2;
	c->subs[c->nsubs++] = s;
	return 0;
}

void conn_unsubscribe(struct conn *c, struct room_sub *s)
{
	for (size_t i = 0; i < c->nsubs; i++) {
		if (c->subs[i] == s) {
			struct room *r = room_sub_room(s);
			c->subs[i] = c->subs[--c->nsubs];
			room_unsubscribe(s);
			if (room_marks(r) & ROUTE_MIRROR)
				route_mirror_changed(c->node, r);
			return;
		}
	}
	assert(!"subscription not held by this connection");
}

size_t conn_sub_count(const struct conn *c)
{
	return c->nsubs;
}

int conn_stream_add(struct conn *c, struct strm *s)
{
	struct strm **v = realloc(c->streams, (c->nstreams + 1) * sizeof(*v));
	if (!v)
		return -1;
	c->streams = v;
	v[c->nstreams++] = s;
	return 0;
}

void conn_stream_del(struct conn *c, struct strm *s)
{
	for (size_t i = 0; i < c->nstreams; i++) {
		if (c->streams[i] == s) {
			c->streams[i] = c->streams[--c->nstreams];
			return;
		}
	}
}

size_t conn_stream_count(const struct conn *c)
{
	return c->nstreams;
}

/* ---- tokens and limits ---- */

void conn_set_source(struct conn *c, const uint8_t *key, size_t len)
{
	c->srclen = (uint8_t)(len < sizeof(c->src) ? len : sizeof(c->src));
	memcpy(c->src, key, c->srclen);
}

/* Wakes at the token's expiry, or in a minute to look again (the expiry is
 * wall-clock time, the timer monotonic). */
static void arm_expiry(struct conn *c, uint64_t now)
{
	uint64_t left = c->token_exp_ms > now ? c->token_exp_ms - now : 0;
	arm(c, left < 60000 ? left : 60000);
}

int conn_set_token(struct conn *c, const struct token_grants *g, uint64_t exp_ms)
{
	free(c->grants);
	c->grants = NULL;
	if (g && !(c->grants = malloc(sizeof(*g))))
		return -1;
	if (g)
		memcpy(c->grants, g, sizeof(*g));
	c->token_exp_ms = exp_ms;
	if (exp_ms && c->timer && c->state == CONN_READY)
		arm_expiry(c, node_now_ms(c->node));
	return 0;
}

const struct token_grants *conn_grants(const struct conn *c)
{
	return c->grants;
}

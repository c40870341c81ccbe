#include "node/conn.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "node/node.h"
#include "node/ops.h"
#include "node/streams.h"
#include "stream/blob.h"
#include "stream/room.h"
#include "stream/wire.h"

#define LINGER_MS 2000 /* how long a closing connection may take to flush */

enum conn_state { CONN_HELLO, CONN_READY, CONN_CLOSING, CONN_DEAD };

static const char *state_names[] = {"hello", "ready", "closing", "dead"};

struct conn {
	struct node *node;
	struct conns *set;
	uint64_t id;
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
	TAILQ_ENTRY(conn) link; /* in set->live or set->dead */
};

struct conns {
	TAILQ_HEAD(, conn) live, dead;
	size_t nlive;
	uint64_t next_id;
};

struct conns *conns_new(void)
{
	struct conns *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	TAILQ_INIT(&s->live);
	TAILQ_INIT(&s->dead);
	return s;
}

static void conn_free(struct conn *c)
{
	if (c->timer)
		event_free(c->timer);
	if (c->bev)
		bufferevent_free(c->bev); /* closes the socket, unrefs queued blobs */
	free(c->subs);
	free(c->streams);
	free(c->identity);
	free(c);
}

/* Ends the connection's part in rooms and streams. */
static void drop_subs(struct conn *c)
{
	while (c->nstreams > 0)
		streams_sender_gone(c->node, c->streams[c->nstreams - 1]);
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
		drop_subs(c);
		conn_free(c);
	}
	conns_reap(s);
	free(s);
}

size_t conns_count(const struct conns *s)
{
	return s->nlive;
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
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	event_del(c->timer);
	conn_set_state(c, CONN_DEAD, why);
}

void conns_close_all(struct conns *s, int code, const char *msg)
{
	struct conn *c, *next;
	for (c = TAILQ_FIRST(&s->live); c; c = next) {
		next = TAILQ_NEXT(c, link);
		conn_close(c, code, 0, msg);
	}
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct node *n = c->node;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct node_counters *k = node_counters(n);
	struct wire_msg msg;

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
			vlog(node_log(n), LOG_INFO, "conn %llu %s: bad frame: %s",
			     (unsigned long long)c->id, c->peer, why);
			conn_close(c, code, 0, why);
			break;
		}
		k->frames_in++;
		k->bytes_in += used;
		ops_dispatch(n, c, &msg);
		evbuffer_drain(in, used);
	}
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	if (c->state == CONN_CLOSING)
		conn_kill(c, "flushed");
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
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->bev = bufferevent_socket_new(node_base(n), fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(node_base(n), on_timer, c);
	if (!c->bev || !c->timer) {
		if (!c->bev)
			evutil_closesocket(fd);
		conn_free(c);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&s->live, c, link);
	s->nlive++;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	/* Never buffer more than one largest frame plus a read's worth. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, cfg->frame_max + WIRE_HDR + 65536);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	struct timeval wt = {(time_t)(cfg->slow_timeout_ms / 1000),
			     (suseconds_t)(cfg->slow_timeout_ms % 1000) * 1000};
	bufferevent_set_timeouts(c->bev, NULL, &wt);
	arm(c, cfg->hello_timeout_ms);
	return c;
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
	size_t pending = evbuffer_get_length(bufferevent_get_output(c->bev));
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

void conn_send(struct conn *c, const struct wire_buf *b)
{
	if (!conn_alive(c) || over_pending(c, b->len))
		return;
	struct node_counters *k = node_counters(c->node);
	evbuffer_add(bufferevent_get_output(c->bev), b->p, b->len);
	k->frames_out++;
	k->bytes_out += b->len;
}

static void unref_blob(const void *data, size_t len, void *arg)
{
	blob_unref(arg);
}

int conn_send_blob(struct conn *c, struct blob *b)
{
	if (!conn_alive(c))
		return 0;
	struct node *n = c->node;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t len = blob_len(b);
	if (over_pending(c, len))
		return -1;
	if (evbuffer_add_reference(out, blob_data(b), len, unref_blob, blob_ref(b)) < 0) {
		blob_unref(b);
		conn_kill(c, "out of memory");
		return -1;
	}
	node_counters(n)->frames_out++;
	node_counters(n)->bytes_out += len;
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
			c->subs[i] = c->subs[--c->nsubs];
			room_unsubscribe(s);
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

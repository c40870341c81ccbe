#include "node/park.h"

#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "node/clus.h"
#include "node/conn.h"
#include "node/node.h"
#include "node/ops.h"
#include "node/route.h"
#include "node/repl.h"
#include "stream/room.h"
#include "stream/wire.h"

struct held {
	TAILQ_ENTRY(held) next;
	struct conn *c; /* a client's request, or */
	struct peer *p; /* a node's frame (NODE_SUB) */
	char room[ROOM_ID_LEN];
	uint64_t deadline_ms;
	size_t len;
	uint8_t frame[];
};

TAILQ_HEAD(heldq, held);

struct park {
	struct heldq list; /* arrival order */
	struct heldq out;  /* being handled now (release) */
	size_t n, bytes;
	int draining;		/* handling held requests: hold nothing new */
	uint64_t changed_ms;	/* the last membership change */
	uint64_t fenced_until;	/* ms; 0: not fenced */
	uint64_t last_check_ns; /* the last stall check */
	struct wire_dec *dec;
};

struct park *park_new(size_t frame_max)
{
	struct park *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	TAILQ_INIT(&p->list);
	TAILQ_INIT(&p->out);
	if (!(p->dec = wire_dec_new(frame_max))) {
		free(p);
		return NULL;
	}
	return p;
}

void park_free(struct park *p)
{
	if (!p)
		return;
	struct held *h;
	while ((h = TAILQ_FIRST(&p->list)) != NULL) {
		TAILQ_REMOVE(&p->list, h, next);
		free(h);
	}
	wire_dec_free(p->dec);
	free(p);
}

size_t park_count(const struct node *n)
{
	return node_park((struct node *)n)->n;
}

static int room_request(uint16_t type)
{
	switch (type) {
	case WIRE_REMOVE:
	case WIRE_GRANT:
	case WIRE_REVOKE:
	case WIRE_SUBSCRIBE:
	case WIRE_UNSUBSCRIBE:
	case WIRE_INFO:
	case WIRE_PUSH:
	case WIRE_STREAM_OPEN:
	case WIRE_STREAM_REJOIN:
	case WIRE_STREAM_CLAIM:
		return 1;
	}
	return 0;
}

static int held_for(const struct park *p, const char *id)
{
	const struct held *h;
	TAILQ_FOREACH(h, &p->list, next)
	if (memcmp(h->room, id, ROOM_ID_LEN) == 0)
		return 1;
	return 0;
}

/* Whether room id is expected here (park.h): held requests wait for it. */
static int expected(struct node *n, struct park *p, const char *id)
{
	struct room *r = rooms_find(node_rooms(n), id, ROOM_ID_LEN);
	if (r)
		return (room_marks(r) & PARK_STALE) || repl_floor(n, r) > room_seq(r);
	if (repl_pinned_to(n, id))
		return 0; /* another node keeps it: requests go there */
	if (repl_expects(n, id))
		return 1;
	struct clus *cl = node_clus(n);
	const char *first;
	return node_now_ms(n) - p->changed_ms < PARK_WINDOW_MS &&
	       clus_placement(cl, id, ROOM_ID_LEN, &first, 1) == 1 &&
	       strcmp(first, clus_self(cl)) == 0;
}

static int hold(struct node *n, struct conn *c, struct peer *from, const char *id,
		const uint8_t *raw, size_t len)
{
	struct park *p = node_park(n);
	if (p->n >= PARK_MAX || p->bytes + len > PARK_BYTES)
		return 0;
	struct held *h = malloc(sizeof(*h) + len);
	if (!h)
		return 0;
	h->c = c;
	h->p = from;
	memcpy(h->room, id, ROOM_ID_LEN);
	h->deadline_ms = node_now_ms(n) + PARK_MS;
	h->len = len;
	memcpy(h->frame, raw, len);
	TAILQ_INSERT_TAIL(&p->list, h, next);
	p->n++;
	p->bytes += len;
	node_counters(n)->parked++;
	return 1;
}

int park_peer_frame(struct node *n, struct peer *from, const struct wire_msg *m, const uint8_t *raw,
		    size_t len)
{
	struct park *p = node_park(n);
	if (!node_clus(n) || p->draining || m->f[0].s.len != ROOM_ID_LEN)
		return 0;
	const char *id = m->f[0].s.ptr;
	if (!held_for(p, id) && !expected(n, p, id))
		return 0;
	return hold(n, NULL, from, id, raw, len);
}

/* Drops every held frame from c or from (whichever is not NULL). */
static void drop_from(struct node *n, const struct conn *c, const struct peer *from)
{
	struct park *p = node_park(n);
	struct heldq *qs[2] = {&p->list, &p->out};
	for (int i = 0; i < 2; i++) {
		struct held *h, *next;
		for (h = TAILQ_FIRST(qs[i]); h; h = next) {
			next = TAILQ_NEXT(h, next);
			if ((c && h->c == c) || (from && h->p == from)) {
				TAILQ_REMOVE(qs[i], h, next);
				p->n--;
				p->bytes -= h->len;
				free(h);
			}
		}
	}
}

void park_peer_gone(struct node *n, struct peer *from)
{
	drop_from(n, NULL, from);
}

int park_maybe(struct node *n, struct conn *c, const struct wire_msg *m, const uint8_t *raw,
	       size_t len)
{
	struct park *p = node_park(n);
	int replay = m->type == WIRE_SUB_REPLAY;
	if (!node_clus(n) || (!room_request(m->type) && !replay) || m->f[0].s.len != ROOM_ID_LEN)
		return 0;
	const char *id = m->f[0].s.ptr;
	/* A room this node just handed on, or that another node keeps while
	 * this one comes first in its list (pinned by its streams), asked
	 * for by a node: that node sends the request there (it kept it). */
	const char *to;
	if (conn_proxy_peer(c) && m->rid && !rooms_find(node_rooms(n), id, ROOM_ID_LEN) &&
	    ((to = repl_handed_to(n, id)) != NULL || (to = repl_pinned_to(n, id)) != NULL)) {
		conn_error(c, m->rid, WIRE_E_MOVED, to);
		return 1;
	}
	if (replay || p->draining)
		return 0;
	/* A room with held requests holds the ones behind them too. */
	if (!held_for(p, id) && !expected(n, p, id))
		return 0;
	return hold(n, c, NULL, id, raw, len);
}

/* Handles the held requests for room id, in arrival
 * order. While they are handled nothing new is held, so that none passes
 * them. */
static void release(struct node *n, const char *id)
{
	struct park *p = node_park(n);
	if (p->draining)
		return; /* the outer release goes on; the sweep gets the rest */
	struct held *h, *next;
	for (h = TAILQ_FIRST(&p->list); h; h = next) {
		next = TAILQ_NEXT(h, next);
		if (memcmp(h->room, id, ROOM_ID_LEN) == 0) {
			TAILQ_REMOVE(&p->list, h, next);
			TAILQ_INSERT_TAIL(&p->out, h, next);
		}
	}
	p->draining = 1;
	while ((h = TAILQ_FIRST(&p->out)) != NULL) {
		TAILQ_REMOVE(&p->out, h, next);
		p->n--;
		p->bytes -= h->len;
		struct wire_msg m;
		size_t used;
		/* park_conn_gone and park_peer_gone drop the rest of h->c's
		 * and h->p's while this runs */
		if (wire_parse(p->dec, h->frame, h->len, &m, &used) != WIRE_OK_)
			; /* it parsed when it came */
		else if (h->c)
			ops_dispatch(n, h->c, &m, h->frame, h->len);
		else
			route_peer_frame(n, h->p, &m, h->frame, h->len);
		free(h);
	}
	p->draining = 0;
}

void park_room_ready(struct node *n, const char *id)
{
	struct park *p = node_park(n);
	if (!p->n || !held_for(p, id) || expected(n, p, id))
		return;
	release(n, id);
}

void park_conn_gone(struct node *n, struct conn *c)
{
	drop_from(n, c, NULL);
}

void park_members_changed(struct node *n)
{
	node_park(n)->changed_ms = node_now_ms(n);
}

void park_check_stall(struct node *n, uint64_t now)
{
	struct park *p = node_park(n);
	struct clus *cl = node_clus(n);
	if (now <= p->last_check_ns)
		return; /* a request read before the last check */
	uint64_t gap_ms = p->last_check_ns ? (now - p->last_check_ns) / 1000000u : 0;
	p->last_check_ns = now;
	if (!cl || gap_ms <= node_cfg(n)->suspicion_ms)
		return;
	/* The cluster may have declared this node dead meanwhile and given
	 * its rooms to their backups: relay none of them until their new
	 * relay hands them back (REPL_STATE, newer) or FENCE_MS pass, and say
	 * at once that this node is alive (a newer incarnation). */
	size_t pos = 0, k = 0;
	struct room *r;
	while ((r = rooms_next(node_rooms(n), &pos)) != NULL) {
		room_set_marks(r, room_marks(r) | PARK_STALE);
		k++;
	}
	p->fenced_until = node_now_ms(n) + FENCE_MS;
	node_counters(n)->stalls++;
	clus_alive_again(cl);
	vlog(node_log(n), LOG_WARN,
	     "the event loop stalled for %llu ms (over the %llu ms suspicion timeout): "
	     "fencing %zu rooms until their state comes back or %d ms pass",
	     (unsigned long long)gap_ms, (unsigned long long)node_cfg(n)->suspicion_ms, k,
	     FENCE_MS);
}

void park_fence(struct node *n)
{
	struct park *p = node_park(n);
	uint64_t until = node_now_ms(n) + FENCE_MS;
	if (p->fenced_until < until)
		p->fenced_until = until;
}

void park_sweep(struct node *n)
{
	struct park *p = node_park(n);
	uint64_t now = node_now_ms(n);
	if (p->fenced_until && now >= p->fenced_until) {
		p->fenced_until = 0;
		size_t pos = 0, k = 0;
		struct room *r;
		while ((r = rooms_next(node_rooms(n), &pos)) != NULL) {
			if (room_marks(r) & PARK_STALE) {
				room_set_marks(r, room_marks(r) & ~PARK_STALE);
				k++;
			}
		}
		if (k)
			vlog(node_log(n), LOG_NOTICE,
			     "fence lifted: relaying %zu rooms whose state did not come back", k);
	}
	/* Rooms past their deadline (the oldest held first), and rooms that
	 * became ready without a call (a fence lifted). */
	struct held *h;
	for (int rounds = 0; rounds < 64 && (h = TAILQ_FIRST(&p->list)) != NULL; rounds++) {
		if (now >= h->deadline_ms) {
			char id[ROOM_ID_LEN];
			memcpy(id, h->room, ROOM_ID_LEN);
			size_t before = p->n;
			release(n, id);
			node_counters(n)->park_timeouts += before - p->n;
			continue;
		}
		break;
	}
	for (h = TAILQ_FIRST(&p->list); h; h = TAILQ_NEXT(h, next)) {
		if (!expected(n, p, h->room)) {
			char id[ROOM_ID_LEN];
			memcpy(id, h->room, ROOM_ID_LEN);
			release(n, id);
			return; /* the list changed; the next sweep does the rest */
		}
	}
}

#include "node/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cluster/memb.h"
#include "node/clus.h"
#include "node/conn.h"
#include "node/node.h"
#include "node/park.h"
#include "node/ops.h"
#include "node/peer.h"
#include "node/repl.h"
#include "node/srepl.h"
#include "node/stats.h"
#include "node/streams.h"
#include "stream/blob.h"
#include "stream/room.h"
#include "stream/smap.h"
#include "stream/strm.h"
#include "stream/wire.h"

#define S(f) (f).s.ptr, (f).s.len
#define ORPHAN_MS  5000	      /* how long a mirror or request waits for a new relay */
#define FWDQ_MAX   65536      /* forwarded requests kept until answered */
#define FWDQ_BYTES (64u << 20)
#define HINTS	   256	/* rooms whose relay is not the one placement names */
#define HINT_MS	   3000 /* how long a `moved` is believed */

/* A request sent to a relay and not yet answered: kept so that it can be
 * sent again if the relay goes (the relay knows a push it already took by
 * its session and rid). p is NULL while it waits for a new relay. */
struct fwd {
	struct peer *p;
	uint64_t sid, rid, since;
	int resend; /* may go again to a new relay (else: answered unreachable) */
	int moves;  /* times a relay said the room moved on */
	int has_room;
	char room[ROOM_ID_LEN]; /* the room a request names (has_room) */
	uint16_t type;
	size_t len;
	TAILQ_ENTRY(fwd) next;
	uint8_t frame[];
};

/* Where a mirror's room lives, and since when it has had no relay. */
struct mirror_meta {
	char id[ROOM_ID_LEN + 1];
	char relay[65];
	uint64_t orphan_since; /* 0: attached */
	int stays;	       /* stayed with its relay, though placement names another,
				* while streams flowed from it (reattach): checked again */
};

/* A relay named by a `moved` answer: requests for the room go there, not
 * where placement says, for HINT_MS (a room pinned by its streams, repl.c,
 * or handed on before this node heard). A hint is only a shortcut: a wrong
 * one costs a `moved` more. */
struct hint {
	char room[ROOM_ID_LEN];
	char relay[MEMB_NAME_MAX + 1];
	uint64_t ms;
};

/* A local client's first subscription to a mirror, waiting for the relay. */
struct pend {
	uint64_t rid; /* on the link */
	struct peer *p;
	uint64_t sid, client_rid;
	int moves; /* times the node asked answered `moved` */
	int quiet; /* the client's answer comes from its SUB_REPLAY, not from here */
	char room[ROOM_ID_LEN + 1];
	TAILQ_ENTRY(pend) next;
};

struct route {
	struct node *node;
	struct rooms *mirrors;	/* rooms relayed elsewhere, with local subscribers */
	struct strms *rstrms;	/* streams relayed elsewhere, to local receivers */
	struct smap *proxies;	/* (link, session) -> proxy connection, at the relay */
	TAILQ_HEAD(, pend) pends;
	TAILQ_HEAD(fwdq, fwd) fwds;
	size_t nfwds, fwd_bytes;
	size_t norphans; /* kept requests waiting for a relay (p NULL) */
	struct smap *meta; /* mirror id -> struct mirror_meta */
	struct hint hints[HINTS]; /* by a hash of the room id */
	uint64_t next_rid;
	struct wire_buf buf;	/* frames this module encodes */
	struct wire_dec *inner; /* decodes the frame inside a FWD */
};

struct proxy_key {
	const void *p;
	uint64_t sid;
};

static void kick(void *arg)
{
	node_schedule_reap(arg);
}

struct route *route_new(struct node *n)
{
	struct route *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->node = n;
	r->mirrors = rooms_new(0);
	r->rstrms = strms_new(kick, n);
	r->proxies = smap_new();
	r->meta = smap_new();
	TAILQ_INIT(&r->fwds);
	r->inner = wire_dec_new(node_cfg(n)->frame_max);
	wire_buf_init(&r->buf);
	TAILQ_INIT(&r->pends);
	if (!r->mirrors || !r->rstrms || !r->proxies || !r->inner || !r->meta) {
		route_free(r);
		return NULL;
	}
	return r;
}

void route_free(struct route *r)
{
	if (!r)
		return;
	struct pend *p;
	while ((p = TAILQ_FIRST(&r->pends)) != NULL) {
		TAILQ_REMOVE(&r->pends, p, next);
		free(p);
	}
	struct fwd *f;
	while ((f = TAILQ_FIRST(&r->fwds)) != NULL) {
		TAILQ_REMOVE(&r->fwds, f, next);
		free(f);
	}
	size_t mpos = 0;
	struct mirror_meta *mm;
	while (r->meta && (mm = smap_next(r->meta, &mpos)) != NULL)
		free(mm);
	smap_free(r->meta);
	/* The proxy map's keys live in its values: free those first. */
	size_t pos = 0;
	struct proxy_key *k;
	while ((k = smap_next(r->proxies, &pos)) != NULL)
		free(k);
	smap_free(r->proxies);
	strms_free(r->rstrms);
	rooms_free(r->mirrors);
	wire_dec_free(r->inner);
	wire_buf_free(&r->buf);
	free(r);
}

uint64_t route_new_rid(struct node *n)
{
	return ++node_route(n)->next_rid;
}

size_t route_mirrors(const struct node *n)
{
	return rooms_count(node_route((struct node *)n)->mirrors);
}

/* ---- at the client's node ---- */

/* The type and rid of an encoded frame [type, rid, ...] whose first
 * elements are small unsigned integers (0 if not). */
static uint64_t raw_uint(const uint8_t *p, size_t len, size_t *at)
{
	if (*at >= len)
		return 0;
	uint8_t c = p[(*at)++];
	if (c <= 0x7f)
		return c;
	int n = c == 0xcc ? 1 : c == 0xcd ? 2 : c == 0xce ? 4 : c == 0xcf ? 8 : 0;
	uint64_t v = 0;
	for (int i = 0; i < n && *at < len; i++)
		v = v << 8 | p[(*at)++];
	return v;
}

static unsigned raw_type(const uint8_t *f, size_t len)
{
	size_t at = WIRE_HDR + 1; /* past the prefix and the array header */
	return (unsigned)raw_uint(f, len, &at);
}

static uint64_t raw_rid(const uint8_t *f, size_t len)
{
	size_t at = WIRE_HDR + 1;
	raw_uint(f, len, &at);
	return raw_uint(f, len, &at);
}

/* FWD [501, 0, sid, identity, frame, key?] on link p; key (when not 0) is
 * the session's publisher key (conn_push_key), which the relay's ring knows
 * its pushes by. */
static int fwd_send(struct node *n, struct peer *p, uint64_t sid, const char *who, size_t wlen,
		    const uint8_t *frame, size_t len, uint64_t key)
{
	struct route *r = node_route(n);
	wire_buf_reset(&r->buf);
	msgpack_packer *pk = wire_begin(&r->buf, WIRE_FWD, 0, key ? 4 : 3);
	msgpack_pack_uint64(pk, sid);
	wire_pack_str(pk, who, wlen);
	wire_pack_bin(pk, frame, len);
	if (key)
		msgpack_pack_uint64(pk, key);
	wire_end(&r->buf, 0);
	if (peer_send(p, r->buf.p, r->buf.len) < 0)
		return -1;
	node_counters(n)->forwarded++;
	return 0;
}

/* Whether session f->sid has kept requests waiting for a relay: then f
 * (not sent yet) waits behind them, so that they all go, again, in the
 * order the client sent them. */
/* Keeps f (not sent) with the requests that wait for a relay. */
static void keep_waiting(struct route *r, struct fwd *f, uint64_t now)
{
	f->p = NULL;
	f->since = now;
	r->norphans++;
	TAILQ_INSERT_TAIL(&r->fwds, f, next);
	r->nfwds++;
	r->fwd_bytes += f->len;
}

static int behind_orphans(struct node *n, struct fwd *f)
{
	struct route *r = node_route(n);
	if (!r->norphans)
		return 0;
	struct fwd *o;
	TAILQ_FOREACH(o, &r->fwds, next)
		if (!o->p && o->sid == f->sid)
			break;
	if (!o)
		return 0;
	keep_waiting(r, f, node_now_ms(n));
	return 1;
}

/* Whether the session's last unanswered request about f's room went to
 * another node than p (the room moved while it was on its way: it may come
 * back `moved`): then f waits behind it, as behind a request that waits for
 * a relay, and goes once that one is answered or sent on. */
static int behind_other_relay(struct node *n, struct fwd *f, struct peer *p)
{
	struct route *r = node_route(n);
	if (!f->has_room || !f->resend)
		return 0;
	struct fwd *o;
	TAILQ_FOREACH_REVERSE(o, &r->fwds, fwdq, next)
		if (o->sid == f->sid && o->has_room && memcmp(o->room, f->room, ROOM_ID_LEN) == 0)
			break;
	if (!o || !o->p || strcmp(peer_name(o->p), peer_name(p)) == 0)
		return 0;
	keep_waiting(r, f, node_now_ms(n));
	return 1;
}

/* A request this node would handle itself, kept behind the session's
 * requests that wait for a relay (1), or not (0: none wait). */
static int keep_orphan(struct node *n, struct conn *c, const uint8_t *frame, size_t len)
{
	struct fwd *f = malloc(sizeof(*f) + len);
	if (!f)
		return 0;
	*f = (struct fwd){.sid = conn_sid(c), .rid = raw_rid(frame, len), .len = len,
			  .resend = 1, .type = (uint16_t)raw_type(frame, len)};
	memcpy(f->frame, frame, len);
	if (behind_orphans(n, f))
		return 1;
	free(f);
	return 0;
}

/* The client's publisher key, carried in FWD when it has one of its own
 * (0: the session id is the key). */
static uint64_t fwd_key(const struct conn *c)
{
	return conn_push_key(c) != conn_sid(c) ? conn_push_key(c) : 0;
}

/* Sends a client's request to its room's relay. Every request with a rid
 * is kept until answered, so that none goes unanswered if its relay goes
 * and an answer that comes twice (from the old relay and from the one it
 * was sent again to) reaches the client once; those that may safely go
 * again (a push counts once) are re-sent, the others are answered "went
 * away". Chunks have no rid. Past the queue's bounds a request is refused
 * rather than sent unkept. */
static int forward(struct node *n, struct peer *p, struct conn *c, const uint8_t *frame,
		   size_t len, const char *room)
{
	struct route *r = node_route(n);
	uint16_t type = len > 6 ? (uint16_t)raw_type(frame, len) : 0;
	uint64_t rid = raw_rid(frame, len);
	struct fwd *f = NULL;
	/* A stream's chunks and close are kept with the stream instead
	 * (conn_rstream_keep), to go to a new relay from where it resumes. */
	if (rid && type != WIRE_STREAM_CHUNK && type != WIRE_STREAM_CLOSE) {
		if (r->nfwds >= FWDQ_MAX || r->fwd_bytes + len > FWDQ_BYTES ||
		    !(f = malloc(sizeof(*f) + len))) {
			node_counters(n)->limits_hit++;
			conn_error(c, rid, WIRE_E_LIMIT,
				   "too many requests waiting for other nodes; try again");
			return 0;
		}
		int resend = type == WIRE_PUSH || type == WIRE_GRANT || type == WIRE_REVOKE ||
			     type == WIRE_REMOVE || type == WIRE_INFO || type == WIRE_CREATE_ID ||
			     type == WIRE_SUB_REPLAY;
		*f = (struct fwd){.p = p, .sid = conn_sid(c), .rid = rid, .len = len,
				  .resend = resend, .type = type, .has_room = room != NULL};
		if (room)
			memcpy(f->room, room, ROOM_ID_LEN);
		memcpy(f->frame, frame, len);
	}
	if (f && (behind_orphans(n, f) || behind_other_relay(n, f, p)))
		return 0;
	conn_note_peer(c, p);
	if (fwd_send(n, p, conn_sid(c), conn_identity(c), conn_identity_len(c), frame, len,
		     fwd_key(c)) < 0) {
		free(f);
		return -1;
	}
	if (f) {
		TAILQ_INSERT_TAIL(&r->fwds, f, next);
		r->nfwds++;
		r->fwd_bytes += len;
	}
	return 0;
}

static void fwd_done(struct route *r, struct fwd *f)
{
	if (!f->p)
		r->norphans--;
	TAILQ_REMOVE(&r->fwds, f, next);
	r->nfwds--;
	r->fwd_bytes -= f->len;
	free(f);
}

static void fail_unreachable(struct conn *c, uint64_t rid)
{
	conn_error(c, rid, WIRE_E_INTERNAL, "the room's relay node is unreachable");
}

/* NODE_SUB; with resume, after is the last seq delivered here (0: none
 * yet, but the mirror knew the room's seq when it subscribed). */
static void node_sub(struct node *n, struct peer *p, const char *room, uint64_t count,
		     uint64_t rid, int resume, uint64_t after)
{
	struct route *r = node_route(n);
	wire_buf_reset(&r->buf);
	msgpack_packer *pk = wire_begin(&r->buf, WIRE_NODE_SUB, rid, resume ? 3 : 2);
	wire_pack_str(pk, room, ROOM_ID_LEN);
	msgpack_pack_uint64(pk, count);
	if (resume)
		msgpack_pack_uint64(pk, after);
	wire_end(&r->buf, 0);
	peer_send(p, r->buf.p, r->buf.len);
}

static struct mirror_meta *meta_of(struct route *r, const char *id, int make)
{
	struct mirror_meta *mm = smap_get(r->meta, id, ROOM_ID_LEN);
	if (mm || !make)
		return mm;
	if (!(mm = calloc(1, sizeof(*mm))))
		return NULL;
	memcpy(mm->id, id, ROOM_ID_LEN);
	if (smap_put(r->meta, mm->id, ROOM_ID_LEN, mm) < 0) {
		free(mm);
		return NULL;
	}
	return mm;
}

static void meta_drop(struct route *r, const char *id)
{
	free(smap_del(r->meta, id, ROOM_ID_LEN));
}

static struct hint *hint_slot(struct route *r, const char *id)
{
	/* room ids are random: their first bytes spread well enough */
	unsigned h = 0;
	for (size_t i = 0; i < 8; i++)
		h = h * 31 + (unsigned char)id[i];
	return &r->hints[h % HINTS];
}

static void hint_set(struct node *n, const char *id, const char *relay)
{
	struct hint *h = hint_slot(node_route(n), id);
	memcpy(h->room, id, ROOM_ID_LEN);
	snprintf(h->relay, sizeof(h->relay), "%s", relay);
	h->ms = node_now_ms(n);
}

/* The link to the node that relays room id (len bytes) as far as this node
 * knows, or NULL when it is this node (or nobody yet). Placement names the
 * relay, except: a room this node relays is its own, wherever it comes in
 * the list (pinned by its streams, or made here while views differed); a
 * room this node comes first for but backs up for a relay that keeps it
 * (repl_pinned_to); a room a `moved` named another relay for (a hint). */
static struct peer *route_to(struct node *n, const char *id, size_t len)
{
	struct clus *cl = node_clus(n);
	struct peer *p = clus_route(cl, id, len);
	if (len != ROOM_ID_LEN)
		return p;
	if (rooms_find(node_rooms(n), id, len))
		return NULL;
	const char *to = NULL;
	if (!p) {
		to = repl_pinned_to(n, id);
	} else {
		struct hint *h = hint_slot(node_route(n), id);
		if (memcmp(h->room, id, ROOM_ID_LEN) == 0 && node_now_ms(n) - h->ms < HINT_MS)
			to = h->relay;
	}
	struct peer *q = to && strcmp(to, clus_self(cl)) != 0 ? clus_peer(cl, to) : NULL;
	return q ? q : p;
}

/* The link to the relay a mirror is subscribed at (its counts go there),
 * else where route_to says. */
static struct peer *mirror_peer(struct node *n, struct room *mr)
{
	struct route *r = node_route(n);
	struct mirror_meta *mm = meta_of(r, room_id(mr), 0);
	struct peer *p;
	if (mm && mm->relay[0] && !mm->orphan_since &&
	    (p = clus_peer(node_clus(n), mm->relay)) != NULL)
		return p;
	return route_to(n, room_id(mr), ROOM_ID_LEN);
}

/*
 * SUBSCRIBE with `after` to a room relayed elsewhere: a client resuming (its
 * library moved here from another node). It has joined the mirror, which
 * delivers every push the relay sends from now on; the pushes it missed
 * before that (after `after`, up to the relay's seq when the relay reads this)
 * come from the relay's ring: SUB_REPLAY [109, rid, room, after] goes in a FWD
 * behind the NODE_SUB, on the same link, and its DELIVERs and its OK (the
 * first seq it delivers from) come back in FWD_REPLY to the client, as the
 * answer to its SUBSCRIBE. The two paths overlap and may interleave: the
 * client's library drops seqs it has and orders the rest (docs/client.md).
 */
static void mirror_replay(struct node *n, struct conn *c, const struct wire_msg *m, struct peer *p)
{
	struct wire_buf inner;
	wire_buf_init(&inner);
	msgpack_packer *pk = wire_begin(&inner, WIRE_SUB_REPLAY, m->rid, 2);
	wire_pack_str(pk, m->f[0].s.ptr, m->f[0].s.len);
	msgpack_pack_uint64(pk, m->f[2].u);
	wire_end(&inner, 0);
	if (forward(n, p, c, inner.p, inner.len, m->f[0].s.ptr) < 0)
		fail_unreachable(c, m->rid);
	wire_buf_free(&inner);
}

/* SUBSCRIBE to a room relayed elsewhere: the client joins the local
 * mirror; the relay hears of the new count, and its answer (unknown_room, or
 * OK) goes to the client. */
static void mirror_subscribe(struct node *n, struct conn *c, const struct wire_msg *m,
			     struct peer *p)
{
	struct route *r = node_route(n);
	const struct wire_str *id = &m->f[0].s;
	if (id->len != ROOM_ID_LEN) {
		conn_error(c, m->rid, WIRE_E_UNKNOWN_ROOM, "no room with this id");
		return;
	}
	struct room *mr = rooms_find(r->mirrors, S(m->f[0]));
	if (!mr) {
		mr = rooms_create_id(r->mirrors, S(m->f[0]), "", 0, node_now_ms(n));
		if (!mr) {
			conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory subscribing");
			return;
		}
		room_set_marks(mr, ROUTE_MIRROR);
	}
	struct mirror_meta *mm = meta_of(r, room_id(mr), 1);
	if (mm && !mm->orphan_since)
		snprintf(mm->relay, sizeof(mm->relay), "%s", peer_name(p));
	/* The topic filter and the subscription bookkeeping are the local
	 * node's, exactly as for a room relayed here. */
	int code = ops_subscribe_local(n, c, mr, m);
	if (code) {
		if (room_sub_count(mr) == 0)
			route_mirror_changed(n, mr);
		return;
	}
	struct pend *pd = calloc(1, sizeof(*pd));
	if (!pd) {
		conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory subscribing");
		return;
	}
	pd->rid = route_new_rid(n);
	pd->p = p;
	pd->sid = conn_sid(c);
	pd->client_rid = m->rid;
	pd->quiet = m->nfields > 2;
	memcpy(pd->room, room_id(mr), ROOM_ID_LEN + 1);
	TAILQ_INSERT_TAIL(&r->pends, pd, next);
	node_sub(n, p, room_id(mr), room_sub_count(mr), pd->rid, 0, 0);
	/* The count just sent is current: no separate update is due. */
	room_set_marks(mr, room_marks(mr) & ~ROUTE_DIRTY);
	if (pd->quiet)
		mirror_replay(n, c, m, p);
}

static void mirror_unsubscribe(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct route *r = node_route(n);
	struct room *mr = rooms_find(r->mirrors, S(m->f[0]));
	struct room_sub *s = mr ? conn_find_sub(c, mr) : NULL;
	if (s)
		conn_unsubscribe(c, s); /* marks the mirror for an update */
	struct wire_buf *b = node_scratch(n);
	wire_enc_ok_nil(b, m->rid);
	conn_send(c, b);
}

/*
 * STREAM_REJOIN [305, rid, room, stream, offset] for a room relayed
 * elsewhere: the client's library moved here and takes up a stream it was
 * receiving. The client must be subscribed here (the mirror) and not take
 * the stream here already; the request goes to the relay with the
 * subscription's topics (the relay checks them and the destinations), at
 * most max_streams of a session at a time, since each makes the relay send
 * up to the bytes it keeps. The relay sends the client the kept bytes from
 * offset to its own offset directly (FWD_REPLY); its OK brings the
 * STREAM_OPENED and that offset, from which the client takes the stream
 * from this node's copy (rejoined()): the link is FIFO, so nothing is
 * missed or sent twice.
 */
static void mirror_rejoin(struct node *n, struct conn *c, const struct wire_msg *m, struct peer *p)
{
	struct route *r = node_route(n);
	struct room *mr = rooms_find(r->mirrors, S(m->f[0]));
	struct room_sub *sub = mr ? conn_find_sub(c, mr) : NULL;
	if (!sub || !m->rid) {
		conn_error(c, m->rid, WIRE_E_BAD_REQUEST,
			   m->rid ? "subscribe to the room before taking up one of its streams"
				  : "STREAM_REJOIN needs a request id");
		return;
	}
	if (m->f[1].s.len == 0 || m->f[1].s.len > WIRE_STREAM_ID_MAX) {
		conn_error(c, m->rid, WIRE_E_UNKNOWN_STREAM,
			   "no stream with this id is open in the room");
		return;
	}
	struct strm *cp = strms_find(r->rstrms, S(m->f[1]));
	for (size_t i = 0; cp && strm_room(cp) == mr && i < strm_receivers(cp); i++)
		if (strm_receiver(cp, i) == sub) {
			conn_error(c, m->rid, WIRE_E_BAD_REQUEST,
				   "this connection receives the stream already");
			return;
		}
	size_t waiting = 0;
	struct fwd *f;
	TAILQ_FOREACH(f, &r->fwds, next)
	if (f->sid == conn_sid(c) && f->type == WIRE_STREAM_REJOIN)
		waiting++;
	if (waiting >= node_cfg(n)->max_streams) {
		node_counters(n)->limits_hit++;
		conn_error(
		    c, m->rid, WIRE_E_LIMIT,
		    "too many streams being taken up at once on this connection (max_streams)");
		return;
	}
	struct wire_buf inner;
	wire_buf_init(&inner);
	msgpack_packer *pk = wire_begin(&inner, WIRE_STREAM_REJOIN, m->rid, 4);
	wire_pack_str(pk, S(m->f[0]));
	wire_pack_str(pk, S(m->f[1]));
	msgpack_pack_uint64(pk, m->f[2].u);
	msgpack_pack_array(pk, (uint32_t)room_sub_topic_count(sub));
	for (size_t i = 0; i < room_sub_topic_count(sub); i++)
		wire_pack_cstr(pk, room_sub_topic(sub, i));
	wire_end(&inner, 0);
	if (forward(n, p, c, inner.p, inner.len, room_id(mr)) < 0)
		fail_unreachable(c, m->rid);
	wire_buf_free(&inner);
}

int route_client(struct node *n, struct conn *c, const struct wire_msg *m, const uint8_t *raw,
		 size_t len)
{
	struct clus *cl = node_clus(n);
	struct peer *p;
	if (!cl)
		return 0;
	switch (m->type) {
	case WIRE_CREATE: {
		/* The id decides the relay: choose it here, then ask the relay
		 * (maybe this node) to create the room under it. */
		char id[ROOM_ID_LEN + 1];
		room_id_generate(id);
		if (!(p = route_to(n, id, ROOM_ID_LEN))) {
			struct wire_msg local = {.type = WIRE_CREATE_ID, .rid = m->rid, .nfields = 1};
			local.f[0].s.ptr = id;
			local.f[0].s.len = ROOM_ID_LEN;
			ops_create_id(n, c, &local);
			return 1;
		}
		struct wire_buf inner;
		wire_buf_init(&inner);
		msgpack_packer *pk = wire_begin(&inner, WIRE_CREATE_ID, m->rid, 1);
		wire_pack_str(pk, id, ROOM_ID_LEN);
		wire_end(&inner, 0);
		if (forward(n, p, c, inner.p, inner.len, NULL) < 0)
			fail_unreachable(c, m->rid);
		wire_buf_free(&inner);
		return 1;
	}
	case WIRE_REMOVE:
	case WIRE_GRANT:
	case WIRE_REVOKE:
	case WIRE_INFO:
	case WIRE_PUSH:
	case WIRE_STREAM_OPEN:
		if (!(p = route_to(n, S(m->f[0])))) {
			/* Relayed here (or nowhere yet): still behind the session's
			 * requests that wait for a relay. */
			if (m->type != WIRE_STREAM_OPEN && m->rid && node_route(n)->norphans &&
			    keep_orphan(n, c, raw, len))
				return 1;
			return 0;
		}
		if (m->type == WIRE_STREAM_OPEN && conn_rstream_add(c, S(m->f[1]), p, m->rid) < 0) {
			node_counters(n)->limits_hit++;
			conn_error(c, m->rid, WIRE_E_LIMIT,
				   "too many open streams on this connection (max_streams)");
			return 1;
		}
		if (forward(n, p, c, raw, len, m->f[0].s.len == ROOM_ID_LEN ? m->f[0].s.ptr : NULL) < 0)
			fail_unreachable(c, m->rid);
		return 1;
	case WIRE_SUBSCRIBE: {
		if (!(p = route_to(n, S(m->f[0]))))
			return 0;
		/* a mirror already subscribed somewhere: there */
		struct room *mr = rooms_find(node_route(n)->mirrors, S(m->f[0]));
		if (mr)
			p = mirror_peer(n, mr);
		mirror_subscribe(n, c, m, p);
		return 1;
	}
	case WIRE_STREAM_REJOIN: {
		if (!(p = route_to(n, S(m->f[0]))))
			return 0; /* relayed here: streams_rejoin() */
		struct room *mr = rooms_find(node_route(n)->mirrors, S(m->f[0]));
		if (mr)
			p = mirror_peer(n, mr); /* where its mirror is subscribed */
		mirror_rejoin(n, c, m, p);
		return 1;
	}
	case WIRE_UNSUBSCRIBE: {
		struct room *mr = rooms_find(node_route(n)->mirrors, S(m->f[0]));
		if (mr && conn_find_sub(c, mr)) {
			mirror_unsubscribe(n, c, m);
			return 1;
		}
		/* Not subscribed here: the relay says whether the room exists. */
		if (!(p = route_to(n, S(m->f[0]))))
			return 0;
		if (forward(n, p, c, raw, len, NULL) < 0)
			fail_unreachable(c, m->rid);
		return 1;
	}
	case WIRE_STREAM_CLAIM:
		/* To the room's relay, like the open: its chunks, close and
		 * abort follow the same way if it is answered OK (an ERROR
		 * takes the entry out, as for a refused open). */
		/* A claim again (the last was refused, or went elsewhere):
		 * the stream follows this one, here or to its relay. */
		conn_rstream_done(c, S(m->f[1]), 0);
		if (!(p = clus_route(cl, S(m->f[0]))))
			return 0;
		if (conn_rstream_add(c, S(m->f[1]), p, m->rid) < 0) {
			node_counters(n)->limits_hit++;
			conn_error(c, m->rid, WIRE_E_LIMIT,
				   "too many open streams on this connection (max_streams)");
			return 1;
		}
		if (forward(n, p, c, raw, len,
			    m->f[0].s.len == ROOM_ID_LEN ? m->f[0].s.ptr : NULL) < 0) {
			conn_rstream_refused(c, m->rid);
			fail_unreachable(c, m->rid);
		}
		return 1;
	case WIRE_STREAM_CHUNK:
	case WIRE_STREAM_CLOSE:
	case WIRE_STREAM_ABORT:
		if (!conn_rstream_has(c, S(m->f[0])))
			return 0;
		/* p is NULL while the stream waits for a new relay: chunks and
		 * the close are kept, and go when it says where it resumes. */
		p = conn_rstream(c, S(m->f[0]));
		if (m->type == WIRE_STREAM_CHUNK) {
			conn_rstream_keep(c, S(m->f[0]), raw, len, m->rid, m->f[1].u,
					  m->f[2].s.len);
		} else if (m->type == WIRE_STREAM_CLOSE) {
			conn_rstream_closing(c, S(m->f[0]), m->rid);
			conn_rstream_keep(c, S(m->f[0]), raw, len, m->rid, UINT64_MAX, 0);
		} else {
			conn_rstream_done(c, S(m->f[0]), 0);
			if (!p) {
				/* a new relay that resumes it hears of the abort then */
				struct wire_buf *b = node_scratch(n);
				wire_enc_ok_nil(b, m->rid);
				conn_send(c, b);
				return 1;
			}
		}
		if (!p)
			return 1;
		if (forward(n, p, c, raw, len, NULL) < 0)
			fail_unreachable(c, m->rid);
		return 1;
	}
	return 0;
}

static void no_send(void *arg, const uint8_t *frame, size_t len)
{
	(void)arg, (void)frame, (void)len;
}

/* A relay handed the room to another node before this node heard (or
 * keeps it while another node comes first in its list): the
 * request goes there (a few times at most), in the order the answers
 * come, which is the order the requests went. Returns 0 to give the
 * client the error instead. */
static int moved(struct node *n, struct conn *c, struct fwd *fw, const struct wire_str *to)
{
	char name[MEMB_NAME_MAX + 1];
	struct peer *p;
	if (to->len == 0 || to->len > MEMB_NAME_MAX || fw->moves >= 8)
		return 0;
	memcpy(name, to->ptr, to->len);
	name[to->len] = '\0';
	if (!(p = clus_peer(node_clus(n), name))) {
		/* A node this one has not heard of yet (it just joined): the
		 * request waits for a relay, as when one is lost, and goes
		 * where placement says once membership changes. */
		fw->p = NULL;
		fw->since = node_now_ms(n);
		node_route(n)->norphans++;
		return 1;
	}
	if (fwd_send(n, p, fw->sid, conn_identity(c), conn_identity_len(c), fw->frame, fw->len,
		     fwd_key(c)) < 0)
		return 0;
	fw->moves++;
	fw->p = p;
	conn_note_peer(c, p);
	if (fw->has_room)
		hint_set(n, fw->room, name); /* the session's next requests go there */
	struct wire_msg m;
	size_t used;
	if (fw->type == WIRE_STREAM_OPEN &&
	    wire_parse(node_route(n)->inner, fw->frame, fw->len, &m, &used) == WIRE_OK_)
		/* its chunks follow it (nothing is kept before the OK) */
		conn_rstream_resume(c, S(m.f[1]), p, 0, no_send, NULL);
	return 1;
}

static void resend(struct node *n);
static struct strm *copy_open(struct node *n, struct peer *p, struct room *mr,
			      const struct wire_msg *m);

/* The relay's OK to a STREAM_REJOIN: [offset, opened] (the stream goes on
 * here: the client takes it from this node's copy from offset, made now
 * from the STREAM_OPENED if there is none), or offset alone (it was
 * closing: the client had its END in the relay's replay). The client gets
 * OK [offset]. val points into the decoder's zone, which parsing the
 * OPENED reuses: what is needed is copied first. */
static void rejoined(struct node *n, struct conn *c, struct peer *p, uint64_t rid,
		     const msgpack_object *val)
{
	struct route *r = node_route(n);
	uint64_t off = 0;
	uint8_t *op = NULL;
	size_t oplen = 0;
	if (val && val->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		off = val->via.u64;
	} else if (val && val->type == MSGPACK_OBJECT_ARRAY && val->via.array.size == 2 &&
		   val->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		   val->via.array.ptr[1].type == MSGPACK_OBJECT_BIN) {
		off = val->via.array.ptr[0].via.u64;
		oplen = val->via.array.ptr[1].via.bin.size;
		if ((op = malloc(oplen ? oplen : 1)) != NULL)
			memcpy(op, val->via.array.ptr[1].via.bin.ptr, oplen);
	}
	struct wire_msg om;
	size_t used;
	const char *refuse = NULL;
	if (op && p && wire_parse(r->inner, op, oplen, &om, &used) == WIRE_OK_ && used == oplen &&
	    om.type == WIRE_STREAM_OPENED) {
		struct room *mr = rooms_find(r->mirrors, S(om.f[0]));
		struct room_sub *sub = mr ? conn_find_sub(c, mr) : NULL;
		struct strm *s = strms_find(r->rstrms, S(om.f[1]));
		if (sub && !s && (s = copy_open(n, p, mr, &om)) != NULL) {
			strm_set_offset(s, off);
			strm_set_credit_sent(s, off + node_cfg(n)->stream_window);
		}
		if (sub && s && strm_room(s) == mr && strm_sender(s) == p &&
		    !strm_closing(s, NULL)) {
			/* Every byte below off came on the link before the OK,
			 * and none after it yet: the copy is at off. */
			if (strm_offset(s) != off)
				vlog(node_log(n), LOG_WARN,
				     "stream %s: taken up at %llu, this node's copy is at %llu",
				     strm_id(s), (unsigned long long)off,
				     (unsigned long long)strm_offset(s));
			if (strm_add_receiver(s, sub) < 0)
				refuse = "out of memory";
		} else if (sub) {
			/* (a copy whose relay went, waiting to re-attach) */
			refuse = "this node's copy of the stream cannot take the client now";
			vlog(node_log(n), LOG_WARN, "stream %.*s: taken up at the relay but %s",
			     (int)om.f[1].s.len, om.f[1].s.ptr, refuse);
		}
	}
	free(op);
	if (refuse) {
		conn_error(c, rid, WIRE_E_INTERNAL, refuse);
		return;
	}
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_OK, rid, 1);
	msgpack_pack_uint64(pk, off);
	wire_end(b, 0);
	conn_send(c, b);
}

/* FWD_REPLY [502, 0, sid, frame]: a frame for one of our clients. */
static void on_fwd_reply(struct node *n, const struct wire_msg *m)
{
	struct conn *c = conns_find_sid(node_conns(n), m->f[0].u);
	const struct wire_str *f = &m->f[1].s;
	if (!c || f->len < WIRE_HDR + 3)
		return;
	/* Peek at the inner frame to retire remote streams that are over:
	 * a STREAM_END names the stream; an OK/ERROR may answer a CLOSE. */
	struct route *r = node_route(n);
	struct wire_msg in;
	size_t used;
	if (wire_parse(r->inner, (const uint8_t *)f->ptr, f->len, &in, &used) == WIRE_OK_) {
		if (in.type == WIRE_STREAM_END)
			conn_rstream_done(c, S(in.f[0]), 0);
		else if (in.type == WIRE_STREAM_CREDIT)
			/* taken by every receiver and held by the first backup:
			 * no new relay will ask for these bytes again */
			conn_rstream_acked(c, S(in.f[0]), in.f[1].u);
		else if (in.type == WIRE_OK && in.rid == 0)
			return; /* the answer to an abort this node sent itself */
		else if ((in.type == WIRE_OK || in.type == WIRE_ERROR) &&
			 conn_rstream_is_close(c, in.rid))
			/* a close is kept with its stream, not with the requests */
			conn_rstream_done(c, NULL, 0, in.rid);
		else if ((in.type == WIRE_OK || in.type == WIRE_ERROR) && in.rid) {
			struct fwd *fw;
			TAILQ_FOREACH(fw, &r->fwds, next)
				if (fw->sid == conn_sid(c) && fw->rid == in.rid)
					break;
			if (!fw) {
				/* Answered already: by the relay it went to first,
				 * or by the one it was sent again to. */
				node_counters(n)->dup_replies++;
				return;
			}
			/* `moved`: the node did not act on it, so any request
			 * may go again, to the relay it names */
			int move = in.type == WIRE_ERROR && in.f[0].u == WIRE_E_MOVED;
			if (move && moved(n, c, fw, &in.f[1].s)) {
				if (r->norphans)
					resend(n); /* those behind it may go now */
				return;
			}
			if (fw->type == WIRE_STREAM_REJOIN && in.type == WIRE_OK) {
				struct peer *from = fw->p;
				int waiters = fw->has_room && r->norphans;
				fwd_done(r, fw);
				rejoined(n, c, from, in.rid, in.nfields ? in.f[0].o : NULL);
				if (waiters)
					resend(n);
				return;
			}
			conn_rstream_done(c, NULL, 0, in.rid);
			if (in.type == WIRE_ERROR)
				conn_rstream_refused(c, in.rid);
			int waiters = fw->has_room && r->norphans;
			fwd_done(r, fw);
			if (waiters) {
				conn_send_raw(c, (const uint8_t *)f->ptr, f->len);
				resend(n);
				return;
			}
			if (move) {
				/* its message is a node's name: the client gets a
				 * sentence */
				conn_error(c, in.rid, WIRE_E_MOVED,
					   "the room is moving between nodes; try again");
				return;
			}
		}
	}
	conn_send_raw(c, (const uint8_t *)f->ptr, f->len);
}

static void attach(struct node *n, struct room *mr, struct peer *p);

/* A NODE_SUB answered `moved` (the room is kept by another relay, see
 * repl.c pin()): asked again there, the mirror subscribed there. 0 if it
 * cannot be (then the answer is an error like any other). */
static int sub_moved(struct node *n, struct pend *pd, const struct wire_str *to)
{
	struct route *r = node_route(n);
	char name[MEMB_NAME_MAX + 1];
	struct room *mr = rooms_find(r->mirrors, pd->room, ROOM_ID_LEN);
	struct mirror_meta *mm = meta_of(r, pd->room, 0);
	struct peer *p;
	if (!mr || !mm || pd->moves >= 8 || to->len == 0 || to->len > MEMB_NAME_MAX)
		return 0;
	memcpy(name, to->ptr, to->len);
	name[to->len] = '\0';
	if (!(p = clus_peer(node_clus(n), name)) || p == pd->p)
		return 0;
	snprintf(mm->relay, sizeof(mm->relay), "%s", name);
	mm->orphan_since = 0;
	hint_set(n, pd->room, name);
	if (!pd->sid) {
		/* a re-attachment: all of it, streams included */
		free(pd);
		attach(n, mr, p);
		return 1;
	}
	pd->p = p;
	pd->rid = route_new_rid(n);
	pd->moves++;
	TAILQ_INSERT_TAIL(&r->pends, pd, next);
	node_sub(n, p, room_id(mr), room_sub_count(mr), pd->rid, 0, 0);
	return 1;
}

/* The relay's answer to a NODE_SUB that a client waits for. */
static void on_node_sub_reply(struct node *n, struct peer *p, const struct wire_msg *m)
{
	struct route *r = node_route(n);
	struct pend *pd;
	TAILQ_FOREACH(pd, &r->pends, next)
		if (pd->rid == m->rid && pd->p == p)
			break;
	if (!pd)
		return;
	TAILQ_REMOVE(&r->pends, pd, next);
	if (m->type == WIRE_ERROR && m->nfields > 1 && m->f[0].u == WIRE_E_MOVED &&
	    sub_moved(n, pd, &m->f[1].s))
		return;
	struct conn *c = pd->sid ? conns_find_sid(node_conns(n), pd->sid) : NULL;
	if (m->type == WIRE_OK && m->nfields > 0 &&
	    m->f[0].o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		/* The room's seq when the relay took the subscription: every
		 * DELIVER before it on this link is in, and the mirror resumes
		 * after it should its relay change before the next push (a
		 * mirror at seq 0 would otherwise be sent the whole ring). */
		struct room *mr = rooms_find(r->mirrors, pd->room, ROOM_ID_LEN);
		if (mr && m->f[0].o->via.u64 > room_seq(mr))
			room_set_seq(mr, m->f[0].o->via.u64);
	}
	if (!pd->sid && m->type != WIRE_OK) {
		/* A re-attachment the relay refused (it does not have the room
		 * yet, or any more): try again until the orphan deadline. */
		struct mirror_meta *mm = meta_of(r, pd->room, 0);
		if (mm) {
			mm->relay[0] = '\0';
			if (!mm->orphan_since)
				mm->orphan_since = node_now_ms(n);
		}
	}
	if (c && m->type == WIRE_OK) {
		if (!pd->quiet) {
			struct wire_buf *b = node_scratch(n);
			wire_enc_ok_nil(b, pd->client_rid);
			conn_send(c, b);
		}
	} else if (c) {
		/* Refused (unknown_room): undo the local part. */
		struct room *mr = rooms_find(r->mirrors, pd->room, ROOM_ID_LEN);
		struct room_sub *s = mr ? conn_find_sub(c, mr) : NULL;
		if (s)
			conn_unsubscribe(c, s);
		char msg[200];
		snprintf(msg, sizeof(msg), "%.*s", m->nfields > 1 ? (int)m->f[1].s.len : 0,
			 m->nfields > 1 ? m->f[1].s.ptr : "");
		/* a resuming client hears it from its SUB_REPLAY */
		if (!pd->quiet)
			conn_error(c, pd->client_rid, m->nfields ? (int)m->f[0].u : WIRE_E_INTERNAL,
				   msg);
	}
	free(pd);
}

/* A shared copy of a frame from the relay, for local receivers. */
static struct blob *blob_of(const uint8_t *raw, size_t len)
{
	struct blob *b = blob_new(len);
	if (b)
		memcpy(blob_data(b), raw, len);
	return b;
}

static void on_deliver(struct node *n, struct peer *p, const struct wire_msg *m,
		       const uint8_t *raw, size_t len)
{
	struct route *r = node_route(n);
	struct room *mr = rooms_find(r->mirrors, S(m->f[0]));
	if (!mr) {
		/* A new relay that took this node's subscription over from the
		 * old one's state (repl.c take_subs), but nobody here
		 * subscribes any more: unsubscribe there. */
		if (m->f[0].s.len == ROOM_ID_LEN)
			node_sub(n, p, m->f[0].s.ptr, 0, 0, 0, 0);
		return;
	}
	uint64_t origin = m->nfields > 5 ? m->f[5].u : 0;
	/* The mirror's seq is the last one delivered here: a new relay
	 * resumes after it, and a replay may repeat what came before. */
	if (m->f[1].u <= room_seq(mr))
		return;
	/* From a relay this mirror has not attached to yet (it took the
	 * room over and this node's subscription with it): only the next
	 * seq; past a gap, the replay of the re-attachment brings them all. */
	if (m->f[1].u != room_seq(mr) + 1) {
		struct mirror_meta *mm = meta_of(r, room_id(mr), 0);
		if (!mm || strcmp(mm->relay, peer_name(p)) != 0)
			return;
	}
	room_set_seq(mr, m->f[1].u);
	struct blob *frame = blob_of(raw, len);
	if (!frame)
		return;
	struct node_counters *k = node_counters(n);
	struct room_sub *s, *next;
	for (s = room_subs(mr); s; s = next) {
		next = room_sub_next(s);
		struct conn *to = room_sub_who(s);
		if (conn_sid(to) == origin)
			continue;
		if (conn_send_blob(to, frame) == 0) {
			k->deliveries++;
			k->delivered_bytes += m->f[4].s.len;
		}
	}
	blob_unref(frame);
}

static void end_relayed(struct node *n, struct strm *s, const char *reason);

static void on_room_closed(struct node *n, const struct wire_msg *m, const uint8_t *raw,
			   size_t len)
{
	struct route *r = node_route(n);
	struct room *mr = rooms_find(r->mirrors, S(m->f[0]));
	if (!mr)
		return;
	size_t pos = 0;
	struct strm *st;
	while ((st = strms_next(r->rstrms, &pos)) != NULL) {
		/* A stream whose END already came from the relay has ended for
		 * its receivers: no second END. */
		if (strm_room(st) == mr && !strm_closing(st, NULL)) {
			end_relayed(n, st, "room closed");
			pos = 0;
		}
	}
	struct blob *frame = blob_of(raw, len);
	room_set_marks(mr, room_marks(mr) | ROUTE_GONE);
	struct room_sub *s, *next;
	for (s = room_subs(mr); s; s = next) {
		next = room_sub_next(s);
		struct conn *to = room_sub_who(s);
		/* Behind the room's queued stream frames, as on the relay. */
		if (!frame || conn_send_bulk(to, frame) == 0)
			conn_unsubscribe(to, s);
	}
	blob_unref(frame);
}

/* STREAM_ACK [505, 0, id, upto] back to the relay. */
static void send_ack(struct node *n, struct peer *p, const char *id, size_t idlen, uint64_t upto)
{
	struct route *r = node_route(n);
	wire_buf_reset(&r->buf);
	msgpack_packer *pk = wire_begin(&r->buf, WIRE_STREAM_ACK, 0, 2);
	wire_pack_str(pk, id, idlen);
	msgpack_pack_uint64(pk, upto);
	wire_end(&r->buf, 0);
	peer_send(p, r->buf.p, r->buf.len);
}

static int in_list(const msgpack_object *list, const char *s)
{
	size_t len = strlen(s);
	for (uint32_t i = 0; i < list->via.array.size; i++) {
		const msgpack_object *d = &list->via.array.ptr[i];
		if (d->type == MSGPACK_OBJECT_STR && d->via.str.size == len &&
		    memcmp(d->via.str.ptr, s, len) == 0)
			return 1;
	}
	return 0;
}

/* Sends a shared frame to the stream's local receivers. */
static void rs_fan_out(struct strm *s, const uint8_t *raw, size_t len, size_t data_len)
{
	struct blob *frame = blob_of(raw, len);
	if (!frame)
		return;
	if (data_len) {
		strm_inflight_add(s, data_len);
		blob_on_release(frame, strm_release_cb, s, data_len);
	}
	for (size_t i = 0; i < strm_receivers(s); i++) {
		struct conn *to = room_sub_who(strm_receiver(s, i));
		if (to)
			conn_send_bulk(to, frame);
	}
	blob_unref(frame);
}

/* This node's copy of a stream relayed by p, in mirror mr, with no
 * receivers yet. */
static struct strm *copy_open(struct node *n, struct peer *p, struct room *mr,
			      const struct wire_msg *m)
{
	const msgpack_object *size = m->f[6].o;
	int64_t sz = size->type == MSGPACK_OBJECT_POSITIVE_INTEGER && size->via.u64 <= INT64_MAX
			 ? (int64_t)size->via.u64
			 : -1;
	return strms_open(node_route(n)->rstrms, S(m->f[1]), mr, p, S(m->f[3]), sz,
			  node_cfg(n)->stream_window, node_now_ms(n));
}

/* [310, 0, room, id, sender, topic, name, mime, size, attrs, dests, ts, origin] */
static void on_opened(struct node *n, struct peer *p, const struct wire_msg *m, const uint8_t *raw,
		      size_t len)
{
	struct route *r = node_route(n);
	struct room *mr = rooms_find(r->mirrors, S(m->f[0]));
	if (!mr || strms_find(r->rstrms, S(m->f[1])))
		return; /* nobody here (its data is acknowledged as it comes) */
	const msgpack_object *dests = m->f[8].o;
	struct strm *s = copy_open(n, p, mr, m);
	if (!s)
		return;
	uint64_t origin = m->nfields > 10 ? m->f[10].u : 0;
	for (struct room_sub *sub = room_subs(mr); sub; sub = room_sub_next(sub)) {
		struct conn *to = room_sub_who(sub);
		if (conn_sid(to) == origin || !room_sub_wants(sub, S(m->f[3])))
			continue;
		if (dests->type == MSGPACK_OBJECT_ARRAY && dests->via.array.size &&
		    !in_list(dests, room_sub_identity(sub)))
			continue;
		strm_add_receiver(s, sub);
	}
	rs_fan_out(s, raw, len, 0);
}

static void on_data(struct node *n, struct peer *p, const struct wire_msg *m, const uint8_t *raw,
		    size_t len)
{
	struct strm *s = strms_find(node_route(n)->rstrms, S(m->f[0]));
	const struct wire_str *data = &m->f[2].s;
	uint64_t off = m->f[1].u;
	if (!s) {
		/* No receiver here: let the relay's window move on. */
		send_ack(n, p, S(m->f[0]), off + data->len);
		return;
	}
	if (strm_sender(s) != p) {
		/* From another node than the relay this mirror follows now (it
		 * went to another while views differed): not acknowledged, so
		 * that relay still keeps the bytes should the mirror come back
		 * (STREAM_REATTACH, streams_reattach). From the same node on
		 * another link (the relay holds a subscription of this node
		 * per link it came on): acknowledged, as that link's share. */
		if (strm_sender(s) && strcmp(peer_name(strm_sender(s)), peer_name(p)) == 0)
			send_ack(n, p, S(m->f[0]), off + data->len);
		return;
	}
	if (strm_closing(s, NULL))
		return;
	if (off != strm_offset(s)) {
		/* A new relay (or the same one over a new link) sends from
		 * where it holds the stream: what is here already is dropped,
		 * so no receiver sees a byte twice; a gap ends the stream. */
		if (off > strm_offset(s)) {
			/* Live bytes that passed the relay's replay of what
			 * this node lacks (sent before it read the
			 * STREAM_REATTACH): the replay covers them. */
			if (strm_resync(s))
				return;
			vlog(node_log(n), LOG_WARN,
			     "stream %s: bytes at %llu, expected %llu; ended", strm_id(s),
			     (unsigned long long)off, (unsigned long long)strm_offset(s));
			end_relayed(n, s, "bytes lost in a failover");
			return;
		}
		strm_set_resync(s, 0);
		if (off + data->len <= strm_offset(s))
			return;
		size_t skip = (size_t)(strm_offset(s) - off);
		struct blob *tail = streams_data_frame(strm_id(s), strm_offset(s), data->ptr + skip,
						       data->len - skip);
		if (!tail)
			return;
		strm_append(s, data->ptr + skip, data->len - skip, node_now_ms(n));
		rs_fan_out(s, blob_data(tail), blob_len(tail), data->len - skip);
		blob_unref(tail);
		return;
	}
	strm_set_resync(s, 0);
	strm_append(s, data->ptr, data->len, node_now_ms(n));
	rs_fan_out(s, raw, len, data->len);
}

static void end_relayed(struct node *n, struct strm *s, const char *reason)
{
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_STREAM_END, 0, 6);
	wire_pack_cstr(pk, strm_id(s));
	wire_pack_cstr(pk, "aborted");
	wire_pack_cstr(pk, reason);
	msgpack_pack_map(pk, 0);
	msgpack_pack_uint64(pk, strm_offset(s));
	msgpack_pack_nil(pk);
	wire_end(b, 0);
	rs_fan_out(s, b->p, b->len, 0);
	strms_end(node_route(n)->rstrms, s);
}

static void on_end(struct node *n, struct peer *p, const struct wire_msg *m, const uint8_t *raw,
		   size_t len)
{
	struct route *r = node_route(n);
	struct strm *s = strms_find(r->rstrms, S(m->f[0]));
	if (!s || strm_sender(s) != p || strm_closing(s, NULL))
		return; /* (an END replayed by a new relay: one is enough) */
	rs_fan_out(s, raw, len, 0);
	/* The END is queued behind the last chunks, which the local receivers
	 * may not have taken yet: the stream stays until they have, so that
	 * the relay hears the last acknowledgement (route_flush ends it). */
	strm_set_closing(s, 0);
	if (strm_inflight(s) == 0) {
		send_ack(n, p, S(m->f[0]), strm_offset(s));
		strms_end(r->rstrms, s);
	}
}

/* ---- at the relay ---- */

static struct conn *proxy_for(struct node *n, struct peer *p, uint64_t sid, const struct wire_str *who)
{
	struct route *r = node_route(n);
	struct proxy_key key = {p, sid};
	struct proxy_key *k = smap_get(r->proxies, &key, sizeof(key));
	struct conn *c;
	if (k) {
		/* The value is the key's allocation followed by the conn. */
		memcpy(&c, k + 1, sizeof(c));
		return c;
	}
	k = malloc(sizeof(*k) + sizeof(c));
	if (!k)
		return NULL;
	*k = key;
	c = conn_new_proxy(n, p, sid, who->ptr, who->len);
	if (!c || smap_put(r->proxies, k, sizeof(*k), k) < 0) {
		free(k);
		return NULL;
	}
	memcpy(k + 1, &c, sizeof(c));
	return c;
}

void route_proxy_gone(struct node *n, struct peer *p, uint64_t sid)
{
	struct route *r = node_route(n);
	struct proxy_key key = {p, sid};
	free(smap_del(r->proxies, &key, sizeof(key)));
}

/* Ends the proxy of session sid on link p: its client left (ended: its
 * streams end), or the link dropped (they wait to be claimed, streams.h). */
static void proxy_drop(struct node *n, struct peer *p, uint64_t sid, int ended)
{
	struct route *r = node_route(n);
	struct proxy_key key = {p, sid};
	struct proxy_key *k = smap_del(r->proxies, &key, sizeof(key));
	if (!k)
		return;
	struct conn *c;
	memcpy(&c, k + 1, sizeof(c));
	free(k);
	if (ended)
		conn_end_session(c);
	conn_close(c, 0, 0, NULL);
}

static void on_fwd(struct node *n, struct peer *p, const struct wire_msg *m)
{
	struct route *r = node_route(n);
	const struct wire_str *f = &m->f[2].s;
	struct conn *c = proxy_for(n, p, m->f[0].u, &m->f[1].s);
	if (!c)
		return;
	if (m->nfields > 3 && m->f[3].u)
		conn_set_push_key(c, m->f[3].u);
	struct wire_msg in;
	size_t used;
	if (wire_parse(r->inner, (const uint8_t *)f->ptr, f->len, &in, &used) != WIRE_OK_ ||
	    used != f->len) {
		/* The client's node checked the frame: this is a broken node. */
		conn_error(c, 0, WIRE_E_BAD_REQUEST, "a forwarded frame does not parse");
		return;
	}
	ops_dispatch(n, c, &in, (const uint8_t *)f->ptr, f->len);
}

static void on_node_sub(struct node *n, struct peer *p, const struct wire_msg *m,
			const uint8_t *raw, size_t len)
{
	struct room *r = rooms_find(node_rooms(n), S(m->f[0]));
	struct wire_buf *b = node_scratch(n);
	/* A room another node keeps while this one comes first in its list
	 * (pinned by its streams): subscribe there. */
	const char *to;
	if (!r && m->rid && m->f[0].s.len == ROOM_ID_LEN &&
	    (to = repl_pinned_to(n, m->f[0].s.ptr)) != NULL) {
		wire_enc_error(b, m->rid, WIRE_E_MOVED, to);
		peer_send(p, b->p, b->len);
		return;
	}
	/* A room about to be relayed here (or catching up): the node waits
	 * with the clients' requests, in order. */
	if (park_peer_frame(n, p, m, raw, len))
		return;
	if (!r) {
		if (m->rid) {
			wire_enc_error(b, m->rid, WIRE_E_UNKNOWN_ROOM, "no room with this id");
			peer_send(p, b->p, b->len);
		}
		return;
	}
	struct room_sub *s;
	for (s = room_subs(r); s; s = room_sub_next(s))
		if (room_sub_who(s) == p)
			break;
	int changed = 0; /* the subscribing nodes: part of the room's state */
	if (m->f[1].u == 0) {
		if (s) {
			room_unsubscribe(s);
			s = NULL;
			changed = 1;
		}
	} else if (!s) {
		s = room_subscribe(r, p);
		if (s) {
			room_sub_set_peer(s, m->f[1].u);
			changed = 1;
		}
	} else {
		room_sub_set_peer(s, m->f[1].u);
	}
	if (changed)
		repl_room_state(n, r);
	/* A node coming back (after a takeover, or a lost link) says the last
	 * seq it delivered: it gets what it missed that the ring still has,
	 * ahead of the OK. */
	if (s && m->nfields > 2)
		repl_replay(n, r, m->f[2].u, p);
	/* Coming back, it names the streams it still takes (STREAM_REATTACH,
	 * right behind): it is waited for in no other. */
	if (m->nfields > 2)
		streams_forget_waits(n, r, peer_name(p));
	if (m->rid) {
		/* OK [3, rid, seq]: every push up to seq is ahead of it on the
		 * link or not for this subscriber; the mirror resumes after. */
		b = node_scratch(n); /* (the replay and the state used it) */
		msgpack_packer *pk = wire_begin(b, WIRE_OK, m->rid, 1);
		msgpack_pack_uint64(pk, repl_released(n, r));
		wire_end(b, 0);
		peer_send(p, b->p, b->len);
	}
}

static void on_ack(struct node *n, struct peer *p, const struct wire_msg *m)
{
	struct strm *s = strms_find(node_strms(n), S(m->f[0]));
	if (s)
		strm_peer_ack(s, p, m->f[1].u);
}

static void attach(struct node *n, struct room *mr, struct peer *p);

/* The relay handed the room on: the mirror follows it now. */
static void on_room_moved(struct node *n, const struct wire_msg *m)
{
	struct route *r = node_route(n);
	struct room *mr = rooms_find(r->mirrors, S(m->f[0]));
	struct mirror_meta *mm = mr ? meta_of(r, room_id(mr), 0) : NULL;
	char name[MEMB_NAME_MAX + 1];
	if (!mm || room_sub_count(mr) == 0 || (room_marks(mr) & ROUTE_GONE) ||
	    m->f[1].s.len == 0 || m->f[1].s.len > MEMB_NAME_MAX)
		return;
	memcpy(name, m->f[1].s.ptr, m->f[1].s.len);
	name[m->f[1].s.len] = '\0';
	struct clus *cl = node_clus(n);
	if (strcmp(name, clus_self(cl)) == 0 || strcmp(name, mm->relay) == 0)
		return; /* this node's own (route_took_over), or known already */
	struct peer *p = clus_peer(cl, name);
	if (!p)
		return; /* a node not heard of yet: the orphan path re-attaches */
	vlog(node_log(n), LOG_INFO, "room %.6s...: moved to %s, subscribing there after seq %llu",
	     room_id(mr), name, (unsigned long long)room_seq(mr));
	snprintf(mm->relay, sizeof(mm->relay), "%s", name);
	mm->orphan_since = 0;
	attach(n, mr, p);
}

/* ---- a stream taken over: its sender's node sends again ---- */

struct resend_ctx {
	struct node *n;
	struct peer *p;
	struct conn *c;
};

static void resend_remote(void *arg, const uint8_t *frame, size_t len)
{
	struct resend_ctx *x = arg;
	fwd_send(x->n, x->p, conn_sid(x->c), conn_identity(x->c), conn_identity_len(x->c), frame,
		 len, fwd_key(x->c));
}

static void resend_local(void *arg, const uint8_t *frame, size_t len)
{
	struct resend_ctx *x = arg;
	struct wire_msg m;
	size_t used;
	if (wire_parse(node_route(x->n)->inner, frame, len, &m, &used) == WIRE_OK_)
		ops_dispatch(x->n, x->c, &m, frame, len);
}

/* STREAM_RESUME [524, 0, stream, sid, offset] from a new relay: the stream
 * of the session whose id or publisher key is sid goes on there from
 * offset. A session or stream that is gone is ended there (an abort in its
 * name). */
static void on_resume(struct node *n, struct peer *p, const struct wire_msg *m)
{
	struct conn *c = conns_find_sender(node_conns(n), m->f[1].u, S(m->f[0]));
	struct resend_ctx x = {n, p, c};
	if (c && conn_rstream_resume(c, S(m->f[0]), p, m->f[2].u, resend_remote, &x) == 0) {
		conn_note_peer(c, p);
		vlog(node_log(n), LOG_INFO, "stream %.*s: resumed at %s from offset %llu",
		     (int)m->f[0].s.len, m->f[0].s.ptr, peer_name(p),
		     (unsigned long long)m->f[2].u);
		return;
	}
	struct wire_buf inner;
	wire_buf_init(&inner);
	msgpack_packer *pk = wire_begin(&inner, WIRE_STREAM_ABORT, 0, 2);
	wire_pack_str(pk, S(m->f[0]));
	wire_pack_cstr(pk, c ? "the sender gave the stream up" : "the sender is gone");
	wire_end(&inner, 0);
	fwd_send(n, p, m->f[1].u, c ? conn_identity(c) : "", c ? conn_identity_len(c) : 0, inner.p,
		 inner.len, 0);
	wire_buf_free(&inner);
	if (!c) {
		wire_buf_reset(&node_route(n)->buf);
		pk = wire_begin(&node_route(n)->buf, WIRE_SESSION_END, 0, 1);
		msgpack_pack_uint64(pk, m->f[1].u);
		wire_end(&node_route(n)->buf, 0);
		peer_send(p, node_route(n)->buf.p, node_route(n)->buf.len);
	}
}

void route_stream_resume(struct node *n, struct strm *s, const char *sender_node, uint64_t sid)
{
	struct clus *cl = node_clus(n);
	if (strcmp(sender_node, clus_self(cl)) == 0) {
		/* The sender is this node's client: what it kept goes through
		 * this node's handlers, and claims the stream. */
		struct conn *c =
		    conns_find_sender(node_conns(n), sid, strm_id(s), strlen(strm_id(s)));
		struct resend_ctx x = {n, NULL, c};
		if (c)
			conn_rstream_resume(c, strm_id(s), strlen(strm_id(s)), NULL, strm_offset(s),
					    resend_local, &x);
		return;
	}
	struct peer *p = clus_peer(cl, sender_node);
	if (!p)
		return; /* its node is gone too: the claim times out */
	struct route *r = node_route(n);
	wire_buf_reset(&r->buf);
	msgpack_packer *pk = wire_begin(&r->buf, WIRE_STREAM_RESUME, 0, 3);
	wire_pack_cstr(pk, strm_id(s));
	msgpack_pack_uint64(pk, sid);
	msgpack_pack_uint64(pk, strm_offset(s));
	wire_end(&r->buf, 0);
	peer_send(p, r->buf.p, r->buf.len);
}

void route_peer_frame(struct node *n, struct peer *p, const struct wire_msg *m, const uint8_t *raw,
		      size_t len)
{
	switch (m->type) {
	case WIRE_FWD: on_fwd(n, p, m); break;
	case WIRE_FWD_REPLY: on_fwd_reply(n, m); break;
	case WIRE_NODE_SUB: on_node_sub(n, p, m, raw, len); break;
	case WIRE_ROOM_MOVED: on_room_moved(n, m); break;
	case WIRE_SESSION_END: proxy_drop(n, p, m->f[0].u, 1); break;
	case WIRE_STREAM_ACK: on_ack(n, p, m); break;
	case WIRE_OK:
	case WIRE_ERROR:
		if (!stats_peer_error(node_stats(n), p, m))
			on_node_sub_reply(n, p, m);
		break;
	case WIRE_DELIVER: on_deliver(n, p, m, raw, len); break;
	case WIRE_ROOM_CLOSED: on_room_closed(n, m, raw, len); break;
	case WIRE_STREAM_OPENED: on_opened(n, p, m, raw, len); break;
	case WIRE_STREAM_DATA: on_data(n, p, m, raw, len); break;
	case WIRE_STREAM_END: on_end(n, p, m, raw, len); break;
	case WIRE_REPL_STATE:
	case WIRE_REPL_PUSH:
	case WIRE_REPL_GONE:
	case WIRE_REPL_ACK:
	case WIRE_REPL_NACK: repl_peer_frame(n, p, m); break;
	case WIRE_REPL_STREAM:
	case WIRE_REPL_CHUNK:
	case WIRE_REPL_CHUNK_ACK:
	case WIRE_REPL_STREAM_END:
		srepl_peer_frame(n, p, m);
		break;
	case WIRE_STREAM_RESUME:
		on_resume(n, p, m);
		break;
	case WIRE_STREAM_REATTACH:
		/* Behind its NODE_SUB, which may be held for the room: so is it. */
		if (!park_peer_frame(n, p, m, raw, len))
			streams_reattach(n, p, m);
		break;
	case WIRE_NODE_STATS_REQ: stats_peer_request(n, p, m); break;
	case WIRE_NODE_STATS: stats_peer_answer(node_stats(n), p, m); break;
	default:
		vlog(node_log(n), LOG_INFO, "link %s: ignored frame type %u", peer_name(p), m->type);
	}
}

void route_peer_gone(struct node *n, struct peer *p)
{
	struct route *r = node_route(n);
	/* At the relay: the node's subscriptions and its sessions end; its
	 * streams' receivers are waited for (it may come back, resuming). */
	streams_peer_gone(n, p);
	size_t pos = 0;
	struct room *room;
	while ((room = rooms_next(node_rooms(n), &pos)) != NULL) {
		struct room_sub *s, *next;
		for (s = room_subs(room); s; s = next) {
			next = room_sub_next(s);
			if (room_sub_who(s) == p)
				room_unsubscribe(s);
		}
	}
	struct proxy_key *k;
	pos = 0;
	while ((k = smap_next(r->proxies, &pos)) != NULL) {
		if (k->p == p) {
			proxy_drop(n, p, k->sid, 0);
			pos = 0;
		}
	}
	conns_forget_peer(node_conns(n), p);
	park_peer_gone(n, p);
	/* At a client's node: requests waiting on the link fail; mirrors and
	 * streams whose relay it was end. */
	struct pend *pd, *pnext;
	for (pd = TAILQ_FIRST(&r->pends); pd; pd = pnext) {
		pnext = TAILQ_NEXT(pd, next);
		if (pd->p != p)
			continue;
		if (pd->quiet && pd->sid) {
			/* A resuming client's: its subscription stays in the
			 * mirror, which waits for a new relay like the others
			 * (below) and subscribes there again; the client's
			 * answer comes from its SUB_REPLAY, kept and sent
			 * there too. (Undoing it here left a client told it
			 * resumed with no subscription on this node.) */
			TAILQ_REMOVE(&r->pends, pd, next);
			free(pd);
			continue;
		}
		struct wire_msg fake = {.type = WIRE_ERROR, .rid = pd->rid, .nfields = 2};
		fake.f[0].u = WIRE_E_INTERNAL;
		fake.f[1].s.ptr = "the room's relay node is unreachable";
		fake.f[1].s.len = (uint32_t)strlen(fake.f[1].s.ptr);
		on_node_sub_reply(n, p, &fake);
	}
	struct strm *s;
	pos = 0;
	while ((s = strms_next(r->rstrms, &pos)) != NULL) {
		if (strm_sender(s) != p)
			continue;
		/* One whose END already came just leaves (its link is going).
		 * The others wait for the mirror to attach again (to a new
		 * relay, or over a new link), which resumes them from their
		 * offset (STREAM_REATTACH); route_sweep ends them after
		 * ORPHAN_MS. */
		if (strm_closing(s, NULL)) {
			strms_end(r->rstrms, s);
			pos = 0;
		} else {
			strm_set_sender(s, NULL);
			strm_touch(s, node_now_ms(n));
		}
	}
	/* Mirrors and requests whose relay this was wait for a new one (or
	 * for a new link to the same one): route_members_changed and the
	 * sweep re-attach them, or close them after ORPHAN_MS. */
	uint64_t now = node_now_ms(n);
	pos = 0;
	struct mirror_meta *mm;
	while ((mm = smap_next(r->meta, &pos)) != NULL)
		if (!mm->orphan_since && strcmp(mm->relay, peer_name(p)) == 0)
			mm->orphan_since = now;
	/* Requests that went on another link to the same node go again too,
	 * in their order among these (two links between a pair of nodes must
	 * not reorder a session's requests); the node knows a push it has. */
	struct fwd *f, *fnext;
	for (f = TAILQ_FIRST(&r->fwds); f; f = fnext) {
		fnext = TAILQ_NEXT(f, next);
		if (!f->p)
			continue;
		if (f->p != p) {
			if (f->resend && strcmp(peer_name(f->p), peer_name(p)) == 0) {
				f->p = NULL;
				f->since = now;
				r->norphans++;
			}
			continue;
		}
		if (!f->resend) {
			struct conn *c = conns_find_sid(node_conns(n), f->sid);
			if (c && (f->type == WIRE_STREAM_OPEN || f->type == WIRE_STREAM_CLAIM))
				conn_rstream_refused(c, f->rid);
			if (c)
				conn_error(c, f->rid, WIRE_E_INTERNAL,
					   "the room's relay node went away; try again");
			fwd_done(r, f);
			continue;
		}
		f->p = NULL;
		f->since = now;
		r->norphans++;
	}
}

/* Closes a mirror for its subscribers: its relay is gone for good. */
static void mirror_lost(struct node *n, struct room *mr, const char *reason)
{
	struct wire_buf frame;
	wire_buf_init(&frame);
	msgpack_packer *pk = wire_begin(&frame, WIRE_ROOM_CLOSED, 0, 2);
	wire_pack_cstr(pk, room_id(mr));
	wire_pack_cstr(pk, reason);
	wire_end(&frame, 0);
	struct wire_msg msg = {.type = WIRE_ROOM_CLOSED, .nfields = 2};
	msg.f[0].s.ptr = room_id(mr);
	msg.f[0].s.len = ROOM_ID_LEN;
	on_room_closed(n, &msg, frame.p, frame.len);
	wire_buf_free(&frame);
}

/* Subscribes a mirror at relay p, resuming after the last seq delivered
 * here; the answer comes back to on_node_sub_reply (a pend with no
 * session). */
static void attach(struct node *n, struct room *mr, struct peer *p)
{
	struct route *r = node_route(n);
	struct pend *pd = calloc(1, sizeof(*pd));
	if (!pd)
		return;
	pd->rid = route_new_rid(n);
	pd->p = p;
	memcpy(pd->room, room_id(mr), ROOM_ID_LEN + 1);
	TAILQ_INSERT_TAIL(&r->pends, pd, next);
	node_sub(n, p, room_id(mr), room_sub_count(mr), pd->rid, 1, room_seq(mr));
	/* Streams the mirror's subscribers were getting go on from where
	 * they are: STREAM_REATTACH [525, 0, room, stream, offset, acked]. */
	size_t pos = 0;
	struct strm *s;
	while ((s = strms_next(r->rstrms, &pos)) != NULL) {
		if (strm_room(s) != mr || strm_closing(s, NULL))
			continue;
		strm_set_sender(s, p);
		strm_set_resync(s, 1);
		strm_set_credit_sent(s, strm_acked(s) + node_cfg(n)->stream_window);
		wire_buf_reset(&r->buf);
		msgpack_packer *pk = wire_begin(&r->buf, WIRE_STREAM_REATTACH, 0, 4);
		wire_pack_str(pk, room_id(mr), ROOM_ID_LEN);
		wire_pack_cstr(pk, strm_id(s));
		msgpack_pack_uint64(pk, strm_offset(s));
		msgpack_pack_uint64(pk, strm_acked(s));
		wire_end(&r->buf, 0);
		peer_send(p, r->buf.p, r->buf.len);
	}
}

/* Whether streams of mirror mr come in from its relay (named relay) over a
 * live link. */
static int flowing(struct route *r, struct room *mr, const char *relay)
{
	size_t pos = 0;
	struct strm *s;
	while ((s = strms_next(r->rstrms, &pos)) != NULL) {
		struct peer *p = strm_sender(s);
		if (strm_room(s) == mr && p && !peer_is_gone(p) && strcmp(peer_name(p), relay) == 0)
			return 1;
	}
	return 0;
}

/* Points a mirror at its relay as placement now has it: a new relay (or a
 * new link to the same one) is subscribed to again, resuming after the
 * last seq delivered here. */
static void reattach(struct node *n, struct room *mr, struct mirror_meta *mm)
{
	struct clus *cl = node_clus(n);
	const char *relay;
	if (!cl || room_sub_count(mr) == 0 || (room_marks(mr) & ROUTE_GONE) ||
	    clus_placement(cl, room_id(mr), ROOM_ID_LEN, &relay, 1) == 0)
		return;
	if (strcmp(relay, clus_self(cl)) == 0)
		return; /* this node took the room over: route_took_over */
	mm->stays = 0;
	if (!mm->orphan_since && strcmp(relay, mm->relay) == 0)
		return;
	/* A stream flowing from a relay that lives goes on from it: that
	 * relay keeps the room until its streams end (repl.c pin()), then
	 * hands it over and says so (ROOM_MOVED). Moving now would drop its
	 * bytes on the way. */
	if (!mm->orphan_since && mm->relay[0] && flowing(node_route(n), mr, mm->relay)) {
		mm->stays = 1;
		return;
	}
	struct peer *p = clus_peer(cl, relay);
	if (!p)
		return;
	vlog(node_log(n), LOG_INFO, "room %.6s...: subscribing again at %s after seq %llu",
	     room_id(mr), relay, (unsigned long long)room_seq(mr));
	snprintf(mm->relay, sizeof(mm->relay), "%s", relay);
	mm->orphan_since = 0;
	attach(n, mr, p);
}

/* A SUB_REPLAY whose relay went: to the room's relay now, or answered here
 * if this node took the room over (a client may not send SUB_REPLAY itself,
 * so it cannot go through ops_dispatch). */
static void resend_replay(struct node *n, struct conn *c, const struct wire_msg *m,
			  const uint8_t *frame, size_t len)
{
	struct peer *p = route_to(n, S(m->f[0]));
	struct room *room;
	if (p) {
		if (forward(n, p, c, frame, len,
			    m->f[0].s.len == ROOM_ID_LEN ? m->f[0].s.ptr : NULL) < 0)
			fail_unreachable(c, m->rid);
	} else if ((room = rooms_find(node_rooms(n), S(m->f[0]))) != NULL) {
		repl_resume(n, room, m->f[1].u, c, m->rid);
	} else {
		fail_unreachable(c, m->rid);
	}
}

/* Sends kept requests without a relay again, through ops_dispatch, which
 * routes them as placement has them now (and keeps them again if they go
 * to another node). */
static void resend(struct node *n)
{
	struct route *r = node_route(n);
	TAILQ_HEAD(, fwd) todo = TAILQ_HEAD_INITIALIZER(todo);
	struct fwd *f, *next;
	for (f = TAILQ_FIRST(&r->fwds); f; f = next) {
		next = TAILQ_NEXT(f, next);
		if (f->p)
			continue;
		TAILQ_REMOVE(&r->fwds, f, next);
		r->nfwds--;
		r->fwd_bytes -= f->len;
		r->norphans--;
		TAILQ_INSERT_TAIL(&todo, f, next);
	}
	while ((f = TAILQ_FIRST(&todo)) != NULL) {
		TAILQ_REMOVE(&todo, f, next);
		struct conn *c = conns_find_sid(node_conns(n), f->sid);
		struct wire_msg m;
		size_t used;
		if (c && f->type == WIRE_CREATE_ID) {
			/* Any id will do for the client: a CREATE whose relay went
			 * away is made again, under a fresh id, wherever that
			 * id's placement says. */
			struct wire_buf b;
			wire_buf_init(&b);
			wire_begin(&b, WIRE_CREATE, f->rid, 0);
			wire_end(&b, 0);
			if (wire_parse(r->inner, b.p, b.len, &m, &used) == WIRE_OK_)
				ops_dispatch(n, c, &m, b.p, b.len);
			wire_buf_free(&b);
		} else if (c && f->type == WIRE_SUB_REPLAY &&
			   wire_parse(r->inner, f->frame, f->len, &m, &used) == WIRE_OK_) {
			resend_replay(n, c, &m, f->frame, f->len);
		} else if (c && wire_parse(r->inner, f->frame, f->len, &m, &used) == WIRE_OK_) {
			ops_dispatch(n, c, &m, f->frame, f->len);
		}
		free(f);
	}
}

void route_room_moved(struct node *n, struct room *room, struct peer *p, const char *relay)
{
	struct route *r = node_route(n);
	if (room_streams(room))
		streams_room_closed(n, room);
	struct room *mr = rooms_find(r->mirrors, room_id(room), ROOM_ID_LEN);
	if (!mr) {
		mr = rooms_create_id(r->mirrors, room_id(room), ROOM_ID_LEN, "", 0, node_now_ms(n));
		if (mr)
			room_set_marks(mr, ROUTE_MIRROR);
	}
	struct mirror_meta *mm = mr ? meta_of(r, room_id(mr), 1) : NULL;
	if (mm) {
		snprintf(mm->relay, sizeof(mm->relay), "%s", relay);
		mm->orphan_since = 0;
	}
	if (mr && room_seq(room) > room_seq(mr))
		room_set_seq(mr, room_seq(room));
	/* Local subscribers follow the room into the mirror; other nodes'
	 * subscriptions end here: they are told where the room went and
	 * re-attach there at once, without waiting for their own view of the
	 * cluster to name the new relay. */
	struct room_sub *s, *next;
	for (s = room_subs(room); s; s = next) {
		next = room_sub_next(s);
		if (room_sub_is_peer(s)) {
			/* ROOM_MOVED [513, 0, room, relay] */
			wire_buf_reset(&r->buf);
			msgpack_packer *pk = wire_begin(&r->buf, WIRE_ROOM_MOVED, 0, 2);
			wire_pack_str(pk, room_id(room), ROOM_ID_LEN);
			wire_pack_cstr(pk, relay);
			wire_end(&r->buf, 0);
			peer_send((struct peer *)room_sub_who(s), r->buf.p, r->buf.len);
			room_unsubscribe(s);
			continue;
		}
		struct conn *c = room_sub_who(s);
		if (mr && conn_subscribe(c, mr) == 0) {
			struct room_sub *ns = conn_find_sub(c, mr);
			room_sub_set_identity(ns, conn_identity(c), conn_identity_len(c));
			room_sub_copy_topics(ns, s);
		}
		conn_unsubscribe(c, s);
	}
	if (mr && room_sub_count(mr))
		attach(n, mr, p);
	rooms_destroy(node_rooms(n), room);
}

void route_took_over(struct node *n, struct room *nr)
{
	struct route *r = node_route(n);
	struct room *mr = rooms_find(r->mirrors, room_id(nr), ROOM_ID_LEN);
	if (!mr)
		return;
	/* Streams its subscribers were getting through the mirror: who,
	 * and how far they had it, before the subscriptions move. */
	struct held {
		struct strm *rs;
		struct conn **cs;
		size_t k;
	} *held = NULL;
	size_t nheld = 0, pos = 0;
	struct strm *st;
	while ((st = strms_next(r->rstrms, &pos)) != NULL) {
		if (strm_room(st) != mr || strm_closing(st, NULL))
			continue;
		struct held *v = realloc(held, (nheld + 1) * sizeof(*v));
		if (!v)
			break;
		held = v;
		held[nheld].rs = strm_ref(st);
		held[nheld].k = 0;
		held[nheld].cs = calloc(strm_receivers(st) + 1, sizeof(struct conn *));
		for (size_t i = 0; held[nheld].cs && i < strm_receivers(st); i++) {
			struct conn *c = room_sub_who(strm_receiver(st, i));
			if (c)
				held[nheld].cs[held[nheld].k++] = c;
		}
		nheld++;
	}
	/* This node's own subscribers move from the mirror into the room,
	 * and get what they missed. */
	uint64_t after = room_seq(mr);
	struct room_sub *s, *next;
	for (s = room_subs(mr); s; s = next) {
		next = room_sub_next(s);
		struct conn *c = room_sub_who(s);
		if (conn_subscribe(c, nr) == 0) {
			struct room_sub *ns = conn_find_sub(c, nr);
			room_sub_set_identity(ns, conn_identity(c), conn_identity_len(c));
			room_sub_copy_topics(ns, s);
			repl_replay_conn(n, nr, after, c);
		}
		room_set_marks(mr, room_marks(mr) | ROUTE_GONE);
		conn_unsubscribe(c, s);
	}
	/* ... and go on from there in the stream taken over from the replica,
	 * or end if there is none. */
	for (size_t h = 0; h < nheld; h++) {
		struct strm *rs = held[h].rs;
		struct strm *ns = strms_find(node_strms(n), strm_id(rs), strlen(strm_id(rs)));
		struct room_sub **subs = calloc(held[h].k + 1, sizeof(*subs));
		size_t k = 0;
		for (size_t i = 0; subs && i < held[h].k; i++) {
			struct room_sub *ns_sub = conn_find_sub(held[h].cs[i], nr);
			if (ns_sub)
				subs[k++] = ns_sub;
		}
		if (!ns || strm_room(ns) != nr || !subs ||
		    streams_attach_local(n, ns, subs, k, strm_offset(rs)) < 0) {
			struct wire_buf *b = node_scratch(n);
			msgpack_packer *pk = wire_begin(b, WIRE_STREAM_END, 0, 6);
			wire_pack_cstr(pk, strm_id(rs));
			wire_pack_cstr(pk, "aborted");
			wire_pack_cstr(pk, "the stream was lost with its relay");
			msgpack_pack_map(pk, 0);
			msgpack_pack_uint64(pk, strm_offset(rs));
			msgpack_pack_nil(pk);
			wire_end(b, 0);
			for (size_t i = 0; i < k; i++)
				if (room_sub_who(subs[i]))
					conn_send(room_sub_who(subs[i]), b);
		}
		free(subs);
		free(held[h].cs);
		if (strm_room(rs))
			strms_end(r->rstrms, rs);
		strm_unref(rs);
	}
	free(held);
}

/* A stream this node's client sent through a relay that went, and that
 * no new relay took up: the client hears it ended. */
static void rstream_lost(struct conn *c, const char *id, void *arg)
{
	struct node *n = arg;
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_STREAM_END, 0, 6);
	wire_pack_cstr(pk, id);
	wire_pack_cstr(pk, "aborted");
	wire_pack_cstr(pk, "relay lost");
	msgpack_pack_map(pk, 0);
	msgpack_pack_uint64(pk, 0);
	msgpack_pack_nil(pk);
	wire_end(b, 0);
	conn_send(c, b);
}

void route_sweep(struct node *n)
{
	struct route *r = node_route(n);
	uint64_t now = node_now_ms(n);
	size_t pos = 0;
	struct mirror_meta *mm;
	while ((mm = smap_next(r->meta, &pos)) != NULL) {
		if (!mm->orphan_since && !mm->stays)
			continue;
		struct room *mr = rooms_find(r->mirrors, mm->id, ROOM_ID_LEN);
		if (!mr)
			continue;
		reattach(n, mr, mm);
		if (mm->orphan_since && now - mm->orphan_since >= ORPHAN_MS) {
			mm->orphan_since = 0;
			mirror_lost(n, mr, "relay lost");
		}
	}
	/* Streams from a relay that went, not taken up again by a new one. */
	struct strm *st;
	pos = 0;
	while ((st = strms_next(r->rstrms, &pos)) != NULL) {
		if (!strm_sender(st) && now - strm_last_active(st) >= ORPHAN_MS) {
			end_relayed(n, st, "relay lost");
			pos = 0;
		}
	}
	conns_rstreams_expire(node_conns(n), now, 2 * ORPHAN_MS, rstream_lost, n);
	int orphans = 0;
	struct fwd *f, *next;
	for (f = TAILQ_FIRST(&r->fwds); f; f = next) {
		next = TAILQ_NEXT(f, next);
		if (f->p)
			continue;
		if (now - f->since < ORPHAN_MS) {
			orphans = 1;
			continue;
		}
		struct conn *c = conns_find_sid(node_conns(n), f->sid);
		if (c)
			conn_error(c, f->rid, WIRE_E_INTERNAL, "the room's relay node is unreachable");
		fwd_done(r, f);
	}
	if (orphans)
		resend(n);
}

void route_shrink(struct node *n, size_t max)
{
	wire_buf_shrink(&node_route(n)->buf, max);
}

void route_members_changed(struct node *n)
{
	struct route *r = node_route(n);
	/* Take over what this node now relays first, then re-attach mirrors
	 * and send kept requests to the relays placement now names. */
	park_members_changed(n);
	repl_members_changed(n);
	size_t pos = 0;
	struct mirror_meta *mm;
	while ((mm = smap_next(r->meta, &pos)) != NULL) {
		struct room *mr = rooms_find(r->mirrors, mm->id, ROOM_ID_LEN);
		if (mr)
			reattach(n, mr, mm);
	}
	resend(n);
}

void route_conn_gone(struct node *n, struct conn *c)
{
	struct peer *const *used;
	size_t k = conn_peers_used(c, &used);
	struct route *r = node_route(n);
	for (size_t i = 0; i < k; i++) {
		wire_buf_reset(&r->buf);
		msgpack_packer *pk = wire_begin(&r->buf, WIRE_SESSION_END, 0, 1);
		msgpack_pack_uint64(pk, conn_sid(c));
		wire_end(&r->buf, 0);
		peer_send(used[i], r->buf.p, r->buf.len);
	}
}

void route_mirror_changed(struct node *n, struct room *mirror)
{
	room_set_marks(mirror, room_marks(mirror) | ROUTE_DIRTY);
	node_schedule_reap(n);
}

void route_proxy_send(struct node *n, struct peer *p, uint64_t sid, const uint8_t *frame,
		      size_t len)
{
	struct route *r = node_route(n);
	wire_buf_reset(&r->buf);
	msgpack_packer *pk = wire_begin(&r->buf, WIRE_FWD_REPLY, 0, 2);
	msgpack_pack_uint64(pk, sid);
	wire_pack_bin(pk, frame, len);
	wire_end(&r->buf, 0);
	peer_send(p, r->buf.p, r->buf.len);
}

void route_flush(struct node *n)
{
	struct route *r = node_route(n);
	struct strm *s;
	while ((s = strms_pop_due(r->rstrms)) != NULL) {
		struct peer *p = strm_sender(s);
		/* A relayed stream's credit goes back to the relay as an
		 * acknowledgement (credit_sent keeps the last one + window). */
		uint64_t last = strm_credit_sent(s) - node_cfg(n)->stream_window;
		if (p && strm_acked(s) > last) {
			send_ack(n, p, strm_id(s), strlen(strm_id(s)), strm_acked(s));
			strm_set_credit_sent(s, strm_acked(s) + node_cfg(n)->stream_window);
		}
		if (strm_room(s) && strm_closing(s, NULL) && strm_inflight(s) == 0)
			strms_end(r->rstrms, s);
		strm_unref(s);
	}
	/* Mirrors: counts to tell, empty ones to drop. */
	struct clus *cl = node_clus(n);
	size_t pos = 0;
	struct room *mr;
	while ((mr = rooms_next(r->mirrors, &pos)) != NULL) {
		unsigned marks = room_marks(mr);
		if (!(marks & ROUTE_DIRTY) && room_sub_count(mr))
			continue;
		struct peer *p = cl && !(marks & ROUTE_GONE) ? mirror_peer(n, mr) : NULL;
		if (p)
			node_sub(n, p, room_id(mr), room_sub_count(mr), 0, 0, 0);
		room_set_marks(mr, marks & ~ROUTE_DIRTY);
		if (room_sub_count(mr) == 0) {
			struct strm *st;
			size_t spos = 0;
			while ((st = strms_next(r->rstrms, &spos)) != NULL) {
				if (strm_room(st) == mr) {
					strms_end(r->rstrms, st);
					spos = 0;
				}
			}
			meta_drop(r, room_id(mr));
			rooms_destroy(r->mirrors, mr);
			pos = 0;
		}
	}
}

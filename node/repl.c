#include "node/repl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "cluster/memb.h"
#include "node/clus.h"
#include "node/conn.h"
#include "node/node.h"
#include "node/ops.h"
#include "node/park.h"
#include "node/peer.h"
#include "node/route.h"
#include "node/srepl.h"
#include "stream/blob.h"
#include "stream/room.h"
#include "stream/smap.h"
#include "stream/wire.h"

#define S(f)	   (f).s.ptr, (f).s.len
#define RING_BYTES (4u << 20) /* recent pushes kept per room */
#define RING_MAX   8192
#define REPLICA_GRACE_MS 30000 /* past the room idle timeout, for a replica */
#define HOLD_MS		 2000  /* the longest a push waits for its backup's ack */
#define HELD_BYTES	 (64u << 20) /* pushes waiting for acks, all rooms */
#define SUB_NODES_MAX	 64	     /* subscribing nodes named in a state */

/* One recent push: enough to replay it and to know it if it comes again. */
struct entry {
	uint64_t seq, sid, rid;
	struct blob *frame; /* its DELIVER */
};

struct ring {
	char id[ROOM_ID_LEN + 1];
	uint64_t sig;	/* the backups it was last sent to (a hash of their names) */
	uint64_t floor; /* a newer relay's seq this node adopted: the next push goes past it */
	uint64_t handed_ms; /* when this node last handed the room over (0: never) */
	char handed_to[MEMB_NAME_MAX + 1];
	char src[MEMB_NAME_MAX + 1]; /* a backup's: the relay that last sent the room's state */
	/* A backup's: the nodes subscribing to the room at its relay (the
	 * state's `nodes`), NUL-separated, nsubs of them: the room takes them
	 * back at a takeover, before each re-attaches. */
	char *subs;
	size_t nsubs;
	int pinned;		     /* a backup's: src keeps relaying the room, though this node
				      * comes first in its list, until its streams end */
	uint64_t state_ms;  /* when this node, relaying it, last sent its state */
	struct entry *e;
	size_t head, len, cap, bytes;
	uint64_t rid_hi; /* no entry's rid is above this (repl_seen's quick no) */
};

/* A push accepted here, waiting for the room's first backup to hold it
 * before it is delivered and acknowledged. */
struct held {
	TAILQ_ENTRY(held) next;
	char id[ROOM_ID_LEN];
	uint64_t seq, rid, t0_ns, since_ms;
	struct conn *c; /* NULL once the pusher is gone */
	struct blob *frame;
	size_t data_len;
};

/* An acknowledgement owed to a relay: sent once per loop turn, for the
 * highest seq held (REPL_ACK is cumulative). */
struct ack_due {
	char relay[MEMB_NAME_MAX + 1];
	char id[ROOM_ID_LEN];
	uint64_t seq;
};

#define ACKS_DUE_MAX 256
#define MISPLACED_MAX 1024

struct repl {
	struct ack_due due[ACKS_DUE_MAX];
	size_t ndue;
	/* Rooms relayed here while another node is first in their list: made
	 * here while the creating node's view lagged, or kept while they have
	 * open streams (pinned): handed over at a sweep once they have none. */
	char misplaced[MISPLACED_MAX][ROOM_ID_LEN];
	size_t nmisplaced;
	struct rooms *replicas; /* rooms backed up here */
	struct smap *rings;	/* room id -> ring, for rooms relayed or backed up here */
	TAILQ_HEAD(, held) held; /* accept order: per room, seq order */
	size_t nheld, held_bytes;
};

struct repl *repl_new(void)
{
	struct repl *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	TAILQ_INIT(&r->held);
	r->replicas = rooms_new(1u << 16);
	r->rings = smap_new();
	if (!r->replicas || !r->rings) {
		repl_free(r);
		return NULL;
	}
	return r;
}

static void ring_free(struct ring *g)
{
	for (size_t i = 0; i < g->len; i++)
		blob_unref(g->e[(g->head + i) % g->cap].frame);
	free(g->e);
	free(g->subs);
	free(g);
}

/* Keeps the state's subscribing nodes (an array of names) on ring g. */
static void set_subs(struct ring *g, const msgpack_object *a)
{
	free(g->subs);
	g->subs = NULL;
	g->nsubs = 0;
	if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size == 0)
		return;
	uint32_t k = a->via.array.size < SUB_NODES_MAX ? a->via.array.size : SUB_NODES_MAX;
	if (!(g->subs = malloc((size_t)k * (MEMB_NAME_MAX + 1))))
		return;
	size_t at = 0;
	for (uint32_t i = 0; i < k; i++) {
		const msgpack_object *o = &a->via.array.ptr[i];
		if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 ||
		    o->via.str.size > MEMB_NAME_MAX || memchr(o->via.str.ptr, 0, o->via.str.size))
			continue;
		memcpy(g->subs + at, o->via.str.ptr, o->via.str.size);
		at += o->via.str.size;
		g->subs[at++] = '\0';
		g->nsubs++;
	}
}

void repl_free(struct repl *r)
{
	if (!r)
		return;
	size_t pos = 0;
	struct ring *g;
	while (r->rings && (g = smap_next(r->rings, &pos)) != NULL)
		ring_free(g);
	struct held *h;
	while ((h = TAILQ_FIRST(&r->held)) != NULL) {
		TAILQ_REMOVE(&r->held, h, next);
		blob_unref(h->frame);
		free(h);
	}
	smap_free(r->rings);
	rooms_free(r->replicas);
	free(r);
}

size_t repl_replicas(const struct node *n)
{
	return rooms_count(node_repl((struct node *)n)->replicas);
}

static struct ring *ring_of(struct repl *r, const char *id, int make)
{
	struct ring *g = smap_get(r->rings, id, ROOM_ID_LEN);
	if (g || !make)
		return g;
	if (!(g = calloc(1, sizeof(*g))))
		return NULL;
	memcpy(g->id, id, ROOM_ID_LEN);
	if (smap_put(r->rings, g->id, ROOM_ID_LEN, g) < 0) {
		free(g);
		return NULL;
	}
	return g;
}

static void ring_drop(struct repl *r, const char *id)
{
	struct ring *g = smap_del(r->rings, id, ROOM_ID_LEN);
	if (g)
		ring_free(g);
}

/* Appends a push; the oldest go when the ring passes its bounds. */
static void ring_add(struct ring *g, uint64_t seq, uint64_t sid, uint64_t rid, struct blob *frame)
{
	if (g->len && g->e[(g->head + g->len - 1) % g->cap].seq >= seq)
		return; /* have it (a replay or a resend) */
	while (g->len && (g->len == RING_MAX || g->bytes + blob_len(frame) > RING_BYTES)) {
		struct entry *old = &g->e[g->head];
		g->bytes -= blob_len(old->frame);
		blob_unref(old->frame);
		g->head = (g->head + 1) % g->cap;
		g->len--;
	}
	if (g->len == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 16;
		struct entry *v = malloc(cap * sizeof(*v));
		if (!v)
			return;
		for (size_t i = 0; i < g->len; i++)
			v[i] = g->e[(g->head + i) % g->cap];
		free(g->e);
		g->e = v;
		g->head = 0;
		g->cap = cap;
	}
	g->e[(g->head + g->len) % g->cap] = (struct entry){seq, sid, rid, blob_ref(frame)};
	g->len++;
	if (rid > g->rid_hi)
		g->rid_hi = rid;
	g->bytes += blob_len(frame);
}

/* The room's backups as this node sees the cluster (names), at most max. */
static size_t backups(struct node *n, const char *id, const char **names, size_t max)
{
	struct clus *cl = node_clus(n);
	const char *list[16];
	if (!cl)
		return 0;
	size_t k = clus_placement(cl, id, ROOM_ID_LEN, list, clus_replicas(cl));
	size_t out = 0;
	for (size_t i = 0; i < k && out < max; i++)
		if (strcmp(list[i], clus_self(cl)) != 0)
			names[out++] = list[i];
	return out;
}

static void to_backups(struct node *n, const char *id, const uint8_t *frame, size_t len)
{
	const char *names[16];
	size_t k = backups(n, id, names, 16);
	for (size_t i = 0; i < k; i++) {
		struct peer *p = clus_peer(node_clus(n), names[i]);
		if (p)
			peer_send(p, frame, len);
	}
}

size_t repl_backups(struct node *n, const char *id, const char **names, size_t max)
{
	return backups(n, id, names, max);
}

void repl_to_backups(struct node *n, const char *id, const uint8_t *frame, size_t len)
{
	to_backups(n, id, frame, len);
}

/* The link to the room's first backup, as this node sees the cluster. */
static struct peer *first_backup(struct node *n, const char *id)
{
	const char *names[1];
	if (backups(n, id, names, 1) == 0)
		return NULL;
	return clus_peer(node_clus(n), names[0]);
}

static void release(struct node *n, const char *id, uint64_t upto);

int repl_hold(struct node *n, struct room *r, uint64_t seq, struct conn *c, uint64_t rid,
	      struct blob *frame, size_t data_len, uint64_t t0_ns)
{
	struct repl *rp = node_repl(n);
	if (!node_clus(n) || !first_backup(n, room_id(r)))
		return 0; /* no backup to wait for */
	struct held *h = rp->held_bytes + blob_len(frame) <= HELD_BYTES ? malloc(sizeof(*h)) : NULL;
	if (!h) {
		/* Past the bound (a backup that acknowledges slower than
		 * publishers push) or out of memory: this push goes now, after
		 * the room's held ones (in order), without its ack; counted. */
		node_counters(n)->repl_ack_timeouts++;
		release(n, room_id(r), UINT64_MAX);
		return 0;
	}
	*h = (struct held){.seq = seq, .rid = rid, .t0_ns = t0_ns, .since_ms = node_now_ms(n),
			   .c = c, .frame = blob_ref(frame), .data_len = data_len};
	memcpy(h->id, room_id(r), ROOM_ID_LEN);
	TAILQ_INSERT_TAIL(&rp->held, h, next);
	rp->nheld++;
	rp->held_bytes += blob_len(frame);
	return 1;
}

/* Delivers and acknowledges the held pushes of room id up to seq (all:
 * every one of that room), in seq order. */
static void release(struct node *n, const char *id, uint64_t upto)
{
	struct repl *rp = node_repl(n);
	struct room *r = rooms_find(node_rooms(n), id, ROOM_ID_LEN);
	struct held *h, *next;
	for (h = TAILQ_FIRST(&rp->held); h; h = next) {
		next = TAILQ_NEXT(h, next);
		if (memcmp(h->id, id, ROOM_ID_LEN) != 0 || h->seq > upto)
			continue;
		TAILQ_REMOVE(&rp->held, h, next);
		rp->nheld--;
		rp->held_bytes -= blob_len(h->frame);
		ops_push_done(n, r, h->c, h->rid, h->seq, h->frame, h->data_len, h->t0_ns);
		blob_unref(h->frame);
		free(h); /* (a consumer dropped by the fan-out only clears h->c of others) */
	}
}

uint64_t repl_released(struct node *n, const struct room *r)
{
	const struct held *h;
	TAILQ_FOREACH(h, &node_repl(n)->held, next)
		if (memcmp(h->id, room_id(r), ROOM_ID_LEN) == 0)
			return h->seq - 1; /* the room's oldest held push */
	return room_seq(r);
}

void repl_conn_gone(struct node *n, struct conn *c)
{
	struct held *h;
	TAILQ_FOREACH(h, &node_repl(n)->held, next)
		if (h->c == c)
			h->c = NULL;
}

/* Rooms whose held pushes wait for nothing any more (no backup) or for too
 * long (a backup that neither answers nor is declared dead). */
static void release_stuck(struct node *n)
{
	struct repl *rp = node_repl(n);
	uint64_t now = node_now_ms(n);
	for (int rounds = 0; rounds < 1024; rounds++) {
		struct held *h;
		TAILQ_FOREACH(h, &rp->held, next) {
			int late = now - h->since_ms >= HOLD_MS;
			if (late || !first_backup(n, h->id))
				break;
		}
		if (!h)
			return;
		if (now - h->since_ms >= HOLD_MS) {
			node_counters(n)->repl_ack_timeouts++;
			vlog(node_log(n), LOG_WARN,
			     "room %.6s...: no backup held push %llu in %d ms; delivered without",
			     h->id, (unsigned long long)h->seq, HOLD_MS);
		}
		char id[ROOM_ID_LEN];
		memcpy(id, h->id, ROOM_ID_LEN);
		release(n, id, UINT64_MAX);
	}
}

/* REPL_STATE; handover: STATE_HANDOVER, the receiver is to relay the room
 * from now on; STATE_PINNED, this node relays it although it is not first
 * in its list (its streams stay here until they end, see hand_over). */
enum { STATE_PLAIN = 0, STATE_HANDOVER = 1, STATE_PINNED = 2 };
static int rank_of(struct node *n, const char *id);
static void enc_state(struct wire_buf *b, const struct room *r, int handover)
{
	msgpack_packer *pk = wire_begin(b, WIRE_REPL_STATE, 0, 8);
	wire_pack_cstr(pk, room_id(r));
	wire_pack_cstr(pk, room_owner(r));
	msgpack_pack_array(pk, room_grant_count(r));
	for (size_t i = 0; i < room_grant_count(r); i++)
		wire_pack_cstr(pk, room_grant_at(r, i));
	msgpack_pack_uint64(pk, room_seq(r));
	msgpack_pack_uint64(pk, room_created(r));
	msgpack_pack_uint64(pk, room_epoch(r));
	msgpack_pack_uint64(pk, (uint64_t)handover);
	/* the nodes subscribing here: a new relay has them at once */
	uint32_t k = 0;
	for (const struct room_sub *sub = room_subs(r); sub; sub = room_sub_next(sub))
		k += room_sub_is_peer(sub) && room_sub_who(sub) && k < SUB_NODES_MAX;
	msgpack_pack_array(pk, k);
	uint32_t i = 0;
	for (const struct room_sub *sub = room_subs(r); sub && i < k; sub = room_sub_next(sub))
		if (room_sub_is_peer(sub) && room_sub_who(sub)) {
			wire_pack_cstr(pk, peer_name(room_sub_who(sub)));
			i++;
		}
	wire_end(b, 0);
}

static void enc_push(struct wire_buf *b, const char *id, const struct entry *e, uint64_t epoch)
{
	msgpack_packer *pk = wire_begin(b, WIRE_REPL_PUSH, 0, 6);
	wire_pack_str(pk, id, ROOM_ID_LEN);
	msgpack_pack_uint64(pk, e->seq);
	msgpack_pack_uint64(pk, e->sid);
	msgpack_pack_uint64(pk, e->rid);
	wire_pack_bin(pk, blob_data(e->frame), blob_len(e->frame));
	msgpack_pack_uint64(pk, epoch);
	wire_end(b, 0);
}

void repl_room_state(struct node *n, struct room *r)
{
	if (!node_clus(n))
		return;
	struct ring *g = ring_of(node_repl(n), room_id(r), 1);
	if (g)
		g->state_ms = node_now_ms(n);
	struct wire_buf *b = node_scratch(n);
	enc_state(b, r, rank_of(n, room_id(r)) > 0 ? STATE_PINNED : STATE_PLAIN);
	to_backups(n, room_id(r), b->p, b->len);
}

void repl_touch(struct node *n, struct room *r)
{
	if (!node_clus(n))
		return;
	/* Backups expire a replica that hears nothing for longer than the
	 * room idle timeout (repl_sweep): activity that is not a push (a
	 * stream) tells them the room lives, a few times per timeout. */
	struct ring *g = ring_of(node_repl(n), room_id(r), 0);
	if (!g || node_now_ms(n) - g->state_ms >= node_cfg(n)->room_idle_ms / 4)
		repl_room_state(n, r);
}

static int hand_over(struct node *n, struct room *r);

void repl_room_created(struct node *n, struct room *r)
{
	struct repl *rp = node_repl(n);
	if (!node_clus(n) || rank_of(n, room_id(r)) == 0 || rp->nmisplaced == MISPLACED_MAX)
		return;
	memcpy(rp->misplaced[rp->nmisplaced++], room_id(r), ROOM_ID_LEN);
}

void repl_sweep(struct node *n)
{
	struct repl *rp = node_repl(n);
	release_stuck(n);
	/* hand_over may add a room back (it still has streams): a copy */
	size_t k = rp->nmisplaced;
	char(*ids)[ROOM_ID_LEN] = k ? malloc(k * sizeof(*ids)) : NULL;
	if (ids)
		memcpy(ids, rp->misplaced, k * sizeof(*ids));
	rp->nmisplaced = 0;
	for (size_t i = 0; ids && i < k; i++) {
		struct room *r = rooms_find(node_rooms(n), ids[i], ROOM_ID_LEN);
		if (r && rank_of(n, room_id(r)) != 0)
			hand_over(n, r);
	}
	free(ids);
	struct room *rep;
	/* A replica that heard nothing for a while after its room would have
	 * expired at the relay: its REPL_GONE was lost (the relay died first,
	 * or the link dropped). */
	while ((rep = rooms_idle(rp->replicas, node_now_ms(n),
				 node_cfg(n)->room_idle_ms + REPLICA_GRACE_MS)) != NULL) {
		vlog(node_log(n), LOG_INFO, "replica of room %.6s... expired (its relay went quiet)",
		     room_id(rep));
		srepl_room_gone(n, room_id(rep));
		ring_drop(rp, room_id(rep));
		rooms_destroy(rp->replicas, rep);
	}
}

void repl_room_gone(struct node *n, const struct room *r)
{
	struct repl *rp = node_repl(n);
	release(n, room_id(r), UINT64_MAX); /* accepted: delivered ahead of the close */
	ring_drop(rp, room_id(r));
	if (!node_clus(n))
		return;
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_REPL_GONE, 0, 1);
	wire_pack_cstr(pk, room_id(r));
	wire_end(b, 0);
	to_backups(n, room_id(r), b->p, b->len);
}

void repl_push(struct node *n, struct room *r, uint64_t seq, uint64_t sid, uint64_t rid,
	       struct blob *frame)
{
	if (!node_clus(n))
		return; /* a single node has no one to take over */
	struct ring *g = ring_of(node_repl(n), room_id(r), 1);
	if (!g)
		return;
	ring_add(g, seq, sid, rid, frame);
	struct entry e = {seq, sid, rid, frame};
	struct wire_buf *b = node_scratch(n);
	enc_push(b, room_id(r), &e, room_epoch(r));
	to_backups(n, room_id(r), b->p, b->len);
}

int repl_seen(struct node *n, const struct room *r, uint64_t sid, uint64_t rid, uint64_t *seq)
{
	struct ring *g = ring_of(node_repl(n), room_id(r), 0);
	/* A publisher's rids grow: a new push is above every rid in the
	 * ring, and the scan below (up to RING_MAX entries) is skipped. */
	if (!g || !rid || rid > g->rid_hi)
		return 0;
	for (size_t i = g->len; i-- > 0;) {
		const struct entry *e = &g->e[(g->head + i) % g->cap];
		if (e->sid == sid && e->rid == rid) {
			*seq = e->seq;
			return 1;
		}
	}
	return 0;
}

/* Replays stop at the pushes still held: those come with their release. */
void repl_replay(struct node *n, const struct room *r, uint64_t from_seq, struct peer *p)
{
	struct ring *g = ring_of(node_repl(n), room_id(r), 0);
	uint64_t upto = repl_released(n, r);
	for (size_t i = 0; g && i < g->len; i++) {
		const struct entry *e = &g->e[(g->head + i) % g->cap];
		if (e->seq > from_seq && e->seq <= upto)
			peer_send(p, blob_data(e->frame), blob_len(e->frame));
	}
}

void repl_replay_conn(struct node *n, const struct room *r, uint64_t from_seq, struct conn *c)
{
	struct ring *g = ring_of(node_repl(n), room_id(r), 0);
	uint64_t upto = repl_released(n, r);
	for (size_t i = 0; g && i < g->len; i++) {
		const struct entry *e = &g->e[(g->head + i) % g->cap];
		if (e->seq > from_seq && e->seq <= upto)
			conn_send_blob(c, e->frame);
	}
}

void repl_resume(struct node *n, const struct room *r, uint64_t after, struct conn *c, uint64_t rid)
{
	struct ring *g = node_clus(n) ? ring_of(node_repl(n), room_id(r), 0) : NULL;
	uint64_t seq = room_seq(r);
	/* after = 2^64-1: no replay, just where the subscription starts */
	uint64_t first = after == UINT64_MAX ? seq + 1 : after + 1;
	/* Seqs from after + 1 to the oldest the ring holds, less one, are
	 * gone for this subscriber: the OK says where it starts again. */
	if (after != UINT64_MAX && seq > after) {
		uint64_t oldest = g && g->len ? g->e[g->head].seq : seq + 1;
		if (oldest > first)
			first = oldest;
	}
	uint64_t own = conn_push_key(c);
	for (size_t i = 0; g && i < g->len; i++) {
		const struct entry *e = &g->e[(g->head + i) % g->cap];
		/* its own pushes never come back to a publisher */
		if (e->seq > after && e->sid != own)
			conn_send_blob(c, e->frame);
	}
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_OK, rid, 1);
	msgpack_pack_uint64(pk, first);
	wire_end(b, 0);
	conn_send(c, b);
}

/* Sends the backups the whole state of a room this node relays, when they
 * are not the ones it was last sent to. */
static void fill(struct node *n, struct room *r)
{
	const char *names[16];
	size_t k = backups(n, room_id(r), names, 16);
	uint64_t sig = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < k; i++)
		for (const char *c = names[i]; *c; c++)
			sig = (sig ^ (unsigned char)*c) * 0x100000001b3ull;
	struct ring *g = ring_of(node_repl(n), room_id(r), 1);
	if (!g || g->sig == sig)
		return;
	g->sig = sig;
	repl_room_state(n, r);
	for (size_t i = 0; g && i < g->len; i++) {
		struct wire_buf *b = node_scratch(n);
		enc_push(b, room_id(r), &g->e[(g->head + i) % g->cap], room_epoch(r));
		to_backups(n, room_id(r), b->p, b->len);
	}
	srepl_fill(n, r);
}

/* This node's rank in the room's preference list: 0 is the relay, -1 not
 * in it. */
static int rank_of(struct node *n, const char *id)
{
	struct clus *cl = node_clus(n);
	const char *names[16];
	size_t k = clus_placement(cl, id, ROOM_ID_LEN, names, clus_replicas(cl));
	for (size_t i = 0; i < k; i++)
		if (strcmp(names[i], clus_self(cl)) == 0)
			return (int)i;
	return -1;
}

static void set_grants(struct room *r, const msgpack_object *g)
{
	while (room_grant_count(r))
		room_revoke(r, room_grant_at(r, 0), strlen(room_grant_at(r, 0)));
	for (uint32_t i = 0; i < g->via.array.size && i < 4096; i++)
		if (g->via.array.ptr[i].type == MSGPACK_OBJECT_STR)
			room_grant(r, g->via.array.ptr[i].via.str.ptr, g->via.array.ptr[i].via.str.size);
}

/* The nodes that subscribed to room r at its old relay (the replica's
 * state named them) are told at once that it is relayed here (ROOM_MOVED),
 * so that they subscribe again (NODE_SUB with `after`, the replay of what
 * they missed) even while their own view of the cluster lags. */
static void take_subs(struct node *n, struct room *r, const struct ring *g)
{
	struct clus *cl = node_clus(n);
	const char *name = g ? g->subs : NULL;
	size_t k = 0;
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_ROOM_MOVED, 0, 2);
	wire_pack_str(pk, room_id(r), ROOM_ID_LEN);
	wire_pack_cstr(pk, clus_self(cl));
	wire_end(b, 0);
	for (size_t i = 0; name && i < g->nsubs; i++, name += strlen(name) + 1) {
		struct peer *p = strcmp(name, clus_self(cl)) != 0 ? clus_peer(cl, name) : NULL;
		if (p) {
			peer_send(p, b->p, b->len);
			k++;
		}
	}
	if (k)
		vlog(node_log(n), LOG_INFO,
		     "room %.6s...: told its %zu subscribing node(s) from its state", room_id(r), k);
}

/* A backed-up room becomes this node's: same id, owner, grants and seq. */
static struct room *promote(struct node *n, struct room *rep, const char *why)
{
	struct repl *rp = node_repl(n);
	struct room *nr = rooms_create_id(node_rooms(n), room_id(rep), ROOM_ID_LEN, room_owner(rep),
					  strlen(room_owner(rep)), node_now_ms(n));
	if (nr) {
		for (size_t i = 0; i < room_grant_count(rep); i++)
			room_grant(nr, room_grant_at(rep, i), strlen(room_grant_at(rep, i)));
		room_set_seq(nr, room_seq(rep));
		/* A new term: the old relay, if it still acts, is refused by
		 * every node that has heard of this one (REPL_NACK). */
		room_set_epoch(nr, room_epoch(rep) + 1);
		node_counters(n)->failovers++;
		vlog(node_log(n), LOG_NOTICE, "took over room %.6s... at seq %llu, epoch %llu (%s)",
		     room_id(nr), (unsigned long long)room_seq(nr),
		     (unsigned long long)room_epoch(nr), why);
	}
	struct ring *rg = ring_of(rp, room_id(rep), 0);
	if (rg)
		rg->pinned = 0;
	rooms_destroy(rp->replicas, rep); /* the ring stays: nr's now */
	if (nr) {
		fill(n, nr); /* the backups learn the new epoch */
		srepl_install(n, nr); /* before its mirror's receivers move in */
		route_took_over(n, nr);
		take_subs(n, nr, rg);
		park_room_ready(n, room_id(nr));
	}
	return nr;
}

/* The session that pushed a DELIVER: its trailing origin (uint64), else
 * fallback. The ring's key is the publisher's, which is not a session. */
static uint64_t frame_origin(const struct blob *frame, uint64_t fallback)
{
	size_t len = blob_len(frame);
	const uint8_t *p = blob_data((struct blob *)frame);
	if (len < WIRE_HDR + 9 || p[len - 9] != 0xcf)
		return fallback;
	uint64_t v = 0;
	for (size_t i = len - 8; i < len; i++)
		v = v << 8 | p[i];
	return v;
}

/* A push from the node that relayed this room before, for a room relayed
 * here now: deliver what is new here, as the relay would have. */
static void catch_up(struct node *n, struct room *r, uint64_t seq, uint64_t origin,
		     struct blob *frame)
{
	if (seq <= room_seq(r))
		return;
	room_set_seq(r, seq);
	for (struct room_sub *s = room_subs(r), *next; s; s = next) {
		next = room_sub_next(s);
		if (!room_sub_is_peer(s) &&
		    conn_sid(room_sub_who(s)) == frame_origin(frame, origin))
			continue;
		node_send_blob(n, s, frame);
	}
	if (seq >= repl_floor(n, r))
		park_room_ready(n, room_id(r)); /* caught up: held requests go */
}

/* REPL_ACK [511, 0, room, seq] for each acknowledgement owed. */
void repl_flush_acks(struct node *n)
{
	struct repl *rp = node_repl(n);
	for (size_t i = 0; i < rp->ndue; i++) {
		struct ack_due *a = &rp->due[i];
		struct peer *p = clus_peer(node_clus(n), a->relay);
		if (!p)
			continue; /* gone: it will not wait for this */
		struct wire_buf *b = node_scratch(n);
		msgpack_packer *pk = wire_begin(b, WIRE_REPL_ACK, 0, 2);
		wire_pack_str(pk, a->id, ROOM_ID_LEN);
		msgpack_pack_uint64(pk, a->seq);
		wire_end(b, 0);
		peer_send(p, b->p, b->len);
	}
	rp->ndue = 0;
}

/* Owes relay an ack for room id up to seq: one REPL_ACK per room and loop
 * turn, however many pushes came (the relay waits for the highest). */
static void ack_later(struct node *n, const char *relay, const char *id, uint64_t seq)
{
	struct repl *rp = node_repl(n);
	for (size_t i = rp->ndue; i-- > 0;) {
		struct ack_due *a = &rp->due[i];
		if (memcmp(a->id, id, ROOM_ID_LEN) == 0 && strcmp(a->relay, relay) == 0) {
			if (seq > a->seq)
				a->seq = seq;
			return;
		}
	}
	if (rp->ndue == ACKS_DUE_MAX)
		repl_flush_acks(n);
	struct ack_due *a = &rp->due[rp->ndue++];
	snprintf(a->relay, sizeof(a->relay), "%s", relay);
	memcpy(a->id, id, ROOM_ID_LEN);
	a->seq = seq;
	node_schedule_reap(n);
}

/* REPL_NACK [512, 0, room, epoch] to a relay of an older term. */
static void nack(struct node *n, struct peer *p, const char *id, uint64_t epoch)
{
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_REPL_NACK, 0, 2);
	wire_pack_str(pk, id, ROOM_ID_LEN);
	msgpack_pack_uint64(pk, epoch);
	wire_end(b, 0);
	peer_send(p, b->p, b->len);
}

/* Drops the ring's pushes after seq (never delivered: held, then refused). */
static void ring_cut(struct ring *g, uint64_t seq)
{
	while (g->len) {
		struct entry *e = &g->e[(g->head + g->len - 1) % g->cap];
		if (e->seq <= seq)
			break;
		g->bytes -= blob_len(e->frame);
		blob_unref(e->frame);
		g->len--;
	}
}

/* A node relays r under a newer term (`by` said so): this node stops
 * relaying it at once. The pushes it holds were delivered nowhere: their
 * pushers are told `moved` (their nodes send them on to `by`), the ring
 * forgets them, and the room is fenced until the newer relay hands it back
 * (its REPL_STATE) or FENCE_MS pass. */
static void step_down(struct node *n, struct room *r, const char *by, uint64_t epoch)
{
	struct repl *rp = node_repl(n);
	uint64_t upto = repl_released(n, r);
	size_t dropped = 0;
	struct held *h, *next;
	for (h = TAILQ_FIRST(&rp->held); h; h = next) {
		next = TAILQ_NEXT(h, next);
		if (memcmp(h->id, room_id(r), ROOM_ID_LEN) != 0)
			continue;
		TAILQ_REMOVE(&rp->held, h, next);
		rp->nheld--;
		rp->held_bytes -= blob_len(h->frame);
		if (h->c) {
			if (conn_proxy_peer(h->c)) {
				conn_error(h->c, h->rid, WIRE_E_MOVED, by);
			} else {
				char msg[160];
				snprintf(msg, sizeof(msg),
					 "the room moved to node %s; try again", by);
				conn_error(h->c, h->rid, WIRE_E_MOVED, msg);
			}
		}
		blob_unref(h->frame);
		free(h);
		dropped++;
	}
	struct ring *g = ring_of(rp, room_id(r), 0);
	if (g)
		ring_cut(g, upto);
	room_set_seq(r, upto);
	room_set_marks(r, room_marks(r) | PARK_STALE);
	park_fence(n);
	node_counters(n)->stepdowns++;
	vlog(node_log(n), LOG_WARN,
	     "room %.6s...: %s relays it under epoch %llu > %llu: stepping down at seq %llu "
	     "(%zu held pushes refused `moved`)",
	     room_id(r), by, (unsigned long long)epoch, (unsigned long long)room_epoch(r),
	     (unsigned long long)upto, dropped);
}

/* Room r, relayed here, is relayed by p under a newer term, which keeps
 * it (STATE_PINNED): this node steps down and gives it up at once, keeping
 * its ring for the replica the state makes next; its subscribers follow it
 * to p, and its streams (stale: the newer relay has them) end here. */
static void yield(struct node *n, struct room *r, struct peer *p, uint64_t epoch)
{
	step_down(n, r, peer_name(p), epoch);
	struct ring *g = ring_of(node_repl(n), room_id(r), 0);
	if (g)
		g->sig = 0;
	route_room_moved(n, r, p, peer_name(p));
}

void repl_peer_frame(struct node *n, struct peer *p, const struct wire_msg *m)
{
	struct repl *rp = node_repl(n);
	if (m->f[0].s.len != ROOM_ID_LEN || !node_clus(n))
		return;
	struct room *r = rooms_find(rp->replicas, S(m->f[0]));
	struct room *mine = rooms_find(node_rooms(n), S(m->f[0]));
	switch (m->type) {
	case WIRE_REPL_STATE: {
		uint64_t epoch = m->nfields > 5 ? m->f[5].u : 0;
		uint64_t mode = m->nfields > 6 ? m->f[6].u : STATE_PLAIN;
		if (mine && epoch && epoch < room_epoch(mine)) {
			nack(n, p, room_id(mine), room_epoch(mine)); /* a stale relay */
			return;
		}
		if (mine && mode == STATE_PINNED && epoch > room_epoch(mine)) {
			/* A newer relay keeps the room while its streams last,
			 * and this node, first in the list, backs it up: the
			 * copy here (a stall, or a cut) goes, its subscribers
			 * follow the room there. */
			yield(n, mine, p, epoch);
			mine = NULL;
			r = rooms_find(rp->replicas, S(m->f[0]));
		}
		if (mine) {
			/* Another node relayed it meanwhile (this node was cut
			 * off, or is new in its place): its state is newer when
			 * its term is, or its seq in the same term. Pushes past
			 * ours follow as REPL_PUSH. A room fenced (a stall, a
			 * newer term) has its state back: it is relayed here
			 * again, under a term of its own, once the pushes up to
			 * that seq are in. */
			room_set_marks(mine, room_marks(mine) & ~PARK_STALE);
			if (epoch > room_epoch(mine) || m->f[3].u > room_seq(mine)) {
				if (epoch >= room_epoch(mine)) {
					room_set_epoch(mine, epoch + 1);
					repl_room_state(n, mine);
				}
				set_grants(mine, m->f[2].o);
				struct ring *g = ring_of(rp, room_id(mine), 1);
				if (g && m->f[3].u > g->floor)
					g->floor = m->f[3].u;
				vlog(node_log(n), LOG_NOTICE,
				     "room %.6s...: adopting the newer state of %s (seq %llu > %llu)",
				     room_id(mine), peer_name(p), (unsigned long long)m->f[3].u,
				     (unsigned long long)room_seq(mine));
			}
			park_room_ready(n, room_id(mine));
			return;
		}
		if (r && epoch && epoch < room_epoch(r)) {
			nack(n, p, room_id(r), room_epoch(r));
			return;
		}
		if (!r && !(r = rooms_create_id(rp->replicas, S(m->f[0]), S(m->f[1]),
						 node_now_ms(n))))
			return;
		set_grants(r, m->f[2].o);
		if (m->f[3].u > room_seq(r))
			room_set_seq(r, m->f[3].u);
		if (epoch > room_epoch(r))
			room_set_epoch(r, epoch);
		room_touch(rp->replicas, r, node_now_ms(n));
		struct ring *src = ring_of(rp, room_id(r), 1);
		if (src) {
			snprintf(src->src, sizeof(src->src), "%s", peer_name(p));
			src->pinned = mode == STATE_PINNED;
			if (m->nfields > 7)
				set_subs(src, m->f[7].o);
		}
		/* Handed over (a node joined, or this one came back first in
		 * the room's list): take it now. A state sent to a backup is
		 * not a hand-over, whatever this node's view says. */
		if (mode == STATE_HANDOVER)
			promote(n, r, "handed over");
		else if (mode == STATE_PINNED)
			park_room_ready(n, room_id(r)); /* held requests go there */
		return;
	}
	case WIRE_REPL_PUSH: {
		uint64_t epoch = m->nfields > 5 ? m->f[5].u : 0;
		if (r && epoch && epoch < room_epoch(r)) {
			nack(n, p, room_id(r), room_epoch(r)); /* not held, not acked */
			return;
		}
		if (mine && epoch && epoch < room_epoch(mine) &&
		    m->f[1].u > repl_floor(n, mine)) {
			/* From a relay of an older term, past the history this
			 * node adopted: a stale relay still at work. */
			nack(n, p, room_id(mine), room_epoch(mine));
			return;
		}
		if (mine && epoch > room_epoch(mine)) {
			step_down(n, mine, peer_name(p), epoch);
			return;
		}
		if (r && epoch > room_epoch(r))
			room_set_epoch(r, epoch);
		struct blob *frame = blob_new(m->f[4].s.len);
		if (!frame)
			return;
		memcpy(blob_data(frame), m->f[4].s.ptr, m->f[4].s.len);
		struct room *owner = mine ? mine : r;
		struct ring *g = owner ? ring_of(rp, room_id(owner), 1) : NULL;
		if (g) {
			ring_add(g, m->f[1].u, m->f[2].u, m->f[3].u, frame);
			ack_later(n, peer_name(p), room_id(owner), m->f[1].u);
		}
		if (mine)
			catch_up(n, mine, m->f[1].u, m->f[2].u, frame);
		else if (r && m->f[1].u > room_seq(r))
			room_set_seq(r, m->f[1].u);
		if (r)
			room_touch(rp->replicas, r, node_now_ms(n));
		blob_unref(frame);
		return;
	}
	case WIRE_REPL_ACK:
		/* From the room's first backup (another's ack is not enough), on
		 * whichever of the links between the two nodes. */
		if (mine) {
			const char *first[1];
			if (backups(n, room_id(mine), first, 1) == 1 &&
			    strcmp(first[0], peer_name(p)) == 0)
				release(n, room_id(mine), m->f[1].u);
		}
		return;
	case WIRE_REPL_NACK:
		if (mine && m->f[1].u > room_epoch(mine))
			step_down(n, mine, peer_name(p), m->f[1].u);
		return;
	case WIRE_REPL_GONE:
		srepl_room_gone(n, m->f[0].s.ptr);
		if (r) {
			ring_drop(rp, room_id(r));
			rooms_destroy(rp->replicas, r);
		}
		return;
	}
}

const char *repl_handed_to(struct node *n, const char *id)
{
	struct ring *g = ring_of(node_repl(n), id, 0);
	if (!g || !g->handed_ms || node_now_ms(n) - g->handed_ms >= PARK_WINDOW_MS)
		return NULL;
	return g->handed_to;
}

int repl_expects(struct node *n, const char *id)
{
	struct repl *rp = node_repl(n);
	if (!rooms_find(rp->replicas, id, ROOM_ID_LEN))
		return 0;
	/* Not a room this node just handed on: requests for it that still
	 * come here are from nodes that have not heard yet. */
	struct ring *g = ring_of(rp, id, 0);
	return !g || !g->handed_ms || node_now_ms(n) - g->handed_ms >= PARK_WINDOW_MS;
}

uint64_t repl_floor(struct node *n, const struct room *r)
{
	struct ring *g = ring_of(node_repl(n), room_id(r), 0);
	return g ? g->floor : 0;
}

/* A room with open byte streams stays with its relay until they end (a
 * stream does not move mid-way): the node first in its list backs it up
 * meanwhile, knowing from the state (STATE_PINNED) that this node relays
 * it, and sends requests for it here (`moved`); the sweep hands the room
 * over once its streams are done. -1: not handed over. */
static int pin(struct node *n, struct room *r, const char *first)
{
	struct repl *rp = node_repl(n);
	size_t i = 0;
	while (i < rp->nmisplaced && memcmp(rp->misplaced[i], room_id(r), ROOM_ID_LEN) != 0)
		i++;
	if (i == rp->nmisplaced && i < MISPLACED_MAX) /* else the next membership change */
		memcpy(rp->misplaced[rp->nmisplaced++], room_id(r), ROOM_ID_LEN);
	if (room_marks(r) & REPL_PINNED)
		return -1;
	room_set_marks(r, room_marks(r) | REPL_PINNED);
	/* the node first in the list is a backup now: it gets it all */
	fill(n, r);
	vlog(node_log(n), LOG_NOTICE,
	     "room %.6s...: %s comes first in its list now; relayed here until its %zu open "
	     "stream(s) end",
	     room_id(r), first, room_streams(r));
	return -1;
}

/* Hands a room this node relays to the node now first in its list: its
 * state and ring go there, this node keeps it as a backup (or forgets it),
 * and its local subscribers follow it through a mirror. */
static int hand_over(struct node *n, struct room *r)
{
	struct clus *cl = node_clus(n);
	struct repl *rp = node_repl(n);
	const char *names[16];
	size_t k = clus_placement(cl, room_id(r), ROOM_ID_LEN, names, clus_replicas(cl));
	if (k == 0)
		return -1;
	struct peer *p = clus_peer(cl, names[0]);
	if (!p)
		return -1;
	if (room_streams(r))
		return pin(n, r, names[0]);
	/* Pushes waiting for the old backup's ack: the new relay gets them in
	 * the ring, the subscribers here now. */
	release(n, room_id(r), UINT64_MAX);
	struct wire_buf *b = node_scratch(n);
	enc_state(b, r, STATE_HANDOVER);
	peer_send(p, b->p, b->len);
	struct ring *g = ring_of(rp, room_id(r), 0);
	for (size_t i = 0; g && i < g->len; i++) {
		b = node_scratch(n);
		enc_push(b, room_id(r), &g->e[(g->head + i) % g->cap], room_epoch(r));
		peer_send(p, b->p, b->len);
	}
	if (g) {
		g->handed_ms = node_now_ms(n);
		snprintf(g->handed_to, sizeof(g->handed_to), "%s", names[0]);
	}
	vlog(node_log(n), LOG_NOTICE, "handed room %.6s... (seq %llu) over to %s", room_id(r),
	     (unsigned long long)room_seq(r), names[0]);
	int rank = rank_of(n, room_id(r));
	if (rank > 0) {
		struct room *rep = rooms_create_id(rp->replicas, room_id(r), ROOM_ID_LEN,
						   room_owner(r), strlen(room_owner(r)),
						   node_now_ms(n));
		if (rep) {
			for (size_t i = 0; i < room_grant_count(r); i++)
				room_grant(rep, room_grant_at(r, i), strlen(room_grant_at(r, i)));
			room_set_seq(rep, room_seq(r));
			room_set_epoch(rep, room_epoch(r));
		}
		if (g)
			g->sig = 0;
	} else {
		ring_drop(rp, room_id(r));
	}
	route_room_moved(n, r, p, names[0]);
	return 0;
}

/* Whether the relay that last sent this replica's state is a live member:
 * then it relays the room still, and hands it over once it sees this node
 * first in the room's list. */
static int source_alive(struct node *n, const char *id)
{
	struct ring *g = ring_of(node_repl(n), id, 0);
	struct clus *cl = node_clus(n);
	if (!g || !g->src[0] || strcmp(g->src, clus_self(cl)) == 0)
		return 0;
	const struct memb_member *m = memb_find(clus_memb(cl), g->src);
	return m && (m->state == MEMB_ALIVE || m->state == MEMB_SUSPECT);
}

const char *repl_pinned_to(struct node *n, const char *id)
{
	struct repl *rp = node_repl(n);
	struct ring *g = ring_of(rp, id, 0);
	if (!g || !g->pinned || !rooms_find(rp->replicas, id, ROOM_ID_LEN) || !source_alive(n, id))
		return NULL;
	return g->src;
}

void repl_members_changed(struct node *n)
{
	struct clus *cl = node_clus(n);
	struct repl *rp = node_repl(n);
	if (!cl)
		return;
	release_stuck(n); /* rooms left with no backup */
	size_t pos = 0;
	struct room *r;
	/* Take over the replicas this node now relays. */
	while ((r = rooms_next(rp->replicas, &pos)) != NULL) {
		int rank = rank_of(n, room_id(r));
		if (rank > 0)
			continue; /* still a backup */
		if (rank == 0 && source_alive(n, room_id(r)))
			continue; /* its relay lives: it hands the room over (views differ) */
		if (rank < 0) { /* no longer in its list */
			srepl_room_gone(n, room_id(r));
			ring_drop(rp, room_id(r));
			rooms_destroy(rp->replicas, r);
		} else {
			promote(n, r, "its relay is gone");
		}
		pos = 0;
	}
	/* Hand over the rooms another node now comes first for; bring the
	 * backups of the others up to date. */
	pos = 0;
	while ((r = rooms_next(node_rooms(n), &pos)) != NULL) {
		if (rank_of(n, room_id(r)) != 0) {
			if (hand_over(n, r) == 0) {
				pos = 0; /* r is gone */
				continue;
			}
		} else {
			room_set_marks(r, room_marks(r) & ~REPL_PINNED);
		}
		fill(n, r); /* pinned, or first: its backups */
	}
}

#include "node/repl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/clus.h"
#include "node/conn.h"
#include "node/node.h"
#include "node/peer.h"
#include "node/route.h"
#include "stream/blob.h"
#include "stream/room.h"
#include "stream/smap.h"
#include "stream/wire.h"

#define S(f)	   (f).s.ptr, (f).s.len
#define RING_BYTES (4u << 20) /* recent pushes kept per room */
#define RING_MAX   8192

/* One recent push: enough to replay it and to know it if it comes again. */
struct entry {
	uint64_t seq, sid, rid;
	struct blob *frame; /* its DELIVER */
};

struct ring {
	char id[ROOM_ID_LEN + 1];
	uint64_t sig; /* the backups it was last sent to (a hash of their names) */
	struct entry *e;
	size_t head, len, cap, bytes;
};

struct repl {
	struct rooms *replicas; /* rooms backed up here */
	struct smap *rings;	/* room id -> ring, for rooms relayed or backed up here */
};

struct repl *repl_new(void)
{
	struct repl *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
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
	free(g);
}

void repl_free(struct repl *r)
{
	if (!r)
		return;
	size_t pos = 0;
	struct ring *g;
	while (r->rings && (g = smap_next(r->rings, &pos)) != NULL)
		ring_free(g);
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

static void enc_state(struct wire_buf *b, const struct room *r)
{
	msgpack_packer *pk = wire_begin(b, WIRE_REPL_STATE, 0, 5);
	wire_pack_cstr(pk, room_id(r));
	wire_pack_cstr(pk, room_owner(r));
	msgpack_pack_array(pk, room_grant_count(r));
	for (size_t i = 0; i < room_grant_count(r); i++)
		wire_pack_cstr(pk, room_grant_at(r, i));
	msgpack_pack_uint64(pk, room_seq(r));
	msgpack_pack_uint64(pk, room_created(r));
	wire_end(b, 0);
}

static void enc_push(struct wire_buf *b, const char *id, const struct entry *e)
{
	msgpack_packer *pk = wire_begin(b, WIRE_REPL_PUSH, 0, 5);
	wire_pack_str(pk, id, ROOM_ID_LEN);
	msgpack_pack_uint64(pk, e->seq);
	msgpack_pack_uint64(pk, e->sid);
	msgpack_pack_uint64(pk, e->rid);
	wire_pack_bin(pk, blob_data(e->frame), blob_len(e->frame));
	wire_end(b, 0);
}

void repl_room_state(struct node *n, struct room *r)
{
	if (!node_clus(n))
		return;
	struct wire_buf *b = node_scratch(n);
	enc_state(b, r);
	to_backups(n, room_id(r), b->p, b->len);
}

void repl_room_gone(struct node *n, const struct room *r)
{
	struct repl *rp = node_repl(n);
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
	enc_push(b, room_id(r), &e);
	to_backups(n, room_id(r), b->p, b->len);
}

int repl_seen(struct node *n, const struct room *r, uint64_t sid, uint64_t rid, uint64_t *seq)
{
	struct ring *g = ring_of(node_repl(n), room_id(r), 0);
	if (!g || !rid)
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

void repl_replay(struct node *n, const struct room *r, uint64_t from_seq, struct peer *p)
{
	struct ring *g = ring_of(node_repl(n), room_id(r), 0);
	for (size_t i = 0; g && i < g->len; i++) {
		const struct entry *e = &g->e[(g->head + i) % g->cap];
		if (e->seq > from_seq)
			peer_send(p, blob_data(e->frame), blob_len(e->frame));
	}
}

void repl_replay_conn(struct node *n, const struct room *r, uint64_t from_seq, struct conn *c)
{
	struct ring *g = ring_of(node_repl(n), room_id(r), 0);
	for (size_t i = 0; g && i < g->len; i++) {
		const struct entry *e = &g->e[(g->head + i) % g->cap];
		if (e->seq > from_seq)
			conn_send_blob(c, e->frame);
	}
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
		enc_push(b, room_id(r), &g->e[(g->head + i) % g->cap]);
		to_backups(n, room_id(r), b->p, b->len);
	}
}

void repl_peer_frame(struct node *n, struct peer *p, const struct wire_msg *m)
{
	struct repl *rp = node_repl(n);
	struct room *r = rooms_find(rp->replicas, S(m->f[0]));
	switch (m->type) {
	case WIRE_REPL_STATE: {
		if (m->f[0].s.len != ROOM_ID_LEN)
			return;
		if (rooms_find(node_rooms(n), S(m->f[0])))
			return; /* relayed here already: this node is ahead */
		if (!r && !(r = rooms_create_id(rp->replicas, S(m->f[0]), S(m->f[1]),
						 node_now_ms(n))))
			return;
		const msgpack_object *g = m->f[2].o;
		while (room_grant_count(r))
			room_revoke(r, room_grant_at(r, 0), strlen(room_grant_at(r, 0)));
		for (uint32_t i = 0; i < g->via.array.size && i < WIRE_DESTS_MAX * 4; i++)
			if (g->via.array.ptr[i].type == MSGPACK_OBJECT_STR)
				room_grant(r, g->via.array.ptr[i].via.str.ptr,
					   g->via.array.ptr[i].via.str.size);
		if (m->f[3].u > room_seq(r))
			room_set_seq(r, m->f[3].u);
		room_touch(rp->replicas, r, node_now_ms(n));
		break;
	}
	case WIRE_REPL_PUSH: {
		if (!r)
			return;
		struct blob *frame = blob_new(m->f[4].s.len);
		struct ring *g = ring_of(rp, room_id(r), 1);
		if (frame && g) {
			memcpy(blob_data(frame), m->f[4].s.ptr, m->f[4].s.len);
			ring_add(g, m->f[1].u, m->f[2].u, m->f[3].u, frame);
		}
		blob_unref(frame);
		if (m->f[1].u > room_seq(r))
			room_set_seq(r, m->f[1].u);
		room_touch(rp->replicas, r, node_now_ms(n));
		break;
	}
	case WIRE_REPL_GONE:
		if (r) {
			ring_drop(rp, room_id(r));
			rooms_destroy(rp->replicas, r);
		}
		break;
	}
}

void repl_members_changed(struct node *n)
{
	struct clus *cl = node_clus(n);
	struct repl *rp = node_repl(n);
	if (!cl)
		return;
	size_t pos = 0;
	struct room *r;
	/* Take over the replicas this node now relays. */
	while ((r = rooms_next(rp->replicas, &pos)) != NULL) {
		const char *names[16];
		size_t k = clus_placement(cl, room_id(r), ROOM_ID_LEN, names, clus_replicas(cl));
		int rank = -1;
		for (size_t i = 0; i < k; i++)
			if (strcmp(names[i], clus_self(cl)) == 0)
				rank = (int)i;
		if (rank > 0)
			continue; /* still a backup */
		if (rank < 0) { /* no longer in its list */
			ring_drop(rp, room_id(r));
			rooms_destroy(rp->replicas, r);
			pos = 0;
			continue;
		}
		struct room *nr = rooms_create_id(node_rooms(n), room_id(r), ROOM_ID_LEN, room_owner(r),
						  strlen(room_owner(r)), node_now_ms(n));
		if (nr) {
			for (size_t i = 0; i < room_grant_count(r); i++)
				room_grant(nr, room_grant_at(r, i), strlen(room_grant_at(r, i)));
			room_set_seq(nr, room_seq(r));
			node_counters(n)->failovers++;
			vlog(node_log(n), LOG_NOTICE, "took over room %.6s... at seq %llu",
			     room_id(nr), (unsigned long long)room_seq(nr));
			route_took_over(n, nr);
		}
		rooms_destroy(rp->replicas, r); /* the ring stays: nr's now */
		pos = 0;
	}
	/* Bring the backups of the rooms relayed here up to date. */
	pos = 0;
	while ((r = rooms_next(node_rooms(n), &pos)) != NULL)
		fill(n, r);
}

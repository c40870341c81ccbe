#include "node/ops.h"

#include <stdio.h>
#include <string.h>

#include <xxhash.h>

#include "cluster/memb.h"

#include "node/clus.h"
#include "node/conn.h"
#include "node/guard.h"
#include "node/node.h"
#include "node/park.h"
#include "node/repl.h"
#include "node/route.h"
#include "node/streams.h"
#include "stream/blob.h"
#include "stream/room.h"
#include "stream/wire.h"

#define S(f) (f).s.ptr, (f).s.len

static void reply_ok(struct node *n, struct conn *c, uint64_t rid)
{
	struct wire_buf *b = node_scratch(n);
	wire_enc_ok_nil(b, rid);
	conn_send(c, b);
}

/* The room a request names, or NULL after replying unknown_room. */
static struct room *room_arg(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct room *r = rooms_find(node_rooms(n), S(m->f[0]));
	if (!r)
		conn_error(c, m->rid, WIRE_E_UNKNOWN_ROOM, "no room with this id");
	return r;
}

static int owner_only(struct conn *c, const struct room *r, uint64_t rid, const char *what)
{
	if (room_is_owner(r, conn_identity(c), conn_identity_len(c)))
		return 1;
	char msg[128];
	snprintf(msg, sizeof(msg), "only the room's owner may %s", what);
	conn_error(c, rid, WIRE_E_NOT_OWNER, msg);
	return 0;
}

/* WELCOME's nodes: the client addresses of the cluster's members that
 * serve (alive or suspect, this node first), at most WIRE_NODES_MAX, so that
 * a client can move to another node by itself. */
static void pack_nodes(msgpack_packer *pk, struct clus *cl)
{
	const struct memb *mb = clus_memb(cl);
	const char *addrs[WIRE_NODES_MAX];
	size_t k = 0;
	const struct memb_member *self = memb_self(mb);
	if (self && self->client_addr[0])
		addrs[k++] = self->client_addr;
	for (size_t i = 0; i < memb_count(mb) && k < WIRE_NODES_MAX; i++) {
		const struct memb_member *mm = memb_at(mb, i);
		if (mm == self || !mm->client_addr[0] ||
		    (mm->state != MEMB_ALIVE && mm->state != MEMB_SUSPECT))
			continue;
		addrs[k++] = mm->client_addr;
	}
	msgpack_pack_array(pk, k);
	for (size_t i = 0; i < k; i++)
		wire_pack_cstr(pk, addrs[i]);
}

static void op_hello(struct node *n, struct conn *c, const struct wire_msg *m)
{
	const struct cfg *cfg = node_cfg(n);
	if (m->f[0].u != WIRE_VERSION) {
		char msg[96];
		snprintf(msg, sizeof(msg), "protocol version %llu is not supported; this node speaks %d",
			 (unsigned long long)m->f[0].u, WIRE_VERSION);
		conn_error(c, m->rid, WIRE_E_VERSION, msg);
		return;
	}
	/* With trusted keys the token names the identity (HELLO's must be
	 * empty or the same); without, the node believes the claim. */
	struct guard *g = node_guard(n);
	struct token_claims cl;
	const char *id = m->f[1].s.ptr;
	size_t idlen = m->f[1].s.len;
	if (guard_keys(g)) {
		if (guard_hello(g, c, m, &cl) < 0)
			return;
		id = cl.identity;
		idlen = cl.idlen;
	} else if (!wire_identity_ok(id, idlen)) {
		node_counters(n)->auth_failures++;
		conn_error(c, m->rid, WIRE_E_AUTH,
			   "identity must be 1-128 bytes of UTF-8 without spaces or control characters");
		return;
	}
	conn_set_ready(c, id, idlen);
	if (guard_keys(g))
		guard_admit(g, c, &cl);
	/* A publisher id: the rings know this session's pushes by a hash of
	 * it and the identity, so that one client's pushes sent again on a
	 * new session (another node, after a failure) count once, and one
	 * identity cannot name another's pushes. */
	if (m->nfields > 3 && m->f[3].u) {
		uint64_t key = XXH3_64bits_withSeed(id, idlen, m->f[3].u);
		conn_set_push_key(c, key ? key : 1);
	}

	char session[48];
	snprintf(session, sizeof(session), "%s-%llu", node_id(n), (unsigned long long)conn_id(c));
	struct wire_buf *b = node_scratch(n);
	struct clus *cl_ = node_clus(n);
	msgpack_packer *pk = wire_begin(b, WIRE_WELCOME, m->rid, cl_ ? 4 : 3);
	wire_pack_cstr(pk, node_id(n));
	wire_pack_cstr(pk, session);
	msgpack_pack_map(pk, 9);
	wire_pack_cstr(pk, "max_streams");
	msgpack_pack_uint64(pk, cfg->max_streams);
	wire_pack_cstr(pk, "chunk_max");
	msgpack_pack_uint64(pk, cfg->chunk_max);
	wire_pack_cstr(pk, "stream_window");
	msgpack_pack_uint64(pk, cfg->stream_window);
	wire_pack_cstr(pk, "frame_max");
	msgpack_pack_uint64(pk, cfg->frame_max);
	wire_pack_cstr(pk, "max_pending");
	msgpack_pack_uint64(pk, cfg->max_pending);
	wire_pack_cstr(pk, "max_subs");
	msgpack_pack_uint64(pk, cfg->max_subs);
	wire_pack_cstr(pk, "max_grants");
	msgpack_pack_uint64(pk, cfg->max_grants);
	wire_pack_cstr(pk, "room_idle_timeout_ms");
	msgpack_pack_uint64(pk, cfg->room_idle_ms);
	wire_pack_cstr(pk, "hello_timeout_ms");
	msgpack_pack_uint64(pk, cfg->hello_timeout_ms);
	if (cl_)
		pack_nodes(pk, cl_);
	wire_end(b, 0);
	conn_send(c, b);
	vlog(node_log(n), LOG_DEBUG, "conn %llu %s: hello from %s", (unsigned long long)conn_id(c),
	     conn_peer(c), conn_identity(c));
}

/* CREATE from a client, or CREATE_ID from another node, which chose the id
 * so that this node is its relay. */
void ops_create_id(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct room *r;
	if (!guard_may_create(node_guard(n), c, m->rid))
		return;
	if (m->type == WIRE_CREATE_ID) {
		r = rooms_create_id(node_rooms(n), S(m->f[0]), conn_identity(c),
				    conn_identity_len(c), node_now_ms(n));
		if (!r && !rooms_find(node_rooms(n), S(m->f[0]))) {
			conn_error(c, m->rid, WIRE_E_BAD_REQUEST, "not a room id");
			return;
		}
	} else {
		r = rooms_create(node_rooms(n), conn_identity(c), conn_identity_len(c),
				 node_now_ms(n));
	}
	if (!r) {
		conn_error(c, m->rid, WIRE_E_INTERNAL, "cannot create the room (id taken or no memory)");
		return;
	}
	node_counters(n)->rooms_created++;
	room_set_epoch(r, 1);
	repl_room_state(n, r);
	repl_room_created(n, r);
	guard_room_added(node_guard(n), r);
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_OK, m->rid, 1);
	wire_pack_cstr(pk, room_id(r));
	wire_end(b, 0);
	conn_send(c, b);
	vlog(node_log(n), LOG_DEBUG, "room %s created by %s", room_id(r), conn_identity(c));
}

static void op_remove(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct room *r = room_arg(n, c, m);
	if (!r || !owner_only(c, r, m->rid, "remove it"))
		return;
	node_counters(n)->rooms_removed++;
	reply_ok(n, c, m->rid);
	node_room_close(n, r, "removed");
}

static void op_grant(struct node *n, struct conn *c, const struct wire_msg *m, int grant)
{
	struct room *r = room_arg(n, c, m);
	if (!r || !owner_only(c, r, m->rid, grant ? "grant" : "revoke"))
		return;
	if (!wire_identity_ok(S(m->f[1]))) {
		conn_error(c, m->rid, WIRE_E_BAD_REQUEST, "not a valid identity");
		return;
	}
	if (!grant) {
		room_revoke(r, S(m->f[1]));
		repl_room_state(n, r);
	} else {
		int rc = room_grant(r, S(m->f[1]));
		if (rc == -1) {
			node_counters(n)->limits_hit++;
			conn_error(c, m->rid, WIRE_E_LIMIT, "the room's grant list is full (max_grants)");
			return;
		}
		if (rc < 0) {
			conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory adding the grant");
			return;
		}
		repl_room_state(n, r);
	}
	reply_ok(n, c, m->rid);
}

/* Subscribes c to r (a room relayed here, or a mirror of one relayed
 * elsewhere) with the topics of SUBSCRIBE m. 0 when subscribed (no reply
 * sent yet); else the error was replied and its code is returned. */
int ops_subscribe_local(struct node *n, struct conn *c, struct room *r, const struct wire_msg *m)
{
	if (!guard_may(node_guard(n), c, r, TOKEN_SUB, m->rid))
		return WIRE_E_FORBIDDEN;
	struct room_sub *s = conn_find_sub(c, r);
	const msgpack_object *topics = m->nfields > 1 ? m->f[1].o : NULL;
	if (topics && topics->via.array.size > WIRE_TOPICS_MAX) {
		conn_error(c, m->rid, WIRE_E_BAD_REQUEST, "at most 16 topics per subscription");
		return WIRE_E_BAD_REQUEST;
	}
	for (uint32_t i = 0; topics && i < topics->via.array.size; i++) {
		const msgpack_object *t = &topics->via.array.ptr[i];
		if (t->type != MSGPACK_OBJECT_STR || t->via.str.size > WIRE_TOPIC_MAX) {
			conn_error(c, m->rid, WIRE_E_BAD_REQUEST,
				   "topics must be strings of at most 128 bytes");
			return WIRE_E_BAD_REQUEST;
		}
	}
	if (s) {
		/* Subscribing again replaces the topic filter for streams opened
		 * from now on; streams already open go on. */
		room_sub_clear_topics(s);
	} else {
		int rc = conn_subscribe(c, r);
		if (rc == -1) {
			node_counters(n)->limits_hit++;
			node_counters(n)->limit_subs++;
			conn_error(c, m->rid, WIRE_E_LIMIT,
				   "too many subscriptions on this connection (max_subs)");
			return WIRE_E_LIMIT;
		}
		if (rc < 0) {
			conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory subscribing");
			return WIRE_E_INTERNAL;
		}
		s = conn_find_sub(c, r);
		if (room_sub_set_identity(s, conn_identity(c), conn_identity_len(c)) < 0) {
			conn_unsubscribe(c, s);
			conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory subscribing");
			return WIRE_E_INTERNAL;
		}
	}
	for (uint32_t i = 0; topics && i < topics->via.array.size; i++) {
		if (room_sub_add_topic(s, topics->via.array.ptr[i].via.str.ptr,
				       topics->via.array.ptr[i].via.str.size, WIRE_TOPICS_MAX) < 0) {
			conn_unsubscribe(c, s);
			conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory subscribing");
			return WIRE_E_INTERNAL;
		}
	}
	return 0;
}

static void op_subscribe(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct room *r = room_arg(n, c, m);
	if (!r || ops_subscribe_local(n, c, r, m) != 0)
		return;
	if (m->nfields > 2) /* resuming: what it missed, then OK with the first seq */
		repl_resume(n, r, m->f[2].u, c, m->rid);
	else
		reply_ok(n, c, m->rid);
}

/* SUB_REPLAY from a subscriber's node (inside FWD): the pushes after `after`
 * that the ring holds, for a client that resumes its subscription on a
 * mirror there; its live pushes come through the mirror. */
static void op_sub_replay(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct room *r = room_arg(n, c, m);
	if (r && guard_may(node_guard(n), c, r, TOKEN_SUB, m->rid))
		repl_resume(n, r, m->f[1].u, c, m->rid);
}

static void op_unsubscribe(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct room *r = room_arg(n, c, m);
	if (!r)
		return;
	struct room_sub *s = conn_find_sub(c, r);
	if (s)
		conn_unsubscribe(c, s);
	reply_ok(n, c, m->rid);
}

static void op_info(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct room *r = room_arg(n, c, m);
	if (!r || !guard_may_info(node_guard(n), c, r, m->rid))
		return;
	int owner = room_is_owner(r, conn_identity(c), conn_identity_len(c));
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_OK, m->rid, 1);
	msgpack_pack_map(pk, owner ? 10 : 9);
	wire_pack_cstr(pk, "streams");
	msgpack_pack_uint64(pk, room_streams(r));
	wire_pack_cstr(pk, "id");
	wire_pack_cstr(pk, room_id(r));
	wire_pack_cstr(pk, "owner");
	wire_pack_cstr(pk, room_owner(r));
	wire_pack_cstr(pk, "subscribers");
	msgpack_pack_uint64(pk, room_subscribers(r));
	wire_pack_cstr(pk, "created_ms");
	msgpack_pack_uint64(pk, room_created(r));
	wire_pack_cstr(pk, "last_active_ms");
	msgpack_pack_uint64(pk, room_last_active(r));
	wire_pack_cstr(pk, "seq");
	msgpack_pack_uint64(pk, room_seq(r));
	wire_pack_cstr(pk, "pushes");
	msgpack_pack_uint64(pk, room_msgs(r));
	wire_pack_cstr(pk, "bytes");
	msgpack_pack_uint64(pk, room_bytes(r));
	if (owner) {
		wire_pack_cstr(pk, "grants");
		msgpack_pack_array(pk, room_grant_count(r));
		for (size_t i = 0; i < room_grant_count(r); i++)
			wire_pack_cstr(pk, room_grant_at(r, i));
	}
	wire_end(b, 0);
	conn_send(c, b);
}

/* The push path encodes its two frames by hand, as msgpack-c would (the
 * shortest form of each integer, str8 from 32 bytes): the packer's callback
 * per item cost a tenth of the node's time with small pushes. */
#define PUSH_HDR_MAX (WIRE_HDR + 1 + 2 + 1 + 1 + ROOM_ID_LEN + 9 + 3 + WIRE_IDENTITY_MAX + 2 + 5)

static void put_be32(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint8_t *put_uint(uint8_t *p, uint64_t v)
{
	int n;
	if (v < 0x80) {
		*p++ = (uint8_t)v;
		return p;
	}
	if (v <= 0xff) {
		*p++ = 0xcc;
		n = 1;
	} else if (v <= 0xffff) {
		*p++ = 0xcd;
		n = 2;
	} else if (v <= 0xffffffffu) {
		*p++ = 0xce;
		n = 4;
	} else {
		*p++ = 0xcf;
		n = 8;
	}
	for (int i = n - 1; i >= 0; i--)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

/* A str of at most 65535 bytes (room ids and identities are far shorter). */
static uint8_t *put_str(uint8_t *p, const char *s, size_t len)
{
	if (len < 32) {
		*p++ = (uint8_t)(0xa0 | len);
	} else if (len <= 0xff) {
		*p++ = 0xd9;
		*p++ = (uint8_t)len;
	} else {
		*p++ = 0xda;
		*p++ = (uint8_t)(len >> 8);
		*p++ = (uint8_t)len;
	}
	memcpy(p, s, len);
	return p + len;
}

static uint8_t *put_bin_len(uint8_t *p, size_t len)
{
	if (len <= 0xff) {
		*p++ = 0xc4;
		*p++ = (uint8_t)len;
	} else if (len <= 0xffff) {
		*p++ = 0xc5;
		*p++ = (uint8_t)(len >> 8);
		*p++ = (uint8_t)len;
	} else {
		*p++ = 0xc6;
		put_be32(p, len);
		p += 4;
	}
	return p;
}

/*
 * The fan-out path. The DELIVER frame is encoded once into one blob (header
 * and payload, one copy of the payload out of the input buffer) and every
 * subscriber's output takes a reference to it. Order: seq is assigned here,
 * in the order the node reads pushes, and each connection's output is FIFO,
 * so every subscriber sees a room's pushes in seq order.
 */
static void op_push(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct room *r = room_arg(n, c, m);
	if (!r)
		return;
	if (!room_may_push(r, conn_identity(c), conn_identity_len(c))) {
		conn_error(c, m->rid, WIRE_E_FORBIDDEN, "this identity may not push to the room");
		return;
	}
	if (!guard_may(node_guard(n), c, r, TOKEN_PUSH, m->rid))
		return;
	if (m->f[1].u > 255) {
		conn_error(c, m->rid, WIRE_E_BAD_REQUEST, "dtype must be 0-255");
		return;
	}
	const struct wire_str *data = &m->f[2].s;
	/* A push sent again after a takeover (its session and rid known to
	 * the ring) counts once: it gets its first seq back. */
	uint64_t seen;
	if (repl_seen(n, r, conn_push_key(c), m->rid, &seen)) {
		struct wire_buf *b0 = node_scratch(n);
		msgpack_packer *pk0 = wire_begin(b0, WIRE_OK, m->rid, 1);
		msgpack_pack_uint64(pk0, seen);
		wire_end(b0, 0);
		conn_send(c, b0);
		return;
	}
	if (repl_floor(n, r) > room_seq(r))
		room_set_seq(r, repl_floor(n, r));
	uint64_t seq = room_next_seq(r);
	room_touch(node_rooms(n), r, node_now_ms(n));
	room_count(r, data->len);

	/* [201, 0, room, seq, sender, dtype, data, origin]: the payload is
	 * copied once between the header and the trailing origin session, which
	 * lets another node skip the pushing client among its own. */
	uint8_t trailer[9];
	trailer[0] = 0xcf; /* uint64 */
	uint64_t origin = conn_sid(c);
	for (int i = 0; i < 8; i++)
		trailer[1 + i] = (uint8_t)(origin >> (56 - 8 * i));
	if (conn_identity_len(c) > WIRE_IDENTITY_MAX) { /* a peer's word, not checked here */
		conn_error(c, m->rid, WIRE_E_INTERNAL, "the sender's identity is too long");
		return;
	}
	uint8_t hdr[PUSH_HDR_MAX], *h = hdr + WIRE_HDR;
	*h++ = 0x98; /* array of 8 */
	h = put_uint(h, WIRE_DELIVER);
	*h++ = 0; /* rid */
	h = put_str(h, room_id(r), ROOM_ID_LEN);
	h = put_uint(h, seq);
	h = put_str(h, conn_identity(c), conn_identity_len(c));
	h = put_uint(h, m->f[1].u);
	h = put_bin_len(h, data->len);
	size_t hlen = (size_t)(h - hdr);
	put_be32(hdr, hlen - WIRE_HDR + data->len + sizeof(trailer));

	node_counters(n)->pushes++;
	struct blob *frame = blob_new(hlen + data->len + sizeof(trailer));
	if (!frame) {
		conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory");
		return;
	}
	memcpy(blob_data(frame), hdr, hlen);
	memcpy(blob_data(frame) + hlen, data->ptr, data->len);
	memcpy(blob_data(frame) + hlen + data->len, trailer, sizeof(trailer));

	/* In a cluster the push goes to the room's backups first; it is
	 * delivered and acknowledged once the first backup holds it. */
	repl_push(n, r, seq, conn_push_key(c), m->rid, frame);
	if (!repl_hold(n, r, seq, c, m->rid, frame, data->len, node_read_ns(n)))
		ops_push_done(n, r, c, m->rid, seq, frame, data->len, node_read_ns(n));
	blob_unref(frame);
}

void ops_push_done(struct node *n, struct room *r, struct conn *c, uint64_t rid, uint64_t seq,
		   struct blob *frame, size_t data_len, uint64_t t0_ns)
{
	struct node_counters *k = node_counters(n);
	struct room_sub *s, *next;
	uint64_t delivered = 0;
	for (s = r ? room_subs(r) : NULL; s; s = next) {
		next = room_sub_next(s); /* a slow consumer is dropped below */
		if (c && room_sub_who(s) == c)
			continue;
		if (node_send_blob(n, s, frame) == 0)
			delivered++;
	}
	/* One clock reading for the whole fan-out (one per delivery took a
	 * tenth of the node's time with small pushes): each delivery counts
	 * the time to the last hand-off. */
	if (delivered) {
		uint64_t lat = node_mono_ns() - t0_ns;
		k->deliveries += delivered;
		k->delivered_bytes += delivered * data_len;
		for (uint64_t i = 0; i < delivered; i++)
			node_latency_add(n, lat);
	}
	if (!c)
		return; /* the pusher is gone */
	/* OK [3, rid, seq] */
	uint8_t ok[WIRE_HDR + 1 + 1 + 9 + 9], *h = ok + WIRE_HDR;
	*h++ = 0x93;
	*h++ = WIRE_OK;
	h = put_uint(h, rid);
	h = put_uint(h, seq);
	put_be32(ok, (size_t)(h - ok) - WIRE_HDR);
	conn_send_raw(c, ok, (size_t)(h - ok));
}

/* PLACE: [node, relay, backups...] for any room id, existing or not. */
static void op_place(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct clus *cl = node_clus(n);
	const char *names[16];
	size_t k = 0;
	const char *self = cl ? clus_self(cl) : node_id(n);
	if (cl)
		k = clus_placement(cl, S(m->f[0]), names, clus_replicas(cl));
	else
		names[k++] = self;
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_OK, m->rid, 1);
	msgpack_pack_map(pk, 3);
	wire_pack_cstr(pk, "node");
	wire_pack_cstr(pk, self);
	wire_pack_cstr(pk, "relay");
	wire_pack_cstr(pk, k ? names[0] : "");
	wire_pack_cstr(pk, "backups");
	msgpack_pack_array(pk, k ? k - 1 : 0);
	for (size_t i = 1; i < k; i++)
		wire_pack_cstr(pk, names[i]);
	wire_end(b, 0);
	conn_send(c, b);
}

void ops_dispatch(struct node *n, struct conn *c, const struct wire_msg *m, const uint8_t *raw,
		  size_t len)
{
	if (!conn_is_ready(c)) {
		if (m->type == WIRE_HELLO)
			op_hello(n, c, m);
		else
			conn_error(c, m->rid, WIRE_E_HELLO_REQUIRED, "the first frame must be HELLO");
		return;
	}
	/* A local client's request about a room relayed by another node goes
	 * there; a proxy's requests are this node's to handle. A restricted
	 * token's grants are checked before a request leaves. */
	if (!conn_proxy_peer(c) && !guard_may_route(node_guard(n), c, m))
		return;
	if (!conn_proxy_peer(c) && route_client(n, c, m, raw, len))
		return;
	/* A room about to be relayed here: its requests wait for it. */
	if (node_clus(n)) {
		/* (node_read_ns() is a client read's; a peer's frames have none) */
		park_check_stall(n, conn_proxy_peer(c) ? node_mono_ns() : node_read_ns(n));
		if (park_maybe(n, c, m, raw, len))
			return;
	}
	switch (m->type) {
	case WIRE_PLACE:
		op_place(n, c, m);
		break;
	case WIRE_SUB_REPLAY:
		if (conn_proxy_peer(c))
			op_sub_replay(n, c, m);
		else
			conn_error(c, m->rid, WIRE_E_UNKNOWN_TYPE,
				   "frame type 109 is not a request this node accepts");
		break;
	case WIRE_CREATE_ID:
		if (conn_proxy_peer(c))
			ops_create_id(n, c, m);
		else
			conn_error(c, m->rid, WIRE_E_UNKNOWN_TYPE,
				   "frame type 107 is not a request this node accepts");
		break;
	case WIRE_HELLO:
		conn_error(c, m->rid, WIRE_E_BAD_REQUEST, "HELLO was already received");
		break;
	case WIRE_PING: {
		struct wire_buf *b = node_scratch(n);
		wire_begin(b, WIRE_PONG, m->rid, 0);
		wire_end(b, 0);
		conn_send(c, b);
		break;
	}
	case WIRE_CREATE:
		ops_create_id(n, c, m);
		break;
	case WIRE_REMOVE:
		op_remove(n, c, m);
		break;
	case WIRE_GRANT:
		op_grant(n, c, m, 1);
		break;
	case WIRE_REVOKE:
		op_grant(n, c, m, 0);
		break;
	case WIRE_SUBSCRIBE:
		op_subscribe(n, c, m);
		break;
	case WIRE_UNSUBSCRIBE:
		op_unsubscribe(n, c, m);
		break;
	case WIRE_INFO:
		op_info(n, c, m);
		break;
	case WIRE_PUSH:
		op_push(n, c, m);
		break;
	case WIRE_STREAM_OPEN:
		streams_open(n, c, m);
		break;
	case WIRE_STREAM_CHUNK:
		streams_chunk(n, c, m);
		break;
	case WIRE_STREAM_CLOSE:
		streams_close(n, c, m);
		break;
	case WIRE_STREAM_ABORT:
		streams_abort(n, c, m);
		break;
	case WIRE_STREAM_REJOIN:
		streams_rejoin(n, c, m);
		break;
	case WIRE_STREAM_CLAIM:
		streams_claim(n, c, m);
		break;
	default: {
		char msg[80];
		snprintf(msg, sizeof(msg), "frame type %u is not a request this node accepts",
			 m->type);
		conn_error(c, m->rid, WIRE_E_UNKNOWN_TYPE, msg);
	}
	}
}

#include "node/srepl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/memb.h"
#include "node/clus.h"
#include "node/conn.h"
#include "node/node.h"
#include "node/peer.h"
#include "node/repl.h"
#include "node/route.h"
#include "node/streams.h"
#include "stream/blob.h"
#include "stream/room.h"
#include "stream/smap.h"
#include "stream/strm.h"
#include "stream/wire.h"

#define NODES_MAX 64 /* receiver nodes named in a replica */

/* One stream's replica at a backup. */
struct srep {
	char id[WIRE_STREAM_ID_MAX + 1];
	char room[ROOM_ID_LEN + 1];
	char sender[MEMB_NAME_MAX + 1]; /* the sender's node */
	uint64_t sid;			/* the sender's session */
	uint64_t offset;		/* bytes hashed here */
	uint64_t acked;			/* what the relay said its receivers took */
	struct blob *opened;
	/* the bytes from about acked to offset, as STREAM_DATA frames, and
	 * the hash state at offset: a strm outside any table holds them */
	struct strm *hold;
	size_t nnodes;
	struct {
		char name[MEMB_NAME_MAX + 1];
		uint64_t acked;
	} nodes[NODES_MAX];
};

struct srepl {
	struct smap *byid;     /* stream id -> srep */
	struct strms *scratch; /* a table for the hold streams */
	struct wire_dec *dec;
	struct wire_buf buf;
};

struct srepl *srepl_new(size_t frame_max)
{
	struct srepl *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->byid = smap_new();
	t->scratch = strms_new(NULL, NULL);
	t->dec = wire_dec_new(frame_max + 4096);
	wire_buf_init(&t->buf);
	if (!t->byid || !t->scratch || !t->dec) {
		srepl_free(t);
		return NULL;
	}
	return t;
}

static void srep_free(struct srepl *t, struct srep *r)
{
	if (r->opened)
		blob_unref(r->opened);
	if (r->hold)
		strms_end(t->scratch, r->hold);
	free(r);
}

void srepl_free(struct srepl *t)
{
	if (!t)
		return;
	size_t pos = 0;
	struct srep *r;
	while (t->byid && (r = smap_next(t->byid, &pos)) != NULL) {
		smap_del(t->byid, r->id, strlen(r->id));
		srep_free(t, r);
		pos = 0;
	}
	smap_free(t->byid);
	strms_free(t->scratch);
	wire_dec_free(t->dec);
	wire_buf_free(&t->buf);
	free(t);
}

size_t srepl_count(const struct node *n)
{
	return smap_count(node_srepl((struct node *)n)->byid);
}

static void drop(struct srepl *t, struct srep *r)
{
	smap_del(t->byid, r->id, strlen(r->id));
	srep_free(t, r);
}

/* ---- at the relay ---- */

/* REPL_STREAM [520, 0, room, stream, opened, sender_node, sid, offset,
 * acked, hash, nodes]: nodes is flat, [name, acked, name, acked, ...]. */
static void enc_stream(struct node *n, struct wire_buf *b, struct strm *s)
{
	struct conn *c = strm_sender(s);
	/* the sender's publisher key (its session id without one): what a
	 * session must have to claim the stream after a takeover */
	uint64_t sid = c ? conn_push_key(c) : strm_claim_sid(s);
	uint8_t hash[1024];
	size_t hlen = strm_hash_export(s, hash, sizeof(hash));
	size_t k = 0;
	const char *names[NODES_MAX];
	uint64_t acked[NODES_MAX];
	for (size_t i = 0; i < strm_receivers(s) && k < NODES_MAX; i++) {
		struct room_sub *sub = strm_receiver(s, i);
		if (room_sub_is_peer(sub) && room_sub_who(sub)) {
			names[k] = peer_name(room_sub_who(sub));
			acked[k++] = strm_receiver_acked(s, i);
		}
	}
	for (size_t i = 0; i < strm_waits(s) && k < NODES_MAX; i++) {
		names[k] = strm_wait_name(s, i);
		acked[k++] = strm_wait_acked(s, i);
	}
	/* This node's own receivers (clients here): should it die, their
	 * libraries take the stream up elsewhere (STREAM_REJOIN), from the
	 * bytes the new relay keeps while it waits for this node's name. */
	for (size_t i = 0; i < strm_receivers(s) && k < NODES_MAX; i++) {
		struct room_sub *sub = strm_receiver(s, i);
		if (!room_sub_is_peer(sub) && room_sub_who(sub)) {
			names[k] = clus_self(node_clus(n));
			acked[k++] = strm_acked(s);
			break;
		}
	}
	wire_buf_reset(b);
	msgpack_packer *pk = wire_begin(b, WIRE_REPL_STREAM, 0, 9);
	wire_pack_cstr(pk, room_id(strm_room(s)));
	wire_pack_cstr(pk, strm_id(s));
	struct blob *op = strm_opened(s);
	wire_pack_bin(pk, op ? blob_data(op) : NULL, op ? blob_len(op) : 0);
	wire_pack_cstr(pk, strm_sender_node(s));
	msgpack_pack_uint64(pk, sid);
	msgpack_pack_uint64(pk, strm_offset(s));
	msgpack_pack_uint64(pk, strm_acked(s));
	wire_pack_bin(pk, hash, hlen);
	msgpack_pack_array(pk, (uint32_t)(2 * k));
	for (size_t i = 0; i < k; i++) {
		wire_pack_cstr(pk, names[i]);
		msgpack_pack_uint64(pk, acked[i]);
	}
	wire_end(b, 0);
}

static void enc_chunk(struct wire_buf *b, const struct strm *s, uint64_t off, uint64_t acked,
		      const void *data, size_t len)
{
	wire_buf_reset(b);
	msgpack_packer *pk = wire_begin(b, WIRE_REPL_CHUNK, 0, 4);
	wire_pack_cstr(pk, strm_id(s));
	msgpack_pack_uint64(pk, off);
	msgpack_pack_uint64(pk, acked);
	wire_pack_bin(pk, data, len);
	wire_end(b, 0);
}

void srepl_open(struct node *n, struct strm *s, const uint8_t *opened, size_t len, const char *node)
{
	if (!node_clus(n))
		return;
	struct blob *op = blob_new(len);
	if (op) {
		memcpy(blob_data(op), opened, len);
		strm_set_opened(s, op, node);
		blob_unref(op);
	}
	const char *first[1];
	int have = repl_backups(n, room_id(strm_room(s)), first, 1) == 1;
	strm_set_repl(s, have && op);
	if (!have || !op)
		return;
	struct wire_buf *b = &node_srepl(n)->buf;
	enc_stream(n, b, s);
	repl_to_backups(n, room_id(strm_room(s)), b->p, b->len);
}

void srepl_chunk(struct node *n, struct strm *s, uint64_t off, const void *data, size_t len)
{
	if (!node_clus(n) || !strm_opened(s))
		return;
	struct wire_buf *b = &node_srepl(n)->buf;
	enc_chunk(b, s, off, strm_acked(s), data, len);
	repl_to_backups(n, room_id(strm_room(s)), b->p, b->len);
}

void srepl_end(struct node *n, struct strm *s)
{
	if (!node_clus(n) || !strm_opened(s) || !strm_room(s))
		return;
	struct wire_buf *b = &node_srepl(n)->buf;
	wire_buf_reset(b);
	msgpack_packer *pk = wire_begin(b, WIRE_REPL_STREAM_END, 0, 1);
	wire_pack_cstr(pk, strm_id(s));
	wire_end(b, 0);
	repl_to_backups(n, room_id(strm_room(s)), b->p, b->len);
}

void srepl_fill(struct node *n, struct room *r)
{
	if (!node_clus(n))
		return;
	struct srepl *t = node_srepl(n);
	const char *first[1];
	int have = repl_backups(n, room_id(r), first, 1) == 1;
	size_t pos = 0;
	struct strm *s;
	while ((s = strms_next(node_strms(n), &pos)) != NULL) {
		if (strm_room(s) != r || !strm_opened(s))
			continue;
		/* The new first backup acknowledges the offset once it has the
		 * replica; until then acked waits (or, with no backup, is free). */
		strm_set_repl(s, have);
		if (!have)
			continue;
		enc_stream(n, &t->buf, s);
		repl_to_backups(n, room_id(r), t->buf.p, t->buf.len);
		/* the bytes receivers may still need: history, not hashed there */
		for (size_t i = 0; i < strm_buf_count(s); i++) {
			uint64_t off;
			size_t len;
			struct blob *f = strm_buf_at(s, i, &off, &len);
			enc_chunk(&t->buf, s, off, strm_acked(s), blob_data(f) + blob_len(f) - len,
				  len);
			repl_to_backups(n, room_id(r), t->buf.p, t->buf.len);
		}
	}
}

void srepl_restate(struct node *n, struct strm *s, const char *node)
{
	struct blob *op = strm_opened(s);
	if (!node_clus(n) || !op || !strm_room(s))
		return;
	blob_ref(op); /* strm_set_opened lets go of the one it has */
	strm_set_opened(s, op, node);
	blob_unref(op);
	const char *first[1];
	if (repl_backups(n, room_id(strm_room(s)), first, 1) != 1)
		return;
	/* As srepl_fill, for this stream: the backups make the replica
	 * again, then get the bytes receivers may still need. */
	struct srepl *t = node_srepl(n);
	enc_stream(n, &t->buf, s);
	repl_to_backups(n, room_id(strm_room(s)), t->buf.p, t->buf.len);
	for (size_t i = 0; i < strm_buf_count(s); i++) {
		uint64_t off;
		size_t len;
		struct blob *f = strm_buf_at(s, i, &off, &len);
		enc_chunk(&t->buf, s, off, strm_acked(s), blob_data(f) + blob_len(f) - len, len);
		repl_to_backups(n, room_id(strm_room(s)), t->buf.p, t->buf.len);
	}
}

/* ---- at a backup ---- */

static void send_ack(struct node *n, struct peer *p, const char *id, uint64_t upto)
{
	struct wire_buf *b = &node_srepl(n)->buf;
	wire_buf_reset(b);
	msgpack_packer *pk = wire_begin(b, WIRE_REPL_CHUNK_ACK, 0, 2);
	wire_pack_cstr(pk, id);
	msgpack_pack_uint64(pk, upto);
	wire_end(b, 0);
	peer_send(p, b->p, b->len);
}

static int name_ok(const struct wire_str *s, size_t max)
{
	return s->len > 0 && s->len <= max && !memchr(s->ptr, '\0', s->len);
}

static void on_stream(struct node *n, struct peer *p, const struct wire_msg *m)
{
	struct srepl *t = node_srepl(n);
	const struct wire_str *room = &m->f[0].s, *id = &m->f[1].s, *op = &m->f[2].s,
			      *sender = &m->f[3].s, *hash = &m->f[7].s;
	const msgpack_object *nodes = m->f[8].o;
	if (room->len != ROOM_ID_LEN || !name_ok(id, WIRE_STREAM_ID_MAX) || op->len < WIRE_HDR ||
	    !name_ok(sender, MEMB_NAME_MAX) || hash->len != strm_hash_size() ||
	    nodes->via.array.size > 2 * NODES_MAX) {
		vlog(node_log(n), LOG_WARN, "link %s: a stream replica out of bounds, dropped",
		     peer_name(p));
		return;
	}
	/* Only for a room backed up here: a room relayed here is this
	 * node's own (a hand-over of open streams is not done yet). */
	if (rooms_find(node_rooms(n), room->ptr, room->len))
		return;
	struct srep *r = smap_get(t->byid, id->ptr, id->len);
	if (r)
		drop(t, r);
	if (!(r = calloc(1, sizeof(*r))))
		return;
	memcpy(r->id, id->ptr, id->len);
	memcpy(r->room, room->ptr, room->len);
	memcpy(r->sender, sender->ptr, sender->len);
	r->sid = m->f[4].u;
	r->offset = m->f[5].u;
	r->acked = m->f[6].u;
	r->opened = blob_new(op->len);
	r->hold = strms_open(t->scratch, r->id, id->len, NULL, NULL, "", 0, -1, 0, 0);
	if (!r->opened || !r->hold || strm_hash_import(r->hold, hash->ptr, hash->len) < 0 ||
	    smap_put(t->byid, r->id, id->len, r) < 0) {
		srep_free(t, r);
		return;
	}
	memcpy(blob_data(r->opened), op->ptr, op->len);
	strm_set_offset(r->hold, r->offset);
	for (uint32_t i = 0; i + 1 < nodes->via.array.size && r->nnodes < NODES_MAX; i += 2) {
		const msgpack_object *nm = &nodes->via.array.ptr[i],
				     *ak = &nodes->via.array.ptr[i + 1];
		if (nm->type != MSGPACK_OBJECT_STR || nm->via.str.size == 0 ||
		    nm->via.str.size > MEMB_NAME_MAX || ak->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			continue;
		memcpy(r->nodes[r->nnodes].name, nm->via.str.ptr, nm->via.str.size);
		r->nodes[r->nnodes].name[nm->via.str.size] = '\0';
		r->nodes[r->nnodes++].acked = ak->via.u64;
	}
	send_ack(n, p, r->id, r->offset);
}

static void on_chunk(struct node *n, struct peer *p, const struct wire_msg *m)
{
	struct srepl *t = node_srepl(n);
	struct srep *r = smap_get(t->byid, m->f[0].s.ptr, m->f[0].s.len);
	if (!r)
		return;
	uint64_t off = m->f[1].u;
	const struct wire_str *data = &m->f[3].s;
	struct strm *h = r->hold;
	uint64_t bend = strm_buf_count(h) ? strm_buf_base(h) + strm_buf_bytes(h) : off;
	if (off + data->len <= r->offset) {
		/* history (a replica made mid-stream): kept, not hashed */
		if (bend != off)
			return;
	} else if (off != r->offset) {
		/* a gap: this replica cannot resume the stream any more */
		vlog(node_log(n), LOG_WARN, "stream %s: replica at %llu got bytes at %llu; dropped",
		     r->id, (unsigned long long)r->offset, (unsigned long long)off);
		drop(t, r);
		return;
	} else {
		if (bend != off)
			strm_buf_trim(h, UINT64_MAX); /* keep the bytes contiguous */
		strm_append(h, data->ptr, data->len, 0);
		r->offset += data->len;
	}
	struct blob *f = streams_data_frame(r->id, off, data->ptr, data->len);
	if (!f || strm_buf_add(h, off, data->len, f) < 0) {
		if (f)
			blob_unref(f);
		drop(t, r);
		return;
	}
	blob_unref(f);
	if (m->f[2].u > r->acked && m->f[2].u <= r->offset)
		r->acked = m->f[2].u;
	strm_buf_trim(h, r->acked);
	send_ack(n, p, r->id, r->offset);
}

void srepl_peer_frame(struct node *n, struct peer *p, const struct wire_msg *m)
{
	struct srepl *t = node_srepl(n);
	if (!node_clus(n))
		return;
	switch (m->type) {
	case WIRE_REPL_STREAM:
		on_stream(n, p, m);
		return;
	case WIRE_REPL_CHUNK:
		on_chunk(n, p, m);
		return;
	case WIRE_REPL_STREAM_END: {
		struct srep *r = smap_get(t->byid, m->f[0].s.ptr, m->f[0].s.len);
		if (r)
			drop(t, r);
		return;
	}
	case WIRE_REPL_CHUNK_ACK: {
		/* at the relay: from the room's first backup only */
		struct strm *s = strms_find(node_strms(n), m->f[0].s.ptr, m->f[0].s.len);
		const char *first[1];
		if (s && strm_room(s) && strm_sender_node(s)[0] &&
		    repl_backups(n, room_id(strm_room(s)), first, 1) == 1 &&
		    strcmp(first[0], peer_name(p)) == 0)
			strm_repl_ack(s, m->f[1].u);
		return;
	}
	}
}

void srepl_room_gone(struct node *n, const char *id)
{
	struct srepl *t = node_srepl(n);
	size_t pos = 0;
	struct srep *r;
	while ((r = smap_next(t->byid, &pos)) != NULL) {
		if (memcmp(r->room, id, ROOM_ID_LEN) == 0) {
			drop(t, r);
			pos = 0;
		}
	}
}

void srepl_install(struct node *n, struct room *room)
{
	struct srepl *t = node_srepl(n);
	struct clus *cl = node_clus(n);
	size_t pos = 0;
	struct srep *r;
	while ((r = smap_next(t->byid, &pos)) != NULL) {
		if (memcmp(r->room, room_id(room), ROOM_ID_LEN) != 0)
			continue;
		struct wire_msg op;
		size_t used;
		if (wire_parse(t->dec, blob_data(r->opened), blob_len(r->opened), &op, &used) !=
			WIRE_OK_ ||
		    op.type != WIRE_STREAM_OPENED) {
			drop(t, r);
			pos = 0;
			continue;
		}
		struct strm *s =
		    streams_from_replica(n, room, &op, r->hold, r->opened, r->sender, r->sid);
		if (s) {
			/* What every receiver had taken when the last chunk came
			 * (r->acked) is a floor for each: a node's own figure
			 * may be older (from the REPL_STREAM). */
			for (size_t i = 0; i < r->nnodes; i++)
				if (strcmp(r->nodes[i].name, clus_self(cl)) != 0)
					strm_wait_add(s, r->nodes[i].name,
						      r->nodes[i].acked > r->acked
							  ? r->nodes[i].acked
							  : r->acked,
						      node_now_ms(n));
			vlog(node_log(n), LOG_NOTICE,
			     "took over stream %s of room %.6s... at offset %llu (%zu receiver "
			     "nodes "
			     "to come back)",
			     strm_id(s), room_id(room), (unsigned long long)strm_offset(s),
			     strm_waits(s));
			route_stream_resume(n, s, r->sender, r->sid);
		}
		drop(t, r);
		pos = 0;
	}
}

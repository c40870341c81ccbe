#include "node/streams.h"

#include <stdio.h>
#include <string.h>

#include "node/conn.h"
#include "node/guard.h"
#include "node/node.h"
#include "node/clus.h"
#include "node/park.h"
#include "node/peer.h"
#include "node/repl.h"
#include "node/srepl.h"
#include "stream/blob.h"
#include "stream/room.h"
#include "stream/strm.h"
#include "stream/wire.h"

#define S(f) (f).s.ptr, (f).s.len
#define WAIT_MS	 5000  /* how long a taken-over stream waits for a receiver node */
#define CLAIM_MS 10000 /* how long it waits for its sender's session */

/* Text fields of a stream: UTF-8, no control characters. */
static int printable(const char *p, size_t len, size_t max, int allow_empty)
{
	if ((len == 0 && !allow_empty) || len > max || !wire_utf8_ok(p, len))
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch < 0x20 || ch == 0x7f)
			return 0;
	}
	return 1;
}

static int is_str(const msgpack_object *o, size_t max)
{
	return o->type == MSGPACK_OBJECT_STR && o->via.str.size <= max;
}

/* Attributes: at most WIRE_ATTRS_MAX pairs of strings. */
static int attrs_ok(const msgpack_object *o)
{
	if (o->via.map.size > WIRE_ATTRS_MAX)
		return 0;
	for (uint32_t i = 0; i < o->via.map.size; i++)
		if (!is_str(&o->via.map.ptr[i].key, WIRE_ATTR_LEN_MAX) ||
		    !is_str(&o->via.map.ptr[i].val, WIRE_ATTR_LEN_MAX))
			return 0;
	return 1;
}

static int dests_ok(const msgpack_object *o)
{
	if (o->via.array.size > WIRE_DESTS_MAX)
		return 0;
	for (uint32_t i = 0; i < o->via.array.size; i++)
		if (!is_str(&o->via.array.ptr[i], WIRE_IDENTITY_MAX))
			return 0;
	return 1;
}

static int in_dests(const msgpack_object *dests, const char *identity)
{
	size_t len = strlen(identity);
	for (uint32_t i = 0; i < dests->via.array.size; i++) {
		const msgpack_object *d = &dests->via.array.ptr[i];
		if (d->via.str.size == len && memcmp(d->via.str.ptr, identity, len) == 0)
			return 1;
	}
	return 0;
}

struct blob *streams_data_frame(const char *id, uint64_t off, const void *data, size_t len)
{
	struct wire_buf b;
	wire_buf_init(&b);
	msgpack_packer *pk = wire_begin(&b, WIRE_STREAM_DATA, 0, 3);
	wire_pack_cstr(pk, id);
	msgpack_pack_uint64(pk, off);
	msgpack_pack_bin(pk, len);
	wire_end(&b, len);
	struct blob *f = blob_new(b.len + len);
	if (f) {
		memcpy(blob_data(f), b.p, b.len);
		memcpy(blob_data(f) + b.len, data, len);
	}
	wire_buf_free(&b);
	return f;
}

/* Sends the frame in b to every receiver still subscribed, as one shared
 * blob; `release`, if set, is told when every receiver has let go of it. */
static void fan_out(struct node *n, struct strm *s, const struct wire_buf *b, const void *payload, size_t plen,
		    int count_inflight)
{
	struct blob *frame = blob_new(b->len + plen);
	if (!frame)
		return;
	memcpy(blob_data(frame), b->p, b->len);
	if (plen)
		memcpy(blob_data(frame) + b->len, payload, plen);
	if (count_inflight) {
		strm_inflight_add(s, plen);
		blob_on_release(frame, strm_release_cb, s, plen);
	}
	/* Chunks (count_inflight) may be passed by pushes; END and OPENED
	 * may not pass chunks, so they queue behind them too. A receiver that
	 * has the bytes already (strm_receiver_from) is not sent them again. */
	uint64_t off = strm_offset(s) - plen;
	for (size_t i = 0; i < strm_receivers(s); i++) {
		uint64_t from = strm_receiver_from(s, i);
		if (plen && from > off) {
			if (from >= off + plen)
				continue;
			struct blob *tail = streams_data_frame(
			    strm_id(s), from, (const uint8_t *)payload + (from - off),
			    off + plen - from);
			if (tail) {
				node_send_bulk(n, strm_receiver(s, i), tail);
				blob_unref(tail);
			}
			continue;
		}
		node_send_bulk(n, strm_receiver(s, i), frame);
	}
	blob_unref(frame);
}

/* Encodes END for stream s into b. */
static void enc_end(struct wire_buf *b, const struct strm *s, const char *status,
		    const char *reason, const msgpack_object *attrs, int with_digest)
{
	msgpack_packer *pk = wire_begin(b, WIRE_STREAM_END, 0, 6);
	wire_pack_cstr(pk, strm_id(s));
	wire_pack_cstr(pk, status);
	wire_pack_cstr(pk, reason);
	if (attrs)
		msgpack_pack_object(pk, *attrs);
	else
		msgpack_pack_map(pk, 0);
	msgpack_pack_uint64(pk, strm_offset(s));
	if (with_digest)
		msgpack_pack_uint64(pk, strm_digest(s));
	else
		msgpack_pack_nil(pk);
	wire_end(b, 0);
}

/* Ends s for its receivers (and, if tell_sender, its sender) with status and
 * reason, then takes it out of every table. */
static void end_stream(struct node *n, struct strm *s, const char *status, const char *reason,
		       int tell_sender)
{
	/* A send below may drop a slow connection, and a dropped sender ends
	 * its streams, this one among them: hold s, and end it here only if
	 * it is still open afterwards. */
	strm_ref(s);
	struct conn *sender = strm_sender(s);
	uint64_t rid;
	/* A room fenced (this node stalled, or a newer relay spoke): the
	 * newer relay most likely has the stream, and its receivers go on
	 * there. It ends here without a word to them or to the backups
	 * (whose replica may be the newer relay's). */
	int fenced = strm_room(s) && (room_marks(strm_room(s)) & PARK_STALE);
	if (!fenced)
		srepl_end(n, s);
	if (fenced) {
		vlog(node_log(n), LOG_INFO, "stream %s of a fenced room: dropped here (%s)",
		     strm_id(s), reason);
	} else if (strm_closing(s, &rid)) {
		/* The receivers already have their END (ok) and every byte was
		 * handed on: the close stands, and its reply is due now. */
		if (sender) {
			struct wire_buf *b = node_scratch(n);
			msgpack_packer *pk = wire_begin(b, WIRE_OK, rid, 1);
			msgpack_pack_uint64(pk, strm_offset(s));
			wire_end(b, 0);
			conn_send(sender, b);
		}
	} else {
		/* One blob for receivers and sender: a nested end (a receiver
		 * dropped meanwhile) reuses the scratch buffer. */
		struct wire_buf *b = node_scratch(n);
		enc_end(b, s, status, reason, NULL, 0);
		struct blob *frame = blob_new(b->len);
		if (frame) {
			memcpy(blob_data(frame), b->p, b->len);
			for (size_t i = 0; i < strm_receivers(s); i++)
				node_send_bulk(n, strm_receiver(s, i), frame);
			if (tell_sender && strm_sender(s))
				conn_send_blob(strm_sender(s), frame);
			blob_unref(frame);
		}
	}
	if (strm_room(s)) {
		if ((sender = strm_sender(s)))
			conn_stream_del(sender, s);
		node_counters(n)->streams_ended++;
		strms_end(node_strms(n), s);
	}
	strm_unref(s);
}

/* A request about stream s failed: the sender gets the error, everyone the
 * end of the stream. */
static void fail_stream(struct node *n, struct conn *c, struct strm *s, uint64_t rid, int code,
			const char *msg)
{
	char reason[WIRE_REASON_MAX];
	snprintf(reason, sizeof(reason), "%s: %s", wire_err_name(code), msg);
	strm_ref(s); /* the error reply may drop c, ending s */
	conn_error(c, rid, code, msg);
	if (strm_room(s))
		end_stream(n, s, "error", reason, 1);
	strm_unref(s);
}

/* The stream s named by a chunk, close or abort from c, or NULL after an
 * unknown_stream reply. Another client's stream is unknown to c. */
static struct strm *own_stream(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct strm *s = strms_find(node_strms(n), S(m->f[0]));
	if (s && !strm_sender(s) && strm_claim_sid(s) && strm_claim_sid(s) == conn_push_key(c) &&
	    strm_room(s) && conn_stream_add(c, s) == 0) {
		/* A stream taken over from a replica, or whose sender's
		 * connection went: its sender (by publisher key: the same
		 * session, or a new one of the same client), through whichever
		 * node, has it back. */
		strm_set_sender(s, c);
		strm_set_claim_sid(s, 0);
		strm_touch(s, node_now_ms(n));
	}
	if (s && conn_proxy_peer(c) && strm_room(s) && (room_marks(strm_room(s)) & PARK_STALE)) {
		/* A room fenced (this node stalled): a newer relay most likely
		 * took the stream over and tells the sender's node where to
		 * send (STREAM_RESUME); that node keeps the chunks and the
		 * close until then. Bytes taken here would reach receivers
		 * that went on elsewhere. */
		if (m->type == WIRE_STREAM_ABORT) {
			struct wire_buf *b = node_scratch(n);
			wire_enc_ok_nil(b, m->rid);
			conn_send(c, b);
		}
		return NULL;
	}
	if (!s || strm_sender(s) != c) {
		conn_error(c, m->rid, WIRE_E_UNKNOWN_STREAM, "no open stream of yours has this id");
		return NULL;
	}
	if (!strm_is_open(s)) {
		conn_error(c, m->rid, WIRE_E_BAD_REQUEST, "the stream is already closing");
		return NULL;
	}
	return s;
}

void streams_open(struct node *n, struct conn *c, const struct wire_msg *m)
{
	const struct cfg *cfg = node_cfg(n);
	struct room *r = rooms_find(node_rooms(n), S(m->f[0]));
	if (!r) {
		conn_error(c, m->rid, WIRE_E_UNKNOWN_ROOM, "no room with this id");
		return;
	}
	if (!room_may_push(r, conn_identity(c), conn_identity_len(c))) {
		conn_error(c, m->rid, WIRE_E_FORBIDDEN, "this identity may not send to the room");
		return;
	}
	if (!guard_may(node_guard(n), c, r, TOKEN_PUSH, m->rid))
		return;
	const msgpack_object *size = m->f[5].o, *attrs = m->f[6].o, *dests = m->f[7].o;
	const char *bad = NULL;
	if (!printable(S(m->f[1]), WIRE_STREAM_ID_MAX, 0) || memchr(m->f[1].s.ptr, ' ', m->f[1].s.len))
		bad = "stream id must be 1-64 printable bytes without spaces";
	else if (!printable(S(m->f[2]), WIRE_TOPIC_MAX, 1))
		bad = "topic must be at most 128 printable bytes";
	else if (!printable(S(m->f[3]), WIRE_NAME_MAX, 1))
		bad = "name must be at most 255 printable bytes";
	else if (!printable(S(m->f[4]), WIRE_MIME_MAX, 1))
		bad = "mime type must be at most 127 printable bytes";
	else if (size->type != MSGPACK_OBJECT_NIL &&
		 (size->type != MSGPACK_OBJECT_POSITIVE_INTEGER || size->via.u64 > INT64_MAX))
		bad = "size must be nil or an unsigned integer";
	else if (!attrs_ok(attrs))
		bad = "attributes must be at most 32 pairs of strings of at most 1024 bytes";
	else if (!dests_ok(dests))
		bad = "destinations must be at most 64 identities";
	if (bad) {
		conn_error(c, m->rid, WIRE_E_BAD_REQUEST, bad);
		return;
	}
	if (strms_find(node_strms(n), S(m->f[1]))) {
		conn_error(c, m->rid, WIRE_E_STREAM_EXISTS, "a stream with this id is open");
		return;
	}
	if (conn_stream_count(c) >= cfg->max_streams) {
		node_counters(n)->limits_hit++;
		node_counters(n)->limit_streams++;
		conn_error(c, m->rid, WIRE_E_LIMIT,
			   "too many open streams on this connection (max_streams)");
		return;
	}
	int64_t sz = size->type == MSGPACK_OBJECT_NIL ? -1 : (int64_t)size->via.u64;
	struct strm *s = strms_open(node_strms(n), S(m->f[1]), r, c, S(m->f[2]), sz,
				    cfg->stream_window, node_now_ms(n));
	if (!s || conn_stream_add(c, s) < 0) {
		if (s)
			strms_end(node_strms(n), s);
		conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory opening the stream");
		return;
	}
	node_counters(n)->streams_opened++;
	room_touch(node_rooms(n), r, node_now_ms(n));
	repl_touch(n, r);

	/* The receivers are fixed now: later subscribers get nothing of it. */
	for (struct room_sub *sub = room_subs(r); sub; sub = room_sub_next(sub)) {
		if (room_sub_who(sub) == c || !room_sub_wants(sub, S(m->f[2])))
			continue;
		if (dests->via.array.size && !in_dests(dests, room_sub_identity(sub)))
			continue;
		if (strm_add_receiver(s, sub) < 0) {
			conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory opening the stream");
			end_stream(n, s, "error", "internal: out of memory", 0);
			return;
		}
	}

	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_STREAM_OPENED, 0, 11);
	wire_pack_cstr(pk, room_id(r));
	wire_pack_cstr(pk, strm_id(s));
	wire_pack_str(pk, conn_identity(c), conn_identity_len(c));
	wire_pack_str(pk, S(m->f[2]));
	wire_pack_str(pk, S(m->f[3]));
	wire_pack_str(pk, S(m->f[4]));
	msgpack_pack_object(pk, *size);
	msgpack_pack_object(pk, *attrs);
	msgpack_pack_object(pk, *dests);
	msgpack_pack_uint64(pk, m->f[8].u);
	msgpack_pack_uint64(pk, conn_sid(c)); /* origin: other nodes skip the sender */
	wire_end(b, 0);
	if (node_clus(n)) {
		/* the backups have it before any receiver */
		struct peer *via = conn_proxy_peer(c);
		srepl_open(n, s, b->p, b->len, via ? peer_name(via) : clus_self(node_clus(n)));
	} else {
		/* kept for a receiver that comes back (STREAM_REJOIN) */
		struct blob *op = blob_new(b->len);
		if (op) {
			memcpy(blob_data(op), b->p, b->len);
			strm_set_opened(s, op, "");
			blob_unref(op);
		}
	}
	fan_out(n, s, b, NULL, 0, 0);

	b = node_scratch(n);
	pk = wire_begin(b, WIRE_OK, m->rid, 1);
	msgpack_pack_uint64(pk, strm_limit(s));
	wire_end(b, 0);
	conn_send(c, b);
}

void streams_chunk(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct strm *s = own_stream(n, c, m);
	if (!s)
		return;
	const struct cfg *cfg = node_cfg(n);
	uint64_t off = m->f[1].u;
	const struct wire_str *data = &m->f[2].s;
	char msg[160];
	if (data->len > cfg->chunk_max) {
		snprintf(msg, sizeof(msg), "chunk of %u bytes is over the chunk limit of %zu",
			 data->len, cfg->chunk_max);
		fail_stream(n, c, s, m->rid, WIRE_E_CHUNK_TOO_LARGE, msg);
		return;
	}
	if (off != strm_offset(s)) {
		snprintf(msg, sizeof(msg), "chunk at offset %llu, expected %llu",
			 (unsigned long long)off, (unsigned long long)strm_offset(s));
		fail_stream(n, c, s, m->rid, WIRE_E_BAD_OFFSET, msg);
		return;
	}
	if (strm_size(s) >= 0 && off + data->len > (uint64_t)strm_size(s)) {
		snprintf(msg, sizeof(msg), "chunk ends at %llu, past the declared size %lld",
			 (unsigned long long)(off + data->len), (long long)strm_size(s));
		fail_stream(n, c, s, m->rid, WIRE_E_OVER_SIZE, msg);
		return;
	}
	if (off + data->len > strm_limit(s)) {
		snprintf(msg, sizeof(msg), "chunk ends at %llu, past the granted window %llu",
			 (unsigned long long)(off + data->len), (unsigned long long)strm_limit(s));
		fail_stream(n, c, s, m->rid, WIRE_E_WINDOW, msg);
		return;
	}
	strm_append(s, data->ptr, data->len, node_now_ms(n));
	struct room *r = strm_room(s);
	room_touch(node_rooms(n), r, node_now_ms(n));
	repl_touch(n, r);
	room_count(r, data->len);
	node_counters(n)->stream_bytes += data->len;

	if (node_clus(n)) {
		/* To the backups before any receiver; and kept until every
		 * receiver has taken it, for a receiver node that comes back. */
		srepl_chunk(n, s, off, data->ptr, data->len);
		struct blob *kept = streams_data_frame(strm_id(s), off, data->ptr, data->len);
		if (kept) {
			strm_buf_add(s, off, data->len, kept);
			blob_unref(kept);
		}
	}
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_STREAM_DATA, 0, 3);
	wire_pack_cstr(pk, strm_id(s));
	msgpack_pack_uint64(pk, off);
	msgpack_pack_bin(pk, data->len);
	wire_end(b, data->len);
	fan_out(n, s, b, data->ptr, data->len, 1);
}

void streams_close(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct strm *s = own_stream(n, c, m);
	if (!s)
		return;
	const msgpack_object *attrs = m->f[2].o, *sum = m->f[3].o;
	if (!attrs_ok(attrs) || (sum->type != MSGPACK_OBJECT_NIL &&
				 sum->type != MSGPACK_OBJECT_POSITIVE_INTEGER)) {
		conn_error(c, m->rid, WIRE_E_BAD_REQUEST,
			   "close takes string attributes and a nil or unsigned checksum");
		return;
	}
	char msg[160];
	if (m->f[1].s.len) {
		/* A close with a reason is the sender giving up. */
		char reason[WIRE_REASON_MAX];
		snprintf(reason, sizeof(reason), "%.*s", (int)m->f[1].s.len, m->f[1].s.ptr);
		end_stream(n, s, "aborted", reason, 0);
		struct wire_buf *b = node_scratch(n);
		wire_enc_ok_nil(b, m->rid);
		conn_send(c, b);
		return;
	}
	if (strm_size(s) >= 0 && strm_offset(s) != (uint64_t)strm_size(s)) {
		snprintf(msg, sizeof(msg), "declared %lld bytes, sent %llu", (long long)strm_size(s),
			 (unsigned long long)strm_offset(s));
		fail_stream(n, c, s, m->rid, WIRE_E_SIZE_MISMATCH, msg);
		return;
	}
	if (sum->type == MSGPACK_OBJECT_POSITIVE_INTEGER && sum->via.u64 != strm_digest(s)) {
		snprintf(msg, sizeof(msg), "XXH3-64 of the bytes is %016llx, the close says %016llx",
			 (unsigned long long)strm_digest(s), (unsigned long long)sum->via.u64);
		fail_stream(n, c, s, m->rid, WIRE_E_CHECKSUM, msg);
		return;
	}
	struct wire_buf *b = node_scratch(n);
	enc_end(b, s, "ok", "", attrs, 1);
	if (node_clus(n)) {
		/* for a receiver node that comes back before the last ack */
		struct blob *endf = blob_new(b->len);
		if (endf) {
			memcpy(blob_data(endf), b->p, b->len);
			strm_set_end_frame(s, endf);
			blob_unref(endf);
		}
	}
	fan_out(n, s, b, NULL, 0, 0);
	/* The sender's OK waits until every receiver's output let go of the
	 * last bytes: then its progress reached the end for real. */
	strm_set_closing(s, m->rid);
	if (strm_acked(s) == strm_offset(s))
		streams_flush_due(n, s);
}

void streams_abort(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct strm *s = own_stream(n, c, m);
	if (!s)
		return;
	char reason[WIRE_REASON_MAX];
	snprintf(reason, sizeof(reason), "%.*s", (int)m->f[1].s.len, m->f[1].s.ptr);
	end_stream(n, s, "aborted", reason, 0);
	struct wire_buf *b = node_scratch(n);
	wire_enc_ok_nil(b, m->rid);
	conn_send(c, b);
}

void streams_flush_due(struct node *n, struct strm *s)
{
	uint64_t rid;
	struct conn *sender = strm_sender(s);
	if (!strm_room(s))
		return; /* ended meanwhile */
	/* What every receiver took is no longer needed for one coming back. */
	strm_buf_trim(s, strm_acked(s));
	if (!sender)
		return; /* taken over: waits for its sender to claim it */
	if (strm_closing(s, &rid)) {
		if (strm_acked(s) < strm_offset(s))
			return;
		srepl_end(n, s);
		struct wire_buf *b = node_scratch(n);
		msgpack_packer *pk = wire_begin(b, WIRE_OK, rid, 1);
		msgpack_pack_uint64(pk, strm_offset(s));
		wire_end(b, 0);
		conn_send(sender, b);
		conn_stream_del(sender, s);
		node_counters(n)->streams_ended++;
		strms_end(node_strms(n), s);
		return;
	}
	/* Credit in steps of a quarter window, or whatever is left once all
	 * is delivered, so a fast stream costs few CREDIT frames. */
	uint64_t limit = strm_limit(s), sent = strm_credit_sent(s);
	uint64_t step = node_cfg(n)->stream_window / 4;
	if (limit > sent && (limit - sent >= step || strm_acked(s) == strm_offset(s))) {
		struct wire_buf *b = node_scratch(n);
		msgpack_packer *pk = wire_begin(b, WIRE_STREAM_CREDIT, 0, 3);
		wire_pack_cstr(pk, strm_id(s));
		msgpack_pack_uint64(pk, strm_acked(s));
		msgpack_pack_uint64(pk, limit);
		wire_end(b, 0);
		conn_send(sender, b);
		strm_set_credit_sent(s, limit);
		/* The sender's idle time starts when it can send again. */
		strm_touch(s, node_now_ms(n));
	}
}

void streams_sender_gone(struct node *n, struct strm *s)
{
	end_stream(n, s, "aborted", "sender disconnected", 0);
}

void streams_sender_lost(struct node *n, struct strm *s, uint64_t key)
{
	struct conn *c = strm_sender(s);
	if (c)
		conn_stream_del(c, s);
	strm_set_sender(s, NULL);
	strm_set_claim_sid(s, key);
	/* CLAIM_MS counts from now (streams_sweep); credit waits for the
	 * claim (streams_flush_due). */
	strm_touch(s, node_now_ms(n));
	vlog(node_log(n), LOG_INFO,
	     "stream %s: its sender's connection went at offset %llu; waiting %d ms for it to "
	     "claim the stream again",
	     strm_id(s), (unsigned long long)strm_offset(s), CLAIM_MS);
}

void streams_claim(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct strm *s = strms_find(node_strms(n), S(m->f[1]));
	struct room *r = s ? strm_room(s) : NULL;
	if (!r || strlen(room_id(r)) != m->f[0].s.len ||
	    memcmp(room_id(r), m->f[0].s.ptr, m->f[0].s.len) != 0) {
		conn_error(c, m->rid, WIRE_E_UNKNOWN_STREAM,
			   "no open stream in this room has this id (it ended, or was lost)");
		return;
	}
	uint64_t key = conn_push_key(c);
	struct conn *was = strm_sender(s);
	if (was != c) {
		/* The stream is this client's if it waits for its key, or if
		 * its sender is an older session with the same publisher key
		 * (whose loss this node has not seen yet: the client, which
		 * moved, knows better). A client without a publisher id has
		 * its session id as key: no other session can claim. */
		int mine = was ? conn_push_key(was) == key && conn_push_key(was) != conn_sid(was)
			       : strm_claim_sid(s) == key;
		if (!mine) {
			conn_error(c, m->rid, WIRE_E_UNKNOWN_STREAM,
				   was ? "the stream is another session's"
				       : "the stream waits for another sender");
			return;
		}
		if (conn_stream_count(c) >= node_cfg(n)->max_streams) {
			node_counters(n)->limits_hit++;
			node_counters(n)->limit_streams++;
			conn_error(c, m->rid, WIRE_E_LIMIT,
				   "too many open streams on this connection (max_streams)");
			return;
		}
		if (conn_stream_add(c, s) < 0) {
			conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory claiming the stream");
			return;
		}
		if (was)
			conn_stream_del(was, s);
		strm_set_sender(s, c);
		strm_set_claim_sid(s, 0);
		strm_touch(s, node_now_ms(n));
		vlog(node_log(n), LOG_INFO, "stream %s: claimed by session %016llx at offset %llu",
		     strm_id(s), (unsigned long long)conn_sid(c),
		     (unsigned long long)strm_offset(s));
		if (node_clus(n)) {
			struct peer *via = conn_proxy_peer(c);
			srepl_restate(n, s, via ? peer_name(via) : clus_self(node_clus(n)));
		}
	}
	/* OK [offset, limit, closing]: the sender goes on from offset, within
	 * limit; closing: its close was accepted (the close's own OK, with
	 * the old rid, may still follow once every receiver has the bytes). */
	uint64_t limit = strm_limit(s);
	strm_ref(s); /* the reply may drop c, and c's streams with it */
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_OK, m->rid, 1);
	msgpack_pack_array(pk, 3);
	msgpack_pack_uint64(pk, strm_offset(s));
	msgpack_pack_uint64(pk, limit);
	if (strm_closing(s, NULL))
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
	wire_end(b, 0);
	conn_send(c, b);
	if (strm_room(s) && strm_sender(s) == c) {
		strm_set_credit_sent(s, limit);
		/* A close already complete is finished now. */
		if (strm_closing(s, NULL) && strm_acked(s) == strm_offset(s))
			streams_flush_due(n, s);
	}
	strm_unref(s);
}

void streams_room_closed(struct node *n, struct room *r)
{
	size_t pos = 0;
	struct strm *s;
	while ((s = strms_next(node_strms(n), &pos)) != NULL) {
		if (strm_room(s) != r)
			continue;
		end_stream(n, s, "aborted", "room closed", 1);
		pos = 0; /* the table changed: start over */
	}
}

void streams_sweep(struct node *n)
{
	uint64_t now = node_now_ms(n), idle = node_cfg(n)->stream_idle_ms;
	size_t pos = 0;
	struct strm *s;
	while ((s = strms_next(node_strms(n), &pos)) != NULL) {
		/* Receiver nodes that did not come back: their share of the
		 * window goes (they lose the stream). */
		size_t gone = strm_waits(s) ? strm_waits_expire(s, now, WAIT_MS) : 0;
		if (gone)
			vlog(node_log(n), LOG_WARN,
			     "stream %s: %zu receiver node(s) did not come back in %d ms",
			     strm_id(s), gone, WAIT_MS);
		if (!strm_sender(s) && strm_claim_sid(s) && now - strm_last_active(s) >= CLAIM_MS) {
			vlog(node_log(n), LOG_WARN,
			     "stream %s: taken over, its sender did not come back in %d ms",
			     strm_id(s), CLAIM_MS);
			end_stream(n, s, "aborted", "sender lost in a failover", 0);
			pos = 0;
			continue;
		}
		/* Idle is the sender's silence while it has window to send:
		 * a stream held back by slow receivers is not idle. */
		/* The window that counts is the one the sender was told of:
		 * credit goes out in steps, so the node may know of more. */
		if (!strm_is_open(s) || now - strm_last_active(s) < idle ||
		    strm_offset(s) >= strm_credit_sent(s))
			continue;
		node_counters(n)->stream_timeouts++;
		vlog(node_log(n), LOG_INFO, "stream %s: idle for %llu ms, ended", strm_id(s),
		     (unsigned long long)(now - strm_last_active(s)));
		end_stream(n, s, "timeout", "no data within the stream idle timeout", 1);
		pos = 0;
	}
}

struct strm *streams_from_replica(struct node *n, struct room *r, const struct wire_msg *op,
				  struct strm *hold, struct blob *opened, const char *sender_node,
				  uint64_t sid)
{
	const struct cfg *cfg = node_cfg(n);
	if (strms_find(node_strms(n), S(op->f[1])))
		return NULL; /* a stream with this id is open here already */
	const msgpack_object *size = op->f[6].o;
	int64_t sz = size->type == MSGPACK_OBJECT_POSITIVE_INTEGER && size->via.u64 <= INT64_MAX
			 ? (int64_t)size->via.u64
			 : -1;
	struct strm *s = strms_open(node_strms(n), S(op->f[1]), r, NULL, S(op->f[3]), sz,
				    cfg->stream_window, node_now_ms(n));
	if (!s)
		return NULL;
	uint8_t hash[1024];
	size_t hlen = strm_hash_export(hold, hash, sizeof(hash));
	if (strm_hash_import(s, hash, hlen) < 0) {
		strms_end(node_strms(n), s);
		return NULL;
	}
	strm_set_offset(s, strm_offset(hold));
	for (size_t i = 0; i < strm_buf_count(hold); i++) {
		uint64_t off;
		size_t len;
		struct blob *f = strm_buf_at(hold, i, &off, &len);
		strm_buf_add(s, off, len, f);
	}
	strm_set_opened(s, opened, sender_node);
	strm_set_claim_sid(s, sid);
	/* The old relay may have granted the sender up to what the backup
	 * held plus a window (its acked never passed the backup's offset):
	 * a sender within that limit is never refused here. */
	strm_set_limit_floor(s, strm_offset(s) + cfg->stream_window);
	strm_set_credit_sent(s, strm_offset(s) + cfg->stream_window);
	room_touch(node_rooms(n), r, node_now_ms(n));
	node_counters(n)->streams_opened++;
	return s;
}

/* Hands send() the stream's kept frames from pos on, as they are kept (the
 * first cut to start at pos), then its END if it is closing. */
static void each_kept(struct strm *s, uint64_t pos, void (*send)(void *to, struct blob *f),
		      void *to)
{
	for (size_t i = 0; i < strm_buf_count(s); i++) {
		uint64_t off;
		size_t len;
		struct blob *f = strm_buf_at(s, i, &off, &len);
		if (off + len <= pos)
			continue;
		if (off >= pos) {
			send(to, f);
			continue;
		}
		struct blob *tail = streams_data_frame(
		    strm_id(s), pos, blob_data(f) + blob_len(f) - len + (pos - off),
		    off + len - pos);
		if (tail) {
			send(to, tail);
			blob_unref(tail);
		}
	}
	if (strm_closing(s, NULL) && strm_end_frame(s))
		send(to, strm_end_frame(s));
}

struct to_sub {
	struct node *n;
	struct room_sub *sub;
};

static void send_sub(void *to, struct blob *f)
{
	struct to_sub *t = to;
	node_send_bulk(t->n, t->sub, f);
}

static void send_conn(void *to, struct blob *f)
{
	conn_send_blob(to, f);
}

/* Sends the receiver sub the stream's kept bytes from pos on (and its END
 * if it is closing): 0, or -1 if the bytes from pos are no longer kept. */
static int replay(struct node *n, struct strm *s, struct room_sub *sub, uint64_t pos)
{
	if (pos < strm_buf_base(s))
		return -1;
	struct to_sub t = {n, sub};
	each_kept(s, pos, send_sub, &t);
	return 0;
}

/* STREAM_END aborted for one receiver node's copy of a stream. */
static void end_for_peer(struct node *n, struct peer *p, const char *id, size_t idlen,
			 uint64_t bytes, const char *reason)
{
	struct wire_buf *b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_STREAM_END, 0, 6);
	wire_pack_str(pk, id, idlen);
	wire_pack_cstr(pk, "aborted");
	wire_pack_cstr(pk, reason);
	msgpack_pack_map(pk, 0);
	msgpack_pack_uint64(pk, bytes);
	msgpack_pack_nil(pk);
	wire_end(b, 0);
	peer_send(p, b->p, b->len);
}

void streams_reattach(struct node *n, struct peer *p, const struct wire_msg *m)
{
	struct room *r = rooms_find(node_rooms(n), S(m->f[0]));
	if (!r)
		return; /* its NODE_SUB was refused too: it comes again */
	struct room_sub *sub;
	for (sub = room_subs(r); sub; sub = room_sub_next(sub))
		if (room_sub_who(sub) == p)
			break;
	if (!sub)
		return;
	uint64_t pos = m->f[2].u, acked = m->f[3].u;
	struct strm *s = strms_find(node_strms(n), S(m->f[1]));
	if (!s || strm_room(s) != r) {
		end_for_peer(n, p, S(m->f[1]), pos, "the stream was lost with its relay");
		return;
	}
	for (size_t i = 0; i < strm_receivers(s); i++) {
		if (strm_receiver(s, i) != sub)
			continue;
		/* It has the stream, maybe with a gap: it followed another
		 * relay for a while (views differed) and dropped what came
		 * from here meanwhile, unacknowledged. What it lacks goes
		 * again; it drops what it has. */
		if (pos < strm_buf_base(s))
			end_for_peer(n, p, S(m->f[1]), pos, "bytes lost in a failover");
		else if (pos < strm_offset(s))
			replay(n, s, sub, pos);
		return;
	}
	strm_wait_del(s, peer_name(p));
	if (pos > strm_offset(s))
		pos = strm_offset(s); /* it drops what it has */
	if (acked > pos)
		acked = pos;
	if (pos < strm_buf_base(s)) {
		vlog(node_log(n), LOG_WARN,
		     "stream %s: node %s came back at %llu, the bytes kept start at %llu",
		     strm_id(s), peer_name(p), (unsigned long long)pos,
		     (unsigned long long)strm_buf_base(s));
		end_for_peer(n, p, S(m->f[1]), pos, "bytes lost in a failover");
		return;
	}
	if (strm_add_receiver_at(s, sub, acked) < 0) {
		end_for_peer(n, p, S(m->f[1]), pos, "internal: out of memory");
		return;
	}
	replay(n, s, sub, pos);
	strm_kick(s);
}

void streams_peer_gone(struct node *n, struct peer *p)
{
	size_t pos = 0;
	struct strm *s;
	while ((s = strms_next(node_strms(n), &pos)) != NULL)
		for (size_t i = 0; i < strm_receivers(s); i++) {
			struct room_sub *sub = strm_receiver(s, i);
			if (room_sub_is_peer(sub) && room_sub_who(sub) == p)
				strm_wait_add(s, peer_name(p), strm_receiver_acked(s, i),
					      node_now_ms(n));
		}
}

void streams_forget_waits(struct node *n, struct room *r, const char *node)
{
	size_t pos = 0;
	struct strm *s;
	while ((s = strms_next(node_strms(n), &pos)) != NULL)
		if (strm_room(s) == r)
			strm_wait_del(s, node);
}

int streams_attach_local(struct node *n, struct strm *s, struct room_sub *const *subs, size_t k,
			 uint64_t pos)
{
	if (pos < strm_buf_base(s))
		return -1;
	uint64_t off0 = strm_offset(s);
	for (size_t i = 0; i < k; i++)
		if (strm_add_receiver_from(s, subs[i], 0, pos > off0 ? pos : 0) < 0)
			return -1;
	/* The bytes from pos to the offset, once for all of them: counted in
	 * flight as the chunks they would have got. */
	for (size_t i = 0; i < strm_buf_count(s); i++) {
		uint64_t off;
		size_t len;
		struct blob *f = strm_buf_at(s, i, &off, &len);
		if (off + len <= pos)
			continue;
		uint64_t from = off < pos ? pos : off;
		struct blob *c = streams_data_frame(strm_id(s), from,
						    blob_data(f) + blob_len(f) - len + (from - off),
						    off + len - from);
		if (!c)
			return -1;
		strm_inflight_add(s, off + len - from);
		blob_on_release(c, strm_release_cb, s, off + len - from);
		for (size_t j = 0; j < k; j++)
			node_send_bulk(n, subs[j], c);
		blob_unref(c);
	}
	return 0;
}

/* Whether the stream whose STREAM_OPENED is `opened` names identity among
 * its destinations (or names none). */
static int opened_for(struct blob *opened, const char *identity)
{
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	int ok = 0;
	/* [310, 0, room, id, sender, topic, name, mime, size, attrs, dests, ...] */
	if (blob_len(opened) > WIRE_HDR &&
	    msgpack_unpack_next(&u, (const char *)blob_data(opened) + WIRE_HDR,
				blob_len(opened) - WIRE_HDR, NULL) == MSGPACK_UNPACK_SUCCESS &&
	    u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size > 10) {
		const msgpack_object *dests = &u.data.via.array.ptr[10];
		ok = dests->type == MSGPACK_OBJECT_ARRAY &&
		     (dests->via.array.size == 0 || in_dests(dests, identity));
	}
	msgpack_unpacked_destroy(&u);
	return ok;
}

/* Whether a topic list from a client's node ([] or absent: every topic)
 * takes topic. */
static int topics_take(const msgpack_object *topics, const char *topic)
{
	if (!topics || topics->via.array.size == 0)
		return 1;
	size_t len = strlen(topic);
	for (uint32_t i = 0; i < topics->via.array.size; i++) {
		const msgpack_object *t = &topics->via.array.ptr[i];
		if (t->type == MSGPACK_OBJECT_STR && t->via.str.size == len &&
		    memcmp(t->via.str.ptr, topic, len) == 0)
			return 1;
	}
	return 0;
}

/*
 * STREAM_REJOIN [305, rid, room, stream, offset, topics?] at the stream's
 * relay. From a local client: its subscription to the room becomes a
 * receiver of the stream again from offset (the kept bytes from there are
 * sent first, counted in flight like chunks). From a proxy (the client's
 * node has a mirror): the kept bytes from offset go to the client's session
 * directly, and the node's subscription becomes a receiver from the
 * relay's offset if it was not one; the OK then carries the STREAM_OPENED,
 * for the node to make its copy of the stream (node/route.c). What is sent
 * is bounded by the bytes kept (about one window); a client is checked as
 * at the open (its topics, the destinations) except that it may come later.
 */
void streams_rejoin(struct node *n, struct conn *c, const struct wire_msg *m)
{
	struct room *r = rooms_find(node_rooms(n), S(m->f[0]));
	if (!r) {
		conn_error(c, m->rid, WIRE_E_UNKNOWN_ROOM, "no room with this id");
		return;
	}
	struct peer *via = conn_proxy_peer(c);
	struct room_sub *sub = NULL;
	if (via) {
		for (sub = room_subs(r); sub; sub = room_sub_next(sub))
			if (room_sub_is_peer(sub) && room_sub_who(sub) == via)
				break;
	} else {
		sub = conn_find_sub(c, r);
	}
	if (!sub) {
		conn_error(c, m->rid, WIRE_E_BAD_REQUEST,
			   "subscribe to the room before taking up one of its streams");
		return;
	}
	struct strm *s = strms_find(node_strms(n), S(m->f[1]));
	if (!s || strm_room(s) != r || !strm_opened(s)) {
		conn_error(c, m->rid, WIRE_E_UNKNOWN_STREAM,
			   "no stream with this id is open in the room");
		return;
	}
	const msgpack_object *topics = via && m->nfields > 3 ? m->f[3].o : NULL;
	if (topics && topics->via.array.size > WIRE_TOPICS_MAX) {
		conn_error(c, m->rid, WIRE_E_BAD_REQUEST, "at most 16 topics");
		return;
	}
	if (strm_sender(s) == c ||
	    !(via ? topics_take(topics, strm_topic(s))
		  : room_sub_wants(sub, strm_topic(s), strlen(strm_topic(s)))) ||
	    !opened_for(strm_opened(s), conn_identity(c))) {
		/* as at the open: its sender, other topics, other destinations */
		conn_error(c, m->rid, WIRE_E_UNKNOWN_STREAM,
			   "the stream does not go to this subscription (sender, topic or "
			   "destinations)");
		return;
	}
	int has = 0;
	for (size_t i = 0; i < strm_receivers(s); i++)
		if (strm_receiver(s, i) == sub)
			has = 1;
	if (has && !via) {
		conn_error(c, m->rid, WIRE_E_BAD_REQUEST,
			   "this connection receives the stream already");
		return;
	}
	uint64_t pos = m->f[2].u, off = strm_offset(s);
	if (pos < strm_buf_base(s)) {
		char msg[160];
		snprintf(
		    msg, sizeof(msg),
		    "the bytes from offset %llu are no longer kept (they start at %llu): lost in a "
		    "failover",
		    (unsigned long long)pos, (unsigned long long)strm_buf_base(s));
		conn_error(c, m->rid, WIRE_E_BAD_OFFSET, msg);
		return;
	}
	vlog(node_log(n), LOG_INFO, "stream %s: taken up again at %llu by %s %s (here at %llu)",
	     strm_id(s), (unsigned long long)pos, via ? "a client of node" : "client",
	     via ? peer_name(via) : conn_peer(c), (unsigned long long)off);
	struct wire_buf *b;
	if (strm_closing(s, NULL) || via) {
		/* A client that has more than this node (a new relay behind the
		 * old one) drops what it has: nothing below pos is sent. */
		each_kept(s, pos > off ? off : pos, send_conn, c);
		if (!strm_is_open(s)) {
			b = node_scratch(n);
			msgpack_packer *pk = wire_begin(b, WIRE_OK, m->rid, 1);
			msgpack_pack_uint64(pk, off);
			wire_end(b, 0);
			conn_send(c, b);
			return;
		}
		/* The node takes the stream's bytes from off on, on the link,
		 * behind this OK: it makes its copy from the OPENED in it, or
		 * adds the client to the copy it has. */
		if (!has && strm_add_receiver_at(s, sub, off) < 0) {
			conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory");
			return;
		}
		struct blob *op = strm_opened(s);
		b = node_scratch(n);
		msgpack_packer *pk = wire_begin(b, WIRE_OK, m->rid, 1);
		msgpack_pack_array(pk, 2);
		msgpack_pack_uint64(pk, off);
		msgpack_pack_bin(pk, blob_len(op));
		wire_end(b, blob_len(op));
		struct blob *ok = blob_new(b->len + blob_len(op));
		if (!ok) {
			conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory");
			return;
		}
		memcpy(blob_data(ok), b->p, b->len);
		memcpy(blob_data(ok) + b->len, blob_data(op), blob_len(op));
		conn_send_blob(c, ok);
		blob_unref(ok);
		return;
	}
	if (streams_attach_local(n, s, &sub, 1, pos) < 0) {
		conn_error(c, m->rid, WIRE_E_INTERNAL, "out of memory");
		return;
	}
	strm_kick(s);
	b = node_scratch(n);
	msgpack_packer *pk = wire_begin(b, WIRE_OK, m->rid, 1);
	msgpack_pack_uint64(pk, off);
	wire_end(b, 0);
	conn_send(c, b);
}

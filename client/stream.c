/*
 * libvroom's byte streams: writers (credit-paced chunking, XXH3 of what was
 * sent, close/abort) and readers (per-topic handlers, in-order delivery,
 * end-to-end verification, collecting or saving to a file).
 *
 * Invariants: a writer never has more than the node's window outstanding
 * (sent <= limit); a reader hands bytes on only at its current offset and
 * reports success only when the byte count, the declared size and, when the
 * sender gave one, the XXH3-64 all agree.
 */
#include "client/vroom.h"
#include "client/vroom_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <magic.h>
#include <sodium.h>
#include <xxhash.h>

#define SEND_CHUNK (64u << 10) /* chunk size a writer sends, at most chunk_max */

enum { W_OPEN, W_CLOSING, W_DONE };

/* With reconnection on, a writer outlives a move to another node: it keeps
 * the bytes the relay may still ask for again, claims its stream on the new
 * session (STREAM_CLAIM) and sends again from the offset the relay answers.
 *
 * Invariants:
 * - kept holds exactly the bytes [acked, sent) (klen == sent - acked): what
 *   no STREAM_CREDIT has said every receiver took. Since sent <= limit,
 *   klen <= limit - acked, one window (two at most after a relay's
 *   takeover, whose limit floor is its offset plus a window) and nothing
 *   of a chunk more: offer() never goes past the limit;
 * - wire <= sent: bytes [wire, sent) are kept bytes still to send again on
 *   this connection (after a claim); the application may add bytes only
 *   when wire == sent, so no byte is sent twice on one session and the
 *   hash covers each byte once;
 * - acked only grows: progress never goes backwards. */
struct vroom_writer {
	struct vroom *v;
	char id[WIRE_STREAM_ID_MAX + 1];
	char room[VROOM_ROOM_ID_MAX + 1];
	int64_t size;
	uint64_t sent, acked, limit;
	uint64_t wire;		  /* bytes put on the current connection */
	uint8_t *kept;		  /* rc_on: bytes [acked, sent) at kept + khead */
	size_t khead, klen, kcap; /* klen == sent - acked */
	int resume;		  /* 1: to claim on the next connection; 2: claim sent */
	uint64_t retry_at;	  /* ms: claim again then (0: now) */
	uint64_t claim_until;	  /* ms: give the stream up after this */
	int close_wanted;	  /* 1: the close is to send (after the claim); 2: sent */
	uint8_t *close_tail;	  /* the close's attributes and checksum, packed */
	size_t close_tail_len;
	XXH3_state_t *hash;
	int state;
	struct vroom_error err; /* code != 0 once failed */
	void (*writable)(struct vroom_writer *, void *);
	vroom_progress_cb progress;
	void (*done)(struct vroom_writer *, const struct vroom_error *, void *);
	void *arg;
	TAILQ_ENTRY(vroom_writer) link;
};

struct vroom_reader {
	struct vroom *v;
	struct vroom_stream_info info;
	char *strs[6]; /* owned: id, room, sender, topic, name, mime */
	struct vroom_attr *attrs;
	size_t nattrs;
	uint64_t received;
	XXH3_state_t *hash;
	struct vroom_reader_cbs cbs;
	void *arg;
	int reading;
	int collect;
	size_t collect_max;
	uint8_t *buf;
	size_t buflen, bufcap;
	int fd;
	char *dir, *tmp, *path;
	int overwrite;
	char fail[WIRE_REASON_MAX]; /* set when the reader itself failed */
	/* Moving to another node: waiting (1) for its room's resumed
	 * subscription, then (2) for the STREAM_REJOIN's answer. Once moved,
	 * bytes below `received` may come again and are dropped. */
	int moving, moved;
	TAILQ_ENTRY(vroom_reader) link;
};

/* ---------------------------------------------------------------- writers */

static uint64_t chunk_size(const struct vroom *v)
{
	uint64_t max = vroom_limit(v, "chunk_max");
	return max && max < SEND_CHUNK ? max : SEND_CHUNK;
}

static void writer_free_kept(struct vroom_writer *w)
{
	free(w->kept);
	w->kept = NULL;
	w->khead = w->klen = w->kcap = 0;
	free(w->close_tail);
	w->close_tail = NULL;
	w->close_tail_len = 0;
}

static void writer_finish(struct vroom_writer *w, const struct vroom_error *e)
{
	if (w->state == W_DONE)
		return;
	w->state = W_DONE;
	w->resume = 0;
	writer_free_kept(w);
	if (e)
		w->err = *e;
	else if (w->progress)
		w->progress(w->arg, w->acked, w->size);
	if (w->done)
		w->done(w, e, w->arg);
}

static struct vroom_writer *writer_find(struct vroom *v, const char *id, size_t len)
{
	struct vroom_writer *w;
	TAILQ_FOREACH(w, &v->writers, link)
		if (strlen(w->id) == len && memcmp(w->id, id, len) == 0)
			return w;
	return NULL;
}

static void on_open_reply(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct vroom_writer *w = arg;
	if (r->err)
		writer_finish(w, r->err);
}

static void pack_attrs(msgpack_packer *pk, const struct vroom_attr *a, size_t n)
{
	msgpack_pack_map(pk, n);
	for (size_t i = 0; i < n; i++) {
		wire_pack_cstr(pk, a[i].key ? a[i].key : "");
		wire_pack_cstr(pk, a[i].value ? a[i].value : "");
	}
}

struct vroom_writer *vroom_stream_open(struct vroom *v, const char *room,
				       const struct vroom_stream_opts *o, struct vroom_error *err)
{
	struct vroom_stream_opts none = {.size = -1};
	if (!o)
		o = &none;
	if (v->state != VROOM_ST_READY) {
		vroom_seterr(err, VROOM_E_CLOSED, "not connected");
		return NULL;
	}
	if (!room || !*room || strlen(room) > VROOM_ROOM_ID_MAX) {
		vroom_seterr(err, VROOM_E_ARG, "a room id is 1-%d characters", VROOM_ROOM_ID_MAX);
		return NULL;
	}
	if (o->nattrs > WIRE_ATTRS_MAX || o->ndests > WIRE_DESTS_MAX) {
		vroom_seterr(err, VROOM_E_ARG, "at most %d attributes and %d destinations",
			     WIRE_ATTRS_MAX, WIRE_DESTS_MAX);
		return NULL;
	}
	struct vroom_writer *w = calloc(1, sizeof(*w));
	if (!w || !(w->hash = XXH3_createState()) || XXH3_64bits_reset(w->hash) != XXH_OK) {
		free(w);
		vroom_seterr(err, VROOM_E_ARG, "out of memory");
		return NULL;
	}
	if (o->id && *o->id) {
		snprintf(w->id, sizeof(w->id), "%s", o->id);
	} else {
		unsigned char raw[16];
		randombytes_buf(raw, sizeof(raw));
		sodium_bin2base64(w->id, sizeof(w->id), raw, sizeof(raw),
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	}
	w->v = v;
	snprintf(w->room, sizeof(w->room), "%s", room);
	w->size = o->size;
	/* The first window is known from WELCOME: chunks follow the open
	 * without waiting for its reply. */
	w->limit = vroom_limit(v, "stream_window");
	TAILQ_INSERT_TAIL(&v->writers, w, link);

	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t rid = ++v->next_rid;
	wire_buf_reset(&v->out);
	msgpack_packer *pk = wire_begin(&v->out, WIRE_STREAM_OPEN, rid, 9);
	wire_pack_cstr(pk, room);
	wire_pack_cstr(pk, w->id);
	wire_pack_cstr(pk, o->topic ? o->topic : "");
	wire_pack_cstr(pk, o->name ? o->name : "");
	wire_pack_cstr(pk, o->mime ? o->mime : "application/octet-stream");
	if (o->size >= 0)
		msgpack_pack_uint64(pk, (uint64_t)o->size);
	else
		msgpack_pack_nil(pk);
	pack_attrs(pk, o->attrs, o->nattrs);
	msgpack_pack_array(pk, o->ndests);
	for (size_t i = 0; i < o->ndests; i++)
		wire_pack_cstr(pk, o->dests[i]);
	msgpack_pack_uint64(pk, (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000);
	wire_end(&v->out, 0);
	if (vroom_send_request(v, WIRE_STREAM_OPEN, rid, on_open_reply, w, err) < 0) {
		TAILQ_REMOVE(&v->writers, w, link);
		XXH3_freeState(w->hash);
		free(w);
		return NULL;
	}
	return w;
}

const char *vroom_writer_id(const struct vroom_writer *w)
{
	return w->id;
}

uint64_t vroom_writer_acked(const struct vroom_writer *w)
{
	return w->acked;
}

void vroom_writer_set_cbs(struct vroom_writer *w, void (*writable)(struct vroom_writer *, void *),
			  vroom_progress_cb progress,
			  void (*done)(struct vroom_writer *, const struct vroom_error *, void *),
			  void *arg)
{
	w->writable = writable;
	w->progress = progress;
	w->done = done;
	w->arg = arg;
}

static int writer_usable(struct vroom_writer *w, struct vroom_error *err)
{
	if (w->state == W_DONE) {
		if (err)
			*err = w->err.code ? w->err : (struct vroom_error){VROOM_E_ARG, "the stream is over"};
		return 0;
	}
	if (w->state == W_CLOSING) {
		vroom_seterr(err, VROOM_E_ARG, "the stream is closing");
		return 0;
	}
	if (w->v->state != VROOM_ST_READY) {
		vroom_seterr(err, VROOM_E_CLOSED, "not connected");
		return 0;
	}
	return 1;
}

/* The writer waits for its stream on a new connection: its claim, or the
 * kept bytes it sends again first. */
static int writer_moving(const struct vroom_writer *w)
{
	return w->resume != 0 || w->wire != w->sent;
}

/* STREAM_CHUNK [301, rid, id, off, data] on the current connection. */
static int send_chunk(struct vroom_writer *w, uint64_t off, const uint8_t *p, size_t n)
{
	struct vroom *v = w->v;
	wire_buf_reset(&v->out);
	msgpack_packer *pk = wire_begin(&v->out, WIRE_STREAM_CHUNK, ++v->next_rid, 3);
	wire_pack_cstr(pk, w->id);
	msgpack_pack_uint64(pk, off);
	msgpack_pack_bin(pk, n);
	wire_end(&v->out, n);
	if (!v->bev || bufferevent_write(v->bev, v->out.p, v->out.len) < 0 ||
	    bufferevent_write(v->bev, p, n) < 0)
		return -1;
	return 0;
}

/* Appends n bytes to the kept ones (reconnection on): see the invariants. */
static int keep_bytes(struct vroom_writer *w, const uint8_t *p, size_t n)
{
	if (!w->v->rc_on)
		return 0;
	if (w->khead + w->klen + n > w->kcap) {
		if (w->khead) {
			memmove(w->kept, w->kept + w->khead, w->klen);
			w->khead = 0;
		}
		if (w->klen + n > w->kcap) {
			size_t cap = w->kcap ? w->kcap : 65536;
			while (cap < w->klen + n)
				cap *= 2;
			uint8_t *k = realloc(w->kept, cap);
			if (!k)
				return -1;
			w->kept = k;
			w->kcap = cap;
		}
	}
	memcpy(w->kept + w->khead + w->klen, p, n);
	w->klen += n;
	return 0;
}

/* The relay says every receiver took the bytes up to acked: they are no
 * longer kept. */
static void set_acked(struct vroom_writer *w, uint64_t acked)
{
	if (acked <= w->acked || acked > w->sent)
		return;
	size_t drop = (size_t)(acked - w->acked);
	if (w->kept) {
		drop = drop < w->klen ? drop : w->klen;
		w->khead += drop;
		w->klen -= drop;
		if (!w->klen)
			w->khead = 0;
	}
	w->acked = acked;
}

long vroom_writer_offer(struct vroom_writer *w, const void *data, size_t len,
			struct vroom_error *err)
{
	if (w->state == W_OPEN && w->v->state != VROOM_ST_CLOSED && writer_moving(w))
		return 0; /* no window until the stream is back on a node */
	if (!writer_usable(w, err))
		return -1;
	struct vroom *v = w->v;
	uint64_t room = w->limit > w->sent ? w->limit - w->sent : 0;
	size_t take = len < room ? len : (size_t)room;
	if (w->size >= 0 && w->sent + take > (uint64_t)w->size) {
		vroom_seterr(err, VROOM_E_ARG, "writing past the declared size of %lld bytes",
			     (long long)w->size);
		return -1;
	}
	const uint8_t *p = data;
	uint64_t step = chunk_size(v);
	for (size_t done = 0; done < take;) {
		size_t n = take - done < step ? take - done : (size_t)step;
		if (keep_bytes(w, p + done, n) < 0) {
			vroom_seterr(err, VROOM_E_ARG, "out of memory keeping the chunk");
			return done ? (long)done : -1;
		}
		if (send_chunk(w, w->sent, p + done, n) < 0) {
			w->klen -= v->rc_on ? n : 0;
			vroom_seterr(err, VROOM_E_CLOSED, "cannot queue the chunk");
			return -1;
		}
		XXH3_64bits_update(w->hash, p + done, n);
		w->sent += n;
		w->wire = w->sent;
		done += n;
	}
	return (long)take;
}

static void on_close_reply(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct vroom_writer *w = arg;
	if (!r->err)
		w->acked = w->sent;
	writer_finish(w, r->err);
}

/* STREAM_CLOSE [302, rid, id, "", attrs, checksum]: the attributes and
 * checksum packed at close_async() time (close_tail), so that the close can
 * go again on another connection. */
static int send_close(struct vroom_writer *w, struct vroom_error *err)
{
	struct vroom *v = w->v;
	uint64_t rid = ++v->next_rid;
	wire_buf_reset(&v->out);
	msgpack_packer *pk = wire_begin(&v->out, WIRE_STREAM_CLOSE, rid, 4);
	wire_pack_cstr(pk, w->id);
	wire_pack_cstr(pk, "");
	msgpack_pack_str_body(pk, w->close_tail, w->close_tail_len); /* raw: a map, a uint */
	wire_end(&v->out, 0);
	if (vroom_send_request(v, WIRE_STREAM_CLOSE, rid, on_close_reply, w, err) < 0)
		return -1;
	w->close_wanted = 2;
	return 0;
}

int vroom_writer_close_async(struct vroom_writer *w, const struct vroom_attr *attrs,
			     size_t nattrs, struct vroom_error *err)
{
	int moving = w->state == W_OPEN && w->v->state != VROOM_ST_CLOSED && writer_moving(w);
	if (!moving && !writer_usable(w, err))
		return -1;
	if (nattrs > WIRE_ATTRS_MAX) {
		vroom_seterr(err, VROOM_E_ARG, "at most %d attributes", WIRE_ATTRS_MAX);
		return -1;
	}
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer tpk;
	msgpack_packer_init(&tpk, &sb, msgpack_sbuffer_write);
	pack_attrs(&tpk, attrs, nattrs);
	msgpack_pack_uint64(&tpk, XXH3_64bits_digest(w->hash));
	free(w->close_tail);
	w->close_tail_len = sb.size;
	w->close_tail = (uint8_t *)msgpack_sbuffer_release(&sb); /* (empties sb) */
	msgpack_sbuffer_destroy(&sb);
	if (!w->close_tail) {
		vroom_seterr(err, VROOM_E_ARG, "out of memory");
		return -1;
	}
	if (moving) {
		/* sent once the stream is back on a node with every byte */
		w->close_wanted = 1;
		w->state = W_CLOSING;
		return 0;
	}
	if (send_close(w, err) < 0)
		return -1;
	w->state = W_CLOSING;
	return 0;
}

int vroom_writer_abort(struct vroom_writer *w, const char *reason, struct vroom_error *err)
{
	if (w->state == W_OPEN && w->resume) {
		/* Not on a node now: the relay ends the stream when nobody
		 * claims it; a claim already out sends the abort (on_claimed). */
		struct vroom_error e;
		vroom_seterr(&e, VROOM_E_ABORTED, "aborted by the sender: %s",
			     reason ? reason : "");
		writer_finish(w, &e);
		return 0;
	}
	if (!writer_usable(w, err))
		return -1;
	struct vroom *v = w->v;
	wire_buf_reset(&v->out);
	msgpack_packer *pk = wire_begin(&v->out, WIRE_STREAM_ABORT, ++v->next_rid, 2);
	wire_pack_cstr(pk, w->id);
	wire_pack_cstr(pk, reason && *reason ? reason : "aborted by the sender");
	wire_end(&v->out, 0);
	bufferevent_write(v->bev, v->out.p, v->out.len);
	struct vroom_error e;
	vroom_seterr(&e, VROOM_E_ABORTED, "aborted by the sender: %s", reason ? reason : "");
	writer_finish(w, &e);
	return 0;
}

/* ------------------------------------- writers across a move (failover.c) */

/* Sends again the kept bytes from wire, within the limit, then the close if
 * one waits for them. 0, or -1 once the writer failed (finished). */
static int writer_pump(struct vroom_writer *w)
{
	struct vroom *v = w->v;
	struct vroom_error e;
	uint64_t step = chunk_size(v);
	while (w->wire < w->sent && w->wire < w->limit) {
		uint64_t n = w->sent - w->wire;
		if (n > step)
			n = step;
		if (n > w->limit - w->wire)
			n = w->limit - w->wire;
		/* wire >= acked (on_claimed checks it; acked never passes wire
		 * on one connection): the bytes are kept */
		const uint8_t *p = w->kept + w->khead + (w->wire - w->acked);
		if (send_chunk(w, w->wire, p, (size_t)n) < 0) {
			vroom_seterr(&e, VROOM_E_CLOSED, "cannot queue the chunk");
			writer_finish(w, &e);
			return -1;
		}
		w->wire += n;
	}
	if (w->wire == w->sent && w->close_wanted == 1 && send_close(w, &e) < 0) {
		writer_finish(w, &e);
		return -1;
	}
	return 0;
}

static void on_claim_reply(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct vroom_writer *w = arg;
	if (!r->err || w->state == W_DONE)
		return; /* an OK went to vroom_streams_on_claimed() */
	w->resume = 1;
	if (r->err->code == VROOM_E_CLOSED)
		return; /* the connection went too: the next one claims */
	uint64_t now = vroom_fo_now_ms();
	int final = r->err->code == VROOM_E_UNKNOWN_STREAM || r->err->code == VROOM_E_FORBIDDEN ||
		    r->err->code == VROOM_E_BAD_REQUEST;
	if (final || now >= w->claim_until) {
		/* The relay no longer knows the stream (it ended, or nobody
		 * claimed it in time), or never answered in time. */
		struct vroom_error e;
		vroom_seterr(&e, r->err->code, "stream %s lost in the move to %s: %s: %s", w->id,
			     v->server, vroom_code_name(r->err->code), r->err->message);
		writer_finish(w, &e);
		return;
	}
	/* The nodes may not agree yet on the room's relay (a takeover under
	 * way): claim again shortly. */
	w->retry_at = now + (uint64_t)v->rc.backoff_min_ms;
	vroom_fo_tick_soon(v);
}

static void send_abort(struct vroom_writer *w, const char *reason)
{
	struct vroom *v = w->v;
	wire_buf_reset(&v->out);
	msgpack_packer *pk = wire_begin(&v->out, WIRE_STREAM_ABORT, ++v->next_rid, 2);
	wire_pack_cstr(pk, w->id);
	wire_pack_cstr(pk, reason);
	wire_end(&v->out, 0);
	if (v->bev)
		bufferevent_write(v->bev, v->out.p, v->out.len);
}

void vroom_streams_on_claimed(struct vroom *v, struct pending *p, const msgpack_object *val)
{
	if (!p->cb)
		return; /* the writer was freed: its stream ends at the relay */
	struct vroom_writer *w = p->arg;
	p->cb = NULL;
	if (w->state == W_DONE) {
		/* aborted while the claim was out: the stream is ours now */
		send_abort(w, w->err.code ? w->err.message : "the sender let go of the writer");
		return;
	}
	w->resume = 0;
	struct vroom_error e;
	const msgpack_object *a =
	    val && val->type == MSGPACK_OBJECT_ARRAY && val->via.array.size >= 3
		? val->via.array.ptr
		: NULL;
	if (!a || a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
	    a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[2].type != MSGPACK_OBJECT_BOOLEAN) {
		vroom_seterr(&e, VROOM_E_PROTOCOL,
			     "stream %s: the node's answer to its claim is not [offset, limit, "
			     "closing]",
			     w->id);
		send_abort(w, "the sender could not read the claim's answer");
		writer_finish(w, &e);
		return;
	}
	uint64_t off = a[0].via.u64, limit = a[1].via.u64;
	if (a[2].via.boolean) {
		/* The close was accepted before the move: it stands. */
		if (w->state == W_CLOSING && off == w->sent) {
			w->acked = w->sent;
			writer_finish(w, NULL);
		} else {
			vroom_seterr(&e, VROOM_E_PROTOCOL,
				     "stream %s: the node closed it at %llu bytes, %llu were sent",
				     w->id, (unsigned long long)off, (unsigned long long)w->sent);
			writer_finish(w, &e);
		}
		return;
	}
	if (off < w->acked || off > w->sent) {
		/* Bytes the relay lacks that this writer no longer keeps (or
		 * more than it sent): the stream cannot go on intact. */
		vroom_seterr(&e, VROOM_E_BAD_OFFSET,
			     "stream %s: the node has %llu bytes, this writer keeps %llu..%llu",
			     w->id, (unsigned long long)off, (unsigned long long)w->acked,
			     (unsigned long long)w->sent);
		send_abort(w, "bytes lost in a failover");
		writer_finish(w, &e);
		return;
	}
	w->wire = off;
	w->limit = limit;
	if (w->close_wanted == 2)
		w->close_wanted = 1; /* not answered on the old connection: again */
	if (writer_pump(w) < 0)
		return;
	if (w->writable && w->state == W_OPEN && !writer_moving(w) && w->limit > w->sent)
		w->writable(w, w->arg);
}

int vroom_streams_tick(struct vroom *v)
{
	if (v->state != VROOM_ST_READY)
		return 0;
	uint64_t now = vroom_fo_now_ms();
	int again = 0;
	struct vroom_writer *w;
restart:
	TAILQ_FOREACH(w, &v->writers, link) {
		if (w->state == W_DONE || w->resume != 1)
			continue;
		if (w->retry_at > now) {
			again = 1;
			continue;
		}
		if (!w->claim_until)
			w->claim_until = now + (uint64_t)v->rc.give_up_ms;
		/* STREAM_CLAIM [304, rid, room, id] */
		struct vroom_error e;
		uint64_t rid = ++v->next_rid;
		wire_buf_reset(&v->out);
		msgpack_packer *pk = wire_begin(&v->out, WIRE_STREAM_CLAIM, rid, 2);
		wire_pack_cstr(pk, w->room);
		wire_pack_cstr(pk, w->id);
		wire_end(&v->out, 0);
		w->resume = 2;
		if (vroom_send_request(v, WIRE_STREAM_CLAIM, rid, on_claim_reply, w, &e) < 0) {
			writer_finish(w, &e); /* may free writers: start over */
			if (v->free_asked)
				return 0;
			goto restart;
		}
	}
	return again;
}

int vroom_streams_keep_close(struct vroom *v, struct pending *p)
{
	if (p->type != WIRE_STREAM_CLOSE || p->cb != on_close_reply || !v->rc_on)
		return 0;
	struct vroom_writer *w = p->arg;
	if (w->state != W_CLOSING || !w->close_tail)
		return 0;
	w->close_wanted = 1;
	vroom_pending_drop(v, p);
	return 1;
}

void vroom_writer_free(struct vroom_writer *w)
{
	if (!w)
		return;
	if (w->state != W_DONE && w->v->state == VROOM_ST_READY)
		vroom_writer_abort(w, "the sender let go of the writer", NULL);
	/* A reply still pending for this writer must not reach it. */
	struct pending *p;
	TAILQ_FOREACH(p, &w->v->pending, link)
		if (p->arg == w && (p->cb == on_open_reply || p->cb == on_close_reply ||
				    p->cb == on_claim_reply))
			p->cb = NULL;
	TAILQ_REMOVE(&w->v->writers, w, link);
	XXH3_freeState(w->hash);
	writer_free_kept(w);
	free(w);
}

void vroom_streams_on_credit(struct vroom *v, const struct wire_msg *m)
{
	struct vroom_writer *w = writer_find(v, m->f[0].s.ptr, m->f[0].s.len);
	if (!w || w->state == W_DONE || w->resume)
		return;
	set_acked(w, m->f[1].u);
	if (m->f[2].u > w->limit)
		w->limit = m->f[2].u;
	if (w->wire < w->sent && writer_pump(w) < 0)
		return;
	if (w->progress)
		w->progress(w->arg, w->acked, w->size);
	if (w->writable && w->state == W_OPEN && !writer_moving(w))
		w->writable(w, w->arg);
}

/* -------------------------------------------------- blocking writer calls */

struct wait {
	int done, expired;
};

static void on_wait_expired(evutil_socket_t fd, short what, void *arg)
{
	((struct wait *)arg)->expired = 1;
}

/* Runs the loop until cond(arg) or the wait limit without progress. */
static int run_until(struct vroom *v, int (*cond)(void *), void *arg, struct vroom_error *err)
{
	if (vroom_in_callback(v, err))
		return -1;
	struct wait wt = {0};
	struct event *t = evtimer_new(v->base, on_wait_expired, &wt);
	struct timeval tv = {v->wait_ms / 1000, (v->wait_ms % 1000) * 1000};
	if (t)
		evtimer_add(t, &tv);
	/* With reconnection on, a move to another node is waited through. */
	while (!cond(arg) && !wt.expired &&
	       (v->state == VROOM_ST_READY ||
		(v->rc_on && (v->state == VROOM_ST_WAITING || v->state == VROOM_ST_CONNECTING))))
		if (event_base_loop(v->base, EVLOOP_ONCE) < 0)
			break;
	if (t)
		event_free(t);
	if (cond(arg))
		return 0;
	if (v->state != VROOM_ST_READY)
		vroom_seterr(err, VROOM_E_CLOSED, "the connection to %s closed", v->server);
	else
		vroom_seterr(err, VROOM_E_WAIT, "no progress within %d ms", v->wait_ms);
	return -1;
}

static int has_window_or_over(void *arg)
{
	struct vroom_writer *w = arg;
	return w->state == W_DONE || (w->limit > w->sent && !writer_moving(w));
}

int vroom_writer_write(struct vroom_writer *w, const void *data, size_t len,
		       struct vroom_error *err)
{
	const uint8_t *p = data;
	while (len > 0) {
		long n = vroom_writer_offer(w, p, len, err);
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
		if (len && run_until(w->v, has_window_or_over, w, err) < 0)
			return -1;
	}
	return 0;
}

static int is_done(void *arg)
{
	return ((struct vroom_writer *)arg)->state == W_DONE;
}

int vroom_writer_close(struct vroom_writer *w, const struct vroom_attr *attrs, size_t nattrs,
		       struct vroom_error *err)
{
	int rc = vroom_writer_close_async(w, attrs, nattrs, err);
	/* Waiting for the close can take as long as the slowest receiver:
	 * keep waiting while acknowledgements still arrive. */
	uint64_t seen = w->acked;
	while (rc == 0 && !is_done(w)) {
		rc = run_until(w->v, is_done, w, err);
		if (rc < 0 && err && err->code == VROOM_E_WAIT && w->acked > seen) {
			seen = w->acked;
			rc = 0;
		}
	}
	if (rc == 0 && w->err.code) {
		if (err)
			*err = w->err;
		rc = -1;
	}
	vroom_writer_free(w);
	return rc;
}

int vroom_send_bytes(struct vroom *v, const char *room, const struct vroom_stream_opts *o,
		     const void *data, size_t len, vroom_progress_cb progress, void *arg,
		     char id[VROOM_ROOM_ID_MAX + 1], struct vroom_error *err)
{
	if (vroom_in_callback(v, err))
		return -1;
	struct vroom_stream_opts opts = o ? *o : (struct vroom_stream_opts){.size = -1};
	opts.size = (int64_t)len;
	struct vroom_writer *w = vroom_stream_open(v, room, &opts, err);
	if (!w)
		return -1;
	vroom_writer_set_cbs(w, NULL, progress, NULL, arg);
	if (id)
		snprintf(id, VROOM_ROOM_ID_MAX + 1, "%s", w->id);
	if (vroom_writer_write(w, data, len, err) < 0) {
		vroom_writer_free(w);
		return -1;
	}
	return vroom_writer_close(w, NULL, 0, err);
}

static const struct {
	const char *ext, *mime;
} mimes[] = {
	{".txt", "text/plain"},	     {".html", "text/html"},	     {".css", "text/css"},
	{".csv", "text/csv"},	     {".json", "application/json"}, {".js", "text/javascript"},
	{".png", "image/png"},	     {".jpg", "image/jpeg"},	     {".jpeg", "image/jpeg"},
	{".gif", "image/gif"},	     {".webp", "image/webp"},	     {".svg", "image/svg+xml"},
	{".pdf", "application/pdf"}, {".zip", "application/zip"},  {".gz", "application/gzip"},
	{".mp4", "video/mp4"},	     {".webm", "video/webm"},	     {".mp3", "audio/mpeg"},
	{".wav", "audio/wav"},	     {".ogg", "audio/ogg"},
};

void vroom_guess_mime(const char *path, char *out, size_t cap)
{
	magic_t mg = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR);
	const char *m = NULL;
	if (mg && magic_load(mg, NULL) == 0)
		m = magic_file(mg, path);
	/* libmagic says "application/octet-stream" or "text/plain" when it
	 * cannot tell; the extension may know better. */
	if (!m || strcmp(m, "application/octet-stream") == 0 || strcmp(m, "text/plain") == 0) {
		const char *dot = strrchr(path, '.');
		for (size_t i = 0; dot && i < sizeof(mimes) / sizeof(mimes[0]); i++)
			if (strcasecmp(dot, mimes[i].ext) == 0)
				m = mimes[i].mime;
	}
	snprintf(out, cap, "%s", m ? m : "application/octet-stream");
	if (mg)
		magic_close(mg);
}

int vroom_send_file(struct vroom *v, const char *room, const char *path,
		    const struct vroom_stream_opts *o, vroom_progress_cb progress, void *arg,
		    char id[VROOM_ROOM_ID_MAX + 1], struct vroom_error *err)
{
	if (vroom_in_callback(v, err))
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		vroom_seterr(err, VROOM_E_ARG, "cannot read %s: %s", path,
			     fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	struct vroom_stream_opts opts = o ? *o : (struct vroom_stream_opts){0};
	const char *base = strrchr(path, '/');
	char mime[128];
	if (!opts.name || !*opts.name)
		opts.name = base ? base + 1 : path;
	if (!opts.mime || !*opts.mime) {
		vroom_guess_mime(path, mime, sizeof(mime));
		opts.mime = mime;
	}
	opts.size = st.st_size;
	struct vroom_writer *w = vroom_stream_open(v, room, &opts, err);
	if (!w) {
		close(fd);
		return -1;
	}
	vroom_writer_set_cbs(w, NULL, progress, NULL, arg);
	if (id)
		snprintf(id, VROOM_ROOM_ID_MAX + 1, "%s", w->id);
	size_t bufsz = 1u << 20;
	uint8_t *buf = malloc(bufsz);
	int rc = buf ? 0 : -1;
	if (!buf)
		vroom_seterr(err, VROOM_E_ARG, "out of memory");
	uint64_t total = 0;
	while (rc == 0) {
		ssize_t n = read(fd, buf, bufsz);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			vroom_seterr(err, VROOM_E_ARG, "reading %s: %s", path, strerror(errno));
			rc = -1;
		} else if (n == 0) {
			break;
		} else if ((total += (uint64_t)n) > (uint64_t)st.st_size) {
			vroom_seterr(err, VROOM_E_ARG, "%s grew while it was being sent", path);
			rc = -1;
		} else {
			rc = vroom_writer_write(w, buf, (size_t)n, err);
		}
	}
	free(buf);
	close(fd);
	if (rc < 0) {
		vroom_writer_free(w);
		return -1;
	}
	return vroom_writer_close(w, NULL, 0, err);
}

int vroom_subscribe_topics_async(struct vroom *v, const char *room, const char *const *topics,
				 size_t ntopics, vroom_cb cb, void *arg, struct vroom_error *err)
{
	return vroom_fo_subscribe(v, room, topics, ntopics, 1, cb, arg, err);
}

/* ---------------------------------------------------------------- readers */

int vroom_set_stream_handler(struct vroom *v, const char *topic, vroom_stream_handler h,
			     void *arg, struct vroom_error *err)
{
	for (size_t i = 0; i < v->nhandlers; i++) {
		const char *t = v->handlers[i].topic;
		if ((!t && !topic) || (t && topic && strcmp(t, topic) == 0)) {
			vroom_seterr(err, VROOM_E_ARG, "topic '%s' already has a handler",
				     topic ? topic : "(any)");
			return -1;
		}
	}
	if (v->nhandlers == VROOM_MAX_HANDLERS) {
		vroom_seterr(err, VROOM_E_ARG, "at most %d stream handlers", VROOM_MAX_HANDLERS);
		return -1;
	}
	char *copy = topic ? strdup(topic) : NULL;
	if (topic && !copy) {
		vroom_seterr(err, VROOM_E_ARG, "out of memory");
		return -1;
	}
	v->handlers[v->nhandlers].topic = copy;
	v->handlers[v->nhandlers].fn = h;
	v->handlers[v->nhandlers].arg = arg;
	v->nhandlers++;
	return 0;
}

uint64_t vroom_streams_dropped(const struct vroom *v)
{
	return v->streams_dropped;
}

static char *dup_str(const struct wire_str *s)
{
	return strndup(s->ptr, s->len);
}

static void reader_free(struct vroom_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	if (r->tmp)
		unlink(r->tmp);
	for (int i = 0; i < 6; i++)
		free(r->strs[i]);
	for (size_t i = 0; i < r->nattrs; i++) {
		free((char *)r->attrs[i].key);
		free((char *)r->attrs[i].value);
	}
	free(r->attrs);
	free(r->buf);
	free(r->dir);
	free(r->tmp);
	free(r->path);
	XXH3_freeState(r->hash);
	free(r);
}

/* Sets or adds key=value (copied): close attributes override open ones. */
static int attr_set(struct vroom_reader *r, const msgpack_object *k, const msgpack_object *val)
{
	if (k->type != MSGPACK_OBJECT_STR || val->type != MSGPACK_OBJECT_STR)
		return 0;
	for (size_t i = 0; i < r->nattrs; i++) {
		if (strlen(r->attrs[i].key) == k->via.str.size &&
		    memcmp(r->attrs[i].key, k->via.str.ptr, k->via.str.size) == 0) {
			char *nv = strndup(val->via.str.ptr, val->via.str.size);
			if (!nv)
				return -1;
			free((char *)r->attrs[i].value);
			r->attrs[i].value = nv;
			return 0;
		}
	}
	struct vroom_attr *a = realloc(r->attrs, (r->nattrs + 1) * sizeof(*a));
	if (!a)
		return -1;
	r->attrs = a;
	a[r->nattrs].key = strndup(k->via.str.ptr, k->via.str.size);
	a[r->nattrs].value = strndup(val->via.str.ptr, val->via.str.size);
	r->nattrs++;
	r->info.attrs = r->attrs;
	r->info.nattrs = r->nattrs;
	return 0;
}

static struct vroom_reader *reader_find(struct vroom *v, const char *id, size_t len)
{
	struct vroom_reader *r;
	TAILQ_FOREACH(r, &v->readers, link)
		if (strlen(r->info.id) == len && memcmp(r->info.id, id, len) == 0)
			return r;
	return NULL;
}

static void warn_dropped(struct vroom *v, const char *topic)
{
	v->streams_dropped++;
	for (size_t i = 0; i < v->nwarned; i++)
		if (strcmp(v->warned[i], topic) == 0)
			return;
	if (v->nwarned < VROOM_MAX_WARNED) {
		char *t = strdup(topic);
		if (t)
			v->warned[v->nwarned++] = t;
	}
	fprintf(stderr, "libvroom: no handler for streams of topic '%s'; dropping them\n", topic);
}

/* [310, 0, room, id, sender, topic, name, mime, size|nil, attrs, dests, ts] */
void vroom_streams_on_opened(struct vroom *v, const struct wire_msg *m)
{
	if (reader_find(v, m->f[1].s.ptr, m->f[1].s.len))
		return; /* one we read already (taken up on another node): not twice */
	const struct wire_str *topic = &m->f[3].s;
	struct vroom_handler *h = NULL;
	for (size_t i = 0; i < v->nhandlers; i++) {
		const char *t = v->handlers[i].topic;
		if (t && strlen(t) == topic->len && memcmp(t, topic->ptr, topic->len) == 0)
			h = &v->handlers[i];
		else if (!t && !h)
			h = &v->handlers[i];
	}
	char topicbuf[WIRE_TOPIC_MAX + 1];
	snprintf(topicbuf, sizeof(topicbuf), "%.*s", (int)topic->len, topic->ptr);
	if (!h) {
		warn_dropped(v, topicbuf);
		return;
	}
	struct vroom_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return;
	r->v = v;
	r->fd = -1;
	const int order[6] = {1, 0, 2, 3, 4, 5}; /* id, room, sender, topic, name, mime */
	int ok = (r->hash = XXH3_createState()) && XXH3_64bits_reset(r->hash) == XXH_OK;
	for (int i = 0; ok && i < 6; i++)
		ok = (r->strs[i] = dup_str(&m->f[order[i]].s)) != NULL;
	const msgpack_object *size = m->f[6].o, *attrs = m->f[7].o;
	for (uint32_t i = 0; ok && i < attrs->via.map.size; i++)
		ok = attr_set(r, &attrs->via.map.ptr[i].key, &attrs->via.map.ptr[i].val) == 0;
	if (!ok) {
		reader_free(r);
		return;
	}
	r->info = (struct vroom_stream_info){
		.id = r->strs[0], .room = r->strs[1], .sender = r->strs[2], .topic = r->strs[3],
		.name = r->strs[4], .mime = r->strs[5],
		.size = size->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)size->via.u64 : -1,
		.timestamp_ms = m->f[9].u, .attrs = r->attrs, .nattrs = r->nattrs,
	};
	TAILQ_INSERT_TAIL(&v->readers, r, link);
	h->fn(v, r, h->arg);
	if (!r->reading) {
		TAILQ_REMOVE(&v->readers, r, link);
		reader_free(r);
	}
}

/* Records why the reader failed (the first reason wins): "what: detail". */
static void reader_fail(struct vroom_reader *r, const char *what, const char *detail)
{
	if (!r->fail[0])
		snprintf(r->fail, sizeof(r->fail), "%s%s%s", what, detail ? ": " : "",
			 detail ? detail : "");
}

/* [311, 0, id, offset, data] */
void vroom_streams_on_data(struct vroom *v, const struct wire_msg *m)
{
	struct vroom_reader *r = reader_find(v, m->f[0].s.ptr, m->f[0].s.len);
	if (!r || r->fail[0])
		return;
	const uint8_t *p = (const uint8_t *)m->f[2].s.ptr;
	size_t len = m->f[2].s.len;
	if (m->f[1].u != r->received) {
		/* Taken up on another node, whose relay may send from before
		 * what was delivered: what came already is dropped. */
		if (!r->moved || m->f[1].u > r->received) {
			reader_fail(r, "data out of order", NULL);
			return;
		}
		uint64_t skip = r->received - m->f[1].u;
		if (skip >= len)
			return;
		p += skip;
		len -= (size_t)skip;
	}
	XXH3_64bits_update(r->hash, p, len);
	r->received += len;
	if (r->collect) {
		if (r->buflen + len > r->collect_max) {
			reader_fail(r, "stream larger than the reader's limit", NULL);
			return;
		}
		if (r->buflen + len > r->bufcap) {
			size_t cap = r->bufcap ? r->bufcap : 65536;
			while (cap < r->buflen + len)
				cap *= 2;
			uint8_t *nb = realloc(r->buf, cap);
			if (!nb) {
				reader_fail(r, "out of memory", NULL);
				return;
			}
			r->buf = nb;
			r->bufcap = cap;
		}
		if (len) /* r->buf is still NULL before the first bytes */
			memcpy(r->buf + r->buflen, p, len);
		r->buflen += len;
	}
	for (size_t done = 0; r->fd >= 0 && done < len;) {
		ssize_t n = write(r->fd, p + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			reader_fail(r, "writing the file", strerror(errno));
			break;
		}
		done += (size_t)n;
	}
	if (r->cbs.chunk)
		r->cbs.chunk(r, p, len, r->arg);
	if (r->cbs.progress)
		r->cbs.progress(r, r->received, r->info.size, r->arg);
}

/* Moves the finished temporary file to its final name, never replacing an
 * existing file unless asked: link() fails on an existing name. */
static int reader_place(struct vroom_reader *r)
{
	char name[256], path[4096];
	vroom_sanitize_name(r->info.name, r->info.id, name, sizeof(name));
	for (int i = 0; i < 1000; i++) {
		if (i == 0)
			snprintf(path, sizeof(path), "%s/%s", r->dir, name);
		else
			snprintf(path, sizeof(path), "%s/%s.%d", r->dir, name, i);
		if (r->overwrite ? rename(r->tmp, path) == 0 : link(r->tmp, path) == 0) {
			if (!r->overwrite)
				unlink(r->tmp);
			free(r->tmp);
			r->tmp = NULL;
			r->path = strdup(path);
			return 0;
		}
		if (errno != EEXIST)
			break;
	}
	reader_fail(r, "cannot place the file", strerror(errno));
	return -1;
}

/* [312, 0, id, status, reason, attrs, length, xxh3|nil] */
void vroom_streams_on_end(struct vroom *v, const struct wire_msg *m)
{
	struct vroom_writer *w = writer_find(v, m->f[0].s.ptr, m->f[0].s.len);
	if (w) {
		/* The node ended our own stream. Its reason for an error reads
		 * "name: message"; the name gives the code back. */
		struct vroom_error e;
		const struct wire_str *st = &m->f[1].s, *why = &m->f[2].s;
		int code = VROOM_E_ABORTED;
		if (st->len == 7 && memcmp(st->ptr, "timeout", 7) == 0)
			code = VROOM_E_TIMEOUT;
		for (int c = 1; st->len == 5 && memcmp(st->ptr, "error", 5) == 0 && c < 100; c++) {
			const char *name = wire_err_name(c);
			size_t nl = strlen(name);
			if (strcmp(name, "unknown") && why->len > nl && why->ptr[nl] == ':' &&
			    memcmp(why->ptr, name, nl) == 0)
				code = c;
		}
		vroom_seterr(&e, code, "stream %s ended (%.*s): %.*s", w->id, (int)st->len,
			     st->ptr, (int)why->len, why->ptr);
		writer_finish(w, &e);
		return;
	}
	struct vroom_reader *r = reader_find(v, m->f[0].s.ptr, m->f[0].s.len);
	if (!r)
		return;
	char status[16], reason[WIRE_REASON_MAX + 64];
	snprintf(status, sizeof(status), "%.*s", (int)m->f[1].s.len, m->f[1].s.ptr);
	snprintf(reason, sizeof(reason), "%.*s", (int)m->f[2].s.len, m->f[2].s.ptr);
	const msgpack_object *attrs = m->f[3].o, *sum = m->f[5].o;
	for (uint32_t i = 0; i < attrs->via.map.size; i++)
		attr_set(r, &attrs->via.map.ptr[i].key, &attrs->via.map.ptr[i].val);
	struct vroom_stream_end e = {.status = status, .reason = reason, .bytes = r->received};
	if (strcmp(status, "ok") == 0) {
		uint64_t mine = XXH3_64bits_digest(r->hash);
		if (r->fail[0]) {
			snprintf(reason, sizeof(reason), "%s", r->fail);
		} else if (m->f[4].u != r->received) {
			snprintf(reason, sizeof(reason), "size_mismatch: the node sent %llu bytes, %llu arrived",
				 (unsigned long long)m->f[4].u, (unsigned long long)r->received);
		} else if (r->info.size >= 0 && (uint64_t)r->info.size != r->received) {
			snprintf(reason, sizeof(reason), "size_mismatch: declared %lld bytes, %llu arrived",
				 (long long)r->info.size, (unsigned long long)r->received);
		} else if (sum->type == MSGPACK_OBJECT_POSITIVE_INTEGER && sum->via.u64 != mine) {
			snprintf(reason, sizeof(reason), "checksum_mismatch: XXH3-64 %016llx, expected %016llx",
				 (unsigned long long)mine, (unsigned long long)sum->via.u64);
		} else {
			e.ok = 1;
			e.checksum = sum->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
		}
		if (!e.ok)
			snprintf(status, sizeof(status), "error");
	}
	if (r->fd >= 0) {
		if (e.ok && fsync(r->fd) < 0)
			reader_fail(r, "syncing the file", strerror(errno));
		close(r->fd);
		r->fd = -1;
		if (e.ok && reader_place(r) < 0) {
			e.ok = 0;
			snprintf(status, sizeof(status), "error");
			snprintf(reason, sizeof(reason), "%s", r->fail);
		}
	}
	TAILQ_REMOVE(&v->readers, r, link);
	if (r->cbs.end)
		r->cbs.end(r, &e, r->arg);
	reader_free(r);
}

/* The connection is gone: every open writer ends now, unless the client
 * moves to another node (state WAITING, failover.c): then each claims its
 * stream on the next connection; every reader ends too, but those that
 * move with the client (vroom_streams_move; not once the client is closed
 * for good). */
void vroom_streams_lost(struct vroom *v, const struct vroom_error *why)
{
	struct vroom_writer *w;
	TAILQ_FOREACH(w, &v->writers, link) {
		if (v->state == VROOM_ST_WAITING && v->rc_on && w->state != W_DONE) {
			w->resume = 1;
			w->retry_at = 0;
			w->claim_until = 0;
			continue;
		}
		writer_finish(w, why);
	}
	TAILQ_HEAD(, vroom_reader) kept = TAILQ_HEAD_INITIALIZER(kept);
	struct vroom_reader *r;
	while ((r = TAILQ_FIRST(&v->readers)) != NULL) {
		TAILQ_REMOVE(&v->readers, r, link);
		if (r->moving && v->state != VROOM_ST_CLOSED) {
			TAILQ_INSERT_TAIL(&kept, r, link);
			continue;
		}
		struct vroom_stream_end e = {.status = "error", .reason = why->message,
					     .bytes = r->received};
		if (r->cbs.end)
			r->cbs.end(r, &e, r->arg);
		reader_free(r);
	}
	while ((r = TAILQ_FIRST(&kept)) != NULL) {
		TAILQ_REMOVE(&kept, r, link);
		TAILQ_INSERT_TAIL(&v->readers, r, link);
	}
}

/* Ends reader r (taken out of the list) with status and reason. */
static void reader_end(struct vroom_reader *r, const char *status, const char *reason)
{
	TAILQ_REMOVE(&r->v->readers, r, link);
	struct vroom_stream_end e = {.status = status, .reason = reason, .bytes = r->received};
	if (r->cbs.end)
		r->cbs.end(r, &e, r->arg);
	reader_free(r);
}

void vroom_streams_move(struct vroom *v)
{
	struct vroom_reader *r;
	TAILQ_FOREACH(r, &v->readers, link) {
		/* Only a sound reader of a room the client subscribes to again
		 * can take its stream up; the others end (vroom_streams_lost). */
		const char *room = r->info.room;
		r->moving = !r->fail[0] && v->rc_on && smap_get(v->subs, room, strlen(room)) != NULL;
		if (r->moving)
			r->moved = 1;
	}
}

/* STREAM_REJOIN [305, rid, room, stream, offset] */
void vroom_streams_rejoin(struct vroom *v, const char *room)
{
	struct vroom_reader *r;
	TAILQ_FOREACH(r, &v->readers, link) {
		if (r->moving != 1 || strcmp(r->info.room, room) != 0)
			continue;
		struct vroom_error err;
		uint64_t rid = ++v->next_rid;
		wire_buf_reset(&v->out);
		msgpack_packer *pk = wire_begin(&v->out, WIRE_STREAM_REJOIN, rid, 3);
		wire_pack_cstr(pk, r->info.room);
		wire_pack_cstr(pk, r->info.id);
		msgpack_pack_uint64(pk, r->received);
		wire_end(&v->out, 0);
		struct pending *p = vroom_queue(v, WIRE_STREAM_REJOIN, rid, NULL, NULL, &err);
		if (!p)
			continue; /* not written: it ends with the connection */
		/* the library's own: dropped, not failed, if the connection
		 * goes (the reader then waits for the next node again) */
		p->resume = 1;
		p->room = strdup(r->info.id); /* the reader, by its stream id */
		r->moving = 2;
	}
}

void vroom_streams_rejoin_reply(struct vroom *v, struct pending *p, const struct vroom_error *err)
{
	struct vroom_reader *r = p->room ? reader_find(v, p->room, strlen(p->room)) : NULL;
	if (!r || r->moving != 2)
		return; /* ended meanwhile (its END came in the replay) */
	if (!err) {
		r->moving = 0; /* goes on: the bytes from its offset come */
		return;
	}
	char reason[WIRE_REASON_MAX + 64];
	if (err->code == VROOM_E_BAD_OFFSET)
		snprintf(reason, sizeof(reason), "bytes lost in a failover (%s)", err->message);
	else
		snprintf(reason, sizeof(reason), "the stream was lost in a failover (%s: %s)",
			 vroom_code_name(err->code), err->message);
	reader_end(r, "aborted", reason);
}

void vroom_streams_room_gone(struct vroom *v, const char *room, const char *why)
{
	struct vroom_reader *r, *next;
	for (r = TAILQ_FIRST(&v->readers); r; r = next) {
		next = TAILQ_NEXT(r, link);
		if (r->moving && strcmp(r->info.room, room) == 0) {
			reader_end(r, "aborted", why);
			next = TAILQ_FIRST(&v->readers); /* a callback may change the list */
		}
	}
}

void vroom_streams_free(struct vroom *v)
{
	struct vroom_writer *w;
	while ((w = TAILQ_FIRST(&v->writers)) != NULL) {
		TAILQ_REMOVE(&v->writers, w, link);
		XXH3_freeState(w->hash);
		writer_free_kept(w);
		free(w);
	}
	struct vroom_reader *r;
	while ((r = TAILQ_FIRST(&v->readers)) != NULL) {
		TAILQ_REMOVE(&v->readers, r, link);
		reader_free(r);
	}
	for (size_t i = 0; i < v->nhandlers; i++)
		free(v->handlers[i].topic);
	for (size_t i = 0; i < v->nwarned; i++)
		free(v->warned[i]);
}

const struct vroom_stream_info *vroom_reader_info(const struct vroom_reader *r)
{
	return &r->info;
}

void vroom_reader_set(struct vroom_reader *r, const struct vroom_reader_cbs *cbs, void *arg)
{
	if (cbs)
		r->cbs = *cbs;
	r->arg = arg;
	r->reading = 1;
}

int vroom_reader_collect(struct vroom_reader *r, size_t max, struct vroom_error *err)
{
	if (r->info.size >= 0 && (uint64_t)r->info.size > max) {
		vroom_seterr(err, VROOM_E_ARG, "the stream declares %lld bytes, over %zu",
			     (long long)r->info.size, max);
		return -1;
	}
	r->collect = 1;
	r->collect_max = max;
	r->reading = 1;
	return 0;
}

const void *vroom_reader_data(const struct vroom_reader *r, size_t *len)
{
	*len = r->buflen;
	return r->buf;
}

int vroom_reader_save(struct vroom_reader *r, const char *dir, int overwrite,
		      struct vroom_error *err)
{
	char tmp[4096];
	char safe_id[WIRE_STREAM_ID_MAX + 1];
	vroom_sanitize_name(r->info.id, "stream", safe_id, sizeof(safe_id));
	snprintf(tmp, sizeof(tmp), "%s/.%s.vroom-part", dir, safe_id);
	r->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (r->fd < 0) {
		vroom_seterr(err, VROOM_E_ARG, "cannot create %s: %s", tmp, strerror(errno));
		return -1;
	}
	r->tmp = strdup(tmp);
	r->dir = strdup(dir);
	r->overwrite = overwrite;
	r->reading = 1;
	if (!r->tmp || !r->dir) {
		vroom_seterr(err, VROOM_E_ARG, "out of memory");
		return -1;
	}
	return 0;
}

const char *vroom_reader_path(const struct vroom_reader *r)
{
	return r->path;
}

void vroom_sanitize_name(const char *name, const char *fallback, char *out, size_t cap)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)name; *p && n + 1 < cap; p++) {
		unsigned char ch = *p;
		if (ch == '/' || ch == '\\' || ch < 0x20 || ch == 0x7f)
			ch = '_';
		if (n == 0 && ch == '.')
			ch = '_'; /* no hidden files, no "." or ".." */
		out[n++] = (char)ch;
	}
	out[n] = '\0';
	if (n == 0)
		vroom_sanitize_name(fallback && *fallback ? fallback : "stream", "stream", out, cap);
}

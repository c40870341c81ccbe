/*
 * Integration tests of libvroom's byte streams against real vroomd
 * processes: 1 GiB to two receivers bit for bit (SHA-256 of what each got
 * against the sender's), 50 concurrent streams (open and end order),
 * destinations, topic filters and handlers, abort, a killed sender, the idle
 * timeout (and no timeout for a stream held back by a stalled receiver),
 * late subscribers, progress, collect and save (sanitized names, no
 * overwrite, nothing left of a failed stream), a push's latency beside a
 * 500 MiB stream, and send_bytes / send_file metadata.
 *
 * All clients of a case share one event base, so a blocking call made on one
 * of them serves the others too. Stream contents are ChaCha20 keystream
 * generated block by block, never held whole. Callbacks only record; the case
 * asserts afterwards. Every wait is bounded by time. One node serves all
 * cases but the idle-timeout one; the last case checks that it exits cleanly.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <sodium.h>

#include "client/vroom.h"
#include "spawn.h"

#define WAIT_MS	    10000 /* the most an ordinary wait may take */
#define BIG_WAIT_MS 120000 /* the most a bulk transfer may take (ASan, a busy machine) */
#define KiB	    1024u
#define MiB	    (1024u * 1024u)
#define GiB	    (1024ull * 1024u * 1024u)
#define RX_MAX	    64 /* streams one test receiver keeps track of */
#define PUSH_MAX    32

static struct spawn *node;
static char addr[64];
static struct vroom_error E; /* the error of the last MUST() call */

/* Fails the case with the library's reason if call (which takes &E) fails. */
#define MUST(call)                                                                                 \
	do {                                                                                       \
		if ((call) < 0)                                                                    \
			fail_msg("%s: %s: %s", #call, vroom_code_name(E.code), E.message);         \
	} while (0)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Block `block` of the content with this seed: ChaCha20 keystream. */
static void gen_block(uint64_t seed, uint64_t block, unsigned char *buf, size_t len)
{
	unsigned char key[crypto_stream_chacha20_KEYBYTES] = {0};
	unsigned char nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
	for (int i = 0; i < 8; i++) {
		key[i] = (unsigned char)(seed >> (8 * i));
		nonce[i] = (unsigned char)(block >> (8 * i));
	}
	crypto_stream_chacha20(buf, len, nonce, key);
}

/* Whole content of a small stream (caller frees). */
static unsigned char *gen_bytes(uint64_t seed, size_t len)
{
	unsigned char *p = malloc(len ? len : 1);
	assert_non_null(p);
	for (size_t off = 0; off < len; off += MiB)
		gen_block(seed, off / MiB, p + off, len - off < MiB ? len - off : MiB);
	return p;
}

/* ---- the event base ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
}

/* Runs base until done(arg) or ms pass; 0 if done. */
static int loop_until(struct event_base *base, int (*done)(void *), void *arg, int ms)
{
	struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
	struct timeval tv = {0, 20 * 1000};
	assert_non_null(tick);
	event_add(tick, &tv);
	long long deadline = spawn_now_ms() + ms;
	int ok;
	while (!(ok = done(arg)) && spawn_now_ms() < deadline)
		if (event_base_loop(base, EVLOOP_ONCE) < 0)
			break;
	event_free(tick);
	return ok ? 0 : -1;
}

static int never(void *arg)
{
	return 0;
}

/* Runs base for ms milliseconds. */
static void loop_for(struct event_base *base, int ms)
{
	loop_until(base, never, NULL, ms);
}

struct reply {
	int done;
	struct vroom_error err;
};

static void on_reply(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct reply *rep = arg;
	rep->done = 1;
	if (r->err)
		rep->err = *r->err;
}

static int reply_done(void *arg)
{
	return ((struct reply *)arg)->done;
}

/* ---- receivers: a client that records every stream it is offered ---- */

enum { RX_READ, RX_COUNT, RX_COLLECT, RX_SAVE, RX_SKIP };

struct peer;

/* One stream as one receiver saw it. */
struct rs {
	struct peer *p;
	const char *tag; /* the handler that took it */
	char id[VROOM_ROOM_ID_MAX + 1], room[VROOM_ROOM_ID_MAX + 1];
	char sender[VROOM_IDENTITY_MAX + 1], topic[130], name[256], mime[128];
	char attrs[512];     /* "k=v;" for each attribute, at open */
	char end_attrs[512]; /* and at the end */
	int64_t size;
	uint64_t timestamp_ms;
	int collect_refused;
	uint64_t got; /* bytes through the chunk callback */
	unsigned nchunks;
	crypto_hash_sha256_state sha;
	unsigned char digest[crypto_hash_sha256_BYTES];
	uint64_t progress;
	int64_t progress_total;
	unsigned nprogress;
	char progress_bad[160];
	int ended, ok, checksum;
	size_t end_order;
	char status[16], reason[300];
	uint64_t end_bytes;
	unsigned char *data; /* collected bytes, copied at the end */
	size_t len;
	char path[1024];
	long long t_end;
};

struct peer {
	struct vroom *v;
	char name[64];
	int mode;
	size_t collect_max;
	const char *dir;
	int overwrite;
	struct rs s[RX_MAX];
	size_t nopen, nend, overflow;
	int lost;
	struct vroom_error why;
	/* case 9: pushes carry a timestamp; a chunk callback may send them */
	size_t npush;
	double lat_ms[PUSH_MAX];
	int push_in_flight[PUSH_MAX]; /* the stream was still open on arrival */
	uint64_t push_got[PUSH_MAX];  /* stream bytes received when sent, then on arrival */
	int push_bad;
	struct vroom *pusher;
	const char *push_room;
	uint64_t push_step, push_next;
	size_t nsent, push_max;
	int push_failed;
	struct vroom_error push_err;
};

static void flatten_attrs(const struct vroom_stream_info *in, char *out, size_t cap)
{
	size_t n = 0;
	out[0] = '\0';
	for (size_t i = 0; i < in->nattrs && n < cap; i++) {
		int w = snprintf(out + n, cap - n, "%s=%s;", in->attrs[i].key, in->attrs[i].value);
		if (w < 0)
			break;
		n += (size_t)w;
	}
}

static void rx_chunk(struct vroom_reader *r, const void *data, size_t len, void *arg)
{
	struct rs *s = arg;
	struct peer *p = s->p;
	s->got += len;
	s->nchunks++;
	if (p->mode != RX_COUNT)
		crypto_hash_sha256_update(&s->sha, data, len);
	/* Case 9: a push from another connection at every push_step bytes. */
	if (p->pusher && p->nsent < p->push_max && s->got >= p->push_next) {
		struct {
			uint32_t magic, idx;
			uint64_t ns;
		} msg = {0x70757368u, (uint32_t)p->nsent, now_ns()};
		p->push_got[p->nsent] = s->got;
		struct vroom_error e;
		if (vroom_push_async(p->pusher, p->push_room, 7, &msg, sizeof(msg), NULL, NULL,
				     &e) < 0 && !p->push_failed) {
			p->push_failed = 1;
			p->push_err = e;
		}
		p->nsent++;
		p->push_next += p->push_step;
	}
}

static void rx_progress(struct vroom_reader *r, uint64_t received, int64_t total, void *arg)
{
	struct rs *s = arg;
	s->nprogress++;
	if (s->progress_bad[0])
		return;
	if (received < s->progress)
		snprintf(s->progress_bad, sizeof(s->progress_bad), "went back from %llu to %llu",
			 (unsigned long long)s->progress, (unsigned long long)received);
	else if (received != s->got)
		snprintf(s->progress_bad, sizeof(s->progress_bad),
			 "says %llu received, the chunks gave %llu", (unsigned long long)received,
			 (unsigned long long)s->got);
	else if (total != s->size)
		snprintf(s->progress_bad, sizeof(s->progress_bad), "total %lld, declared %lld",
			 (long long)total, (long long)s->size);
	s->progress = received;
	s->progress_total = total;
}

static void rx_end(struct vroom_reader *r, const struct vroom_stream_end *e, void *arg)
{
	struct rs *s = arg;
	struct peer *p = s->p;
	s->ended = 1;
	s->t_end = spawn_now_ms();
	s->end_order = p->nend++;
	s->ok = e->ok;
	s->checksum = e->checksum;
	s->end_bytes = e->bytes;
	snprintf(s->status, sizeof(s->status), "%s", e->status);
	snprintf(s->reason, sizeof(s->reason), "%s", e->reason);
	crypto_hash_sha256_final(&s->sha, s->digest);
	flatten_attrs(vroom_reader_info(r), s->end_attrs, sizeof(s->end_attrs));
	if (p->mode == RX_COLLECT) {
		size_t len = 0;
		const void *d = vroom_reader_data(r, &len);
		s->data = malloc(len ? len : 1);
		if (s->data && len)
			memcpy(s->data, d, len);
		s->len = len;
	}
	const char *path = vroom_reader_path(r);
	if (path)
		snprintf(s->path, sizeof(s->path), "%s", path);
}

static void rx_take(struct vroom_reader *r, struct peer *p, const char *tag)
{
	static const struct vroom_reader_cbs cbs = {rx_chunk, rx_progress, rx_end};
	if (p->nopen == RX_MAX) {
		p->overflow++;
		return;
	}
	struct rs *s = &p->s[p->nopen++];
	const struct vroom_stream_info *in = vroom_reader_info(r);
	s->p = p;
	s->tag = tag;
	snprintf(s->id, sizeof(s->id), "%s", in->id);
	snprintf(s->room, sizeof(s->room), "%s", in->room);
	snprintf(s->sender, sizeof(s->sender), "%s", in->sender);
	snprintf(s->topic, sizeof(s->topic), "%s", in->topic);
	snprintf(s->name, sizeof(s->name), "%s", in->name);
	snprintf(s->mime, sizeof(s->mime), "%s", in->mime);
	flatten_attrs(in, s->attrs, sizeof(s->attrs));
	s->size = in->size;
	s->timestamp_ms = in->timestamp_ms;
	crypto_hash_sha256_init(&s->sha);
	struct vroom_error e;
	switch (p->mode) {
	case RX_SKIP:
		return;
	case RX_COLLECT:
		if (vroom_reader_collect(r, p->collect_max, &e) < 0) {
			s->collect_refused = 1;
			snprintf(s->reason, sizeof(s->reason), "%s", e.message);
			return;
		}
		break;
	case RX_SAVE:
		if (vroom_reader_save(r, p->dir, p->overwrite, &e) < 0) {
			snprintf(s->reason, sizeof(s->reason), "save refused: %s", e.message);
			return;
		}
		break;
	}
	vroom_reader_set(r, &cbs, s);
}

static void rx_any(struct vroom *v, struct vroom_reader *r, void *arg)
{
	rx_take(r, arg, "any");
}

static void rx_topic_a(struct vroom *v, struct vroom_reader *r, void *arg)
{
	rx_take(r, arg, "a");
}

static void rx_dup(struct vroom *v, struct vroom_reader *r, void *arg)
{
	rx_take(r, arg, "dup");
}

static void peer_push(struct vroom *v, const struct vroom_push *push, void *arg)
{
	struct peer *p = arg;
	struct {
		uint32_t magic, idx;
		uint64_t ns;
	} msg;
	uint64_t now = now_ns();
	if (push->len != sizeof(msg)) {
		p->push_bad++;
		return;
	}
	memcpy(&msg, push->data, sizeof(msg));
	if (msg.magic != 0x70757368u || msg.idx != p->npush || p->npush >= PUSH_MAX) {
		p->push_bad++;
		return;
	}
	p->lat_ms[p->npush] = (double)(now - msg.ns) / 1e6;
	p->push_in_flight[p->npush] = p->nopen > 0 && !p->s[0].ended;
	if (p->nopen > 0)
		p->push_got[p->npush] = p->s[0].got - p->push_got[p->npush];
	p->npush++;
}

static void peer_lost(struct vroom *v, const struct vroom_error *e, void *arg)
{
	struct peer *p = arg;
	p->lost = 1;
	p->why = *e;
}

static const struct vroom_handlers peer_handlers = {.push = peer_push,
						    .disconnected = peer_lost};

/* A client on base, connected as identity, reading streams per mode once a
 * handler is set (peer_read_all, or vroom_set_stream_handler). */
static struct peer *peer_new(struct event_base *base, const char *server, const char *identity,
			     int mode)
{
	struct peer *p = calloc(1, sizeof(*p));
	assert_non_null(p);
	snprintf(p->name, sizeof(p->name), "%s", identity);
	p->mode = mode;
	p->collect_max = 64 * MiB;
	p->v = vroom_new(base, &peer_handlers, p);
	assert_non_null(p->v);
	struct reply rep = {0};
	MUST(vroom_connect(p->v, server, identity, on_reply, &rep, &E));
	if (loop_until(base, reply_done, &rep, WAIT_MS) < 0)
		fail_msg("%s: no WELCOME within %d ms", identity, WAIT_MS);
	if (rep.err.code)
		fail_msg("%s: connect: %s: %s", identity, vroom_code_name(rep.err.code),
			 rep.err.message);
	return p;
}

static void peer_read_all(struct peer *p)
{
	MUST(vroom_set_stream_handler(p->v, NULL, rx_any, p, &E));
}

static void peer_free(struct peer *p)
{
	if (!p)
		return;
	vroom_free(p->v);
	for (size_t i = 0; i < p->nopen; i++)
		free(p->s[i].data);
	free(p);
}

static struct rs *rs_find(struct peer *p, const char *id)
{
	for (size_t i = 0; i < p->nopen; i++)
		if (strcmp(p->s[i].id, id) == 0)
			return &p->s[i];
	return NULL;
}

static void assert_connected(const struct peer *p)
{
	if (p->lost)
		fail_msg("%s lost its connection: %s: %s", p->name, vroom_code_name(p->why.code),
			 p->why.message);
	assert_int_equal(p->overflow, 0);
}

/* ---- senders: an event-driven writer of generated content ---- */

struct tx {
	struct vroom_writer *w;
	uint64_t total, written, stop_at; /* pump writes up to min(stop_at, total) */
	int64_t declared;
	uint64_t seed, block;
	unsigned char *buf;
	size_t buf_len, buf_off;
	crypto_hash_sha256_state sha;
	unsigned char digest[crypto_hash_sha256_BYTES];
	int autoclose, closed, done, failed, finalized;
	struct vroom_error err;
	uint64_t acked_last;
	unsigned nprogress;
	int64_t progress_total;
	char progress_bad[160];
	long long t_done;
};

static void tx_fail(struct tx *t, const struct vroom_error *e)
{
	if (!t->failed) {
		t->failed = 1;
		t->err = *e;
	}
}

static void tx_pump(struct vroom_writer *w, void *arg)
{
	struct tx *t = arg;
	struct vroom_error e;
	uint64_t goal = t->stop_at < t->total ? t->stop_at : t->total;
	while (!t->failed && !t->done && t->written < goal) {
		if (t->buf_off == t->buf_len) {
			uint64_t left = t->total - t->written;
			t->buf_len = left < MiB ? (size_t)left : MiB;
			t->buf_off = 0;
			gen_block(t->seed, t->block++, t->buf, t->buf_len);
			crypto_hash_sha256_update(&t->sha, t->buf, t->buf_len);
		}
		size_t want = t->buf_len - t->buf_off;
		if (want > goal - t->written)
			want = (size_t)(goal - t->written);
		long n = vroom_writer_offer(t->w, t->buf + t->buf_off, want, &e);
		if (n < 0) {
			tx_fail(t, &e);
			return;
		}
		if (n == 0)
			return;
		t->buf_off += (size_t)n;
		t->written += (uint64_t)n;
	}
	if (t->autoclose && !t->closed && t->written == t->total && !t->failed && !t->done) {
		t->closed = 1;
		if (vroom_writer_close_async(t->w, NULL, 0, &e) < 0)
			tx_fail(t, &e);
	}
}

static void tx_progress(void *arg, uint64_t acked, int64_t total)
{
	struct tx *t = arg;
	t->nprogress++;
	t->progress_total = total;
	if (t->progress_bad[0])
		return;
	if (acked < t->acked_last)
		snprintf(t->progress_bad, sizeof(t->progress_bad), "went back from %llu to %llu",
			 (unsigned long long)t->acked_last, (unsigned long long)acked);
	else if (acked > t->written)
		snprintf(t->progress_bad, sizeof(t->progress_bad),
			 "acknowledged %llu of %llu bytes written", (unsigned long long)acked,
			 (unsigned long long)t->written);
	t->acked_last = acked;
}

static void tx_done(struct vroom_writer *w, const struct vroom_error *e, void *arg)
{
	struct tx *t = arg;
	t->done = 1;
	t->t_done = spawn_now_ms();
	if (e)
		tx_fail(t, e);
}

/* Opens a stream of total generated bytes into room and writes up to
 * stop_at of them at once (and more whenever the window opens); closes when
 * all are written if autoclose. */
static struct tx *tx_start(struct vroom *v, const char *room, const struct vroom_stream_opts *o,
			   uint64_t total, uint64_t seed, uint64_t stop_at, int autoclose)
{
	struct tx *t = calloc(1, sizeof(*t));
	assert_non_null(t);
	t->total = total;
	t->declared = o->size;
	t->seed = seed;
	t->stop_at = stop_at;
	t->autoclose = autoclose;
	t->buf = malloc(MiB);
	assert_non_null(t->buf);
	crypto_hash_sha256_init(&t->sha);
	t->w = vroom_stream_open(v, room, o, &E);
	if (!t->w)
		fail_msg("vroom_stream_open: %s: %s", vroom_code_name(E.code), E.message);
	vroom_writer_set_cbs(t->w, tx_pump, tx_progress, tx_done, t);
	tx_pump(t->w, t);
	return t;
}

/* The SHA-256 of everything written (once all is written). */
static const unsigned char *tx_digest(struct tx *t)
{
	assert_int_equal(t->written, t->total);
	if (!t->finalized) {
		crypto_hash_sha256_final(&t->sha, t->digest);
		t->finalized = 1;
	}
	return t->digest;
}

static void assert_tx_ok(const struct tx *t)
{
	if (t->failed)
		fail_msg("stream %s failed: %s: %s", vroom_writer_id(t->w),
			 vroom_code_name(t->err.code), t->err.message);
	assert_true(t->done);
	assert_int_equal(t->written, t->total);
	if (t->progress_bad[0])
		fail_msg("sender's progress of %s %s", vroom_writer_id(t->w), t->progress_bad);
}

/* Frees t's writer: before its client is freed. */
static void tx_free(struct tx *t)
{
	if (!t)
		return;
	vroom_writer_free(t->w);
	free(t->buf);
	free(t);
}

/* Receiver r got the whole of t's stream, in order, verified. */
static void assert_received(struct peer *p, struct tx *t)
{
	struct rs *s = rs_find(p, vroom_writer_id(t->w));
	if (!s)
		fail_msg("%s never saw stream %s", p->name, vroom_writer_id(t->w));
	if (!s->ended)
		fail_msg("%s: stream %s did not end (%llu bytes so far)", p->name, s->id,
			 (unsigned long long)s->got);
	if (!s->ok)
		fail_msg("%s: stream %s ended %s: %s", p->name, s->id, s->status, s->reason);
	assert_string_equal(s->status, "ok");
	assert_string_equal(s->reason, "");
	assert_true(s->checksum);
	assert_int_equal(s->size, t->declared);
	assert_int_equal(s->got, t->total);
	assert_int_equal(s->end_bytes, t->total);
	if (memcmp(s->digest, tx_digest(t), sizeof(s->digest)) != 0)
		fail_msg("%s: stream %s: the SHA-256 of the %llu bytes received differs from the "
			 "sender's",
			 p->name, s->id, (unsigned long long)s->got);
	if (s->progress_bad[0])
		fail_msg("%s: receiver's progress of %s %s", p->name, s->id, s->progress_bad);
}

/* ---- waiting for streams ---- */

struct until {
	struct tx *const *tx;	  /* NULL-terminated: each done */
	struct peer *const *peer; /* NULL-terminated: each with ends ends */
	size_t ends;
};

static int until_met(void *arg)
{
	const struct until *u = arg;
	for (size_t i = 0; u->tx && u->tx[i]; i++)
		if (!u->tx[i]->done)
			return 0;
	for (size_t i = 0; u->peer && u->peer[i]; i++)
		if (u->peer[i]->nend < u->ends || u->peer[i]->lost)
			return 0;
	return 1;
}

static void wait_streams(struct event_base *base, struct tx *const *tx, struct peer *const *peer,
			 size_t ends, int ms)
{
	struct until u = {tx, peer, ends};
	if (loop_until(base, until_met, &u, ms) == 0)
		return;
	char why[1024];
	size_t n = 0;
	for (size_t i = 0; tx && tx[i] && n < sizeof(why); i++)
		n += (size_t)snprintf(why + n, sizeof(why) - n,
				      " [writer %s: written %llu/%llu acked %llu done %d]",
				      vroom_writer_id(tx[i]->w),
				      (unsigned long long)tx[i]->written,
				      (unsigned long long)tx[i]->total,
				      (unsigned long long)vroom_writer_acked(tx[i]->w), tx[i]->done);
	for (size_t i = 0; peer && peer[i] && n < sizeof(why); i++)
		n += (size_t)snprintf(why + n, sizeof(why) - n,
				      " [%s: %zu opened, %zu ended, lost %d, %llu bytes in the last]",
				      peer[i]->name, peer[i]->nopen, peer[i]->nend, peer[i]->lost,
				      (unsigned long long)(peer[i]->nopen
						? peer[i]->s[peer[i]->nopen - 1].got : 0));
	fail_msg("streams not over within %d ms:%s", ms, why);
}

#define TXS(...)   ((struct tx *const[]){__VA_ARGS__, NULL})
#define PEERS(...) ((struct peer *const[]){__VA_ARGS__, NULL})

struct got_at_least {
	struct peer *const *peer;
	uint64_t bytes;
};

static int got_at_least_met(void *arg)
{
	const struct got_at_least *g = arg;
	for (size_t i = 0; g->peer[i]; i++)
		if (g->peer[i]->nopen == 0 || g->peer[i]->s[0].got < g->bytes)
			return 0;
	return 1;
}

/* Waits until every peer's first stream has delivered bytes. */
static void wait_bytes(struct event_base *base, struct peer *const *peer, uint64_t bytes)
{
	struct got_at_least g = {peer, bytes};
	if (loop_until(base, got_at_least_met, &g, WAIT_MS) < 0)
		fail_msg("%s: not %llu bytes of its first stream within %d ms (%zu opened)",
			 peer[0]->name, (unsigned long long)bytes, WAIT_MS, peer[0]->nopen);
}

struct nth_got {
	struct peer *p;
	size_t nth;
	uint64_t bytes;
};

static int nth_got_met(void *arg)
{
	const struct nth_got *g = arg;
	return g->p->nopen > g->nth && g->p->s[g->nth].got >= g->bytes;
}

static void make_room(struct peer *owner, char room[VROOM_ROOM_ID_MAX + 1])
{
	MUST(vroom_create(owner->v, room, &E));
}

/* ---- 1. a 1 GiB stream to two receivers ---- */

static void test_gib_two_receivers(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "gib-sender", RX_READ);
	struct peer *r1 = peer_new(base, addr, "gib-rx1", RX_READ);
	struct peer *r2 = peer_new(base, addr, "gib-rx2", RX_READ);
	char room[VROOM_ROOM_ID_MAX + 1];
	peer_read_all(r1);
	peer_read_all(r2);
	make_room(snd, room);
	MUST(vroom_subscribe(r1->v, room, &E));
	MUST(vroom_subscribe(r2->v, room, &E));

	struct vroom_stream_opts o = {.topic = "bulk", .name = "gib.bin", .size = (int64_t)GiB};
	long long t0 = spawn_now_ms();
	struct tx *t = tx_start(snd->v, room, &o, GiB, 0x1111, UINT64_MAX, 1);
	wait_streams(base, TXS(t), PEERS(r1, r2), 1, BIG_WAIT_MS);
	long long ms = spawn_now_ms() - t0;

	assert_tx_ok(t);
	assert_int_equal(vroom_writer_acked(t->w), GiB);
	assert_int_equal(t->acked_last, GiB);
	assert_int_equal(t->progress_total, (int64_t)GiB);
	struct peer *rx[] = {r1, r2};
	for (int i = 0; i < 2; i++) {
		assert_connected(rx[i]);
		assert_int_equal(rx[i]->nopen, 1);
		assert_received(rx[i], t);
		assert_string_equal(rx[i]->s[0].name, "gib.bin");
		assert_string_equal(rx[i]->s[0].topic, "bulk");
		assert_string_equal(rx[i]->s[0].sender, "gib-sender");
		assert_string_equal(rx[i]->s[0].room, room);
	}
	assert_int_equal(snd->nopen, 0); /* the sender is not a receiver */
	print_message("    1 GiB to 2 receivers in %lld ms: %.1f MB/s per receiver, %.1f MB/s "
		      "delivered\n",
		      ms, (double)GiB / 1e6 / ((double)ms / 1000),
		      2 * (double)GiB / 1e6 / ((double)ms / 1000));
	MUST(vroom_remove(snd->v, room, &E));
	tx_free(t);
	peer_free(snd);
	peer_free(r1);
	peer_free(r2);
	event_base_free(base);
}

/* ---- 2. fifty concurrent streams on one topic from one connection ---- */

#define NCONC 50

static uint32_t xorshift(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

static void test_fifty_concurrent(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "conc-sender", RX_READ);
	struct peer *rcv = peer_new(base, addr, "conc-rx", RX_READ);
	char room[VROOM_ROOM_ID_MAX + 1];
	struct tx *t[NCONC];
	size_t order[NCONC];
	uint32_t x = 0x9e3779b9u;

	peer_read_all(rcv);
	make_room(snd, room);
	MUST(vroom_subscribe(rcv->v, room, &E));
	for (size_t i = 0; i < NCONC; i++) {
		/* 0 to 200 KiB, every size different; stream 0 is empty. */
		uint64_t size = (uint64_t)i * 4182;
		char name[32];
		snprintf(name, sizeof(name), "part-%02zu", i);
		struct vroom_stream_opts o = {.topic = "many", .name = name, .size = (int64_t)size};
		t[i] = tx_start(snd->v, room, &o, size, 0x2000 + i, 0, 0);
	}
	/* Interleaved writes: a few KiB of each stream in turn. */
	long long deadline = spawn_now_ms() + WAIT_MS;
	for (int busy = 1; busy;) {
		busy = 0;
		for (size_t i = 0; i < NCONC; i++) {
			if (t[i]->written == t[i]->total)
				continue;
			busy = 1;
			uint64_t piece = 1 + xorshift(&x) % (9 * KiB);
			t[i]->stop_at = t[i]->written + piece;
			tx_pump(t[i]->w, t[i]);
			if (t[i]->failed)
				fail_msg("stream %zu: %s", i, t[i]->err.message);
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (spawn_now_ms() > deadline)
			fail_msg("could not write 50 streams of up to 200 KiB within %d ms", WAIT_MS);
	}
	/* Close in a shuffled order. */
	for (size_t i = 0; i < NCONC; i++)
		order[i] = i;
	for (size_t i = NCONC - 1; i > 0; i--) {
		size_t j = xorshift(&x) % (i + 1), tmp = order[i];
		order[i] = order[j];
		order[j] = tmp;
	}
	for (size_t k = 0; k < NCONC; k++) {
		MUST(vroom_writer_close_async(t[order[k]]->w, NULL, 0, &E));
		if (k % 7 == 0)
			event_base_loop(base, EVLOOP_NONBLOCK);
	}
	struct tx *all[NCONC + 1];
	memcpy(all, t, sizeof(t));
	all[NCONC] = NULL;
	wait_streams(base, all, PEERS(rcv), NCONC, WAIT_MS);

	assert_connected(rcv);
	assert_int_equal(rcv->nopen, NCONC);
	assert_int_equal(rcv->nend, NCONC);
	for (size_t i = 0; i < NCONC; i++) {
		assert_tx_ok(t[i]);
		/* Opens in the order they were opened. */
		if (strcmp(rcv->s[i].id, vroom_writer_id(t[i]->w)) != 0)
			fail_msg("open %zu is stream %s, expected %s (opened %zu-th)", i,
				 rcv->s[i].id, vroom_writer_id(t[i]->w), i);
		char name[32];
		snprintf(name, sizeof(name), "part-%02zu", i);
		assert_string_equal(rcv->s[i].name, name);
		assert_string_equal(rcv->s[i].topic, "many");
		assert_received(rcv, t[i]);
	}
	/* Ends in the order of the closes. */
	for (size_t k = 0; k < NCONC; k++) {
		struct rs *s = rs_find(rcv, vroom_writer_id(t[order[k]]->w));
		if (s->end_order != k)
			fail_msg("stream %zu was closed %zu-th but ended %zu-th at the receiver",
				 order[k], k, s->end_order);
	}
	MUST(vroom_remove(snd->v, room, &E));
	for (size_t i = 0; i < NCONC; i++)
		tx_free(t[i]);
	peer_free(snd);
	peer_free(rcv);
	event_base_free(base);
}

/* ---- 3. destinations ---- */

static void test_destinations(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "dests-sender", RX_READ);
	struct peer *bob = peer_new(base, addr, "dests-bob", RX_COLLECT);
	struct peer *carol = peer_new(base, addr, "dests-carol", RX_COLLECT);
	char room[VROOM_ROOM_ID_MAX + 1], id1[VROOM_ROOM_ID_MAX + 1];
	char id2[VROOM_ROOM_ID_MAX + 1], id3[VROOM_ROOM_ID_MAX + 1];
	size_t len = 100 * KiB;
	unsigned char *data = gen_bytes(0x3000, len);

	peer_read_all(bob);
	peer_read_all(carol);
	make_room(snd, room);
	MUST(vroom_subscribe(bob->v, room, &E));
	MUST(vroom_subscribe(carol->v, room, &E));
	const char *to_bob[] = {"dests-bob"}, *to_nobody[] = {"dests-nobody"};
	struct vroom_stream_opts o1 = {.name = "for-bob", .dests = to_bob, .ndests = 1};
	struct vroom_stream_opts o2 = {.name = "for-nobody", .dests = to_nobody, .ndests = 1};
	struct vroom_stream_opts o3 = {.name = "for-all"};
	MUST(vroom_send_bytes(snd->v, room, &o1, data, len, NULL, NULL, id1, &E));
	MUST(vroom_send_bytes(snd->v, room, &o2, data, len, NULL, NULL, id2, &E));
	MUST(vroom_send_bytes(snd->v, room, &o3, data, 1000, NULL, NULL, id3, &E));
	/* The last stream reaches both: whatever came before it has arrived. */
	wait_streams(base, NULL, PEERS(bob), 2, WAIT_MS);
	wait_streams(base, NULL, PEERS(carol), 1, WAIT_MS);
	loop_for(base, 100);

	assert_connected(bob);
	assert_connected(carol);
	assert_int_equal(bob->nopen, 2);
	assert_string_equal(bob->s[0].id, id1);
	assert_string_equal(bob->s[0].name, "for-bob");
	assert_true(bob->s[0].ok);
	assert_int_equal(bob->s[0].len, len);
	assert_memory_equal(bob->s[0].data, data, len);
	assert_string_equal(bob->s[1].id, id3);
	assert_true(bob->s[1].ok);
	/* carol saw no open, no data and no end of the streams not meant for her. */
	assert_int_equal(carol->nopen, 1);
	assert_int_equal(carol->nend, 1);
	assert_string_equal(carol->s[0].id, id3);
	assert_true(carol->s[0].ok);
	assert_int_equal(carol->s[0].len, 1000);
	assert_memory_equal(carol->s[0].data, data, 1000);
	assert_int_equal(vroom_streams_dropped(carol->v), 0);
	assert_int_equal(vroom_streams_dropped(bob->v), 0);
	MUST(vroom_remove(snd->v, room, &E));
	free(data);
	peer_free(snd);
	peer_free(bob);
	peer_free(carol);
	event_base_free(base);
}

/* ---- 4. topic filters and handlers ---- */

static void test_topics(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "topics-sender", RX_READ);
	struct peer *ra = peer_new(base, addr, "topics-only-a", RX_READ);   /* topics [a] */
	struct peer *rc = peer_new(base, addr, "topics-catchall", RX_READ); /* a + any */
	struct peer *rd = peer_new(base, addr, "topics-dropper", RX_READ);  /* a only */
	char room[VROOM_ROOM_ID_MAX + 1];
	char ids[4][VROOM_ROOM_ID_MAX + 1];
	unsigned char *data = gen_bytes(0x4000, 50 * KiB);
	static const char *const topics_a[] = {"a"};

	MUST(vroom_set_stream_handler(ra->v, "a", rx_topic_a, ra, &E));
	MUST(vroom_set_stream_handler(ra->v, NULL, rx_any, ra, &E));
	MUST(vroom_set_stream_handler(rc->v, "a", rx_topic_a, rc, &E));
	MUST(vroom_set_stream_handler(rc->v, NULL, rx_any, rc, &E));
	MUST(vroom_set_stream_handler(rd->v, "a", rx_topic_a, rd, &E));
	/* A second handler for a topic (or for every topic) is an error and
	 * leaves the first in place. */
	assert_int_equal(vroom_set_stream_handler(ra->v, "a", rx_dup, ra, &E), -1);
	assert_int_equal(E.code, VROOM_E_ARG);
	assert_true(E.message[0] != '\0');
	assert_int_equal(vroom_set_stream_handler(rc->v, NULL, rx_dup, rc, &E), -1);
	assert_int_equal(E.code, VROOM_E_ARG);

	make_room(snd, room);
	MUST(vroom_subscribe_topics(ra->v, room, topics_a, 1, &E));
	MUST(vroom_subscribe(rc->v, room, &E));
	MUST(vroom_subscribe(rd->v, room, &E));
	static const char *const sent_topics[] = {"b", "a", "", "a"};
	for (int i = 0; i < 4; i++) {
		char name[16];
		snprintf(name, sizeof(name), "t%d", i);
		struct vroom_stream_opts o = {.topic = sent_topics[i], .name = name};
		MUST(vroom_send_bytes(snd->v, room, &o, data, 50 * KiB, NULL, NULL, ids[i], &E));
	}
	wait_streams(base, NULL, PEERS(ra, rd), 2, WAIT_MS);
	wait_streams(base, NULL, PEERS(rc), 4, WAIT_MS);
	loop_for(base, 100);

	/* Subscribed to [a]: only the two "a" streams, through the "a" handler;
	 * the catch-all never ran, so no "b" or "" stream reached it. */
	assert_connected(ra);
	assert_int_equal(ra->nopen, 2);
	for (int i = 0; i < 2; i++) {
		assert_string_equal(ra->s[i].id, ids[1 + 2 * i]);
		assert_string_equal(ra->s[i].topic, "a");
		assert_string_equal(ra->s[i].tag, "a");
		assert_true(ra->s[i].ok);
		assert_int_equal(ra->s[i].got, 50 * KiB);
	}
	assert_int_equal(vroom_streams_dropped(ra->v), 0);
	/* Every topic, "a" and a catch-all: each to its handler. */
	assert_connected(rc);
	assert_int_equal(rc->nopen, 4);
	static const char *const want_tag[] = {"any", "a", "any", "a"};
	for (int i = 0; i < 4; i++) {
		assert_string_equal(rc->s[i].id, ids[i]);
		assert_string_equal(rc->s[i].topic, sent_topics[i]);
		assert_string_equal(rc->s[i].tag, want_tag[i]);
		assert_true(rc->s[i].ok);
	}
	assert_int_equal(vroom_streams_dropped(rc->v), 0);
	/* Every topic, a handler for "a" only: the others are dropped, counted. */
	assert_connected(rd);
	assert_int_equal(rd->nopen, 2);
	assert_string_equal(rd->s[0].id, ids[1]);
	assert_string_equal(rd->s[1].id, ids[3]);
	assert_true(rd->s[0].ok && rd->s[1].ok);
	assert_int_equal(vroom_streams_dropped(rd->v), 2);
	MUST(vroom_remove(snd->v, room, &E));
	free(data);
	peer_free(snd);
	peer_free(ra);
	peer_free(rc);
	peer_free(rd);
	event_base_free(base);
}

/* ---- 5. abort, a killed sender, the idle timeout ---- */

static void test_abort_reason(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "abort-sender", RX_READ);
	struct peer *r1 = peer_new(base, addr, "abort-rx1", RX_READ);
	struct peer *r2 = peer_new(base, addr, "abort-rx2", RX_READ);
	char room[VROOM_ROOM_ID_MAX + 1];
	const char *reason = "user cancelled the upload";

	peer_read_all(r1);
	peer_read_all(r2);
	make_room(snd, room);
	MUST(vroom_subscribe(r1->v, room, &E));
	MUST(vroom_subscribe(r2->v, room, &E));
	struct vroom_stream_opts o = {.name = "cancelled.bin", .size = 8 * MiB};
	struct tx *t = tx_start(snd->v, room, &o, 8 * MiB, 0x5000, 2 * MiB, 0);
	wait_bytes(base, PEERS(r1, r2), 2 * MiB);
	MUST(vroom_writer_abort(t->w, reason, &E));
	wait_streams(base, TXS(t), PEERS(r1, r2), 1, WAIT_MS);

	struct peer *rx[] = {r1, r2};
	for (int i = 0; i < 2; i++) {
		struct rs *s = &rx[i]->s[0];
		assert_connected(rx[i]);
		assert_int_equal(rx[i]->nopen, 1);
		assert_false(s->ok);
		assert_string_equal(s->status, "aborted");
		assert_string_equal(s->reason, reason);
		assert_int_equal(s->got, 2 * MiB);
		assert_int_equal(s->end_bytes, 2 * MiB);
	}
	/* The writer is over: done ran with an error, and it takes no more. */
	assert_true(t->done && t->failed);
	assert_int_equal(t->err.code, VROOM_E_ABORTED);
	assert_int_equal(vroom_writer_offer(t->w, "x", 1, &E), -1);
	/* The connection goes on: another stream gets through. */
	struct tx *t2 = tx_start(snd->v, room, &(struct vroom_stream_opts){.size = 300 * KiB},
				 300 * KiB, 0x5001, UINT64_MAX, 1);
	wait_streams(base, TXS(t2), PEERS(r1, r2), 2, WAIT_MS);
	assert_tx_ok(t2);
	assert_received(r1, t2);
	assert_received(r2, t2);
	MUST(vroom_remove(snd->v, room, &E));
	tx_free(t);
	tx_free(t2);
	peer_free(snd);
	peer_free(r1);
	peer_free(r2);
	event_base_free(base);
}

/* In a child process: opens a 64 MiB stream into room as kill-sender, writes
 * 4 MiB, reports the stream id on fd and waits to be killed. */
static int killed_sender_child(const char *room, int fd)
{
	struct vroom_error e;
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct vroom *v = vroom_open(addr, "kill-sender", NULL, NULL, &e);
	if (!v)
		return 10;
	struct vroom_stream_opts o = {.name = "doomed.bin", .size = 64 * MiB};
	struct vroom_writer *w = vroom_stream_open(v, room, &o, &e);
	if (!w)
		return 11;
	unsigned char *buf = gen_bytes(0x5100, MiB);
	for (int i = 0; i < 4; i++)
		if (vroom_writer_write(w, buf, MiB, &e) < 0) {
			fprintf(stderr, "kill-sender: %s\n", e.message);
			return 12;
		}
	char msg[VROOM_ROOM_ID_MAX + 2];
	snprintf(msg, sizeof(msg), "%s\n", vroom_writer_id(w));
	if (write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg))
		return 13;
	for (;;)
		pause();
}

struct child_report {
	int fd;
	char buf[VROOM_ROOM_ID_MAX + 2];
	size_t len;
	int eof;
};

static int child_reported(void *arg)
{
	struct child_report *c = arg;
	while (!c->eof && c->len < sizeof(c->buf) - 1 && !memchr(c->buf, '\n', c->len)) {
		ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);
		if (n < 0)
			break; /* EAGAIN */
		if (n == 0)
			c->eof = 1;
		c->len += (size_t)(n > 0 ? n : 0);
	}
	return c->eof || memchr(c->buf, '\n', c->len) != NULL;
}

static void test_sender_killed(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *owner = peer_new(base, addr, "kill-owner", RX_READ);
	struct peer *rcv = peer_new(base, addr, "kill-rx", RX_READ);
	char room[VROOM_ROOM_ID_MAX + 1];
	int p[2];

	peer_read_all(rcv);
	make_room(owner, room);
	MUST(vroom_grant(owner->v, room, "kill-sender", &E));
	MUST(vroom_subscribe(rcv->v, room, &E));
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		_exit(killed_sender_child(room, p[1]));
	}
	close(p[1]);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	struct child_report rep = {.fd = p[0]};
	int rc = loop_until(base, child_reported, &rep, WAIT_MS);
	if (rc == 0 && !rep.eof)
		wait_bytes(base, PEERS(rcv), 3 * MiB);
	kill(pid, SIGKILL);
	int status = 0;
	waitpid(pid, &status, 0);
	close(p[0]);
	if (rc < 0 || rep.eof)
		fail_msg("the sender child did not write 4 MiB (%s, status %d)",
			 rc < 0 ? "timed out" : "it exited", WEXITSTATUS(status));
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	*strchr(rep.buf, '\n') = '\0';

	wait_streams(base, NULL, PEERS(rcv), 1, WAIT_MS);
	assert_connected(rcv);
	assert_int_equal(rcv->nopen, 1);
	struct rs *s = &rcv->s[0];
	assert_string_equal(s->id, rep.buf);
	assert_string_equal(s->sender, "kill-sender");
	assert_false(s->ok);
	assert_string_equal(s->status, "aborted");
	if (!strstr(s->reason, "sender"))
		fail_msg("the reason \"%s\" does not mention the sender", s->reason);
	assert_true(s->got >= 3 * MiB && s->got < 64 * MiB);
	/* The node is fine: the room still takes streams. */
	struct tx *t = tx_start(owner->v, room, &(struct vroom_stream_opts){.size = 1000}, 1000,
				0x5200, UINT64_MAX, 1);
	wait_streams(base, TXS(t), PEERS(rcv), 2, WAIT_MS);
	assert_received(rcv, t);
	MUST(vroom_remove(owner->v, room, &E));
	tx_free(t);
	peer_free(owner);
	peer_free(rcv);
	event_base_free(base);
}

static void test_idle_timeout(void **state)
{
	/* Small chunks: a stalled receiver's output lets go of the stream at
	 * any point, rarely just where a CREDIT was due. */
	static const char *const args[] = {"--stream-idle-timeout", "1", "--chunk-max", "4096",
					   NULL};
	char why[512];
	struct spawn *n = spawn_start("streams-idle", args, why, sizeof(why));
	if (!n)
		fail_msg("%s", why);
	struct event_base *base = event_base_new(), *base2 = event_base_new();
	assert_non_null(base);
	assert_non_null(base2);
	struct peer *snd = peer_new(base, spawn_addr(n), "idle-sender", RX_READ);
	struct peer *rcv = peer_new(base, spawn_addr(n), "idle-rx", RX_READ);
	struct peer *slow = peer_new(base2, spawn_addr(n), "idle-slow-rx", RX_COUNT);
	char room[VROOM_ROOM_ID_MAX + 1], room2[VROOM_ROOM_ID_MAX + 1];

	peer_read_all(rcv);
	peer_read_all(slow);
	make_room(snd, room);
	make_room(snd, room2);
	MUST(vroom_subscribe(rcv->v, room, &E));

	/* A little of a 1 MiB stream, then silence with the window open. */
	struct vroom_stream_opts o = {.name = "silent.bin", .size = MiB};
	struct tx *t = tx_start(snd->v, room, &o, MiB, 0x5300, 1000, 0);
	long long t_write = spawn_now_ms();
	wait_bytes(base, PEERS(rcv), 1000);
	struct until u = {TXS(t), PEERS(rcv), 1};
	if (loop_until(base, until_met, &u, 5000) < 0)
		fail_msg("no end within 5 s of the sender going silent (idle timeout 1 s): "
			 "receiver %zu ended, writer done %d",
			 rcv->nend, t->done);
	long long took = rcv->s[0].t_end - t_write;
	assert_connected(rcv);
	assert_string_equal(rcv->s[0].status, "timeout");
	assert_false(rcv->s[0].ok);
	assert_int_equal(rcv->s[0].got, 1000);
	if (took < 900 || took > 3000)
		fail_msg("the timeout came %lld ms after the last write (idle timeout 1 s)", took);
	assert_true(t->done && t->failed);
	if (t->err.code != VROOM_E_TIMEOUT || !strstr(t->err.message, "timeout"))
		fail_msg("the writer's error is not a timeout: %s: %s",
			 vroom_code_name(t->err.code), t->err.message);
	assert_int_equal(vroom_writer_offer(t->w, "x", 1, &E), -1);

	/* A stream held back by a receiver that does not read is not idle:
	 * the sender has no window. The receiver stalls for 1.2 s, reads what
	 * has reached it, stalls for 2 s more (a second stall point), then
	 * reads everything. The node must not time the stream out: its sender
	 * has used all the window it was told of. */
	struct reply sub = {0};
	MUST(vroom_subscribe_async(slow->v, room2, on_reply, &sub, &E));
	if (loop_until(base2, reply_done, &sub, WAIT_MS) < 0 || sub.err.code)
		fail_msg("the stalled receiver could not subscribe: %s", sub.err.message);
	struct vroom_stream_opts o2 = {.name = "held.bin", .size = 48 * MiB};
	struct tx *t2 = tx_start(snd->v, room2, &o2, 48 * MiB, 0x5400, UINT64_MAX, 1);
	loop_for(base, 1200);
	uint64_t stalled_at = slow->nopen ? slow->s[0].got : 0;
	for (int i = 0; i < 200 && (!slow->nopen || slow->s[0].got < stalled_at + 64 * KiB); i++) {
		event_base_loop(base2, EVLOOP_NONBLOCK);
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	uint64_t drained = slow->nopen ? slow->s[0].got - stalled_at : 0;
	loop_for(base, 2000);
	uint64_t held_at = t2->written;
	print_message("    held back at %llu bytes written, %llu acknowledged (the receiver read "
		      "%llu, then %llu more)\n",
		      (unsigned long long)held_at, (unsigned long long)t2->acked_last,
		      (unsigned long long)stalled_at, (unsigned long long)drained);
	if (t2->done)
		fail_msg("the held-back stream ended while its receiver was stalled, its sender "
			 "out of window (written %llu, acked %llu, window %llu): %s: %s",
			 (unsigned long long)t2->written, (unsigned long long)t2->acked_last,
			 (unsigned long long)vroom_limit(snd->v, "stream_window"),
			 vroom_code_name(t2->err.code), t2->err.message);
	assert_true(t2->written < t2->total);
	long long deadline = spawn_now_ms() + WAIT_MS;
	while (!(t2->done && slow->nend) && spawn_now_ms() < deadline) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		event_base_loop(base2, EVLOOP_NONBLOCK);
	}
	assert_connected(slow);
	assert_connected(snd);
	if (!slow->nend)
		fail_msg("the held stream did not end within %d ms", WAIT_MS);
	if (!slow->s[0].ok)
		fail_msg("the held-back stream (stalled at %llu bytes) ended %s: %s",
			 (unsigned long long)held_at, slow->s[0].status, slow->s[0].reason);
	assert_tx_ok(t2);
	assert_int_equal(slow->s[0].got, 48 * MiB);

	tx_free(t);
	tx_free(t2);
	peer_free(snd);
	peer_free(rcv);
	peer_free(slow);
	event_base_free(base);
	event_base_free(base2);
	if (spawn_stop(n, why, sizeof(why)) < 0)
		fail_msg("%s", why);
}

/* Closing with fewer bytes than declared: error size_mismatch for all. */
static void test_size_mismatch(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "short-sender", RX_READ);
	struct peer *rcv = peer_new(base, addr, "short-rx", RX_READ);
	char room[VROOM_ROOM_ID_MAX + 1];

	peer_read_all(rcv);
	make_room(snd, room);
	MUST(vroom_subscribe(rcv->v, room, &E));
	struct tx *t = tx_start(snd->v, room, &(struct vroom_stream_opts){.size = 5000}, 5000,
				0x5500, 3000, 0);
	/* Writing past the declared size is refused by the library. */
	assert_int_equal(vroom_writer_offer(t->w, t->buf, 2001, &E), -1);
	MUST(vroom_writer_close_async(t->w, NULL, 0, &E));
	wait_streams(base, TXS(t), PEERS(rcv), 1, WAIT_MS);
	assert_true(t->failed);
	assert_int_equal(t->err.code, VROOM_E_SIZE_MISMATCH);
	assert_string_equal(vroom_code_name(t->err.code), "size_mismatch");
	assert_string_equal(rcv->s[0].status, "error");
	if (!strstr(rcv->s[0].reason, "size_mismatch"))
		fail_msg("reason: %s", rcv->s[0].reason);
	assert_int_equal(rcv->s[0].got, 3000);
	assert_connected(snd);
	MUST(vroom_remove(snd->v, room, &E));
	tx_free(t);
	peer_free(snd);
	peer_free(rcv);
	event_base_free(base);
}

/* ---- 6. a late subscriber ---- */

static void test_late_subscriber(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "late-sender", RX_READ);
	struct peer *early = peer_new(base, addr, "late-early", RX_READ);
	struct peer *late = peer_new(base, addr, "late-late", RX_READ);
	char room[VROOM_ROOM_ID_MAX + 1];

	peer_read_all(early);
	peer_read_all(late);
	make_room(snd, room);
	MUST(vroom_subscribe(early->v, room, &E));
	struct vroom_stream_opts o = {.name = "first", .size = 3 * MiB};
	struct tx *t1 = tx_start(snd->v, room, &o, 3 * MiB, 0x6000, 512 * KiB, 1);
	wait_bytes(base, PEERS(early), 512 * KiB);
	/* The stream is open and half-way: now late subscribes. */
	MUST(vroom_subscribe(late->v, room, &E));
	t1->stop_at = UINT64_MAX;
	tx_pump(t1->w, t1);
	wait_streams(base, TXS(t1), PEERS(early), 1, WAIT_MS);
	o.name = "second";
	o.size = 200 * KiB;
	struct tx *t2 = tx_start(snd->v, room, &o, 200 * KiB, 0x6001, UINT64_MAX, 1);
	wait_streams(base, TXS(t2), PEERS(early, late), 1, WAIT_MS);
	wait_streams(base, NULL, PEERS(early), 2, WAIT_MS);

	assert_connected(late);
	assert_tx_ok(t1);
	assert_tx_ok(t2);
	assert_received(early, t1);
	assert_received(early, t2);
	assert_int_equal(late->nopen, 1);
	assert_int_equal(late->nend, 1);
	assert_string_equal(late->s[0].id, vroom_writer_id(t2->w));
	assert_string_equal(late->s[0].name, "second");
	assert_received(late, t2);
	assert_int_equal(vroom_streams_dropped(late->v), 0);
	MUST(vroom_remove(snd->v, room, &E));
	tx_free(t1);
	tx_free(t2);
	peer_free(snd);
	peer_free(early);
	peer_free(late);
	event_base_free(base);
}

/* ---- 7. progress ---- */

static void test_progress(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "prog-sender", RX_READ);
	struct peer *rcv = peer_new(base, addr, "prog-rx", RX_READ);
	char room[VROOM_ROOM_ID_MAX + 1];

	peer_read_all(rcv);
	make_room(snd, room);
	MUST(vroom_subscribe(rcv->v, room, &E));
	/* Declared size, then unknown size. */
	struct tx *t1 = tx_start(snd->v, room, &(struct vroom_stream_opts){.size = 8 * MiB},
				 8 * MiB, 0x7000, UINT64_MAX, 1);
	struct tx *t2 = tx_start(snd->v, room, &(struct vroom_stream_opts){.size = -1},
				 3 * MiB + 17, 0x7001, UINT64_MAX, 1);
	wait_streams(base, TXS(t1, t2), PEERS(rcv), 2, WAIT_MS);

	struct tx *t[] = {t1, t2};
	for (int i = 0; i < 2; i++) {
		assert_tx_ok(t[i]); /* progress never went back nor past the bytes written */
		assert_received(rcv, t[i]);
		/* Several steps, ending at the total. */
		assert_true(t[i]->nprogress >= 3);
		assert_int_equal(t[i]->acked_last, t[i]->total);
		assert_int_equal(t[i]->progress_total, t[i]->declared);
		assert_int_equal(vroom_writer_acked(t[i]->w), t[i]->total);
		struct rs *s = rs_find(rcv, vroom_writer_id(t[i]->w));
		assert_true(s->nprogress >= 2);
		assert_int_equal(s->progress, t[i]->total);
		assert_int_equal(s->progress_total, t[i]->declared);
	}
	MUST(vroom_remove(snd->v, room, &E));
	tx_free(t1);
	tx_free(t2);
	peer_free(snd);
	peer_free(rcv);
	event_base_free(base);
}

/* ---- 8. collect and save ---- */

static void make_temp_dir(char *out, size_t cap)
{
	const char *tmp = getenv("VROOM_TEST_TMP");
	snprintf(out, cap, "%s/streams-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(out))
		fail_msg("mkdtemp %s: %s", out, strerror(errno));
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		fail_msg("cannot write %s: %s", path, strerror(errno));
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

/* Whether the file at path holds exactly data. */
static int file_is(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	unsigned char *buf = malloc(len + 1);
	assert_non_null(buf);
	size_t n = fread(buf, 1, len + 1, f);
	fclose(f);
	int same = n == len && memcmp(buf, data, len) == 0;
	free(buf);
	return same;
}

/* The names in dir, "a|b|" sorted by readdir order; count in *n. */
static void list_dir(const char *dir, char *out, size_t cap, int *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t len = 0;
	*n = 0;
	out[0] = '\0';
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		(*n)++;
		int w = snprintf(out + len, cap - len, "%s|", de->d_name);
		if (w > 0 && (size_t)w < cap - len)
			len += (size_t)w;
	}
	closedir(d);
}

static void rm_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[2048];
	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct stat st;
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			rm_tree(path);
		else
			unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static void test_collect(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "collect-sender", RX_READ);
	struct peer *rcv = peer_new(base, addr, "collect-rx", RX_COLLECT);
	struct peer *small = peer_new(base, addr, "collect-small", RX_COLLECT);
	char room[VROOM_ROOM_ID_MAX + 1], id[VROOM_ROOM_ID_MAX + 1];
	size_t len = 300 * KiB + 5;
	unsigned char *data = gen_bytes(0x8000, len);

	small->collect_max = 100 * KiB;
	peer_read_all(rcv);
	peer_read_all(small);
	make_room(snd, room);
	MUST(vroom_subscribe(rcv->v, room, &E));
	MUST(vroom_subscribe(small->v, room, &E));
	/* Declared size: collected whole; over the small reader's limit, its
	 * collect call refuses it up front. */
	MUST(vroom_send_bytes(snd->v, room, &(struct vroom_stream_opts){.name = "all.bin"}, data,
			      len, NULL, NULL, id, &E));
	/* Unknown size: the small reader's limit ends it with an error. */
	struct tx *t = tx_start(snd->v, room, &(struct vroom_stream_opts){.size = -1}, len,
				0x8000, UINT64_MAX, 1);
	wait_streams(base, TXS(t), PEERS(rcv), 2, WAIT_MS);
	wait_streams(base, NULL, PEERS(small), 1, WAIT_MS);

	assert_connected(rcv);
	assert_string_equal(rcv->s[0].id, id);
	assert_true(rcv->s[0].ok);
	assert_int_equal(rcv->s[0].len, len);
	assert_memory_equal(rcv->s[0].data, data, len);
	assert_true(rcv->s[1].ok);
	assert_int_equal(rcv->s[1].len, len);
	assert_memory_equal(rcv->s[1].data, data, len); /* same seed, same bytes */

	assert_connected(small);
	assert_int_equal(small->nopen, 2);
	assert_true(small->s[0].collect_refused);
	assert_false(small->s[0].ended);
	assert_false(small->s[1].ok);
	assert_string_equal(small->s[1].status, "error");
	assert_true(small->s[1].len <= 100 * KiB);
	MUST(vroom_remove(snd->v, room, &E));
	free(data);
	tx_free(t);
	peer_free(snd);
	peer_free(rcv);
	peer_free(small);
	event_base_free(base);
}

static void test_save(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "save-sender", RX_READ);
	struct peer *rcv = peer_new(base, addr, "save-rx", RX_SAVE);
	char room[VROOM_ROOM_ID_MAX + 1], top[600], dl[700], path[1024], names[2048];
	size_t len = 200 * KiB;
	unsigned char *data = gen_bytes(0x8100, len), *data2 = gen_bytes(0x8101, len);
	int n;

	/* Downloads go to top/a/b: "../../x" unsanitized would be top/x. */
	make_temp_dir(top, sizeof(top));
	snprintf(dl, sizeof(dl), "%s/a", top);
	assert_int_equal(mkdir(dl, 0700), 0);
	snprintf(dl, sizeof(dl), "%s/a/b", top);
	assert_int_equal(mkdir(dl, 0700), 0);
	rcv->dir = dl;
	peer_read_all(rcv);
	make_room(snd, room);
	MUST(vroom_subscribe(rcv->v, room, &E));

	/* A hostile name lands inside the directory, sanitized. */
	MUST(vroom_send_bytes(snd->v, room, &(struct vroom_stream_opts){.name = "../../x"}, data,
			      len, NULL, NULL, NULL, &E));
	wait_streams(base, NULL, PEERS(rcv), 1, WAIT_MS);
	struct rs *s = &rcv->s[0];
	if (!s->ok)
		fail_msg("save of ../../x: %s: %s", s->status, s->reason);
	char safe[256];
	vroom_sanitize_name("../../x", "fallback", safe, sizeof(safe));
	assert_null(strchr(safe, '/'));
	assert_true(safe[0] != '.');
	snprintf(path, sizeof(path), "%s/%s", dl, safe);
	assert_string_equal(s->path, path);
	assert_true(file_is(path, data, len));
	snprintf(path, sizeof(path), "%s/x", top);
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/a/x", top);
	assert_int_equal(access(path, F_OK), -1);
	list_dir(dl, names, sizeof(names), &n);
	if (n != 1)
		fail_msg("%s holds %d entries: %s", dl, n, names);
	list_dir(top, names, sizeof(names), &n);
	assert_int_equal(n, 1); /* a */

	/* An existing file is kept; the stream gets another name. */
	snprintf(path, sizeof(path), "%s/report.txt", dl);
	write_file(path, "original", 8);
	MUST(vroom_send_bytes(snd->v, room, &(struct vroom_stream_opts){.name = "report.txt"},
			      data, len, NULL, NULL, NULL, &E));
	wait_streams(base, NULL, PEERS(rcv), 2, WAIT_MS);
	s = &rcv->s[1];
	assert_true(s->ok);
	assert_true(file_is(path, "original", 8));
	assert_string_not_equal(s->path, path);
	assert_true(strncmp(s->path, path, strlen(path)) == 0); /* report.txt + a suffix */
	assert_true(file_is(s->path, data, len));
	/* Unless asked to overwrite. */
	rcv->overwrite = 1;
	MUST(vroom_send_bytes(snd->v, room, &(struct vroom_stream_opts){.name = "report.txt"},
			      data2, len, NULL, NULL, NULL, &E));
	wait_streams(base, NULL, PEERS(rcv), 3, WAIT_MS);
	s = &rcv->s[2];
	assert_true(s->ok);
	assert_string_equal(s->path, path);
	assert_true(file_is(path, data2, len));
	rcv->overwrite = 0;

	/* An aborted stream leaves nothing behind. */
	list_dir(dl, names, sizeof(names), &n);
	assert_int_equal(n, 3);
	struct tx *t = tx_start(snd->v, room,
				&(struct vroom_stream_opts){.name = "partial.bin", .size = 4 * MiB},
				4 * MiB, 0x8102, MiB, 0);
	struct nth_got g = {rcv, 3, MiB};
	if (loop_until(base, nth_got_met, &g, WAIT_MS) < 0)
		fail_msg("the receiver did not get 1 MiB of partial.bin within %d ms", WAIT_MS);
	assert_int_equal(rcv->nopen, 4);
	assert_int_equal(rcv->s[3].got, MiB);
	list_dir(dl, names, sizeof(names), &n);
	assert_int_equal(n, 4); /* the partial file, hidden */
	MUST(vroom_writer_abort(t->w, "changed my mind", &E));
	wait_streams(base, NULL, PEERS(rcv), 4, WAIT_MS);
	assert_string_equal(rcv->s[3].status, "aborted");
	assert_string_equal(rcv->s[3].path, "");
	list_dir(dl, names, sizeof(names), &n);
	if (n != 3)
		fail_msg("after the aborted stream %s holds %d entries: %s", dl, n, names);
	snprintf(path, sizeof(path), "%s/partial.bin", dl);
	assert_int_equal(access(path, F_OK), -1);
	assert_connected(rcv);

	MUST(vroom_remove(snd->v, room, &E));
	tx_free(t);
	free(data);
	free(data2);
	peer_free(snd);
	peer_free(rcv);
	event_base_free(base);
	rm_tree(top);
}

/* ---- 9. a push beside a 500 MiB stream ---- */

#define LAT_STREAM (500ull * MiB)
#define LAT_PUSHES 20
#define LAT_MAX_MS 50.0

static void test_push_latency(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "lat-sender", RX_READ);
	struct peer *pusher = peer_new(base, addr, "lat-pusher", RX_READ);
	struct peer *rcv = peer_new(base, addr, "lat-rx", RX_COUNT);
	char room[VROOM_ROOM_ID_MAX + 1];

	peer_read_all(rcv);
	make_room(snd, room);
	MUST(vroom_grant(snd->v, room, "lat-pusher", &E));
	MUST(vroom_subscribe(rcv->v, room, &E));
	/* The receiver's chunk callback has the pusher push at every 1/21 of
	 * the stream: 20 pushes while it is in flight. */
	rcv->pusher = pusher->v;
	rcv->push_room = room;
	rcv->push_step = LAT_STREAM / (LAT_PUSHES + 1);
	rcv->push_next = rcv->push_step;
	rcv->push_max = LAT_PUSHES;
	struct vroom_stream_opts o = {.name = "big.bin", .size = (int64_t)LAT_STREAM};
	long long t0 = spawn_now_ms();
	struct tx *t = tx_start(snd->v, room, &o, LAT_STREAM, 0x9000, UINT64_MAX, 1);
	wait_streams(base, TXS(t), PEERS(rcv), 1, BIG_WAIT_MS);
	long long ms = spawn_now_ms() - t0;
	loop_for(base, 100);

	assert_tx_ok(t);
	assert_connected(rcv);
	assert_connected(pusher);
	assert_true(rcv->s[0].ok && rcv->s[0].checksum);
	assert_int_equal(rcv->s[0].got, LAT_STREAM);
	if (rcv->push_failed)
		fail_msg("push: %s", rcv->push_err.message);
	assert_int_equal(rcv->push_bad, 0);
	assert_int_equal(rcv->nsent, LAT_PUSHES);
	assert_int_equal(rcv->npush, LAT_PUSHES);
	/* With each latency, the stream bytes that reached the receiver between
	 * the push's sending and its arrival: what was queued ahead of it. */
	double max = 0, sum = 0;
	uint64_t ahead_max = 0;
	char all[LAT_PUSHES * 24 + 1];
	size_t len = 0;
	for (int i = 0; i < LAT_PUSHES; i++) {
		max = rcv->lat_ms[i] > max ? rcv->lat_ms[i] : max;
		sum += rcv->lat_ms[i];
		ahead_max = rcv->push_got[i] > ahead_max ? rcv->push_got[i] : ahead_max;
		len += (size_t)snprintf(all + len, sizeof(all) - len, " %.1f(%.1fM)", rcv->lat_ms[i],
					(double)rcv->push_got[i] / MiB);
	}
	print_message("    push latency beside a 500 MiB stream (%lld ms, %.1f MB/s): max %.2f "
		      "ms, mean %.2f ms, most stream bytes ahead of a push %.2f MiB\n"
		      "    each: ms (MiB ahead):%s\n",
		      ms, (double)LAT_STREAM / 1e6 / ((double)ms / 1000), max, sum / LAT_PUSHES,
		      (double)ahead_max / MiB, all);
	for (int i = 0; i < LAT_PUSHES; i++) {
		if (!rcv->push_in_flight[i])
			fail_msg("push %d arrived after the stream ended", i);
		if (rcv->lat_ms[i] >= LAT_MAX_MS)
			fail_msg("push %d took %.2f ms (limit %.0f ms); all:%s", i, rcv->lat_ms[i],
				 LAT_MAX_MS, all);
	}
	MUST(vroom_remove(snd->v, room, &E));
	tx_free(t);
	peer_free(snd);
	peer_free(pusher);
	peer_free(rcv);
	event_base_free(base);
}

/* ---- 10. send_bytes and send_file ---- */

struct sprog {
	uint64_t last;
	int64_t total;
	unsigned n;
	int bad;
};

static void on_send_progress(void *arg, uint64_t acked, int64_t total)
{
	struct sprog *p = arg;
	if (acked < p->last)
		p->bad = 1;
	p->last = acked;
	p->total = total;
	p->n++;
}

/* A 1x1 PNG. */
static const unsigned char png[] = {
	0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48,
	0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00,
	0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78,
	0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99,
	0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
};

static void test_send_bytes_and_file(void **state)
{
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct peer *snd = peer_new(base, addr, "send-sender", RX_READ);
	struct peer *rcv = peer_new(base, addr, "send-rx", RX_COLLECT);
	char room[VROOM_ROOM_ID_MAX + 1], id[4][VROOM_ROOM_ID_MAX + 1];
	char dir[600], path[4][800], mime[128];
	size_t len = 2 * MiB + 3;
	unsigned char *data = gen_bytes(0xa000, len);
	struct sprog prog = {0};

	peer_read_all(rcv);
	make_room(snd, room);
	MUST(vroom_subscribe(rcv->v, room, &E));

	/* send_bytes: the size is filled in, the MIME type defaults. */
	struct vroom_attr attrs[] = {{"kind", "blob"}};
	struct vroom_stream_opts o = {.topic = "files", .name = "notes.bin", .size = -1,
				      .attrs = attrs, .nattrs = 1};
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	uint64_t wall = (uint64_t)rt.tv_sec * 1000;
	MUST(vroom_send_bytes(snd->v, room, &o, data, len, on_send_progress, &prog, id[0], &E));
	assert_false(prog.bad);
	assert_int_equal(prog.last, len);
	assert_int_equal(prog.total, (int64_t)len);

	/* send_file: name, size and type from the file. */
	make_temp_dir(dir, sizeof(dir));
	snprintf(path[1], sizeof(path[1]), "%s/pic.png", dir);
	write_file(path[1], png, sizeof(png));
	snprintf(path[2], sizeof(path[2]), "%s/snapshot", dir); /* no extension: libmagic */
	write_file(path[2], png, sizeof(png));
	snprintf(path[3], sizeof(path[3]), "%s/big.dat", dir);
	write_file(path[3], data, len);
	vroom_guess_mime(path[2], mime, sizeof(mime));
	assert_string_equal(mime, "image/png");
	for (int i = 1; i < 4; i++)
		MUST(vroom_send_file(snd->v, room, path[i], NULL, NULL, NULL, id[i], &E));
	/* A name and type given win over the file's. */
	struct vroom_stream_opts named = {.name = "renamed.png", .mime = "image/x-test"};
	char id5[VROOM_ROOM_ID_MAX + 1];
	MUST(vroom_send_file(snd->v, room, path[1], &named, NULL, NULL, id5, &E));
	/* A file that is not there is an argument error, nothing is sent. */
	snprintf(path[0], sizeof(path[0]), "%s/missing.png", dir);
	assert_int_equal(vroom_send_file(snd->v, room, path[0], NULL, NULL, NULL, NULL, &E), -1);
	assert_int_equal(E.code, VROOM_E_ARG);
	wait_streams(base, NULL, PEERS(rcv), 5, WAIT_MS);
	loop_for(base, 100);

	assert_connected(rcv);
	assert_int_equal(rcv->nopen, 5);
	struct rs *s = &rcv->s[0];
	assert_string_equal(s->id, id[0]);
	assert_string_equal(s->name, "notes.bin");
	assert_string_equal(s->topic, "files");
	assert_string_equal(s->mime, "application/octet-stream");
	assert_string_equal(s->sender, "send-sender");
	assert_string_equal(s->attrs, "kind=blob;");
	assert_int_equal(s->size, (int64_t)len);
	assert_true(s->timestamp_ms + 60000 > wall && s->timestamp_ms < wall + 60000);
	assert_true(s->ok && s->checksum);
	assert_int_equal(s->len, len);
	assert_memory_equal(s->data, data, len);

	static const char *const want_name[] = {"", "pic.png", "snapshot", "big.dat"};
	static const char *const want_mime[] = {"", "image/png", "image/png",
						"application/octet-stream"};
	const size_t want_len[] = {0, sizeof(png), sizeof(png), len};
	for (int i = 1; i < 4; i++) {
		s = &rcv->s[i];
		assert_string_equal(s->id, id[i]);
		assert_string_equal(s->name, want_name[i]);
		assert_string_equal(s->mime, want_mime[i]);
		assert_string_equal(s->topic, "");
		assert_int_equal(s->size, (int64_t)want_len[i]);
		assert_true(s->ok && s->checksum);
		assert_int_equal(s->len, want_len[i]);
		assert_memory_equal(s->data, i < 3 ? png : data, want_len[i]);
	}
	s = &rcv->s[4];
	assert_string_equal(s->id, id5);
	assert_string_equal(s->name, "renamed.png");
	assert_string_equal(s->mime, "image/x-test");
	assert_int_equal(s->size, sizeof(png));
	assert_true(s->ok);

	MUST(vroom_remove(snd->v, room, &E));
	free(data);
	peer_free(snd);
	peer_free(rcv);
	event_base_free(base);
	rm_tree(dir);
}

/* Last: the shared node stops on SIGTERM with status 0 and a clean log. */
static void test_node_exits_cleanly(void **state)
{
	char why[512];
	struct spawn *n = node;
	node = NULL;
	if (spawn_stop(n, why, sizeof(why)) < 0)
		fail_msg("%s", why);
}

static int group_setup(void **state)
{
	char why[512];
	if (sodium_init() < 0) {
		fprintf(stderr, "test_streams: sodium_init failed\n");
		return -1;
	}
	node = spawn_start("streams", NULL, why, sizeof(why));
	if (!node) {
		fprintf(stderr, "test_streams: %s\n", why);
		return -1;
	}
	snprintf(addr, sizeof(addr), "%s", spawn_addr(node));
	return 0;
}

static int group_teardown(void **state)
{
	spawn_kill(node); /* only if a case failed before stopping it */
	node = NULL;
	return 0;
}

/* Each case's run time, for the report. */
static long long case_t0;

static int case_setup(void **state)
{
	case_t0 = spawn_now_ms();
	return 0;
}

static int case_teardown(void **state)
{
	print_message("    (%lld ms)\n", spawn_now_ms() - case_t0);
	return 0;
}

#define CASE(f) cmocka_unit_test_setup_teardown(f, case_setup, case_teardown)

int main(void)
{
	/* TEST_STREAMS_ONLY=test_save (a cmocka pattern) runs some cases. */
	const char *only = getenv("TEST_STREAMS_ONLY");
	if (only && *only)
		cmocka_set_test_filter(only);
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		CASE(test_gib_two_receivers),
		CASE(test_fifty_concurrent),
		CASE(test_destinations),
		CASE(test_topics),
		CASE(test_abort_reason),
		CASE(test_sender_killed),
		CASE(test_idle_timeout),
		CASE(test_size_mismatch),
		CASE(test_late_subscriber),
		CASE(test_progress),
		CASE(test_collect),
		CASE(test_save),
		CASE(test_push_latency),
		CASE(test_send_bytes_and_file),
		CASE(test_node_exits_cleanly),
	};
	return cmocka_run_group_tests_name("streams", tests, group_setup, group_teardown);
}

/*
 * fo_client: a libvroom publisher or subscriber with reconnection on, for
 * tests/integration/test_failover.py, which starts a cluster, runs this
 * program against it, kills the program's node and checks its verdict.
 *
 *   fo_client sub SERVERS ROOM COUNT TIMEOUT_S
 *     subscribes; passes when seqs 1..COUNT arrive, each once, in order,
 *     each with payload(seq); any gap event, duplicate, disorder or wrong
 *     payload fails.
 *   fo_client pub SERVERS ROOM COUNT TIMEOUT_S
 *     pushes payload(1..COUNT), at most 8 unanswered, one every 5 ms; passes
 *     when every push's callback ran once, in order, with seq == its index.
 *   fo_client spub SERVERS ROOM BYTES TIMEOUT_S
 *     sends one byte stream (id "fo-spub", size BYTES) through a
 *     vroom_writer, paced at about 1 MiB/s, then closes it; its bytes are
 *     spub_block(k) for each 64 KiB block k (sha256("blk k") repeated, as
 *     test_failover.py's Streamer). Passes when the close's done callback
 *     reports success with every byte acknowledged, progress never went
 *     backwards and no writer call failed. "progress N": bytes given to the
 *     writer, every 256 KiB; "closing" once the close is asked for.
 *
 *   fo_client ssub SERVERS ROOM BYTES TIMEOUT_S
 *     subscribes with a stream handler and reads the first stream of the
 *     room; passes when it ends ok with BYTES bytes, every byte i equal to
 *     ssub_byte(i) (each once, in order: a byte twice or a gap shifts the
 *     pattern), "progress N" each 256 KiB.
 *
 * stdout: "ready SERVER" once connected (and subscribed), "moved SERVER" on
 * each move, "progress N" every 50 pushes, and a last line "ok ..." or
 * "FAIL ...". Exit 0 on pass, 1 on failure, 2 on usage.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>
#include <sodium.h>

#include "client/vroom.h"

#define WINDOW 8

struct st {
	int pub;
	int loose;	  /* the relay dies too: pushes may be sequenced out of order (node-side) */
	uint8_t *seen;	  /* loose: push indexes delivered, or seqs acknowledged */
	uint64_t reordered; /* loose: pushes whose seq is not their index */
	const char *room;
	uint64_t count, next, got, acked, moves;
	int failed, done;
	char why[512];
	struct event *tick;
	struct vroom *v;
};

static size_t payload(uint64_t i, char *out, size_t cap)
{
	/* "fo:<i>:" then (i * 37) % 300 bytes that depend on i */
	int n = snprintf(out, cap, "fo:%06" PRIu64 ":", i);
	size_t len = (size_t)n + (size_t)((i * 37) % 300);
	for (size_t k = (size_t)n; k < len && k < cap; k++)
		out[k] = (char)('a' + (i * 7 + k) % 26);
	return len < cap ? len : cap;
}

static void fail(struct st *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct st *s, const char *fmt, ...)
{
	if (s->failed)
		return;
	va_list ap;
	va_start(ap, fmt);
	s->failed = 1;
	vsnprintf(s->why, sizeof(s->why), fmt, ap);
	va_end(ap);
	vroom_stop(s->v);
}

static void on_push(struct vroom *v, const struct vroom_push *p, void *arg)
{
	struct st *s = arg;
	char want[512];
	uint64_t i = p->seq;
	/* loose: the payload names its push; each push once */
	if (s->loose && (p->len < 10 || sscanf((const char *)p->data, "fo:%6" SCNu64, &i) != 1 ||
			 i == 0 || i > s->count || s->seen[i]))
		i = 0;
	size_t wl = i ? payload(i, want, sizeof(want)) : 0;
	if (p->seq != s->got + 1)
		fail(s, "seq %" PRIu64 " after %" PRIu64, p->seq, s->got);
	else if (!i || p->len != wl || memcmp(p->data, want, wl) != 0)
		fail(s, "seq %" PRIu64 ": wrong payload (%zu bytes)", p->seq, p->len);
	else if (s->loose) {
		s->seen[i] = 1;
		s->reordered += i != p->seq;
	}
	s->got = p->seq;
	if (s->got % 50 == 0) {
		printf("progress %" PRIu64 "\n", s->got);
		fflush(stdout);
	}
	if (s->got == s->count) {
		s->done = 1;
		vroom_stop(v);
	}
}

static void on_closed(struct vroom *v, const char *room, const char *reason, void *arg)
{
	struct st *s = arg;
	if (!s->failed) {
		s->failed = 1;
		snprintf(s->why, sizeof(s->why), "room closed: %s", reason);
	}
	vroom_stop(v);
}

static void on_event(struct vroom *v, const struct vroom_event *e, void *arg)
{
	struct st *s = arg;
	if (e->type == VROOM_EV_MOVED) {
		s->moves++;
		printf("moved %s\n", e->server);
		fflush(stdout);
	} else if (e->type == VROOM_EV_LOST) {
		printf("lost %s: %s\n", e->server, e->err->message);
		fflush(stdout);
	} else if (e->type == VROOM_EV_GAP) {
		fail(s, "gap: seqs %" PRIu64 "..%" PRIu64 " lost", e->from, e->to);
	}
}

struct ack {
	struct st *s;
	uint64_t i;
};

static void on_ack(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct ack *a = arg;
	struct st *s = a->s;
	uint64_t i = a->i;
	free(a);
	if (r->err) {
		fprintf(stderr, "fo_client: push %" PRIu64 ": %s\n", i, r->err->message);
		fail(s, "push %" PRIu64 " failed (%d: %s)", i, r->err->code, r->err->message);
		return;
	}
	if (s->loose) {
		/* every push once, each a seq of its own, in any order */
		if (r->seq == 0 || r->seq > s->count || s->seen[r->seq])
			fail(s, "push %" PRIu64 " got seq %" PRIu64 " (again, or out of range)", i,
			     r->seq);
		else
			s->seen[r->seq] = 1;
		s->reordered += r->seq != i;
		i = s->acked + 1;
	} else if (i != s->acked + 1)
		fail(s, "push %" PRIu64 " acknowledged after push %" PRIu64, i, s->acked);
	else if (r->seq != i)
		fail(s, "push %" PRIu64 " got seq %" PRIu64, i, r->seq);
	s->acked = i;
	if (s->acked % 50 == 0) {
		printf("progress %" PRIu64 "\n", s->acked);
		fflush(stdout);
	}
	if (s->acked == s->count) {
		s->done = 1;
		vroom_stop(v);
	}
}

/* One push per tick while at most WINDOW are unanswered. */
static void push_more(struct st *s)
{
	char buf[512];
	struct vroom_error e;
	if (s->failed || s->next > s->count || s->next - s->acked > WINDOW)
		return;
	struct ack *a = malloc(sizeof(*a));
	if (!a) {
		fail(s, "out of memory at push %" PRIu64, s->next);
		return;
	}
	*a = (struct ack){s, s->next};
	size_t len = payload(s->next, buf, sizeof(buf));
	if (vroom_push_async(s->v, s->room, 7, buf, len, on_ack, a, &e) < 0) {
		free(a);
		fprintf(stderr, "fo_client: %s\n", e.message);
		fail(s, "push %" PRIu64 " refused by the library: %s", s->next, e.message);
		return;
	}
	s->next++;
}

/* ---- ssub: one byte stream received across moves ---- */

/* Byte i of the stream test_failover.py sends (PatternStreamer). */
static uint8_t ssub_byte(uint64_t i)
{
	return (uint8_t)(i * 131 + (i >> 16));
}

struct ssub {
	struct st *s;
	uint64_t want, got, next_progress;
	int reading;
};

static void ssub_chunk(struct vroom_reader *r, const void *data, size_t len, void *arg)
{
	struct ssub *x = arg;
	const uint8_t *p = data;
	for (size_t k = 0; k < len && !x->s->failed; k++)
		if (p[k] != ssub_byte(x->got + k))
			fail(x->s,
			     "stream byte %" PRIu64 " is %u, expected %u (a byte twice or a gap)",
			     x->got + k, p[k], ssub_byte(x->got + k));
	x->got += len;
	if (x->got > x->want)
		fail(x->s, "stream: %" PRIu64 " bytes, more than %" PRIu64, x->got, x->want);
	while (x->got >= x->next_progress) {
		printf("progress %" PRIu64 "\n", x->next_progress);
		fflush(stdout);
		x->next_progress += 256u << 10;
	}
}

static void ssub_progress(struct vroom_reader *r, uint64_t received, int64_t total, void *arg)
{
	struct ssub *x = arg;
	/* the library's count is the offset delivered: it must be ours */
	if (received != x->got)
		fail(x->s, "stream: the library says %" PRIu64 " bytes, %" PRIu64 " arrived",
		     received, x->got);
}

static void ssub_end(struct vroom_reader *r, const struct vroom_stream_end *e, void *arg)
{
	struct ssub *x = arg;
	if (!e->ok)
		fail(x->s, "stream ended %s (%s) after %" PRIu64 " bytes", e->status, e->reason,
		     e->bytes);
	else if (x->got != x->want || e->bytes != x->want)
		fail(x->s, "stream ended ok after %" PRIu64 " bytes (library %" PRIu64
			   "), expected %" PRIu64,
		     x->got, e->bytes, x->want);
	else
		x->s->done = 1;
	x->s->got = x->got;
	vroom_stop(x->s->v);
}

static void ssub_on_stream(struct vroom *v, struct vroom_reader *r, void *arg)
{
	struct ssub *x = arg;
	if (x->reading) {
		fail(x->s, "a second stream opened: %s", vroom_reader_info(r)->id);
		return;
	}
	x->reading = 1;
	struct vroom_reader_cbs cbs = {
	    .chunk = ssub_chunk, .progress = ssub_progress, .end = ssub_end};
	vroom_reader_set(r, &cbs, x);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	push_more(arg);
}

/* ---------------------------------------------------------------- spub */

#define SPUB_BLOCK 65536
#define SPUB_RATE  (1u << 20) /* bytes per second: the failure lands mid-stream */

struct spub {
	struct st *s;
	struct vroom_writer *w;
	uint8_t *data;
	uint64_t total, given, acked, next_report;
	struct timeval t0;
	int closed;
	struct event *tick;
};

/* Block k: sha256("blk k") repeated (test_failover.py's Streamer.block). */
static void spub_block(uint64_t k, uint8_t *out)
{
	char name[32];
	uint8_t h[crypto_hash_sha256_BYTES];
	int n = snprintf(name, sizeof(name), "blk %" PRIu64, k);
	crypto_hash_sha256(h, (const unsigned char *)name, (unsigned long long)n);
	for (size_t i = 0; i < SPUB_BLOCK; i += sizeof(h))
		memcpy(out + i, h, sizeof(h));
}

static void spub_progress(void *arg, uint64_t acked, int64_t total)
{
	struct spub *p = arg;
	(void)total;
	if (acked < p->acked)
		fail(p->s, "progress went back from %" PRIu64 " to %" PRIu64, p->acked, acked);
	p->acked = acked;
}

static void spub_done(struct vroom_writer *w, const struct vroom_error *e, void *arg)
{
	struct spub *p = arg;
	if (e) {
		fail(p->s, "stream: %d: %s", e->code, e->message);
		return;
	}
	if (vroom_writer_acked(w) != p->total || p->given != p->total)
		fail(p->s,
		     "stream closed with %" PRIu64 " acknowledged, %" PRIu64 " given, of %" PRIu64,
		     vroom_writer_acked(w), p->given, p->total);
	p->s->done = 1;
	vroom_stop(p->s->v);
}

/* Gives the writer what the pace allows and its window takes. */
static void spub_more(struct spub *p)
{
	struct vroom_error e;
	struct timeval now;
	if (p->s->failed || p->closed)
		return;
	gettimeofday(&now, NULL);
	double secs = (double)(now.tv_sec - p->t0.tv_sec) + (now.tv_usec - p->t0.tv_usec) / 1e6;
	/* in steps of 10000 bytes: chunks of a few steps, not block-aligned */
	uint64_t allowed = ((uint64_t)(secs * SPUB_RATE) + SPUB_BLOCK) / 10000 * 10000;
	if (allowed > p->total)
		allowed = p->total;
	while (p->given < allowed) {
		long n =
		    vroom_writer_offer(p->w, p->data + p->given, (size_t)(allowed - p->given), &e);
		if (n < 0) {
			fail(p->s, "offer at %" PRIu64 ": %d: %s", p->given, e.code, e.message);
			return;
		}
		if (n == 0)
			break; /* no window now (or the writer is moving): writable or the tick */
		p->given += (uint64_t)n;
	}
	while (p->given >= p->next_report && p->next_report <= p->total) {
		printf("progress %" PRIu64 "\n", p->given);
		fflush(stdout);
		p->next_report += 256 * 1024;
	}
	if (p->given == p->total) {
		p->closed = 1;
		if (vroom_writer_close_async(p->w, NULL, 0, &e) < 0)
			fail(p->s, "close: %d: %s", e.code, e.message);
		printf("closing\n");
		fflush(stdout);
	}
}

static void spub_writable(struct vroom_writer *w, void *arg)
{
	(void)w;
	spub_more(arg);
}

static void spub_on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	spub_more(arg);
}

/* Opens the stream and starts the tick; 0, or -1 (the reason is printed). */
static int spub_start(struct spub *p, struct st *s)
{
	struct vroom_error e;
	p->s = s;
	p->total = s->count;
	if (!(p->data = malloc(p->total + SPUB_BLOCK))) {
		printf("FAIL out of memory\n");
		return -1;
	}
	for (uint64_t k = 0; k * SPUB_BLOCK < p->total; k++)
		spub_block(k, p->data + k * SPUB_BLOCK);
	struct vroom_stream_opts o = {
	    .size = (int64_t)p->total, .id = "fo-spub", .name = "fo-spub.bin"};
	if (!(p->w = vroom_stream_open(s->v, s->room, &o, &e))) {
		printf("FAIL stream open: %s\n", e.message);
		return -1;
	}
	vroom_writer_set_cbs(p->w, spub_writable, spub_progress, spub_done, p);
	gettimeofday(&p->t0, NULL);
	p->tick = event_new(vroom_base(s->v), -1, EV_PERSIST, spub_on_tick, p);
	struct timeval tv = {0, 10000};
	event_add(p->tick, &tv);
	return 0;
}

static void spub_stop(struct spub *p)
{
	if (p->tick)
		event_free(p->tick);
	if (p->w)
		vroom_writer_free(p->w);
	free(p->data);
}

int main(int argc, char **argv)
{
	int spub_mode = argc > 1 && strcmp(argv[1], "spub") == 0;
	int ssub_mode = argc > 1 && strcmp(argv[1], "ssub") == 0;
	if (argc < 6 || argc > 7 ||
	    (strcmp(argv[1], "sub") != 0 && strcmp(argv[1], "pub") != 0 && !spub_mode &&
	     !ssub_mode)) {
		fprintf(stderr,
			"usage: fo_client sub|pub|spub|ssub SERVERS ROOM COUNT TIMEOUT_S [loose]\n");
		return 2;
	}
	struct ssub sx = {.want = ssub_mode ? strtoull(argv[4], NULL, 10) : 0};
	struct st s = {.pub = strcmp(argv[1], "pub") == 0 || spub_mode,
		       .room = argv[3],
		       .count = strtoull(argv[4], NULL, 10),
		       .next = 1};
	int timeout_ms = atoi(argv[5]) * 1000;
	s.loose = argc == 7 && strcmp(argv[6], "loose") == 0;
	if (ssub_mode)
		s.count = 1; /* BYTES is sx.want */
	if (spub_mode ? s.count == 0 || s.count > (1u << 30)
		      : s.count == 0 || s.count > 1000000 || !(s.seen = calloc(s.count + 1, 1))) {
		fprintf(stderr, "fo_client: COUNT must be 1-1000000 (spub: bytes, at most 1 GiB)\n");
		return 2;
	}
	struct spub sp = {0};
	struct vroom_handlers h = {.push = on_push, .room_closed = on_closed};
	struct vroom_reconnect rc = {
	    .enabled = 1, .backoff_min_ms = 50, .event = on_event, .event_arg = &s};
	struct vroom_error e;
	struct vroom *v =
	    vroom_open_reconnect(argv[2], s.pub ? "pub" : "sub", NULL, &rc, &h, &s, &e);
	if (!v) {
		printf("FAIL connect: %s\n", e.message);
		return 1;
	}
	s.v = v;
	sx.s = &s;
	if (ssub_mode && vroom_set_stream_handler(v, NULL, ssub_on_stream, &sx, &e) < 0) {
		printf("FAIL stream handler: %s\n", e.message);
		vroom_close(v);
		return 1;
	}
	if (!s.pub && vroom_subscribe(v, s.room, &e) < 0) {
		printf("FAIL subscribe: %s\n", e.message);
		vroom_close(v);
		return 1;
	}
	printf("ready %s\n", vroom_server(v));
	fflush(stdout);
	if (spub_mode) {
		if (spub_start(&sp, &s) < 0) {
			spub_stop(&sp);
			vroom_close(v);
			return 1;
		}
	} else if (s.pub) {
		s.tick = event_new(vroom_base(v), -1, EV_PERSIST, on_tick, &s);
		struct timeval tv = {0, 5000};
		event_add(s.tick, &tv);
	}
	int rc_run = vroom_run(v, timeout_ms, &e);
	if (s.tick)
		event_free(s.tick);
	if (!s.done && !s.failed) {
		s.failed = 1;
		if (rc_run < 0)
			snprintf(s.why, sizeof(s.why), "connection: %s", e.message);
		else if (ssub_mode)
			snprintf(s.why, sizeof(s.why),
				 "timeout: stream bytes %" PRIu64 " of %" PRIu64, sx.got, sx.want);
		else
			snprintf(s.why, sizeof(s.why), "timeout: %s %" PRIu64 " of %" PRIu64,
				 spub_mode ? "stream bytes acked" : s.pub ? "acked" : "got",
				 spub_mode ? sp.acked : s.pub ? s.acked : s.got, s.count);
	}
	if (s.failed)
		printf("FAIL %s\n", s.why);
	else if (ssub_mode)
		printf("ok stream %" PRIu64 " bytes moves %" PRIu64 " reordered 0\n", sx.got,
		       s.moves);
	else if (spub_mode)
		printf("ok sent %" PRIu64 " moves %" PRIu64 "\n", sp.acked, s.moves);
	else
		printf("ok %s %" PRIu64 " moves %" PRIu64 " reordered %" PRIu64 "\n",
		       s.pub ? "acked" : "got", s.pub ? s.acked : s.got, s.moves, s.reordered);
	spub_stop(&sp);
	vroom_close(v);
	free(s.seen);
	return s.failed ? 1 : 0;
}

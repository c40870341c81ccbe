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

#include <event2/event.h>

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

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	push_more(arg);
}

int main(int argc, char **argv)
{
	if (argc < 6 || argc > 7 || (strcmp(argv[1], "sub") != 0 && strcmp(argv[1], "pub") != 0)) {
		fprintf(stderr, "usage: fo_client sub|pub SERVERS ROOM COUNT TIMEOUT_S [loose]\n");
		return 2;
	}
	struct st s = {.pub = strcmp(argv[1], "pub") == 0,
		       .room = argv[3],
		       .count = strtoull(argv[4], NULL, 10),
		       .next = 1};
	int timeout_ms = atoi(argv[5]) * 1000;
	s.loose = argc == 7 && strcmp(argv[6], "loose") == 0;
	if (s.count == 0 || s.count > 1000000 || !(s.seen = calloc(s.count + 1, 1))) {
		fprintf(stderr, "fo_client: COUNT must be 1-1000000\n");
		return 2;
	}
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
	if (!s.pub && vroom_subscribe(v, s.room, &e) < 0) {
		printf("FAIL subscribe: %s\n", e.message);
		vroom_close(v);
		return 1;
	}
	printf("ready %s\n", vroom_server(v));
	fflush(stdout);
	if (s.pub) {
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
		else
			snprintf(s.why, sizeof(s.why), "timeout: %s %" PRIu64 " of %" PRIu64,
				 s.pub ? "acked" : "got", s.pub ? s.acked : s.got, s.count);
	}
	if (s.failed)
		printf("FAIL %s\n", s.why);
	else
		printf("ok %s %" PRIu64 " moves %" PRIu64 " reordered %" PRIu64 "\n",
		       s.pub ? "acked" : "got", s.pub ? s.acked : s.got, s.moves, s.reordered);
	vroom_close(v);
	free(s.seen);
	return s.failed ? 1 : 0;
}

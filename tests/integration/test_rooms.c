/*
 * Integration tests of libvroom against a real vroomd: every room operation
 * and its errors, fan-out 1:1, 1:100 and n:n, ordering, room-closed events
 * (remove and idle expiry), what a disconnect takes with it, payload edges,
 * and what a handler may do with its own client (free it; make a blocking
 * call). One node serves all cases but the expiry one, which starts its own
 * with --room-idle-timeout 1; the last case stops the node and checks that
 * it exited cleanly. Every wait is bounded by time.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "client/vroom.h"
#include "spawn.h"

#define WAIT_MS 10000 /* the most any one wait may take */

static struct spawn *node;
static char addr[64];
static struct vroom_error E; /* the error of the last MUST() call */

/* Fails the case with the library's reason if call (which takes &E) fails. */
#define MUST(call)                                                                                 \
	do {                                                                                       \
		if ((call) < 0)                                                                    \
			fail_msg("%s: %s: %s", #call, vroom_code_name(E.code), E.message);         \
	} while (0)

/* ---- a blocking client that keeps what the node sends it ---- */

struct msg {
	char room[VROOM_ROOM_ID_MAX + 1];
	uint64_t seq;
	char sender[VROOM_IDENTITY_MAX + 1];
	uint8_t dtype;
	unsigned char *data;
	size_t len;
};

struct client {
	struct vroom *v;
	struct msg *m; /* deliveries, in arrival order */
	size_t n, cap;
	size_t nclosed;
	char closed_room[VROOM_ROOM_ID_MAX + 1];
	char closed_reason[64];
	size_t ndisconnected;
	struct vroom_error disconnect; /* why, the last time */
};

static void on_push(struct vroom *v, const struct vroom_push *p, void *arg)
{
	struct client *c = arg;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		struct msg *m = realloc(c->m, cap * sizeof(*m));
		if (!m)
			abort();
		c->m = m;
		c->cap = cap;
	}
	struct msg *m = &c->m[c->n++];
	snprintf(m->room, sizeof(m->room), "%s", p->room);
	snprintf(m->sender, sizeof(m->sender), "%s", p->sender);
	m->seq = p->seq;
	m->dtype = p->dtype;
	m->len = p->len;
	m->data = malloc(p->len ? p->len : 1);
	if (!m->data)
		abort();
	if (p->len)
		memcpy(m->data, p->data, p->len);
}

static void on_closed(struct vroom *v, const char *room, const char *reason, void *arg)
{
	struct client *c = arg;
	c->nclosed++;
	snprintf(c->closed_room, sizeof(c->closed_room), "%s", room);
	snprintf(c->closed_reason, sizeof(c->closed_reason), "%s", reason);
}

static void on_disconnected(struct vroom *v, const struct vroom_error *e, void *arg)
{
	struct client *c = arg;
	c->ndisconnected++;
	c->disconnect = *e;
}

static const struct vroom_handlers handlers = {on_push, on_closed, on_disconnected};

static struct client *client_open_at(const char *server, const char *identity)
{
	struct client *c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->v = vroom_open(server, identity, &handlers, c, &E);
	if (!c->v)
		fail_msg("vroom_open(%s, %s): %s: %s", server, identity, vroom_code_name(E.code),
			 E.message);
	return c;
}

static struct client *client_open(const char *identity)
{
	return client_open_at(addr, identity);
}

static void client_close(struct client *c)
{
	if (!c)
		return;
	vroom_close(c->v);
	for (size_t i = 0; i < c->n; i++)
		free(c->m[i].data);
	free(c->m);
	free(c);
}

/* Runs c's loop until *count reaches want; -1 if WAIT_MS pass first or the
 * connection is lost. */
static int pump_until(struct client *c, const size_t *count, size_t want, int ms)
{
	long long deadline = spawn_now_ms() + ms;
	while (*count < want) {
		long long left = deadline - spawn_now_ms();
		if (left <= 0)
			return -1;
		struct vroom_error e;
		if (vroom_run(c->v, left > 50 ? 50 : (int)left, &e) < 0)
			return -1;
	}
	return 0;
}

static void wait_msgs(struct client *c, size_t want)
{
	if (pump_until(c, &c->n, want, WAIT_MS) < 0)
		fail_msg("waited %d ms for %zu deliveries, got %zu", WAIT_MS, want, c->n);
}

static void assert_error(const struct vroom_error *e, int code)
{
	if (e->code != code)
		fail_msg("expected error %s (%d), got %s (%d): %s", vroom_code_name(code), code,
			 vroom_code_name(e->code), e->code, e->message);
	assert_true(e->message[0] != '\0');
}

static void assert_valid_id(const char *id)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	assert_int_equal(strlen(id), 16);
	assert_int_equal(strspn(id, alphabet), 16);
}

static void create_room(struct client *c, char id[VROOM_ROOM_ID_MAX + 1])
{
	MUST(vroom_create(c->v, id, &E));
	assert_valid_id(id);
}

static void assert_msg(const struct msg *m, const char *room, uint64_t seq, const char *sender,
		       uint8_t dtype, const void *data, size_t len)
{
	assert_string_equal(m->room, room);
	assert_int_equal(m->seq, seq);
	assert_string_equal(m->sender, sender);
	assert_int_equal(m->dtype, dtype);
	assert_int_equal(m->len, len);
	if (len)
		assert_memory_equal(m->data, data, len);
}

/* The i-th payload of the fan-out cases: 1-300 bytes, a function of i. */
static size_t make_payload(unsigned i, unsigned char *buf)
{
	size_t len = 1 + (i * 37u) % 300;
	for (size_t k = 0; k < len; k++)
		buf[k] = (unsigned char)(i * 131u + k * 7u + (k >> 3));
	return len;
}

/* ---- an event base shared by many async clients ---- */

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

/* ---- cases ---- */

static void test_create_info_remove(void **state)
{
	struct client *a = client_open("cir-owner"), *b = client_open("cir-other");
	char id[VROOM_ROOM_ID_MAX + 1], id2[VROOM_ROOM_ID_MAX + 1];
	struct vroom_room_info info;

	create_room(a, id);
	create_room(a, id2);
	assert_string_not_equal(id, id2);

	MUST(vroom_info(a->v, id, &info, &E));
	assert_string_equal(info.id, id);
	assert_string_equal(info.owner, "cir-owner");
	assert_int_equal(info.subscribers, 0);
	assert_int_equal(info.seq, 0);
	assert_int_equal(info.pushes, 0);
	assert_int_equal(info.bytes, 0);
	assert_true(info.created_ms > 1600000000000ull);
	assert_true(info.last_active_ms >= info.created_ms);
	assert_true(info.has_grants);
	assert_int_equal(info.ngrants, 0);
	vroom_info_release(&info);

	/* Anyone may ask; grants are the owner's business. */
	MUST(vroom_info(b->v, id, &info, &E));
	assert_string_equal(info.owner, "cir-owner");
	assert_false(info.has_grants);
	vroom_info_release(&info);

	MUST(vroom_remove(a->v, id, &E));
	assert_int_equal(vroom_info(a->v, id, &info, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	assert_int_equal(vroom_remove(a->v, id, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	/* The other room is untouched. */
	MUST(vroom_info(a->v, id2, &info, &E));
	vroom_info_release(&info);
	MUST(vroom_remove(a->v, id2, &E));
	assert_true(vroom_connected(a->v));
	client_close(a);
	client_close(b);
}

static void test_grant_revoke_forbidden(void **state)
{
	struct client *a = client_open("gr-owner"), *b = client_open("gr-pusher");
	struct client *s = client_open("gr-sub");
	char id[VROOM_ROOM_ID_MAX + 1];
	struct vroom_room_info info;
	uint64_t seq = 0;

	create_room(a, id);
	MUST(vroom_subscribe(s->v, id, &E));
	assert_int_equal(vroom_push(b->v, id, 1, "no", 2, &seq, &E), -1);
	assert_error(&E, VROOM_E_FORBIDDEN);
	assert_string_equal(vroom_code_name(E.code), "forbidden");

	MUST(vroom_grant(a->v, id, "gr-pusher", &E));
	MUST(vroom_grant(a->v, id, "gr-pusher", &E)); /* again: still one grant */
	MUST(vroom_info(a->v, id, &info, &E));
	assert_true(info.has_grants);
	assert_int_equal(info.ngrants, 1);
	assert_string_equal(info.grants[0], "gr-pusher");
	vroom_info_release(&info);

	MUST(vroom_push(b->v, id, 1, "yes", 3, &seq, &E));
	assert_int_equal(seq, 1);

	MUST(vroom_revoke(a->v, id, "gr-pusher", &E));
	assert_int_equal(vroom_push(b->v, id, 1, "no", 2, NULL, &E), -1);
	assert_error(&E, VROOM_E_FORBIDDEN);
	MUST(vroom_info(a->v, id, &info, &E));
	assert_int_equal(info.ngrants, 0);
	assert_int_equal(info.seq, 1); /* refused pushes take no seq */
	assert_int_equal(info.pushes, 1);
	vroom_info_release(&info);

	/* The subscriber saw the one allowed push and nothing else: a marker
	 * from the owner, pushed last, arrives next. */
	MUST(vroom_push(a->v, id, 2, "end", 3, &seq, &E));
	assert_int_equal(seq, 2);
	wait_msgs(s, 2);
	assert_msg(&s->m[0], id, 1, "gr-pusher", 1, "yes", 3);
	assert_msg(&s->m[1], id, 2, "gr-owner", 2, "end", 3);
	assert_true(vroom_connected(b->v)); /* forbidden is not fatal */
	client_close(a);
	client_close(b);
	client_close(s);
}

static void test_not_owner(void **state)
{
	struct client *a = client_open("no-owner"), *b = client_open("no-other");
	char id[VROOM_ROOM_ID_MAX + 1];
	struct vroom_room_info info;

	create_room(a, id);
	MUST(vroom_grant(a->v, id, "no-friend", &E));
	assert_int_equal(vroom_remove(b->v, id, &E), -1);
	assert_error(&E, VROOM_E_NOT_OWNER);
	assert_string_equal(vroom_code_name(E.code), "not_owner");
	assert_int_equal(vroom_grant(b->v, id, "no-other", &E), -1);
	assert_error(&E, VROOM_E_NOT_OWNER);
	assert_int_equal(vroom_revoke(b->v, id, "no-friend", &E), -1);
	assert_error(&E, VROOM_E_NOT_OWNER);
	/* Nothing changed, and a granted identity is still not the owner. */
	MUST(vroom_info(a->v, id, &info, &E));
	assert_int_equal(info.ngrants, 1);
	assert_string_equal(info.grants[0], "no-friend");
	vroom_info_release(&info);
	struct client *f = client_open("no-friend");
	assert_int_equal(vroom_remove(f->v, id, &E), -1);
	assert_error(&E, VROOM_E_NOT_OWNER);
	assert_true(vroom_connected(b->v));
	MUST(vroom_remove(a->v, id, &E));
	client_close(a);
	client_close(b);
	client_close(f);
}

static void test_unknown_room(void **state)
{
	struct client *a = client_open("ur-client");
	const char *id = "AAAAAAAAAAAAAAAA";
	struct vroom_room_info info;

	assert_int_equal(vroom_info(a->v, id, &info, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	assert_string_equal(vroom_code_name(E.code), "unknown_room");
	assert_int_equal(vroom_remove(a->v, id, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	assert_int_equal(vroom_grant(a->v, id, "x", &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	assert_int_equal(vroom_revoke(a->v, id, "x", &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	assert_int_equal(vroom_subscribe(a->v, id, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	assert_int_equal(vroom_unsubscribe(a->v, id, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	assert_int_equal(vroom_push(a->v, id, 0, "x", 1, NULL, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	assert_int_equal(vroom_info(a->v, "short", &info, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	/* Too long for any room: the library refuses it itself. */
	char longid[VROOM_ROOM_ID_MAX + 2];
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	assert_int_equal(vroom_info(a->v, longid, &info, &E), -1);
	assert_error(&E, VROOM_E_ARG);
	/* The connection is still good. */
	char room[VROOM_ROOM_ID_MAX + 1];
	create_room(a, room);
	MUST(vroom_remove(a->v, room, &E));
	client_close(a);
}

static void test_one_to_one(void **state)
{
	struct client *a = client_open("oo-pub"), *b = client_open("oo-sub");
	char id[VROOM_ROOM_ID_MAX + 1];
	struct vroom_room_info info;
	uint64_t seq1 = 0, seq2 = 0;

	create_room(a, id);
	MUST(vroom_subscribe(b->v, id, &E));
	MUST(vroom_subscribe(b->v, id, &E)); /* twice: still one subscription */
	MUST(vroom_info(a->v, id, &info, &E));
	assert_int_equal(info.subscribers, 1);
	vroom_info_release(&info);

	MUST(vroom_push(a->v, id, 3, "hello", 5, &seq1, &E));
	MUST(vroom_push(a->v, id, 4, "world!", 6, &seq2, &E));
	assert_int_equal(seq1, 1);
	assert_int_equal(seq2, 2);
	wait_msgs(b, 2);
	/* Push ack seq equals delivered seq. */
	assert_msg(&b->m[0], id, seq1, "oo-pub", 3, "hello", 5);
	assert_msg(&b->m[1], id, seq2, "oo-pub", 4, "world!", 6);

	MUST(vroom_info(b->v, id, &info, &E));
	assert_int_equal(info.seq, 2);
	assert_int_equal(info.pushes, 2);
	assert_int_equal(info.bytes, 11);
	assert_int_equal(info.subscribers, 1);
	vroom_info_release(&info);
	assert_int_equal(b->n, 2);
	MUST(vroom_remove(a->v, id, &E));
	client_close(a);
	client_close(b);
}

/* ---- 1:100 on one event base ---- */

#define FAN_SUBS   100
#define FAN_PUSHES 200

struct fan;

struct fan_sub {
	struct fan *f;
	struct vroom *v;
	size_t got;
	int bad;
	char why[320];
};

struct fan_ack {
	struct fan *f;
	size_t i; /* the push's index */
};

struct fan {
	struct vroom *pub;
	struct fan_ack ack[FAN_PUSHES];
	struct fan_sub subs[FAN_SUBS];
	char room[VROOM_ROOM_ID_MAX + 1];
	size_t connected, subscribed, acks, failures;
	char failure[320];
	uint64_t ack_seq[FAN_PUSHES];
	uint64_t info_subscribers;
	int info_done;
};

static void fan_fail(struct fan *f, const struct vroom_error *e, const char *what)
{
	if (!f->failures++)
		snprintf(f->failure, sizeof(f->failure), "%s: %s: %s", what,
			 vroom_code_name(e->code), e->message);
}

static void fan_on_push(struct vroom *v, const struct vroom_push *p, void *arg)
{
	struct fan_sub *s = arg;
	unsigned char want[300];
	size_t i = s->got++, len = make_payload((unsigned)i, want);
	if (s->bad)
		return;
	if (i >= FAN_PUSHES)
		snprintf(s->why, sizeof(s->why), "more than %d deliveries", FAN_PUSHES);
	else if (p->seq != i + 1)
		snprintf(s->why, sizeof(s->why), "delivery %zu has seq %llu", i,
			 (unsigned long long)p->seq);
	else if (strcmp(p->room, s->f->room) || strcmp(p->sender, "fan-pub"))
		snprintf(s->why, sizeof(s->why), "delivery %zu: room %s sender %s", i, p->room,
			 p->sender);
	else if (p->dtype != (uint8_t)i || p->len != len || memcmp(p->data, want, len))
		snprintf(s->why, sizeof(s->why), "delivery %zu: wrong dtype or bytes", i);
	else
		return;
	s->bad = 1;
}

static void fan_on_disconnected(struct vroom *v, const struct vroom_error *e, void *arg)
{
	struct fan_sub *s = arg;
	s->bad = 1;
	snprintf(s->why, sizeof(s->why), "disconnected: %s", e->message);
}

static void fan_connected(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct fan *f = arg;
	if (r->err)
		fan_fail(f, r->err, "connect");
	else
		f->connected++;
}

static void fan_created(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct fan *f = arg;
	if (r->err)
		fan_fail(f, r->err, "create");
	else
		snprintf(f->room, sizeof(f->room), "%s", r->room);
}

static void fan_subscribed(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct fan *f = arg;
	if (r->err)
		fan_fail(f, r->err, "subscribe");
	else
		f->subscribed++;
}

static void fan_info(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct fan *f = arg;
	if (r->err)
		fan_fail(f, r->err, "info");
	else
		f->info_subscribers = r->info->subscribers;
	f->info_done = 1;
}

static void fan_acked(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct fan_ack *a = arg;
	struct fan *f = a->f;
	if (r->err)
		fan_fail(f, r->err, "push");
	else
		f->ack_seq[a->i] = r->seq;
	f->acks++;
}

static int fan_all_connected(void *arg)
{
	struct fan *f = arg;
	return f->failures || f->connected == FAN_SUBS + 1;
}

static int fan_has_room(void *arg)
{
	struct fan *f = arg;
	return f->failures || f->room[0];
}

static int fan_all_subscribed(void *arg)
{
	struct fan *f = arg;
	return f->failures || f->subscribed == FAN_SUBS;
}

static int fan_info_done(void *arg)
{
	return ((struct fan *)arg)->info_done;
}

static int fan_all_delivered(void *arg)
{
	struct fan *f = arg;
	if (f->failures || f->acks < FAN_PUSHES)
		return f->failures != 0;
	for (size_t i = 0; i < FAN_SUBS; i++)
		if (f->subs[i].got < FAN_PUSHES && !f->subs[i].bad)
			return 0;
	return 1;
}

static void test_one_to_hundred(void **state)
{
	struct event_base *base = event_base_new();
	struct fan *f = calloc(1, sizeof(*f));
	assert_non_null(base);
	assert_non_null(f);
	struct vroom_handlers h = {.push = fan_on_push, .disconnected = fan_on_disconnected};
	char ident[32];

	f->pub = vroom_new(base, NULL, NULL);
	assert_non_null(f->pub);
	MUST(vroom_connect(f->pub, addr, "fan-pub", fan_connected, f, &E));
	for (size_t i = 0; i < FAN_SUBS; i++) {
		struct fan_sub *s = &f->subs[i];
		s->f = f;
		s->v = vroom_new(base, &h, s);
		assert_non_null(s->v);
		snprintf(ident, sizeof(ident), "fan-sub-%zu", i);
		MUST(vroom_connect(s->v, addr, ident, fan_connected, f, &E));
	}
	if (loop_until(base, fan_all_connected, f, WAIT_MS) < 0 || f->failures)
		fail_msg("connected %zu of %d: %s", f->connected, FAN_SUBS + 1, f->failure);

	MUST(vroom_create_async(f->pub, fan_created, f, &E));
	if (loop_until(base, fan_has_room, f, WAIT_MS) < 0 || f->failures)
		fail_msg("no room: %s", f->failure);
	for (size_t i = 0; i < FAN_SUBS; i++)
		MUST(vroom_subscribe_async(f->subs[i].v, f->room, fan_subscribed, f, &E));
	if (loop_until(base, fan_all_subscribed, f, WAIT_MS) < 0 || f->failures)
		fail_msg("subscribed %zu of %d: %s", f->subscribed, FAN_SUBS, f->failure);
	MUST(vroom_info_async(f->pub, f->room, fan_info, f, &E));
	if (loop_until(base, fan_info_done, f, WAIT_MS) < 0 || f->failures)
		fail_msg("info: %s", f->failure);
	assert_int_equal(f->info_subscribers, FAN_SUBS);

	unsigned char buf[300];
	for (unsigned i = 0; i < FAN_PUSHES; i++) {
		size_t len = make_payload(i, buf);
		f->ack[i] = (struct fan_ack){f, i};
		MUST(vroom_push_async(f->pub, f->room, (uint8_t)i, buf, len, fan_acked, &f->ack[i],
				      &E));
	}
	int rc = loop_until(base, fan_all_delivered, f, WAIT_MS);
	if (f->failures)
		fail_msg("%s", f->failure);
	for (size_t i = 0; i < FAN_PUSHES; i++)
		if (f->ack_seq[i] != i + 1)
			fail_msg("push %zu acked with seq %llu", i, (unsigned long long)f->ack_seq[i]);
	for (size_t i = 0; i < FAN_SUBS; i++) {
		if (f->subs[i].bad)
			fail_msg("subscriber %zu: %s", i, f->subs[i].why);
		if (f->subs[i].got != FAN_PUSHES)
			fail_msg("subscriber %zu got %zu of %d", i, f->subs[i].got, FAN_PUSHES);
	}
	assert_int_equal(rc, 0);

	for (size_t i = 0; i < FAN_SUBS; i++)
		vroom_free(f->subs[i].v);
	vroom_free(f->pub);
	free(f);
	event_base_free(base);
}

/* ---- n:n on one event base ---- */

#define NN_PUBS	  5
#define NN_SUBS	  5
#define NN_EACH	  100
#define NN_WINDOW 4 /* pushes a publisher keeps in flight */

struct nn;

struct nn_pub {
	struct nn *t;
	struct vroom *v;
	int idx;
	unsigned sent, acked;
	uint64_t last_ack;
};

struct nn_sub {
	struct nn *t;
	struct vroom *v;
	size_t got, switches;
	uint64_t last_seq;
	unsigned next[NN_PUBS]; /* the next counter expected from each publisher */
	int last_sender;
	int bad;
	char why[320];
};

struct nn {
	struct vroom *owner;
	struct nn_pub pubs[NN_PUBS];
	struct nn_sub subs[NN_SUBS];
	char room[VROOM_ROOM_ID_MAX + 1];
	size_t connected, ready, failures;
	char failure[320];
};

static void nn_fail(struct nn *t, const struct vroom_error *e, const char *what)
{
	if (!t->failures++)
		snprintf(t->failure, sizeof(t->failure), "%s: %s: %s", what,
			 vroom_code_name(e->code), e->message);
}

static void nn_on_push(struct vroom *v, const struct vroom_push *p, void *arg)
{
	struct nn_sub *s = arg;
	int who = -1;
	unsigned k = 0;
	char text[64];
	size_t n = p->len < sizeof(text) - 1 ? p->len : sizeof(text) - 1;
	memcpy(text, p->data, n);
	text[n] = '\0';
	s->got++;
	if (s->bad)
		return;
	if (p->seq != s->last_seq + 1) {
		snprintf(s->why, sizeof(s->why), "seq %llu after %llu", (unsigned long long)p->seq,
			 (unsigned long long)s->last_seq);
		s->bad = 1;
		return;
	}
	s->last_seq = p->seq;
	if (sscanf(p->sender, "nn-pub-%d", &who) != 1 || who < 0 || who >= NN_PUBS ||
	    sscanf(text, "m%u", &k) != 1 || p->dtype != (uint8_t)who) {
		snprintf(s->why, sizeof(s->why), "seq %llu: sender %s data '%s'",
			 (unsigned long long)p->seq, p->sender, text);
		s->bad = 1;
		return;
	}
	if (k != s->next[who]) {
		snprintf(s->why, sizeof(s->why), "from %s: message %u after %u", p->sender, k,
			 s->next[who]);
		s->bad = 1;
		return;
	}
	s->next[who]++;
	if (s->last_sender >= 0 && s->last_sender != who)
		s->switches++;
	s->last_sender = who;
}

static void nn_push_next(struct nn_pub *p);

static void nn_acked(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct nn_pub *p = arg;
	p->acked++;
	if (r->err) {
		nn_fail(p->t, r->err, "push");
		return;
	}
	if (r->seq <= p->last_ack) {
		struct vroom_error e = {VROOM_E_PROTOCOL, "acks out of order"};
		nn_fail(p->t, &e, "push");
	}
	p->last_ack = r->seq;
	if (p->sent < NN_EACH)
		nn_push_next(p);
}

static void nn_push_next(struct nn_pub *p)
{
	char text[32];
	struct vroom_error e;
	int len = snprintf(text, sizeof(text), "m%u", p->sent++);
	if (vroom_push_async(p->v, p->t->room, (uint8_t)p->idx, text, (size_t)len, nn_acked, p,
			     &e) < 0)
		nn_fail(p->t, &e, "push_async");
}

static void nn_connected(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct nn *t = arg;
	if (r->err)
		nn_fail(t, r->err, "connect");
	else
		t->connected++;
}

static void nn_created(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct nn *t = arg;
	if (r->err)
		nn_fail(t, r->err, "create");
	else
		snprintf(t->room, sizeof(t->room), "%s", r->room);
}

static void nn_ready(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct nn *t = arg;
	if (r->err)
		nn_fail(t, r->err, "grant or subscribe");
	else
		t->ready++;
}

static int nn_all_connected(void *arg)
{
	struct nn *t = arg;
	return t->failures || t->connected == 1 + NN_PUBS + NN_SUBS;
}

static int nn_has_room(void *arg)
{
	struct nn *t = arg;
	return t->failures || t->room[0];
}

static int nn_all_ready(void *arg)
{
	struct nn *t = arg;
	return t->failures || t->ready == NN_PUBS + NN_SUBS;
}

static int nn_all_done(void *arg)
{
	struct nn *t = arg;
	if (t->failures)
		return 1;
	for (int i = 0; i < NN_PUBS; i++)
		if (t->pubs[i].acked < NN_EACH)
			return 0;
	for (int i = 0; i < NN_SUBS; i++)
		if (t->subs[i].got < NN_PUBS * NN_EACH && !t->subs[i].bad)
			return 0;
	return 1;
}

static void test_n_to_n(void **state)
{
	struct event_base *base = event_base_new();
	struct nn *t = calloc(1, sizeof(*t));
	assert_non_null(base);
	assert_non_null(t);
	struct vroom_handlers h = {.push = nn_on_push};
	char ident[32];

	t->owner = vroom_new(base, NULL, NULL);
	MUST(vroom_connect(t->owner, addr, "nn-owner", nn_connected, t, &E));
	for (int i = 0; i < NN_PUBS; i++) {
		struct nn_pub *p = &t->pubs[i];
		p->t = t;
		p->idx = i;
		p->v = vroom_new(base, NULL, NULL);
		snprintf(ident, sizeof(ident), "nn-pub-%d", i);
		MUST(vroom_connect(p->v, addr, ident, nn_connected, t, &E));
	}
	for (int i = 0; i < NN_SUBS; i++) {
		struct nn_sub *s = &t->subs[i];
		s->t = t;
		s->last_sender = -1;
		s->v = vroom_new(base, &h, s);
		snprintf(ident, sizeof(ident), "nn-sub-%d", i);
		MUST(vroom_connect(s->v, addr, ident, nn_connected, t, &E));
	}
	if (loop_until(base, nn_all_connected, t, WAIT_MS) < 0 || t->failures)
		fail_msg("connected %zu: %s", t->connected, t->failure);
	MUST(vroom_create_async(t->owner, nn_created, t, &E));
	if (loop_until(base, nn_has_room, t, WAIT_MS) < 0 || t->failures)
		fail_msg("no room: %s", t->failure);
	for (int i = 0; i < NN_PUBS; i++) {
		snprintf(ident, sizeof(ident), "nn-pub-%d", i);
		MUST(vroom_grant_async(t->owner, t->room, ident, nn_ready, t, &E));
	}
	for (int i = 0; i < NN_SUBS; i++)
		MUST(vroom_subscribe_async(t->subs[i].v, t->room, nn_ready, t, &E));
	if (loop_until(base, nn_all_ready, t, WAIT_MS) < 0 || t->failures)
		fail_msg("granted and subscribed %zu: %s", t->ready, t->failure);

	for (int w = 0; w < NN_WINDOW; w++)
		for (int i = 0; i < NN_PUBS; i++)
			nn_push_next(&t->pubs[i]);
	int rc = loop_until(base, nn_all_done, t, WAIT_MS);
	if (t->failures)
		fail_msg("%s", t->failure);
	size_t fewest = SIZE_MAX;
	for (int i = 0; i < NN_SUBS; i++) {
		struct nn_sub *s = &t->subs[i];
		fewest = s->switches < fewest ? s->switches : fewest;
		if (s->bad)
			fail_msg("subscriber %d: %s", i, s->why);
		if (s->got != NN_PUBS * NN_EACH)
			fail_msg("subscriber %d got %zu of %d", i, s->got, NN_PUBS * NN_EACH);
		assert_int_equal(s->last_seq, NN_PUBS * NN_EACH);
		for (int k = 0; k < NN_PUBS; k++)
			assert_int_equal(s->next[k], NN_EACH);
		/* Five blocks back to back would switch senders 4 times. */
		if (s->switches <= NN_PUBS - 1)
			fail_msg("subscriber %d: pushes were not interleaved (%zu switches)", i,
				 s->switches);
	}
	assert_int_equal(rc, 0);
	print_message("n:n: %d x %d pushes, fewest sender switches seen: %zu\n", NN_PUBS, NN_EACH,
		      fewest);

	vroom_free(t->owner);
	for (int i = 0; i < NN_PUBS; i++)
		vroom_free(t->pubs[i].v);
	for (int i = 0; i < NN_SUBS; i++)
		vroom_free(t->subs[i].v);
	free(t);
	event_base_free(base);
}

/* ---- ordering and delivery rules ---- */

static void test_sender_not_echoed(void **state)
{
	struct client *a = client_open("se-owner"), *b = client_open("se-friend");
	char id[VROOM_ROOM_ID_MAX + 1];
	uint64_t seq;

	struct client *a2 = client_open("se-owner"); /* same identity, another connection */

	create_room(a, id);
	MUST(vroom_grant(a->v, id, "se-friend", &E));
	MUST(vroom_subscribe(a->v, id, &E));
	MUST(vroom_subscribe(b->v, id, &E));
	MUST(vroom_subscribe(a2->v, id, &E));
	MUST(vroom_push(a->v, id, 0, "from-a", 6, &seq, &E));
	assert_int_equal(seq, 1);
	MUST(vroom_push(b->v, id, 0, "from-b", 6, &seq, &E));
	assert_int_equal(seq, 2);
	/* Each connection's output is FIFO: had a been sent its own push, it
	 * would arrive before b's. */
	wait_msgs(a, 1);
	wait_msgs(b, 1);
	assert_msg(&a->m[0], id, 2, "se-friend", 0, "from-b", 6);
	assert_msg(&b->m[0], id, 1, "se-owner", 0, "from-a", 6);
	/* Only the pushing connection is skipped, not its identity. */
	wait_msgs(a2, 2);
	assert_msg(&a2->m[0], id, 1, "se-owner", 0, "from-a", 6);
	assert_msg(&a2->m[1], id, 2, "se-friend", 0, "from-b", 6);
	/* And nothing more is on its way: a marker in another room comes next. */
	char id2[VROOM_ROOM_ID_MAX + 1];
	create_room(b, id2);
	MUST(vroom_subscribe(a->v, id2, &E));
	MUST(vroom_push(b->v, id2, 9, "marker", 6, NULL, &E));
	wait_msgs(a, 2);
	assert_string_equal(a->m[1].room, id2);
	assert_int_equal(b->n, 1);
	MUST(vroom_remove(a->v, id, &E));
	MUST(vroom_remove(b->v, id2, &E));
	client_close(a);
	client_close(a2);
	client_close(b);
}

static void test_unsubscribe(void **state)
{
	struct client *a = client_open("us-pub"), *b = client_open("us-sub");
	char id[VROOM_ROOM_ID_MAX + 1], marker[VROOM_ROOM_ID_MAX + 1];
	struct vroom_room_info info;

	create_room(a, id);
	create_room(a, marker);
	MUST(vroom_subscribe(b->v, id, &E));
	MUST(vroom_subscribe(b->v, marker, &E));
	MUST(vroom_push(a->v, id, 0, "one", 3, NULL, &E));
	wait_msgs(b, 1);
	MUST(vroom_unsubscribe(b->v, id, &E));
	MUST(vroom_unsubscribe(b->v, id, &E)); /* not subscribed: still fine */
	MUST(vroom_info(a->v, id, &info, &E));
	assert_int_equal(info.subscribers, 0);
	vroom_info_release(&info);
	MUST(vroom_push(a->v, id, 0, "two", 3, NULL, &E));
	/* The marker was pushed after "two" was fanned out: if "two" were on
	 * its way to b it would arrive first. */
	MUST(vroom_push(a->v, marker, 0, "mark", 4, NULL, &E));
	wait_msgs(b, 2);
	assert_msg(&b->m[0], id, 1, "us-pub", 0, "one", 3);
	assert_msg(&b->m[1], marker, 1, "us-pub", 0, "mark", 4);
	MUST(vroom_remove(a->v, id, &E));
	MUST(vroom_remove(a->v, marker, &E));
	client_close(a);
	client_close(b);
}

static void test_remove_notifies(void **state)
{
	struct client *a = client_open("rm-owner");
	struct client *b = client_open("rm-sub1"), *c = client_open("rm-sub2");
	char id[VROOM_ROOM_ID_MAX + 1];
	struct vroom_room_info info;

	create_room(a, id);
	MUST(vroom_subscribe(b->v, id, &E));
	MUST(vroom_subscribe(c->v, id, &E));
	MUST(vroom_remove(a->v, id, &E));
	struct client *subs[] = {b, c};
	for (int i = 0; i < 2; i++) {
		if (pump_until(subs[i], &subs[i]->nclosed, 1, WAIT_MS) < 0)
			fail_msg("subscriber %d: no room-closed within %d ms", i, WAIT_MS);
		assert_int_equal(subs[i]->nclosed, 1);
		assert_string_equal(subs[i]->closed_room, id);
		assert_string_equal(subs[i]->closed_reason, "removed");
		assert_true(vroom_connected(subs[i]->v));
	}
	assert_int_equal(a->nclosed, 0); /* the owner was not subscribed */
	assert_int_equal(vroom_info(b->v, id, &info, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	assert_int_equal(vroom_push(a->v, id, 0, "x", 1, NULL, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	assert_int_equal(vroom_unsubscribe(b->v, id, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	client_close(a);
	client_close(b);
	client_close(c);
}

static void test_idle_expiry(void **state)
{
	static const char *const args[] = {"--room-idle-timeout", "1", NULL};
	char why[512];
	struct spawn *n = spawn_start("rooms-expiry", args, why, sizeof(why));
	if (!n)
		fail_msg("%s", why);
	struct client *a = client_open_at(spawn_addr(n), "ex-owner");
	struct client *b = client_open_at(spawn_addr(n), "ex-sub");
	char id[VROOM_ROOM_ID_MAX + 1];
	struct vroom_room_info info;

	assert_int_equal(vroom_limit(a->v, "room_idle_timeout_ms"), 1000);
	long long t0 = spawn_now_ms(), last_push = 0;
	char live[VROOM_ROOM_ID_MAX + 1];
	create_room(a, id);
	create_room(a, live);
	MUST(vroom_subscribe(b->v, id, &E));
	MUST(vroom_subscribe(b->v, live, &E));
	/* id idles; live gets a push every 200 ms, for twice the timeout. */
	long long took = -1;
	while (spawn_now_ms() - t0 < 3000 && (took < 0 || spawn_now_ms() - t0 < 2200)) {
		if (spawn_now_ms() - last_push >= 200) {
			MUST(vroom_push(a->v, live, 0, "alive", 5, NULL, &E));
			last_push = spawn_now_ms();
		}
		MUST(vroom_run(b->v, 50, &E));
		if (took < 0 && b->nclosed)
			took = spawn_now_ms() - t0;
	}
	if (took < 0)
		fail_msg("no room-closed within 3 s of creating the room");
	assert_true(took >= 900); /* not before the idle timeout */
	assert_int_equal(b->nclosed, 1); /* the busy room lives on */
	assert_string_equal(b->closed_room, id);
	assert_string_equal(b->closed_reason, "expired");
	MUST(vroom_info(a->v, live, &info, &E));
	assert_int_equal(info.subscribers, 1);
	vroom_info_release(&info);
	assert_int_equal(vroom_info(a->v, id, &info, &E), -1);
	assert_error(&E, VROOM_E_UNKNOWN_ROOM);
	assert_true(vroom_connected(b->v));
	client_close(a);
	client_close(b);
	if (spawn_stop(n, why, sizeof(why)) < 0)
		fail_msg("%s", why);
}

static void test_disconnect_drops_subscriptions(void **state)
{
	struct client *a = client_open("dc-owner");
	struct client *b = client_open("dc-leaver"), *c = client_open("dc-stayer");
	char id[VROOM_ROOM_ID_MAX + 1], bid[VROOM_ROOM_ID_MAX + 1];
	struct vroom_room_info info;

	create_room(a, id);
	create_room(b, bid);
	MUST(vroom_subscribe(b->v, id, &E));
	MUST(vroom_subscribe(c->v, id, &E));
	MUST(vroom_subscribe(b->v, bid, &E));
	MUST(vroom_info(a->v, id, &info, &E));
	assert_int_equal(info.subscribers, 2);
	vroom_info_release(&info);

	client_close(b);
	long long deadline = spawn_now_ms() + WAIT_MS;
	uint64_t subs = 2;
	while (subs != 1 && spawn_now_ms() < deadline) {
		MUST(vroom_info(a->v, id, &info, &E));
		subs = info.subscribers;
		vroom_info_release(&info);
		if (subs != 1)
			MUST(vroom_run(a->v, 20, &E));
	}
	assert_int_equal(subs, 1);

	/* b's own room stays, with b still its owner and no subscribers. */
	MUST(vroom_info(a->v, bid, &info, &E));
	assert_string_equal(info.owner, "dc-leaver");
	assert_int_equal(info.subscribers, 0);
	assert_false(info.has_grants);
	vroom_info_release(&info);

	/* The room still delivers to whoever is left. */
	MUST(vroom_push(a->v, id, 0, "still", 5, NULL, &E));
	wait_msgs(c, 1);
	assert_msg(&c->m[0], id, 1, "dc-owner", 0, "still", 5);

	/* b comes back under the same identity and still owns its room. */
	b = client_open("dc-leaver");
	MUST(vroom_remove(b->v, bid, &E));
	MUST(vroom_remove(a->v, id, &E));
	client_close(a);
	client_close(b);
	client_close(c);
}

static void test_payload_edges(void **state)
{
	struct client *a = client_open("pe-pub"), *b = client_open("pe-sub");
	char id[VROOM_ROOM_ID_MAX + 1];
	uint64_t seq[4];

	uint64_t frame_max = vroom_limit(a->v, "frame_max");
	assert_true(frame_max >= 4096);
	size_t big_len = (size_t)frame_max - 1024;
	unsigned char *big = malloc(big_len);
	assert_non_null(big);
	uint32_t x = 2463534242u; /* xorshift32: every byte value, no pattern */
	for (size_t i = 0; i < big_len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		big[i] = (unsigned char)x;
	}
	static const unsigned char bin[] = {0, 1, 0xff, 0, '\n', 0x80};

	create_room(a, id);
	MUST(vroom_subscribe(b->v, id, &E));
	MUST(vroom_push(a->v, id, 0, bin, sizeof(bin), &seq[0], &E));
	MUST(vroom_push(a->v, id, 255, "max", 3, &seq[1], &E));
	MUST(vroom_push(a->v, id, 17, "", 0, &seq[2], &E));
	MUST(vroom_push(a->v, id, 128, big, big_len, &seq[3], &E));
	wait_msgs(b, 4);
	assert_msg(&b->m[0], id, seq[0], "pe-pub", 0, bin, sizeof(bin));
	assert_msg(&b->m[1], id, seq[1], "pe-pub", 255, "max", 3);
	assert_msg(&b->m[2], id, seq[2], "pe-pub", 17, "", 0);
	assert_msg(&b->m[3], id, seq[3], "pe-pub", 128, big, big_len);
	for (int i = 0; i < 4; i++)
		assert_int_equal(seq[i], (uint64_t)i + 1);

	struct vroom_room_info info;
	MUST(vroom_info(a->v, id, &info, &E));
	assert_int_equal(info.bytes, sizeof(bin) + 3 + 0 + big_len);
	vroom_info_release(&info);
	MUST(vroom_remove(a->v, id, &E));
	free(big);
	client_close(a);
	client_close(b);
}

/* ---- the library's contract with handlers ---- */

struct freer {
	int calls, after_free;
	int connected, subscribed;
};

static void freer_push(struct vroom *v, const struct vroom_push *p, void *arg)
{
	struct freer *f = arg;
	if (f->calls++ == 0)
		vroom_free(v); /* from its own handler: the library defers it */
	else
		f->after_free++;
}

static void freer_done(struct vroom *v, const struct vroom_result *r, void *arg)
{
	int *flag = arg;
	*flag = r->err ? -1 : 1;
}

static int freer_connected(void *arg)
{
	return ((struct freer *)arg)->connected != 0;
}

static int freer_subscribed(void *arg)
{
	return ((struct freer *)arg)->subscribed != 0;
}

static int freer_first(void *arg)
{
	return ((struct freer *)arg)->calls > 0;
}

static int never(void *arg)
{
	return 0;
}

/* vroom_free() from inside a handler: no handler runs for that client after
 * it, even for frames that arrived in the same read. */
static void test_free_inside_handler(void **state)
{
	struct event_base *base = event_base_new();
	struct freer f = {0};
	struct vroom_handlers h = {.push = freer_push};
	struct client *pub = client_open("fh-pub");
	char id[VROOM_ROOM_ID_MAX + 1];

	assert_non_null(base);
	create_room(pub, id);
	struct vroom *v = vroom_new(base, &h, &f);
	assert_non_null(v);
	MUST(vroom_connect(v, addr, "fh-sub", freer_done, &f.connected, &E));
	assert_int_equal(loop_until(base, freer_connected, &f, WAIT_MS), 0);
	assert_int_equal(f.connected, 1);
	MUST(vroom_subscribe_async(v, id, freer_done, &f.subscribed, &E));
	assert_int_equal(loop_until(base, freer_subscribed, &f, WAIT_MS), 0);
	assert_int_equal(f.subscribed, 1);
	/* Five deliveries wait in v's socket before its loop runs again. */
	for (int i = 0; i < 5; i++)
		MUST(vroom_push(pub->v, id, 0, "x", 1, NULL, &E));
	int rc = loop_until(base, freer_first, &f, WAIT_MS);
	loop_until(base, never, NULL, 200);
	MUST(vroom_remove(pub->v, id, &E));
	client_close(pub);
	event_base_free(base);
	assert_int_equal(rc, 0);
	if (f.after_free)
		fail_msg("the push handler ran %d more times after vroom_free() in it", f.after_free);
	assert_int_equal(f.calls, 1);
}

struct relay {
	struct vroom_error err;
	int handled, rc;
	uint64_t seq;
	const char *to;
};

static void relay_ack(struct vroom *v, const struct vroom_result *res, void *arg)
{
	struct relay *r = arg;
	r->seq = res->err ? 0 : res->seq;
	vroom_stop(v);
}

/* The documented rule: a blocking call from a handler is refused before
 * anything is sent; the _async call does the job. */
static void relay_push(struct vroom *v, const struct vroom_push *p, void *arg)
{
	struct relay *r = arg;
	r->handled++;
	r->rc = vroom_push(v, r->to, p->dtype, p->data, p->len, &r->seq, &r->err);
	if (r->rc == 0 || r->err.code != VROOM_E_ARG)
		return;
	struct vroom_error e;
	if (vroom_push_async(v, r->to, p->dtype, p->data, p->len, relay_ack, r, &e) < 0)
		r->err = e;
}

/* In a child process, as the scenario could corrupt memory if the library
 * got it wrong: a bot forwards a push it receives. In its handler a blocking
 * vroom_push() must be refused with VROOM_E_ARG (the loop cannot re-enter
 * itself), and vroom_push_async() must deliver the message exactly once.
 * Exit 0 if so; else a message on stderr and 10 + step. */
static int relay_child(void)
{
	struct relay r = {0};
	struct vroom_error e;
	struct vroom_handlers h = {.push = relay_push};
	char in[VROOM_ROOM_ID_MAX + 1], out[VROOM_ROOM_ID_MAX + 1];
	struct vroom *bot = vroom_open(addr, "relay-bot", &h, &r, &e);
	struct vroom *pub = vroom_open(addr, "relay-pub", NULL, NULL, &e);
	if (!bot || !pub)
		return 10;
	struct client *watch = calloc(1, sizeof(*watch));
	if (!watch || !(watch->v = vroom_open(addr, "relay-watch", &handlers, watch, &e)))
		return 11;
	if (vroom_create(pub, in, &e) < 0 || vroom_create(bot, out, &e) < 0 ||
	    vroom_subscribe(bot, in, &e) < 0 || vroom_subscribe(watch->v, out, &e) < 0 ||
	    vroom_push(pub, in, 5, "ping", 4, NULL, &e) < 0)
		return 12;
	r.to = out;
	long long deadline = spawn_now_ms() + WAIT_MS;
	while (!r.seq && spawn_now_ms() < deadline)
		if (vroom_run(bot, 50, &e) < 0)
			return 13;
	if (r.handled != 1)
		return 14;
	if (r.rc != -1 || r.err.code != VROOM_E_ARG) {
		fprintf(stderr, "relay: vroom_push() in the handler was not refused: rc %d, %s: %s\n",
			r.rc, vroom_code_name(r.err.code), r.err.message);
		return 15;
	}
	if (r.seq != 1 || pump_until(watch, &watch->n, 1, WAIT_MS) < 0)
		return 16;
	if (watch->m[0].len != 4 || memcmp(watch->m[0].data, "ping", 4) != 0)
		return 17;
	vroom_close(bot);
	vroom_close(pub);
	client_close(watch);
	return 0;
}

/* A blocking call made from inside a handler of the same client. */
static void test_blocking_call_in_handler(void **state)
{
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(relay_child());
	int status = 0;
	long long deadline = spawn_now_ms() + 2 * WAIT_MS;
	pid_t got;
	while ((got = waitpid(pid, &status, WNOHANG)) == 0 && spawn_now_ms() < deadline) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (got == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail_msg("the relay child hung");
	}
	if (WIFSIGNALED(status))
		fail_msg("the relay child died of signal %d", WTERMSIG(status));
	if (WEXITSTATUS(status) != 0)
		fail_msg("the relay child failed at step %d (see stderr)", WEXITSTATUS(status));
}

/* Last: the shared node stops on SIGTERM with status 0 and a clean log, and
 * tells a connected client why it goes. */
static void test_node_exits_cleanly(void **state)
{
	char why[512];
	struct client *c = client_open("last-client");
	struct spawn *n = node;
	node = NULL;
	if (spawn_stop(n, why, sizeof(why)) < 0)
		fail_msg("%s", why);
	if (pump_until(c, &c->ndisconnected, 1, WAIT_MS) < 0 && c->ndisconnected == 0)
		fail_msg("the client was not told of the shutdown");
	assert_int_equal(c->ndisconnected, 1);
	assert_error(&c->disconnect, VROOM_E_SHUTDOWN);
	assert_false(vroom_connected(c->v));
	assert_int_equal(vroom_run(c->v, 0, &E), -1);
	client_close(c);
}

static int group_setup(void **state)
{
	char why[512];
	node = spawn_start("rooms", NULL, why, sizeof(why));
	if (!node) {
		fprintf(stderr, "test_rooms: %s\n", why);
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

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_info_remove),
		cmocka_unit_test(test_grant_revoke_forbidden),
		cmocka_unit_test(test_not_owner),
		cmocka_unit_test(test_unknown_room),
		cmocka_unit_test(test_one_to_one),
		cmocka_unit_test(test_one_to_hundred),
		cmocka_unit_test(test_n_to_n),
		cmocka_unit_test(test_sender_not_echoed),
		cmocka_unit_test(test_unsubscribe),
		cmocka_unit_test(test_remove_notifies),
		cmocka_unit_test(test_idle_expiry),
		cmocka_unit_test(test_disconnect_drops_subscriptions),
		cmocka_unit_test(test_payload_edges),
		cmocka_unit_test(test_free_inside_handler),
		cmocka_unit_test(test_blocking_call_in_handler),
		cmocka_unit_test(test_node_exits_cleanly),
	};
	return cmocka_run_group_tests_name("rooms", tests, group_setup, group_teardown);
}

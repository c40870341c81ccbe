/*
 * Unit tests for stream/gate, the decisions of node/guard.c without a node:
 * the source key of a peer address, the failed-HELLO limit per source and
 * minute (with the window table the guard uses), the inbound token bucket
 * (its figures, and libevent's bucket built from them holding a socket's
 * reads to the rate), what a token's grants allow, the cluster routing check
 * and the order of the create checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "stream/gate.h"
#include "stream/quota.h"
#include "stream/room.h"
#include "stream/wire.h"

static int group_setup(void **state)
{
	return sodium_init() < 0 ? -1 : 0;
}

static size_t src4(const char *addr, uint8_t key[QUOTA_WKEY_MAX])
{
	struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(1234)};
	assert_int_equal(inet_pton(AF_INET, addr, &in.sin_addr), 1);
	return gate_source((struct sockaddr *)&in, key);
}

static size_t src6(const char *addr, uint8_t key[QUOTA_WKEY_MAX])
{
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(1234)};
	assert_int_equal(inet_pton(AF_INET6, addr, &in6.sin6_addr), 1);
	return gate_source((struct sockaddr *)&in6, key);
}

/* ---- source keys ---- */

static void test_source_keys(void **state)
{
	uint8_t a[QUOTA_WKEY_MAX], b[QUOTA_WKEY_MAX];
	size_t la, lb;
	/* IPv4: the family tag and the address */
	la = src4("192.0.2.7", a);
	assert_int_equal(la, 5);
	assert_memory_equal(a, "\x04\xc0\x00\x02\x07", 5);
	/* the port does not count; another address does */
	lb = src4("192.0.2.8", b);
	assert_int_equal(lb, 5);
	assert_memory_not_equal(a, b, 5);
	/* an IPv4-mapped IPv6 address is its IPv4 address */
	lb = src6("::ffff:192.0.2.7", b);
	assert_int_equal(lb, 5);
	assert_memory_equal(a, b, 5);
	/* IPv6: the /64, so one site's addresses share a key */
	la = src6("2001:db8:1:2::1", a);
	lb = src6("2001:db8:1:2:ffff:eeee:dddd:cccc", b);
	assert_int_equal(la, 9);
	assert_int_equal(lb, 9);
	assert_memory_equal(a, b, 9);
	assert_int_equal(a[0], 6);
	lb = src6("2001:db8:1:3::1", b);
	assert_memory_not_equal(a, b, 9);
	/* other families: no key (never limited) */
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	assert_int_equal(gate_source((struct sockaddr *)&un, a), 0);
}

/* ---- failed HELLOs per source and minute ---- */

static void test_hello_limit(void **state)
{
	struct quota_window *q = quota_window_new(16384, GATE_HELLO_WINDOW_MS);
	assert_non_null(q);
	uint8_t a[QUOTA_WKEY_MAX], b[QUOTA_WKEY_MAX], c[QUOTA_WKEY_MAX];
	size_t la = src4("198.51.100.1", a), lb = src4("198.51.100.2", b);
	size_t lc = src6("2001:db8::1", c);
	const size_t max = 3;
	uint64_t t0 = 1000000;

	/* under the limit: admitted */
	for (size_t i = 0; i < max; i++) {
		assert_int_equal(gate_hello_refused(q, a, la, max, t0 + i), 0);
		gate_hello_failed(q, a, la, max, t0 + i);
	}
	/* at the limit: refused, with the count; other sources are not */
	assert_int_equal(gate_hello_refused(q, a, la, max, t0 + 10), max);
	assert_int_equal(gate_hello_refused(q, b, lb, max, t0 + 10), 0);
	/* a refused source's further failures still count */
	gate_hello_failed(q, a, la, max, t0 + 20);
	assert_int_equal(gate_hello_refused(q, a, la, max, t0 + 30), max + 1);
	/* a higher limit admits it again; no limit (0) admits everyone */
	assert_int_equal(gate_hello_refused(q, a, la, max + 2, t0 + 30), 0);
	assert_int_equal(gate_hello_refused(q, a, la, 0, t0 + 30), 0);
	/* the window runs a minute from the first failure: refused up to its
	 * last millisecond, admitted after, and the count starts over */
	assert_int_equal(gate_hello_refused(q, a, la, max, t0 + GATE_HELLO_WINDOW_MS - 1), max + 1);
	assert_int_equal(gate_hello_refused(q, a, la, max, t0 + GATE_HELLO_WINDOW_MS), 0);
	gate_hello_failed(q, a, la, max, t0 + GATE_HELLO_WINDOW_MS);
	assert_int_equal(gate_hello_refused(q, a, la, 1, t0 + GATE_HELLO_WINDOW_MS), 1);
	assert_int_equal(gate_hello_refused(q, a, la, 2, t0 + GATE_HELLO_WINDOW_MS), 0);

	/* an IPv6 site is one source: failures from several addresses of a /64
	 * add up */
	uint8_t c2[QUOTA_WKEY_MAX];
	size_t lc2 = src6("2001:db8::ffff:1", c2);
	gate_hello_failed(q, c, lc, max, t0);
	gate_hello_failed(q, c2, lc2, max, t0);
	gate_hello_failed(q, c, lc, max, t0);
	assert_int_equal(gate_hello_refused(q, c2, lc2, max, t0 + 1), max);

	/* with no limit, or no key, nothing is counted */
	assert_int_equal(gate_hello_refused(q, b, lb, max, t0), 0);
	for (int i = 0; i < 10; i++)
		gate_hello_failed(q, b, lb, 0, t0);
	assert_int_equal(quota_window_get(q, b, lb, t0), 0);
	gate_hello_failed(q, b, 0, max, t0);
	assert_int_equal(gate_hello_refused(q, b, 0, 1, t0), 0);
	quota_window_free(q);
}

/* Many sources failing (a scan from many addresses): the table stays at its
 * size and the latest offender is still refused. */
static void test_hello_limit_many_sources(void **state)
{
	struct quota_window *q = quota_window_new(1024, GATE_HELLO_WINDOW_MS);
	assert_non_null(q);
	const size_t max = 2;
	for (uint32_t i = 0; i < 50000; i++) {
		struct sockaddr_in in = {.sin_family = AF_INET};
		in.sin_addr.s_addr = htonl(0x0a000000u + i);
		uint8_t k[QUOTA_WKEY_MAX];
		size_t len = gate_source((struct sockaddr *)&in, k);
		gate_hello_failed(q, k, len, max, 5000 + i / 100);
		gate_hello_failed(q, k, len, max, 5000 + i / 100);
		assert_int_equal(gate_hello_refused(q, k, len, max, 5000 + i / 100), max);
		assert_true(quota_window_live(q, 5000 + i / 100) <= 1024);
	}
	quota_window_free(q);
}

/* ---- the inbound token bucket ---- */

static void test_bucket_figures(void **state)
{
	/* a tenth of the rate per tick; the burst is a tick, at least 4 KiB */
	struct gate_bucket b = gate_bucket_of(1u << 30);
	assert_int_equal(b.rate, (1u << 30) / 10);
	assert_int_equal(b.burst, (1u << 30) / 10);
	b = gate_bucket_of(100000);
	assert_int_equal(b.rate, 10000);
	assert_int_equal(b.burst, 10000);
	b = gate_bucket_of(4096); /* the least max_in_rate the config takes */
	assert_int_equal(b.rate, 409);
	assert_int_equal(b.burst, GATE_BUCKET_BURST);
	b = gate_bucket_of(5); /* never a bucket that never refills */
	assert_int_equal(b.rate, 1);
	assert_int_equal(b.burst, GATE_BUCKET_BURST);
	assert_int_equal(1000 % GATE_BUCKET_TICK_MS, 0);
}

struct flood {
	size_t got;
};

static void on_read(struct bufferevent *bev, void *arg)
{
	struct flood *f = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	f->got += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* libevent's bucket made from gate's figures, as the guard makes it, holds a
 * flooding peer to the burst plus the rate: the reader never gets more, and
 * the bucket refills (it gets more than the burst). */
static void test_bucket_holds_reads(void **state)
{
	const size_t rate = 40960; /* B/s: 4096 a tick */
	struct gate_bucket g = gate_bucket_of(rate);
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[0]), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[1]), 0);
	/* the peer floods: far more than a second at the rate */
	static uint8_t junk[256 << 10];
	ssize_t sent = write(sv[1], junk, sizeof(junk));
	assert_true(sent > (ssize_t)(4 * rate) || sent > 100000);

	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct timeval tick = {0, GATE_BUCKET_TICK_MS * 1000};
	struct ev_token_bucket_cfg *cfg =
	    ev_token_bucket_cfg_new(g.rate, g.burst, EV_RATE_LIMIT_MAX, EV_RATE_LIMIT_MAX, &tick);
	assert_non_null(cfg);
	struct bufferevent *bev = bufferevent_socket_new(base, sv[0], 0);
	assert_non_null(bev);
	struct flood f = {0};
	bufferevent_setcb(bev, on_read, NULL, NULL, &f);
	assert_int_equal(bufferevent_set_rate_limit(bev, cfg), 0);
	bufferevent_enable(bev, EV_READ);

	double t0 = mono_s();
	struct timeval run = {1, 0};
	event_base_loopexit(base, &run);
	event_base_dispatch(base);
	double elapsed = mono_s() - t0;

	/* ticks that may have refilled it, one more for the rounding */
	size_t ticks = (size_t)(elapsed * 1000 / GATE_BUCKET_TICK_MS) + 1;
	print_message("read %zu bytes in %.3f s (rate %zu B/s, burst %zu)\n", f.got, elapsed, rate,
		      g.burst);
	assert_true(f.got <= g.burst + ticks * g.rate);
	assert_true(f.got > g.burst);
	assert_true((size_t)sent > f.got); /* it was held back, not drained */

	bufferevent_free(bev);
	ev_token_bucket_cfg_free(cfg);
	event_base_free(base);
	close(sv[0]);
	close(sv[1]);
}

/* ---- grants ---- */

#define ROOM_A "abcdefghijklmnop"
#define ROOM_B "zzzzefghijklmnop"

static struct token_grants grants(int create, const char *sub, const char *push)
{
	struct token_grants g;
	memset(&g, 0, sizeof(g));
	g.create = create;
	if (sub) {
		snprintf(g.sub[0], sizeof(g.sub[0]), "%s", sub);
		g.nsub = 1;
	}
	if (push) {
		snprintf(g.push[0], sizeof(g.push[0]), "%s", push);
		g.npush = 1;
	}
	return g;
}

static void test_allowed(void **state)
{
	struct rooms *t = rooms_new(8);
	assert_non_null(t);
	struct room *r = rooms_create_id(t, ROOM_A, ROOM_ID_LEN, "owner", 5, 0);
	assert_non_null(r);
	/* unrestricted: anything */
	assert_true(gate_allowed(NULL, r, "bob", 3, TOKEN_SUB));
	assert_true(gate_allowed(NULL, r, "bob", 3, TOKEN_PUSH));
	/* restricted to subscribing to abc*: that, and not pushing */
	struct token_grants g = grants(0, "abc*", NULL);
	assert_true(gate_allowed(&g, r, "bob", 3, TOKEN_SUB));
	assert_false(gate_allowed(&g, r, "bob", 3, TOKEN_PUSH));
	/* the owner may do anything in its room, whatever its token grants */
	struct token_grants none = grants(0, NULL, NULL);
	assert_true(gate_allowed(&none, r, "owner", 5, TOKEN_PUSH));
	assert_true(gate_allowed(&none, r, "owner", 5, TOKEN_SUB));
	assert_false(gate_allowed(&none, r, "owne", 4, TOKEN_SUB));
	assert_false(gate_allowed(&none, r, "bob", 3, TOKEN_SUB));
	/* an exact pattern */
	struct token_grants exact = grants(0, NULL, ROOM_A);
	assert_true(gate_allowed(&exact, r, "bob", 3, TOKEN_PUSH));
	assert_false(gate_allowed(&exact, r, "bob", 3, TOKEN_SUB));
	rooms_free(t);
}

static void test_may_route(void **state)
{
	struct rooms *here = rooms_new(8);
	assert_non_null(here);
	struct token_grants sub = grants(0, "abc*", NULL), push = grants(0, NULL, "abc*");
	struct token_grants create = grants(1, NULL, NULL), none = grants(0, NULL, NULL);
	const struct wire_str roomA = {ROOM_A, ROOM_ID_LEN}, roomB = {ROOM_B, ROOM_ID_LEN};
	/* CREATE: the create grant (the field is not read) */
	assert_false(gate_may_route(&none, WIRE_CREATE, NULL, here));
	assert_true(gate_may_route(&create, WIRE_CREATE, NULL, here));
	/* SUBSCRIBE: a sub pattern; PUSH and STREAM_OPEN: a push pattern */
	assert_true(gate_may_route(&sub, WIRE_SUBSCRIBE, &roomA, here));
	assert_false(gate_may_route(&push, WIRE_SUBSCRIBE, &roomA, here));
	assert_false(gate_may_route(&sub, WIRE_SUBSCRIBE, &roomB, here));
	assert_true(gate_may_route(&push, WIRE_PUSH, &roomA, here));
	assert_true(gate_may_route(&push, WIRE_STREAM_OPEN, &roomA, here));
	assert_false(gate_may_route(&sub, WIRE_PUSH, &roomA, here));
	assert_false(gate_may_route(&sub, WIRE_STREAM_OPEN, &roomA, here));
	/* INFO: either */
	assert_true(gate_may_route(&sub, WIRE_INFO, &roomA, here));
	assert_true(gate_may_route(&push, WIRE_INFO, &roomA, here));
	assert_false(gate_may_route(&none, WIRE_INFO, &roomA, here));
	/* a room held here passes: its handler checks (the owner included) */
	assert_false(gate_may_route(&none, WIRE_PUSH, &roomB, here));
	assert_non_null(rooms_create_id(here, ROOM_B, ROOM_ID_LEN, "x", 1, 0));
	assert_true(gate_may_route(&none, WIRE_PUSH, &roomB, here));
	assert_true(gate_may_route(&none, WIRE_SUBSCRIBE, &roomB, here));
	/* other requests pass (the field is not read) */
	assert_true(gate_may_route(&none, WIRE_UNSUBSCRIBE, NULL, here));
	assert_true(gate_may_route(&none, WIRE_PING, NULL, here));
	rooms_free(here);
}

/* ---- creating rooms ---- */

static void test_may_create(void **state)
{
	struct token_grants create = grants(1, NULL, NULL), none = grants(0, NULL, NULL);
	assert_int_equal(gate_may_create(NULL, 0, 10, 0, 2), GATE_CREATE_OK);
	assert_int_equal(gate_may_create(&create, 9, 10, 1, 2), GATE_CREATE_OK);
	/* the grant first, then max_rooms, then the identity's own rooms */
	assert_int_equal(gate_may_create(&none, 10, 10, 2, 2), GATE_CREATE_FORBIDDEN);
	assert_int_equal(gate_may_create(&create, 10, 10, 2, 2), GATE_CREATE_MAX_ROOMS);
	assert_int_equal(gate_may_create(NULL, 11, 10, 0, 2), GATE_CREATE_MAX_ROOMS);
	assert_int_equal(gate_may_create(&create, 9, 10, 2, 2), GATE_CREATE_MAX_OWNED);
	assert_int_equal(gate_may_create(NULL, 0, 0, 0, 2), GATE_CREATE_MAX_ROOMS);
}

/* The guard's owner accounting (quota_count) against gate_may_create: an
 * identity creates up to its limit, is refused, and may create again once
 * one of its rooms is gone; another identity is not affected. */
static void test_owner_limit(void **state)
{
	struct quota_count *owners = quota_count_new();
	assert_non_null(owners);
	const size_t max_owned = 3, max_rooms = 100;
	size_t rooms = 0;
	for (size_t i = 0; i < max_owned; i++) {
		assert_int_equal(gate_may_create(NULL, rooms, max_rooms,
						 quota_count_get(owners, "alice", 5), max_owned),
				 GATE_CREATE_OK);
		assert_int_equal(quota_count_add(owners, "alice", 5, 1), 0);
		rooms++;
	}
	assert_int_equal(
	    gate_may_create(NULL, rooms, max_rooms, quota_count_get(owners, "alice", 5), max_owned),
	    GATE_CREATE_MAX_OWNED);
	assert_int_equal(
	    gate_may_create(NULL, rooms, max_rooms, quota_count_get(owners, "bob", 3), max_owned),
	    GATE_CREATE_OK);
	assert_int_equal(quota_count_add(owners, "alice", 5, -1), 0);
	rooms--;
	assert_int_equal(
	    gate_may_create(NULL, rooms, max_rooms, quota_count_get(owners, "alice", 5), max_owned),
	    GATE_CREATE_OK);
	quota_count_free(owners);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_source_keys),
	    cmocka_unit_test(test_hello_limit),
	    cmocka_unit_test(test_hello_limit_many_sources),
	    cmocka_unit_test(test_bucket_figures),
	    cmocka_unit_test(test_bucket_holds_reads),
	    cmocka_unit_test(test_allowed),
	    cmocka_unit_test(test_may_route),
	    cmocka_unit_test(test_may_create),
	    cmocka_unit_test(test_owner_limit),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}

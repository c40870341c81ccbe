/*
 * Unit tests for stream/room: random ids, the room table, owner and grants,
 * sequence numbers, the activity list behind idle expiry, and subscriptions.
 * Lifetime mistakes (leaks, double frees) are left to AddressSanitizer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "stream/room.h"

#define ID_DRAWS 10000

static int group_setup(void **state)
{
	return sodium_init() < 0 ? -1 : 0;
}

static int setup(void **state)
{
	struct rooms *t = rooms_new(4);
	*state = t;
	return t ? 0 : -1;
}

static int teardown(void **state)
{
	rooms_free(*state);
	return 0;
}

/* Creates a room owned by a C string. */
static struct room *create(struct rooms *t, const char *owner, uint64_t now)
{
	struct room *r = rooms_create(t, owner, strlen(owner), now);
	assert_non_null(r);
	return r;
}

#define ID(s) (s), strlen(s)

static void assert_valid_id(const char *id)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	assert_int_equal(strlen(id), ROOM_ID_LEN);
	assert_int_equal(strspn(id, alphabet), ROOM_ID_LEN);
}

static int cmp_id(const void *a, const void *b)
{
	return memcmp(a, b, ROOM_ID_LEN);
}

/* ---- ids ---- */

static void test_id_alphabet_and_distinct(void **state)
{
	char(*ids)[ROOM_ID_LEN + 1] = malloc(ID_DRAWS * sizeof(*ids));
	assert_non_null(ids);
	for (size_t i = 0; i < ID_DRAWS; i++) {
		memset(ids[i], '#', sizeof(ids[i]));
		room_id_generate(ids[i]);
		assert_valid_id(ids[i]);
		assert_true(ids[i][0] != '-'); /* would read as an option in the CLI */
	}
	qsort(ids, ID_DRAWS, sizeof(*ids), cmp_id);
	for (size_t i = 1; i < ID_DRAWS; i++)
		assert_true(cmp_id(ids[i - 1], ids[i]) != 0);
	free(ids);
}

/* The ids the table hands out are valid and all findable. */
static void test_create_ids(void **state)
{
	struct rooms *t = *state;
	struct room *r[100];
	for (size_t i = 0; i < 100; i++) {
		r[i] = create(t, "alice", i);
		assert_valid_id(room_id(r[i]));
	}
	assert_int_equal(rooms_count(t), 100);
	for (size_t i = 0; i < 100; i++)
		assert_ptr_equal(rooms_find(t, ID(room_id(r[i]))), r[i]);
}

/* ---- the table ---- */

static void test_create_find_destroy(void **state)
{
	struct rooms *t = *state;
	assert_int_equal(rooms_count(t), 0);

	struct room *a = create(t, "alice", 1000);
	struct room *b = create(t, "bob", 2000);
	assert_int_equal(rooms_count(t), 2);
	assert_ptr_not_equal(a, b);
	assert_string_not_equal(room_id(a), room_id(b));
	assert_int_equal(room_created(a), 1000);
	assert_int_equal(room_last_active(b), 2000);

	/* a copy of the id finds the room: lookups compare bytes, not pointers */
	char id[ROOM_ID_LEN + 1];
	memcpy(id, room_id(a), sizeof(id));
	assert_ptr_equal(rooms_find(t, id, ROOM_ID_LEN), a);
	/* a prefix, a longer string, an unknown id: no room */
	assert_null(rooms_find(t, id, ROOM_ID_LEN - 1));
	assert_null(rooms_find(t, "AAAAAAAAAAAAAAAAA", ROOM_ID_LEN + 1));
	id[0] = id[0] == 'A' ? 'B' : 'A';
	assert_null(rooms_find(t, id, ROOM_ID_LEN));

	memcpy(id, room_id(a), sizeof(id)); /* before a is freed */
	rooms_destroy(t, a);
	assert_int_equal(rooms_count(t), 1);
	assert_null(rooms_find(t, id, ROOM_ID_LEN));
	assert_ptr_equal(rooms_find(t, ID(room_id(b))), b);
	rooms_destroy(t, b);
	assert_int_equal(rooms_count(t), 0);
}

/* rooms_next visits every room exactly once. */
static void test_iterate(void **state)
{
	struct rooms *t = *state;
	struct room *r[50];
	int seen[50] = {0};
	for (size_t i = 0; i < 50; i++)
		r[i] = create(t, "alice", i);

	size_t pos = 0, n = 0;
	struct room *x;
	while ((x = rooms_next(t, &pos)) != NULL) {
		size_t i = 0;
		while (i < 50 && r[i] != x)
			i++;
		assert_true(i < 50);
		seen[i]++;
		n++;
	}
	assert_int_equal(n, 50);
	for (size_t i = 0; i < 50; i++)
		assert_int_equal(seen[i], 1);
}

/* ---- owner and grants ---- */

static void test_owner(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	assert_string_equal(room_owner(r), "alice");
	assert_true(room_is_owner(r, ID("alice")));
	assert_false(room_is_owner(r, ID("alic")));
	assert_false(room_is_owner(r, ID("alicea")));
	assert_false(room_is_owner(r, ID("Alice")));
	assert_false(room_is_owner(r, ID("")));
	/* only len bytes count: "alice" inside a longer buffer */
	assert_true(room_is_owner(r, "alice and more", 5));

	/* the owner is copied, not borrowed */
	char owner[] = "carol";
	struct room *c = rooms_create(t, owner, 5, 0);
	assert_non_null(c);
	owner[0] = 'x';
	assert_string_equal(room_owner(c), "carol");
}

static void test_grant_revoke_idempotent(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	assert_int_equal(room_grant_count(r), 0);
	assert_null(room_grant_at(r, 0));

	assert_int_equal(room_grant(r, ID("bob")), 0);
	assert_int_equal(room_grant(r, ID("bob")), 0);
	assert_int_equal(room_grant_count(r), 1);
	assert_string_equal(room_grant_at(r, 0), "bob");
	assert_null(room_grant_at(r, 1));

	assert_int_equal(room_grant(r, ID("carol")), 0);
	assert_int_equal(room_grant_count(r), 2);

	room_revoke(r, ID("bob"));
	room_revoke(r, ID("bob"));
	room_revoke(r, ID("nobody"));
	assert_int_equal(room_grant_count(r), 1);
	assert_string_equal(room_grant_at(r, 0), "carol");

	room_revoke(r, ID("carol"));
	assert_int_equal(room_grant_count(r), 0);
	assert_null(room_grant_at(r, 0));
}

/* rooms_new(4): the fifth distinct grant is refused; re-granting one already
 * on the list is still fine, and a revoke makes room again. */
static void test_max_grants(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	const char *who[] = {"g0", "g1", "g2", "g3"};

	for (size_t i = 0; i < 4; i++)
		assert_int_equal(room_grant(r, ID(who[i])), 0);
	assert_int_equal(room_grant(r, ID("g4")), -1);
	assert_int_equal(room_grant_count(r), 4);
	assert_false(room_may_push(r, ID("g4")));
	assert_int_equal(room_grant(r, ID("g2")), 0);

	room_revoke(r, ID("g1"));
	assert_int_equal(room_grant(r, ID("g4")), 0);
	assert_int_equal(room_grant_count(r), 4);
	assert_true(room_may_push(r, ID("g4")));
	assert_false(room_may_push(r, ID("g1")));
}

static void test_zero_max_grants(void **state)
{
	struct rooms *t = rooms_new(0);
	assert_non_null(t);
	struct room *r = create(t, "alice", 0);
	assert_int_equal(room_grant(r, ID("bob")), -1);
	assert_int_equal(room_grant_count(r), 0);
	rooms_free(t);
}

static void test_may_push(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	assert_int_equal(room_grant(r, ID("bob")), 0);
	assert_int_equal(room_grant(r, ID("carol")), 0);
	room_revoke(r, ID("carol"));

	assert_true(room_may_push(r, ID("alice")));  /* owner */
	assert_true(room_may_push(r, ID("bob")));    /* grantee */
	assert_false(room_may_push(r, ID("carol"))); /* revoked */
	assert_false(room_may_push(r, ID("dave")));  /* stranger */
	assert_false(room_may_push(r, ID("bo")));    /* prefix of a grantee */
	assert_false(room_may_push(r, ID("bobby")));
	assert_false(room_may_push(r, ID("")));

	/* a grant is not ownership */
	assert_false(room_is_owner(r, ID("bob")));

	/* grants belong to one room */
	struct room *other = create(t, "zed", 0);
	assert_false(room_may_push(other, ID("bob")));
	assert_false(room_may_push(other, ID("alice")));
}

/* ---- sequence and counters ---- */

static void test_seq(void **state)
{
	struct rooms *t = *state;
	struct room *a = create(t, "alice", 0);
	struct room *b = create(t, "alice", 0);
	assert_int_equal(room_seq(a), 0);

	uint64_t prev = 0;
	for (int i = 0; i < 1000; i++) {
		uint64_t s = room_next_seq(a);
		assert_true(s == prev + 1);
		assert_true(room_seq(a) == s);
		prev = s;
	}
	/* each room has its own sequence */
	assert_int_equal(room_next_seq(b), 1);
	assert_int_equal(room_seq(a), 1000);
}

static void test_counters(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	assert_int_equal(room_msgs(r), 0);
	assert_int_equal(room_bytes(r), 0);
	room_count(r, 10);
	room_count(r, 0);
	room_count(r, 5000);
	assert_int_equal(room_msgs(r), 3);
	assert_int_equal(room_bytes(r), 5010);
}

/* ---- activity and idle expiry ---- */

static void test_idle_order(void **state)
{
	struct rooms *t = *state;
	assert_null(rooms_idle(t, 1000000, 0));

	struct room *a = create(t, "alice", 100);
	struct room *b = create(t, "alice", 200);
	struct room *c = create(t, "alice", 300);

	/* the head is the oldest, returned only once idle long enough */
	assert_ptr_equal(rooms_idle(t, 350, 250), a);
	assert_null(rooms_idle(t, 349, 250));
	assert_null(rooms_idle(t, 150, 100));
	/* a clock behind the room's activity is not idleness */
	assert_null(rooms_idle(t, 50, 0));

	/* touching a sends it to the back: b is now the oldest */
	room_touch(t, a, 400);
	assert_int_equal(room_last_active(a), 400);
	assert_ptr_equal(rooms_idle(t, 1000, 100), b);

	/* touching the newest room keeps the order */
	room_touch(t, a, 450);
	assert_ptr_equal(rooms_idle(t, 1000, 100), b);

	/* an expiry loop pops oldest first: b (200), c (300), a (450) */
	struct room *want[] = {b, c, a};
	for (size_t i = 0; i < 3; i++) {
		struct room *r = rooms_idle(t, 1000, 100);
		assert_ptr_equal(r, want[i]);
		rooms_destroy(t, r);
	}
	assert_null(rooms_idle(t, 1000, 0));
	assert_int_equal(rooms_count(t), 0);
}

/* Expiry stops at the first room that is not idle long enough. */
static void test_idle_stops(void **state)
{
	struct rooms *t = *state;
	struct room *a = create(t, "alice", 100);
	struct room *b = create(t, "alice", 200);
	create(t, "alice", 900);
	room_touch(t, b, 950);

	size_t expired = 0;
	struct room *r;
	while ((r = rooms_idle(t, 1000, 500)) != NULL) {
		assert_ptr_equal(r, a);
		rooms_destroy(t, r);
		expired++;
	}
	assert_int_equal(expired, 1);
	assert_int_equal(rooms_count(t), 2);
}

/* ---- subscriptions ---- */

static void test_subscribe_order(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	int who[4];
	struct room_sub *s[4];

	assert_int_equal(room_sub_count(r), 0);
	assert_null(room_subs(r));
	for (size_t i = 0; i < 4; i++) {
		s[i] = room_subscribe(r, &who[i]);
		assert_non_null(s[i]);
		assert_ptr_equal(room_sub_who(s[i]), &who[i]);
		assert_ptr_equal(room_sub_room(s[i]), r);
	}
	assert_int_equal(room_sub_count(r), 4);

	size_t i = 0;
	for (struct room_sub *x = room_subs(r); x; x = room_sub_next(x))
		assert_ptr_equal(x, s[i++]);
	assert_int_equal(i, 4);

	/* unsubscribing the second and the last keeps the others in order */
	room_unsubscribe(s[1]);
	room_unsubscribe(s[3]);
	assert_int_equal(room_sub_count(r), 2);
	struct room_sub *x = room_subs(r);
	assert_ptr_equal(x, s[0]);
	x = room_sub_next(x);
	assert_ptr_equal(x, s[2]);
	assert_null(room_sub_next(x));

	/* a new subscription goes to the end */
	s[1] = room_subscribe(r, &who[1]);
	assert_ptr_equal(room_sub_next(s[2]), s[1]);
	assert_int_equal(room_sub_count(r), 3);
}

/* The documented way to drop subscriptions while iterating: fetch next first. */
static void test_unsubscribe_while_iterating(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	int who[6];
	for (size_t i = 0; i < 6; i++)
		assert_non_null(room_subscribe(r, &who[i]));

	size_t visited = 0;
	struct room_sub *next;
	for (struct room_sub *x = room_subs(r); x; x = next) {
		next = room_sub_next(x);
		int *w = room_sub_who(x);
		assert_ptr_equal(w, &who[visited]);
		if ((w - who) % 2 == 0)
			room_unsubscribe(x);
		visited++;
	}
	assert_int_equal(visited, 6);
	assert_int_equal(room_sub_count(r), 3);
	size_t k = 1;
	for (struct room_sub *x = room_subs(r); x; x = room_sub_next(x), k += 2)
		assert_ptr_equal(room_sub_who(x), &who[k]);
	assert_int_equal(k, 7);
}

/* A subscription referenced by a byte stream outlives its unsubscribe: it
 * leaves the room at once, forgets who and room, and is freed by the last
 * unref (ASan reports a leak or a use after free otherwise). */
static void test_sub_ref_outlives_unsubscribe(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	int who;
	struct room_sub *s = room_subscribe(r, &who);
	assert_non_null(s);
	assert_int_equal(room_sub_set_identity(s, ID("bob")), 0);
	assert_ptr_equal(room_sub_ref(s), s);

	room_unsubscribe(s);
	assert_int_equal(room_sub_count(r), 0);
	assert_null(room_subs(r));
	assert_null(room_sub_who(s));
	assert_null(room_sub_room(s));
	assert_string_equal(room_sub_identity(s), "bob");
	room_sub_unref(s);
}

/* The same when the whole room goes while a stream still holds the sub. */
static void test_sub_ref_outlives_room(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	int who;
	struct room_sub *s = room_subscribe(r, &who);
	assert_non_null(s);
	assert_non_null(room_sub_ref(s));
	assert_non_null(room_sub_ref(s));
	assert_int_equal(room_sub_add_topic(s, ID("video"), 4), 0);

	rooms_destroy(t, r);
	assert_null(room_sub_who(s));
	assert_null(room_sub_room(s));
	assert_true(room_sub_wants(s, ID("video")));
	room_sub_unref(s);
	room_sub_unref(s);
}

static void test_sub_identity(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	int who;
	struct room_sub *s = room_subscribe(r, &who);
	assert_non_null(s);
	assert_string_equal(room_sub_identity(s), "");

	char name[] = "bob-and-more";
	assert_int_equal(room_sub_set_identity(s, name, 3), 0);
	name[0] = 'x'; /* copied */
	assert_string_equal(room_sub_identity(s), "bob");
	assert_int_equal(room_sub_set_identity(s, ID("carol")), 0);
	assert_string_equal(room_sub_identity(s), "carol");
}

static void test_sub_topics(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	int who;
	struct room_sub *s = room_subscribe(r, &who);
	assert_non_null(s);

	/* no topic named: every stream */
	assert_true(room_sub_wants(s, ID("anything")));
	assert_true(room_sub_wants(s, ID("")));

	assert_int_equal(room_sub_add_topic(s, ID("audio"), 2), 0);
	assert_int_equal(room_sub_add_topic(s, ID("video"), 2), 0);
	assert_int_equal(room_sub_add_topic(s, ID("chat"), 2), -1);
	assert_true(room_sub_wants(s, ID("audio")));
	assert_true(room_sub_wants(s, ID("video")));
	assert_false(room_sub_wants(s, ID("chat")));
	assert_false(room_sub_wants(s, ID("vid")));
	assert_false(room_sub_wants(s, ID("videos")));
	assert_false(room_sub_wants(s, ID("")));
}

static void test_stream_count(void **state)
{
	struct rooms *t = *state;
	struct room *r = create(t, "alice", 0);
	assert_int_equal(room_streams(r), 0);
	room_streams_add(r, 3);
	room_streams_add(r, -2);
	assert_int_equal(room_streams(r), 1);
	room_streams_add(r, -1);
	assert_int_equal(room_streams(r), 0);
}

/* Destroying or freeing rooms frees the subscriptions still in them (a leak
 * here is reported by LeakSanitizer when the test exits). */
static void test_free_with_subscriptions(void **state)
{
	struct rooms *t = rooms_new(8);
	assert_non_null(t);
	int who[3];
	for (int k = 0; k < 5; k++) {
		struct room *r = create(t, "alice", (uint64_t)k);
		for (size_t i = 0; i < 3; i++)
			assert_non_null(room_subscribe(r, &who[i]));
		assert_int_equal(room_grant(r, ID("bob")), 0);
		assert_int_equal(room_sub_set_identity(room_subs(r), ID("carol")), 0);
		assert_int_equal(room_sub_add_topic(room_subs(r), ID("t"), 4), 0);
		assert_int_equal(room_sub_count(r), 3);
	}
	struct room *gone = create(t, "alice", 9);
	assert_non_null(room_subscribe(gone, &who[0]));
	rooms_destroy(t, gone);
	assert_int_equal(rooms_count(t), 5);
	rooms_free(t);
	rooms_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_id_alphabet_and_distinct),
		cmocka_unit_test_setup_teardown(test_create_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_find_destroy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iterate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_owner, setup, teardown),
		cmocka_unit_test_setup_teardown(test_grant_revoke_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_grants, setup, teardown),
		cmocka_unit_test(test_zero_max_grants),
		cmocka_unit_test_setup_teardown(test_may_push, setup, teardown),
		cmocka_unit_test_setup_teardown(test_seq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_counters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_stops, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscribe_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsubscribe_while_iterating, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sub_ref_outlives_unsubscribe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sub_ref_outlives_room, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sub_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sub_topics, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_count, setup, teardown),
		cmocka_unit_test(test_free_with_subscriptions),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}

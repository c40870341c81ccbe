/*
 * The placement simulation: 1,000,000 rooms on 10, 100 and 1000 simulated
 * nodes. Checks the properties docs/architecture.md claims for rendezvous
 * placement: balance (the busiest relay at most 1.15x the mean), adding a
 * node moves about 1/(n+1) of the relays (within 10 %) and only to the new
 * node, removing a node moves only its rooms, each to its first backup, and
 * a preference list is the same whatever order the nodes are listed in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <sodium.h>

#include "cluster/place.h"
#include "stream/room.h"

#define ROOMS 1000000
#define SEED  0x5eed5eed5eed5eedull

static char (*ids)[ROOM_ID_LEN + 1];

static int setup(void **state)
{
	if (sodium_init() < 0)
		return -1;
	ids = malloc(sizeof(*ids) * ROOMS);
	if (!ids)
		return -1;
	/* Deterministic ids, shaped like the node's. */
	unsigned char seed[randombytes_SEEDBYTES] = {7};
	unsigned char *raw = malloc((size_t)ROOMS * ROOM_ID_BYTES);
	if (!raw)
		return -1;
	randombytes_buf_deterministic(raw, (size_t)ROOMS * ROOM_ID_BYTES, seed);
	for (size_t i = 0; i < ROOMS; i++)
		sodium_bin2base64(ids[i], ROOM_ID_LEN + 1, raw + i * ROOM_ID_BYTES, ROOM_ID_BYTES,
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	free(raw);
	return 0;
}

static int teardown(void **state)
{
	free(ids);
	return 0;
}

static uint64_t *seeds_for(size_t n, size_t extra)
{
	uint64_t *s = malloc(sizeof(*s) * (n + extra));
	for (size_t i = 0; i < n + extra; i++) {
		char name[32];
		int len = snprintf(name, sizeof(name), "node-%zu", i);
		s[i] = place_node_seed(SEED, name, (size_t)len);
	}
	return s;
}

static void simulate(size_t n)
{
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t *seeds = seeds_for(n, 1);
	size_t *relay = malloc(sizeof(*relay) * ROOMS), *backup = malloc(sizeof(*backup) * ROOMS);
	uint64_t *wrelay = malloc(sizeof(*wrelay) * ROOMS);
	size_t *load = calloc(n, sizeof(*load));
	assert_non_null(relay);
	assert_non_null(backup);
	assert_non_null(wrelay);
	assert_non_null(load);

	for (size_t r = 0; r < ROOMS; r++) {
		size_t order[2];
		assert_int_equal(place_rank(seeds, n, ids[r], ROOM_ID_LEN, order, 2), 2);
		relay[r] = order[0];
		backup[r] = order[1];
		wrelay[r] = place_weight(seeds[order[0]], ids[r], ROOM_ID_LEN);
		load[order[0]]++;
	}
	size_t busiest = 0;
	for (size_t i = 0; i < n; i++)
		if (load[i] > busiest)
			busiest = load[i];
	double mean = (double)ROOMS / (double)n, ratio = (double)busiest / mean;

	/* Adding node n: a room moves iff the new node outweighs its relay. */
	size_t moved = 0;
	for (size_t r = 0; r < ROOMS; r++)
		if (place_weight(seeds[n], ids[r], ROOM_ID_LEN) > wrelay[r])
			moved++;
	double expect = (double)ROOMS / (double)(n + 1);
	/* And with the full ranking over n + 1 nodes, every room either keeps
	 * its relay or goes to the new node (checked on a sample). */
	for (size_t r = 0; r < ROOMS; r += 97) {
		size_t order[1];
		place_rank(seeds, n + 1, ids[r], ROOM_ID_LEN, order, 1);
		assert_true(order[0] == relay[r] || order[0] == n);
	}

	/* Removing node 0: its rooms go to their first backup; no other room
	 * moves. The ranking is over the remaining nodes, listed in another
	 * order (reversed), to check that order does not matter. */
	uint64_t *rest = malloc(sizeof(*rest) * (n - 1));
	for (size_t i = 1; i < n; i++)
		rest[n - 1 - i] = seeds[i];
	size_t others_moved = 0, wrong_backup = 0, orphans = 0;
	for (size_t r = 0; r < ROOMS; r++) {
		size_t order[1];
		place_rank(rest, n - 1, ids[r], ROOM_ID_LEN, order, 1);
		size_t now = n - 1 - order[0]; /* back to the original index */
		if (relay[r] == 0) {
			orphans++;
			if (now != backup[r])
				wrong_backup++;
		} else if (now != relay[r]) {
			others_moved++;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("nodes=%zu rooms=%d busiest/mean=%.3f add-moved=%zu (expected %.0f, %.1f%% off) "
	       "remove: %zu rooms of the removed node, %zu not to their first backup, %zu others "
	       "moved (%.1f s)\n",
	       n, ROOMS, ratio, moved, expect, 100.0 * ((double)moved - expect) / expect, orphans,
	       wrong_backup, others_moved,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	assert_true(ratio <= 1.15);
	assert_true((double)moved >= 0.9 * expect && (double)moved <= 1.1 * expect);
	assert_int_equal(wrong_backup, 0);
	assert_int_equal(others_moved, 0);
	assert_int_equal(orphans, load[0]);
	free(rest);
	free(seeds);
	free(relay);
	free(backup);
	free(wrelay);
	free(load);
}

static void test_10_nodes(void **state)
{
	simulate(10);
}

static void test_100_nodes(void **state)
{
	simulate(100);
}

static void test_1000_nodes(void **state)
{
	simulate(1000);
}

/* Ranking is a pure function of the seeds: the same list on every node,
 * and k larger than n gives every node once. */
static void test_rank_basics(void **state)
{
	uint64_t *seeds = seeds_for(5, 0);
	size_t a[8], b[8];
	assert_int_equal(place_rank(seeds, 5, "room", 4, a, 8), 5);
	assert_int_equal(place_rank(seeds, 5, "room", 4, b, 3), 3);
	assert_memory_equal(a, b, 3 * sizeof(size_t));
	int seen[5] = {0};
	for (int i = 0; i < 5; i++)
		seen[a[i]]++;
	for (int i = 0; i < 5; i++)
		assert_int_equal(seen[i], 1);
	for (int i = 0; i + 1 < 5; i++)
		assert_true(place_weight(seeds[a[i]], "room", 4) >= place_weight(seeds[a[i + 1]], "room", 4));
	assert_int_equal(place_rank(seeds, 0, "room", 4, a, 3), 0);
	/* Another cluster seed, another placement (for some room). */
	int differ = 0;
	for (int r = 0; r < 100 && !differ; r++) {
		char room[16];
		int len = snprintf(room, sizeof(room), "r%d", r);
		uint64_t s2[5];
		for (int i = 0; i < 5; i++) {
			char name[16];
			int nl = snprintf(name, sizeof(name), "node-%d", i);
			s2[i] = place_node_seed(SEED + 1, name, (size_t)nl);
		}
		place_rank(seeds, 5, room, (size_t)len, a, 1);
		place_rank(s2, 5, room, (size_t)len, b, 1);
		differ = a[0] != b[0];
	}
	assert_true(differ);
	free(seeds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rank_basics),
		cmocka_unit_test(test_10_nodes),
		cmocka_unit_test(test_100_nodes),
		cmocka_unit_test(test_1000_nodes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

/*
 * Unit tests for stream/quota: windows start, count and expire per key; the
 * window table never holds more than its slots and evicts the oldest entry
 * when a key's probe run is full; exact counts go up and down and vanish at
 * zero.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "stream/quota.h"

static int group_setup(void **state)
{
	return sodium_init() < 0 ? -1 : 0;
}

static void test_window_counts(void **state)
{
	struct quota_window *q = quota_window_new(64, 60000);
	assert_non_null(q);
	const uint8_t a[4] = {10, 0, 0, 1}, b[4] = {10, 0, 0, 2};
	assert_int_equal(quota_window_get(q, a, 4, 1000), 0);
	for (uint64_t i = 1; i <= 5; i++)
		assert_int_equal(quota_window_hit(q, a, 4, 1000 + (i - 1) * 10), i);
	assert_int_equal(quota_window_get(q, a, 4, 2000), 5);
	assert_int_equal(quota_window_get(q, b, 4, 2000), 0);
	assert_int_equal(quota_window_hit(q, b, 4, 2000), 1);
	/* the window runs from the first event: 60 s later it starts over */
	assert_int_equal(quota_window_get(q, a, 4, 1000 + 59999), 5);
	assert_int_equal(quota_window_get(q, a, 4, 1000 + 60000), 0);
	assert_int_equal(quota_window_hit(q, a, 4, 1000 + 60000), 1);
	assert_int_equal(quota_window_live(q, 1000 + 60000), 2);
	assert_int_equal(quota_window_live(q, 2000 + 60000), 1);
	/* keys differing in length are different keys; longer ones are cut */
	assert_int_equal(quota_window_get(q, a, 3, 61000), 0);
	uint8_t longk[40];
	memset(longk, 7, sizeof(longk));
	quota_window_hit(q, longk, sizeof(longk), 61000);
	assert_int_equal(quota_window_get(q, longk, QUOTA_WKEY_MAX, 61000), 1);
	assert_int_equal(quota_window_hit(q, a, 0, 61000), 0);
	quota_window_free(q);
	quota_window_free(NULL);
}

static void test_window_bounded(void **state)
{
	/* 100000 sources into 64 slots: never more than 64 entries, and the
	 * most recent source is always counted */
	struct quota_window *q = quota_window_new(64, 60000);
	assert_non_null(q);
	for (uint32_t i = 0; i < 100000; i++) {
		uint8_t k[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
		assert_int_equal(quota_window_hit(q, k, 4, 1000 + i / 1000), 1);
		assert_int_equal(quota_window_get(q, k, 4, 1000 + i / 1000), 1);
	}
	assert_true(quota_window_live(q, 1100) <= 64);
	/* a busy source survives a flood of others when its entry is newer */
	uint8_t hot[4] = {1, 2, 3, 4};
	for (int i = 0; i < 10; i++)
		quota_window_hit(q, hot, 4, 5000);
	assert_int_equal(quota_window_get(q, hot, 4, 5000), 10);
	quota_window_free(q);
}

static void test_counts(void **state)
{
	struct quota_count *q = quota_count_new();
	assert_non_null(q);
	assert_int_equal(quota_count_get(q, "alice", 5), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(quota_count_add(q, "alice", 5, 1), 0);
	assert_int_equal(quota_count_add(q, "bob", 3, 1), 0);
	assert_int_equal(quota_count_get(q, "alice", 5), 3);
	assert_int_equal(quota_count_get(q, "alic", 4), 0);
	assert_int_equal(quota_count_keys(q), 2);
	assert_int_equal(quota_count_add(q, "bob", 3, -1), 0);
	assert_int_equal(quota_count_get(q, "bob", 3), 0);
	assert_int_equal(quota_count_keys(q), 1);
	/* never below zero, absent keys are fine */
	assert_int_equal(quota_count_add(q, "bob", 3, -1), 0);
	assert_int_equal(quota_count_add(q, "alice", 5, -10), 0);
	assert_int_equal(quota_count_keys(q), 0);
	/* many keys, freed with the table */
	char k[16];
	for (int i = 0; i < 5000; i++) {
		snprintf(k, sizeof(k), "id%d", i);
		assert_int_equal(quota_count_add(q, k, strlen(k), 2), 0);
	}
	assert_int_equal(quota_count_keys(q), 5000);
	assert_int_equal(quota_count_get(q, "id4999", 6), 2);
	quota_count_free(q);
	quota_count_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_window_counts),
		cmocka_unit_test(test_window_bounded),
		cmocka_unit_test(test_counts),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}

/*
 * Unit tests for stream/smap: the basic operations, then random insert /
 * replace / delete sequences checked against a shadow array, which is what
 * exercises backward-shift deletion (a wrong shift loses or hides keys), and
 * the table's size as it grows and shrinks back.
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

#include "stream/smap.h"

#define BIG 100000

/* Keys for the table-wide tests: keys[i] is "k<i>", its value &vals[i] or
 * &alts[i]; shadow[i] is what the map must hold for keys[i] (NULL: absent). */
struct fx {
	struct smap *m;
	size_t n;
	char (*keys)[16];
	int *vals, *alts;
	void **shadow;
	size_t live;
	uint64_t rng;
};

static int group_setup(void **state)
{
	return sodium_init() < 0 ? -1 : 0;
}

static struct fx *fx_new(size_t n)
{
	struct fx *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->m = smap_new();
	f->n = n;
	f->keys = calloc(n, sizeof(*f->keys));
	f->vals = calloc(n, sizeof(*f->vals));
	f->alts = calloc(n, sizeof(*f->alts));
	f->shadow = calloc(n, sizeof(*f->shadow));
	assert_true(f->m && f->keys && f->vals && f->alts && f->shadow);
	for (size_t i = 0; i < n; i++)
		snprintf(f->keys[i], sizeof(f->keys[i]), "k%zu", i);
	f->rng = 0x9e3779b97f4a7c15ull;
	return f;
}

static void fx_free(struct fx *f)
{
	smap_free(f->m);
	free(f->keys);
	free(f->vals);
	free(f->alts);
	free(f->shadow);
	free(f);
}

static uint64_t rnd(struct fx *f)
{
	/* xorshift64: deterministic, so a failure replays */
	f->rng ^= f->rng << 13;
	f->rng ^= f->rng >> 7;
	f->rng ^= f->rng << 17;
	return f->rng;
}

#define KEY(f, i) (f)->keys[i], strlen((f)->keys[i])

static void fx_put(struct fx *f, size_t i, void *val)
{
	assert_int_equal(smap_put(f->m, KEY(f, i), val), 0);
	if (!f->shadow[i])
		f->live++;
	f->shadow[i] = val;
}

static void fx_del(struct fx *f, size_t i)
{
	assert_ptr_equal(smap_del(f->m, KEY(f, i)), f->shadow[i]);
	if (f->shadow[i])
		f->live--;
	f->shadow[i] = NULL;
}

/* Every key maps to exactly its shadow value, and the count agrees. */
static void fx_check(struct fx *f)
{
	assert_int_equal(smap_count(f->m), f->live);
	for (size_t i = 0; i < f->n; i++)
		if (smap_get(f->m, KEY(f, i)) != f->shadow[i])
			fail_msg("key %s: map and shadow disagree", f->keys[i]);
}

/* Random puts (inserts and replacements), deletes and gets on keys [0, n). */
static void fx_churn(struct fx *f, size_t ops, size_t check_every)
{
	for (size_t k = 1; k <= ops; k++) {
		size_t i = (size_t)(rnd(f) % f->n);
		switch (rnd(f) % 3) {
		case 0:
			fx_put(f, i, f->shadow[i] == &f->vals[i] ? &f->alts[i] : &f->vals[i]);
			break;
		case 1:
			fx_del(f, i);
			break;
		default:
			assert_ptr_equal(smap_get(f->m, KEY(f, i)), f->shadow[i]);
		}
		if (k % check_every == 0)
			fx_check(f);
	}
	fx_check(f);
}

/* ---- basics ---- */

static void test_put_get_del_replace(void **state)
{
	struct smap *m = smap_new();
	int a, b, c;
	assert_non_null(m);
	assert_int_equal(smap_count(m), 0);
	assert_null(smap_get(m, "alpha", 5));
	assert_null(smap_del(m, "alpha", 5));

	assert_int_equal(smap_put(m, "alpha", 5, &a), 0);
	assert_int_equal(smap_put(m, "beta", 4, &b), 0);
	assert_int_equal(smap_count(m), 2);
	assert_ptr_equal(smap_get(m, "alpha", 5), &a);
	assert_ptr_equal(smap_get(m, "beta", 4), &b);
	/* only the len bytes given are the key */
	assert_ptr_equal(smap_get(m, "alphabet", 5), &a);
	assert_null(smap_get(m, "alph", 4));
	assert_null(smap_get(m, "alphaa", 6));

	/* replace keeps the count */
	assert_int_equal(smap_put(m, "alpha", 5, &c), 0);
	assert_int_equal(smap_count(m), 2);
	assert_ptr_equal(smap_get(m, "alpha", 5), &c);

	assert_ptr_equal(smap_del(m, "alpha", 5), &c);
	assert_int_equal(smap_count(m), 1);
	assert_null(smap_get(m, "alpha", 5));
	assert_null(smap_del(m, "alpha", 5));
	assert_ptr_equal(smap_get(m, "beta", 4), &b);

	smap_free(m);
	smap_free(NULL);
}

/* Keys are bytes: NULs count, length counts, the empty key is a key. */
static void test_binary_keys(void **state)
{
	struct smap *m = smap_new();
	int v[4];
	assert_non_null(m);
	assert_int_equal(smap_put(m, "ab", 2, &v[0]), 0);
	assert_int_equal(smap_put(m, "ab\0", 3, &v[1]), 0);
	assert_int_equal(smap_put(m, "ab\0c", 4, &v[2]), 0);
	assert_int_equal(smap_put(m, "", 0, &v[3]), 0);
	assert_int_equal(smap_count(m), 4);
	assert_ptr_equal(smap_get(m, "ab", 2), &v[0]);
	assert_ptr_equal(smap_get(m, "ab\0", 3), &v[1]);
	assert_ptr_equal(smap_get(m, "ab\0c", 4), &v[2]);
	assert_ptr_equal(smap_get(m, "", 0), &v[3]);
	assert_null(smap_get(m, "ab\0d", 4));
	assert_ptr_equal(smap_del(m, "", 0), &v[3]);
	assert_null(smap_get(m, "", 0));
	smap_free(m);
}

/* Keys are borrowed; a replacing put takes the new key's bytes, so the old
 * buffer (often inside the old value) may go away. */
static void test_replace_takes_new_key(void **state)
{
	struct smap *m = smap_new();
	char *old = strdup("room-id");
	char fresh[] = "room-id";
	int a, b;
	assert_non_null(m);
	assert_non_null(old);
	assert_int_equal(smap_put(m, old, 7, &a), 0);
	assert_int_equal(smap_put(m, fresh, 7, &b), 0);
	free(old); /* ASan reports it if the map still reads old's bytes */
	assert_ptr_equal(smap_get(m, "room-id", 7), &b);
	assert_ptr_equal(smap_del(m, "room-id", 7), &b);
	assert_int_equal(smap_count(m), 0);
	smap_free(m);
}

/* ---- growth, churn, iteration ---- */

/* Every key stays reachable through each doubling. */
static void test_growth(void **state)
{
	struct fx *f = fx_new(600);
	for (size_t i = 0; i < f->n; i++) {
		fx_put(f, i, &f->vals[i]);
		fx_check(f);
	}
	fx_free(f);
}

/* Few keys in a small table: deletions shift across the table's wrap-around
 * often; the whole map is checked after every operation. */
static void test_small_churn(void **state)
{
	struct fx *f = fx_new(7);
	fx_churn(f, 20000, 1);
	fx_free(f);
}

/* 100,000 keys, then random deletes, re-inserts and replacements. */
static void test_big_churn(void **state)
{
	struct fx *f = fx_new(BIG);
	for (size_t i = 0; i < f->n; i++)
		fx_put(f, i, &f->vals[i]);
	fx_check(f);

	/* delete a random half, then churn */
	for (size_t i = 0; i < f->n; i++)
		if (rnd(f) & 1)
			fx_del(f, i);
	fx_check(f);
	fx_churn(f, 300000, 50000);

	/* delete everything that is left */
	for (size_t i = 0; i < f->n; i++)
		fx_del(f, i);
	fx_check(f);
	assert_int_equal(smap_count(f->m), 0);
	fx_free(f);
}

/* The smallest capacity a table of count entries may have (load <= 1/2),
 * and the largest it may keep (load >= 1/8 unless at the minimum of 16). */
static void check_capacity(const struct smap *m)
{
	size_t cap = smap_capacity(m), count = smap_count(m);
	assert_true(cap >= 16 && (cap & (cap - 1)) == 0);
	assert_true(count * 2 <= cap);
	if (cap > 16)
		assert_true(count >= cap / 8);
}

/* Grow to 100,000 keys, then shrink back by random deletes with churn in
 * between, checked against the shadow and for the capacity bounds; empty,
 * the table is back at its first size, and it grows again. */
static void test_grow_then_shrink(void **state)
{
	struct fx *f = fx_new(BIG);
	assert_int_equal(smap_capacity(f->m), 16);
	for (size_t i = 0; i < f->n; i++) {
		fx_put(f, i, &f->vals[i]);
		check_capacity(f->m);
	}
	fx_check(f);
	size_t peak = smap_capacity(f->m);
	assert_true(peak >= 2 * BIG);

	/* Delete in a random order (a shuffled index), checking the whole map
	 * now and then and the bounds after every delete. */
	size_t *order = malloc(f->n * sizeof(*order));
	assert_non_null(order);
	for (size_t i = 0; i < f->n; i++)
		order[i] = i;
	for (size_t i = f->n - 1; i > 0; i--) {
		size_t j = (size_t)(rnd(f) % (i + 1)), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	for (size_t k = 0; k < f->n; k++) {
		fx_del(f, order[k]);
		check_capacity(f->m);
		if (k % 20000 == 0)
			fx_check(f);
		if (k == f->n * 9 / 10) {
			/* a tenth left: churn on the small table */
			assert_true(smap_capacity(f->m) < peak);
			fx_churn(f, 100000, 25000);
			check_capacity(f->m);
		}
	}
	/* what churn put back, delete too */
	for (size_t i = 0; i < f->n; i++) {
		fx_del(f, i);
		check_capacity(f->m);
	}
	fx_check(f);
	assert_int_equal(smap_count(f->m), 0);
	assert_int_equal(smap_capacity(f->m), 16);

	/* and it grows again */
	for (size_t i = 0; i < 1000; i++)
		fx_put(f, i, &f->alts[i]);
	fx_check(f);
	check_capacity(f->m);
	free(order);
	fx_free(f);
}

/* At either resize threshold, alternating inserts and deletes do not resize
 * the table each time: one resize, then none. */
static void test_no_thrash(void **state)
{
	struct fx *f = fx_new(4096);
	/* up to the grow threshold of a 1024-slot table and one over */
	for (size_t i = 0; i <= 512; i++)
		fx_put(f, i, &f->vals[i]);
	assert_int_equal(smap_capacity(f->m), 2048);
	for (int k = 0; k < 1000; k++) {
		fx_del(f, 512);
		assert_int_equal(smap_capacity(f->m), 2048);
		fx_put(f, 512, &f->vals[512]);
		assert_int_equal(smap_capacity(f->m), 2048);
	}
	/* down to the shrink threshold of the 2048-slot table: 255 left
	 * shrinks it once */
	for (size_t i = 512; i >= 256; i--)
		fx_del(f, i);
	assert_int_equal(smap_count(f->m), 256);
	assert_int_equal(smap_capacity(f->m), 2048);
	fx_del(f, 255);
	assert_int_equal(smap_capacity(f->m), 1024);
	for (int k = 0; k < 1000; k++) {
		fx_put(f, 255, &f->vals[255]);
		assert_int_equal(smap_capacity(f->m), 1024);
		fx_del(f, 255);
		assert_int_equal(smap_capacity(f->m), 1024);
	}
	fx_check(f);
	fx_free(f);
}

/* Iteration that starts over after each delete (as the node's loops do)
 * visits every value while the table shrinks under it. */
static void test_delete_while_iterating(void **state)
{
	struct fx *f = fx_new(3000);
	for (size_t i = 0; i < f->n; i++)
		fx_put(f, i, &f->vals[i]);
	size_t pos = 0, deleted = 0;
	void *v;
	while ((v = smap_next(f->m, &pos)) != NULL) {
		size_t i = (size_t)((int *)v - f->vals);
		if (i % 5 == 0)
			continue; /* kept */
		fx_del(f, i);
		deleted++;
		pos = 0;
	}
	assert_int_equal(deleted, f->n - (f->n + 4) / 5);
	fx_check(f);
	check_capacity(f->m);
	fx_free(f);
}

/* Iteration returns every stored value exactly once, after deletes too. */
static void test_iteration(void **state)
{
	struct fx *f = fx_new(5000);
	for (size_t i = 0; i < f->n; i++)
		fx_put(f, i, &f->vals[i]);
	for (size_t i = 0; i < f->n; i += 3)
		fx_del(f, i);

	int *seen = calloc(f->n, sizeof(*seen));
	assert_non_null(seen);
	size_t pos = 0, count = 0;
	void *v;
	while ((v = smap_next(f->m, &pos)) != NULL) {
		int *p = v;
		assert_true(p >= f->vals && p < f->vals + f->n);
		seen[p - f->vals]++;
		count++;
	}
	assert_int_equal(count, f->live);
	for (size_t i = 0; i < f->n; i++)
		assert_int_equal(seen[i], f->shadow[i] ? 1 : 0);
	/* the end stays the end */
	assert_null(smap_next(f->m, &pos));
	free(seen);
	fx_free(f);
}

static void test_iterate_empty(void **state)
{
	struct smap *m = smap_new();
	size_t pos = 0;
	assert_non_null(m);
	assert_null(smap_next(m, &pos));
	smap_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_del_replace),
		cmocka_unit_test(test_binary_keys),
		cmocka_unit_test(test_replace_takes_new_key),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_small_churn),
		cmocka_unit_test(test_big_churn),
		cmocka_unit_test(test_grow_then_shrink),
		cmocka_unit_test(test_no_thrash),
		cmocka_unit_test(test_delete_while_iterating),
		cmocka_unit_test(test_iteration),
		cmocka_unit_test(test_iterate_empty),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}

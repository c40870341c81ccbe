/*
 * Unit tests for stream/blob: the bytes live exactly as long as the last
 * reference. A premature free shows up as a use-after-free and a missed one as
 * a leak, both reported by AddressSanitizer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "stream/blob.h"

static void test_new(void **state)
{
	struct blob *b = blob_new(64);
	assert_non_null(b);
	assert_int_equal(blob_len(b), 64);
	uint8_t *p = blob_data(b);
	assert_non_null(p);
	memset(p, 0x5a, 64); /* all 64 bytes are writable */
	assert_int_equal(p[63], 0x5a);
	blob_unref(b);
}

static void test_empty(void **state)
{
	struct blob *b = blob_new(0);
	assert_non_null(b);
	assert_int_equal(blob_len(b), 0);
	blob_unref(b);
}

/* Each reference keeps the bytes alive; they go with the last one. */
static void test_ref_unref_lifetime(void **state)
{
	struct blob *b = blob_new(5);
	assert_non_null(b);
	memcpy(blob_data(b), "hello", 5);

	struct blob *r[3];
	for (int i = 0; i < 3; i++) {
		r[i] = blob_ref(b);
		assert_ptr_equal(r[i], b);
	}
	blob_unref(b); /* the creator lets go first, as the fan-out path does */
	for (int i = 0; i < 3; i++) {
		/* readable through every remaining reference */
		assert_memory_equal(blob_data(r[i]), "hello", 5);
		assert_int_equal(blob_len(r[i]), 5);
		blob_unref(r[i]);
	}
}

/* Many receivers, dropped in any order. */
static void test_many_refs(void **state)
{
	struct blob *b = blob_new(1000);
	assert_non_null(b);
	memset(blob_data(b), 0xab, 1000);
	for (int i = 0; i < 999; i++)
		blob_ref(b);
	for (int i = 0; i < 999; i++) {
		assert_int_equal(blob_data(b)[i], 0xab);
		blob_unref(b);
	}
	assert_int_equal(blob_data(b)[999], 0xab);
	blob_unref(b);
}

struct released {
	int calls;
	void *arg;
	size_t tag;
};

static void on_release(void *arg, size_t tag)
{
	struct released *r = arg;
	r->calls++;
	r->arg = arg;
	r->tag = tag;
}

/* The release callback runs once, on the last unref, with its arg and tag. */
static void test_on_release(void **state)
{
	struct released rel = {0};
	struct blob *b = blob_new(16);
	assert_non_null(b);
	blob_on_release(b, on_release, &rel, 4096);
	blob_ref(b);
	blob_ref(b);
	blob_unref(b);
	blob_unref(b);
	assert_int_equal(rel.calls, 0);
	blob_unref(b);
	assert_int_equal(rel.calls, 1);
	assert_ptr_equal(rel.arg, &rel);
	assert_int_equal(rel.tag, 4096);
}

static void test_unref_null(void **state)
{
	blob_unref(NULL);
	struct blob *b = blob_new(1);
	assert_non_null(b);
	blob_unref(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_ref_unref_lifetime),
		cmocka_unit_test(test_many_refs),
		cmocka_unit_test(test_on_release),
		cmocka_unit_test(test_unref_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * Unit tests for stream/strm: what a stream taken over from a replica
 * starts with. The XXH3 state exported at one node and imported at another
 * must go on to the digest of every byte, as if one node had hashed them all
 * (a stream taken over once ended with a wrong checksum: the import dropped
 * the state's pointer to the default secret).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "stream/strm.h"

static void no_kick(void *arg)
{
	(void)arg;
}

static void test_hash_moves(void **state)
{
	static uint8_t data[300000]; /* past XXH3's midsize and several blocks */
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 131 + (i >> 16));
	/* every cut: short, midsize, long, on and off block boundaries */
	const size_t cuts[] = {0, 1, 100, 240, 241, 1024, 65536, 200001, sizeof(data)};
	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		struct strms *t = strms_new(no_kick, NULL);
		assert_non_null(t);
		struct strm *a = strms_open(t, "a", 1, NULL, NULL, "", 0, -1, 1 << 20, 0);
		struct strm *b = strms_open(t, "b", 1, NULL, NULL, "", 0, -1, 1 << 20, 0);
		assert_non_null(a);
		assert_non_null(b);
		strm_append(a, data, cuts[k], 0);
		uint8_t buf[1024];
		size_t len = strm_hash_export(a, buf, sizeof(buf));
		assert_int_equal(len, strm_hash_size());
		assert_int_equal(strm_hash_import(b, buf, len), 0);
		assert_int_equal(strm_hash_import(b, buf, len - 1), -1);
		strm_append(b, data + cuts[k], sizeof(data) - cuts[k], 0);
		assert_true(strm_digest(b) == XXH3_64bits(data, sizeof(data)));
		strms_free(t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hash_moves),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

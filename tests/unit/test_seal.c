/* The cluster key: keygen and load, datagram sealing, derivations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster/seal.h"

static void tmpname(char *out, size_t cap, const char *tag)
{
	snprintf(out, cap, "/tmp/vroom-test-seal-%d-%s", (int)getpid(), tag);
	unlink(out);
}

static void test_keygen_load(void **state)
{
	char path[128], why[256];
	tmpname(path, sizeof(path), "a");
	assert_int_equal(seal_keygen(path, why, sizeof(why)), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	/* It never replaces an existing key. */
	assert_int_equal(seal_keygen(path, why, sizeof(why)), -1);
	assert_non_null(strstr(why, path));
	struct seal *a = seal_load(path, why, sizeof(why));
	struct seal *b = seal_load(path, why, sizeof(why));
	assert_non_null(a);
	assert_non_null(b);
	assert_true(seal_placement_seed(a) == seal_placement_seed(b));
	assert_memory_equal(seal_link_key(a), seal_link_key(b), 32);
	/* A datagram sealed under one opens under the same key. */
	uint8_t msg[] = "hello cluster", box[sizeof(msg) + SEAL_OVERHEAD], out[sizeof(msg)];
	seal_dgram(a, msg, sizeof(msg), box);
	assert_int_equal(seal_open_dgram(b, box, sizeof(box), out), (long)sizeof(msg));
	assert_memory_equal(out, msg, sizeof(msg));
	seal_free(a);
	seal_free(b);
	unlink(path);
}

static void test_wrong_key_and_tampering(void **state)
{
	uint8_t k1[SEAL_KEY_BYTES] = {1}, k2[SEAL_KEY_BYTES] = {2};
	struct seal *a = seal_from_key(k1), *b = seal_from_key(k2);
	assert_true(seal_placement_seed(a) != seal_placement_seed(b));
	uint8_t msg[64] = "ping", box[sizeof(msg) + SEAL_OVERHEAD], out[sizeof(msg)];
	seal_dgram(a, msg, sizeof(msg), box);
	assert_int_equal(seal_open_dgram(b, box, sizeof(box), out), -1);
	for (size_t i = 0; i < sizeof(box); i += 7) {
		box[i] ^= 0x40;
		assert_int_equal(seal_open_dgram(a, box, sizeof(box), out), -1);
		box[i] ^= 0x40;
	}
	assert_int_equal(seal_open_dgram(a, box, sizeof(box), out), (long)sizeof(msg));
	assert_int_equal(seal_open_dgram(a, box, SEAL_OVERHEAD - 1, out), -1);
	/* Two seals of one message differ (fresh nonces). */
	uint8_t box2[sizeof(box)];
	seal_dgram(a, msg, sizeof(msg), box2);
	assert_memory_not_equal(box, box2, sizeof(box));
	seal_free(a);
	seal_free(b);
}

static void test_bad_key_files(void **state)
{
	char path[128], why[256];
	tmpname(path, sizeof(path), "b");
	assert_null(seal_load(path, why, sizeof(why)));
	assert_non_null(strstr(why, "cannot read"));
	FILE *f = fopen(path, "w");
	fputs("not base64 at all!\n", f);
	fclose(f);
	assert_null(seal_load(path, why, sizeof(why)));
	assert_non_null(strstr(why, "32 bytes"));
	f = fopen(path, "w");
	fputs("AAAA\n", f); /* 3 bytes */
	fclose(f);
	assert_null(seal_load(path, why, sizeof(why)));
	unlink(path);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keygen_load),
		cmocka_unit_test(test_wrong_key_and_tampering),
		cmocka_unit_test(test_bad_key_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

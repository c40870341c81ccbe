/*
 * Unit test for node/mem: after a load that leaves glibc's per-thread cache
 * (tcache) holding chunks scattered over a heap the load grew, malloc_trim
 * alone keeps a page resident for each of them; mem_give_back returns them.
 * The figures are read from /proc/self/statm, so the RSS checks run only
 * with glibc's allocator (not under ASan, whose allocator is another).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <cmocka.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "node/mem.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#define CLASSES 64	   /* tcache bins: requests of 16 * k bytes, k = 1..64 */
#define PER	7	   /* chunks a bin holds */
#define SPACER	(60 << 10) /* under glibc's first mmap threshold: on the heap */

#if defined(__GLIBC__) && !defined(UNDER_ASAN)
static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long size = 0, res = 0;
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &size, &res) != 2)
		res = -1;
	fclose(f);
	return res < 0 ? -1 : res * (sysconf(_SC_PAGESIZE) / 1024);
}
#endif

/* A load's end: small chunks of every cached size, each between two large
 * ones, then everything freed. The first PER freed of each size stay in the
 * cache, one per 60 KiB of heap. */
static void scatter(void)
{
	static void *volatile small[CLASSES * PER * 2], *volatile big[CLASSES * PER * 2];
	size_t n = CLASSES * PER * 2;
	for (size_t i = 0; i < n; i++) {
		big[i] = malloc(SPACER);
		small[i] = malloc((i % CLASSES + 1) * 16);
		assert_non_null(big[i]);
		assert_non_null(small[i]);
		memset(big[i], 1, SPACER); /* resident, as a load's buffers are */
		memset(small[i], 2, (i % CLASSES + 1) * 16);
	}
	for (size_t i = 0; i < n; i++)
		free(big[i]);
	for (size_t i = 0; i < n; i++)
		free(small[i]);
}

static void test_give_back(void **state)
{
#if defined(__GLIBC__) && !defined(UNDER_ASAN)
	scatter();
	malloc_trim(0);
	long trimmed = rss_kib();
	mem_give_back();
	long after = rss_kib();
	print_message("RSS after malloc_trim: %ld KiB; after mem_give_back: %ld KiB\n", trimmed,
		      after);
	assert_true(trimmed > 0 && after > 0);
	/* CLASSES * PER cached chunks, each on its own pages (4 KiB at least)
	 * after the trim: most of that must go */
	assert_true(trimmed - after >= CLASSES * PER * 4 / 2);
	/* and it keeps working: the cache is used again */
	scatter();
	mem_give_back();
	assert_true(rss_kib() <= trimmed);
#else
	scatter();
	mem_give_back(); /* does nothing harmful elsewhere */
	skip();
#endif
}

/* Called often and with nothing to do, it changes nothing. */
static void test_idle(void **state)
{
	for (int i = 0; i < 100; i++)
		mem_give_back();
	void *p = malloc(100);
	assert_non_null(p);
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_give_back),
	    cmocka_unit_test(test_idle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

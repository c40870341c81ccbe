#include "node/mem.h"

#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* glibc's tcache, as built by default (glibc 2.26 on, 64-bit): bins for
 * chunk sizes 32 to 1040 bytes in steps of 16, each holding up to 7 freed
 * chunks (the tunable glibc.malloc.tcache_count may raise that: then part
 * of the cache is moved, which only does less good). A request of 16 * k
 * bytes (k = 1..64) takes a chunk of 16 * k + 16 bytes: one bin each. */
#define MEM_BINS    64
#define MEM_STEP    16
#define MEM_PER_BIN 7
#define MEM_TAKE    (2 * MEM_PER_BIN)

void mem_give_back(void)
{
#ifdef __GLIBC__
	/* For each bin: the first MEM_PER_BIN requests empty the cache (the
	 * scattered chunks, last freed first), the next ones come from the
	 * heap. Freed in reverse, the fresh ones fill the cache again and the
	 * scattered ones, the cache being full, go back to the heap. No trim
	 * first to merge the free fast chunks (the smallest sizes' fresh
	 * chunks would come from merged runs): it doubled the cost for no
	 * gain measured, and the previous call's trim has merged them. */
	void *volatile held[MEM_BINS][MEM_TAKE]; /* volatile: the pairs must happen */
	for (size_t b = 0; b < MEM_BINS; b++)
		for (size_t i = 0; i < MEM_TAKE; i++)
			held[b][i] = malloc((b + 1) * MEM_STEP);
	for (size_t b = MEM_BINS; b-- > 0;)
		for (size_t i = MEM_TAKE; i-- > 0;)
			free(held[b][i]);
	malloc_trim(0);
#endif
}

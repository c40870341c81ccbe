#include "cluster/place.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

uint64_t place_node_seed(uint64_t cluster_seed, const char *node, size_t len)
{
	return XXH3_64bits_withSeed(node, len, cluster_seed);
}

uint64_t place_weight(uint64_t node_seed, const char *room, size_t len)
{
	return XXH3_64bits_withSeed(room, len, node_seed);
}

size_t place_rank(const uint64_t *node_seeds, size_t n, const char *room, size_t len, size_t *order,
		  size_t k)
{
	uint64_t best[16];
	if (k > n)
		k = n;
	if (k > 16)
		k = 16;
	size_t have = 0;
	/* Insertion into a short sorted list: k is the replica count. */
	for (size_t i = 0; i < n; i++) {
		uint64_t w = place_weight(node_seeds[i], room, len);
		size_t pos = have;
		while (pos > 0 && best[pos - 1] < w)
			pos--;
		if (pos >= k)
			continue;
		size_t last = have < k ? have : k - 1;
		for (size_t j = last; j > pos; j--) {
			best[j] = best[j - 1];
			order[j] = order[j - 1];
		}
		best[pos] = w;
		order[pos] = i;
		if (have < k)
			have++;
	}
	return have;
}

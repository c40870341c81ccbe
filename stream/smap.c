#include "stream/smap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

struct slot {
	uint64_t hash; /* 0 marks an empty slot; real hashes are forced odd */
	const void *key;
	size_t len;
	void *val;
};

/* Capacity bounds on the load, with room between them so that a table
 * hovering at one size is not resized back and forth: it doubles when an
 * insert would take it over 1/2 full and halves (not under SMAP_MIN_CAP)
 * when a delete leaves it under 1/8 full. Either way the new table is about
 * 1/4 full, so at least cap/8 operations pass between two resizes of a
 * table of cap slots: each operation stays amortized O(1). */
#define SMAP_MIN_CAP 16

struct smap {
	struct slot *slots;
	size_t mask; /* capacity - 1; capacity is a power of two, >= SMAP_MIN_CAP */
	size_t count;
	unsigned char secret[crypto_shorthash_KEYBYTES];
};

static uint64_t hash_of(const struct smap *m, const void *key, size_t len)
{
	uint64_t h;
	crypto_shorthash((unsigned char *)&h, key, len, m->secret);
	return h | 1;
}

struct smap *smap_new(void)
{
	struct smap *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->slots = calloc(SMAP_MIN_CAP, sizeof(struct slot));
	if (!m->slots) {
		free(m);
		return NULL;
	}
	m->mask = SMAP_MIN_CAP - 1;
	crypto_shorthash_keygen(m->secret);
	return m;
}

void smap_free(struct smap *m)
{
	if (!m)
		return;
	free(m->slots);
	free(m);
}

size_t smap_count(const struct smap *m)
{
	return m->count;
}

size_t smap_capacity(const struct smap *m)
{
	return m->mask + 1;
}

static struct slot *find(const struct smap *m, uint64_t h, const void *key, size_t len)
{
	for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
		struct slot *s = &m->slots[i];
		if (s->hash == 0)
			return NULL;
		if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
			return s;
	}
}

void *smap_get(const struct smap *m, const void *key, size_t len)
{
	if (m->count == 0)
		return NULL; /* no hash to compute (a single node's empty maps) */
	struct slot *s = find(m, hash_of(m, key, len), key, len);
	return s ? s->val : NULL;
}

static void place(struct slot *slots, size_t mask, const struct slot *e)
{
	size_t i = e->hash & mask;
	while (slots[i].hash)
		i = (i + 1) & mask;
	slots[i] = *e;
}

/* Moves every entry to a fresh table of cap slots (a power of two that
 * keeps the load at or under 1/2). 0, or -1 on no memory (the map is
 * unchanged). */
static int resize(struct smap *m, size_t cap)
{
	struct slot *ns = calloc(cap, sizeof(*ns));
	if (!ns)
		return -1;
	for (size_t i = 0; i <= m->mask; i++)
		if (m->slots[i].hash)
			place(ns, cap - 1, &m->slots[i]);
	free(m->slots);
	m->slots = ns;
	m->mask = cap - 1;
	return 0;
}

int smap_put(struct smap *m, const void *key, size_t len, void *val)
{
	uint64_t h = hash_of(m, key, len);
	struct slot *s = find(m, h, key, len);
	if (s) {
		s->key = key;
		s->val = val;
		return 0;
	}
	if ((m->count + 1) * 2 > m->mask + 1 && resize(m, (m->mask + 1) * 2) < 0)
		return -1;
	struct slot e = {h, key, len, val};
	place(m->slots, m->mask, &e);
	m->count++;
	return 0;
}

void *smap_del(struct smap *m, const void *key, size_t len)
{
	struct slot *s = find(m, hash_of(m, key, len), key, len);
	if (!s)
		return NULL;
	void *val = s->val;
	size_t i = (size_t)(s - m->slots);
	/* Backward shift: pull later entries of the probe run into the hole
	 * unless their home slot lies cyclically after the hole. */
	for (size_t j = (i + 1) & m->mask; m->slots[j].hash; j = (j + 1) & m->mask) {
		size_t home = m->slots[j].hash & m->mask;
		if (((j - home) & m->mask) >= ((j - i) & m->mask)) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	memset(&m->slots[i], 0, sizeof(m->slots[i]));
	m->count--;
	/* A table emptied after a burst gives its memory back. On no memory
	 * it just stays large: correct, only bigger. */
	if (m->mask + 1 > SMAP_MIN_CAP && m->count < (m->mask + 1) / 8)
		(void)resize(m, (m->mask + 1) / 2);
	return val;
}

void *smap_next(const struct smap *m, size_t *pos)
{
	while (*pos <= m->mask) {
		struct slot *s = &m->slots[(*pos)++];
		if (s->hash)
			return s->val;
	}
	return NULL;
}

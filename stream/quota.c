#include "stream/quota.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "stream/smap.h"

#define PROBE 8 /* slots a key may live in, from its hash on */

struct wslot {
	uint64_t start_ms; /* when the entry's window began */
	uint64_t count;
	uint8_t len; /* 0: free */
	uint8_t key[QUOTA_WKEY_MAX];
};

struct quota_window {
	struct wslot *slots;
	size_t mask;
	uint64_t window_ms;
	unsigned char secret[crypto_shorthash_KEYBYTES];
};

struct quota_window *quota_window_new(size_t slots, uint64_t window_ms)
{
	size_t cap = PROBE;
	while (cap < slots && cap < ((size_t)1 << 30))
		cap *= 2;
	struct quota_window *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->slots = calloc(cap, sizeof(*q->slots));
	if (!q->slots) {
		free(q);
		return NULL;
	}
	q->mask = cap - 1;
	q->window_ms = window_ms;
	crypto_shorthash_keygen(q->secret);
	return q;
}

void quota_window_free(struct quota_window *q)
{
	if (!q)
		return;
	free(q->slots);
	free(q);
}

static size_t wstart(const struct quota_window *q, const void *key, size_t len)
{
	uint64_t h;
	crypto_shorthash((unsigned char *)&h, key, len, q->secret);
	return (size_t)h & q->mask;
}

static int live(const struct quota_window *q, const struct wslot *s, uint64_t now_ms)
{
	return s->len && now_ms - s->start_ms < q->window_ms;
}

static struct wslot *wfind(const struct quota_window *q, const void *key, size_t len)
{
	size_t i = wstart(q, key, len);
	for (int k = 0; k < PROBE; k++, i = (i + 1) & q->mask) {
		struct wslot *s = &q->slots[i];
		if (s->len == len && memcmp(s->key, key, len) == 0)
			return s;
	}
	return NULL;
}

uint64_t quota_window_get(const struct quota_window *q, const void *key, size_t len,
			  uint64_t now_ms)
{
	if (len > QUOTA_WKEY_MAX)
		len = QUOTA_WKEY_MAX;
	const struct wslot *s = len ? wfind(q, key, len) : NULL;
	return s && live(q, s, now_ms) ? s->count : 0;
}

uint64_t quota_window_hit(struct quota_window *q, const void *key, size_t len, uint64_t now_ms)
{
	if (len > QUOTA_WKEY_MAX)
		len = QUOTA_WKEY_MAX;
	if (len == 0)
		return 0;
	struct wslot *s = wfind(q, key, len);
	if (!s) {
		/* A slot whose window has passed, else the oldest. */
		size_t i = wstart(q, key, len);
		struct wslot *oldest = NULL;
		for (int k = 0; k < PROBE && !s; k++, i = (i + 1) & q->mask) {
			struct wslot *t = &q->slots[i];
			if (!live(q, t, now_ms))
				s = t;
			else if (!oldest || t->start_ms < oldest->start_ms)
				oldest = t;
		}
		if (!s)
			s = oldest;
		s->len = (uint8_t)len;
		memcpy(s->key, key, len);
		s->count = 0;
		s->start_ms = now_ms;
	} else if (!live(q, s, now_ms)) {
		s->count = 0;
		s->start_ms = now_ms;
	}
	return ++s->count;
}

size_t quota_window_live(const struct quota_window *q, uint64_t now_ms)
{
	size_t n = 0;
	for (size_t i = 0; i <= q->mask; i++)
		n += live(q, &q->slots[i], now_ms);
	return n;
}

/* ---- exact counts ---- */

struct centry {
	size_t count;
	size_t len;
	unsigned char key[]; /* the map borrows it */
};

struct quota_count {
	struct smap *m;
};

struct quota_count *quota_count_new(void)
{
	struct quota_count *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	q->m = smap_new();
	if (!q->m) {
		free(q);
		return NULL;
	}
	return q;
}

void quota_count_free(struct quota_count *q)
{
	if (!q)
		return;
	size_t pos = 0;
	struct centry *e;
	while ((e = smap_next(q->m, &pos)) != NULL)
		free(e);
	smap_free(q->m);
	free(q);
}

size_t quota_count_get(const struct quota_count *q, const void *key, size_t len)
{
	const struct centry *e = smap_get(q->m, key, len);
	return e ? e->count : 0;
}

int quota_count_add(struct quota_count *q, const void *key, size_t len, int delta)
{
	struct centry *e = smap_get(q->m, key, len);
	if (delta >= 0) {
		if (delta == 0)
			return 0;
		if (!e) {
			e = calloc(1, sizeof(*e) + (len ? len : 1));
			if (!e)
				return -1;
			e->len = len;
			if (len)
				memcpy(e->key, key, len);
			if (smap_put(q->m, e->key, len, e) < 0) {
				free(e);
				return -1;
			}
		}
		e->count += (size_t)delta;
		return 0;
	}
	if (!e)
		return 0;
	size_t down = (size_t)-(long)delta;
	if (e->count > down) {
		e->count -= down;
		return 0;
	}
	smap_del(q->m, key, len);
	free(e);
	return 0;
}

size_t quota_count_keys(const struct quota_count *q)
{
	return smap_count(q->m);
}

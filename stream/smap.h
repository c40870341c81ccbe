/*
 * smap: a hash map from byte-string keys to pointers, keyed by a random
 * SipHash secret (libsodium crypto_shorthash) so that clients who choose the
 * keys cannot aim them at one bucket.
 *
 * Open addressing with linear probing and backward-shift deletion: no
 * tombstones, load kept at or under 1/2. The table doubles as it fills and
 * halves as it empties (under 1/8 full, down to 16 slots), so a map's memory
 * follows its count, not the highest count it ever had. Keys are borrowed: a key's bytes
 * must stay valid and unchanged while its entry is in the map (callers point
 * at a string inside the value).
 */
#ifndef VROOM_STREAM_SMAP_H
#define VROOM_STREAM_SMAP_H

#include <stddef.h>

struct smap;

/* An empty map with a fresh random key; NULL on no memory. */
struct smap *smap_new(void);
/* Frees the table (not the values). smap_free(NULL) is a no-op. */
void smap_free(struct smap *m);
size_t smap_count(const struct smap *m);
/* Slots in the table now (for tests and stats). */
size_t smap_capacity(const struct smap *m);
/* The value stored under key, or NULL. */
void *smap_get(const struct smap *m, const void *key, size_t len);
/* Inserts or replaces; borrows key. Returns 0, or -1 on no memory. */
int smap_put(struct smap *m, const void *key, size_t len, void *val);
/* Removes key; returns its value or NULL if absent. May shrink the table,
 * which moves entries: an iteration must start over after a delete. */
void *smap_del(struct smap *m, const void *key, size_t len);
/* Iteration: *pos starts at 0; returns the next value or NULL at the end.
 * The map must not change during an iteration. */
void *smap_next(const struct smap *m, size_t *pos);

#endif

/*
 * quota: counters behind the node's per-key limits (no I/O), keyed by bytes
 * that clients choose or control, so hashed with a random SipHash secret
 * (libsodium crypto_shorthash) that cannot be aimed at.
 *
 * quota_window counts events per key in fixed windows (failed HELLOs per
 * source address per minute) in a table of a fixed number of slots: an entry
 * whose window has passed is free again, and when every slot a key may use
 * is taken, the entry whose window started first is evicted. So its memory
 * is fixed, whatever the number of sources. quota_count keeps exact counts
 * (rooms per owner); an entry exists only while its count is above zero.
 */
#ifndef VROOM_STREAM_QUOTA_H
#define VROOM_STREAM_QUOTA_H

#include <stddef.h>
#include <stdint.h>

#define QUOTA_WKEY_MAX 16 /* bytes of a window key (an address) */

struct quota_window;
struct quota_count;

/* A table of `slots` entries (rounded up to a power of two, at least 8) for
 * windows of window_ms. NULL on no memory. Needs sodium_init() done. */
struct quota_window *quota_window_new(size_t slots, uint64_t window_ms);
void quota_window_free(struct quota_window *q);
/* The events counted for key in its current window (0 if none). Keys over
 * QUOTA_WKEY_MAX bytes are cut to it. */
uint64_t quota_window_get(const struct quota_window *q, const void *key, size_t len,
			  uint64_t now_ms);
/* Counts one event for key now; returns the count in its current window. */
uint64_t quota_window_hit(struct quota_window *q, const void *key, size_t len, uint64_t now_ms);
/* Entries whose window has not passed at now_ms (for tests and stats). */
size_t quota_window_live(const struct quota_window *q, uint64_t now_ms);

/* An empty count table; NULL on no memory. */
struct quota_count *quota_count_new(void);
void quota_count_free(struct quota_count *q);
/* The count for key (0 if none). */
size_t quota_count_get(const struct quota_count *q, const void *key, size_t len);
/* Adds delta to key's count (copying the key), dropping the entry at zero;
 * a count never goes below zero. 0, or -1 on no memory. */
int quota_count_add(struct quota_count *q, const void *key, size_t len, int delta);
/* Keys with a count above zero. */
size_t quota_count_keys(const struct quota_count *q);

#endif

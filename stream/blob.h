/*
 * blob: a refcounted, immutable-once-shared run of bytes.
 *
 * The fan-out path encodes a frame once into a blob and hands every receiver a
 * reference; the bytes are freed when the last reference is dropped. Single
 * threaded: the count is not atomic.
 */
#ifndef VROOM_STREAM_BLOB_H
#define VROOM_STREAM_BLOB_H

#include <stddef.h>
#include <stdint.h>

struct blob;

/* A blob of len uninitialised bytes with one reference; NULL on no memory. */
struct blob *blob_new(size_t len);
/* The bytes: writable only while the caller holds the sole reference. */
uint8_t *blob_data(struct blob *b);
size_t blob_len(const struct blob *b);
/* Takes one more reference and returns b. */
struct blob *blob_ref(struct blob *b);
/* Calls fn(arg, tag) when the last reference is dropped, just before the
 * bytes are freed: the byte-stream window learns this way that every
 * receiver's output has let go of a chunk (tag: its payload length). */
void blob_on_release(struct blob *b, void (*fn)(void *arg, size_t tag), void *arg, size_t tag);
/* Whether blob_on_release was called: such a blob's release is a signal,
 * so a receiver must hold a reference until its bytes are out, not copy. */
int blob_has_release(const struct blob *b);
/* Drops one reference; frees on the last. blob_unref(NULL) is a no-op. */
void blob_unref(struct blob *b);

#endif

/*
 * seal: the cluster key and what is derived from it.
 *
 * The key is 32 random bytes kept in a file as base64 (mode 0600). From it
 * libsodium's KDF derives one subkey for datagrams (XChaCha20-Poly1305 with a
 * random 24-byte nonce per datagram), one for node links (secretstream), and
 * the placement seed. Anything that does not open under the key is dropped by
 * the caller and counted.
 */
#ifndef VROOM_CLUSTER_SEAL_H
#define VROOM_CLUSTER_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#define SEAL_KEY_BYTES 32
#define SEAL_OVERHEAD  (crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + \
			crypto_aead_xchacha20poly1305_ietf_ABYTES)

struct seal;

/* Writes a new random key to path (created with mode 0600, not replacing an
 * existing file). 0, or -1 with a reason in why[whylen]. */
int seal_keygen(const char *path, char *why, size_t whylen);
/* Reads the key at path. NULL with a reason on failure. */
struct seal *seal_load(const char *path, char *why, size_t whylen);
/* A seal from raw key bytes (tests). */
struct seal *seal_from_key(const uint8_t key[SEAL_KEY_BYTES]);
void seal_free(struct seal *s);

/* The placement seed derived from the key. */
uint64_t seal_placement_seed(const struct seal *s);
/* The subkey for node-link secretstreams. */
const uint8_t *seal_link_key(const struct seal *s);

/* Seals len bytes into out (len + SEAL_OVERHEAD bytes). */
void seal_dgram(const struct seal *s, const uint8_t *in, size_t len, uint8_t *out);
/* Opens a sealed datagram into out (len - SEAL_OVERHEAD bytes): the plain
 * length, or -1 if it does not open under the key. */
long seal_open_dgram(const struct seal *s, const uint8_t *in, size_t len, uint8_t *out);

#endif

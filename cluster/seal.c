#include "cluster/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AD	 "vroom-dgram-1"
#define NONCE	 crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define CTX	 "vroomclu" /* KDF context: 8 bytes */
#define ID_DGRAM 1
#define ID_LINK	 2
#define ID_PLACE 3

struct seal {
	uint8_t dgram[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
	uint8_t link[crypto_secretstream_xchacha20poly1305_KEYBYTES];
	uint64_t place_seed;
};

int seal_keygen(const char *path, char *why, size_t whylen)
{
	uint8_t key[SEAL_KEY_BYTES];
	char b64[sodium_base64_ENCODED_LEN(SEAL_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL)];
	randombytes_buf(key, sizeof(key));
	sodium_bin2base64(b64, sizeof(b64), key, sizeof(key), sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(key, sizeof(key));
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(why, whylen, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	size_t n = strlen(b64);
	b64[n++] = '\n';
	int ok = write(fd, b64, n) == (ssize_t)n && fsync(fd) == 0;
	sodium_memzero(b64, sizeof(b64));
	if (close(fd) < 0 || !ok) {
		snprintf(why, whylen, "cannot write %s: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

struct seal *seal_from_key(const uint8_t key[SEAL_KEY_BYTES])
{
	struct seal *s = sodium_malloc(sizeof(*s));
	if (!s)
		return NULL;
	uint8_t seed[crypto_kdf_BYTES_MIN];
	crypto_kdf_derive_from_key(s->dgram, sizeof(s->dgram), ID_DGRAM, CTX, key);
	crypto_kdf_derive_from_key(s->link, sizeof(s->link), ID_LINK, CTX, key);
	crypto_kdf_derive_from_key(seed, sizeof(seed), ID_PLACE, CTX, key);
	memcpy(&s->place_seed, seed, sizeof(s->place_seed));
	sodium_memzero(seed, sizeof(seed));
	return s;
}

struct seal *seal_load(const char *path, char *why, size_t whylen)
{
	char text[256];
	uint8_t key[SEAL_KEY_BYTES];
	size_t keylen = 0;
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, whylen, "cannot read cluster key %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077))
		fprintf(stderr, "<4>cluster key %s is readable by others (mode %03o): chmod 600 it\n",
			path, (unsigned)(st.st_mode & 0777));
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0) {
		snprintf(why, whylen, "cannot read cluster key %s: %s", path, strerror(errno));
		return NULL;
	}
	text[n] = '\0';
	text[strcspn(text, "\r\n")] = '\0';
	if (sodium_base642bin(key, sizeof(key), text, strlen(text), NULL, &keylen, NULL,
			      sodium_base64_VARIANT_ORIGINAL) < 0 ||
	    keylen != SEAL_KEY_BYTES) {
		snprintf(why, whylen, "cluster key %s is not 32 bytes of base64 (make one with "
				      "'vroom cluster keygen FILE')", path);
		sodium_memzero(text, sizeof(text));
		return NULL;
	}
	sodium_memzero(text, sizeof(text));
	struct seal *s = seal_from_key(key);
	sodium_memzero(key, sizeof(key));
	if (!s)
		snprintf(why, whylen, "out of memory");
	return s;
}

void seal_free(struct seal *s)
{
	if (s)
		sodium_free(s);
}

uint64_t seal_placement_seed(const struct seal *s)
{
	return s->place_seed;
}

const uint8_t *seal_link_key(const struct seal *s)
{
	return s->link;
}

void seal_dgram(const struct seal *s, const uint8_t *in, size_t len, uint8_t *out)
{
	randombytes_buf(out, NONCE);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + NONCE, NULL, in, len,
						   (const uint8_t *)AD, sizeof(AD) - 1, NULL, out,
						   s->dgram);
}

long seal_open_dgram(const struct seal *s, const uint8_t *in, size_t len, uint8_t *out)
{
	unsigned long long plain;
	if (len < SEAL_OVERHEAD)
		return -1;
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &plain, NULL, in + NONCE, len - NONCE,
						       (const uint8_t *)AD, sizeof(AD) - 1, in,
						       s->dgram) < 0)
		return -1;
	return (long)plain;
}

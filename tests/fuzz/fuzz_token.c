/*
 * fuzz_token: feeds arbitrary bytes to the token parser four ways and checks
 * what stream/token.h promises:
 *   1. as a token, to token_verify() with one trusted key: a known result,
 *      a reason, and claims that keep every rule when it says OK;
 *   2. as a claim set, to token_claims_decode(): the same rules on success;
 *   3. as a claim set signed as it is by the trusted key (token_sign_raw),
 *      then verified: the verdict must be what 2 and the clock imply
 *      (MALFORMED exactly when 2 failed, else OK, NOT_YET_VALID or EXPIRED,
 *      with the same claims), and the claims re-signed with token_sign()
 *      must verify to the same claims again;
 *   4. as the text of a trusted-keys file, of a key file and of a token.
 * Built as a libFuzzer target with -Dfuzzing=true; replay.c runs the saved
 * corpus (corpus/token) through the same function in every other build.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "stream/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                        \
	do {                                                                               \
		if (!(cond)) {                                                             \
			fprintf(stderr, "fuzz_token: %s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                                          \
			abort();                                                           \
		}                                                                          \
	} while (0)

#define NOW 1700000000ull /* the clock every verdict is taken at */

static uint8_t seed[TOKEN_SEED_BYTES];
static struct token_keys keys;

static void init_once(void)
{
	static int done;
	if (done)
		return;
	CHECK(sodium_init() >= 0);
	for (size_t i = 0; i < sizeof(seed); i++)
		seed[i] = (uint8_t)(i + 1);
	keys.n = 1;
	token_seed_pk(seed, keys.pk[0]);
	done = 1;
}

/* Claims that token_verify() or token_claims_decode() accepted keep every
 * rule of docs/protocol.md. */
static void check_claims(const struct token_claims *c)
{
	CHECK(c->idlen >= 1 && c->idlen <= TOKEN_IDENTITY_MAX);
	CHECK(c->identity[c->idlen] == '\0' && strlen(c->identity) == c->idlen);
	for (size_t i = 0; i < c->idlen; i++)
		CHECK((unsigned char)c->identity[i] > 0x20 && c->identity[i] != 0x7f);
	CHECK(c->exp > c->iat);
	CHECK(c->grants.nsub <= TOKEN_PATTERNS_MAX && c->grants.npush <= TOKEN_PATTERNS_MAX);
	for (unsigned i = 0; i < c->grants.nsub; i++)
		CHECK(token_pattern_ok(c->grants.sub[i], strlen(c->grants.sub[i])));
	for (unsigned i = 0; i < c->grants.npush; i++)
		CHECK(token_pattern_ok(c->grants.push[i], strlen(c->grants.push[i])));
	if (!c->has_grants)
		CHECK(!c->grants.create && c->grants.nsub == 0 && c->grants.npush == 0);
}

static enum token_err expected_at(const struct token_claims *c, uint64_t now)
{
	if (c->iat > now && c->iat - now > TOKEN_LEEWAY_S)
		return TOKEN_E_NOT_YET_VALID;
	if (now >= c->exp)
		return TOKEN_E_EXPIRED;
	return TOKEN_OK;
}

static int same_claims(const struct token_claims *a, const struct token_claims *b)
{
	return memcmp(a, b, sizeof(*a)) == 0; /* both were zeroed before decoding */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t tok[TOKEN_MAX], tok2[TOKEN_MAX];
	static char text[TOKEN_TEXT_MAX + 1];
	struct token_claims c1, c2, c3, c4;
	const char *why = NULL;
	size_t len, len2;

	init_once();

	/* 1. a token */
	enum token_err e = token_verify(data, size, &keys, NOW, &c1, &why);
	CHECK(why != NULL);
	CHECK(e >= TOKEN_OK && e <= TOKEN_E_EXPIRED);
	CHECK((e == TOKEN_OK) == (why[0] == '\0'));
	if (e == TOKEN_OK || e == TOKEN_E_NOT_YET_VALID || e == TOKEN_E_EXPIRED) {
		check_claims(&c1);
		CHECK(expected_at(&c1, NOW) == e);
		CHECK(token_to_text(data, size, text, sizeof(text)) == 0);
		CHECK(token_from_text(text, strlen(text), tok, sizeof(tok), &len) == 0);
		CHECK(len == size && memcmp(tok, data, size) == 0);
	}

	/* 2. a claim set */
	why = NULL;
	int dec = token_claims_decode(data, size, &c2, &why);
	if (dec == 0)
		check_claims(&c2);
	else
		CHECK(why != NULL);

	/* 3. the claim set signed as it is, then verified */
	if (size >= 1 && token_sign_raw(data, size, seed, tok, sizeof(tok), &len) == 0) {
		e = token_verify(tok, len, &keys, NOW, &c3, &why);
		if (dec < 0) {
			CHECK(e == TOKEN_E_MALFORMED);
		} else {
			CHECK(e == expected_at(&c2, NOW));
			CHECK(same_claims(&c2, &c3));
			/* a signed token whose last byte changes no longer verifies */
			tok[len - 1] ^= 0x01;
			CHECK(token_verify(tok, len, &keys, NOW, &c4, &why) != TOKEN_OK);
			/* re-encoded by token_sign(), the claims survive */
			CHECK(token_sign(&c2, seed, tok2, sizeof(tok2), &len2) == 0);
			CHECK(token_verify(tok2, len2, &keys, c2.iat, &c4, &why) == TOKEN_OK);
			CHECK(same_claims(&c2, &c4));
		}
	}

	/* 4. texts */
	{
		struct token_keys k;
		char why2[128];
		uint8_t key[32];
		if (token_keys_parse(&k, (const char *)data, size, why2, sizeof(why2)) == 0)
			CHECK(k.n <= TOKEN_KEYS_MAX);
		else
			CHECK(k.n == 0 && why2[0] != '\0');
		(void)token_key_parse((const char *)data, size, key, why2, sizeof(why2));
		if (token_from_text((const char *)data, size, tok, sizeof(tok), &len) == 0)
			CHECK(len <= sizeof(tok));
		if (size <= TOKEN_PATTERN_MAX + 1 && token_pattern_ok((const char *)data, size) &&
		    memchr(data, '\0', size) == NULL) {
			char pat[TOKEN_PATTERN_MAX + 2];
			memcpy(pat, data, size);
			pat[size] = '\0';
			/* a pattern matches itself without its '*' */
			size_t body = pat[size - 1] == '*' ? size - 1 : size;
			CHECK(token_pattern_match(pat, pat, body));
		}
	}
	return 0;
}

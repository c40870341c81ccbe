/*
 * Unit tests for stream/token: sign and verify round trips, each verdict
 * (malformed, unknown issuer, bad signature, not yet valid, expired) with
 * its boundary, every claim rule, patterns and grants, the text forms of
 * tokens and keys, and a byte-exact token checked against docs/protocol.md.
 *
 * Tokens made by hand are copied into buffers of exactly their size, so
 * that AddressSanitizer reports any read past the bytes given.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>
#include <sodium.h>

#include "stream/token.h"

#define NOW 1700000000ull

static uint8_t seed[TOKEN_SEED_BYTES], other[TOKEN_SEED_BYTES];
static struct token_keys keys;

static int group_setup(void **state)
{
	if (sodium_init() < 0)
		return -1;
	for (size_t i = 0; i < sizeof(seed); i++) {
		seed[i] = (uint8_t)(i + 1);
		other[i] = (uint8_t)(0xa0 + i);
	}
	keys.n = 1;
	token_seed_pk(seed, keys.pk[0]);
	return 0;
}

static struct token_claims base_claims(void)
{
	struct token_claims c;
	memset(&c, 0, sizeof(c));
	strcpy(c.identity, "alice");
	c.idlen = 5;
	c.iat = NOW - 10;
	c.exp = NOW + 3600;
	return c;
}

/* Verifies tok[0..len) from an exact-size heap copy. */
static enum token_err verify_at(const uint8_t *tok, size_t len, uint64_t now,
				struct token_claims *out)
{
	const char *why = NULL;
	uint8_t *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, tok, len);
	enum token_err e = token_verify(copy, len, &keys, now, out, &why);
	assert_non_null(why);
	free(copy);
	return e;
}

/* Signs raw claim bytes packed by the caller into sb. */
static enum token_err verify_raw(const msgpack_sbuffer *sb, struct token_claims *out)
{
	uint8_t tok[TOKEN_MAX];
	size_t len;
	assert_int_equal(token_sign_raw((const uint8_t *)sb->data, sb->size, seed, tok, sizeof(tok),
					&len),
			 0);
	return verify_at(tok, len, NOW, out);
}

static void pack_s(msgpack_packer *pk, const char *s)
{
	msgpack_pack_str(pk, strlen(s));
	msgpack_pack_str_body(pk, s, strlen(s));
}

/* ---- round trips ---- */

static void test_round_trip(void **state)
{
	struct token_claims c = base_claims(), out;
	uint8_t tok[TOKEN_MAX];
	size_t len;
	assert_int_equal(token_sign(&c, seed, tok, sizeof(tok), &len), 0);
	assert_int_equal(verify_at(tok, len, NOW, &out), TOKEN_OK);
	assert_string_equal(out.identity, "alice");
	assert_int_equal(out.idlen, 5);
	assert_int_equal(out.iat, NOW - 10);
	assert_int_equal(out.exp, NOW + 3600);
	assert_false(out.has_grants);

	c.has_grants = 1;
	c.grants.create = 1;
	c.grants.nsub = 2;
	strcpy(c.grants.sub[0], "*");
	strcpy(c.grants.sub[1], "dnPkrPBNbesYQj3I");
	c.grants.npush = 1;
	strcpy(c.grants.push[0], "dnPk*");
	assert_int_equal(token_sign(&c, seed, tok, sizeof(tok), &len), 0);
	assert_int_equal(verify_at(tok, len, NOW, &out), TOKEN_OK);
	assert_memory_equal(&out, &c, sizeof(c));
}

static void test_sign_refuses_bad_claims(void **state)
{
	uint8_t tok[TOKEN_MAX];
	size_t len;
	struct token_claims c = base_claims();
	c.exp = c.iat;
	assert_int_equal(token_sign(&c, seed, tok, sizeof(tok), &len), -1);
	c = base_claims();
	strcpy(c.identity, "a b");
	c.idlen = 3;
	assert_int_equal(token_sign(&c, seed, tok, sizeof(tok), &len), -1);
	c = base_claims();
	c.has_grants = 1;
	c.grants.nsub = 1;
	strcpy(c.grants.sub[0], "a*b");
	assert_int_equal(token_sign(&c, seed, tok, sizeof(tok), &len), -1);
	c = base_claims();
	assert_int_equal(token_sign(&c, seed, tok, 40, &len), -1); /* cap too small */
}

/* ---- verdicts ---- */

static void test_time_window(void **state)
{
	struct token_claims c = base_claims(), out;
	uint8_t tok[TOKEN_MAX];
	size_t len;
	c.iat = NOW;
	c.exp = NOW + 100;
	assert_int_equal(token_sign(&c, seed, tok, sizeof(tok), &len), 0);
	assert_int_equal(verify_at(tok, len, NOW, &out), TOKEN_OK);
	assert_int_equal(verify_at(tok, len, NOW - TOKEN_LEEWAY_S, &out), TOKEN_OK);
	assert_int_equal(verify_at(tok, len, NOW - TOKEN_LEEWAY_S - 1, &out),
			 TOKEN_E_NOT_YET_VALID);
	assert_string_equal(out.identity, "alice"); /* claims filled for the log */
	assert_int_equal(verify_at(tok, len, NOW + 99, &out), TOKEN_OK);
	assert_int_equal(verify_at(tok, len, NOW + 100, &out), TOKEN_E_EXPIRED);
	assert_int_equal(out.exp, NOW + 100);
	/* no overflow near the top of the clock */
	c.iat = UINT64_MAX - 1;
	c.exp = UINT64_MAX;
	assert_int_equal(token_sign(&c, seed, tok, sizeof(tok), &len), 0);
	assert_int_equal(verify_at(tok, len, NOW, &out), TOKEN_E_NOT_YET_VALID);
	assert_int_equal(verify_at(tok, len, UINT64_MAX - 1, &out), TOKEN_OK);
}

static void test_unknown_issuer_and_signature(void **state)
{
	struct token_claims c = base_claims(), out;
	uint8_t tok[TOKEN_MAX];
	size_t len;
	assert_int_equal(token_sign(&c, other, tok, sizeof(tok), &len), 0);
	assert_int_equal(verify_at(tok, len, NOW, &out), TOKEN_E_UNKNOWN_ISSUER);
	assert_int_equal(out.idlen, 0); /* nothing from an untrusted token */

	assert_int_equal(token_sign(&c, seed, tok, sizeof(tok), &len), 0);
	/* every byte of the signature (the last 64) and of the claims */
	for (size_t i = 40; i < len; i++) {
		tok[i] ^= 0x20;
		enum token_err e = verify_at(tok, len, NOW, &out);
		assert_true(e == TOKEN_E_SIGNATURE || e == TOKEN_E_MALFORMED);
		tok[i] ^= 0x20;
	}
	/* the issuer key swapped for another trusted key: the signature fails */
	struct token_keys saved = keys;
	keys.n = 2;
	token_seed_pk(other, keys.pk[1]);
	uint8_t tok2[TOKEN_MAX];
	size_t len2;
	assert_int_equal(token_sign(&c, other, tok2, sizeof(tok2), &len2), 0);
	assert_int_equal(verify_at(tok2, len2, NOW, &out), TOKEN_OK); /* now trusted */
	memcpy(tok + 4, keys.pk[1], 32); /* [0x94, 1, 0xc4, 32, key...] */
	assert_int_equal(verify_at(tok, len, NOW, &out), TOKEN_E_SIGNATURE);
	keys = saved;
}

static void test_malformed_outer(void **state)
{
	struct token_claims out;
	uint8_t tok[TOKEN_MAX];
	size_t len;
	struct token_claims c = base_claims();
	assert_int_equal(token_sign(&c, seed, tok, sizeof(tok), &len), 0);
	/* every truncation */
	for (size_t n = 0; n < len; n++)
		assert_int_equal(verify_at(tok, n, NOW, &out), TOKEN_E_MALFORMED);
	/* a trailing byte */
	tok[len] = 0;
	assert_int_equal(verify_at(tok, len + 1, NOW, &out), TOKEN_E_MALFORMED);
	/* over TOKEN_MAX */
	uint8_t *big = calloc(1, TOKEN_MAX + 1);
	assert_int_equal(verify_at(big, TOKEN_MAX + 1, NOW, &out), TOKEN_E_MALFORMED);
	free(big);
	/* huge counts, format 2, wrong element types */
	static const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
	assert_int_equal(verify_at(huge, sizeof(huge), NOW, &out), TOKEN_E_MALFORMED);
	tok[1] = 2;
	assert_int_equal(verify_at(tok, len, NOW, &out), TOKEN_E_MALFORMED);
	tok[1] = 1;
	tok[2] = 0xd9; /* issuer as str8 */
	assert_int_equal(verify_at(tok, len, NOW, &out), TOKEN_E_MALFORMED);
	tok[2] = 0xc4;
	tok[0] = 0x95; /* 5 elements with 4 present: truncated */
	assert_int_equal(verify_at(tok, len, NOW, &out), TOKEN_E_MALFORMED);
	tok[0] = 0x94;
	assert_int_equal(verify_at(tok, len, NOW, &out), TOKEN_OK);
}

/* ---- claim rules ---- */

static void test_claim_rules(void **state)
{
	struct token_claims out;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

#define CLAIMS(n, body)                                                                            \
	do {                                                                                       \
		msgpack_sbuffer_clear(&sb);                                                        \
		msgpack_pack_map(&pk, n);                                                          \
		body;                                                                              \
	} while (0)
#define ID(s)	   (pack_s(&pk, "identity"), pack_s(&pk, s))
#define IAT(v)	   (pack_s(&pk, "iat"), msgpack_pack_uint64(&pk, v))
#define EXP(v)	   (pack_s(&pk, "exp"), msgpack_pack_uint64(&pk, v))
#define GRANTS(n)  (pack_s(&pk, "grants"), msgpack_pack_map(&pk, n))

	CLAIMS(3, (ID("bob"), IAT(NOW), EXP(NOW + 1)));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_OK);
	/* any order */
	CLAIMS(3, (EXP(NOW + 1), ID("bob"), IAT(NOW)));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_OK);
	/* missing, twice, unknown */
	CLAIMS(2, (ID("bob"), IAT(NOW)));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	CLAIMS(4, (ID("bob"), IAT(NOW), EXP(NOW + 1), ID("eve")));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	CLAIMS(4, (ID("bob"), IAT(NOW), EXP(NOW + 1), (pack_s(&pk, "aud"), pack_s(&pk, "x"))));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	/* types */
	CLAIMS(3, ((pack_s(&pk, "identity"), msgpack_pack_bin(&pk, 3), msgpack_pack_bin_body(&pk, "bob", 3)),
		   IAT(NOW), EXP(NOW + 1)));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	CLAIMS(3, (ID("bob"), (pack_s(&pk, "iat"), msgpack_pack_int64(&pk, -1)), EXP(NOW + 1)));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	CLAIMS(3, (ID("bob"), IAT(NOW), (pack_s(&pk, "exp"), msgpack_pack_double(&pk, 1e10))));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	/* exp must follow iat */
	CLAIMS(3, (ID("bob"), IAT(NOW), EXP(NOW)));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	/* the identity rule */
	char id[200];
	memset(id, 'x', sizeof(id));
	id[128] = '\0';
	CLAIMS(3, (ID(id), IAT(NOW), EXP(NOW + 1)));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_OK);
	id[128] = 'x';
	id[129] = '\0';
	CLAIMS(3, (ID(id), IAT(NOW), EXP(NOW + 1)));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	static const char *const bad_ids[] = {"", "a b", "tab\there", "del\x7f", "\xc3\x28",
					      "\xed\xa0\x80", "\xc0\xaf"};
	for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		CLAIMS(3, (ID(bad_ids[i]), IAT(NOW), EXP(NOW + 1)));
		assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	}
	CLAIMS(3, (ID("\xc5\xbc\xc3\xb3\xc5\x82w"), IAT(NOW), EXP(NOW + 1)));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_OK);
	/* not a map; a map nested too deep */
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_array(&pk, 0);
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	CLAIMS(4, (ID("bob"), IAT(NOW), EXP(NOW + 1),
		   (GRANTS(1), pack_s(&pk, "sub"), msgpack_pack_array(&pk, 1),
		    msgpack_pack_array(&pk, 1), pack_s(&pk, "x"))));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	msgpack_sbuffer_destroy(&sb);
}

static void test_grant_rules(void **state)
{
	struct token_claims out;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

	/* an empty grants map: restricted to nothing */
	CLAIMS(4, (ID("bob"), IAT(NOW), EXP(NOW + 1), GRANTS(0)));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_OK);
	assert_true(out.has_grants);
	assert_false(out.grants.create);
	assert_int_equal(out.grants.nsub + out.grants.npush, 0);
	/* 16 patterns, not 17 */
	for (int n = 16; n <= 17; n++) {
		CLAIMS(4, (ID("bob"), IAT(NOW), EXP(NOW + 1),
			   (GRANTS(1), pack_s(&pk, "push"), msgpack_pack_array(&pk, (size_t)n))));
		for (int i = 0; i < n; i++) {
			char p[8];
			snprintf(p, sizeof(p), "r%d*", i);
			pack_s(&pk, p);
		}
		assert_int_equal(verify_raw(&sb, &out), n == 16 ? TOKEN_OK : TOKEN_E_MALFORMED);
	}
	/* unknown grant, a grant twice, wrong types */
	CLAIMS(4, (ID("bob"), IAT(NOW), EXP(NOW + 1),
		   (GRANTS(1), pack_s(&pk, "admin"), msgpack_pack_true(&pk))));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	CLAIMS(4, (ID("bob"), IAT(NOW), EXP(NOW + 1),
		   (GRANTS(2), pack_s(&pk, "create"), msgpack_pack_true(&pk), pack_s(&pk, "create"),
		    msgpack_pack_false(&pk))));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	CLAIMS(4, (ID("bob"), IAT(NOW), EXP(NOW + 1),
		   (GRANTS(1), pack_s(&pk, "create"), msgpack_pack_uint8(&pk, 1))));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	CLAIMS(4, (ID("bob"), IAT(NOW), EXP(NOW + 1),
		   (GRANTS(1), pack_s(&pk, "sub"), pack_s(&pk, "*"))));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	CLAIMS(4, (ID("bob"), IAT(NOW), EXP(NOW + 1),
		   (pack_s(&pk, "grants"), msgpack_pack_array(&pk, 0))));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	/* a bad pattern */
	CLAIMS(4, (ID("bob"), IAT(NOW), EXP(NOW + 1),
		   (GRANTS(1), pack_s(&pk, "sub"), msgpack_pack_array(&pk, 1), pack_s(&pk, "a/b"))));
	assert_int_equal(verify_raw(&sb, &out), TOKEN_E_MALFORMED);
	msgpack_sbuffer_destroy(&sb);
}

static void test_patterns(void **state)
{
	assert_true(token_pattern_ok("*", 1));
	assert_true(token_pattern_ok("abc", 3));
	assert_true(token_pattern_ok("a-b_C9*", 7));
	char p[70];
	memset(p, 'a', sizeof(p));
	assert_true(token_pattern_ok(p, 64));
	assert_false(token_pattern_ok(p, 65));
	p[64] = '*';
	assert_true(token_pattern_ok(p, 65));
	assert_false(token_pattern_ok(p, 66));
	assert_false(token_pattern_ok("", 0));
	assert_false(token_pattern_ok("**", 2));
	assert_false(token_pattern_ok("a*b", 3));
	assert_false(token_pattern_ok("a b", 3));
	assert_false(token_pattern_ok("a.b", 3));
	assert_false(token_pattern_ok("a\0b", 3));

	assert_true(token_pattern_match("*", "anything", 8));
	assert_true(token_pattern_match("*", "", 0));
	assert_true(token_pattern_match("abc", "abc", 3));
	assert_false(token_pattern_match("abc", "abcd", 4));
	assert_false(token_pattern_match("abc", "ab", 2));
	assert_true(token_pattern_match("ab*", "ab", 2));
	assert_true(token_pattern_match("ab*", "abzzz", 5));
	assert_false(token_pattern_match("ab*", "a", 1));
	assert_false(token_pattern_match("ab*", "xab", 3));

	struct token_grants g;
	memset(&g, 0, sizeof(g));
	assert_true(token_grants_allow(NULL, TOKEN_PUSH, "r", 1));
	assert_false(token_grants_allow(&g, TOKEN_SUB, "r", 1));
	g.nsub = 1;
	strcpy(g.sub[0], "room1");
	g.npush = 1;
	strcpy(g.push[0], "ro*");
	assert_true(token_grants_allow(&g, TOKEN_SUB, "room1", 5));
	assert_false(token_grants_allow(&g, TOKEN_SUB, "room2", 5));
	assert_true(token_grants_allow(&g, TOKEN_PUSH, "room2", 5));
	assert_false(token_grants_allow(&g, TOKEN_PUSH, "xroom", 5));
}

/* ---- text forms ---- */

static void test_token_text(void **state)
{
	struct token_claims c = base_claims(), out;
	uint8_t tok[TOKEN_MAX], back[TOKEN_MAX];
	char text[TOKEN_TEXT_MAX + 1], padded[TOKEN_TEXT_MAX + 8];
	size_t len, blen;
	assert_int_equal(token_sign(&c, seed, tok, sizeof(tok), &len), 0);
	assert_int_equal(token_to_text(tok, len, text, sizeof(text)), 0);
	assert_null(strpbrk(text, "+/="));
	snprintf(padded, sizeof(padded), "  %s\n", text);
	assert_int_equal(token_from_text(padded, strlen(padded), back, sizeof(back), &blen), 0);
	assert_int_equal(blen, len);
	assert_memory_equal(back, tok, len);
	assert_int_equal(verify_at(back, blen, NOW, &out), TOKEN_OK);
	/* inner space, bad characters, empty, too small a buffer */
	snprintf(padded, sizeof(padded), "%.10s %s", text, text + 10);
	assert_int_equal(token_from_text(padded, strlen(padded), back, sizeof(back), &blen), -1);
	assert_int_equal(token_from_text("ab+/", 4, back, sizeof(back), &blen), -1);
	assert_int_equal(token_from_text(" \n", 2, back, sizeof(back), &blen), -1);
	assert_int_equal(token_from_text(text, strlen(text), back, 10, &blen), -1);
	assert_int_equal(token_to_text(tok, len, text, 10), -1);
	/* the largest token has a text form within TOKEN_TEXT_MAX */
	memset(tok, 0xff, TOKEN_MAX);
	assert_int_equal(token_to_text(tok, TOKEN_MAX, text, sizeof(text)), 0);
	assert_int_equal(strlen(text), TOKEN_TEXT_MAX);
}

static void test_keys_text(void **state)
{
	struct token_keys k;
	char why[128], line[TOKEN_KEY_TEXT_MAX + 1], text[1024];
	uint8_t pk2[32], got[32];
	token_seed_pk(other, pk2);
	token_key_to_text(keys.pk[0], line);
	assert_int_equal(strlen(line), 44);

	char b64url[64];
	sodium_bin2base64(b64url, sizeof(b64url), pk2, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	snprintf(text, sizeof(text),
		 "# issuers\r\n\n  %s   # the first\n%s\n\t%s\n# end", line, b64url, line);
	assert_int_equal(token_keys_parse(&k, text, strlen(text), why, sizeof(why)), 0);
	assert_int_equal(k.n, 2); /* the repeated key counts once */
	assert_true(token_keys_has(&k, keys.pk[0]));
	assert_true(token_keys_has(&k, pk2));
	/* an empty file parses to no keys (the node refuses that itself) */
	assert_int_equal(token_keys_parse(&k, "# none\n", 7, why, sizeof(why)), 0);
	assert_int_equal(k.n, 0);
	/* a bad line is named */
	snprintf(text, sizeof(text), "%s\nnot-a-key\n", line);
	assert_int_equal(token_keys_parse(&k, text, strlen(text), why, sizeof(why)), -1);
	assert_string_equal(why, "line 2: not a base64 key of 32 bytes");
	assert_int_equal(k.n, 0);
	/* 31 bytes, 33 bytes, a key and trailing junk */
	uint8_t b[33] = {0};
	char enc[64];
	sodium_bin2base64(enc, sizeof(enc), b, 31, sodium_base64_VARIANT_ORIGINAL);
	assert_int_equal(token_keys_parse(&k, enc, strlen(enc), why, sizeof(why)), -1);
	sodium_bin2base64(enc, sizeof(enc), b, 33, sodium_base64_VARIANT_ORIGINAL);
	assert_int_equal(token_keys_parse(&k, enc, strlen(enc), why, sizeof(why)), -1);
	snprintf(text, sizeof(text), "%s x", line);
	assert_int_equal(token_keys_parse(&k, text, strlen(text), why, sizeof(why)), -1);
	/* at most TOKEN_KEYS_MAX keys */
	char *many = calloc(TOKEN_KEYS_MAX + 1, 48);
	size_t off = 0;
	for (int i = 0; i <= TOKEN_KEYS_MAX; i++) {
		memset(b, 0, sizeof(b));
		b[0] = (uint8_t)i;
		sodium_bin2base64(many + off, 48, b, 32, sodium_base64_VARIANT_ORIGINAL);
		off += strlen(many + off);
		many[off++] = '\n';
	}
	assert_int_equal(token_keys_parse(&k, many, off, why, sizeof(why)), -1);
	assert_non_null(strstr(why, "more than 64 keys"));
	free(many);

	/* a key file holds one key */
	snprintf(text, sizeof(text), "# issuer\n%s\n", line);
	assert_int_equal(token_key_parse(text, strlen(text), got, why, sizeof(why)), 0);
	assert_memory_equal(got, keys.pk[0], 32);
	snprintf(text, sizeof(text), "%s\n%s\n", line, line);
	assert_int_equal(token_key_parse(text, strlen(text), got, why, sizeof(why)), -1);
	assert_int_equal(token_key_parse("#\n", 2, got, why, sizeof(why)), -1);
	assert_string_equal(why, "no key in the file");
}

static void test_keygen(void **state)
{
	uint8_t s1[32], p1[32], p1b[32], s2[32], p2[32];
	token_keygen(s1, p1);
	token_keygen(s2, p2);
	assert_memory_not_equal(s1, s2, 32);
	token_seed_pk(s1, p1b);
	assert_memory_equal(p1, p1b, 32);
}

/* The worked example of docs/protocol.md, byte for byte: seed 01..20,
 * identity "alice", iat 1700000000, exp 1700003600, no grants. */
static void test_documented_example(void **state)
{
	struct token_claims c = base_claims(), out;
	uint8_t tok[TOKEN_MAX];
	char text[TOKEN_TEXT_MAX + 1];
	size_t len;
	c.iat = 1700000000;
	c.exp = 1700003600;
	assert_int_equal(token_sign(&c, seed, tok, sizeof(tok), &len), 0);
	static const uint8_t claims[] = {
		0x83, 0xa8, 'i', 'd', 'e', 'n', 't', 'i', 't', 'y', 0xa5, 'a', 'l', 'i', 'c', 'e',
		0xa3, 'i', 'a', 't', 0xce, 0x65, 0x53, 0xf1, 0x00,
		0xa3, 'e', 'x', 'p', 0xce, 0x65, 0x53, 0xff, 0x10,
	};
	assert_int_equal(len, 2 + 34 + 2 + sizeof(claims) + 2 + 64);
	assert_int_equal(tok[0], 0x94);
	assert_int_equal(tok[1], 0x01);
	assert_int_equal(tok[2], 0xc4);
	assert_int_equal(tok[3], 32);
	assert_memory_equal(tok + 4, keys.pk[0], 32);
	assert_int_equal(tok[36], 0xc4);
	assert_int_equal(tok[37], sizeof(claims));
	assert_memory_equal(tok + 38, claims, sizeof(claims));
	assert_int_equal(tok[38 + sizeof(claims)], 0xc4);
	assert_int_equal(tok[39 + sizeof(claims)], 64);
	assert_int_equal(verify_at(tok, len, 1700000000, &out), TOKEN_OK);
	assert_int_equal(token_to_text(tok, len, text, sizeof(text)), 0);
	/* Ed25519 signatures are deterministic: the documented text exactly */
	assert_string_equal(text,
			    "lAHEIHm1Vi6P5lT5QHixEuipi6eQH4U65pW-1-DjkQutBJZkxCKDqGlkZW50aXR5pWFsaWNl"
			    "o2lhdM5lU_EAo2V4cM5lU_8QxEDVOwawFV-QETkSYPeySx0_LjCTKWeMvlA8_b__zaBbpMBC"
			    "NP8MPqCJkHdjn3F-mAFr-TZjDvyYB4bNxPTqcd0N");
	if (getenv("TOKEN_PRINT_EXAMPLE")) {
		char pk[TOKEN_KEY_TEXT_MAX + 1];
		token_key_to_text(keys.pk[0], pk);
		printf("public key %s\ntoken %s\nbytes", pk, text);
		for (size_t i = 0; i < len; i++)
			printf("%s%02x", i % 16 ? " " : "\n    ", tok[i]);
		printf("\n");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_sign_refuses_bad_claims),
		cmocka_unit_test(test_time_window),
		cmocka_unit_test(test_unknown_issuer_and_signature),
		cmocka_unit_test(test_malformed_outer),
		cmocka_unit_test(test_claim_rules),
		cmocka_unit_test(test_grant_rules),
		cmocka_unit_test(test_patterns),
		cmocka_unit_test(test_token_text),
		cmocka_unit_test(test_keys_text),
		cmocka_unit_test(test_keygen),
		cmocka_unit_test(test_documented_example),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}

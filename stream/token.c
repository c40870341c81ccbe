/*
 * token: the format, signing and the bounded parser. See token.h and the
 * "Tokens" section of docs/protocol.md.
 *
 * A token is the msgpack array [1, issuer key (bin 32), claims (bin),
 * signature (bin 64)]; the signature is Ed25519 over TOKEN_CONTEXT followed
 * by the claims bytes; the claims are a msgpack map (identity, iat, exp and
 * optional grants). Both msgpack values go through wire_check() first.
 */
#include "stream/token.h"

#include <stdio.h>
#include <string.h>

#include <msgpack.h>
#include <sodium.h>

#include "stream/wire.h"

#define CTX_LEN (sizeof(TOKEN_CONTEXT) - 1)

/* Depths for wire_check(): the token is one array of scalars; the claims a
 * map holding a grants map holding arrays of strings. */
#define TOKEN_DEPTH  2
#define CLAIMS_DEPTH 4

const char *token_err_name(int err)
{
	switch (err) {
	case TOKEN_OK: return "ok";
	case TOKEN_E_MALFORMED: return "malformed";
	case TOKEN_E_UNKNOWN_ISSUER: return "unknown issuer";
	case TOKEN_E_SIGNATURE: return "bad signature";
	case TOKEN_E_NOT_YET_VALID: return "not yet valid";
	case TOKEN_E_EXPIRED: return "expired";
	}
	return "unknown";
}

_Static_assert(TOKEN_IDENTITY_MAX == WIRE_IDENTITY_MAX, "one identity rule");

static int id_char(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '_';
}

int token_pattern_ok(const char *p, size_t len)
{
	if (len == 0 || len > TOKEN_PATTERN_MAX)
		return 0;
	size_t body = p[len - 1] == '*' ? len - 1 : len;
	if (body > WIRE_ROOM_ID_MAX)
		return 0;
	for (size_t i = 0; i < body; i++)
		if (!id_char((unsigned char)p[i]))
			return 0;
	return 1;
}

int token_pattern_match(const char *pat, const char *id, size_t len)
{
	size_t plen = strlen(pat);
	if (plen > 0 && pat[plen - 1] == '*')
		return len >= plen - 1 && memcmp(pat, id, plen - 1) == 0;
	return len == plen && memcmp(pat, id, len) == 0;
}

int token_grants_allow(const struct token_grants *g, enum token_grant_kind kind, const char *id,
		       size_t len)
{
	if (!g)
		return 1;
	unsigned n = kind == TOKEN_SUB ? g->nsub : g->npush;
	for (unsigned i = 0; i < n; i++)
		if (token_pattern_match(kind == TOKEN_SUB ? g->sub[i] : g->push[i], id, len))
			return 1;
	return 0;
}

/* ---- claims ---- */

static int key_is(const msgpack_object *k, const char *name)
{
	size_t n = strlen(name);
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
	       memcmp(k->via.str.ptr, name, n) == 0;
}

static int patterns(const msgpack_object *o, char (*out)[TOKEN_PATTERN_MAX + 1], unsigned *n,
		    const char **why)
{
	if (o->type != MSGPACK_OBJECT_ARRAY) {
		*why = "claims: a grant list is not an array";
		return -1;
	}
	if (o->via.array.size > TOKEN_PATTERNS_MAX) {
		*why = "claims: a grant list has more than 16 patterns";
		return -1;
	}
	for (uint32_t i = 0; i < o->via.array.size; i++) {
		const msgpack_object *s = &o->via.array.ptr[i];
		if (s->type != MSGPACK_OBJECT_STR || !token_pattern_ok(s->via.str.ptr, s->via.str.size)) {
			*why = "claims: a room-id pattern is not 1-64 id characters with an optional "
			       "trailing '*'";
			return -1;
		}
		memcpy(out[i], s->via.str.ptr, s->via.str.size);
		out[i][s->via.str.size] = '\0';
	}
	*n = o->via.array.size;
	return 0;
}

static int grants(const msgpack_object *o, struct token_grants *g, const char **why)
{
	int seen_create = 0, seen_sub = 0, seen_push = 0;
	if (o->type != MSGPACK_OBJECT_MAP) {
		*why = "claims: grants is not a map";
		return -1;
	}
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
		int *seen;
		if (key_is(k, "create"))
			seen = &seen_create;
		else if (key_is(k, "sub"))
			seen = &seen_sub;
		else if (key_is(k, "push"))
			seen = &seen_push;
		else {
			*why = "claims: a grant the node does not know";
			return -1;
		}
		if ((*seen)++) {
			*why = "claims: a grant appears twice";
			return -1;
		}
		if (seen == &seen_create) {
			if (v->type != MSGPACK_OBJECT_BOOLEAN) {
				*why = "claims: grants.create is not a boolean";
				return -1;
			}
			g->create = v->via.boolean;
		} else if (patterns(v, seen == &seen_sub ? g->sub : g->push,
				    seen == &seen_sub ? &g->nsub : &g->npush, why) < 0) {
			return -1;
		}
	}
	return 0;
}

static int claims_obj(const msgpack_object *root, struct token_claims *out, const char **why)
{
	int seen_id = 0, seen_iat = 0, seen_exp = 0, seen_grants = 0;
	if (root->type != MSGPACK_OBJECT_MAP) {
		*why = "claims: not a map";
		return -1;
	}
	for (uint32_t i = 0; i < root->via.map.size; i++) {
		const msgpack_object *k = &root->via.map.ptr[i].key, *v = &root->via.map.ptr[i].val;
		if (key_is(k, "identity")) {
			if (seen_id++) {
				*why = "claims: identity appears twice";
				return -1;
			}
			if (v->type != MSGPACK_OBJECT_STR ||
			    !wire_identity_ok(v->via.str.ptr, v->via.str.size)) {
				*why = "claims: identity breaks the identity rule";
				return -1;
			}
			memcpy(out->identity, v->via.str.ptr, v->via.str.size);
			out->identity[v->via.str.size] = '\0';
			out->idlen = v->via.str.size;
		} else if (key_is(k, "iat") || key_is(k, "exp")) {
			int iat = k->via.str.ptr[0] == 'i';
			if ((*(iat ? &seen_iat : &seen_exp))++) {
				*why = "claims: iat or exp appears twice";
				return -1;
			}
			if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
				*why = "claims: iat or exp is not an unsigned integer";
				return -1;
			}
			*(iat ? &out->iat : &out->exp) = v->via.u64;
		} else if (key_is(k, "grants")) {
			if (seen_grants++) {
				*why = "claims: grants appears twice";
				return -1;
			}
			out->has_grants = 1;
			if (grants(v, &out->grants, why) < 0)
				return -1;
		} else {
			*why = "claims: a claim the node does not know";
			return -1;
		}
	}
	if (!seen_id || !seen_iat || !seen_exp) {
		*why = "claims: identity, iat or exp is missing";
		return -1;
	}
	if (out->exp <= out->iat) {
		*why = "claims: exp is not after iat";
		return -1;
	}
	return 0;
}

int token_claims_decode(const uint8_t *p, size_t len, struct token_claims *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	if (len == 0 || len > TOKEN_MAX) {
		*why = "claims: empty or over 4096 bytes";
		return -1;
	}
	if (wire_check(p, len, CLAIMS_DEPTH, why) < 0)
		return -1;
	msgpack_zone zone;
	msgpack_object root;
	size_t off = 0;
	if (!msgpack_zone_init(&zone, 1024)) {
		*why = "out of memory";
		return -1;
	}
	int rc = -1;
	if (msgpack_unpack((const char *)p, len, &off, &zone, &root) != MSGPACK_UNPACK_SUCCESS)
		*why = "claims: msgpack-c rejected them";
	else
		rc = claims_obj(&root, out, why);
	msgpack_zone_destroy(&zone);
	if (rc < 0)
		memset(out, 0, sizeof(*out));
	return rc;
}

/* ---- the token ---- */

static int bin_of(const msgpack_object *o, const uint8_t **p, size_t *len)
{
	if (o->type != MSGPACK_OBJECT_BIN)
		return 0;
	*p = (const uint8_t *)o->via.bin.ptr;
	*len = o->via.bin.size;
	return 1;
}

enum token_err token_verify(const uint8_t *tok, size_t len, const struct token_keys *keys,
			    uint64_t now, struct token_claims *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	*why = "";
	if (len == 0 || len > TOKEN_MAX) {
		*why = "token: empty or over 4096 bytes";
		return TOKEN_E_MALFORMED;
	}
	if (wire_check(tok, len, TOKEN_DEPTH, why) < 0)
		return TOKEN_E_MALFORMED;

	msgpack_zone zone;
	msgpack_object root;
	size_t off = 0;
	if (!msgpack_zone_init(&zone, 256)) {
		*why = "out of memory";
		return TOKEN_E_MALFORMED;
	}
	enum token_err err = TOKEN_E_MALFORMED;
	const uint8_t *issuer, *claims, *sig;
	size_t ilen, clen, slen;
	uint8_t msg[CTX_LEN + TOKEN_MAX];

	if (msgpack_unpack((const char *)tok, len, &off, &zone, &root) != MSGPACK_UNPACK_SUCCESS) {
		*why = "token: msgpack-c rejected it";
		goto done;
	}
	if (root.type != MSGPACK_OBJECT_ARRAY || root.via.array.size != 4) {
		*why = "token: not an array of 4";
		goto done;
	}
	const msgpack_object *a = root.via.array.ptr;
	if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 != TOKEN_FORMAT) {
		*why = "token: format is not 1";
		goto done;
	}
	if (!bin_of(&a[1], &issuer, &ilen) || ilen != TOKEN_PK_BYTES) {
		*why = "token: issuer is not a 32-byte bin";
		goto done;
	}
	if (!bin_of(&a[2], &claims, &clen) || clen == 0) {
		*why = "token: claims are not a non-empty bin";
		goto done;
	}
	if (!bin_of(&a[3], &sig, &slen) || slen != TOKEN_SIG_BYTES) {
		*why = "token: signature is not a 64-byte bin";
		goto done;
	}
	if (!token_keys_has(keys, issuer)) {
		err = TOKEN_E_UNKNOWN_ISSUER;
		*why = "token: the issuer key is not trusted";
		goto done;
	}
	memcpy(msg, TOKEN_CONTEXT, CTX_LEN);
	memcpy(msg + CTX_LEN, claims, clen); /* clen < len <= TOKEN_MAX */
	if (crypto_sign_verify_detached(sig, msg, CTX_LEN + clen, issuer) != 0) {
		err = TOKEN_E_SIGNATURE;
		*why = "token: the signature does not verify";
		goto done;
	}
	if (token_claims_decode(claims, clen, out, why) < 0)
		goto done;
	if (out->iat > now && out->iat - now > TOKEN_LEEWAY_S) {
		err = TOKEN_E_NOT_YET_VALID;
		*why = "token: issued in the future (iat)";
	} else if (now >= out->exp) {
		err = TOKEN_E_EXPIRED;
		*why = "token: expired (exp)";
	} else {
		err = TOKEN_OK;
	}
done:
	msgpack_zone_destroy(&zone);
	return err;
}

/* Packs [1, pk, claims, sig] into out. */
static int assemble(const uint8_t pk[TOKEN_PK_BYTES], const uint8_t *claims, size_t clen,
		    const uint8_t sig[TOKEN_SIG_BYTES], uint8_t *out, size_t cap, size_t *len)
{
	struct wire_buf b;
	wire_buf_init(&b);
	msgpack_pack_array(&b.pk, 4);
	msgpack_pack_unsigned_int(&b.pk, TOKEN_FORMAT);
	wire_pack_bin(&b.pk, pk, TOKEN_PK_BYTES);
	wire_pack_bin(&b.pk, claims, clen);
	wire_pack_bin(&b.pk, sig, TOKEN_SIG_BYTES);
	int rc = -1;
	if (b.len <= cap && b.len <= TOKEN_MAX) {
		memcpy(out, b.p, b.len);
		*len = b.len;
		rc = 0;
	}
	wire_buf_free(&b);
	return rc;
}

int token_sign_raw(const uint8_t *claims, size_t clen, const uint8_t seed[TOKEN_SEED_BYTES],
		   uint8_t *out, size_t cap, size_t *len)
{
	uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	uint8_t sig[TOKEN_SIG_BYTES];
	uint8_t msg[CTX_LEN + TOKEN_MAX];
	if (clen > TOKEN_MAX)
		return -1;
	crypto_sign_seed_keypair(pk, sk, seed);
	memcpy(msg, TOKEN_CONTEXT, CTX_LEN);
	if (clen)
		memcpy(msg + CTX_LEN, claims, clen);
	crypto_sign_detached(sig, NULL, msg, CTX_LEN + clen, sk);
	sodium_memzero(sk, sizeof(sk));
	return assemble(pk, claims, clen, sig, out, cap, len);
}

static void pack_patterns(msgpack_packer *pk, const char (*p)[TOKEN_PATTERN_MAX + 1], unsigned n)
{
	msgpack_pack_array(pk, n);
	for (unsigned i = 0; i < n; i++)
		wire_pack_cstr(pk, p[i]);
}

int token_sign(const struct token_claims *c, const uint8_t seed[TOKEN_SEED_BYTES], uint8_t *out,
	       size_t cap, size_t *len)
{
	const struct token_grants *g = &c->grants;
	if (!wire_identity_ok(c->identity, c->idlen) || c->exp <= c->iat ||
	    g->nsub > TOKEN_PATTERNS_MAX || g->npush > TOKEN_PATTERNS_MAX)
		return -1;
	for (unsigned i = 0; i < g->nsub + g->npush; i++) {
		const char *p = i < g->nsub ? g->sub[i] : g->push[i - g->nsub];
		if (!token_pattern_ok(p, strnlen(p, TOKEN_PATTERN_MAX + 1)))
			return -1;
	}
	struct wire_buf b;
	wire_buf_init(&b);
	msgpack_pack_map(&b.pk, c->has_grants ? 4 : 3);
	wire_pack_cstr(&b.pk, "identity");
	wire_pack_str(&b.pk, c->identity, c->idlen);
	wire_pack_cstr(&b.pk, "iat");
	msgpack_pack_uint64(&b.pk, c->iat);
	wire_pack_cstr(&b.pk, "exp");
	msgpack_pack_uint64(&b.pk, c->exp);
	if (c->has_grants) {
		wire_pack_cstr(&b.pk, "grants");
		msgpack_pack_map(&b.pk, 3);
		wire_pack_cstr(&b.pk, "create");
		if (g->create)
			msgpack_pack_true(&b.pk);
		else
			msgpack_pack_false(&b.pk);
		wire_pack_cstr(&b.pk, "sub");
		pack_patterns(&b.pk, g->sub, g->nsub);
		wire_pack_cstr(&b.pk, "push");
		pack_patterns(&b.pk, g->push, g->npush);
	}
	int rc = token_sign_raw(b.p, b.len, seed, out, cap, len);
	wire_buf_free(&b);
	return rc;
}

void token_keygen(uint8_t seed[TOKEN_SEED_BYTES], uint8_t pk[TOKEN_PK_BYTES])
{
	randombytes_buf(seed, TOKEN_SEED_BYTES);
	token_seed_pk(seed, pk);
}

void token_seed_pk(const uint8_t seed[TOKEN_SEED_BYTES], uint8_t pk[TOKEN_PK_BYTES])
{
	uint8_t sk[crypto_sign_SECRETKEYBYTES];
	crypto_sign_seed_keypair(pk, sk, seed);
	sodium_memzero(sk, sizeof(sk));
}

/* ---- text forms ---- */

static int is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f';
}

/* Decodes one base64 key (any of libsodium's four variants) of 32 bytes. */
static int key_of(const char *p, size_t len, uint8_t key[32])
{
	static const int variants[] = {
		sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
		sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING};
	char buf[TOKEN_KEY_TEXT_MAX + 1];
	if (len == 0 || len > TOKEN_KEY_TEXT_MAX)
		return -1;
	memcpy(buf, p, len);
	buf[len] = '\0';
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		size_t n = 0;
		const char *end = NULL;
		if (sodium_base642bin(key, 32, buf, len, NULL, &n, &end, variants[i]) == 0 &&
		    n == 32 && end == buf + len)
			return 0;
	}
	return -1;
}

/* Calls fn on each key line of text: its bytes without comment and spaces.
 * 0, or -1 with why set. */
static int each_key(const char *text, size_t len, char *why, size_t whylen,
		    int (*fn)(void *, const uint8_t *, char *, size_t, unsigned), void *arg)
{
	unsigned line = 0;
	size_t i = 0;
	while (i < len) {
		size_t start = i, end;
		line++;
		while (i < len && text[i] != '\n')
			i++;
		end = i;
		if (i < len)
			i++; /* the '\n' */
		const char *hash = memchr(text + start, '#', end - start);
		if (hash)
			end = (size_t)(hash - text);
		while (start < end && is_space(text[start]))
			start++;
		while (end > start && is_space(text[end - 1]))
			end--;
		if (start == end)
			continue;
		uint8_t key[32];
		if (memchr(text + start, '\0', end - start) || key_of(text + start, end - start, key) < 0) {
			snprintf(why, whylen, "line %u: not a base64 key of 32 bytes", line);
			return -1;
		}
		if (fn(arg, key, why, whylen, line) < 0)
			return -1;
	}
	return 0;
}

static int add_key(void *arg, const uint8_t *key, char *why, size_t whylen, unsigned line)
{
	struct token_keys *k = arg;
	if (token_keys_has(k, key))
		return 0;
	if (k->n == TOKEN_KEYS_MAX) {
		snprintf(why, whylen, "line %u: more than %d keys", line, TOKEN_KEYS_MAX);
		return -1;
	}
	memcpy(k->pk[k->n++], key, TOKEN_PK_BYTES);
	return 0;
}

int token_keys_parse(struct token_keys *k, const char *text, size_t len, char *why,
		     size_t whylen)
{
	k->n = 0;
	if (each_key(text, len, why, whylen, add_key, k) < 0) {
		k->n = 0;
		return -1;
	}
	return 0;
}

int token_keys_has(const struct token_keys *k, const uint8_t pk[TOKEN_PK_BYTES])
{
	for (size_t i = 0; i < k->n; i++)
		if (memcmp(k->pk[i], pk, TOKEN_PK_BYTES) == 0)
			return 1;
	return 0;
}

struct one_key {
	uint8_t *key;
	int n;
};

static int take_one(void *arg, const uint8_t *key, char *why, size_t whylen, unsigned line)
{
	struct one_key *o = arg;
	if (o->n++) {
		snprintf(why, whylen, "line %u: a second key; a key file holds one", line);
		return -1;
	}
	memcpy(o->key, key, 32);
	return 0;
}

int token_key_parse(const char *text, size_t len, uint8_t key[32], char *why, size_t whylen)
{
	uint8_t tmp[32];
	struct one_key o = {tmp, 0};
	int rc = each_key(text, len, why, whylen, take_one, &o);
	if (rc == 0 && o.n == 0) {
		snprintf(why, whylen, "no key in the file");
		rc = -1;
	}
	if (rc == 0)
		memcpy(key, tmp, 32);
	sodium_memzero(tmp, sizeof(tmp));
	return rc;
}

void token_key_to_text(const uint8_t key[32], char out[TOKEN_KEY_TEXT_MAX + 1])
{
	sodium_bin2base64(out, TOKEN_KEY_TEXT_MAX + 1, key, 32, sodium_base64_VARIANT_ORIGINAL);
}

int token_to_text(const uint8_t *tok, size_t len, char *out, size_t cap)
{
	const int v = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
	if (cap < sodium_base64_ENCODED_LEN(len, v))
		return -1;
	sodium_bin2base64(out, cap, tok, len, v);
	return 0;
}

int token_from_text(const char *text, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
	while (len > 0 && is_space(text[0]))
		text++, len--;
	while (len > 0 && is_space(text[len - 1]))
		len--;
	if (len == 0)
		return -1;
	const char *end = NULL;
	if (sodium_base642bin(out, cap, text, len, NULL, outlen, &end,
			      sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
	    end == text + len)
		return 0;
	return -1;
}

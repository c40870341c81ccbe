/*
 * token: vroom's signed tokens (no I/O): an issuer's Ed25519 signature over a
 * msgpack claim set naming an identity, a validity window and optional grants.
 *
 * Invariant: no byte of a token reaches msgpack-c before the bounds pass
 * (wire_check) has accepted it, and a token is at most TOKEN_MAX bytes, so a
 * hostile token costs at most a few kilobytes and one signature check.
 * The format is in docs/protocol.md ("Tokens").
 */
#ifndef VROOM_STREAM_TOKEN_H
#define VROOM_STREAM_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_FORMAT	   1	/* the first element of a token */
#define TOKEN_MAX	   4096 /* bytes of a binary token */
#define TOKEN_TEXT_MAX	   5462 /* its base64url form, without padding */
#define TOKEN_PK_BYTES	   32	/* an Ed25519 public key */
#define TOKEN_SEED_BYTES   32	/* an Ed25519 private key, as its seed */
#define TOKEN_SIG_BYTES	   64
#define TOKEN_KEY_TEXT_MAX 44	/* a key in standard base64 with padding */
#define TOKEN_IDENTITY_MAX 128
#define TOKEN_PATTERNS_MAX 16 /* room-id patterns per grant list */
#define TOKEN_PATTERN_MAX  65 /* a room id of up to 64 bytes, or a prefix and '*' */
#define TOKEN_KEYS_MAX	   64 /* trusted issuer keys */
#define TOKEN_LEEWAY_S	   60 /* a token is valid from iat - 60 s: clock skew */
#define TOKEN_CONTEXT	   "vroom-token-v1" /* signed before the claims */

enum token_err {
	TOKEN_OK = 0,
	TOKEN_E_MALFORMED = 1,	    /* not a token, or its claims break a rule */
	TOKEN_E_UNKNOWN_ISSUER = 2, /* signed by a key the node does not trust */
	TOKEN_E_SIGNATURE = 3,	    /* the signature does not verify */
	TOKEN_E_NOT_YET_VALID = 4,  /* iat is more than the leeway ahead */
	TOKEN_E_EXPIRED = 5,	    /* now >= exp */
};

/* What a token restricts its holder to. Patterns are NUL-terminated. */
struct token_grants {
	int create; /* may create rooms */
	unsigned nsub, npush;
	char sub[TOKEN_PATTERNS_MAX][TOKEN_PATTERN_MAX + 1];  /* may subscribe, INFO */
	char push[TOKEN_PATTERNS_MAX][TOKEN_PATTERN_MAX + 1]; /* may push, open streams, INFO */
};

struct token_claims {
	char identity[TOKEN_IDENTITY_MAX + 1]; /* NUL-terminated; no NUL inside */
	size_t idlen;
	uint64_t iat, exp; /* Unix seconds */
	int has_grants;	   /* 0: the holder is unrestricted */
	struct token_grants grants;
};

/* The issuer keys a node trusts: a plain value. */
struct token_keys {
	size_t n;
	uint8_t pk[TOKEN_KEYS_MAX][TOKEN_PK_BYTES];
};

enum token_grant_kind { TOKEN_SUB, TOKEN_PUSH };

/* "malformed", "unknown issuer", "bad signature", "not yet valid", "expired". */
const char *token_err_name(int err);

/* Checks tok[0..len) (borrowed): format, issuer in keys, signature, claims,
 * then the time window at now (Unix seconds). On TOKEN_OK, and also on
 * TOKEN_E_NOT_YET_VALID and TOKEN_E_EXPIRED, *out holds the claims. *why is
 * a static string naming the fault (or "" on success). */
enum token_err token_verify(const uint8_t *tok, size_t len, const struct token_keys *keys,
			    uint64_t now, struct token_claims *out, const char **why);

/* Decodes a claim set (borrowed bytes) into *out, applying every rule of
 * docs/protocol.md but the time window. 0, or -1 with *why set. */
int token_claims_decode(const uint8_t *p, size_t len, struct token_claims *out, const char **why);

/* Encodes c's claims and signs them with seed: the binary token goes to
 * out[0..cap), its length to *len. 0, or -1 if it would be over cap or
 * TOKEN_MAX, or c breaks a rule. */
int token_sign(const struct token_claims *c, const uint8_t seed[TOKEN_SEED_BYTES], uint8_t *out,
	       size_t cap, size_t *len);
/* Signs claims[0..clen) as they are (for tests and fuzzing: no checks on
 * the claims). 0, or -1 if the token would be over cap or TOKEN_MAX. */
int token_sign_raw(const uint8_t *claims, size_t clen, const uint8_t seed[TOKEN_SEED_BYTES],
		   uint8_t *out, size_t cap, size_t *len);

/* A fresh key pair's seed (private) and public key. */
void token_keygen(uint8_t seed[TOKEN_SEED_BYTES], uint8_t pk[TOKEN_PK_BYTES]);
/* The public key of a seed. */
void token_seed_pk(const uint8_t seed[TOKEN_SEED_BYTES], uint8_t pk[TOKEN_PK_BYTES]);

/* Trusted keys from the text of a keys file (borrowed): one base64 key per
 * line, blank lines, '#' comments (whole lines or after a key). Repeated
 * keys count once. 0, or -1 with a message naming the line in why. */
int token_keys_parse(struct token_keys *k, const char *text, size_t len, char *why,
		     size_t whylen);
/* Whether pk is one of k's keys. */
int token_keys_has(const struct token_keys *k, const uint8_t pk[TOKEN_PK_BYTES]);
/* The one key (a seed or a public key) in a key file's text, with the same
 * syntax. 0, or -1 with why set. */
int token_key_parse(const char *text, size_t len, uint8_t key[32], char *why, size_t whylen);
/* A key in standard base64 with padding, NUL-terminated. */
void token_key_to_text(const uint8_t key[32], char out[TOKEN_KEY_TEXT_MAX + 1]);

/* A binary token as text (base64url, no padding), NUL-terminated in out[cap].
 * 0, or -1 if cap is too small. */
int token_to_text(const uint8_t *tok, size_t len, char *out, size_t cap);
/* The binary token of a text form (surrounding white space ignored). 0, or
 * -1 if it is not base64url or decodes to more than cap bytes. */
int token_from_text(const char *text, size_t len, uint8_t *out, size_t cap, size_t *outlen);

/* Whether p is a valid room-id pattern: 1-64 characters of A-Z a-z 0-9 - _,
 * or such a prefix (possibly empty) followed by one '*'. */
int token_pattern_ok(const char *p, size_t len);
/* Whether a room id matches a pattern (exact, or prefix + '*'). */
int token_pattern_match(const char *pat, const char *id, size_t len);
/* Whether grants g allow kind on room id[0..len); NULL grants allow all. */
int token_grants_allow(const struct token_grants *g, enum token_grant_kind kind, const char *id,
		       size_t len);

#endif

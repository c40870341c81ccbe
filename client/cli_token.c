/*
 * cli_token: the vroom commands that make issuer keys and tokens (no node
 * involved), and reading a token file for --token.
 *
 *   vroom keygen DIR
 *   vroom token --key FILE --identity NAME --ttl DURATION [--valid-from UNIX]
 *               [--create] [--sub PATTERN]... [--push PATTERN]...
 *
 * They take their own options and come first on the command line. The
 * token format is stream/token.h's (docs/protocol.md, "Tokens").
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "client/cli.h"
#include "stream/token.h"

#define KEY_FILE_MAX (64u << 10)

int cli_token_command(const char *name)
{
	return name && (strcmp(name, "keygen") == 0 || strcmp(name, "token") == 0);
}

/* Reads at most max bytes of path into buf[cap] (NUL-terminated). The
 * length, or -1 with errno set (EFBIG: over max). */
static long read_small(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, cap - 1, f);
	int err = ferror(f);
	int more = !err && n == cap - 1 && fgetc(f) != EOF;
	fclose(f);
	if (err || more) {
		errno = err ? EIO : EFBIG;
		return -1;
	}
	buf[n] = '\0';
	return (long)n;
}

int cli_load_token(const char *path, char *out, size_t cap, int text_ok)
{
	uint8_t bin[TOKEN_MAX];
	size_t len;
	long n = read_small(path, out, cap);
	if (n < 0 && errno == ENOENT && text_ok &&
	    token_from_text(path, strlen(path), bin, sizeof(bin), &len) == 0 &&
	    strlen(path) < cap) {
		strcpy(out, path); /* $VROOM_TOKEN may hold the token itself */
		return 0;
	}
	if (n < 0 && text_ok && errno == ENOENT) {
		fprintf(stderr, "vroom: token: $VROOM_TOKEN names no file and is not a token\n");
		return -1;
	}
	if (n < 0) {
		fprintf(stderr, "vroom: token: %s: %s\n", path,
			errno == EFBIG ? "too large for a token" : strerror(errno));
		return -1;
	}
	if (token_from_text(out, (size_t)n, bin, sizeof(bin), &len) < 0) {
		fprintf(stderr, "vroom: token: %s: not a token (the text `vroom token` prints)\n",
			path);
		return -1;
	}
	return 0;
}

/* Writes text to path, created with mode (exclusively if excl). 0 or -1. */
static int write_file(const char *path, const char *text, mode_t mode, int excl)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC), mode);
	if (fd < 0) {
		fprintf(stderr, "vroom: keygen: %s: %s%s\n", path, strerror(errno),
			errno == EEXIST ? " (remove it first: a key is never overwritten)" : "");
		return -1;
	}
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fprintf(stderr, "vroom: keygen: %s: %s\n", path, strerror(errno));
			close(fd);
			return -1;
		}
		off += (size_t)w;
	}
	/* the mode, whatever the umask did to it */
	if (fchmod(fd, mode) < 0 || close(fd) < 0) {
		fprintf(stderr, "vroom: keygen: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static int keygen(int argc, char **argv)
{
	if (argc != 2)
		return cli_usage("keygen: expected one directory: vroom keygen DIR");
	const char *dir = argv[1];
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "vroom: keygen: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	uint8_t seed[TOKEN_SEED_BYTES], pk[TOKEN_PK_BYTES];
	char seedtext[TOKEN_KEY_TEXT_MAX + 1], pktext[TOKEN_KEY_TEXT_MAX + 1];
	char keypath[4096], pubpath[4096], text[4096 + 512];
	snprintf(keypath, sizeof(keypath), "%s/issuer.key", dir);
	snprintf(pubpath, sizeof(pubpath), "%s/issuer.pub", dir);
	token_keygen(seed, pk);
	token_key_to_text(seed, seedtext);
	token_key_to_text(pk, pktext);
	sodium_memzero(seed, sizeof(seed));
	snprintf(text, sizeof(text),
		 "# vroom issuer private key: keep it secret; sign tokens with\n"
		 "# vroom token --key %s --identity NAME --ttl DURATION\n%s\n",
		 keypath, seedtext);
	int rc = write_file(keypath, text, 0600, 1);
	sodium_memzero(text, sizeof(text));
	sodium_memzero(seedtext, sizeof(seedtext));
	if (rc < 0)
		return 1;
	snprintf(text, sizeof(text),
		 "# vroom issuer public key: nodes that trust it list this line in\n"
		 "# their --trusted-keys file\n%s\n",
		 pktext);
	if (write_file(pubpath, text, 0644, 0) < 0)
		return 1;
	printf("%s\n", pktext);
	return 0;
}

/* "90", "90s", "15m", "12h", "7d": seconds, at most ten years. */
static int parse_duration(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s || errno || s[0] == '-' || s[0] == '+')
		return -1;
	uint64_t scale = 1;
	if (*end) {
		if (end[1])
			return -1;
		switch (*end) {
		case 's': scale = 1; break;
		case 'm': scale = 60; break;
		case 'h': scale = 3600; break;
		case 'd': scale = 86400; break;
		default: return -1;
		}
	}
	if (v == 0 || v > 3650ull * 86400 / scale)
		return -1;
	*out = v * scale;
	return 0;
}

static int add_pattern(char (*list)[TOKEN_PATTERN_MAX + 1], unsigned *n, const char *flag,
		       const char *p)
{
	if (*n == TOKEN_PATTERNS_MAX)
		return cli_usage("%s: at most %d patterns", flag, TOKEN_PATTERNS_MAX);
	if (!token_pattern_ok(p, strlen(p)))
		return cli_usage("%s: '%s' is not a room id (1-64 of A-Z a-z 0-9 - _) or such a "
				 "prefix followed by '*'", flag, p);
	snprintf(list[(*n)++], TOKEN_PATTERN_MAX + 1, "%s", p);
	return 0;
}

static int token(int argc, char **argv)
{
	enum { O_KEY = 256, O_IDENTITY, O_TTL, O_FROM, O_CREATE, O_SUB, O_PUSH };
	static const struct option opts[] = {
		{"key", required_argument, 0, O_KEY},
		{"identity", required_argument, 0, O_IDENTITY},
		{"ttl", required_argument, 0, O_TTL},
		{"valid-from", required_argument, 0, O_FROM},
		{"create", no_argument, 0, O_CREATE},
		{"sub", required_argument, 0, O_SUB},
		{"push", required_argument, 0, O_PUSH},
		{0, 0, 0, 0},
	};
	const char *key = NULL, *identity = NULL;
	uint64_t ttl = 0;
	struct token_claims c;
	char *end;
	int o, rc;

	memset(&c, 0, sizeof(c));
	c.iat = (uint64_t)time(NULL);
	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case O_KEY:
			key = optarg;
			break;
		case O_IDENTITY:
			identity = optarg;
			break;
		case O_TTL:
			if (parse_duration(optarg, &ttl) < 0)
				return cli_usage("--ttl: '%s' is not a duration (seconds, or a "
						 "number with s, m, h or d; at most 10 years)",
						 optarg);
			break;
		case O_FROM:
			errno = 0;
			c.iat = strtoull(optarg, &end, 10);
			if (end == optarg || *end || errno || optarg[0] == '-')
				return cli_usage("--valid-from: '%s' is not a Unix time in seconds",
						 optarg);
			break;
		case O_CREATE:
			c.has_grants = 1;
			c.grants.create = 1;
			break;
		case O_SUB:
			c.has_grants = 1;
			if ((rc = add_pattern(c.grants.sub, &c.grants.nsub, "--sub", optarg)))
				return rc;
			break;
		case O_PUSH:
			c.has_grants = 1;
			if ((rc = add_pattern(c.grants.push, &c.grants.npush, "--push", optarg)))
				return rc;
			break;
		default:
			return cli_usage("token: expected --key FILE --identity NAME --ttl DURATION "
					 "[--valid-from UNIX] [--create] [--sub P]... [--push P]...");
		}
	}
	if (optind < argc)
		return cli_usage("token: unexpected argument '%s'", argv[optind]);
	if (!key || !identity || !ttl)
		return cli_usage("token: --key, --identity and --ttl are required");
	size_t idlen = strlen(identity);
	if (idlen == 0 || idlen > TOKEN_IDENTITY_MAX)
		return cli_usage("--identity: 1-%d bytes", TOKEN_IDENTITY_MAX);
	memcpy(c.identity, identity, idlen + 1);
	c.idlen = idlen;
	c.exp = c.iat + ttl;

	struct stat st;
	char *text = malloc(KEY_FILE_MAX);
	long n = text ? read_small(key, text, KEY_FILE_MAX) : -1;
	if (n < 0) {
		fprintf(stderr, "vroom: token: %s: %s\n", key,
			errno == EFBIG ? "too large for a key file" : strerror(errno));
		free(text);
		return 1;
	}
	if (stat(key, &st) == 0 && (st.st_mode & 077))
		fprintf(stderr, "vroom: warning: %s can be read by others than its owner "
				"(chmod 600 it)\n", key);
	uint8_t seed[TOKEN_SEED_BYTES];
	char why[128];
	rc = token_key_parse(text, (size_t)n, seed, why, sizeof(why));
	sodium_memzero(text, (size_t)n);
	free(text);
	if (rc < 0) {
		fprintf(stderr, "vroom: token: %s: %s\n", key, why);
		return 1;
	}
	uint8_t tok[TOKEN_MAX];
	char out[TOKEN_TEXT_MAX + 1];
	size_t len;
	rc = token_sign(&c, seed, tok, sizeof(tok), &len);
	sodium_memzero(seed, sizeof(seed));
	if (rc < 0)
		return cli_usage("--identity: '%s' breaks the identity rule (UTF-8, no spaces "
				 "or control characters)", identity);
	token_to_text(tok, len, out, sizeof(out));
	printf("%s\n", out);
	return 0;
}

int cli_token_main(int argc, char **argv)
{
	if (sodium_init() < 0) {
		fprintf(stderr, "vroom: libsodium failed to initialise\n");
		return 1;
	}
	return strcmp(argv[0], "keygen") == 0 ? keygen(argc, argv) : token(argc, argv);
}

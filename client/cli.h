/*
 * cli: what the vroom command's subcommands share: parsed options and the
 * two ways a command fails (a node/connection error, a usage error).
 */
#ifndef VROOM_CLIENT_CLI_H
#define VROOM_CLIENT_CLI_H

struct vroom_error;

#define CLI_MAX_ATTRS 32

struct cli {
	const char *server, *identity;
	const char *topic, *name, *mime, *to, *dir;
	const char *attrs[CLI_MAX_ATTRS]; /* KEY=VALUE */
	int nattrs, overwrite;
	const char **pos; /* positional arguments, the command first */
	int npos;
	int dtype, each_line, format_json, verbose;
	long count;	  /* -1: no limit */
	double timeout_s; /* -1: none */
	const char *token; /* the token's text (--token FILE, $VROOM_TOKEN), or NULL */
};

struct vroom;
struct vroom_handlers;
/* Connects as the options say (vroom_open_token); with several servers
 * (-s A,B,...) reconnection is on: the command moves to another node when
 * its node fails. NULL with *e set on failure. */
struct vroom *cli_open(const struct cli *c, const struct vroom_handlers *h, void *arg,
		       struct vroom_error *e);

/* Prints "vroom: NAME: MESSAGE" and returns exit status 1. */
int cli_fail(const struct vroom_error *e);
/* Prints a usage error and returns exit status 2. */
int cli_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* --timeout in milliseconds for vroom_run(): -1 for none, at most 24 days. */
int cli_timeout_ms(const struct cli *c);

/* Byte-stream commands (cli_stream.c). */
int cli_send(struct cli *c);
int cli_stream(struct cli *c);
int cli_recv(struct cli *c);
/* Cluster commands (cli_cluster.c). */
int cli_cluster(struct cli *c);

/* Tokens (cli_token.c): keygen and token take their own options and come
 * first; cli_token_main() runs them with argv[0] the command. */
int cli_token_command(const char *name);
int cli_token_main(int argc, char **argv);
/* Reads a token file into out[cap] (its text); with text_ok, path may be
 * the token's text itself ($VROOM_TOKEN). 0, or -1 after a message. */
int cli_load_token(const char *path, char *out, size_t cap, int text_ok);

#endif

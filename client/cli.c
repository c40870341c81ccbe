/*
 * vroom: the command-line client, built on libvroom's blocking layer.
 *
 * Exit status: 0 success; 1 an error from the node or the connection (one
 * line on stderr: "vroom: NAME: MESSAGE"), or a file that failed to send;
 * 2 a usage error; 3 `sub`/`recv` ended because the room closed; 4 `recv`
 * received a stream that did not arrive complete and verified.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "client/cli.h"
#include "client/vroom.h"
#include "vroom_version.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vroom [-s HOST:PORT[,...]] [--identity NAME] [--token FILE] COMMAND [ARGS]\n"
		"\n"
		"  room create                    create a room; prints its id\n"
		"  room rm ID                     remove a room (owner only)\n"
		"  room grant ID IDENTITY         let IDENTITY push to the room (owner only)\n"
		"  room revoke ID IDENTITY        take that right back (owner only)\n"
		"  room info ID                   the room's state as JSON\n"
		"  push ID [--dtype N] [DATA]     push DATA, or all of stdin as one message\n"
		"       [--each-line]             push each line of stdin as a message\n"
		"  sub ID [--count N] [--timeout SECONDS] [--format raw|json] [--verbose]\n"
		"                                 print pushes until N arrived or the timeout\n"
		"  send ID FILE... [--topic T] [--to IDENTITY,...] [--attr KEY=VALUE]...\n"
		"                                 send files as streams; prints each stream id\n"
		"  stream ID [--topic T] [--name N] [--mime M]\n"
		"                                 send stdin as one stream\n"
		"  recv ID [--topic T] [--dir DIR] [--count N] [--timeout SECONDS] [--overwrite]\n"
		"                                 save streams in DIR; one JSON line per stream\n"
		"  cluster keygen FILE            write a new cluster key (mode 0600)\n"
		"  cluster room ID                a room's relay and backups, as JSON\n"
		"  keygen DIR                     write an issuer key pair: DIR/issuer.key (mode\n"
		"                                 0600) and DIR/issuer.pub; prints the public key\n"
		"  token --key FILE --identity NAME --ttl DURATION [--valid-from UNIX]\n"
		"       [--create] [--sub PATTERN]... [--push PATTERN]...\n"
		"                                 print a token signed with FILE; with grants,\n"
		"                                 it may only create rooms (--create) and use\n"
		"                                 its own and these rooms (ID, or PREFIX*)\n"
		"\n"
		"  -s, --server HOST:PORT[,...]   the node (default %s, or $VROOM_SERVER);\n"
		"                                 several: move to another when one fails\n"
		"      --identity NAME            who you are (default $VROOM_IDENTITY, else $USER;\n"
		"                                 with a token: the token's)\n"
		"      --token FILE               the token to show the node (default $VROOM_TOKEN)\n"
		"      --help, --version\n",
		VROOM_DEFAULT_SERVER);
}

int cli_fail(const struct vroom_error *e)
{
	fprintf(stderr, "vroom: %s: %s\n", vroom_code_name(e->code), e->message);
	return 1;
}

int cli_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "vroom: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, " (see vroom --help)\n");
	va_end(ap);
	return 2;
}

int cli_timeout_ms(const struct cli *c)
{
	if (c->timeout_s < 0)
		return -1;
	return c->timeout_s > 86400.0 * 24 ? 86400 * 24 * 1000 : (int)(c->timeout_s * 1000);
}

/* With several nodes (-s A,B,C): moves, always on stderr with -v; a gap
 * (pushes the new node no longer held) always. */
static void cli_event(struct vroom *v, const struct vroom_event *ev, void *arg)
{
	const struct cli *c = arg;
	if (ev->type == VROOM_EV_GAP)
		fprintf(stderr, "vroom: gap: room %s: seqs %llu to %llu are lost\n", ev->room,
			(unsigned long long)ev->from, (unsigned long long)ev->to);
	else if (ev->type == VROOM_EV_LOST && c->verbose)
		fprintf(stderr, "vroom: lost %s: %s; reconnecting\n", ev->server, ev->err->message);
	else if (ev->type == VROOM_EV_MOVED && c->verbose)
		fprintf(stderr, "vroom: connected to %s\n", ev->server);
}

struct vroom *cli_open(const struct cli *c, const struct vroom_handlers *h, void *arg,
		       struct vroom_error *e)
{
	struct vroom_reconnect rc = {.enabled = 1, .event = cli_event, .event_arg = (void *)c};
	return vroom_open_reconnect(c->server, c->identity, c->token,
				    strchr(c->server, ',') ? &rc : NULL, h, arg, e);
}

static struct vroom *connect_or_die(const struct cli *c, const struct vroom_handlers *h,
				    void *arg)
{
	struct vroom_error e;
	struct vroom *v = cli_open(c, h, arg, &e);
	if (!v)
		cli_fail(&e);
	return v;
}

static int cmd_room(struct cli *c)
{
	struct vroom_error e;
	const char *sub = c->npos > 1 ? c->pos[1] : NULL;
	struct {
		const char *name;
		int args;
	} forms[] = {{"create", 0}, {"rm", 1}, {"grant", 2}, {"revoke", 2}, {"info", 1}};
	int form = -1;
	for (int i = 0; sub && i < 5; i++)
		if (strcmp(sub, forms[i].name) == 0)
			form = i;
	if (form < 0)
		return cli_usage("room: expected create, rm, grant, revoke or info, not '%s'",
				 sub ? sub : "");
	if (c->npos != 2 + forms[form].args)
		return cli_usage("room %s: wrong number of arguments", sub);
	struct vroom *v = connect_or_die(c, NULL, NULL);
	if (!v)
		return 1;
	int rc = 0;
	const char *id = c->npos > 2 ? c->pos[2] : NULL;
	const char *who = c->npos > 3 ? c->pos[3] : NULL;
	char newid[VROOM_ROOM_ID_MAX + 1];
	struct vroom_room_info info;
	switch (form) {
	case 0:
		rc = vroom_create(v, newid, &e);
		if (rc == 0)
			printf("%s\n", newid);
		break;
	case 1:
		rc = vroom_remove(v, id, &e);
		break;
	case 2:
		rc = vroom_grant(v, id, who, &e);
		break;
	case 3:
		rc = vroom_revoke(v, id, who, &e);
		break;
	case 4:
		rc = vroom_info(v, id, &info, &e);
		if (rc == 0) {
			json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "id",
					      info.id, "owner", info.owner, "subscribers",
					      (json_int_t)info.subscribers, "created_ms",
					      (json_int_t)info.created_ms, "last_active_ms",
					      (json_int_t)info.last_active_ms, "seq",
					      (json_int_t)info.seq, "pushes", (json_int_t)info.pushes,
					      "bytes", (json_int_t)info.bytes);
			if (info.has_grants) {
				json_t *g = json_array();
				for (size_t i = 0; i < info.ngrants; i++)
					json_array_append_new(g, json_string(info.grants[i]));
				json_object_set_new(o, "grants", g);
			}
			json_dumpf(o, stdout, JSON_COMPACT);
			printf("\n");
			json_decref(o);
			vroom_info_release(&info);
		}
		break;
	}
	vroom_close(v);
	return rc < 0 ? cli_fail(&e) : 0;
}

/* Reads all of f into a growing buffer, at most max bytes. */
static int slurp(FILE *f, size_t max, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *p = malloc(cap);
	if (!p)
		return -1;
	for (;;) {
		if (n == cap) {
			if (cap > max) {
				free(p);
				errno = EFBIG;
				return -1;
			}
			char *q = realloc(p, cap * 2);
			if (!q) {
				free(p);
				return -1;
			}
			p = q;
			cap *= 2;
		}
		size_t got = fread(p + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f) || n > max) {
		free(p);
		errno = ferror(f) ? EIO : EFBIG;
		return -1;
	}
	*out = p;
	*len = n;
	return 0;
}

static int cmd_push(struct cli *c)
{
	struct vroom_error e;
	if (c->npos < 2 || c->npos > 3)
		return cli_usage("push: expected ID [DATA]");
	if (c->dtype < 0 || c->dtype > 255)
		return cli_usage("push: --dtype must be 0-255");
	const char *room = c->pos[1];
	struct vroom *v = connect_or_die(c, NULL, NULL);
	if (!v)
		return 1;
	uint64_t max = vroom_limit(v, "frame_max");
	size_t room_for_header = 256;
	size_t maxmsg = max > room_for_header ? max - room_for_header : 0;
	int rc = 0;
	if (c->npos == 3) {
		rc = vroom_push(v, room, (uint8_t)c->dtype, c->pos[2], strlen(c->pos[2]), NULL, &e);
	} else if (c->each_line) {
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		while (rc == 0 && (n = getline(&line, &cap, stdin)) >= 0) {
			if (n > 0 && line[n - 1] == '\n')
				n--;
			rc = vroom_push(v, room, (uint8_t)c->dtype, line, (size_t)n, NULL, &e);
		}
		free(line);
	} else {
		char *buf;
		size_t len;
		if (slurp(stdin, maxmsg, &buf, &len) < 0) {
			vroom_close(v);
			if (errno == EFBIG) {
				fprintf(stderr,
					"vroom: too_large: stdin is over the node's message limit "
					"(%zu bytes); send it as a stream instead\n", maxmsg);
			} else {
				fprintf(stderr, "vroom: io: cannot read stdin: %s\n", strerror(errno));
			}
			return 1;
		}
		rc = vroom_push(v, room, (uint8_t)c->dtype, buf, len, NULL, &e);
		free(buf);
	}
	vroom_close(v);
	return rc < 0 ? cli_fail(&e) : 0;
}

struct sub_state {
	struct cli *c;
	long got;
	int closed;
	char reason[256];
	int write_failed;
};

static void sub_push(struct vroom *v, const struct vroom_push *p, void *arg)
{
	struct sub_state *s = arg;
	if (s->c->format_json) {
		size_t b64len = sodium_base64_ENCODED_LEN(p->len, sodium_base64_VARIANT_ORIGINAL);
		char *b64 = malloc(b64len);
		if (!b64)
			return;
		sodium_bin2base64(b64, b64len, p->data, p->len, sodium_base64_VARIANT_ORIGINAL);
		json_t *o = json_pack("{s:I, s:s, s:i, s:I, s:s}", "seq", (json_int_t)p->seq,
				      "sender", p->sender, "dtype", p->dtype, "size",
				      (json_int_t)p->len, "data", b64);
		if (o) {
			json_dumpf(o, stdout, JSON_COMPACT);
			fputc('\n', stdout);
			json_decref(o);
		}
		free(b64);
	} else if (p->len && fwrite(p->data, 1, p->len, stdout) != p->len) {
		s->write_failed = 1;
	}
	fflush(stdout);
	if (ferror(stdout))
		s->write_failed = 1;
	if (++s->got == s->c->count || s->write_failed)
		vroom_stop(v);
}

static void sub_closed(struct vroom *v, const char *room, const char *reason, void *arg)
{
	struct sub_state *s = arg;
	s->closed = 1;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	vroom_stop(v);
}

static int cmd_sub(struct cli *c)
{
	struct vroom_error e;
	if (c->npos != 2)
		return cli_usage("sub: expected one room id");
	struct sub_state s = {.c = c};
	struct vroom_handlers h = {.push = sub_push, .room_closed = sub_closed};
	struct vroom *v = connect_or_die(c, &h, &s);
	if (!v)
		return 1;
	if (vroom_subscribe(v, c->pos[1], &e) < 0) {
		vroom_close(v);
		return cli_fail(&e);
	}
	if (c->verbose)
		fprintf(stderr, "vroom: subscribed to %s\n", c->pos[1]);
	int rc = 0;
	if (c->count != 0)
		rc = vroom_run(v, cli_timeout_ms(c), &e);
	vroom_close(v);
	if (s.write_failed) {
		fprintf(stderr, "vroom: io: cannot write to stdout\n");
		return 1;
	}
	if (s.closed) {
		fprintf(stderr, "vroom: room_closed: room %s closed (%s)\n", c->pos[1], s.reason);
		return 3;
	}
	return rc < 0 ? cli_fail(&e) : 0;
}

int main(int argc, char **argv)
{
	enum { O_IDENTITY = 256, O_DTYPE, O_EACH, O_COUNT, O_TIMEOUT, O_FORMAT, O_HELP,
	       O_VERSION, O_TOPIC, O_TO, O_ATTR, O_NAME, O_MIME, O_DIR, O_OVERWRITE, O_TOKEN };
	static const struct option opts[] = {
		{"server", required_argument, 0, 's'},
		{"identity", required_argument, 0, O_IDENTITY},
		{"dtype", required_argument, 0, O_DTYPE},
		{"each-line", no_argument, 0, O_EACH},
		{"count", required_argument, 0, O_COUNT},
		{"timeout", required_argument, 0, O_TIMEOUT},
		{"format", required_argument, 0, O_FORMAT},
		{"verbose", no_argument, 0, 'v'},
		{"topic", required_argument, 0, O_TOPIC},
		{"to", required_argument, 0, O_TO},
		{"attr", required_argument, 0, O_ATTR},
		{"name", required_argument, 0, O_NAME},
		{"mime", required_argument, 0, O_MIME},
		{"dir", required_argument, 0, O_DIR},
		{"overwrite", no_argument, 0, O_OVERWRITE},
		{"token", required_argument, 0, O_TOKEN},
		{"help", no_argument, 0, O_HELP},
		{"version", no_argument, 0, O_VERSION},
		{0, 0, 0, 0},
	};
	struct cli c = {.count = -1, .timeout_s = -1};
	const char *env;
	char *end;
	int o;
	/* tokens: keygen and token parse their own options; a token file's
	 * text lives here for the whole run */
	char token_text[8192];
	const char *token_file = (env = getenv("VROOM_TOKEN")) && *env ? env : NULL;
	int token_from_env = token_file != NULL;
	int identity_given = (env = getenv("VROOM_IDENTITY")) && *env;
	if (argc > 1 && cli_token_command(argv[1]))
		return cli_token_main(argc - 1, argv + 1);

	c.server = (env = getenv("VROOM_SERVER")) && *env ? env : VROOM_DEFAULT_SERVER;
	c.identity = (env = getenv("VROOM_IDENTITY")) && *env ? env
		     : (env = getenv("USER")) && *env       ? env
							    : "anonymous";
	while ((o = getopt_long(argc, argv, "s:vh", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			c.server = optarg;
			break;
		case O_IDENTITY:
			c.identity = optarg;
			identity_given = 1;
			break;
		case O_DTYPE:
			c.dtype = (int)strtol(optarg, &end, 10);
			if (*end || !*optarg)
				return cli_usage("--dtype: '%s' is not a number", optarg);
			break;
		case O_EACH:
			c.each_line = 1;
			break;
		case O_COUNT:
			c.count = strtol(optarg, &end, 10);
			if (*end || !*optarg || c.count < 0)
				return cli_usage("--count: '%s' is not a count", optarg);
			break;
		case O_TIMEOUT:
			c.timeout_s = strtod(optarg, &end);
			if (*end || !*optarg || c.timeout_s < 0)
				return cli_usage("--timeout: '%s' is not a number of seconds",
						 optarg);
			break;
		case O_FORMAT:
			if (strcmp(optarg, "json") == 0)
				c.format_json = 1;
			else if (strcmp(optarg, "raw") != 0)
				return cli_usage("--format: '%s' is not raw or json", optarg);
			break;
		case 'v':
			c.verbose = 1;
			break;
		case O_TOPIC:
			c.topic = optarg;
			break;
		case O_TO:
			c.to = optarg;
			break;
		case O_ATTR:
			if (c.nattrs == CLI_MAX_ATTRS)
				return cli_usage("--attr: at most %d attributes", CLI_MAX_ATTRS);
			c.attrs[c.nattrs++] = optarg;
			break;
		case O_NAME:
			c.name = optarg;
			break;
		case O_MIME:
			c.mime = optarg;
			break;
		case O_DIR:
			c.dir = optarg;
			break;
		case O_OVERWRITE:
			c.overwrite = 1;
			break;
		case O_TOKEN:
			token_file = optarg;
			token_from_env = 0;
			break;
		case 'h':
		case O_HELP:
			usage(stdout);
			return 0;
		case O_VERSION:
			printf("vroom %s\n", VROOM_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	c.pos = (const char **)argv + optind;
	c.npos = argc - optind;
	if (c.npos < 1) {
		usage(stderr);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "vroom: libsodium failed to initialise\n");
		return 1;
	}
	if (token_file) {
		if (cli_load_token(token_file, token_text, sizeof(token_text), token_from_env) < 0)
			return 1;
		c.token = token_text;
		if (!identity_given)
			c.identity = ""; /* the node takes the token's */
	}
	const char *cmd = c.pos[0];
	if (strcmp(cmd, "room") == 0)
		return cmd_room(&c);
	if (strcmp(cmd, "push") == 0)
		return cmd_push(&c);
	if (strcmp(cmd, "sub") == 0)
		return cmd_sub(&c);
	if (strcmp(cmd, "send") == 0)
		return cli_send(&c);
	if (strcmp(cmd, "stream") == 0)
		return cli_stream(&c);
	if (strcmp(cmd, "recv") == 0)
		return cli_recv(&c);
	if (strcmp(cmd, "cluster") == 0)
		return cli_cluster(&c);
	return cli_usage("unknown command '%s'", cmd);
}

/*
 * vroomd: parse flags over the embedded defaults, start one node, run the
 * event loop until SIGTERM or SIGINT (a second one exits at once).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sodium.h>

#include "node/cfg.h"
#include "node/log.h"
#include "node/node.h"
#include "vroom_version.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: vroomd [options]\n"
		"\n"
		"Runs one vroom relay node. With no options: a node on %s.\n"
		"\n"
		"  --listen HOST:PORT          client listener (default %s; port 0 picks one)\n"
		"  --insecure                  allow a non-loopback listener without tokens\n"
		"  --room-idle-timeout SECONDS destroy rooms with no data for this long (default 300)\n"
		"  --hello-timeout SECONDS     close connections without HELLO this long after accept\n"
		"                              (default 5)\n"
		"  --frame-max BYTES           largest frame accepted (default 1048576)\n"
		"  --max-pending BYTES         pending output per connection before it is dropped as a\n"
		"                              slow consumer (default 8388608)\n"
		"  --max-conns N               client connections (default 10000)\n"
		"  --max-subs N                subscriptions per connection (default 1024)\n"
		"  --max-grants N              grants per room (default 256)\n"
		"  --max-streams N             streams a connection may send at once (default 64)\n"
		"  --chunk-max BYTES           largest stream chunk (default 131072)\n"
		"  --stream-window BYTES       bytes of one stream the node holds (default 1048576)\n"
		"  --stream-idle-timeout SECONDS  end streams whose sender is silent (default 30)\n"
		"  --slow-timeout SECONDS      drop receivers whose output is stuck (default 10)\n"
		"  --log-level LEVEL           error, warn, notice, info or debug (default info)\n"
		"  --help                      this text\n"
		"  --version                   the version\n",
		CFG_DEFAULT_LISTEN, CFG_DEFAULT_LISTEN);
}

/* A positive number with an optional fraction, scaled by `scale`. */
static int parse_num(const char *flag, const char *s, double scale, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	if (*s == '\0' || *end != '\0' || !(v >= 0) || v * scale > 1e15) {
		fprintf(stderr, "vroomd: %s: '%s' is not a number\n", flag, s);
		return -1;
	}
	*out = (uint64_t)(v * scale);
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct node *n = arg;
	vlog(node_log(n), LOG_NOTICE, "received %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
	node_shutdown(n);
}

int main(int argc, char **argv)
{
	enum { O_LISTEN = 256, O_INSECURE, O_IDLE, O_HELLO, O_FRAME, O_PENDING, O_CONNS, O_SUBS,
	       O_LOG, O_HELP, O_VERSION, O_STREAMS, O_CHUNK, O_WINDOW, O_SIDLE, O_SLOW, O_GRANTS };
	static const struct option opts[] = {
		{"listen", required_argument, 0, O_LISTEN},
		{"insecure", no_argument, 0, O_INSECURE},
		{"room-idle-timeout", required_argument, 0, O_IDLE},
		{"hello-timeout", required_argument, 0, O_HELLO},
		{"frame-max", required_argument, 0, O_FRAME},
		{"max-pending", required_argument, 0, O_PENDING},
		{"max-conns", required_argument, 0, O_CONNS},
		{"max-subs", required_argument, 0, O_SUBS},
		{"max-streams", required_argument, 0, O_STREAMS},
		{"max-grants", required_argument, 0, O_GRANTS},
		{"chunk-max", required_argument, 0, O_CHUNK},
		{"stream-window", required_argument, 0, O_WINDOW},
		{"stream-idle-timeout", required_argument, 0, O_SIDLE},
		{"slow-timeout", required_argument, 0, O_SLOW},
		{"log-level", required_argument, 0, O_LOG},
		{"help", no_argument, 0, O_HELP},
		{"version", no_argument, 0, O_VERSION},
		{0, 0, 0, 0},
	};
	struct cfg cfg;
	uint64_t v;
	int o;

	cfg_defaults(&cfg);
	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_LISTEN:
			snprintf(cfg.listen, sizeof(cfg.listen), "%s", optarg);
			break;
		case O_INSECURE:
			cfg.insecure = 1;
			break;
		case O_IDLE:
			if (parse_num("--room-idle-timeout", optarg, 1000, &cfg.room_idle_ms) < 0)
				return 2;
			break;
		case O_HELLO:
			if (parse_num("--hello-timeout", optarg, 1000, &cfg.hello_timeout_ms) < 0)
				return 2;
			break;
		case O_FRAME:
			if (parse_num("--frame-max", optarg, 1, &v) < 0)
				return 2;
			cfg.frame_max = v;
			break;
		case O_PENDING:
			if (parse_num("--max-pending", optarg, 1, &v) < 0)
				return 2;
			cfg.max_pending = v;
			break;
		case O_CONNS:
			if (parse_num("--max-conns", optarg, 1, &v) < 0)
				return 2;
			cfg.max_conns = v;
			break;
		case O_SUBS:
			if (parse_num("--max-subs", optarg, 1, &v) < 0)
				return 2;
			cfg.max_subs = v;
			break;
		case O_GRANTS:
			if (parse_num("--max-grants", optarg, 1, &v) < 0)
				return 2;
			cfg.max_grants = v;
			break;
		case O_STREAMS:
			if (parse_num("--max-streams", optarg, 1, &v) < 0)
				return 2;
			cfg.max_streams = v;
			break;
		case O_CHUNK:
			if (parse_num("--chunk-max", optarg, 1, &v) < 0)
				return 2;
			cfg.chunk_max = v;
			break;
		case O_WINDOW:
			if (parse_num("--stream-window", optarg, 1, &v) < 0)
				return 2;
			cfg.stream_window = v;
			break;
		case O_SIDLE:
			if (parse_num("--stream-idle-timeout", optarg, 1000, &cfg.stream_idle_ms) < 0)
				return 2;
			break;
		case O_SLOW:
			if (parse_num("--slow-timeout", optarg, 1000, &cfg.slow_timeout_ms) < 0)
				return 2;
			break;
		case O_LOG:
			if ((cfg.log_level = vlog_parse_level(optarg)) < 0) {
				fprintf(stderr, "vroomd: --log-level: '%s' is not one of error, "
						"warn, notice, info, debug\n", optarg);
				return 2;
			}
			break;
		case 'h':
		case O_HELP:
			usage(stdout);
			return 0;
		case O_VERSION:
			printf("vroomd %s\n", VROOM_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vroomd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	char why[512];
	if (cfg_check(&cfg, why, sizeof(why)) < 0) {
		fprintf(stderr, "vroomd: %s\n", why);
		return 2;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "vroomd: libsodium failed to initialise\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);

	struct vlog *log = vlog_new(stderr, cfg.log_level);
	struct event_base *base = event_base_new();
	const char *cause = NULL;
	struct node *n = log && base ? node_new(base, &cfg, log, &cause) : NULL;
	if (!n) {
		fprintf(stderr, "vroomd: cannot start: %s\n", cause ? cause : "out of memory");
		return 1;
	}
	if (node_start(n, why, sizeof(why)) < 0) {
		vlog(log, LOG_ERR, "%s", why);
		node_free(n);
		event_base_free(base);
		vlog_free(log);
		return 1;
	}
	struct event *sigterm = evsignal_new(base, SIGTERM, on_signal, n);
	struct event *sigint = evsignal_new(base, SIGINT, on_signal, n);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);

	event_base_dispatch(base);

	event_free(sigterm);
	event_free(sigint);
	node_free(n);
	event_base_free(base);
	vlog_free(log);
	return 0;
}

/*
 * vroomd: settings from the embedded defaults, then --config FILE, then the
 * flags; start one node and its stats port; run the event loop. SIGHUP
 * reloads the file (the flags keep precedence); SIGTERM or SIGINT drains
 * and a second one exits at once.
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
#include "node/notify.h"
#include "node/stats.h"
#include "vroom_version.h"

#define MAX_FLAGS 64 /* settings given as flags, kept for reloads */

/* A setting given on the command line. */
struct flag {
	const struct cfg_opt *opt;
	const char *value; /* argv's, or "true" for a switch */
};

struct app {
	const char *config; /* --config FILE, or NULL */
	struct flag flags[MAX_FLAGS];
	size_t nflags;
	struct node *node;
	struct stats *stats;
	struct vlog *log;
};

enum { O_CONFIG = 1000, O_CHECK, O_PRINT, O_HELP, O_VERSION, O_SETTING = 2000 };

/* Prints "  --flag ARG   text" with text wrapped at 79 columns. */
static void option_line(FILE *f, const char *flag, const char *text)
{
	int col = fprintf(f, "  --%-25s", flag);
	if (col > 30) {
		fputc('\n', f);
		col = fprintf(f, "%29s", "");
	}
	const char *p = text;
	while (*p) {
		size_t word = strcspn(p, " ");
		if (col > 30 && col + 1 + (int)word > 79) {
			fputc('\n', f);
			col = fprintf(f, "%29s", "");
		}
		col += fprintf(f, " %.*s", (int)word, p);
		p += word;
		while (*p == ' ')
			p++;
	}
	fputc('\n', f);
}

static void usage(FILE *f)
{
	struct cfg d;
	char flag[64], arg[80], dflt[300], text[600];
	cfg_defaults(&d);
	fprintf(f,
		"usage: vroomd [options]\n"
		"\n"
		"Runs one vroom relay node. With no options: clients on %s, stats on\n"
		"127.0.0.1:7702. Settings come from the defaults, then --config FILE, then the\n"
		"flags (see vroomd(8) and vroomd.conf(5)). SIGHUP reloads FILE; SIGTERM drains.\n"
		"\n"
		"  --config FILE               read settings from this INI file\n"
		"  --check-config              validate the settings, print every error, exit 0 or 1\n"
		"  --print-config              print the settings in effect as an INI file, exit\n",
		CFG_DEFAULT_LISTEN);
	const struct cfg_opt *o;
	for (size_t i = 0; (o = cfg_opt_at(i)) != NULL; i++) {
		snprintf(arg, sizeof(arg), "%s%s%s", cfg_opt_flag(o, flag, sizeof(flag)),
			 o->arg ? " " : "", o->arg ? o->arg : "");
		snprintf(text, sizeof(text), "%s (default %s)", o->help,
			 cfg_format(&d, o, dflt, sizeof(dflt)));
		option_line(f, arg, text);
	}
	fprintf(f, "  --help                      this text\n"
		   "  --version                   the version\n"
		   "\n"
		   "Sizes take K, KiB, M, MiB, G or GiB; durations are seconds, or take ms, s,\n"
		   "m or h. Exit status: 0, 1 (failed to start or run), 2 (bad settings).\n");
}

/* Settings: defaults, the file, the flags, then cross-checks. Every problem
 * goes to err. 0, or -1. */
static int build_cfg(const struct app *a, struct cfg *c, cfg_err_fn err, void *arg)
{
	char why[512], msg[700], flag[64];
	int bad = 0;
	cfg_defaults(c);
	if (a->config && cfg_load(c, a->config, err, arg) < 0)
		bad = 1;
	for (size_t i = 0; i < a->nflags; i++) {
		const struct flag *f = &a->flags[i];
		if (cfg_set(c, f->opt, f->value, why, sizeof(why)) < 0) {
			snprintf(msg, sizeof(msg), "--%s: %s",
				 cfg_opt_flag(f->opt, flag, sizeof(flag)), why);
			err(arg, msg);
			bad = 1;
		}
	}
	if (!bad && cfg_check(c, why, sizeof(why)) < 0) {
		snprintf(msg, sizeof(msg), "%s%s%s", a->config ? a->config : "",
			 a->config ? ": " : "", why);
		err(arg, msg);
		bad = 1;
	}
	return bad ? -1 : 0;
}

static void err_stderr(void *arg, const char *msg)
{
	fprintf(stderr, "vroomd: %s\n", msg);
}

static void err_log(void *arg, const char *msg)
{
	struct app *a = arg;
	vlog(a->log, LOG_ERR, "reload: %s", msg);
}

static void say_change(void *arg, const struct cfg_opt *o, const char *before, const char *after,
		       int live)
{
	struct app *a = arg;
	if (live)
		vlog(a->log, LOG_NOTICE, "reload: %s: %s -> %s (applied)", o->key, before, after);
	else
		vlog(a->log, LOG_WARN, "reload: %s: %s -> %s needs a restart (still %s)", o->key,
		     before, after, before);
}

/* SIGHUP: re-read the file, apply what may change while running, log what
 * changed and what needs a restart. A bad file changes nothing. */
static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	struct app *a = arg;
	char why[512];
	struct cfg next, merged;
	notify_reloading();
	vlog(a->log, LOG_NOTICE, "received SIGHUP: reloading %s",
	     a->config ? a->config : "(no --config: nothing to re-read)");
	if (build_cfg(a, &next, err_log, a) < 0) {
		vlog(a->log, LOG_ERR, "reload failed: the running settings are unchanged");
		goto done;
	}
	/* Check the settings as they would run: the new values that may change
	 * live with the running values of the others. */
	merged = *node_cfg(a->node);
	cfg_reload(&merged, &next, NULL, NULL);
	if (cfg_check(&merged, why, sizeof(why)) < 0) {
		vlog(a->log, LOG_ERR, "reload failed: %s (with the settings that need a restart "
		     "at their running values); the running settings are unchanged", why);
		goto done;
	}
	merged = *node_cfg(a->node);
	int changed = cfg_reload(&merged, &next, say_change, a);
	node_reconfigure(a->node, &merged);
	if (!changed)
		vlog(a->log, LOG_NOTICE, "reload: no setting changed");
done:
	notify_ready("serving");
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
	struct app *a = arg;
	vlog(a->log, LOG_NOTICE, "received %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
	if (!node_draining(a->node))
		notify_stopping();
	node_shutdown(a->node);
}

static int run(struct app *a, const struct cfg *cfg)
{
	char why[512], stats_at[300];
	const char *cause = NULL;
	int rc = 1;

	signal(SIGPIPE, SIG_IGN);
	a->log = vlog_new(stderr, cfg->log_level);
	struct event_base *base = event_base_new();
	if (a->log && base)
		a->node = node_new(base, cfg, a->log, &cause);
	if (!a->node) {
		fprintf(stderr, "vroomd: cannot start: %s\n", cause ? cause : "out of memory");
		goto out;
	}
	if (node_start(a->node, why, sizeof(why)) < 0) {
		vlog(a->log, LOG_ERR, "%s", why);
		goto out;
	}
	if (cfg_stats_addr(cfg, stats_at, sizeof(stats_at), why, sizeof(why)) < 0) {
		vlog(a->log, LOG_ERR, "%s", why);
		goto out;
	}
	if (stats_at[0] && !(a->stats = stats_new(a->node, stats_at, cfg->insecure, why,
						  sizeof(why)))) {
		vlog(a->log, LOG_ERR, "%s", why);
		goto out;
	}
	struct event *sig[3] = {
		evsignal_new(base, SIGTERM, on_term, a),
		evsignal_new(base, SIGINT, on_term, a),
		evsignal_new(base, SIGHUP, on_hup, a),
	};
	for (int i = 0; i < 3; i++)
		if (sig[i])
			event_add(sig[i], NULL);
	snprintf(why, sizeof(why), "serving clients on %s%s%s", node_addr(a->node),
		 a->stats ? ", stats on " : "", a->stats ? stats_addr(a->stats) : "");
	notify_ready(why);

	event_base_dispatch(base);
	rc = 0;

	for (int i = 0; i < 3; i++)
		if (sig[i])
			event_free(sig[i]);
out:
	stats_free(a->stats);
	node_free(a->node);
	if (base)
		event_base_free(base);
	vlog_free(a->log);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option fixed[] = {
		{"config", required_argument, 0, O_CONFIG},
		{"check-config", no_argument, 0, O_CHECK},
		{"print-config", no_argument, 0, O_PRINT},
		{"help", no_argument, 0, O_HELP},
		{"version", no_argument, 0, O_VERSION},
	};
	enum { NFIXED = sizeof(fixed) / sizeof(fixed[0]) };
	char names[MAX_FLAGS][64];
	struct option opts[NFIXED + MAX_FLAGS + 1];
	struct app a = {0};
	int check = 0, print = 0, o;
	size_t nopts = 0;

	memcpy(opts, fixed, sizeof(fixed));
	nopts = NFIXED;
	const struct cfg_opt *co;
	for (size_t i = 0; (co = cfg_opt_at(i)) != NULL && i < MAX_FLAGS; i++) {
		opts[nopts++] = (struct option){cfg_opt_flag(co, names[i], sizeof(names[i])),
						co->arg ? required_argument : no_argument, 0,
						O_SETTING + (int)i};
	}
	opts[nopts] = (struct option){0, 0, 0, 0};

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case O_CONFIG:
			a.config = optarg;
			break;
		case O_CHECK:
			check = 1;
			break;
		case O_PRINT:
			print = 1;
			break;
		case 'h':
		case O_HELP:
			usage(stdout);
			return 0;
		case O_VERSION:
			printf("vroomd %s\n", VROOM_VERSION);
			printf("systemd notify: %s\n", notify_supported() ? "yes" : "no");
			return 0;
		default:
			if (o >= O_SETTING && (co = cfg_opt_at((size_t)(o - O_SETTING))) != NULL) {
				if (a.nflags == MAX_FLAGS) {
					fprintf(stderr, "vroomd: too many flags\n");
					return 2;
				}
				a.flags[a.nflags++] = (struct flag){co, co->arg ? optarg : "true"};
				break;
			}
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vroomd: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	struct cfg cfg;
	int bad = build_cfg(&a, &cfg, err_stderr, NULL) < 0;
	if (check || print) {
		if (!bad && print)
			cfg_print(stdout, &cfg);
		else if (!bad)
			printf("vroomd: %s: the settings are valid\n", a.config ? a.config : "flags");
		return bad ? 1 : 0;
	}
	if (bad)
		return 2;
	if (sodium_init() < 0) {
		fprintf(stderr, "vroomd: libsodium failed to initialise\n");
		return 1;
	}
	return run(&a, &cfg);
}

/*
 * cfg: the node's settings, their embedded defaults, their INI keys and
 * flags, parsing and validation.
 *
 * A `struct cfg` is a plain value: main() fills it from the defaults, then
 * the INI file (--config), then the flags, and cfg_check() validates it.
 * One table in cfg.c describes every setting once (section, key, flag, type,
 * whether SIGHUP may change it live, help): the flags, the file, --help,
 * --print-config and reload all come from it, so a setting added there has
 * a flag and a key at once. Every setting and its default is documented in
 * deploy/vroomd.conf.example, docs/operations.md and vroomd.conf(5).
 */
#ifndef VROOM_NODE_CFG_H
#define VROOM_NODE_CFG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_DEFAULT_LISTEN "127.0.0.1:7700"
/* The stats port: "auto" is 127.0.0.1 and the client port + 2 (7702 with
 * the default listener; an ephemeral port when the client port is 0). */
#define CFG_DEFAULT_STATS  "auto"

struct cfg {
	char listen[256];	   /* client listener HOST:PORT */
	int insecure;		   /* allow non-loopback listeners without tokens */
	char stats[256];	   /* stats port: HOST:PORT, "auto" or "off" */
	int log_level;		   /* LOG_* */
	uint64_t room_idle_ms;	   /* room_idle_timeout */
	uint64_t hello_timeout_ms; /* close a connection that has not said HELLO */
	size_t frame_max;	   /* largest frame accepted, prefix excluded */
	size_t max_pending;	   /* pending output per connection before slow_consumer */
	size_t max_conns;	   /* client connections */
	size_t max_subs;	   /* subscriptions per connection */
	size_t max_grants;	   /* grants per room */
	size_t max_streams;	   /* open streams a connection may send at once */
	size_t chunk_max;	   /* largest stream chunk */
	size_t stream_window;	   /* bytes of a stream the node holds at most */
	uint64_t stream_idle_ms;   /* end a stream whose sender is silent this long */
	uint64_t slow_timeout_ms;  /* drop a receiver whose output is stuck this long */
	uint64_t drain_timeout_ms; /* SIGTERM: longest wait for clients to flush */
	char cluster[64];	   /* cluster address IP:PORT; "" = a single node */
	char seeds[1024];	   /* IP:PORT,... to join through */
	char cluster_key[512];	   /* path of the cluster key */
	char node_name[65];	   /* unique name; "" = the cluster address */
	size_t replicas;	   /* relay + backups per room */
	uint64_t probe_interval_ms; /* membership: one probe per period */
	uint64_t probe_timeout_ms;  /* membership: direct ack deadline */
	uint64_t suspicion_ms;	    /* membership: suspect -> dead */
	uint64_t sync_interval_ms;  /* membership: full state exchange */
	/* tokens and abuse limits (docs/protocol.md "Tokens", "Limits") */
	char trusted_keys[512];	       /* issuer public keys file; "" = none: loopback only */
	size_t max_rooms;	       /* rooms on the node */
	size_t max_rooms_per_identity; /* rooms one identity may own */
	size_t max_in_rate;	       /* inbound bytes/s per connection; 0 = no limit */
	size_t max_hello_failures;     /* failed HELLOs per source per minute; 0 = no limit */
};

/* One setting as the table in cfg.c describes it. */
struct cfg_opt {
	const char *section; /* INI section, without brackets */
	const char *key;     /* INI key; the flag is "--" + key with '_' as '-' */
	int type;	     /* private to cfg.c */
	size_t off, size;    /* where in struct cfg */
	int live;	     /* SIGHUP applies a change while running */
	const char *arg;     /* argument name in --help ("BYTES"); NULL: a switch */
	const char *help;    /* one line for --help */
};

/* Reports one problem: a whole line such as "FILE:LINE: what and why". */
typedef void (*cfg_err_fn)(void *arg, const char *msg);

/* Fills c with the embedded defaults. */
void cfg_defaults(struct cfg *c);
/* Validates c. 0, or -1 with a message in why[whylen]. */
int cfg_check(const struct cfg *c, char *why, size_t whylen);

/* The settings, in --help order: i from 0 while the result is not NULL. */
const struct cfg_opt *cfg_opt_at(size_t i);
/* The setting with this flag name (without "--"), or NULL. */
const struct cfg_opt *cfg_opt_by_flag(const char *flag);
/* The flag of o ("room-idle-timeout") in buf[len]. */
const char *cfg_opt_flag(const struct cfg_opt *o, char *buf, size_t len);
/* Parses value into o's field of c. 0, or -1 with why[whylen] saying what is
 * wrong with the value (not where it came from). A switch (arg == NULL)
 * given as a flag takes the value "true". */
int cfg_set(struct cfg *c, const struct cfg_opt *o, const char *value, char *why, size_t whylen);
/* o's value in c as the file would write it ("8MiB", "30s", "info"). */
const char *cfg_format(const struct cfg *c, const struct cfg_opt *o, char *buf, size_t len);
/* Whether o's value differs between a and b. */
int cfg_differs(const struct cfg *a, const struct cfg *b, const struct cfg_opt *o);

/* Reads the INI file at path over c: every key must be known and every
 * value valid; each problem goes to err with its line number, and reading
 * goes on to report them all. 0, or -1 if there was any problem. */
int cfg_load(struct cfg *c, const char *path, cfg_err_fn err, void *arg);
/* Writes every setting of c as an INI file (what --print-config shows). */
void cfg_print(FILE *f, const struct cfg *c);

/* The address the stats port binds, resolving "auto", in out[len]; "" when
 * it is off. 0, or -1 with why[whylen] (a bad address). */
int cfg_stats_addr(const struct cfg *c, char *out, size_t len, char *why, size_t whylen);

/* For SIGHUP: copies from next into cur the settings that may change while
 * running. Calls each(arg, o, before, after, live) for every setting that
 * differs; one that is not live keeps its running value and needs a
 * restart. Returns how many settings changed. */
int cfg_reload(struct cfg *cur, const struct cfg *next,
	       void (*each)(void *arg, const struct cfg_opt *o, const char *before,
			    const char *after, int live),
	       void *arg);

#endif

/*
 * node: one vroomd node: its event loop hooks, client listener, room table,
 * counters and the work batched after each loop turn (freeing closed
 * connections, expiring idle rooms).
 *
 * Invariant: a connection is never freed inside one of its own callbacks;
 * conn.c marks it dead and the node's reaper frees it once the callbacks of
 * the current loop turn have returned.
 */
#ifndef VROOM_NODE_NODE_H
#define VROOM_NODE_NODE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "node/cfg.h"
#include "node/log.h"

struct node;
struct conns;
struct rooms;
struct strms;
struct room;
struct wire_buf;
struct wire_dec;
struct clus;
struct route;
struct repl;
struct srepl;
struct room_sub;
struct conn;
struct blob;

#define NODE_LAT_BUCKETS 13

/* What the node counts; read by the stats port and by tests. */
struct node_counters {
	uint64_t conns_accepted, conns_rejected;
	uint64_t frames_in, frames_out, bytes_in, bytes_out;
	uint64_t pushes, deliveries, delivered_bytes;
	uint64_t errors_sent, bad_frames, slow_consumers, hello_timeouts, limits_hit;
	uint64_t rooms_created, rooms_removed, rooms_expired;
	uint64_t streams_opened, streams_ended, stream_timeouts, stream_bytes;
	uint64_t forwarded; /* requests sent on to another node's relay */
	uint64_t failovers; /* rooms taken over from a failed relay, or handed over */
	uint64_t dup_replies; /* relays' answers dropped: the request was answered already */
	uint64_t parked;      /* requests held for a room about to be relayed here */
	uint64_t park_timeouts; /* held requests handled at their deadline instead */
	uint64_t stalls;      /* event loop stalls long enough to have been declared dead */
	uint64_t stepdowns; /* rooms this node stopped relaying: another relays them under a newer term */
	uint64_t repl_ack_timeouts; /* pushes delivered without their backup's ack (HOLD_MS) */
	/* Delivery latency: from the start of the read callback that held a
	 * PUSH to its DELIVER queued on a subscriber's output, one sample per
	 * delivery; lat_bucket[i] counts samples up to node_lat_bound_us(i)
	 * (not cumulative; the last bucket is unbounded). */
	uint64_t lat_count, lat_sum_ns, lat_bucket[NODE_LAT_BUCKETS];
	/* Tokens and abuse limits: each refusal where it happens (limits_hit
	 * is their sum, with max_grants). */
	uint64_t auth_failures;	  /* HELLOs refused with `auth` (tokens, identities) */
	uint64_t hello_failures;  /* connections the node ended before HELLO was done */
	uint64_t hello_refused;	  /* accepts refused: source over max_hello_failures */
	uint64_t tokens_expired;  /* sessions closed because their token expired */
	uint64_t limit_conns;	  /* accepts refused at max_conns */
	uint64_t limit_frame;	  /* frames refused over frame_max */
	uint64_t limit_rooms;	  /* CREATEs refused at max_rooms */
	uint64_t limit_owner;	  /* CREATEs refused at max_rooms_per_identity */
	uint64_t limit_subs;	  /* SUBSCRIBEs refused at max_subs */
	uint64_t limit_streams;	  /* STREAM_OPENs refused at max_streams */
	uint64_t rate_limited;	  /* reads held back by max_in_rate (bucket empty) */
	uint64_t grant_refusals;  /* requests refused by a token's grants */
};

/* A node on base with settings c (copied) that logs to log (borrowed).
 * NULL with *cause set (to a static string) on failure. */
struct node *node_new(struct event_base *base, const struct cfg *c, struct vlog *log,
		      const char **cause);
/* Binds the client listener and starts the timers. 0, or -1 with a reason
 * in why[whylen]. */
int node_start(struct node *n, char *why, size_t whylen);
/* Stops accepting, closes every client with `shutdown`, and exits the loop
 * once their output is flushed or after a short deadline. */
void node_shutdown(struct node *n);
/* Frees the node and every connection and room. node_free(NULL) is a no-op. */
void node_free(struct node *n);

struct event_base *node_base(struct node *n);
const struct cfg *node_cfg(const struct node *n);
struct vlog *node_log(struct node *n);
struct rooms *node_rooms(struct node *n);
struct strms *node_strms(struct node *n);
struct conns *node_conns(struct node *n);
struct node_counters *node_counters(struct node *n);
const char *node_id(const struct node *n);
/* Wall-clock milliseconds, cached once per loop turn. */
uint64_t node_now_ms(struct node *n);
/* The node's frame decoder (one is enough: frames are decoded one at a time). */
struct wire_dec *node_decoder(struct node *n);
/* A scratch buffer for encoding replies: reset by this call. */
struct wire_buf *node_scratch(struct node *n);
/* Asks for the reaper to run after the current loop turn. */
void node_schedule_reap(struct node *n);
/* The client listener's bound address, "HOST:PORT" ("" before node_start). */
const char *node_addr(const struct node *n);
/* Whether node_shutdown() has begun (the stats port says 503). */
int node_draining(const struct node *n);
/* Applies settings that may change while running (SIGHUP): c differs from
 * the running settings only in those (cfg_reload made it). */
void node_reconfigure(struct node *n, const struct cfg *c);
/* Monotonic nanoseconds. */
uint64_t node_mono_ns(void);
/* Marks the start of a read callback (for the delivery latency) and reads
 * the mark back. */
void node_mark_read(struct node *n);
uint64_t node_read_ns(const struct node *n);
/* Counts one delivery that took ns since node_read_ns(). */
void node_latency_add(struct node *n, uint64_t ns);
/* The upper bound of latency bucket i in microseconds; 0 for the last
 * (unbounded) one. */
uint64_t node_lat_bound_us(size_t i);
/* Resolves a HOST:PORT to listen on (what names it in errors: "listen",
 * "stats"). The result is the caller's to evutil_freeaddrinfo; NULL with a
 * reason on failure. */
struct evutil_addrinfo *node_resolve_listen(const char *addr, const char *what, char *why,
					    size_t whylen);
/* The cluster runtime, or NULL for a single node; the router. */
struct clus *node_clus(struct node *n);
struct route *node_route(struct node *n);
struct repl *node_repl(struct node *n);
struct srepl *node_srepl(struct node *n);
struct park *node_park(struct node *n);
/* The node's stats port (node/stats.h), which sets itself here when it
 * starts and clears itself when freed; NULL with `stats = off`. Node links
 * hand it the NODE_STATS requests and answers they carry. */
struct stats;
void node_set_stats(struct node *n, struct stats *s);
struct stats *node_stats(struct node *n);
/* Hands a shared frame to one subscription: a local client's output, or
 * a subscribing node's link. 0, or -1 if it was dropped (slow or gone). */
int node_send_blob(struct node *n, struct room_sub *s, struct blob *frame);
/* The same for a stream chunk, which pushes and replies may pass. */
int node_send_bulk(struct node *n, struct room_sub *s, struct blob *frame);
/* Tells every subscriber the room closed for reason, then destroys it. */
void node_room_close(struct node *n, struct room *r, const char *reason);

/* ---- tokens and abuse limits ---- */
struct guard;
/* The node's guard (node/guard.h): trusted keys, tokens at HELLO, grants,
 * rooms per owner, failed HELLOs per source, the inbound bucket. */
struct guard *node_guard(struct node *n);
/* Re-reads the trusted keys file (node_reconfigure does on SIGHUP). 0, or
 * -1 with the reason logged and the keys in use kept. */
int node_reload_keys(struct node *n);

#endif

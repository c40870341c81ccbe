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

/* What the node counts; read by the stats port and by tests. */
struct node_counters {
	uint64_t conns_accepted, conns_rejected;
	uint64_t frames_in, frames_out, bytes_in, bytes_out;
	uint64_t pushes, deliveries, delivered_bytes;
	uint64_t errors_sent, bad_frames, slow_consumers, hello_timeouts, limits_hit;
	uint64_t rooms_created, rooms_removed, rooms_expired;
	uint64_t streams_opened, streams_ended, stream_timeouts, stream_bytes;
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
/* Tells every subscriber the room closed for reason, then destroys it. */
void node_room_close(struct node *n, struct room *r, const char *reason);

#endif

/*
 * cfg: the node's settings, their embedded defaults and validation.
 *
 * A `struct cfg` is a plain value: main() fills it from defaults and flags,
 * cfg_check() validates it once, and the node reads it. Every setting and
 * its default is documented in deploy/vroomd.conf.example and docs/operations.md.
 */
#ifndef VROOM_NODE_CFG_H
#define VROOM_NODE_CFG_H

#include <stddef.h>
#include <stdint.h>

#define CFG_DEFAULT_LISTEN "127.0.0.1:7700"

struct cfg {
	char listen[256];	   /* client listener HOST:PORT */
	int insecure;		   /* allow a non-loopback listener without tokens */
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
};

/* Fills c with the embedded defaults. */
void cfg_defaults(struct cfg *c);
/* Validates c. 0, or -1 with a message in why[whylen]. */
int cfg_check(const struct cfg *c, char *why, size_t whylen);

#endif

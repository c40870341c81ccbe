/*
 * peer: one encrypted link to another node of the cluster.
 *
 * TCP through a bufferevent; each direction is a libsodium secretstream
 * (XChaCha20-Poly1305) under the cluster's link key, so every message is
 * authenticated, in order, and bound to its connection. Handshake: each side
 * sends its stream header, then a PEER_HELLO naming itself and echoing the
 * other side's header; a side accepts the link only when the echo matches
 * the header it just made, so a recorded session cannot be replayed. Inside,
 * messages carry ordinary vroom frames. Frames sent before the handshake is
 * done wait in a plaintext queue.
 *
 * A peer never frees itself: on failure it calls ops->gone once, and its
 * owner frees it after the current loop turn.
 */
#ifndef VROOM_NODE_PEER_H
#define VROOM_NODE_PEER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

struct event_base;
struct peer;
struct wire_msg;

struct peer_ops {
	/* The handshake is done: peer_name() is known. */
	void (*ready)(struct peer *p, void *arg);
	/* One frame from the peer; raw[0..rawlen) is the frame with its prefix
	 * (borrowed, like m's strings, for the duration of the call). */
	void (*frame)(struct peer *p, const struct wire_msg *m, const uint8_t *raw, size_t rawlen,
		      void *arg);
	/* The link failed or closed (why says how). Called once. */
	void (*gone)(struct peer *p, const char *why, void *arg);
};

struct peer_cfg {
	const char *self;     /* this node's name */
	const uint8_t *key;   /* the link key (32 bytes), borrowed */
	size_t frame_max;     /* largest frame accepted on the link */
	size_t max_pending;   /* output bound: past it the link is dropped */
};

/* Connects to addr ("host:port"). NULL on no memory or a bad address. */
struct peer *peer_connect(struct event_base *base, const char *addr, const struct peer_cfg *cfg,
			  const struct peer_ops *ops, void *arg);
/* Wraps an accepted socket (the peer owns fd). */
struct peer *peer_accept(struct event_base *base, evutil_socket_t fd, const char *from,
			 const struct peer_cfg *cfg, const struct peer_ops *ops, void *arg);
void peer_free(struct peer *p);

/* The other node's name once ready, else "". */
const char *peer_name(const struct peer *p);
const char *peer_addr(const struct peer *p);
int peer_is_ready(const struct peer *p);
int peer_is_gone(const struct peer *p);
int peer_outgoing(const struct peer *p);
/* Whether an outgoing link failed because the connection was refused. */
int peer_refused(const struct peer *p);
/* Queues one frame (copied, encrypted as one message). -1 if the link is
 * gone or its output passed max_pending (the link is then dropped). */
int peer_send(struct peer *p, const uint8_t *frame, size_t len);
/* Bytes waiting to be written. */
size_t peer_pending(const struct peer *p);
/* Messages that did not open under the key, and other protocol errors. */
uint64_t peer_bad(const struct peer *p);

#endif

/*
 * gate: the decisions of the node's guard (node/guard.c) without the node,
 * so that they can be tested alone: the key failed HELLOs are counted under
 * for a peer address, whether a source is over its failed-HELLO limit, the
 * figures of the inbound token bucket, what a token's grants allow, and
 * whether a room may be created. No I/O and no clock: callers pass counts,
 * limits and the time; replying, counting and logging stay in the guard.
 */
#ifndef VROOM_STREAM_GATE_H
#define VROOM_STREAM_GATE_H

#include <stddef.h>
#include <stdint.h>

#include "stream/quota.h"
#include "stream/token.h"

struct room;
struct rooms;
struct sockaddr;
struct wire_str;

#define GATE_HELLO_WINDOW_MS 60000 /* max_hello_failures counts per minute */
#define GATE_BUCKET_TICK_MS  100   /* the inbound bucket refills ten times a second */
#define GATE_BUCKET_BURST    4096  /* the least a connection may read at once */

/* The key failed HELLOs are counted under for a peer address: the IPv4
 * address (an IPv4-mapped IPv6 one counts as its IPv4 address), or the /64
 * of an IPv6 one. Its length (0 for other families: never limited). */
size_t gate_source(const struct sockaddr *sa, uint8_t key[QUOTA_WKEY_MAX]);

/* Whether source src (len bytes from gate_source) is refused at accept: 0
 * if it may connect (also when max is 0, no limit, or len is 0), else the
 * failed HELLOs counted for it in q's current window (>= max). */
uint64_t gate_hello_refused(const struct quota_window *q, const uint8_t *src, size_t len,
			    size_t max, uint64_t now_ms);
/* Counts a failed HELLO from src (nothing when max or len is 0). */
void gate_hello_failed(struct quota_window *q, const uint8_t *src, size_t len, size_t max,
		       uint64_t now_ms);

/* The inbound token bucket for max_in_rate bytes a second (not 0), refilled
 * every GATE_BUCKET_TICK_MS: rate is what a tick adds (at least 1), burst
 * what the bucket holds (the larger of a tick and GATE_BUCKET_BURST, so
 * that a small frame always fits). */
struct gate_bucket {
	size_t rate, burst;
};
struct gate_bucket gate_bucket_of(size_t max_in_rate);

/* Whether identity[0..len), under grants gr (NULL: an unrestricted token,
 * or no tokens), may do kind in room r: its owner always may; otherwise a
 * pattern of the grant kind must match the room's id. */
int gate_allowed(const struct token_grants *gr, const struct room *r, const char *identity,
		 size_t len, enum token_grant_kind kind);

/* In a cluster, before a request of wire type `type` whose first field is
 * *room may go to another node, for a restricted token gr (not NULL):
 * CREATE needs `create`; SUBSCRIBE needs a sub pattern, PUSH and
 * STREAM_OPEN a push pattern, INFO either, unless the room is in `here`
 * (the node's rooms: the handler then checks, owner included); other types
 * pass. *room is read only for the four types that name a room. 1 or 0. */
int gate_may_route(const struct token_grants *gr, unsigned type, const struct wire_str *room,
		   const struct rooms *here);

enum gate_create {
	GATE_CREATE_OK = 0,
	GATE_CREATE_FORBIDDEN, /* the token does not grant `create` */
	GATE_CREATE_MAX_ROOMS, /* the node holds max_rooms */
	GATE_CREATE_MAX_OWNED, /* the identity owns max_rooms_per_identity */
};
/* Whether a room may be created, checked in this order: gr's `create`
 * grant (gr NULL: unrestricted), then rooms (held by the node) against
 * max_rooms, then owned (by the identity) against max_owned. */
enum gate_create gate_may_create(const struct token_grants *gr, size_t rooms, size_t max_rooms,
				 size_t owned, size_t max_owned);

#endif

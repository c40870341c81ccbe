/*
 * guard: who gets into a node and how much each may take: the trusted issuer
 * keys and the token check at HELLO, the grants a token carries, rooms per
 * owner and on the node, failed HELLOs per source address, and the inbound
 * token bucket every connection reads through.
 *
 * Invariant: with trusted keys configured, a connection becomes READY only
 * with the identity of a token that verified (stream/token.h); a refusal
 * tells the client one generic `auth` error and the log the reason. Every
 * table here is bounded: sources by a fixed slot count, owners by the rooms.
 */
#ifndef VROOM_NODE_GUARD_H
#define VROOM_NODE_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "stream/quota.h"
#include "stream/token.h"

struct node;
struct conn;
struct room;
struct sockaddr;
struct wire_msg;
struct ev_token_bucket_cfg;

#define GUARD_SOURCES 16384 /* slots of the failed-HELLO table */

struct guard;

/* The guard of node n, with its settings: reads the trusted keys file if
 * one is configured. NULL with a reason in why[whylen]. */
struct guard *guard_new(struct node *n, char *why, size_t whylen);
/* guard_free(NULL) is a no-op; free it after every connection. */
void guard_free(struct guard *g);
/* The trusted keys, or NULL when none are configured. */
const struct token_keys *guard_keys(const struct guard *g);
/* Re-reads the keys file (SIGHUP). 0 (also when none is configured), or -1
 * with the reason logged and the keys in use kept. */
int guard_reload(struct guard *g);

/* The key failed HELLOs are counted under for a peer address: the IPv4
 * address, or the /64 of an IPv6 one. Its length (0 for other families). */
size_t guard_source(const struct sockaddr *sa, uint8_t key[QUOTA_WKEY_MAX]);
/* At accept: whether the source may connect; if it is over
 * max_hello_failures, counts and logs the refusal and returns -1. */
int guard_accept(struct guard *g, const uint8_t *src, size_t len, const char *peer);
/* A connection from src failed its HELLO (the node closed it before READY). */
void guard_hello_failed(struct guard *g, const uint8_t *src, size_t len);
/* The bucket every client connection reads through, or NULL (no limit). */
struct ev_token_bucket_cfg *guard_bucket(const struct guard *g);

/* HELLO m on c when keys are configured: the token must verify and the
 * claimed identity be empty or the token's. 0 with *cl filled, or -1 after
 * replying `auth` and logging why. */
int guard_hello(struct guard *g, struct conn *c, const struct wire_msg *m,
		struct token_claims *cl);
/* After HELLO made c READY as cl's identity: keeps its grants (if any) and
 * ends the session when the token expires. */
void guard_admit(struct guard *g, struct conn *c, const struct token_claims *cl);

/* Whether c may do kind in r: its owner always may; otherwise the token's
 * grants decide. If not, counts and replies `forbidden` to rid; returns 0. */
int guard_may(struct guard *g, struct conn *c, const struct room *r, enum token_grant_kind kind,
	      uint64_t rid);
/* INFO: whether c may see r (either grant kind will do); as guard_may. */
int guard_may_info(struct guard *g, struct conn *c, const struct room *r, uint64_t rid);
/* In a cluster, before a request may go to another node (whose proxy of
 * this session knows no grants): for a restricted token, CREATE needs
 * `create`, and SUBSCRIBE, INFO, PUSH and STREAM_OPEN about a room not held
 * here need a matching pattern (the owner exemption applies only where the
 * room is). If not, counts and replies `forbidden`; returns 0. */
int guard_may_route(struct guard *g, struct conn *c, const struct wire_msg *m);
/* Whether c may create a room now: its token's `create` grant, then
 * max_rooms, then max_rooms_per_identity. If not, counts and replies
 * (`forbidden` or `limit`) to rid; returns 0. */
int guard_may_create(struct guard *g, struct conn *c, uint64_t rid);
/* A room was created (counted for its owner) or is being destroyed. */
void guard_room_added(struct guard *g, const struct room *r);
void guard_room_gone(struct guard *g, const struct room *r);
/* Rooms the identity owns (for tests and stats). */
size_t guard_owned(const struct guard *g, const char *identity, size_t len);

#endif

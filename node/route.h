/*
 * route: carrying rooms across nodes.
 *
 * At a client's node: a request about a room relayed elsewhere travels to the
 * relay as FWD(session, identity, frame) and its replies come back as
 * FWD_REPLY(session, frame), passed to the client as they are. Subscriptions
 * to such a room live in a local *mirror* room; the node subscribes once at
 * the relay (NODE_SUB with its count of local subscribers) and fans out what
 * the relay sends, once, to its local subscribers. Streams from the relay are
 * acknowledged (STREAM_ACK) when the local receivers let go of the bytes, so
 * the sender's window spans both hops.
 *
 * At the relay: each remote session is a proxy connection that runs the same
 * request handlers as a local one; a subscribing node is one subscription
 * whose weight is its local count.
 */
#ifndef VROOM_NODE_ROUTE_H
#define VROOM_NODE_ROUTE_H

#include <stddef.h>
#include <stdint.h>

struct node;
struct conn;
struct peer;
struct room;
struct route;
struct wire_msg;

/* Marks on rooms of the mirror table (room_marks). */
#define ROUTE_MIRROR 1u /* a mirror: its room lives at another node */
#define ROUTE_DIRTY  2u /* its local count changed: tell the relay */
#define ROUTE_GONE   4u /* the relay closed it: nothing to tell */

struct route *route_new(struct node *n);
void route_free(struct route *r);

/* A request from a local client: 1 if it was sent to its relay (or handled
 * here as a mirror operation), 0 if this node handles it. */
int route_client(struct node *n, struct conn *c, const struct wire_msg *m, const uint8_t *raw,
		 size_t len);
/* A frame from another node. */
void route_peer_frame(struct node *n, struct peer *p, const struct wire_msg *m, const uint8_t *raw,
		      size_t len);
/* A link went away: its proxies, subscriptions, mirrors and streams go too. */
void route_peer_gone(struct node *n, struct peer *p);
/* Membership changed. */
void route_members_changed(struct node *n);
/* A local client connection ended: its remote sessions end too. */
void route_conn_gone(struct node *n, struct conn *c);
/* A mirror room's local subscribers changed. */
void route_mirror_changed(struct node *n, struct room *mirror);
/* After a loop turn: acknowledgements due, mirror counts, empty mirrors. */
void route_flush(struct node *n);
/* A proxy connection ended (however): forget it. */
void route_proxy_gone(struct node *n, struct peer *p, uint64_t sid);
/* A proxy's output: wraps the frame in FWD_REPLY to its node. */
void route_proxy_send(struct node *n, struct peer *p, uint64_t sid, const uint8_t *frame,
		      size_t len);
/* This node took room nr over: its own subscribers of the room's mirror
 * move into it and get the pushes they missed. */
void route_took_over(struct node *n, struct room *nr);
/* This node no longer relays room: it went to relay (over p); local
 * subscribers move into a mirror of it, and the room is dropped here
 * without ROOM_CLOSED. */
void route_room_moved(struct node *n, struct room *room, struct peer *p, const char *relay);
/* A stream taken over here from a replica (node/srepl.h): its sender's
 * node (sender_node; this one: its own client) sends it again from the
 * stream's offset, session sid claiming it. */
struct strm;
void route_stream_resume(struct node *n, struct strm *s, const char *sender_node, uint64_t sid);
/* Every sweep: mirrors and requests waiting for a relay try again, or give
 * up after a few seconds. */
void route_sweep(struct node *n);
/* A request id for a request this node sends on a link. Every request that
 * expects an answer (NODE_SUB, NODE_STATS_REQ) takes its rid from this one
 * counter, so an OK or ERROR on a link matches exactly one of them. */
uint64_t route_new_rid(struct node *n);
/* When the node is quiet: frees the module's frame buffer if a big frame
 * grew it over max bytes (it is allocated again when needed). */
void route_shrink(struct node *n, size_t max);
/* Mirrors (rooms with local subscribers relayed elsewhere), for the stats. */
size_t route_mirrors(const struct node *n);

#endif

/*
 * park: requests held for a room that is about to be relayed here.
 *
 * While a relay fails over or a room is handed over, nodes' views of the
 * cluster differ for a moment: a publisher's node already sends a room's
 * requests to the node that is taking it over, before that node has taken
 * it. Refusing them (`unknown_room`) loses pushes, and retrying them later
 * reorders them. Instead the node holds them, in arrival order, until the
 * room is ready here, then handles them in that order; at a deadline
 * (PARK_MS) they are handled as they stand.
 *
 * A request for room R is held when R is expected here:
 * - R is not here, but this node backs R up (its relay's failure is the
 *   likely reason the request came here), or this node is first in R's
 *   preference list and membership changed less than PARK_WINDOW_MS ago
 *   (R is being handed over);
 * - R is here but catching up: its state came back from the node that
 *   relayed it meanwhile, and the pushes that node took are not all in yet
 *   (repl_floor() > the room's seq);
 * - R is here but stale: this node's event loop stalled for longer than
 *   the suspicion timeout (SIGSTOP, a hung host), so the cluster may have
 *   declared it dead and another node may relay R now. The node fences
 *   every room it relays until that node hands R back (with its newer
 *   state) or FENCE_MS pass, and announces itself alive again.
 *
 * Invariant: requests for one room leave the park in the order they came,
 * and a room whose requests are held gets no request ahead of them (a
 * request for a held room is held too). Bounded: PARK_MAX requests and
 * PARK_BYTES in all; past that, requests are handled at once.
 */
#ifndef VROOM_NODE_PARK_H
#define VROOM_NODE_PARK_H

#include <stddef.h>
#include <stdint.h>

#define PARK_MS	       2000 /* the longest a request is held */
#define PARK_WINDOW_MS 2000 /* after a membership change, rooms placed here may be coming */
#define FENCE_MS       3000 /* the longest a stalled node waits for its rooms to come back */
#define PARK_MAX       16384
#define PARK_BYTES     (32u << 20)
#define PARK_STALE     8u /* a room mark (room_marks()): fenced after a stall */

struct node;
struct conn;
struct peer;
struct park;
struct wire_msg;

struct park *park_new(size_t frame_max);
void park_free(struct park *p);

/* Holds request m (raw[len], from c) if its room is expected here:
 * returns 1 if held, 0 to handle it now. */
int park_maybe(struct node *n, struct conn *c, const struct wire_msg *m, const uint8_t *raw,
	       size_t len);
/* The same for a node's frame about a room (NODE_SUB m from peer from). */
int park_peer_frame(struct node *n, struct peer *from, const struct wire_msg *m, const uint8_t *raw,
		    size_t len);
/* The link from is going: its held frames go with it. */
void park_peer_gone(struct node *n, struct peer *from);
/* Room id (ROOM_ID_LEN bytes) may be ready here: its held requests are
 * handled if it is. */
void park_room_ready(struct node *n, const char *id);
/* c is going: its held requests go with it. */
void park_conn_gone(struct node *n, struct conn *c);
/* Membership changed (rooms may be handed over to this node). */
void park_members_changed(struct node *n);
/* Checks the event loop for a stall (called at every cluster tick and
 * before requests are handled, now_ns on CLOCK_MONOTONIC); fences this
 * node's rooms after one. */
void park_check_stall(struct node *n, uint64_t now_ns);
/* Fences this node's rooms marked PARK_STALE for FENCE_MS (unless a
 * longer fence runs). */
void park_fence(struct node *n);
/* Deadlines: held requests past PARK_MS, fences past FENCE_MS. */
void park_sweep(struct node *n);
/* Requests held now (for the stats). */
size_t park_count(const struct node *n);

#endif

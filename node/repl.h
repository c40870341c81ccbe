/*
 * repl: a room's state on its backups, and the takeover when its relay goes.
 *
 * The relay sends each backup (the next nodes of the room's preference list)
 * the room's state (owner, grants, seq) when it changes, and every push it
 * accepts. Each node keeps, for the rooms it relays or backs up, a ring of
 * the most recent pushes (bounded in bytes). When membership changes and a
 * node becomes the relay of a room it backs up, it takes the room over
 * (same id, owner, grants and seq, a higher epoch); subscriber nodes
 * subscribe again with the last seq they delivered and are sent what they
 * missed from the ring; a publisher's node sends again the pushes it had
 * forwarded and not seen acknowledged, and the ring's (session, rid) of each
 * push makes a push sent twice count once.
 *
 * Byte streams are replicated and taken over by node/srepl.h.
 */
#ifndef VROOM_NODE_REPL_H
#define VROOM_NODE_REPL_H

#include <stddef.h>
#include <stdint.h>

struct node;
struct peer;
struct conn;
struct room;
struct blob;
struct repl;
struct wire_msg;

/* A room mark (room_marks()): relayed here while another node comes first
 * in its list, because it has open streams (repl.c pin()). */
#define REPL_PINNED 16u

struct repl *repl_new(void);
void repl_free(struct repl *r);

/* At the relay: r changed (created, granted, revoked): tell its backups. */
void repl_room_state(struct node *n, struct room *r);
/* At the relay: r was active without a push (a stream): backups hear that
 * it lives, at most a few times per room idle timeout. */
void repl_touch(struct node *n, struct room *r);
/* A room was created here: if another node is first in its list (the
 * creating client's node saw fewer members), the next sweep hands it over,
 * since no membership change will. */
void repl_room_created(struct node *n, struct room *r);
/* Expires replicas whose relay went quiet for good (a lost REPL_GONE). */
void repl_sweep(struct node *n);
/* At the relay: r is being removed. */
void repl_room_gone(struct node *n, const struct room *r);
/* At the relay: push seq of r, from session sid's request rid, was accepted;
 * frame is its DELIVER (kept in the ring, sent to the backups). */
void repl_push(struct node *n, struct room *r, uint64_t seq, uint64_t sid, uint64_t rid,
	       struct blob *frame);
/* At the relay, after repl_push(): holds the push until the room's first
 * backup says it has it (REPL_ACK), then ops_push_done() delivers and
 * answers it; 1 if held, 0 if there is no backup to wait for (the caller
 * calls ops_push_done() now). A backup that neither answers nor is declared
 * dead holds nothing up for longer than HOLD_MS (counted). */
int repl_hold(struct node *n, struct room *r, uint64_t seq, struct conn *c, uint64_t rid,
	      struct blob *frame, size_t data_len, uint64_t t0_ns);
/* The last seq of r delivered here: pushes after it are held. */
uint64_t repl_released(struct node *n, const struct room *r);
/* Sends the acknowledgements owed to relays (after each loop turn). */
void repl_flush_acks(struct node *n);
/* c is going: its held pushes are still delivered, unanswered. */
void repl_conn_gone(struct node *n, struct conn *c);
/* Whether session sid's request rid already made push *seq in room r. */
int repl_seen(struct node *n, const struct room *r, uint64_t sid, uint64_t rid, uint64_t *seq);
/* Sends the peer every push of r after seq from_seq that the ring holds. */
void repl_replay(struct node *n, const struct room *r, uint64_t from_seq, struct peer *p);
/* The same to a local client connection. */
void repl_replay_conn(struct node *n, const struct room *r, uint64_t from_seq, struct conn *c);
/* SUBSCRIBE with `after` (or SUB_REPLAY): sends c every push of r after seq
 * `after` that the ring holds, except c's own (by conn_push_key), then OK
 * [3, rid, first]: first is after + 1, or past it when the ring no longer
 * holds the pushes from after + 1 to first - 1 (lost to this subscriber). */
void repl_resume(struct node *n, const struct room *r, uint64_t after, struct conn *c,
		 uint64_t rid);
/* A replication frame from a relay. */
void repl_peer_frame(struct node *n, struct peer *p, const struct wire_msg *m);
/* Membership changed: take over the rooms this node now relays, and bring
 * the backups of the rooms it relays up to date. */
void repl_members_changed(struct node *n);
/* The least seq a push to r may get: a newer relay's seq this node
 * adopted when the room came back to it (0 if none). */
uint64_t repl_floor(struct node *n, const struct room *r);
/* Whether a request for room id (ROOM_ID_LEN bytes), not relayed here,
 * should wait for it (node/park.h): this node backs it up and did not just
 * hand it over. */
int repl_expects(struct node *n, const char *id);
/* The node this node handed room id over to in the last PARK_WINDOW_MS, or
 * NULL. */
const char *repl_handed_to(struct node *n, const char *id);
/* The live node that keeps room id (ROOM_ID_LEN bytes) while this node,
 * backing it up, comes first in its list (its state said so: pinned by open
 * streams), or NULL. */
const char *repl_pinned_to(struct node *n, const char *id);
/* The room's backups as this node sees the cluster (names, this node
 * left out), at most max: the first is the one whose acks count. */
size_t repl_backups(struct node *n, const char *id, const char **names, size_t max);
/* Sends frame to each of the room's backups that has a link. */
void repl_to_backups(struct node *n, const char *id, const uint8_t *frame, size_t len);
/* Rooms backed up here (for the stats). */
size_t repl_replicas(const struct node *n);

#endif

/*
 * streams: the node's byte-stream handlers (open, chunk, close, abort) and
 * the stream upkeep: credit to senders, idle timeouts, and ending streams
 * whose sender or room went away.
 *
 * Every frame of a stream is encoded once into a shared blob; chunks carry
 * the stream's window accounting in the blob's release hook, so credit goes
 * back to the sender only when every receiver's output has let go of them.
 */
#ifndef VROOM_NODE_STREAMS_H
#define VROOM_NODE_STREAMS_H

#include <stddef.h>
#include <stdint.h>

struct node;
struct conn;
struct room;
struct strm;
struct wire_msg;

void streams_open(struct node *n, struct conn *c, const struct wire_msg *m);
void streams_chunk(struct node *n, struct conn *c, const struct wire_msg *m);
void streams_close(struct node *n, struct conn *c, const struct wire_msg *m);
void streams_abort(struct node *n, struct conn *c, const struct wire_msg *m);
/* STREAM_REJOIN: a receiver moved here (or to a node mirroring the room)
 * takes an open stream again from the offset it has. */
void streams_rejoin(struct node *n, struct conn *c, const struct wire_msg *m);
/* STREAM_CLAIM [304, rid, room, stream]: a sender back on another session
 * (its node died) takes up its stream; OK [offset, limit, closing]. */
void streams_claim(struct node *n, struct conn *c, const struct wire_msg *m);

/* After a loop turn: s's window moved; send credit, or finish its close. */
void streams_flush_due(struct node *n, struct strm *s);
/* The sender of s disconnected: its receivers see "aborted". */
void streams_sender_gone(struct node *n, struct strm *s);
/* The sender of s disconnected without ending its session (its node's
 * link dropped, or its own connection): s loses its sender and waits, at
 * most CLAIM_MS, for the publisher key `key` to claim it (STREAM_CLAIM, or
 * any request about it from a session with that key). */
void streams_sender_lost(struct node *n, struct strm *s, uint64_t key);
/* The room is closing: end its streams first. */
void streams_room_closed(struct node *n, struct room *r);
/* Ends streams idle past stream_idle_timeout. */
void streams_sweep(struct node *n);

/* ---- failover (node/srepl.h) ---- */
struct blob;
struct peer;
struct room_sub;
/* A STREAM_DATA frame of len bytes at off. */
struct blob *streams_data_frame(const char *id, uint64_t off, const void *data, size_t len);
/* Opens again, in room r relayed here now, the stream whose STREAM_OPENED
 * is op, at the offset and hash state of hold with its kept bytes; it
 * waits for a session with the publisher key sid (the session id of a
 * client without one; its node was sender_node) to claim it. NULL if it
 * cannot (an id taken, no memory). */
struct strm *streams_from_replica(struct node *n, struct room *r, const struct wire_msg *op,
				  struct strm *hold, struct blob *opened, const char *sender_node,
				  uint64_t sid);
/* STREAM_REATTACH from a receiver node: it takes the stream again from its
 * offset (what it lacks is sent from the kept bytes), or gets its END. */
void streams_reattach(struct node *n, struct peer *p, const struct wire_msg *m);
/* The link p dropped: its node's receivers of every stream are waited for. */
void streams_peer_gone(struct node *n, struct peer *p);
/* A node subscribing again to r: it says which streams it still takes. */
void streams_forget_waits(struct node *n, struct room *r, const char *node);
/* This node's own subscribers subs (k) of a stream it relays now, which
 * had its bytes up to pos through a mirror: they take it from pos. */
int streams_attach_local(struct node *n, struct strm *s, struct room_sub *const *subs, size_t k,
			 uint64_t pos);

#endif

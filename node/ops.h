/*
 * ops: the node's request handlers, one per frame type a client may send.
 *
 * Each handler validates the request's values (the codec has already checked
 * shapes and types), applies it to the room table and replies with OK or an
 * error naming the request id. Only HELLO is accepted before HELLO.
 */
#ifndef VROOM_NODE_OPS_H
#define VROOM_NODE_OPS_H

struct node;
struct conn;
struct wire_msg;
struct room;
struct blob;

#include <stddef.h>
#include <stdint.h>

/* Handles one decoded frame from c. The message borrows the input buffer;
 * raw[0..len) is the whole frame, which is forwarded as it is when the room
 * it names is relayed by another node. */
void ops_dispatch(struct node *n, struct conn *c, const struct wire_msg *m, const uint8_t *raw,
		  size_t len);

/* Push seq of room r (frame: its DELIVER) accepted from c's request rid,
 * read at t0_ns: fans it out to r's subscribers (c excepted) and answers
 * c. Now, or, in a cluster, once the room's first backup holds it. r NULL:
 * the room is gone (only the answer); c NULL: the pusher is gone. */
void ops_push_done(struct node *n, struct room *r, struct conn *c, uint64_t rid, uint64_t seq,
		   struct blob *frame, size_t data_len, uint64_t t0_ns);
/* SUBSCRIBE m's local part on room r (which may be a mirror): 0 when
 * subscribed, else the error code (already replied). */
int ops_subscribe_local(struct node *n, struct conn *c, struct room *r, const struct wire_msg *m);
/* Creates a room: for CREATE with a fresh id, for CREATE_ID with the one
 * given (chosen by the client's node so that this node relays it). */
void ops_create_id(struct node *n, struct conn *c, const struct wire_msg *m);

#endif

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

/* Handles one decoded frame from c. The message borrows the input buffer. */
void ops_dispatch(struct node *n, struct conn *c, const struct wire_msg *m);

#endif

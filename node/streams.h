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

struct node;
struct conn;
struct room;
struct strm;
struct wire_msg;

void streams_open(struct node *n, struct conn *c, const struct wire_msg *m);
void streams_chunk(struct node *n, struct conn *c, const struct wire_msg *m);
void streams_close(struct node *n, struct conn *c, const struct wire_msg *m);
void streams_abort(struct node *n, struct conn *c, const struct wire_msg *m);

/* After a loop turn: s's window moved; send credit, or finish its close. */
void streams_flush_due(struct node *n, struct strm *s);
/* The sender of s disconnected: its receivers see "aborted". */
void streams_sender_gone(struct node *n, struct strm *s);
/* The room is closing: end its streams first. */
void streams_room_closed(struct node *n, struct room *r);
/* Ends streams idle past stream_idle_timeout. */
void streams_sweep(struct node *n);

#endif

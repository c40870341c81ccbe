/*
 * conn: one client connection: socket I/O through a bufferevent, framing,
 * the connection state machine, bounded output and subscription bookkeeping.
 *
 * States: HELLO (only HELLO accepted, under a deadline) -> READY -> CLOSING
 * (reading stopped, flushing a last reply, under a linger deadline) -> DEAD
 * (waiting for the reaper). Every change goes through one function that checks
 * and logs it. Output is bounded by max_pending: a receiver past it is a slow
 * consumer and is dropped at once, so no stalled reader holds memory or holds
 * back anyone else; so is one whose output makes no progress for
 * slow_timeout (a stalled reader would otherwise hold a stream's window).
 */
#ifndef VROOM_NODE_CONN_H
#define VROOM_NODE_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

struct node;
struct conn;
struct conns;
struct blob;
struct room;
struct room_sub;
struct strm;
struct wire_buf;

/* The set of a node's connections, live and dead. */
struct conns *conns_new(void);
/* Frees every connection at once (node teardown). */
void conns_free(struct conns *s);
size_t conns_count(const struct conns *s);
/* Frees the dead connections. Called by the node after a loop turn. */
void conns_reap(struct conns *s);
/* Closes every live connection with code and message (shutdown). */
void conns_close_all(struct conns *s, int code, const char *msg);
/* Whether every connection is dead or gone (shutdown is complete). */
int conns_all_dead(const struct conns *s);

/* Wraps an accepted socket (the conn owns fd). NULL on no memory. */
struct conn *conn_new(struct node *n, evutil_socket_t fd, const char *peer);

uint64_t conn_id(const struct conn *c);
const char *conn_peer(const struct conn *c);
const char *conn_identity(const struct conn *c);
size_t conn_identity_len(const struct conn *c);
/* Completes HELLO: sets the identity (copied) and enters READY. */
void conn_set_ready(struct conn *c, const char *identity, size_t len);
/* Whether HELLO is done and the connection is serving requests. */
int conn_is_ready(const struct conn *c);
/* Whether the connection still takes output (not CLOSING or DEAD). */
int conn_alive(const struct conn *c);

/* Queues a copy of b's bytes. */
void conn_send(struct conn *c, const struct wire_buf *b);
/* Queues a reference to blob (the conn takes its own reference). Returns 0,
 * or -1 if this would pass max_pending: the conn is then dropped as a slow
 * consumer and the caller must not touch it again in this turn. */
int conn_send_blob(struct conn *c, struct blob *b);
/* Sends an error reply (if code != 0) and closes after flushing it. */
void conn_close(struct conn *c, int code, uint64_t rid, const char *msg);
/* Replies with an error; closes if the code is fatal. */
void conn_error(struct conn *c, uint64_t rid, int code, const char *msg);

/* The connection's subscription to room r, or NULL. */
struct room_sub *conn_find_sub(const struct conn *c, const struct room *r);
/* Subscribes the connection to r. 0; -1 at max_subs; -2 on no memory. */
int conn_subscribe(struct conn *c, struct room *r);
/* Drops the connection's subscription s (and frees it). */
void conn_unsubscribe(struct conn *c, struct room_sub *s);
size_t conn_sub_count(const struct conn *c);

/* The streams this connection sends (not owned: the stream table owns them). */
int conn_stream_add(struct conn *c, struct strm *s);
void conn_stream_del(struct conn *c, struct strm *s);
size_t conn_stream_count(const struct conn *c);

#endif

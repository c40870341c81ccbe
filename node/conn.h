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
struct peer;
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

/* The local client connection with this session id, or NULL. */
struct conn *conns_find_sid(const struct conns *s, uint64_t sid);
/* The local client that sends stream id through another node's relay and
 * whose session id, or else publisher key, is key; NULL if none. */
struct conn *conns_find_sender(const struct conns *s, uint64_t key, const char *id, size_t len);
/* A link went away: proxies over it end, and no connection keeps it. */
void conns_forget_peer(struct conns *s, struct peer *p);

/* Wraps an accepted socket (the conn owns fd). NULL on no memory. */
struct conn *conn_new(struct node *n, evutil_socket_t fd, const char *peer);

/* A proxy: the session sid of a client of another node, reached over p. It
 * is READY at once with that node's word for its identity (copied). */
struct conn *conn_new_proxy(struct node *n, struct peer *p, uint64_t sid, const char *identity,
			    size_t len);
/* The session id: random, names the session across nodes. */
uint64_t conn_sid(const struct conn *c);
/* The key the rooms' rings know this session's pushes by (repl_seen): a hash
 * of the identity and the publisher id HELLO gave, the same on every node and
 * across reconnections, so that a push sent again on a new session counts
 * once; without a publisher id, the session id. Never 0. */
uint64_t conn_push_key(const struct conn *c);
void conn_set_push_key(struct conn *c, uint64_t key);
/* The session ends for good (SESSION_END): when c goes, the streams it
 * sends end (aborted) rather than wait to be claimed (node/streams.h). */
void conn_end_session(struct conn *c);
/* The link a proxy's session lives behind, or NULL for a local client. */
struct peer *conn_proxy_peer(const struct conn *c);
/* Links that carried this local session's requests (to end it there). */
int conn_note_peer(struct conn *c, struct peer *p);
size_t conn_peers_used(const struct conn *c, struct peer *const **list);
/* Streams this local client sends through another node's relay. */
int conn_rstream_add(struct conn *c, const char *id, size_t len, struct peer *p, uint64_t rid);
/* The relay refused the OPEN with this rid: forget its stream. */
void conn_rstream_refused(struct conn *c, uint64_t rid);
struct peer *conn_rstream(const struct conn *c, const char *id, size_t len);
void conn_rstream_closing(struct conn *c, const char *id, size_t len, uint64_t rid);
/* Forgets a remote stream: by id, or (id NULL) the one whose close had rid. */
void conn_rstream_done(struct conn *c, const char *id, size_t len, uint64_t rid);
/* Whether this client sends a stream with this id through another node
 * (conn_rstream() is NULL while it waits for a new relay). */
int conn_rstream_has(const struct conn *c, const char *id, size_t len);
/* Whether rid is the close of one of them (its answer comes from the relay). */
int conn_rstream_is_close(const struct conn *c, uint64_t rid);
/* Keeps a chunk (at off, dlen bytes) or close (off UINT64_MAX) frame until
 * the relay's credit says its bytes are taken (conn_rstream_acked). */
void conn_rstream_keep(struct conn *c, const char *id, size_t len, const uint8_t *frame,
		       size_t flen, uint64_t rid, uint64_t off, size_t dlen);
void conn_rstream_acked(struct conn *c, const char *id, size_t len, uint64_t acked);
/* A new relay holds the stream up to off: the kept frames from there go
 * to send() (a chunk across off is cut), and the stream goes through p
 * from now on; p NULL: this node relays it now and the entry is dropped
 * first. -1 if there is no such stream or it kept too much to go on. */
int conn_rstream_resume(struct conn *c, const char *id, size_t len, struct peer *p, uint64_t off,
			void (*send)(void *arg, const uint8_t *frame, size_t len), void *arg);
/* Streams that waited max_ms for a new relay in vain: each goes, then fn. */
void conns_rstreams_expire(struct conns *s, uint64_t now_ms, uint64_t max_ms,
			   void (*fn)(struct conn *c, const char *id, void *arg), void *arg);

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
/* Queues a copy of one encoded frame. */
void conn_send_raw(struct conn *c, const uint8_t *frame, size_t len);
/* Queues a reference to blob (the conn takes its own reference). Returns 0,
 * or -1 if this would pass max_pending: the conn is then dropped as a slow
 * consumer and the caller must not touch it again in this turn. */
int conn_send_blob(struct conn *c, struct blob *b);
/* Like conn_send_blob, for stream chunks: they wait behind a short output
 * so that pushes and replies pass them (see BULK_LOW). */
int conn_send_bulk(struct conn *c, struct blob *b);
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

/* ---- tokens and limits (node/guard.c) ---- */
struct token_grants;
/* The source address key failed HELLOs count under (copied). */
void conn_set_source(struct conn *c, const uint8_t *key, size_t len);
/* After HELLO: the token's grants (copied; NULL: unrestricted) and its
 * expiry in Unix ms (0: none), when the node closes the session with
 * `auth`. 0, or -1 on no memory. */
int conn_set_token(struct conn *c, const struct token_grants *g, uint64_t exp_ms);
/* The grants of the session's token, or NULL when it is unrestricted. */
const struct token_grants *conn_grants(const struct conn *c);

#endif

/*
 * strm: the byte streams open on one node, with no I/O.
 *
 * A stream belongs to one room and one sender. Its receivers are fixed when
 * it opens (the room's subscriptions that want its topic and are among its
 * destinations; the stream holds a reference on each), so a subscriber that
 * joins later receives nothing of it. The node accepts bytes only at the
 * current offset, hashes them (XXH3-64) as they pass, and counts as "in
 * flight" the bytes handed to receivers whose outputs have not yet let go of
 * them. Flow control: the sender may send up to acked + window, where
 * acked = offset - inflight; so the node never holds more than one window of
 * any stream, however slow its receivers.
 *
 * Lifetime: the table holds one reference until strms_end(); each chunk in
 * flight and each entry on the due list holds one more.
 */
#ifndef VROOM_STREAM_STRM_H
#define VROOM_STREAM_STRM_H

#include <stddef.h>
#include <stdint.h>

struct strms;
struct strm;
struct room;
struct room_sub;
struct blob;

/* An empty table; kick(arg) runs whenever the due list becomes non-empty,
 * so the owner can schedule its after-turn work. */
struct strms *strms_new(void (*kick)(void *arg), void *arg);
/* Ends and releases every stream (teardown). strms_free(NULL) is a no-op. */
void strms_free(struct strms *t);
size_t strms_count(const struct strms *t);
struct strm *strms_find(const struct strms *t, const char *id, size_t len);
/* A new open stream (id, topic copied; size -1 if unknown). NULL on no memory. */
struct strm *strms_open(struct strms *t, const char *id, size_t idlen, struct room *r,
			void *sender, const char *topic, size_t topiclen, int64_t size,
			size_t window, uint64_t now_ms);
/* Takes the stream out of the table: it is over for everyone, and it drops
 * its receivers. Freed when the last reference goes. */
void strms_end(struct strms *t, struct strm *s);
/* Iteration over open streams: *pos starts at 0; no changes meanwhile. */
struct strm *strms_next(const struct strms *t, size_t *pos);
/* Streams whose window moved since they were last looked at, oldest first:
 * the caller sends credit for each, then unrefs it. NULL when none. */
struct strm *strms_pop_due(struct strms *t);
int strms_due(const struct strms *t);

struct strm *strm_ref(struct strm *s);
void strm_unref(struct strm *s);

const char *strm_id(const struct strm *s);
const char *strm_topic(const struct strm *s);
struct room *strm_room(const struct strm *s); /* NULL once ended */
void *strm_sender(const struct strm *s);      /* NULL once ended */
int64_t strm_size(const struct strm *s);
uint64_t strm_offset(const struct strm *s);
uint64_t strm_last_active(const struct strm *s);
/* Restarts the idle clock (credit granted: the sender may send again). */
void strm_touch(struct strm *s, uint64_t now_ms);
int strm_is_open(const struct strm *s);

/* Adds a receiver (takes a reference on it). 0, or -1 on no memory. */
int strm_add_receiver(struct strm *s, struct room_sub *sub);
size_t strm_receivers(const struct strm *s);
struct room_sub *strm_receiver(const struct strm *s, size_t i);

/* Accepts len bytes at the current offset: hashes them and advances. */
void strm_append(struct strm *s, const void *data, size_t len, uint64_t now_ms);
/* XXH3-64 of every byte accepted so far. */
uint64_t strm_digest(const struct strm *s);

/* Flow control. A receiver that is another node (a peer subscription)
 * acknowledges what its own receivers let go of; acked is the least of
 * offset - inflight (this node's outputs) and every such acknowledgement. */
uint64_t strm_acked(const struct strm *s);
uint64_t strm_limit(const struct strm *s); /* acked + window */
uint64_t strm_inflight(const struct strm *s);
/* Counts len bytes handed to receivers; the returned function and argument,
 * given to blob_on_release() with tag len, count them released again and
 * queue the stream on the due list. */
void strm_inflight_add(struct strm *s, size_t len);
void strm_release_cb(void *strm, size_t len);
/* The node subscribed as who acknowledged bytes up to upto. */
void strm_peer_ack(struct strm *s, const void *who, uint64_t upto);
/* The last limit told to the sender, to send credit only when it moved. */
uint64_t strm_credit_sent(const struct strm *s);
void strm_set_credit_sent(struct strm *s, uint64_t limit);

/* Setting the fields a stream taken over from a replica starts with. */
void strm_set_sender(struct strm *s, void *sender);
void strm_set_offset(struct strm *s, uint64_t offset);
/* The sender may always send up to this (a stream taken over: the old
 * relay may have granted up to the backup's offset + one window). */
void strm_set_limit_floor(struct strm *s, uint64_t limit);
/* A stream taken over waits for its sender's session: the first request
 * about it from a connection with this session id claims it (0: none). */
void strm_set_claim_sid(struct strm *s, uint64_t sid);
uint64_t strm_claim_sid(const struct strm *s);
/* A stream a node receives from a relay, re-attaching (STREAM_REATTACH
 * sent): bytes past its offset are dropped, not a gap, until the relay's
 * replay from the offset comes in. */
void strm_set_resync(struct strm *s, int on);
int strm_resync(const struct strm *s);
/* The streaming XXH3 state as bytes (nodes of one build only): export
 * copies at most cap bytes and returns the size; import takes exactly that
 * size, else -1. */
size_t strm_hash_export(const struct strm *s, void *buf, size_t cap);
int strm_hash_import(struct strm *s, const void *buf, size_t len);
size_t strm_hash_size(void);

/* Replication: with a first backup, acked never passes what that backup
 * said it holds (strm_repl_ack), so no byte the sender was told is taken
 * is missing at the node that would take the stream over. */
void strm_set_repl(struct strm *s, int on);
int strm_repl(const struct strm *s);
void strm_repl_ack(struct strm *s, uint64_t upto);

/* The bytes a receiver may still need, [base, offset), as STREAM_DATA
 * frames (one per chunk), kept in a cluster so that a receiver node that
 * comes back (a lost link, a new relay) is sent what it missed. add takes
 * a reference; trim drops the chunks that end at or below upto. */
int strm_buf_add(struct strm *s, uint64_t off, size_t len, struct blob *frame);
void strm_buf_trim(struct strm *s, uint64_t upto);
size_t strm_buf_count(const struct strm *s);
struct blob *strm_buf_at(const struct strm *s, size_t i, uint64_t *off, size_t *len);
uint64_t strm_buf_base(const struct strm *s); /* offset when empty */
uint64_t strm_buf_bytes(const struct strm *s);
/* The END a closing stream's receivers got, for those that come back. */
void strm_set_end_frame(struct strm *s, struct blob *frame);
struct blob *strm_end_frame(const struct strm *s);

/* Receiver nodes expected back (their link dropped, or the relay changed),
 * by node name, with what they had acknowledged: acked waits for them,
 * until they come back (strm_wait_del) or the wait is dropped (expired). */
int strm_wait_add(struct strm *s, const char *node, uint64_t acked, uint64_t now_ms);
int strm_wait_del(struct strm *s, const char *node);
size_t strm_waits(const struct strm *s);
const char *strm_wait_name(const struct strm *s, size_t i);
uint64_t strm_wait_acked(const struct strm *s, size_t i);
/* Drops waits older than max_ms; the number dropped. */
size_t strm_waits_expire(struct strm *s, uint64_t now_ms, uint64_t max_ms);
/* Adds a receiver that acknowledged up to acked already (a node back). */
int strm_add_receiver_at(struct strm *s, struct room_sub *sub, uint64_t acked);
/* The same, for a receiver that already has the bytes below from (a local
 * receiver at a new relay whose mirror was ahead of the replica): it is
 * sent nothing below from. */
int strm_add_receiver_from(struct strm *s, struct room_sub *sub, uint64_t acked, uint64_t from);
uint64_t strm_receiver_from(const struct strm *s, size_t i);
uint64_t strm_receiver_acked(const struct strm *s, size_t i);
/* The STREAM_OPENED frame and the sender's node name, kept at the relay for
 * replicas made later (a new backup, a hand-over). */
void strm_set_opened(struct strm *s, struct blob *frame, const char *node);
struct blob *strm_opened(const struct strm *s);
const char *strm_sender_node(const struct strm *s);
/* Queues the stream for its owner's after-turn work (credit). */
void strm_kick(struct strm *s);

/* A close that waits for the last bytes to leave: its request id. */
void strm_set_closing(struct strm *s, uint64_t rid);
int strm_closing(const struct strm *s, uint64_t *rid);

#endif

/*
 * room: virtual rooms on one node, with no I/O.
 *
 * `struct rooms` is the node's table: rooms by id (a keyed hash map) and an
 * activity list ordered from least to most recently active, so that idle
 * expiry pops from the head in O(expired). A room has an owner, a bounded grant
 * list, a strictly increasing sequence and a list of subscriptions; a
 * subscription links one opaque subscriber ("who", a connection or later a
 * node link) to one room. A subscription is refcounted: the room holds one
 * reference and each open byte stream delivering to it holds one, so a stream
 * may outlive an unsubscribe; once unsubscribed, room_sub_who() is NULL and
 * nothing is delivered to it.
 */
#ifndef VROOM_STREAM_ROOM_H
#define VROOM_STREAM_ROOM_H

#include <stddef.h>
#include <stdint.h>

#define ROOM_ID_BYTES 12 /* 96 random bits */
#define ROOM_ID_LEN   16 /* base64url without padding */

struct rooms;
struct room;
struct room_sub;

/* An empty table; NULL on no memory. Needs sodium_init() done. */
struct rooms *rooms_new(size_t max_grants);
/* Frees every room and subscription. rooms_free(NULL) is a no-op. */
void rooms_free(struct rooms *t);
size_t rooms_count(const struct rooms *t);
/* A new room with a fresh random id, owned by owner (copied). NULL on no memory. */
struct room *rooms_create(struct rooms *t, const char *owner, size_t owner_len, uint64_t now_ms);
/* A room with the given id (copied), as a relay creates one for another
 * node or a node makes a mirror. NULL if it exists already, the id is not a
 * room id, or no memory. */
struct room *rooms_create_id(struct rooms *t, const char *id, size_t idlen, const char *owner,
			     size_t owner_len, uint64_t now_ms);
/* The room with this id, or NULL. */
struct room *rooms_find(const struct rooms *t, const char *id, size_t len);
/* Removes and frees the room with any subscriptions left in it; the caller
 * has already told the subscribers and dropped its pointers to them. */
void rooms_destroy(struct rooms *t, struct room *r);
/* The least recently active room if it has been idle for at least idle_ms,
 * else NULL. */
struct room *rooms_idle(const struct rooms *t, uint64_t now_ms, uint64_t idle_ms);
/* Iteration: *pos starts at 0; NULL at the end; no changes meanwhile. */
struct room *rooms_next(const struct rooms *t, size_t *pos);
/* The most recently active room, then the next less recently active one
 * (NULL at the end; no changes meanwhile). */
struct room *rooms_recent(const struct rooms *t);
struct room *room_older(const struct room *r);
/* Sets max_grants for every room, present and future: a room over the new
 * limit keeps its grants and refuses new ones. */
void rooms_set_max_grants(struct rooms *t, size_t max_grants);

const char *room_id(const struct room *r);
/* Bits the owner of the table keeps on a room (e.g. "mirror"); 0 at first. */
unsigned room_marks(const struct room *r);
void room_set_marks(struct room *r, unsigned marks);
/* Subscribers, counting a node subscription as its weight. */
uint64_t room_subscribers(const struct room *r);
const char *room_owner(const struct room *r);
int room_is_owner(const struct room *r, const char *identity, size_t len);
/* Whether identity may push: the owner, or a granted identity. */
int room_may_push(const struct room *r, const char *identity, size_t len);
/* Adds a grant (idempotent). 0; -1 if the grant list is full; -2 on no memory. */
int room_grant(struct room *r, const char *identity, size_t len);
/* Removes a grant; absent is not an error. */
void room_revoke(struct room *r, const char *identity, size_t len);
size_t room_grant_count(const struct room *r);
const char *room_grant_at(const struct room *r, size_t i);

/* Marks activity now: the room moves to the tail of the activity list. */
void room_touch(struct rooms *t, struct room *r, uint64_t now_ms);
/* Assigns and returns the next sequence number (the first is 1). */
uint64_t room_next_seq(struct room *r);
uint64_t room_seq(const struct room *r);
/* The relay term (cluster): 1 at creation, one more at each takeover or
 * hand-over; 0 for a room no relay has set (a mirror, a fresh replica). */
uint64_t room_epoch(const struct room *r);
void room_set_epoch(struct room *r, uint64_t epoch);
/* Sets the last seq (a room taken over continues where its relay was). */
void room_set_seq(struct room *r, uint64_t seq);
uint64_t room_created(const struct room *r);
uint64_t room_last_active(const struct room *r);
/* Counts a message of len payload bytes in the room's totals. */
void room_count(struct room *r, size_t len);
uint64_t room_msgs(const struct room *r);
uint64_t room_bytes(const struct room *r);

/* Subscribes who (borrowed); NULL on no memory. The caller checks for an
 * existing subscription first. */
struct room_sub *room_subscribe(struct room *r, void *who);
/* Ends a subscription: it leaves the room at once and is freed when its last
 * reference goes. */
void room_unsubscribe(struct room_sub *s);
struct room_sub *room_sub_ref(struct room_sub *s);
void room_sub_unref(struct room_sub *s);
/* The subscriber's identity (copied), used for stream destinations. 0 or -1. */
int room_sub_set_identity(struct room_sub *s, const char *identity, size_t len);
const char *room_sub_identity(const struct room_sub *s);
/* Restricts the byte streams delivered to these topics (copied). 0, or -1
 * at the limit of `max` topics or on no memory. */
int room_sub_add_topic(struct room_sub *s, const char *topic, size_t len, size_t max);
/* Makes s a node subscription standing for weight local subscribers there. */
void room_sub_set_peer(struct room_sub *s, uint64_t weight);
int room_sub_is_peer(const struct room_sub *s);
uint64_t room_sub_weight(const struct room_sub *s);
/* Gives dst the topic filter of src. 0, or -1 on no memory. */
int room_sub_copy_topics(struct room_sub *dst, const struct room_sub *src);
/* Forgets the topic filter (s then wants every topic). */
void room_sub_clear_topics(struct room_sub *s);
/* The topic filter: count (0: every topic) and the i-th topic. */
size_t room_sub_topic_count(const struct room_sub *s);
const char *room_sub_topic(const struct room_sub *s, size_t i);
/* Whether a stream of this topic goes to s: yes if s named no topic. */
int room_sub_wants(const struct room_sub *s, const char *topic, size_t len);
/* Open byte streams in the room (kept by the stream table). */
size_t room_streams(const struct room *r);
void room_streams_add(struct room *r, int delta);
size_t room_sub_count(const struct room *r);
/* Iteration over a room's subscriptions, in subscription order. A callback
 * may unsubscribe the current one if it fetched the next one first. */
struct room_sub *room_subs(const struct room *r);
struct room_sub *room_sub_next(const struct room_sub *s);
/* The subscriber, or NULL once unsubscribed. */
void *room_sub_who(const struct room_sub *s);
/* The room, or NULL once unsubscribed. */
struct room *room_sub_room(const struct room_sub *s);

/* Writes a new random room id and its NUL into out[ROOM_ID_LEN + 1]. */
void room_id_generate(char out[ROOM_ID_LEN + 1]);

#endif

/*
 * srepl: byte streams across a failover.
 *
 * At the relay: when a stream opens, each backup of its room gets a
 * replica (REPL_STREAM: the STREAM_OPENED frame, the sender's node and
 * publisher key (a session id without one), the offset, the XXH3 state,
 * the receiver nodes), then every chunk (REPL_CHUNK, sent before the
 * chunk goes to any receiver) and the end (REPL_STREAM_END). The first
 * backup acknowledges what it holds (REPL_CHUNK_ACK) and the relay never
 * tells the sender that bytes are taken (credit's acked) past that: every
 * byte the sender may have forgotten is at the backup.
 *
 * At a backup: per stream, the bytes from what the relay said its
 * receivers have taken up to the offset (at most about one window), and
 * the hash state at the offset.
 *
 * At the takeover: the new relay makes each replicated stream of the room
 * again (node/streams.c streams_from_replica), at the backup's offset,
 * waiting for its receiver nodes to come back (STREAM_REATTACH) and for a
 * session with its sender's publisher key to claim it (the same session,
 * or a new one after the client moved: STREAM_CLAIM); the sender's node
 * is told the offset (STREAM_RESUME) and sends again what it kept from
 * there.
 */
#ifndef VROOM_NODE_SREPL_H
#define VROOM_NODE_SREPL_H

#include <stddef.h>
#include <stdint.h>

struct node;
struct peer;
struct room;
struct strm;
struct srepl;
struct wire_msg;

struct srepl *srepl_new(size_t frame_max);
void srepl_free(struct srepl *t);

/* At the relay: s just opened (opened: its STREAM_OPENED frame; node: the
 * sender's node name). */
void srepl_open(struct node *n, struct strm *s, const uint8_t *opened, size_t len,
		const char *node);
/* At the relay: s took len bytes at off (before they go to receivers). */
void srepl_chunk(struct node *n, struct strm *s, uint64_t off, const void *data, size_t len);
/* At the relay: s ended, however. */
void srepl_end(struct node *n, struct strm *s);
/* At the relay: r's backups changed: each gets the replicas of r's open
 * streams with the bytes the relay still holds. */
void srepl_fill(struct node *n, struct room *r);
/* At the relay: s has a new sender (claimed), whose node is node: its
 * replicas are made again with it (and the sender's key), so that a later
 * takeover tells that node. */
void srepl_restate(struct node *n, struct strm *s, const char *node);
/* REPL_STREAM, REPL_CHUNK, REPL_CHUNK_ACK, REPL_STREAM_END. */
void srepl_peer_frame(struct node *n, struct peer *p, const struct wire_msg *m);
/* This node took room r over: its replicated streams open again here. */
void srepl_install(struct node *n, struct room *r);
/* The replica of room id went (REPL_GONE, expiry, no longer a backup). */
void srepl_room_gone(struct node *n, const char *id);
/* Replicas backed up here, for the stats and tests. */
size_t srepl_count(const struct node *n);

#endif

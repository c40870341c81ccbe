/*
 * vroom_int.h: libvroom's private state, shared by the core (vroom.c) and
 * the blocking layer (sync.c). Not installed.
 */
#ifndef VROOM_CLIENT_INT_H
#define VROOM_CLIENT_INT_H

#include <stdint.h>
#include <sys/queue.h>

#include "client/vroom.h"
#include "stream/smap.h"
#include "stream/wire.h"

#define VROOM_MAX_LIMITS   16
#define VROOM_MAX_HANDLERS 64 /* stream handlers (topics) per client */
#define VROOM_MAX_WARNED   32 /* topics warned about once */

#define VROOM_MAX_SERVERS 64 /* the node list: given, then learned from WELCOME */

/* IDLE: never connected; CONNECTING: an attempt is out (socket, HELLO);
 * READY: welcomed; WAITING: reconnection on, between attempts; CLOSED: over. */
enum { VROOM_ST_IDLE, VROOM_ST_CONNECTING, VROOM_ST_READY, VROOM_ST_CLOSED, VROOM_ST_WAITING };

/* Invariant: every request has one entry, whose callback runs once. With
 * reconnection on, an entry keeps its frame when it may be sent again on
 * another connection: a push (the relay counts it once), or any request made
 * before the connection it was written to had been welcomed (no node ran it). */
struct pending {
	uint64_t rid;
	uint16_t type;
	vroom_cb cb;
	void *arg;
	uint8_t *frame; /* kept to send again, or NULL */
	size_t len, payload;
	unsigned gen; /* the connection it was written to (0: not yet written) */
	char *room;   /* SUBSCRIBE, UNSUBSCRIBE: the room (the subscription table's) */
	int resume;   /* the library's own SUBSCRIBE with `after` */
	TAILQ_ENTRY(pending) link;
};

/* A push held while a resumed subscription waits for its answer. */
struct vroom_held {
	uint64_t seq;
	uint8_t dtype;
	char *sender;
	void *data;
	size_t len;
};

/* A room subscribed to: what the client resumes after a move. */
struct vroom_sub {
	char room[VROOM_ROOM_ID_MAX + 1];
	char **topics; /* NULL with ntopics 0: every topic */
	size_t ntopics;
	int topics_given;      /* subscribed with a topic list (even empty) */
	uint64_t last;	       /* last seq delivered to the application */
	int based;	       /* last is known (a delivery, or the node's first seq) */
	int resuming;	       /* a SUBSCRIBE with after is out: DELIVERs are held */
	uint64_t resume_since; /* ms (monotonic) when it went out */
	uint64_t retry_at;     /* ms: subscribe again then (a refused resume); 0: no */
	uint64_t retry_until;  /* ms: give the room up after this */
	struct vroom_held *held;
	size_t nheld, capheld, held_bytes;
};

struct vroom_handler {
	char *topic; /* NULL: any topic without its own handler */
	vroom_stream_handler fn;
	void *arg;
};

struct vroom {
	struct event_base *base;
	int own_base; /* made by vroom_open(), freed by vroom_close() */
	struct vroom_handlers h;
	void *harg;
	struct bufferevent *bev;
	struct wire_dec *dec;
	struct wire_buf out; /* the frame being queued */
	int state;
	char server[264];
	uint64_t next_rid;
	TAILQ_HEAD(, pending) pending; /* oldest first: replies come mostly in order */
	size_t npending;
	char node_id[64], session_id[96];
	struct {
		char name[32];
		uint64_t value;
	} limits[VROOM_MAX_LIMITS];
	size_t nlimits;
	struct vroom_error node_err; /* a fatal error the node sent before closing */
	int busy;		     /* depth of our own callbacks on the stack */
	int free_asked;		     /* vroom_free() was called from a callback */
	int stop;		     /* vroom_run() should return */
	int wait_ms;		     /* how long a blocking call waits */
	int rcvbuf;		     /* SO_RCVBUF for the next connect; 0: the system's */
	uint8_t *token;		     /* the binary token HELLO carries, or NULL */
	size_t token_len;
	TAILQ_HEAD(, vroom_writer) writers;
	TAILQ_HEAD(, vroom_reader) readers;
	struct vroom_handler handlers[VROOM_MAX_HANDLERS];
	size_t nhandlers;
	char *warned[VROOM_MAX_WARNED];
	size_t nwarned;
	uint64_t streams_dropped;

	/* the node list and reconnection (client/failover.c) */
	struct vroom_reconnect rc;
	int rc_on;
	char servers[VROOM_MAX_SERVERS][264];
	size_t nservers, cur;
	char identity[VROOM_IDENTITY_MAX + 1];
	vroom_cb hello_cb; /* vroom_connect()'s done, until it has run */
	void *hello_arg;
	int welcomed;		     /* some connection was welcomed */
	unsigned gen;		     /* connections attempted */
	unsigned conns;		     /* connections welcomed */
	unsigned attempt;	     /* attempts since the connection was lost */
	uint64_t lost_ms;	     /* when it was lost (0: not lost) */
	struct bufferevent *old_bev; /* freed outside its own callbacks */
	struct event *timer;	     /* backoff, attempt deadline, resume checks */
	size_t unacked, unacked_bytes;
	struct smap *subs; /* room -> struct vroom_sub */
	struct vroom_error last_err;
};

void vroom_seterr(struct vroom_error *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int vroom_in_callback(struct vroom *v, struct vroom_error *err);
int vroom_send_request(struct vroom *v, unsigned type, uint64_t rid, vroom_cb cb, void *arg,
		       struct vroom_error *err);
struct pending *vroom_queue(struct vroom *v, unsigned type, uint64_t rid, vroom_cb cb, void *arg,
			    struct vroom_error *err);
/* Removes p without running its callback. */
void vroom_pending_drop(struct vroom *v, struct pending *p);
/* Runs p's callback with e and removes it. */
void vroom_pending_fail(struct vroom *v, struct pending *p, const struct vroom_error *e);
/* The connection ended (vroom.c): moves on or closes for good. */
void vroom_lost(struct vroom *v, const struct vroom_error *why);
int vroom_attempt(struct vroom *v, struct vroom_error *err);

/* failover.c: the node list, reconnection, subscriptions resumed. */
int vroom_fo_parse_servers(struct vroom *v, const char *list, struct vroom_error *err);
void vroom_fo_learn(struct vroom *v, const struct wire_msg *welcome);
/* The connection ended: 1 if the client reconnects (lost() does no more). */
int vroom_fo_lost(struct vroom *v, const struct vroom_error *why);
void vroom_fo_welcomed(struct vroom *v);
void vroom_fo_attempt_started(struct vroom *v);
void vroom_fo_hello_done(struct vroom *v, const struct vroom_result *r, void *arg);
/* A DELIVER: 1 if it is for the application now, 0 if dropped or held. */
int vroom_fo_deliver(struct vroom *v, const struct vroom_push *p);
/* A SUBSCRIBE's or UNSUBSCRIBE's answer, before its callback runs. */
void vroom_fo_sub_reply(struct vroom *v, struct pending *p, const struct vroom_result *r,
			const msgpack_object *val);
void vroom_fo_room_closed(struct vroom *v, const char *room);
int vroom_fo_subscribe(struct vroom *v, const char *room, const char *const *topics, size_t n,
		       int topics_given, vroom_cb cb, void *arg, struct vroom_error *err);
int vroom_fo_unsubscribe_noted(struct vroom *v, const char *room);
void vroom_fo_free(struct vroom *v);
uint64_t vroom_fo_now_ms(void);
/* Runs the reconnection tick soon (a claim to send again). */
void vroom_fo_tick_soon(struct vroom *v);
/* Writes the frame in v->out for pending p (or keeps it for later). */
int vroom_write_pending(struct vroom *v, struct pending *p);

/* stream.c: frames about streams, and the end of the connection. */
void vroom_streams_on_opened(struct vroom *v, const struct wire_msg *m);
void vroom_streams_on_data(struct vroom *v, const struct wire_msg *m);
void vroom_streams_on_end(struct vroom *v, const struct wire_msg *m);
void vroom_streams_on_credit(struct vroom *v, const struct wire_msg *m);
void vroom_streams_lost(struct vroom *v, const struct vroom_error *why);
/* The connection is gone and the client moves to another node: readers of
 * rooms it resubscribes to wait (vroom_streams_lost keeps them) and take
 * their stream up again there (vroom_streams_rejoin). */
void vroom_streams_move(struct vroom *v);
/* The room's resumed SUBSCRIBE was answered: its waiting readers send
 * STREAM_REJOIN at the offset they delivered. */
void vroom_streams_rejoin(struct vroom *v, const char *room);
/* The answer to a STREAM_REJOIN (err set: refused, the reader ends). */
void vroom_streams_rejoin_reply(struct vroom *v, struct pending *p, const struct vroom_error *err);
/* The room's subscription ended: its waiting readers end. */
void vroom_streams_room_gone(struct vroom *v, const char *room, const char *why);
/* Writers across a move: claims their streams on this connection (again
 * after a refusal); 1 if some claim waits to be sent again (tick on). */
int vroom_streams_tick(struct vroom *v);
/* A STREAM_CLAIM's OK [offset, limit, closing], before p finishes. */
void vroom_streams_on_claimed(struct vroom *v, struct pending *p, const msgpack_object *val);
/* The connection went with p unanswered: 1 if p is a writer's close, kept
 * (and p dropped) to go again once the stream is claimed on another node. */
int vroom_streams_keep_close(struct vroom *v, struct pending *p);
void vroom_streams_free(struct vroom *v);

#endif

/*
 * vroom.h: libvroom, the client library for vroom relay nodes.
 *
 * A `struct vroom` is one connection to one node. The core is event-driven on
 * a libevent base you own: requests take a callback that runs when the node
 * replies, and pushes and room events arrive through handlers. A thin blocking
 * layer (vroom_open() and the calls without _async) runs the same loop until
 * the reply arrives, for simple programs and scripts.
 *
 * Threads: a struct vroom belongs to the thread running its event base.
 * Strings passed to callbacks are valid only during the callback.
 */
#ifndef VROOM_H
#define VROOM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;
struct vroom;

#define VROOM_DEFAULT_SERVER "127.0.0.1:7700"
#define VROOM_ROOM_ID_MAX    64	 /* a room id fits in VROOM_ROOM_ID_MAX + 1 bytes */
#define VROOM_IDENTITY_MAX   128 /* an identity fits in VROOM_IDENTITY_MAX + 1 bytes */

/* Error codes: 1-99 come from the node (docs/protocol.md), 1000 and up are
 * the library's own. */
enum vroom_code {
	VROOM_OK = 0,
	VROOM_E_BAD_FRAME = 1,
	VROOM_E_TOO_LARGE = 2,
	VROOM_E_UNKNOWN_TYPE = 3,
	VROOM_E_HELLO_REQUIRED = 4,
	VROOM_E_VERSION = 5,
	VROOM_E_AUTH = 6,
	VROOM_E_TIMEOUT = 7,
	VROOM_E_SLOW_CONSUMER = 8,
	VROOM_E_SHUTDOWN = 9,
	VROOM_E_UNKNOWN_ROOM = 20,
	VROOM_E_FORBIDDEN = 21,
	VROOM_E_NOT_OWNER = 22,
	VROOM_E_LIMIT = 23,
	VROOM_E_BAD_REQUEST = 24,
	VROOM_E_INTERNAL = 99,
	VROOM_E_CONNECT = 1000,	 /* could not connect */
	VROOM_E_CLOSED = 1001,	 /* the connection closed */
	VROOM_E_PROTOCOL = 1002, /* the node sent something this library cannot read */
	VROOM_E_ARG = 1003,	 /* a bad argument to a library call */
	VROOM_E_WAIT = 1004,	 /* a blocking call ran out of time */
};

struct vroom_error {
	int code;	   /* enum vroom_code */
	char message[256]; /* what happened and why */
};

/* The stable name of a code: "forbidden", "closed", ... ("unknown" if none). */
const char *vroom_code_name(int code);

/* A push delivered to a subscriber. */
struct vroom_push {
	const char *room;
	uint64_t seq; /* per room, strictly increasing */
	const char *sender;
	uint8_t dtype;
	const void *data;
	size_t len;
};

/* What `info` returns. grants is set only when the caller owns the room. */
struct vroom_room_info {
	char id[VROOM_ROOM_ID_MAX + 1];
	char owner[VROOM_IDENTITY_MAX + 1];
	uint64_t subscribers;
	uint64_t created_ms, last_active_ms; /* Unix time in milliseconds */
	uint64_t seq, pushes, bytes;
	int has_grants;
	size_t ngrants;
	const char *const *grants;
};

/* Handlers for what the node sends unasked. Any may be NULL. */
struct vroom_handlers {
	void (*push)(struct vroom *v, const struct vroom_push *p, void *arg);
	/* The room closed: reason is "removed" or "expired". */
	void (*room_closed)(struct vroom *v, const char *room, const char *reason, void *arg);
	/* The connection is gone; e says why (the node's reason if it gave one). */
	void (*disconnected)(struct vroom *v, const struct vroom_error *e, void *arg);
};

/* A request's outcome: err is NULL on success; the other fields are set
 * according to the request. */
struct vroom_result {
	const struct vroom_error *err;
	const char *room;		    /* create: the new room's id */
	uint64_t seq;			    /* push: the seq the node assigned */
	const struct vroom_room_info *info; /* info */
};

typedef void (*vroom_cb)(struct vroom *v, const struct vroom_result *r, void *arg);

/* ---- event-driven core ---- */

/* A client on base (borrowed) with handlers h (copied, may be NULL). */
struct vroom *vroom_new(struct event_base *base, const struct vroom_handlers *h, void *arg);
/* Connects to server ("HOST:PORT") and says HELLO as identity; done runs once
 * the node has welcomed us or refused. 0, or -1 with *err set. */
int vroom_connect(struct vroom *v, const char *server, const char *identity, vroom_cb done,
		  void *arg, struct vroom_error *err);
/* Closes the connection; pending callbacks run with VROOM_E_CLOSED. */
void vroom_free(struct vroom *v);

/* Requests. Each returns 0 once queued, or -1 with *err set (not connected,
 * bad argument); cb (may be NULL) runs when the node replies. Strings are
 * copied. */
int vroom_create_async(struct vroom *v, vroom_cb cb, void *arg, struct vroom_error *err);
int vroom_remove_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
		       struct vroom_error *err);
int vroom_grant_async(struct vroom *v, const char *room, const char *identity, vroom_cb cb,
		      void *arg, struct vroom_error *err);
int vroom_revoke_async(struct vroom *v, const char *room, const char *identity, vroom_cb cb,
		       void *arg, struct vroom_error *err);
int vroom_subscribe_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
			  struct vroom_error *err);
int vroom_unsubscribe_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
			    struct vroom_error *err);
int vroom_info_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
		     struct vroom_error *err);
/* Pushes len bytes of data (copied) with dtype to the room's subscribers. */
int vroom_push_async(struct vroom *v, const char *room, uint8_t dtype, const void *data,
		     size_t len, vroom_cb cb, void *arg, struct vroom_error *err);

/* Requests sent and not yet answered, and bytes queued but not yet written:
 * a publisher that wants to go as fast as the node accepts keeps these
 * bounded. */
size_t vroom_inflight(const struct vroom *v);
size_t vroom_pending_output(const struct vroom *v);
/* The node's identifiers from WELCOME ("" before). */
const char *vroom_node_id(const struct vroom *v);
const char *vroom_session_id(const struct vroom *v);
/* The node's limit called name in WELCOME (frame_max, max_pending, ...), or 0. */
uint64_t vroom_limit(const struct vroom *v, const char *name);
int vroom_connected(const struct vroom *v);
struct event_base *vroom_base(const struct vroom *v);

/* ---- blocking layer ---- */

/* Connects and waits for WELCOME on a base of its own (freed by vroom_close).
 * server NULL means VROOM_DEFAULT_SERVER. NULL with *err set on failure. */
struct vroom *vroom_open(const char *server, const char *identity,
			 const struct vroom_handlers *h, void *arg, struct vroom_error *err);
/* vroom_free() plus the base vroom_open() made. vroom_close(NULL) is a no-op. */
void vroom_close(struct vroom *v);
/* Each waits for the reply and returns 0, or -1 with *err set. */
int vroom_create(struct vroom *v, char id[VROOM_ROOM_ID_MAX + 1], struct vroom_error *err);
int vroom_remove(struct vroom *v, const char *room, struct vroom_error *err);
int vroom_grant(struct vroom *v, const char *room, const char *identity, struct vroom_error *err);
int vroom_revoke(struct vroom *v, const char *room, const char *identity, struct vroom_error *err);
int vroom_subscribe(struct vroom *v, const char *room, struct vroom_error *err);
int vroom_unsubscribe(struct vroom *v, const char *room, struct vroom_error *err);
/* Fills *info; call vroom_info_release() on it after. */
int vroom_info(struct vroom *v, const char *room, struct vroom_room_info *info,
	       struct vroom_error *err);
void vroom_info_release(struct vroom_room_info *info);
int vroom_push(struct vroom *v, const char *room, uint8_t dtype, const void *data, size_t len,
	       uint64_t *seq, struct vroom_error *err);
/* Runs the event loop, dispatching handlers, for up to timeout_ms (-1: no
 * limit) or until vroom_stop() is called from a handler. Returns 0, or -1
 * with *err set if the connection is lost. */
int vroom_run(struct vroom *v, int timeout_ms, struct vroom_error *err);
void vroom_stop(struct vroom *v);

#ifdef __cplusplus
}
#endif
#endif

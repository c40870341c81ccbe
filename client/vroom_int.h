/*
 * vroom_int.h: libvroom's private state, shared by the core (vroom.c) and
 * the blocking layer (sync.c). Not installed.
 */
#ifndef VROOM_CLIENT_INT_H
#define VROOM_CLIENT_INT_H

#include <stdint.h>
#include <sys/queue.h>

#include "client/vroom.h"
#include "stream/wire.h"

#define VROOM_MAX_LIMITS   16
#define VROOM_MAX_HANDLERS 64 /* stream handlers (topics) per client */
#define VROOM_MAX_WARNED   32 /* topics warned about once */

enum { VROOM_ST_IDLE, VROOM_ST_CONNECTING, VROOM_ST_READY, VROOM_ST_CLOSED };

struct pending {
	uint64_t rid;
	uint16_t type;
	vroom_cb cb;
	void *arg;
	TAILQ_ENTRY(pending) link;
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
};

void vroom_seterr(struct vroom_error *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int vroom_in_callback(struct vroom *v, struct vroom_error *err);
int vroom_send_request(struct vroom *v, unsigned type, uint64_t rid, vroom_cb cb, void *arg,
		       struct vroom_error *err);


/* stream.c: frames about streams, and the end of the connection. */
void vroom_streams_on_opened(struct vroom *v, const struct wire_msg *m);
void vroom_streams_on_data(struct vroom *v, const struct wire_msg *m);
void vroom_streams_on_end(struct vroom *v, const struct wire_msg *m);
void vroom_streams_on_credit(struct vroom *v, const struct wire_msg *m);
void vroom_streams_lost(struct vroom *v, const struct vroom_error *why);
void vroom_streams_free(struct vroom *v);

#endif

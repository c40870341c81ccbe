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

#define VROOM_MAX_LIMITS 16

enum { VROOM_ST_IDLE, VROOM_ST_CONNECTING, VROOM_ST_READY, VROOM_ST_CLOSED };

struct pending {
	uint64_t rid;
	uint16_t type;
	vroom_cb cb;
	void *arg;
	TAILQ_ENTRY(pending) link;
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
};

void vroom_seterr(struct vroom_error *e, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int vroom_send_request(struct vroom *v, unsigned type, uint64_t rid, vroom_cb cb, void *arg,
		       struct vroom_error *err);

#endif

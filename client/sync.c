/*
 * libvroom's blocking layer: each call queues the asynchronous request and
 * runs the event loop until its callback has run, the connection is lost, or
 * the wait limit passes.
 */
#include "client/vroom.h"
#include "client/vroom_int.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

struct waiter {
	int done;
	struct vroom_error err;
	char room[VROOM_ROOM_ID_MAX + 1];
	uint64_t seq;
	struct vroom_room_info *info; /* where to copy an info reply */
	struct vroom_placement *place;
};

static void on_reply(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct waiter *w = arg;
	w->done = 1;
	if (r->err) {
		w->err = *r->err;
		return;
	}
	w->err.code = 0;
	if (r->room)
		snprintf(w->room, sizeof(w->room), "%s", r->room);
	w->seq = r->seq;
	if (r->place && w->place)
		*w->place = *r->place;
	if (r->info && w->info) {
		*w->info = *r->info;
		w->info->grants = NULL;
		w->info->ngrants = 0;
		if (r->info->ngrants) {
			char **g = calloc(r->info->ngrants, sizeof(*g));
			for (size_t i = 0; g && i < r->info->ngrants; i++)
				if ((g[i] = strdup(r->info->grants[i])))
					w->info->ngrants++;
			w->info->grants = (const char *const *)g;
		}
	}
}

static void on_wait_timer(evutil_socket_t fd, short what, void *arg)
{
	int *expired = arg;
	*expired = 1;
}

/* Refuses a blocking call from inside one of v's own callbacks: the loop
 * that would have to run is the one already running below us. */
int vroom_in_callback(struct vroom *v, struct vroom_error *err)
{
	if (!v->busy)
		return 0;
	vroom_seterr(err, VROOM_E_ARG,
		     "a blocking call cannot be made from a handler; use the _async call");
	return 1;
}

/* Runs the loop until w is done. 0, or -1 with *err set. On a timeout the
 * request is detached from w, which lives on the caller's stack. */
static int wait_for(struct vroom *v, struct waiter *w, struct vroom_error *err)
{
	int expired = 0;
	struct event *t = evtimer_new(v->base, on_wait_timer, &expired);
	struct timeval tv = {v->wait_ms / 1000, (v->wait_ms % 1000) * 1000};
	if (t)
		evtimer_add(t, &tv);
	while (!w->done && !expired)
		if (event_base_loop(v->base, EVLOOP_ONCE) < 0)
			break;
	if (t)
		event_free(t);
	if (!w->done) {
		struct pending *p;
		TAILQ_FOREACH(p, &v->pending, link)
			if (p->arg == w)
				p->cb = NULL;
		vroom_seterr(err, VROOM_E_WAIT, "no reply from the node within %d ms", v->wait_ms);
		return -1;
	}
	if (w->err.code) {
		if (err)
			*err = w->err;
		return -1;
	}
	return 0;
}

struct vroom *vroom_open(const char *server, const char *identity,
			 const struct vroom_handlers *h, void *arg, struct vroom_error *err)
{
	return vroom_open_token(server, identity, NULL, h, arg, err);
}

struct vroom *vroom_open_token(const char *server, const char *identity, const char *token,
			       const struct vroom_handlers *h, void *arg, struct vroom_error *err)
{
	return vroom_open_reconnect(server, identity, token, NULL, h, arg, err);
}

struct vroom *vroom_open_reconnect(const char *server, const char *identity, const char *token,
				   const struct vroom_reconnect *rc, const struct vroom_handlers *h,
				   void *arg, struct vroom_error *err)
{
	struct event_base *base = event_base_new();
	if (!base) {
		vroom_seterr(err, VROOM_E_CONNECT, "cannot create an event base");
		return NULL;
	}
	struct vroom *v = vroom_new(base, h, arg);
	if (!v) {
		event_base_free(base);
		vroom_seterr(err, VROOM_E_CONNECT, "out of memory");
		return NULL;
	}
	v->own_base = 1;
	struct waiter w = {0};
	if ((token && vroom_set_token(v, token, err) < 0) ||
	    (rc && vroom_set_reconnect(v, rc, err) < 0) ||
	    vroom_connect(v, server, identity, on_reply, &w, err) < 0 || wait_for(v, &w, err) < 0) {
		vroom_close(v);
		return NULL;
	}
	return v;
}

void vroom_close(struct vroom *v)
{
	if (!v)
		return;
	struct event_base *base = v->own_base ? v->base : NULL;
	vroom_free(v);
	if (base)
		event_base_free(base);
}

int vroom_create(struct vroom *v, char id[VROOM_ROOM_ID_MAX + 1], struct vroom_error *err)
{
	struct waiter w = {0};
	if (vroom_in_callback(v, err) || vroom_create_async(v, on_reply, &w, err) < 0 ||
	    wait_for(v, &w, err) < 0)
		return -1;
	snprintf(id, VROOM_ROOM_ID_MAX + 1, "%s", w.room);
	return 0;
}

#define SIMPLE(call)                                                                               \
	struct waiter w = {0};                                                                     \
	if (vroom_in_callback(v, err) || (call) < 0 || wait_for(v, &w, err) < 0)                   \
		return -1;                                                                         \
	return 0

int vroom_remove(struct vroom *v, const char *room, struct vroom_error *err)
{
	SIMPLE(vroom_remove_async(v, room, on_reply, &w, err));
}

int vroom_grant(struct vroom *v, const char *room, const char *identity, struct vroom_error *err)
{
	SIMPLE(vroom_grant_async(v, room, identity, on_reply, &w, err));
}

int vroom_revoke(struct vroom *v, const char *room, const char *identity, struct vroom_error *err)
{
	SIMPLE(vroom_revoke_async(v, room, identity, on_reply, &w, err));
}

int vroom_subscribe(struct vroom *v, const char *room, struct vroom_error *err)
{
	SIMPLE(vroom_subscribe_async(v, room, on_reply, &w, err));
}

int vroom_subscribe_topics(struct vroom *v, const char *room, const char *const *topics,
			   size_t ntopics, struct vroom_error *err)
{
	SIMPLE(vroom_subscribe_topics_async(v, room, topics, ntopics, on_reply, &w, err));
}

int vroom_unsubscribe(struct vroom *v, const char *room, struct vroom_error *err)
{
	SIMPLE(vroom_unsubscribe_async(v, room, on_reply, &w, err));
}

int vroom_info(struct vroom *v, const char *room, struct vroom_room_info *info,
	       struct vroom_error *err)
{
	struct waiter w = {.info = info};
	memset(info, 0, sizeof(*info));
	if (vroom_in_callback(v, err) || vroom_info_async(v, room, on_reply, &w, err) < 0 ||
	    wait_for(v, &w, err) < 0)
		return -1;
	return 0;
}

int vroom_place(struct vroom *v, const char *room, struct vroom_placement *out,
		struct vroom_error *err)
{
	struct waiter w = {.place = out};
	memset(out, 0, sizeof(*out));
	if (vroom_in_callback(v, err) || vroom_place_async(v, room, on_reply, &w, err) < 0 ||
	    wait_for(v, &w, err) < 0)
		return -1;
	return 0;
}

void vroom_info_release(struct vroom_room_info *info)
{
	for (size_t i = 0; i < info->ngrants; i++)
		free((char *)info->grants[i]);
	free((void *)info->grants);
	info->grants = NULL;
	info->ngrants = 0;
}

int vroom_push(struct vroom *v, const char *room, uint8_t dtype, const void *data, size_t len,
	       uint64_t *seq, struct vroom_error *err)
{
	struct waiter w = {0};
	if (vroom_in_callback(v, err) ||
	    vroom_push_async(v, room, dtype, data, len, on_reply, &w, err) < 0 ||
	    wait_for(v, &w, err) < 0)
		return -1;
	if (seq)
		*seq = w.seq;
	return 0;
}

static void on_run_timer(evutil_socket_t fd, short what, void *arg)
{
	struct vroom *v = arg;
	v->stop = 1;
}

int vroom_run(struct vroom *v, int timeout_ms, struct vroom_error *err)
{
	struct event *t = NULL;
	if (vroom_in_callback(v, err))
		return -1;
	if (v->state == VROOM_ST_CLOSED) {
		vroom_seterr(err, VROOM_E_CLOSED, "not connected");
		return -1;
	}
	v->stop = 0;
	if (timeout_ms >= 0) {
		t = evtimer_new(v->base, on_run_timer, v);
		struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
		if (t)
			evtimer_add(t, &tv);
	}
	while (!v->stop)
		if (event_base_loop(v->base, EVLOOP_ONCE) < 0)
			break;
	if (t)
		event_free(t);
	if (v->state == VROOM_ST_CLOSED) {
		if (err) {
			if (v->node_err.code)
				*err = v->node_err;
			else
				vroom_seterr(err, VROOM_E_CLOSED, "the connection to %s closed",
					     v->server);
		}
		return -1;
	}
	return 0;
}

void vroom_stop(struct vroom *v)
{
	v->stop = 1;
}

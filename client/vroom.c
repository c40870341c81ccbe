/*
 * libvroom's event-driven core: one bufferevent per node connection, the
 * frame codec from stream/wire, and a table of requests awaiting replies.
 *
 * Invariant: every queued request has exactly one pending entry, and each
 * entry's callback runs exactly once: with the node's reply, or with
 * VROOM_E_CLOSED when the connection ends first.
 */
#include "client/vroom.h"
#include "client/vroom_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "stream/addr.h"
#include "stream/token.h"
#include "stream/wire.h"

/* The node's own frames may exceed its frame limit by a header's worth; the
 * library trusts the node it chose up to this size. */
#define CLIENT_FRAME_MAX ((64u << 20) + 65536)

const char *vroom_code_name(int code)
{
	switch (code) {
	case VROOM_E_CONNECT: return "connect";
	case VROOM_E_CLOSED: return "closed";
	case VROOM_E_PROTOCOL: return "protocol";
	case VROOM_E_ARG: return "argument";
	case VROOM_E_WAIT: return "wait_timeout";
	case VROOM_E_ABORTED: return "aborted";
	}
	return wire_err_name(code);
}

void vroom_seterr(struct vroom_error *e, int code, const char *fmt, ...)
{
	if (!e)
		return;
	va_list ap;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

void vroom_pending_drop(struct vroom *v, struct pending *p)
{
	TAILQ_REMOVE(&v->pending, p, link);
	v->npending--;
	if (p->frame && p->type == WIRE_PUSH) {
		v->unacked--;
		v->unacked_bytes -= p->payload;
	}
	free(p->frame);
	free(p->room);
	free(p);
}

static void pending_finish(struct vroom *v, struct pending *p, const struct vroom_result *r)
{
	vroom_cb cb = p->cb;
	void *arg = p->arg;
	vroom_pending_drop(v, p);
	if (cb)
		cb(v, r, arg);
}

void vroom_pending_fail(struct vroom *v, struct pending *p, const struct vroom_error *e)
{
	struct vroom_result r = {.err = e};
	if (p->type == WIRE_SUBSCRIBE)
		vroom_fo_sub_reply(v, p, &r, NULL);
	else if (p->type == WIRE_STREAM_REJOIN)
		vroom_streams_rejoin_reply(v, p, e);
	pending_finish(v, p, &r);
}

static void fail_all(struct vroom *v, const struct vroom_error *e)
{
	struct pending *p;
	struct vroom_result r = {.err = e};
	while ((p = TAILQ_FIRST(&v->pending)) != NULL)
		pending_finish(v, p, &r);
}

/* Ends the connection once, unless the client moves to another node
 * (client/failover.c); reports why to the pending requests, to
 * vroom_connect()'s callback if it has not run, and to the disconnected
 * handler if a connection had been welcomed. */
void vroom_lost(struct vroom *v, const struct vroom_error *why)
{
	if (v->state == VROOM_ST_CLOSED)
		return;
	if (vroom_fo_lost(v, why))
		return;
	int was_ready = v->state == VROOM_ST_READY || v->welcomed;
	v->state = VROOM_ST_CLOSED;
	if (v->bev)
		bufferevent_disable(v->bev, EV_READ | EV_WRITE);
	struct vroom_error e = v->node_err.code ? v->node_err : *why;
	fail_all(v, &e);
	vroom_streams_lost(v, &e);
	if (v->hello_cb) {
		vroom_cb cb = v->hello_cb;
		v->hello_cb = NULL;
		cb(v, &(struct vroom_result){.err = &e}, v->hello_arg);
	}
	if (was_ready && v->h.disconnected)
		v->h.disconnected(v, &e, v->harg);
	v->stop = 1;
}

static struct pending *pending_take(struct vroom *v, uint64_t rid)
{
	struct pending *p;
	TAILQ_FOREACH(p, &v->pending, link)
		if (p->rid == rid)
			return p;
	return NULL;
}

static void copy_str(char *dst, size_t cap, const struct wire_str *s)
{
	size_t n = s->len < cap - 1 ? s->len : cap - 1;
	memcpy(dst, s->ptr, n);
	dst[n] = '\0';
}

static int obj_key_is(const msgpack_object *k, const char *name)
{
	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(name) &&
	       memcmp(k->via.str.ptr, name, k->via.str.size) == 0;
}

static void on_welcome(struct vroom *v, const struct wire_msg *m)
{
	struct pending *p = pending_take(v, m->rid);
	copy_str(v->node_id, sizeof(v->node_id), &m->f[0].s);
	copy_str(v->session_id, sizeof(v->session_id), &m->f[1].s);
	const msgpack_object_map *lim = &m->f[2].o->via.map;
	v->nlimits = 0;
	for (uint32_t i = 0; i < lim->size && v->nlimits < VROOM_MAX_LIMITS; i++) {
		const msgpack_object *k = &lim->ptr[i].key, *val = &lim->ptr[i].val;
		if (k->type != MSGPACK_OBJECT_STR || val->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			continue;
		struct wire_str ks = {k->via.str.ptr, k->via.str.size};
		copy_str(v->limits[v->nlimits].name, sizeof(v->limits[0].name), &ks);
		v->limits[v->nlimits++].value = val->via.u64;
	}
	v->state = VROOM_ST_READY;
	vroom_fo_learn(v, m);
	vroom_fo_welcomed(v);
	if (p) {
		struct vroom_result r = {0};
		pending_finish(v, p, &r);
	}
}

static void on_error(struct vroom *v, const struct wire_msg *m)
{
	struct vroom_error e;
	char msg[200];
	copy_str(msg, sizeof(msg), &m->f[1].s);
	vroom_seterr(&e, (int)m->f[0].u, "%s", msg);
	struct pending *p = m->rid ? pending_take(v, m->rid) : NULL;
	/* A fatal code, or any error not tied to a request (a refusal at
	 * accept: limit, shutdown), is why the node closes next. */
	if (wire_err_fatal((int)m->f[0].u) || m->rid == 0)
		v->node_err = e;
	if (p)
		vroom_pending_fail(v, p, &e);
}

static void decode_info(const msgpack_object *o, struct vroom_room_info *info,
			const char **grants, size_t maxgrants)
{
	memset(info, 0, sizeof(*info));
	if (o->type != MSGPACK_OBJECT_MAP)
		return;
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object *k = &o->via.map.ptr[i].key, *val = &o->via.map.ptr[i].val;
		struct wire_str s = {0};
		if (val->type == MSGPACK_OBJECT_STR)
			s = (struct wire_str){val->via.str.ptr, val->via.str.size};
		uint64_t u = val->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? val->via.u64 : 0;
		if (obj_key_is(k, "id"))
			copy_str(info->id, sizeof(info->id), &s);
		else if (obj_key_is(k, "owner"))
			copy_str(info->owner, sizeof(info->owner), &s);
		else if (obj_key_is(k, "subscribers"))
			info->subscribers = u;
		else if (obj_key_is(k, "created_ms"))
			info->created_ms = u;
		else if (obj_key_is(k, "last_active_ms"))
			info->last_active_ms = u;
		else if (obj_key_is(k, "seq"))
			info->seq = u;
		else if (obj_key_is(k, "pushes"))
			info->pushes = u;
		else if (obj_key_is(k, "bytes"))
			info->bytes = u;
		else if (obj_key_is(k, "grants") && val->type == MSGPACK_OBJECT_ARRAY) {
			info->has_grants = 1;
			for (uint32_t j = 0; j < val->via.array.size && info->ngrants < maxgrants; j++) {
				const msgpack_object *g = &val->via.array.ptr[j];
				if (g->type != MSGPACK_OBJECT_STR)
					continue;
				grants[info->ngrants++] = strndup(g->via.str.ptr, g->via.str.size);
			}
			info->grants = grants;
		}
	}
}

static void on_ok(struct vroom *v, const struct wire_msg *m)
{
	struct pending *p = pending_take(v, m->rid);
	if (!p)
		return; /* a reply to a request we no longer track: ignore */
	struct vroom_result r = {0};
	char room[VROOM_ROOM_ID_MAX + 1];
	const msgpack_object *val = m->nfields ? m->f[0].o : NULL;
	struct vroom_room_info info;
	const char *grants[256];
	struct vroom_placement place;

	switch (p->type) {
	case WIRE_CREATE:
		if (!val || val->type != MSGPACK_OBJECT_STR)
			break;
		copy_str(room, sizeof(room), &(struct wire_str){val->via.str.ptr, val->via.str.size});
		r.room = room;
		break;
	case WIRE_PUSH:
		if (val && val->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
			r.seq = val->via.u64;
		break;
	case WIRE_SUBSCRIBE:
		vroom_fo_sub_reply(v, p, &r, val);
		break;
	case WIRE_STREAM_REJOIN:
		vroom_streams_rejoin_reply(v, p, NULL);
		break;
	case WIRE_STREAM_CLAIM:
		vroom_streams_on_claimed(v, p, val); /* takes p's callback */
		break;
	case WIRE_INFO:
		if (!val)
			break;
		decode_info(val, &info, grants, 256);
		r.info = &info;
		break;
	case WIRE_PLACE:
		if (!val || val->type != MSGPACK_OBJECT_MAP)
			break;
		memset(&place, 0, sizeof(place));
		for (uint32_t i = 0; i < val->via.map.size; i++) {
			const msgpack_object *k = &val->via.map.ptr[i].key, *x = &val->via.map.ptr[i].val;
			if (x->type == MSGPACK_OBJECT_STR && obj_key_is(k, "node"))
				copy_str(place.node, sizeof(place.node),
					 &(struct wire_str){x->via.str.ptr, x->via.str.size});
			else if (x->type == MSGPACK_OBJECT_STR && obj_key_is(k, "relay"))
				copy_str(place.relay, sizeof(place.relay),
					 &(struct wire_str){x->via.str.ptr, x->via.str.size});
			else if (x->type == MSGPACK_OBJECT_ARRAY && obj_key_is(k, "backups"))
				for (uint32_t j = 0; j < x->via.array.size && place.nbackups < 15; j++)
					if (x->via.array.ptr[j].type == MSGPACK_OBJECT_STR)
						copy_str(place.backups[place.nbackups++], 65,
							 &(struct wire_str){x->via.array.ptr[j].via.str.ptr,
									    x->via.array.ptr[j].via.str.size});
		}
		r.place = &place;
		break;
	}
	pending_finish(v, p, &r);
	if (r.info)
		for (size_t i = 0; i < info.ngrants; i++)
			free((char *)grants[i]);
}

static void on_deliver(struct vroom *v, const struct wire_msg *m)
{
	char room[VROOM_ROOM_ID_MAX + 1], sender[VROOM_IDENTITY_MAX + 1];
	copy_str(room, sizeof(room), &m->f[0].s);
	copy_str(sender, sizeof(sender), &m->f[2].s);
	struct vroom_push p = {
		.room = room,
		.seq = m->f[1].u,
		.sender = sender,
		.dtype = (uint8_t)m->f[3].u,
		.data = m->f[4].s.ptr,
		.len = m->f[4].s.len,
	};
	if (!vroom_fo_deliver(v, &p))
		return; /* a seq delivered already, or held until a resumed room is in order */
	if (v->h.push)
		v->h.push(v, &p, v->harg);
}

static void on_room_closed(struct vroom *v, const struct wire_msg *m)
{
	char room[VROOM_ROOM_ID_MAX + 1], reason[WIRE_REASON_MAX + 1];
	copy_str(room, sizeof(room), &m->f[0].s);
	copy_str(reason, sizeof(reason), &m->f[1].s);
	vroom_fo_room_closed(v, room);
	if (v->h.room_closed)
		v->h.room_closed(v, room, reason, v->harg);
}

static void dispatch(struct vroom *v, const struct wire_msg *m)
{
	switch (m->type) {
	case WIRE_WELCOME: on_welcome(v, m); break;
	case WIRE_OK: on_ok(v, m); break;
	case WIRE_ERROR: on_error(v, m); break;
	case WIRE_DELIVER: on_deliver(v, m); break;
	case WIRE_ROOM_CLOSED: on_room_closed(v, m); break;
	case WIRE_STREAM_OPENED: vroom_streams_on_opened(v, m); break;
	case WIRE_STREAM_DATA: vroom_streams_on_data(v, m); break;
	case WIRE_STREAM_END: vroom_streams_on_end(v, m); break;
	case WIRE_STREAM_CREDIT: vroom_streams_on_credit(v, m); break;
	case WIRE_PONG: {
		struct pending *p = pending_take(v, m->rid);
		if (p)
			pending_finish(v, p, &(struct vroom_result){0});
		break;
	}
	default:
		break; /* newer node, newer frame: ignore what we do not know */
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct vroom *v = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct wire_msg m;

	if (bev != v->bev)
		return; /* a connection already given up */
	v->busy++;
	/* vroom_free() from a handler stops the dispatch here: nothing more
	 * reaches handlers whose state the caller may have freed with it; nor
	 * does anything after the connection was lost (bev is then an old one). */
	while ((v->state == VROOM_ST_READY || v->state == VROOM_ST_CONNECTING) && bev == v->bev &&
	       !v->free_asked) {
		size_t avail = evbuffer_get_length(in), used;
		if (avail < WIRE_HDR)
			break;
		uint8_t hdr[WIRE_HDR];
		evbuffer_copyout(in, hdr, WIRE_HDR);
		size_t flen = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
		size_t need = flen <= CLIENT_FRAME_MAX ? WIRE_HDR + flen : WIRE_HDR;
		if (avail < need)
			break;
		const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)need);
		if (wire_parse(v->dec, p, need, &m, &used) != WIRE_OK_) {
			const char *why;
			wire_dec_error(v->dec, &why);
			struct vroom_error e;
			vroom_seterr(&e, VROOM_E_PROTOCOL, "bad frame from the node: %s", why);
			vroom_lost(v, &e);
			break;
		}
		dispatch(v, &m);
		evbuffer_drain(in, used);
	}
	v->busy--;
	if (v->free_asked && !v->busy)
		vroom_free(v);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct vroom *v = arg;
	struct vroom_error e;
	if ((what & BEV_EVENT_CONNECTED) || bev != v->bev)
		return;
	v->busy++;
	if (v->state == VROOM_ST_CONNECTING && !(what & BEV_EVENT_EOF))
		vroom_seterr(&e, VROOM_E_CONNECT, "cannot connect to %s: %s", v->server,
			     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	else if (what & BEV_EVENT_EOF)
		vroom_seterr(&e, VROOM_E_CLOSED, "the node at %s closed the connection",
			     v->server);
	else
		vroom_seterr(&e, VROOM_E_CLOSED, "connection to %s lost: %s", v->server,
			     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	vroom_lost(v, &e);
	v->busy--;
	if (v->free_asked && !v->busy)
		vroom_free(v);
}

struct vroom *vroom_new(struct event_base *base, const struct vroom_handlers *h, void *arg)
{
	if (sodium_init() < 0)
		return NULL;
	struct vroom *v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	v->base = base;
	if (h)
		v->h = *h;
	v->harg = arg;
	v->dec = wire_dec_new(CLIENT_FRAME_MAX);
	wire_buf_init(&v->out);
	TAILQ_INIT(&v->pending);
	TAILQ_INIT(&v->writers);
	TAILQ_INIT(&v->readers);
	v->wait_ms = 30000;
	v->rcvbuf = VROOM_DEFAULT_RCVBUF;
	v->subs = smap_new();
	if (!v->dec || !v->subs) {
		wire_dec_free(v->dec);
		smap_free(v->subs);
		free(v);
		return NULL;
	}
	return v;
}

void vroom_free(struct vroom *v)
{
	if (!v)
		return;
	if (v->busy) {
		v->free_asked = 1; /* inside our own callback: finish there */
		return;
	}
	v->busy++;
	struct vroom_error e;
	vroom_seterr(&e, VROOM_E_CLOSED, "the client closed the connection");
	if (v->state != VROOM_ST_CLOSED) {
		v->state = VROOM_ST_CLOSED;
		fail_all(v, &e);
		vroom_streams_lost(v, &e);
	}
	vroom_streams_free(v);
	vroom_fo_free(v);
	free(v->token);
	if (v->bev)
		bufferevent_free(v->bev);
	wire_dec_free(v->dec);
	wire_buf_free(&v->out);
	free(v);
}

/* Requests that may go again to another node after a move: a push counts
 * once at the relay; the others change nothing or the same thing twice. */
static int resendable(unsigned type)
{
	return type == WIRE_PUSH || type == WIRE_SUBSCRIBE || type == WIRE_UNSUBSCRIBE ||
	       type == WIRE_INFO || type == WIRE_PLACE || type == WIRE_PING;
}

int vroom_write_pending(struct vroom *v, struct pending *p)
{
	if ((v->state != VROOM_ST_READY && v->state != VROOM_ST_CONNECTING) || !v->bev)
		return 0; /* kept: sent once a node has welcomed the client */
	const uint8_t *f = p->frame ? p->frame : v->out.p;
	size_t len = p->frame ? p->len : v->out.len;
	if (bufferevent_write(v->bev, f, len) < 0)
		return -1;
	p->gen = v->gen;
	return 0;
}

/* Queues the frame in v->out and a pending entry for its reply. */
struct pending *vroom_queue(struct vroom *v, unsigned type, uint64_t rid, vroom_cb cb, void *arg,
			    struct vroom_error *err)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (!p) {
		vroom_seterr(err, VROOM_E_ARG, "out of memory");
		return NULL;
	}
	p->rid = rid;
	p->type = (uint16_t)type;
	p->cb = cb;
	p->arg = arg;
	/* With reconnection on, a frame is kept if it may go again (see
	 * struct pending): no node has welcomed the client on this
	 * connection yet, or the request is one that may be repeated. */
	if (v->rc_on && type != WIRE_HELLO && (resendable(type) || v->state != VROOM_ST_READY)) {
		if (!(p->frame = malloc(v->out.len))) {
			free(p);
			vroom_seterr(err, VROOM_E_ARG, "out of memory");
			return NULL;
		}
		memcpy(p->frame, v->out.p, v->out.len);
		p->len = v->out.len;
	}
	TAILQ_INSERT_TAIL(&v->pending, p, link);
	v->npending++;
	if (vroom_write_pending(v, p) < 0) {
		p->type = 0; /* not a push: no unacked count to undo */
		vroom_pending_drop(v, p);
		vroom_seterr(err, VROOM_E_CLOSED, "cannot queue the request");
		return NULL;
	}
	return p;
}

int vroom_send_request(struct vroom *v, unsigned type, uint64_t rid, vroom_cb cb, void *arg,
		       struct vroom_error *err)
{
	return vroom_queue(v, type, rid, cb, arg, err) ? 0 : -1;
}

int vroom_connect(struct vroom *v, const char *server, const char *identity, vroom_cb done,
		  void *arg, struct vroom_error *err)
{
	if (v->bev || v->state != VROOM_ST_IDLE) {
		vroom_seterr(err, VROOM_E_ARG, "already connected");
		return -1;
	}
	if (!server)
		server = VROOM_DEFAULT_SERVER;
	if (vroom_fo_parse_servers(v, server, err) < 0)
		return -1;
	size_t idlen = identity ? strlen(identity) : 0;
	if ((idlen == 0 && !v->token) || idlen > VROOM_IDENTITY_MAX) {
		vroom_seterr(err, VROOM_E_ARG, "identity must be 1-%d bytes", VROOM_IDENTITY_MAX);
		return -1;
	}
	memcpy(v->identity, identity ? identity : "", idlen + 1);
	v->hello_cb = done;
	v->hello_arg = arg;
	v->cur = 0;
	if (vroom_attempt(v, err) < 0) {
		/* with reconnection on and more nodes listed: the next one, on
		 * the reconnection path (done runs later) */
		v->state = VROOM_ST_CONNECTING;
		if (!v->rc_on || v->nservers < 2 || !vroom_fo_lost(v, err)) {
			v->state = VROOM_ST_CLOSED;
			v->hello_cb = NULL;
			return -1;
		}
	}
	return 0;
}

/* One connection attempt to v->servers[v->cur]: socket, HELLO. 0, or -1
 * with *err (nothing left behind). */
int vroom_attempt(struct vroom *v, struct vroom_error *err)
{
	char host[256];
	int port;
	const char *server = v->servers[v->cur];
	if (addr_split(server, "127.0.0.1", host, sizeof(host), &port) < 0 || port == 0) {
		vroom_seterr(err, VROOM_E_ARG, "server '%s' is not HOST:PORT", server);
		return -1;
	}
	const char *identity = v->identity;
	size_t idlen = strlen(identity);
	snprintf(v->server, sizeof(v->server), "%s", server);
	v->node_err.code = 0;
	/* Resolve here (blocking, like libevent without a DNS base) to set the
	 * receive buffer before connecting: window scaling is fixed then. */
	struct evutil_addrinfo hints = {0}, *ai = NULL;
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%d", port);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	int gai = evutil_getaddrinfo(host, portstr, &hints, &ai);
	if (gai != 0 || !ai) {
		vroom_seterr(err, VROOM_E_CONNECT, "cannot resolve %s: %s", host,
			     evutil_gai_strerror(gai));
		return -1;
	}
	evutil_socket_t fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		evutil_freeaddrinfo(ai);
		vroom_seterr(err, VROOM_E_CONNECT, "cannot make a socket: %s", strerror(errno));
		return -1;
	}
	evutil_make_socket_nonblocking(fd);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (v->rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v->rcvbuf, sizeof(v->rcvbuf));
	v->bev = bufferevent_socket_new(v->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!v->bev) {
		evutil_closesocket(fd);
		evutil_freeaddrinfo(ai);
		vroom_seterr(err, VROOM_E_CONNECT, "out of memory");
		return -1;
	}
	bufferevent_setcb(v->bev, on_read, NULL, on_event, v);
	bufferevent_enable(v->bev, EV_READ | EV_WRITE);
	int prev = v->state;
	v->state = VROOM_ST_CONNECTING;
	v->gen++;

	/* HELLO [1, rid, 1, identity, token?, publisher?]: with reconnection
	 * on, the publisher id (and an empty token if there is none). */
	uint64_t rid = ++v->next_rid;
	wire_buf_reset(&v->out);
	msgpack_packer *pk = wire_begin(&v->out, WIRE_HELLO, rid, v->rc_on ? 4 : v->token ? 3 : 2);
	msgpack_pack_uint64(pk, WIRE_VERSION);
	wire_pack_str(pk, identity, idlen);
	if (v->token || v->rc_on)
		wire_pack_bin(pk, v->token ? v->token : (const uint8_t *)"", v->token_len);
	if (v->rc_on)
		msgpack_pack_uint64(pk, v->rc.publisher_id);
	wire_end(&v->out, 0);
	struct pending *hp = vroom_queue(v, WIRE_HELLO, rid, vroom_fo_hello_done, NULL, err);
	int rc = hp ? bufferevent_socket_connect(v->bev, ai->ai_addr, (int)ai->ai_addrlen) : -1;
	evutil_freeaddrinfo(ai);
	if (rc < 0) {
		if (hp) {
			vroom_seterr(err, VROOM_E_CONNECT, "cannot connect to %s", server);
			vroom_pending_drop(v, hp);
		}
		bufferevent_free(v->bev);
		v->bev = NULL;
		v->state = prev == VROOM_ST_WAITING ? prev : VROOM_ST_CLOSED;
		return -1;
	}
	/* HELLO leads; requests queued while there was no connection follow */
	struct pending *p;
	TAILQ_FOREACH(p, &v->pending, link)
	if (p->frame && p->gen != v->gen)
		vroom_write_pending(v, p);
	vroom_fo_attempt_started(v);
	return 0;
}

int vroom_set_token(struct vroom *v, const char *token, struct vroom_error *err)
{
	uint8_t buf[TOKEN_MAX];
	size_t len;
	if (v->bev) {
		vroom_seterr(err, VROOM_E_ARG, "set the token before connecting");
		return -1;
	}
	if (token && token_from_text(token, strlen(token), buf, sizeof(buf), &len) < 0) {
		vroom_seterr(err, VROOM_E_ARG,
			     "not a token: expected the base64url text that `vroom token` prints");
		return -1;
	}
	uint8_t *copy = NULL;
	if (token && !(copy = malloc(len))) {
		vroom_seterr(err, VROOM_E_ARG, "out of memory");
		return -1;
	}
	if (copy)
		memcpy(copy, buf, len);
	free(v->token);
	v->token = copy;
	v->token_len = token ? len : 0;
	return 0;
}

static int ready(struct vroom *v, struct vroom_error *err)
{
	if (v->state == VROOM_ST_CLOSED || v->state == VROOM_ST_IDLE ||
	    (!v->bev && v->state != VROOM_ST_WAITING)) {
		vroom_seterr(err, VROOM_E_CLOSED, "not connected");
		return 0;
	}
	return 1;
}

static int room_ok(const char *room, struct vroom_error *err)
{
	size_t n = room ? strlen(room) : 0;
	if (n == 0 || n > VROOM_ROOM_ID_MAX) {
		vroom_seterr(err, VROOM_E_ARG, "a room id is 1-%d characters", VROOM_ROOM_ID_MAX);
		return 0;
	}
	return 1;
}

/* Requests whose fields are strings only: [type, rid, s...]. */
static int request_strs(struct vroom *v, unsigned type, vroom_cb cb, void *arg,
			struct vroom_error *err, int n, const char *a, const char *b)
{
	if (!ready(v, err))
		return -1;
	if (n >= 1 && !room_ok(a, err))
		return -1;
	if (n >= 2 && (!b || !*b || strlen(b) > VROOM_IDENTITY_MAX)) {
		vroom_seterr(err, VROOM_E_ARG, "an identity is 1-%d bytes", VROOM_IDENTITY_MAX);
		return -1;
	}
	uint64_t rid = ++v->next_rid;
	wire_buf_reset(&v->out);
	msgpack_packer *pk = wire_begin(&v->out, type, rid, (unsigned)n);
	if (n >= 1)
		wire_pack_cstr(pk, a);
	if (n >= 2)
		wire_pack_cstr(pk, b);
	wire_end(&v->out, 0);
	return vroom_send_request(v, type, rid, cb, arg, err);
}

int vroom_create_async(struct vroom *v, vroom_cb cb, void *arg, struct vroom_error *err)
{
	return request_strs(v, WIRE_CREATE, cb, arg, err, 0, NULL, NULL);
}

int vroom_remove_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
		       struct vroom_error *err)
{
	return request_strs(v, WIRE_REMOVE, cb, arg, err, 1, room, NULL);
}

int vroom_grant_async(struct vroom *v, const char *room, const char *identity, vroom_cb cb,
		      void *arg, struct vroom_error *err)
{
	return request_strs(v, WIRE_GRANT, cb, arg, err, 2, room, identity);
}

int vroom_revoke_async(struct vroom *v, const char *room, const char *identity, vroom_cb cb,
		       void *arg, struct vroom_error *err)
{
	return request_strs(v, WIRE_REVOKE, cb, arg, err, 2, room, identity);
}

int vroom_subscribe_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
			  struct vroom_error *err)
{
	return vroom_fo_subscribe(v, room, NULL, 0, 0, cb, arg, err);
}

int vroom_unsubscribe_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
			    struct vroom_error *err)
{
	if (!ready(v, err) || !room_ok(room, err))
		return -1;
	vroom_fo_unsubscribe_noted(v, room);
	return request_strs(v, WIRE_UNSUBSCRIBE, cb, arg, err, 1, room, NULL);
}

int vroom_info_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
		     struct vroom_error *err)
{
	return request_strs(v, WIRE_INFO, cb, arg, err, 1, room, NULL);
}

int vroom_place_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
		      struct vroom_error *err)
{
	return request_strs(v, WIRE_PLACE, cb, arg, err, 1, room, NULL);
}

int vroom_push_async(struct vroom *v, const char *room, uint8_t dtype, const void *data,
		     size_t len, vroom_cb cb, void *arg, struct vroom_error *err)
{
	if (!ready(v, err) || !room_ok(room, err))
		return -1;
	/* Kept until acknowledged, to send again after a move: bounded. */
	if (v->rc_on &&
	    (v->unacked >= v->rc.max_unacked || v->unacked_bytes + len > v->rc.max_unacked_bytes)) {
		vroom_seterr(err, VROOM_E_LIMIT,
			     "%zu pushes (%zu bytes) not yet acknowledged: the reconnection bounds "
			     "(max_unacked, max_unacked_bytes) are reached",
			     v->unacked, v->unacked_bytes);
		return -1;
	}
	uint64_t rid = ++v->next_rid;
	wire_buf_reset(&v->out);
	msgpack_packer *pk = wire_begin(&v->out, WIRE_PUSH, rid, 3);
	wire_pack_cstr(pk, room);
	msgpack_pack_unsigned_char(pk, dtype);
	wire_pack_bin(pk, data, len);
	wire_end(&v->out, 0);
	struct pending *p = vroom_queue(v, WIRE_PUSH, rid, cb, arg, err);
	if (!p)
		return -1;
	if (p->frame) {
		p->payload = len;
		v->unacked++;
		v->unacked_bytes += len;
	}
	return 0;
}

size_t vroom_inflight(const struct vroom *v)
{
	return v->npending;
}

size_t vroom_pending_output(const struct vroom *v)
{
	return v->bev ? evbuffer_get_length(bufferevent_get_output(v->bev)) : 0;
}

const char *vroom_node_id(const struct vroom *v)
{
	return v->node_id;
}

const char *vroom_session_id(const struct vroom *v)
{
	return v->session_id;
}

uint64_t vroom_limit(const struct vroom *v, const char *name)
{
	for (size_t i = 0; i < v->nlimits; i++)
		if (strcmp(v->limits[i].name, name) == 0)
			return v->limits[i].value;
	return 0;
}

void vroom_set_rcvbuf(struct vroom *v, int bytes)
{
	v->rcvbuf = bytes;
}

int vroom_connected(const struct vroom *v)
{
	return v->state == VROOM_ST_READY;
}

struct event_base *vroom_base(const struct vroom *v)
{
	return v->base;
}

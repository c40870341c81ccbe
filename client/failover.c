/*
 * libvroom's moves between nodes: the node list, reconnection with bounded
 * backoff, subscriptions resumed after the last seq delivered, pushes sent
 * again until acknowledged (vroom.c keeps their frames).
 *
 * Invariants:
 * - per room, the application sees strictly increasing seqs, each once: a
 *   DELIVER at or below the room's last seq is dropped; while a resumed
 *   subscription's answer is out, DELIVERs are held (bounded by max_held),
 *   then given in seq order;
 * - a loss the node reports (the answer's first seq past last + 1) reaches
 *   the application as a GAP event, never silently;
 * - the client is never without a connection attempt or a timer while it
 *   reconnects, and gives up after give_up_ms without a node.
 */
#include "client/vroom.h"
#include "client/vroom_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "stream/addr.h"
#include "stream/wire.h"

#define HELD_BYTES_MAX (64u << 20) /* payload bytes held for one resumed room */
#define TICK_MS	       100	   /* checks while a resumed room waits */

static void on_timer(evutil_socket_t fd, short what, void *arg);

uint64_t vroom_fo_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void emit(struct vroom *v, const struct vroom_event *e)
{
	if (v->rc.event)
		v->rc.event(v, e, v->rc.event_arg);
}

static void arm(struct vroom *v, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	if (v->timer)
		evtimer_add(v->timer, &tv);
}

void vroom_fo_tick_soon(struct vroom *v)
{
	if (v->timer && v->state == VROOM_ST_READY && !evtimer_pending(v->timer, NULL))
		arm(v, TICK_MS);
}

/* ---------------------------------------------------------------- settings */

int vroom_set_reconnect(struct vroom *v, const struct vroom_reconnect *o, struct vroom_error *err)
{
	if (v->state != VROOM_ST_IDLE) {
		vroom_seterr(err, VROOM_E_ARG, "set reconnection before connecting");
		return -1;
	}
	struct vroom_reconnect d = o ? *o : (struct vroom_reconnect){0};
	if (d.backoff_min_ms < 0 || d.backoff_max_ms < 0 || d.give_up_ms < 0 ||
	    d.attempt_timeout_ms < 0 || d.resume_timeout_ms < 0) {
		vroom_seterr(err, VROOM_E_ARG, "reconnection times must not be negative");
		return -1;
	}
	if (!d.backoff_min_ms)
		d.backoff_min_ms = 100;
	if (!d.backoff_max_ms)
		d.backoff_max_ms = 2000;
	if (d.backoff_max_ms < d.backoff_min_ms)
		d.backoff_max_ms = d.backoff_min_ms;
	if (!d.give_up_ms)
		d.give_up_ms = 30000;
	if (!d.attempt_timeout_ms)
		d.attempt_timeout_ms = 5000;
	if (!d.resume_timeout_ms)
		d.resume_timeout_ms = 10000;
	if (!d.max_unacked)
		d.max_unacked = 4096;
	if (!d.max_unacked_bytes)
		d.max_unacked_bytes = 64u << 20;
	if (!d.max_held)
		d.max_held = 65536;
	while (!d.publisher_id)
		randombytes_buf(&d.publisher_id, sizeof(d.publisher_id));
	if (d.enabled && !v->timer) {
		if (!(v->timer = evtimer_new(v->base, on_timer, v))) {
			vroom_seterr(err, VROOM_E_ARG, "out of memory");
			return -1;
		}
	}
	v->rc = d;
	v->rc_on = d.enabled != 0;
	return 0;
}

const char *vroom_server(const struct vroom *v)
{
	return v->server;
}

unsigned vroom_connections(const struct vroom *v)
{
	return v->conns;
}

/* ---------------------------------------------------------------- the node list */

static int add_server(struct vroom *v, const char *s, size_t len, struct vroom_error *err)
{
	char one[264], host[256];
	int port;
	while (len && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof(one)) {
		vroom_seterr(err, VROOM_E_ARG, "an empty or too long address in the server list");
		return -1;
	}
	memcpy(one, s, len);
	one[len] = '\0';
	if (addr_split(one, "127.0.0.1", host, sizeof(host), &port) < 0 || port == 0) {
		vroom_seterr(err, VROOM_E_ARG, "server '%s' is not HOST:PORT", one);
		return -1;
	}
	for (size_t i = 0; i < v->nservers; i++)
		if (strcmp(v->servers[i], one) == 0)
			return 0;
	if (v->nservers == VROOM_MAX_SERVERS) {
		vroom_seterr(err, VROOM_E_ARG, "at most %d servers", VROOM_MAX_SERVERS);
		return -1;
	}
	memcpy(v->servers[v->nservers++], one, len + 1);
	return 0;
}

int vroom_fo_parse_servers(struct vroom *v, const char *list, struct vroom_error *err)
{
	v->nservers = 0;
	const char *p = list;
	for (;;) {
		const char *c = strchr(p, ',');
		size_t len = c ? (size_t)(c - p) : strlen(p);
		if (add_server(v, p, len, err) < 0) {
			v->nservers = 0;
			return -1;
		}
		if (!c)
			break;
		p = c + 1;
	}
	return 0;
}

/* WELCOME's nodes (a cluster's members' client addresses): added to the
 * list after those given, up to VROOM_MAX_SERVERS. A wildcard address
 * (a node listening on every interface) names no host to connect to. */
void vroom_fo_learn(struct vroom *v, const struct wire_msg *m)
{
	if (m->nfields < 4 || m->f[3].o->type != MSGPACK_OBJECT_ARRAY)
		return;
	const msgpack_object_array *a = &m->f[3].o->via.array;
	for (uint32_t i = 0; i < a->size && i < WIRE_NODES_MAX; i++) {
		const msgpack_object *o = &a->ptr[i];
		if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 ||
		    o->via.str.size >= sizeof(v->servers[0]))
			continue;
		if ((o->via.str.size > 8 && memcmp(o->via.str.ptr, "0.0.0.0:", 8) == 0) ||
		    (o->via.str.size > 5 && memcmp(o->via.str.ptr, "[::]:", 5) == 0))
			continue;
		add_server(v, o->via.str.ptr, o->via.str.size, NULL);
	}
}

/* ---------------------------------------------------------------- subscriptions */

static void held_free(struct vroom_held *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(h[i].sender);
		free(h[i].data);
	}
	free(h);
}

static void sub_free(struct vroom_sub *s)
{
	for (size_t i = 0; i < s->ntopics; i++)
		free(s->topics[i]);
	free(s->topics);
	held_free(s->held, s->nheld);
	free(s);
}

static void sub_drop(struct vroom *v, const char *room)
{
	struct vroom_sub *s = smap_del(v->subs, room, strlen(room));
	if (!s)
		return;
	/* readers waiting to take up a stream of the room cannot any more */
	char copy[VROOM_ROOM_ID_MAX + 1];
	snprintf(copy, sizeof(copy), "%s", s->room);
	sub_free(s);
	vroom_streams_room_gone(v, copy, "the room's subscription ended while the stream moved");
}

static int cmp_held(const void *a, const void *b)
{
	const struct vroom_held *x = a, *y = b;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Gives the held pushes of s to the application in seq order, each once.
 * With report_holes (the hold overflowed, the node never said where the
 * room starts again), a missing seq between two of them is a GAP. The
 * application's handler may unsubscribe or free the client meanwhile. */
static void flush(struct vroom *v, struct vroom_sub *s, int report_holes)
{
	char room[VROOM_ROOM_ID_MAX + 1];
	struct vroom_held *h = s->held;
	size_t n = s->nheld;
	uint64_t last = s->last;
	int based = s->based;
	memcpy(room, s->room, sizeof(room));
	s->held = NULL;
	s->nheld = s->capheld = s->held_bytes = 0;
	s->resuming = 0;
	if (n) /* qsort's array may not be NULL, even empty */
		qsort(h, n, sizeof(*h), cmp_held);
	for (size_t i = 0; i < n && !v->free_asked; i++) {
		if (based && h[i].seq <= last)
			continue;
		if (report_holes && based && h[i].seq > last + 1) {
			struct vroom_event e = {.type = VROOM_EV_GAP,
						.room = room,
						.from = last + 1,
						.to = h[i].seq - 1};
			emit(v, &e);
		}
		last = h[i].seq;
		based = 1;
		if ((s = smap_get(v->subs, room, strlen(room))) != NULL) {
			s->last = last;
			s->based = 1;
		}
		struct vroom_push p = {.room = room,
				       .seq = h[i].seq,
				       .sender = h[i].sender,
				       .dtype = h[i].dtype,
				       .data = h[i].data,
				       .len = h[i].len};
		if (v->h.push)
			v->h.push(v, &p, v->harg);
	}
	held_free(h, n);
}

static int hold(struct vroom_sub *s, const struct vroom_push *p)
{
	if (s->nheld == s->capheld) {
		size_t cap = s->capheld ? 2 * s->capheld : 64;
		struct vroom_held *h = realloc(s->held, cap * sizeof(*h));
		if (!h)
			return -1;
		s->held = h;
		s->capheld = cap;
	}
	struct vroom_held *h = &s->held[s->nheld];
	h->seq = p->seq;
	h->dtype = p->dtype;
	h->len = p->len;
	h->sender = strdup(p->sender);
	h->data = malloc(p->len ? p->len : 1);
	if (!h->sender || !h->data) {
		free(h->sender);
		free(h->data);
		return -1;
	}
	if (p->len) /* an empty push's data may be NULL */
		memcpy(h->data, p->data, p->len);
	s->nheld++;
	s->held_bytes += p->len;
	return 0;
}

int vroom_fo_deliver(struct vroom *v, const struct vroom_push *p)
{
	struct vroom_sub *s = smap_get(v->subs, p->room, strlen(p->room));
	if (!s)
		return 1;
	if (s->based && p->seq <= s->last)
		return 0; /* delivered already (a replay overlapping the live pushes) */
	if (s->resuming) {
		if (s->nheld < v->rc.max_held && s->held_bytes + p->len <= HELD_BYTES_MAX &&
		    hold(s, p) == 0)
			return 0;
		/* The hold is full: in order what it has, then this one. */
		flush(v, s, 1);
		if (v->free_asked || !(s = smap_get(v->subs, p->room, strlen(p->room))))
			return 0;
		if (s->based && p->seq <= s->last)
			return 0;
		if (s->based && p->seq > s->last + 1) {
			struct vroom_event e = {.type = VROOM_EV_GAP,
						.room = p->room,
						.from = s->last + 1,
						.to = p->seq - 1};
			emit(v, &e);
		}
	}
	s->last = p->seq;
	s->based = 1;
	return 1;
}

/* SUBSCRIBE [104, rid, room, topics, after]; with reconnection on every
 * subscription carries `after`: 2^64-1 asks for no replay and an answer
 * with the first seq it delivers (the base to resume from later). */
static int send_subscribe(struct vroom *v, struct vroom_sub *s, const char *const *topics, size_t n,
			  int topics_given, int resume, vroom_cb cb, void *arg,
			  struct vroom_error *err)
{
	uint64_t rid = ++v->next_rid;
	wire_buf_reset(&v->out);
	int with_after = v->rc_on;
	msgpack_packer *pk = wire_begin(&v->out, WIRE_SUBSCRIBE, rid,
					with_after     ? 3
					: topics_given ? 2
						       : 1);
	wire_pack_cstr(pk, s->room);
	if (with_after || topics_given) {
		msgpack_pack_array(pk, n);
		for (size_t i = 0; i < n; i++)
			wire_pack_cstr(pk, topics[i]);
	}
	if (with_after)
		msgpack_pack_uint64(pk, resume && s->based ? s->last : UINT64_MAX);
	wire_end(&v->out, 0);
	struct pending *p = vroom_queue(v, WIRE_SUBSCRIBE, rid, cb, arg, err);
	if (!p)
		return -1;
	p->resume = resume;
	if (!(p->room = strdup(s->room))) {
		/* the answer then updates no subscription: harmless */
	}
	return 0;
}

static void resubscribe(struct vroom *v, struct vroom_sub *s)
{
	struct vroom_error e;
	s->retry_at = 0;
	/* With a base, hold what comes until the answer says where the room
	 * starts again; without, there is nothing to put in order. */
	s->resuming = s->based;
	s->resume_since = vroom_fo_now_ms();
	if (send_subscribe(v, s, (const char *const *)s->topics, s->ntopics, s->topics_given, 1,
			   NULL, NULL, &e) < 0) {
		s->retry_at = vroom_fo_now_ms() + (uint64_t)v->rc.backoff_min_ms;
		s->resuming = 0;
	}
}

int vroom_fo_subscribe(struct vroom *v, const char *room, const char *const *topics, size_t n,
		       int topics_given, vroom_cb cb, void *arg, struct vroom_error *err)
{
	if (v->state == VROOM_ST_CLOSED || v->state == VROOM_ST_IDLE ||
	    (!v->rc_on && (!v->bev || (topics_given && v->state != VROOM_ST_READY)))) {
		vroom_seterr(err, VROOM_E_CLOSED, "not connected");
		return -1;
	}
	size_t rlen = room ? strlen(room) : 0;
	if (rlen == 0 || rlen > VROOM_ROOM_ID_MAX || n > WIRE_TOPICS_MAX) {
		vroom_seterr(err, VROOM_E_ARG, "a room id of 1-%d characters and at most %d topics",
			     VROOM_ROOM_ID_MAX, WIRE_TOPICS_MAX);
		return -1;
	}
	struct vroom_sub *s = smap_get(v->subs, room, rlen);
	char **copy = n ? calloc(n, sizeof(*copy)) : NULL;
	for (size_t i = 0; i < n && copy; i++)
		if (!(copy[i] = strdup(topics[i] ? topics[i] : ""))) {
			for (size_t j = 0; j < i; j++)
				free(copy[j]);
			free(copy);
			copy = NULL;
		}
	int made = 0;
	if ((n && !copy) || (!s && !(s = calloc(1, sizeof(*s))))) {
		free(copy);
		vroom_seterr(err, VROOM_E_ARG, "out of memory");
		return -1;
	}
	if (!s->room[0]) {
		memcpy(s->room, room, rlen + 1);
		if (smap_put(v->subs, s->room, rlen, s) < 0) {
			sub_free(s);
			for (size_t i = 0; i < n; i++)
				free(copy[i]);
			free(copy);
			vroom_seterr(err, VROOM_E_ARG, "out of memory");
			return -1;
		}
		made = 1;
	}
	for (size_t i = 0; i < s->ntopics; i++)
		free(s->topics[i]);
	free(s->topics);
	s->topics = copy;
	s->ntopics = n;
	s->topics_given = topics_given;
	if (send_subscribe(v, s, topics, n, topics_given, 0, cb, arg, err) < 0) {
		if (made)
			sub_drop(v, room);
		return -1;
	}
	return 0;
}

int vroom_fo_unsubscribe_noted(struct vroom *v, const char *room)
{
	sub_drop(v, room);
	return 0;
}

void vroom_fo_room_closed(struct vroom *v, const char *room)
{
	sub_drop(v, room);
}

/* A resumed room the nodes refuse for longer than resume_timeout_ms (its
 * relay lost it, or it is gone): the application hears room_closed. */
static void give_up_room(struct vroom *v, struct vroom_sub *s, const struct vroom_error *why)
{
	char room[VROOM_ROOM_ID_MAX + 1], reason[300];
	memcpy(room, s->room, sizeof(room));
	snprintf(reason, sizeof(reason), "lost: %s: %s", vroom_code_name(why->code), why->message);
	flush(v, s, 1);
	sub_drop(v, room);
	if (!v->free_asked && v->h.room_closed)
		v->h.room_closed(v, room, reason, v->harg);
}

void vroom_fo_sub_reply(struct vroom *v, struct pending *p, const struct vroom_result *r,
			const msgpack_object *val)
{
	struct vroom_sub *s = p->room ? smap_get(v->subs, p->room, strlen(p->room)) : NULL;
	if (!s)
		return;
	uint64_t now = vroom_fo_now_ms();
	if (r->err) {
		if (!p->resume) {
			if (!s->based)
				sub_drop(v, p->room); /* never subscribed */
			return;
		}
		/* A resumed room refused: during a failover the nodes may not
		 * agree yet on its relay; try again for a while. */
		if (r->err->code == VROOM_E_CLOSED)
			return; /* the connection went: the next one resumes */
		if (!s->retry_until)
			s->retry_until = now + (uint64_t)v->rc.resume_timeout_ms;
		if (now >= s->retry_until) {
			give_up_room(v, s, r->err);
			return;
		}
		s->retry_at = now + (uint64_t)v->rc.backoff_min_ms;
		if (v->timer && !evtimer_pending(v->timer, NULL))
			arm(v, TICK_MS);
		return;
	}
	uint64_t first = val && val->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? val->via.u64 : 0;
	if (first && !s->based) {
		s->last = first - 1;
		s->based = 1;
	} else if (first && p->resume && first > s->last + 1) {
		struct vroom_event e = {
		    .type = VROOM_EV_GAP, .room = s->room, .from = s->last + 1, .to = first - 1};
		s->last = first - 1;
		emit(v, &e);
		if (v->free_asked || !(s = smap_get(v->subs, p->room, strlen(p->room))))
			return;
	}
	if (p->resume) {
		s->retry_until = 0;
		struct vroom_event e = {.type = VROOM_EV_RESUMED, .room = s->room, .from = first};
		emit(v, &e);
		if (v->free_asked || !(s = smap_get(v->subs, p->room, strlen(p->room))))
			return;
		flush(v, s, 0);
		if (v->free_asked || !(s = smap_get(v->subs, p->room, strlen(p->room))))
			return;
		/* The relay (or this node's mirror) has the subscription: the
		 * room's streams being read go on from where they were. */
		vroom_streams_rejoin(v, s->room);
	}
}

/* ---------------------------------------------------------------- reconnection */

static int fatal(int code)
{
	/* the node refused this client as it is: another node would too */
	return code == VROOM_E_AUTH || code == VROOM_E_VERSION || code == VROOM_E_HELLO_REQUIRED ||
	       code == VROOM_E_BAD_FRAME || code == VROOM_E_TOO_LARGE;
}

void vroom_fo_hello_done(struct vroom *v, const struct vroom_result *r, void *arg)
{
	(void)arg;
	if (r->err && v->rc_on && !fatal(r->err->code) && v->state != VROOM_ST_CLOSED)
		return; /* the client tries another node */
	if (v->hello_cb) {
		vroom_cb cb = v->hello_cb;
		v->hello_cb = NULL;
		cb(v, r, v->hello_arg);
	}
}

static int backoff(const struct vroom *v)
{
	uint64_t ms = (uint64_t)v->rc.backoff_min_ms;
	for (unsigned i = 1; i < v->attempt && ms < (uint64_t)v->rc.backoff_max_ms; i++)
		ms *= 2;
	if (ms > (uint64_t)v->rc.backoff_max_ms)
		ms = (uint64_t)v->rc.backoff_max_ms;
	/* up to a quarter more, so that many clients do not come back at once */
	return (int)(ms + randombytes_uniform((uint32_t)(ms / 4 + 1)));
}

int vroom_fo_lost(struct vroom *v, const struct vroom_error *why)
{
	if (!v->rc_on || v->free_asked)
		return 0;
	struct vroom_error err = v->node_err.code ? v->node_err : *why;
	if (fatal(err.code))
		return 0;
	uint64_t now = vroom_fo_now_ms();
	if (!v->lost_ms)
		v->lost_ms = now;
	if (now - v->lost_ms >= (uint64_t)v->rc.give_up_ms)
		return 0;
	int was_ready = v->state == VROOM_ST_READY;
	v->state = VROOM_ST_WAITING;
	v->node_err.code = 0;
	v->last_err = err;
	if (v->bev) {
		bufferevent_disable(v->bev, EV_READ | EV_WRITE);
		if (v->old_bev)
			bufferevent_free(v->old_bev);
		v->old_bev = v->bev; /* we may be inside its callback: freed later */
		v->bev = NULL;
	}
	/* Requests: the HELLO and resumed subscriptions are the library's own
	 * (done again on the next connection); kept frames go again; the
	 * others may or may not have been done, and fail. */
	struct vroom_error closed;
	vroom_seterr(&closed, VROOM_E_CLOSED,
		     "the connection to %s was lost before the answer (%s); the request may or may "
		     "not have been done",
		     v->server, err.message);
	for (;;) {
		struct pending *p, *fail = NULL, *next;
		for (p = TAILQ_FIRST(&v->pending); p; p = next) {
			next = TAILQ_NEXT(p, link);
			if (p->type == WIRE_HELLO || p->resume) {
				vroom_pending_drop(v, p);
				continue;
			}
			if (p->frame &&
			    (p->type == WIRE_PUSH || p->type == WIRE_SUBSCRIBE ||
			     p->type == WIRE_UNSUBSCRIBE || !was_ready || p->gen != v->gen)) {
				p->gen = 0;
				continue;
			}
			if (p->frame && p->gen == v->gen &&
			    (p->type == WIRE_INFO || p->type == WIRE_PLACE ||
			     p->type == WIRE_PING)) {
				p->gen = 0; /* asking again changes nothing */
				continue;
			}
			if (vroom_streams_keep_close(v, p))
				continue; /* goes again once its stream is claimed */
			fail = p;
			break;
		}
		if (!fail)
			break;
		vroom_pending_fail(v, fail, &closed);
		if (v->free_asked)
			return 1;
	}
	struct vroom_error serr;
	vroom_seterr(&serr, VROOM_E_CLOSED,
		     "the connection to %s was lost (%s); a byte stream does not survive a move to "
		     "another node",
		     v->server, err.message);
	vroom_streams_move(v); /* readers go on after the move, writers claim theirs */
	vroom_streams_lost(v, &serr);
	for (size_t pos = 0;;) {
		struct vroom_sub *s = smap_next(v->subs, &pos);
		if (!s)
			break;
		s->retry_at = 0; /* resumed on the next connection */
	}
	v->attempt++;
	struct vroom_event e = {
	    .type = VROOM_EV_LOST, .server = v->server, .err = &err, .attempt = v->attempt};
	emit(v, &e);
	if (v->free_asked)
		return 1;
	arm(v, backoff(v));
	return 1;
}

void vroom_fo_attempt_started(struct vroom *v)
{
	if (v->rc_on)
		arm(v, v->rc.attempt_timeout_ms);
}

void vroom_fo_welcomed(struct vroom *v)
{
	v->welcomed = 1;
	v->conns++;
	unsigned attempts = v->attempt;
	v->attempt = 0;
	v->lost_ms = 0;
	if (!v->rc_on)
		return;
	evtimer_del(v->timer);
	if (v->conns > 1) {
		struct vroom_event e = {
		    .type = VROOM_EV_MOVED, .server = v->server, .attempt = attempts};
		emit(v, &e);
		if (v->free_asked || v->state != VROOM_ST_READY)
			return;
		/* Every room again, after its last seq (the table cannot change
		 * under us: no callback runs here). */
		for (size_t pos = 0;;) {
			struct vroom_sub *s = smap_next(v->subs, &pos);
			if (!s)
				break;
			resubscribe(v, s);
		}
		/* Then the streams this client sends, each claimed again
		 * (client/stream.c). */
		vroom_streams_tick(v);
		if (v->free_asked || v->state != VROOM_ST_READY)
			return;
	}
	arm(v, TICK_MS);
}

/* While connected: resumed rooms that wait too long, refused ones to ask
 * again. 1 if the tick should go on. */
static int check_subs(struct vroom *v)
{
	uint64_t now = vroom_fo_now_ms();
	int again = 0;
	for (size_t pos = 0;;) {
		struct vroom_sub *s = smap_next(v->subs, &pos);
		if (!s)
			break;
		if (s->resuming && now - s->resume_since >= (uint64_t)v->rc.resume_timeout_ms) {
			struct vroom_error e;
			vroom_seterr(
			    &e, VROOM_E_WAIT,
			    "no answer from %s to the resumed subscription of room %s within "
			    "%d ms",
			    v->server, s->room, v->rc.resume_timeout_ms);
			vroom_lost(v, &e); /* another node may do better */
			return 0;
		}
		if (s->retry_at && now >= s->retry_at)
			resubscribe(v, s); /* changes no entry of the table */
		if (s->resuming || s->retry_at)
			again = 1;
	}
	return again;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct vroom *v = arg;
	(void)fd;
	(void)what;
	v->busy++;
	struct vroom_error e;
	if (v->state == VROOM_ST_CONNECTING) {
		vroom_seterr(&e, VROOM_E_CONNECT, "no WELCOME from %s within %d ms", v->server,
			     v->rc.attempt_timeout_ms);
		vroom_lost(v, &e);
	} else if (v->state == VROOM_ST_WAITING) {
		if (v->old_bev) {
			bufferevent_free(v->old_bev);
			v->old_bev = NULL;
		}
		if (vroom_fo_now_ms() - v->lost_ms >= (uint64_t)v->rc.give_up_ms) {
			vroom_seterr(&e, v->last_err.code ? v->last_err.code : VROOM_E_CLOSED,
				     "no node of %zu answered within %d ms; last: %s", v->nservers,
				     v->rc.give_up_ms, v->last_err.message);
			v->state = VROOM_ST_CONNECTING; /* so that vroom_lost() ends it */
			vroom_lost(v, &e);
		} else {
			v->cur = (v->cur + 1) % v->nservers;
			if (vroom_attempt(v, &e) < 0) {
				v->last_err = e;
				v->attempt++;
				arm(v, backoff(v));
			}
		}
	} else if (v->state == VROOM_ST_READY) {
		int again = check_subs(v);
		if (v->state == VROOM_ST_READY && !v->free_asked && vroom_streams_tick(v))
			again = 1;
		if (again && v->state == VROOM_ST_READY)
			arm(v, TICK_MS);
	}
	v->busy--;
	if (v->free_asked && !v->busy)
		vroom_free(v);
}

void vroom_fo_free(struct vroom *v)
{
	if (v->timer)
		event_free(v->timer);
	v->timer = NULL;
	if (v->old_bev)
		bufferevent_free(v->old_bev);
	v->old_bev = NULL;
	if (v->subs) {
		size_t pos = 0;
		struct vroom_sub *s;
		while ((s = smap_next(v->subs, &pos)) != NULL)
			sub_free(s);
		smap_free(v->subs);
		v->subs = NULL;
	}
}

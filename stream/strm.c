#include "stream/strm.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <xxhash.h>

#include "stream/room.h"
#include "stream/smap.h"

struct strm {
	struct strms *table; /* NULL once ended */
	unsigned refs;
	char *id, *topic;
	struct room *room;
	void *sender;
	int64_t size;
	uint64_t offset, inflight, window, credit_sent;
	uint64_t active;
	int closing, due;
	uint64_t close_rid;
	XXH3_state_t *hash;
	struct room_sub **rx;
	uint64_t *rx_acked; /* for peer receivers: what they acknowledged */
	size_t nrx;
	TAILQ_ENTRY(strm) due_link;
};

struct strms {
	struct smap *byid;
	TAILQ_HEAD(, strm) due;
	void (*kick)(void *arg);
	void *kick_arg;
};

struct strms *strms_new(void (*kick)(void *arg), void *arg)
{
	struct strms *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->kick = kick;
	t->kick_arg = arg;
	if (!(t->byid = smap_new())) {
		free(t);
		return NULL;
	}
	TAILQ_INIT(&t->due);
	return t;
}

static void drop_receivers(struct strm *s)
{
	for (size_t i = 0; i < s->nrx; i++)
		room_sub_unref(s->rx[i]);
	free(s->rx);
	free(s->rx_acked);
	s->rx = NULL;
	s->rx_acked = NULL;
	s->nrx = 0;
}

void strms_free(struct strms *t)
{
	if (!t)
		return;
	struct strm *s;
	while ((s = TAILQ_FIRST(&t->due)) != NULL) {
		TAILQ_REMOVE(&t->due, s, due_link);
		s->due = 0;
		strm_unref(s);
	}
	size_t pos = 0;
	while ((s = smap_next(t->byid, &pos)) != NULL) {
		strms_end(t, s);
		pos = 0; /* the map changed */
	}
	smap_free(t->byid);
	free(t);
}

size_t strms_count(const struct strms *t)
{
	return smap_count(t->byid);
}

struct strm *strms_find(const struct strms *t, const char *id, size_t len)
{
	return smap_get(t->byid, id, len);
}

struct strm *strms_open(struct strms *t, const char *id, size_t idlen, struct room *r,
			void *sender, const char *topic, size_t topiclen, int64_t size,
			size_t window, uint64_t now_ms)
{
	struct strm *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->id = strndup(id, idlen);
	s->topic = strndup(topic, topiclen);
	s->hash = XXH3_createState();
	if (!s->id || !s->topic || !s->hash || XXH3_64bits_reset(s->hash) != XXH_OK ||
	    smap_put(t->byid, s->id, idlen, s) < 0) {
		XXH3_freeState(s->hash);
		free(s->id);
		free(s->topic);
		free(s);
		return NULL;
	}
	s->table = t;
	s->refs = 1;
	s->room = r;
	s->sender = sender;
	s->size = size;
	s->window = window;
	s->credit_sent = window;
	s->active = now_ms;
	room_streams_add(r, 1);
	return s;
}

void strms_end(struct strms *t, struct strm *s)
{
	assert(s->table == t);
	smap_del(t->byid, s->id, strlen(s->id));
	room_streams_add(s->room, -1);
	s->table = NULL;
	s->room = NULL;
	s->sender = NULL;
	drop_receivers(s);
	strm_unref(s);
}

struct strm *strms_next(const struct strms *t, size_t *pos)
{
	return smap_next(t->byid, pos);
}

struct strm *strms_pop_due(struct strms *t)
{
	struct strm *s = TAILQ_FIRST(&t->due);
	if (s) {
		TAILQ_REMOVE(&t->due, s, due_link);
		s->due = 0;
	}
	return s;
}

int strms_due(const struct strms *t)
{
	return !TAILQ_EMPTY(&t->due);
}

struct strm *strm_ref(struct strm *s)
{
	s->refs++;
	return s;
}

void strm_unref(struct strm *s)
{
	assert(s->refs > 0);
	if (--s->refs > 0)
		return;
	assert(!s->table && !s->due);
	XXH3_freeState(s->hash);
	free(s->id);
	free(s->topic);
	free(s);
}

const char *strm_id(const struct strm *s)
{
	return s->id;
}

const char *strm_topic(const struct strm *s)
{
	return s->topic;
}

struct room *strm_room(const struct strm *s)
{
	return s->room;
}

void *strm_sender(const struct strm *s)
{
	return s->sender;
}

int64_t strm_size(const struct strm *s)
{
	return s->size;
}

uint64_t strm_offset(const struct strm *s)
{
	return s->offset;
}

uint64_t strm_last_active(const struct strm *s)
{
	return s->active;
}

void strm_touch(struct strm *s, uint64_t now_ms)
{
	s->active = now_ms;
}

int strm_is_open(const struct strm *s)
{
	return s->table != NULL && !s->closing;
}

int strm_add_receiver(struct strm *s, struct room_sub *sub)
{
	struct room_sub **v = realloc(s->rx, (s->nrx + 1) * sizeof(*v));
	if (!v)
		return -1;
	s->rx = v;
	uint64_t *a = realloc(s->rx_acked, (s->nrx + 1) * sizeof(*a));
	if (!a)
		return -1;
	s->rx_acked = a;
	a[s->nrx] = s->offset;
	v[s->nrx++] = room_sub_ref(sub);
	return 0;
}

size_t strm_receivers(const struct strm *s)
{
	return s->nrx;
}

struct room_sub *strm_receiver(const struct strm *s, size_t i)
{
	return i < s->nrx ? s->rx[i] : NULL;
}

void strm_append(struct strm *s, const void *data, size_t len, uint64_t now_ms)
{
	XXH3_64bits_update(s->hash, data, len);
	s->offset += len;
	s->active = now_ms;
}

uint64_t strm_digest(const struct strm *s)
{
	return XXH3_64bits_digest(s->hash);
}

uint64_t strm_acked(const struct strm *s)
{
	uint64_t acked = s->offset - s->inflight;
	for (size_t i = 0; i < s->nrx; i++)
		if (room_sub_is_peer(s->rx[i]) && room_sub_who(s->rx[i]) && s->rx_acked[i] < acked)
			acked = s->rx_acked[i];
	return acked;
}

uint64_t strm_limit(const struct strm *s)
{
	return strm_acked(s) + s->window;
}

uint64_t strm_inflight(const struct strm *s)
{
	return s->inflight;
}

void strm_inflight_add(struct strm *s, size_t len)
{
	s->inflight += len;
	strm_ref(s); /* dropped in strm_release_cb */
}

static void queue_due(struct strm *s);

void strm_release_cb(void *arg, size_t len)
{
	struct strm *s = arg;
	assert(s->inflight >= len);
	s->inflight -= len;
	queue_due(s);
	strm_unref(s);
}

static void queue_due(struct strm *s)
{
	if (s->table && !s->due) {
		struct strms *t = s->table;
		int was_empty = TAILQ_EMPTY(&t->due);
		s->due = 1;
		strm_ref(s); /* the due list's; not inside the macro, which
				repeats its arguments */
		TAILQ_INSERT_TAIL(&t->due, s, due_link);
		if (was_empty && t->kick)
			t->kick(t->kick_arg);
	}
}

void strm_peer_ack(struct strm *s, const void *who, uint64_t upto)
{
	for (size_t i = 0; i < s->nrx; i++) {
		if (room_sub_who(s->rx[i]) == who && upto > s->rx_acked[i] && upto <= s->offset) {
			s->rx_acked[i] = upto;
			queue_due(s);
		}
	}
}

uint64_t strm_credit_sent(const struct strm *s)
{
	return s->credit_sent;
}

void strm_set_credit_sent(struct strm *s, uint64_t limit)
{
	s->credit_sent = limit;
}

void strm_set_closing(struct strm *s, uint64_t rid)
{
	s->closing = 1;
	s->close_rid = rid;
}

int strm_closing(const struct strm *s, uint64_t *rid)
{
	if (rid)
		*rid = s->close_rid;
	return s->closing;
}

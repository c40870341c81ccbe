#include "stream/room.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <sodium.h>

#include "stream/smap.h"

struct room_sub {
	struct room *room; /* NULL once unsubscribed */
	void *who;	   /* NULL once unsubscribed */
	unsigned refs;
	int peer;
	uint64_t weight;
	char *identity;
	char **topics;
	size_t ntopics;
	TAILQ_ENTRY(room_sub) link;
};

struct room {
	char id[ROOM_ID_LEN + 1];
	unsigned marks;
	char *owner;
	char **grants;
	size_t ngrants, max_grants;
	uint64_t seq;
	uint64_t epoch; /* the relay's term: grows at each takeover and hand-over */
	uint64_t created, active;
	uint64_t msgs, bytes;
	size_t nsubs, nstreams;
	TAILQ_HEAD(, room_sub) subs;
	TAILQ_ENTRY(room) lru; /* in rooms.lru, least recently active first */
};

struct rooms {
	struct smap *byid;
	/* The room rooms_find() found last (a publisher names the same room
	 * push after push): NULL, or a room in byid (rooms_destroy forgets it). */
	struct room *last;
	size_t max_grants;
	TAILQ_HEAD(room_lru, room) lru;
};

void room_id_generate(char out[ROOM_ID_LEN + 1])
{
	unsigned char raw[ROOM_ID_BYTES];
	/* An id starting with '-' would read as an option on a command line:
	 * draw again (1 in 64; the id keeps over 95.9 bits of entropy). */
	do {
		randombytes_buf(raw, sizeof(raw));
		sodium_bin2base64(out, ROOM_ID_LEN + 1, raw, sizeof(raw),
				  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	} while (out[0] == '-');
}

struct rooms *rooms_new(size_t max_grants)
{
	struct rooms *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->byid = smap_new();
	if (!t->byid) {
		free(t);
		return NULL;
	}
	t->max_grants = max_grants;
	TAILQ_INIT(&t->lru);
	return t;
}

static void room_free(struct room *r)
{
	struct room_sub *s;
	while ((s = TAILQ_FIRST(&r->subs)) != NULL)
		room_unsubscribe(s);
	for (size_t i = 0; i < r->ngrants; i++)
		free(r->grants[i]);
	free(r->grants);
	free(r->owner);
	free(r);
}

void rooms_free(struct rooms *t)
{
	if (!t)
		return;
	struct room *r;
	while ((r = TAILQ_FIRST(&t->lru)) != NULL) {
		TAILQ_REMOVE(&t->lru, r, lru);
		room_free(r);
	}
	smap_free(t->byid);
	free(t);
}

size_t rooms_count(const struct rooms *t)
{
	return smap_count(t->byid);
}

struct room *rooms_create(struct rooms *t, const char *owner, size_t owner_len, uint64_t now_ms)
{
	struct room *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->owner = strndup(owner, owner_len);
	if (!r->owner) {
		free(r);
		return NULL;
	}
	/* 96 random bits: a collision is astronomically unlikely, but cheap
	 * to rule out. */
	do
		room_id_generate(r->id);
	while (smap_get(t->byid, r->id, ROOM_ID_LEN));
	if (smap_put(t->byid, r->id, ROOM_ID_LEN, r) < 0) {
		free(r->owner);
		free(r);
		return NULL;
	}
	TAILQ_INIT(&r->subs);
	r->max_grants = t->max_grants;
	r->created = r->active = now_ms;
	TAILQ_INSERT_TAIL(&t->lru, r, lru);
	return r;
}

struct room *rooms_create_id(struct rooms *t, const char *id, size_t idlen, const char *owner,
			     size_t owner_len, uint64_t now_ms)
{
	if (idlen != ROOM_ID_LEN || smap_get(t->byid, id, idlen))
		return NULL;
	struct room *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	memcpy(r->id, id, ROOM_ID_LEN);
	r->owner = strndup(owner, owner_len);
	if (!r->owner || smap_put(t->byid, r->id, ROOM_ID_LEN, r) < 0) {
		free(r->owner);
		free(r);
		return NULL;
	}
	TAILQ_INIT(&r->subs);
	r->max_grants = t->max_grants;
	r->created = r->active = now_ms;
	TAILQ_INSERT_TAIL(&t->lru, r, lru);
	return r;
}

struct room *rooms_find(const struct rooms *t, const char *id, size_t len)
{
	if (len != ROOM_ID_LEN)
		return NULL;
	if (t->last && memcmp(t->last->id, id, ROOM_ID_LEN) == 0)
		return t->last;
	struct room *r = smap_get(t->byid, id, len);
	if (r)
		((struct rooms *)t)->last = r; /* a cache: not part of the table's value */
	return r;
}

void rooms_destroy(struct rooms *t, struct room *r)
{
	smap_del(t->byid, r->id, ROOM_ID_LEN);
	if (t->last == r)
		t->last = NULL;
	TAILQ_REMOVE(&t->lru, r, lru);
	room_free(r);
}

struct room *rooms_idle(const struct rooms *t, uint64_t now_ms, uint64_t idle_ms)
{
	struct room *r = TAILQ_FIRST(&t->lru);
	if (r && now_ms >= r->active && now_ms - r->active >= idle_ms)
		return r;
	return NULL;
}

struct room *rooms_next(const struct rooms *t, size_t *pos)
{
	return smap_next(t->byid, pos);
}

struct room *rooms_recent(const struct rooms *t)
{
	return TAILQ_LAST(&t->lru, room_lru);
}

struct room *room_older(const struct room *r)
{
	return TAILQ_PREV(r, room_lru, lru);
}

void rooms_set_max_grants(struct rooms *t, size_t max_grants)
{
	struct room *r;
	t->max_grants = max_grants;
	TAILQ_FOREACH(r, &t->lru, lru)
		r->max_grants = max_grants;
}

const char *room_id(const struct room *r)
{
	return r->id;
}

unsigned room_marks(const struct room *r)
{
	return r->marks;
}

void room_set_marks(struct room *r, unsigned marks)
{
	r->marks = marks;
}

uint64_t room_subscribers(const struct room *r)
{
	uint64_t n = 0;
	const struct room_sub *s;
	TAILQ_FOREACH(s, &r->subs, link)
		n += s->weight;
	return n;
}

const char *room_owner(const struct room *r)
{
	return r->owner;
}

/* Appends a copy of s[0..len) to a list sized exactly (grant and topic
 * lists are short and change rarely). 0, or -1 on no memory. */
static int strlist_add(char ***list, size_t *n, const char *s, size_t len)
{
	char **v = realloc(*list, (*n + 1) * sizeof(*v));
	if (!v)
		return -1;
	*list = v;
	if (!(v[*n] = strndup(s, len)))
		return -1;
	(*n)++;
	return 0;
}

static int same(const char *a, const char *b, size_t blen)
{
	return strlen(a) == blen && memcmp(a, b, blen) == 0;
}

int room_is_owner(const struct room *r, const char *identity, size_t len)
{
	return same(r->owner, identity, len);
}

static long grant_index(const struct room *r, const char *identity, size_t len)
{
	for (size_t i = 0; i < r->ngrants; i++)
		if (same(r->grants[i], identity, len))
			return (long)i;
	return -1;
}

int room_may_push(const struct room *r, const char *identity, size_t len)
{
	return room_is_owner(r, identity, len) || grant_index(r, identity, len) >= 0;
}

int room_grant(struct room *r, const char *identity, size_t len)
{
	if (grant_index(r, identity, len) >= 0)
		return 0;
	if (r->ngrants >= r->max_grants)
		return -1;
	return strlist_add(&r->grants, &r->ngrants, identity, len) < 0 ? -2 : 0;
}

void room_revoke(struct room *r, const char *identity, size_t len)
{
	long i = grant_index(r, identity, len);
	if (i < 0)
		return;
	free(r->grants[i]);
	r->grants[i] = r->grants[--r->ngrants];
}

size_t room_grant_count(const struct room *r)
{
	return r->ngrants;
}

const char *room_grant_at(const struct room *r, size_t i)
{
	return i < r->ngrants ? r->grants[i] : NULL;
}

void room_touch(struct rooms *t, struct room *r, uint64_t now_ms)
{
	r->active = now_ms;
	if (TAILQ_NEXT(r, lru)) {
		TAILQ_REMOVE(&t->lru, r, lru);
		TAILQ_INSERT_TAIL(&t->lru, r, lru);
	}
}

uint64_t room_next_seq(struct room *r)
{
	return ++r->seq;
}

uint64_t room_epoch(const struct room *r)
{
	return r->epoch;
}

void room_set_epoch(struct room *r, uint64_t epoch)
{
	r->epoch = epoch;
}

uint64_t room_seq(const struct room *r)
{
	return r->seq;
}

void room_set_seq(struct room *r, uint64_t seq)
{
	r->seq = seq;
}

uint64_t room_created(const struct room *r)
{
	return r->created;
}

uint64_t room_last_active(const struct room *r)
{
	return r->active;
}

void room_count(struct room *r, size_t len)
{
	r->msgs++;
	r->bytes += len;
}

uint64_t room_msgs(const struct room *r)
{
	return r->msgs;
}

uint64_t room_bytes(const struct room *r)
{
	return r->bytes;
}

struct room_sub *room_subscribe(struct room *r, void *who)
{
	struct room_sub *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->room = r;
	s->who = who;
	s->refs = 1;
	s->weight = 1;
	TAILQ_INSERT_TAIL(&r->subs, s, link);
	r->nsubs++;
	return s;
}

void room_unsubscribe(struct room_sub *s)
{
	struct room *r = s->room;
	assert(r && r->nsubs > 0);
	TAILQ_REMOVE(&r->subs, s, link);
	r->nsubs--;
	s->room = NULL;
	s->who = NULL;
	room_sub_unref(s);
}

struct room_sub *room_sub_ref(struct room_sub *s)
{
	s->refs++;
	return s;
}

void room_sub_unref(struct room_sub *s)
{
	assert(s->refs > 0);
	if (--s->refs > 0)
		return;
	assert(s->room == NULL);
	for (size_t i = 0; i < s->ntopics; i++)
		free(s->topics[i]);
	free(s->topics);
	free(s->identity);
	free(s);
}

int room_sub_set_identity(struct room_sub *s, const char *identity, size_t len)
{
	char *copy = strndup(identity, len);
	if (!copy)
		return -1;
	free(s->identity);
	s->identity = copy;
	return 0;
}

const char *room_sub_identity(const struct room_sub *s)
{
	return s->identity ? s->identity : "";
}

int room_sub_add_topic(struct room_sub *s, const char *topic, size_t len, size_t max)
{
	if (s->ntopics >= max)
		return -1;
	return strlist_add(&s->topics, &s->ntopics, topic, len);
}

void room_sub_set_peer(struct room_sub *s, uint64_t weight)
{
	s->peer = 1;
	s->weight = weight;
}

int room_sub_is_peer(const struct room_sub *s)
{
	return s->peer;
}

uint64_t room_sub_weight(const struct room_sub *s)
{
	return s->weight;
}

int room_sub_copy_topics(struct room_sub *dst, const struct room_sub *src)
{
	for (size_t i = 0; i < src->ntopics; i++)
		if (room_sub_add_topic(dst, src->topics[i], strlen(src->topics[i]),
				       src->ntopics) < 0)
			return -1;
	return 0;
}

void room_sub_clear_topics(struct room_sub *s)
{
	for (size_t i = 0; i < s->ntopics; i++)
		free(s->topics[i]);
	free(s->topics);
	s->topics = NULL;
	s->ntopics = 0;
}

size_t room_sub_topic_count(const struct room_sub *s)
{
	return s->ntopics;
}

const char *room_sub_topic(const struct room_sub *s, size_t i)
{
	return i < s->ntopics ? s->topics[i] : NULL;
}

int room_sub_wants(const struct room_sub *s, const char *topic, size_t len)
{
	if (s->ntopics == 0)
		return 1;
	for (size_t i = 0; i < s->ntopics; i++)
		if (same(s->topics[i], topic, len))
			return 1;
	return 0;
}

size_t room_streams(const struct room *r)
{
	return r->nstreams;
}

void room_streams_add(struct room *r, int delta)
{
	if (delta < 0) {
		assert(r->nstreams >= (size_t)-delta);
		r->nstreams -= (size_t)-delta;
	} else {
		r->nstreams += (size_t)delta;
	}
}

size_t room_sub_count(const struct room *r)
{
	return r->nsubs;
}

struct room_sub *room_subs(const struct room *r)
{
	return TAILQ_FIRST(&r->subs);
}

struct room_sub *room_sub_next(const struct room_sub *s)
{
	return TAILQ_NEXT(s, link);
}

void *room_sub_who(const struct room_sub *s)
{
	return s->who;
}

struct room *room_sub_room(const struct room_sub *s)
{
	return s->room;
}

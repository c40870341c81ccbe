#include "stream/room.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <sodium.h>

#include "stream/smap.h"

struct room_sub {
	struct room *room;
	void *who;
	TAILQ_ENTRY(room_sub) link;
};

struct room {
	char id[ROOM_ID_LEN + 1];
	char *owner;
	char **grants;
	size_t ngrants, max_grants;
	uint64_t seq;
	uint64_t created, active;
	uint64_t msgs, bytes;
	size_t nsubs;
	TAILQ_HEAD(, room_sub) subs;
	TAILQ_ENTRY(room) lru; /* in rooms.lru, least recently active first */
};

struct rooms {
	struct smap *byid;
	size_t max_grants;
	TAILQ_HEAD(, room) lru;
};

void room_id_generate(char out[ROOM_ID_LEN + 1])
{
	unsigned char raw[ROOM_ID_BYTES];
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(out, ROOM_ID_LEN + 1, raw, sizeof(raw),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
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

struct room *rooms_find(const struct rooms *t, const char *id, size_t len)
{
	if (len != ROOM_ID_LEN)
		return NULL;
	return smap_get(t->byid, id, len);
}

void rooms_destroy(struct rooms *t, struct room *r)
{
	smap_del(t->byid, r->id, ROOM_ID_LEN);
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

const char *room_id(const struct room *r)
{
	return r->id;
}

const char *room_owner(const struct room *r)
{
	return r->owner;
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
	/* grants is sized exactly: grant lists are short and change rarely */
	char **g = realloc(r->grants, (r->ngrants + 1) * sizeof(*g));
	if (!g)
		return -2;
	r->grants = g;
	if (!(g[r->ngrants] = strndup(identity, len)))
		return -2;
	r->ngrants++;
	return 0;
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

uint64_t room_seq(const struct room *r)
{
	return r->seq;
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
	TAILQ_INSERT_TAIL(&r->subs, s, link);
	r->nsubs++;
	return s;
}

void room_unsubscribe(struct room_sub *s)
{
	struct room *r = s->room;
	assert(r->nsubs > 0);
	TAILQ_REMOVE(&r->subs, s, link);
	r->nsubs--;
	free(s);
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

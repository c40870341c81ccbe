#include "stream/strm.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t's size, to copy it between nodes */
#include <xxhash.h>

#include "stream/blob.h"

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
	/* failover (clusters) */
	int repl_on;
	uint64_t repl_upto;   /* the first backup holds the bytes up to here */
	uint64_t limit_floor; /* the sender may send up to here whatever acked is */
	uint64_t claim_sid;   /* taken over: the sender's session, to claim it */
	int resync;	      /* re-attaching: bytes past the offset wait for a replay */
	struct bufc {
		uint64_t off;
		size_t len;
		struct blob *frame;
	} * buf; /* a ring: [base, offset) in STREAM_DATA frames */
	size_t bhead, blen, bcap;
	uint64_t bbytes;
	struct blob *end_frame, *opened;
	char sender_node[65];
	uint64_t *rx_from;
	struct swait {
		char name[65];
		uint64_t acked, since;
	} * waits;
	size_t nwaits;
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
	free(s->rx_from);
	s->rx = NULL;
	s->rx_acked = NULL;
	s->rx_from = NULL;
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
	if (r) /* NULL: a stream kept outside any room (a replica's bytes) */
		room_streams_add(r, 1);
	return s;
}

void strms_end(struct strms *t, struct strm *s)
{
	assert(s->table == t);
	smap_del(t->byid, s->id, strlen(s->id));
	if (s->room)
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
	strm_buf_trim(s, UINT64_MAX);
	free(s->buf);
	free(s->waits);
	if (s->end_frame)
		blob_unref(s->end_frame);
	if (s->opened)
		blob_unref(s->opened);
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
	return strm_add_receiver_at(s, sub, s->offset);
}

int strm_add_receiver_at(struct strm *s, struct room_sub *sub, uint64_t acked)
{
	return strm_add_receiver_from(s, sub, acked, 0);
}

int strm_add_receiver_from(struct strm *s, struct room_sub *sub, uint64_t acked, uint64_t from)
{
	uint64_t *f = realloc(s->rx_from, (s->nrx + 1) * sizeof(*f));
	if (!f)
		return -1;
	s->rx_from = f;
	f[s->nrx] = from;
	struct room_sub **v = realloc(s->rx, (s->nrx + 1) * sizeof(*v));
	if (!v)
		return -1;
	s->rx = v;
	uint64_t *a = realloc(s->rx_acked, (s->nrx + 1) * sizeof(*a));
	if (!a)
		return -1;
	s->rx_acked = a;
	a[s->nrx] = acked;
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
	/* A peer's acknowledgement may run ahead of this node's offset (a
	 * node that came back had more than a new relay): it counts up to
	 * the offset. */
	for (size_t i = 0; i < s->nrx; i++)
		if (room_sub_is_peer(s->rx[i]) && room_sub_who(s->rx[i]) && s->rx_acked[i] < acked)
			acked = s->rx_acked[i];
	for (size_t i = 0; i < s->nwaits; i++)
		if (s->waits[i].acked < acked)
			acked = s->waits[i].acked;
	if (s->repl_on && s->repl_upto < acked)
		acked = s->repl_upto;
	return acked;
}

uint64_t strm_limit(const struct strm *s)
{
	/* Never below a limit the sender was told (credit_sent): acked can go
	 * back (a receiver node re-attaching lower, a new first backup whose
	 * replica is still being filled), and a grant stands. */
	uint64_t limit = strm_acked(s) + s->window;
	if (limit < s->limit_floor)
		limit = s->limit_floor;
	return limit > s->credit_sent ? limit : s->credit_sent;
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
		if (room_sub_who(s->rx[i]) == who && upto > s->rx_acked[i]) {
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

void strm_kick(struct strm *s)
{
	queue_due(s);
}

void strm_set_sender(struct strm *s, void *sender)
{
	s->sender = sender;
}

void strm_set_offset(struct strm *s, uint64_t offset)
{
	s->offset = offset;
}

void strm_set_limit_floor(struct strm *s, uint64_t limit)
{
	s->limit_floor = limit;
}

void strm_set_resync(struct strm *s, int on)
{
	s->resync = on;
}

int strm_resync(const struct strm *s)
{
	return s->resync;
}

void strm_set_claim_sid(struct strm *s, uint64_t sid)
{
	s->claim_sid = sid;
}

uint64_t strm_claim_sid(const struct strm *s)
{
	return s->claim_sid;
}

size_t strm_hash_size(void)
{
	return sizeof(XXH3_state_t);
}

size_t strm_hash_export(const struct strm *s, void *buf, size_t cap)
{
	if (cap < sizeof(XXH3_state_t))
		return 0;
	memcpy(buf, s->hash, sizeof(XXH3_state_t));
	return sizeof(XXH3_state_t);
}

int strm_hash_import(struct strm *s, const void *buf, size_t len)
{
	if (len != sizeof(XXH3_state_t))
		return -1;
	/* The state holds one pointer, extSecret: for the default secret
	 * every stream uses (XXH3_64bits_reset) it points at xxHash's own
	 * table, in this process too, as s->hash was reset at the open. (NULL
	 * would hash with the state's customSecret, which is unset: a stream
	 * taken over ended with a wrong checksum.) */
	const unsigned char *secret = s->hash->extSecret;
	memcpy(s->hash, buf, len);
	s->hash->extSecret = secret;
	return 0;
}

void strm_set_repl(struct strm *s, int on)
{
	if (s->repl_on && !on)
		queue_due(s);
	s->repl_on = on;
}

int strm_repl(const struct strm *s)
{
	return s->repl_on;
}

void strm_repl_ack(struct strm *s, uint64_t upto)
{
	if (upto > s->repl_upto) {
		s->repl_upto = upto;
		queue_due(s);
	}
}

int strm_buf_add(struct strm *s, uint64_t off, size_t len, struct blob *frame)
{
	if (s->blen == s->bcap) {
		size_t cap = s->bcap ? 2 * s->bcap : 16;
		struct bufc *v = malloc(cap * sizeof(*v));
		if (!v)
			return -1;
		for (size_t i = 0; i < s->blen; i++)
			v[i] = s->buf[(s->bhead + i) % s->bcap];
		free(s->buf);
		s->buf = v;
		s->bhead = 0;
		s->bcap = cap;
	}
	s->buf[(s->bhead + s->blen) % s->bcap] = (struct bufc){off, len, blob_ref(frame)};
	s->blen++;
	s->bbytes += len;
	return 0;
}

void strm_buf_trim(struct strm *s, uint64_t upto)
{
	while (s->blen) {
		struct bufc *c = &s->buf[s->bhead];
		if (upto != UINT64_MAX && c->off + c->len > upto)
			break;
		blob_unref(c->frame);
		s->bbytes -= c->len;
		s->bhead = (s->bhead + 1) % s->bcap;
		s->blen--;
	}
}

size_t strm_buf_count(const struct strm *s)
{
	return s->blen;
}

struct blob *strm_buf_at(const struct strm *s, size_t i, uint64_t *off, size_t *len)
{
	if (i >= s->blen)
		return NULL;
	const struct bufc *c = &s->buf[(s->bhead + i) % s->bcap];
	*off = c->off;
	*len = c->len;
	return c->frame;
}

uint64_t strm_buf_base(const struct strm *s)
{
	return s->blen ? s->buf[s->bhead].off : s->offset;
}

uint64_t strm_buf_bytes(const struct strm *s)
{
	return s->bbytes;
}

void strm_set_end_frame(struct strm *s, struct blob *frame)
{
	if (s->end_frame)
		blob_unref(s->end_frame);
	s->end_frame = frame ? blob_ref(frame) : NULL;
}

struct blob *strm_end_frame(const struct strm *s)
{
	return s->end_frame;
}

#define WAITS_MAX 1024 /* receiver nodes: one per member at most */

int strm_wait_add(struct strm *s, const char *node, uint64_t acked, uint64_t now_ms)
{
	for (size_t i = 0; i < s->nwaits; i++)
		if (strcmp(s->waits[i].name, node) == 0) {
			if (acked < s->waits[i].acked)
				s->waits[i].acked = acked;
			return 0;
		}
	if (s->nwaits >= WAITS_MAX || strlen(node) >= sizeof(s->waits[0].name))
		return -1;
	struct swait *v = realloc(s->waits, (s->nwaits + 1) * sizeof(*v));
	if (!v)
		return -1;
	s->waits = v;
	memset(&v[s->nwaits], 0, sizeof(v[0]));
	strcpy(v[s->nwaits].name, node);
	v[s->nwaits].acked = acked;
	v[s->nwaits].since = now_ms;
	s->nwaits++;
	return 0;
}

int strm_wait_del(struct strm *s, const char *node)
{
	for (size_t i = 0; i < s->nwaits; i++)
		if (strcmp(s->waits[i].name, node) == 0) {
			s->waits[i] = s->waits[--s->nwaits];
			queue_due(s);
			return 1;
		}
	return 0;
}

size_t strm_waits(const struct strm *s)
{
	return s->nwaits;
}

const char *strm_wait_name(const struct strm *s, size_t i)
{
	return s->waits[i].name;
}

uint64_t strm_wait_acked(const struct strm *s, size_t i)
{
	return s->waits[i].acked;
}

size_t strm_waits_expire(struct strm *s, uint64_t now_ms, uint64_t max_ms)
{
	size_t k = 0;
	for (size_t i = 0; i < s->nwaits;)
		if (now_ms - s->waits[i].since >= max_ms) {
			s->waits[i] = s->waits[--s->nwaits];
			k++;
		} else {
			i++;
		}
	if (k)
		queue_due(s);
	return k;
}

uint64_t strm_receiver_from(const struct strm *s, size_t i)
{
	return i < s->nrx ? s->rx_from[i] : 0;
}

uint64_t strm_receiver_acked(const struct strm *s, size_t i)
{
	return i < s->nrx ? s->rx_acked[i] : 0;
}

void strm_set_opened(struct strm *s, struct blob *frame, const char *node)
{
	if (s->opened)
		blob_unref(s->opened);
	s->opened = frame ? blob_ref(frame) : NULL;
	snprintf(s->sender_node, sizeof(s->sender_node), "%s", node ? node : "");
}

struct blob *strm_opened(const struct strm *s)
{
	return s->opened;
}

const char *strm_sender_node(const struct strm *s)
{
	return s->sender_node;
}

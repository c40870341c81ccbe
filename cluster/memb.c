/*
 * memb: SWIM membership with the habits of hashicorp/memberlist and Lifeguard
 * (indirect probes, suspicion with refutation, piggybacked gossip with a
 * retransmit limit, "buddy" suspicion notices, full state exchange); see
 * memb.h for the model and docs/protocol.md ("Cluster datagrams").
 *
 * Datagrams. Each is exactly one msgpack array of at most MEMB_DGRAM_MAX
 * bytes (pings, acks and gossip at most MEMB_SMALL_MAX, state chunks at most
 * MEMB_SYNC_MAX):
 *
 *   [version, type, sender, seq, field..., list]
 *
 *   version  uint: MEMB_VERSION (1); anything else is dropped
 *   type     uint: one of enum memb_type below
 *   sender   str: the sender's name (for logs; peers are known by address)
 *   seq      uint: picked by the sender; an ACK echoes its PING's seq
 *   list     array, always the last element: state items
 *
 *   type         fields after seq    list
 *   1 PING       target              gossip   "ack if you are target"
 *   2 ACK        -                   gossip   seq = the acked PING's seq
 *   3 PING_REQ   target, taddr       gossip   "ping target at taddr for me
 *                                              and send me an ACK with my seq"
 *   4 SYNC       -                   state    part of the sender's full
 *                                             state; answer with yours (STATE)
 *   5 STATE      -                   state    part of the sender's full state
 *   6 GOSSIP     -                   gossip
 *
 *   item = [state, name, incarnation, addr, client_addr]
 *          state 0 alive, 1 suspect, 2 dead, 3 left; incarnation < 2^63
 *
 * Bounds, all checked before anything is applied (a datagram is applied
 * whole or dropped and counted in memb_bad()): wire_check() first, with depth
 * 4 (datagram > list > item > scalar); 5 to 16 elements (more than a type's
 * fields are ignored, for additions within version 1); items of 5 to 8
 * elements (extras ignored); a gossip list of at most MEMB_GOSSIP_MAX items, a
 * state list of at most MEMB_MAX; names 1-MEMB_NAME_MAX bytes of UTF-8
 * without control characters; addresses 1-MEMB_ADDR_MAX bytes of printable
 * ASCII without spaces (client_addr may be empty). A full state that does
 * not fit in MEMB_SYNC_MAX is split over several datagrams (SYNC first, then
 * STATE), every one of which is applied on its own: nothing is truncated.
 *
 * Merging a state item about another member: a higher incarnation wins; at
 * equal incarnation left > dead > suspect > alive. Unknown members are added
 * from alive and suspect items only. In a full state, "dead" is taken as
 * "suspect" (memberlist does the same) so that a stale view cannot kill a
 * live member: it gets a suspicion timeout to refute. An item about this
 * node that is not exactly its own state, at its incarnation or newer, makes
 * it refute: incarnation = that + 1, gossiped as alive (or left, after
 * memb_leave()), and sent straight back to whoever told it.
 */
#include "cluster/memb.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <sodium.h>

#include "stream/wire.h"

/* Datagram types: never renumbered; retired values stay reserved. */
enum memb_type {
	MT_PING = 1,
	MT_ACK = 2,
	MT_PING_REQ = 3,
	MT_SYNC = 4,
	MT_STATE = 5,
	MT_GOSSIP = 6,
};

#define INC_LIMIT  (UINT64_C(1) << 63) /* incarnations stay below, so +1 never wraps */
#define DG_ELEMS_MAX   16	       /* elements of a datagram array */
#define ITEM_ELEMS_MAX 8	       /* elements of an item array */
#define DEPTH	       4	       /* datagram > list > item > scalar */
#define RELAYS	       32	       /* ping-reqs relayed at once; the oldest is reused */
#define SYNC_REPLIES   32	       /* SYNCs answered per sync interval */
#define SYNC_SCALE_AT  32	       /* members past which syncs slow down */
#define FANOUT_MAX     16	       /* bound on indirect_k and gossip_nodes */
/* The largest packed item: fixarray, state, str8 name, uint64, two str8. */
#define ITEM_BYTES_MAX (1 + 1 + (2 + MEMB_NAME_MAX) + 9 + 2 * (2 + MEMB_ADDR_MAX))
/* The largest header: fixarray, version, type, sender, seq, target, taddr. */
#define HDR_BYTES_MAX  (1 + 1 + 1 + (2 + MEMB_NAME_MAX) + 9 + (2 + MEMB_NAME_MAX) + (2 + MEMB_ADDR_MAX))

/* A small datagram always has room for its header, a list header and one
 * item (the buddy or leave notice that must go out whatever is queued). */
_Static_assert(HDR_BYTES_MAX + 3 + ITEM_BYTES_MAX <= MEMB_SMALL_MAX, "small datagram too small");
_Static_assert(MEMB_SMALL_MAX <= MEMB_SYNC_MAX && MEMB_SYNC_MAX <= MEMB_DGRAM_MAX, "limits");
_Static_assert(MEMB_ALIVE < MEMB_SUSPECT && MEMB_SUSPECT < MEMB_DEAD && MEMB_DEAD < MEMB_LEFT,
	       "states are ranked by their values");

struct member {
	struct memb_member pub; /* what memb_at() hands out */
	uint64_t suspect_until; /* SUSPECT: when it turns DEAD */
	uint64_t qserial;	/* when its state was queued for gossip; newer goes first */
	unsigned tx;		/* times its current state went out as gossip */
	int queued;		/* its current state is still being gossiped */
	int mark;		/* scratch for picking distinct members */
};

/* A PING sent for someone else's PING_REQ: its ACK goes back as `orig`. */
struct relay {
	uint64_t seq, orig, until;
	char to[MEMB_ADDR_MAX + 1];
	int used;
};

struct memb {
	struct memb_cfg cfg;
	const struct memb_ops *ops;
	void *arg;
	struct member *self; /* also in v; never forgotten; ALIVE, or LEFT after memb_leave */
	int left;

	struct member **v; /* n members sorted by name, self included; room for MEMB_MAX */
	size_t n;
	/* The probe round robin: every member but self, shuffled each round;
	 * order[next] is the next candidate (dead and left ones are skipped). */
	struct member **order;
	size_t norder, next;

	/* The probe of the current protocol period. */
	int probing, acked, indirect;
	char target[MEMB_NAME_MAX + 1];
	uint64_t probe_seq, probe_at;

	struct relay relays[RELAYS];
	size_t relay_next;

	int clock; /* now and the timers below are set */
	uint64_t now, next_probe, next_gossip, next_sync, sync_window, next_pull;
	unsigned sync_replies;
	uint64_t seq, qserial, rng;
	int refuted; /* set by a refutation inside the datagram being applied */
	struct memb_stats st;

	msgpack_zone zone;
	uint8_t *out;	       /* the datagram being built (MEMB_DGRAM_MAX) */
	uint8_t *list;	       /* its list, packed before the count is known */
	struct member **pick; /* scratch (MEMB_MAX) */
};

/* A decoded state item; the strings are copied out of the datagram. */
struct item {
	enum memb_state state;
	char name[MEMB_NAME_MAX + 1];
	uint64_t inc;
	char addr[MEMB_ADDR_MAX + 1];
	char caddr[MEMB_ADDR_MAX + 1];
};

/* A decoded datagram header; list points into the decoder's zone. */
struct dgram {
	unsigned type;
	uint64_t seq;
	char sender[MEMB_NAME_MAX + 1];
	char target[MEMB_NAME_MAX + 1];
	char taddr[MEMB_ADDR_MAX + 1];
	const msgpack_object *list;
	uint32_t nlist;
};

void memb_cfg_defaults(struct memb_cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->probe_interval_ms = 200;
	c->probe_timeout_ms = 80;
	c->suspicion_ms = 1000;
	c->indirect_k = 3;
	c->gossip_mult = 3;
	c->sync_interval_ms = 2000;
	c->dead_forget_ms = 60000;
	c->gossip_interval_ms = 200;
	c->gossip_nodes = 3;
	c->rng_seed = 0;
}

/* ---- small helpers ---- */

/* splitmix64: statistical quality is all that is needed (the sealing, not
 * unpredictable sequence numbers, is what keeps strangers out). */
static uint64_t rnd(struct memb *m)
{
	uint64_t z = (m->rng += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static size_t rnd_below(struct memb *m, size_t n)
{
	return n ? (size_t)(rnd(m) % n) : 0;
}

static int name_ok(const char *p, size_t len)
{
	if (len == 0 || len > MEMB_NAME_MAX || !wire_utf8_ok(p, len))
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return 0;
	return 1;
}

static int addr_ok(const char *p, size_t len, int empty_ok)
{
	if ((len == 0 && !empty_ok) || len > MEMB_ADDR_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return 0;
	return 1;
}

/* strlen, or max + 1 if s is longer than max. */
static size_t len_upto(const char *s, size_t max)
{
	const char *z = memchr(s, 0, max + 1);
	return z ? (size_t)(z - s) : max + 1;
}

static int live(const struct member *r)
{
	return r->pub.state == MEMB_ALIVE || r->pub.state == MEMB_SUSPECT;
}

/* Index of name in v, or where it would go; *found says which. */
static size_t lower(const struct memb *m, const char *name, int *found)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->v[mid]->pub.name, name);
		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return lo;
}

static struct member *find(const struct memb *m, const char *name)
{
	int found;
	size_t i = lower(m, name, &found);
	return found ? m->v[i] : NULL;
}

static void notify(struct memb *m, const struct member *r, int old)
{
	if (m->ops->change)
		m->ops->change(m->arg, &r->pub, old);
}

/* Queues r's current state for gossip (replacing whatever was queued for it). */
static void enqueue(struct memb *m, struct member *r)
{
	r->queued = 1;
	r->tx = 0;
	r->qserial = ++m->qserial;
}

static void set_state(struct memb *m, struct member *r, enum memb_state st)
{
	r->pub.state = st;
	r->pub.since_ms = m->now;
	if (st == MEMB_SUSPECT)
		r->suspect_until = m->now + m->cfg.suspicion_ms;
}

/* Retransmit limit: gossip_mult * ceil(log2(n + 1)), i.e. times the bit
 * length of n. */
static unsigned tx_limit(const struct memb *m)
{
	unsigned bits = 0;
	for (size_t x = m->n; x; x >>= 1)
		bits++;
	return m->cfg.gossip_mult * bits;
}

/* ---- the member table ---- */

/* Adds a member (not yet in the table) and puts it at a random place in
 * what is left of this probe round, as memberlist does; NULL if the table
 * is full (counted) or on no memory. */
static struct member *add(struct memb *m, const struct item *it, enum memb_state st)
{
	int found;
	if (m->n >= MEMB_MAX) {
		m->st.refused++;
		return NULL;
	}
	struct member *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	memcpy(r->pub.name, it->name, sizeof(r->pub.name));
	memcpy(r->pub.addr, it->addr, sizeof(r->pub.addr));
	memcpy(r->pub.client_addr, it->caddr, sizeof(r->pub.client_addr));
	r->pub.incarnation = it->inc;
	set_state(m, r, st);

	size_t at = lower(m, r->pub.name, &found);
	assert(!found);
	memmove(&m->v[at + 1], &m->v[at], (m->n - at) * sizeof(*m->v));
	m->v[at] = r;
	m->n++;

	assert(m->norder < MEMB_MAX && m->next <= m->norder);
	size_t pos = m->next + rnd_below(m, m->norder - m->next + 1);
	memmove(&m->order[pos + 1], &m->order[pos], (m->norder - pos) * sizeof(*m->order));
	m->order[pos] = r;
	m->norder++;
	return r;
}

/* Drops v[i] (not self) from the table and the round robin. */
static void forget(struct memb *m, size_t i)
{
	struct member *r = m->v[i];
	assert(r != m->self);
	memmove(&m->v[i], &m->v[i + 1], (m->n - i - 1) * sizeof(*m->v));
	m->n--;
	for (size_t j = 0; j < m->norder; j++) {
		if (m->order[j] != r)
			continue;
		memmove(&m->order[j], &m->order[j + 1], (m->norder - j - 1) * sizeof(*m->order));
		m->norder--;
		if (j < m->next)
			m->next--;
		break;
	}
	free(r);
}

/* Up to k distinct random members that satisfy ok() (and are not self or
 * unmarked), into m->pick; returns how many. Marks them. */
static size_t pick_random(struct memb *m, size_t k, int (*ok)(const struct member *))
{
	size_t c = 0;
	for (size_t i = 0; i < m->n; i++) {
		struct member *r = m->v[i];
		if (r != m->self && !r->mark && ok(r))
			m->pick[c++] = r;
	}
	if (k > c)
		k = c;
	for (size_t i = 0; i < k; i++) { /* partial Fisher-Yates */
		size_t j = i + rnd_below(m, c - i);
		struct member *t = m->pick[i];
		m->pick[i] = m->pick[j];
		m->pick[j] = t;
		m->pick[i]->mark = 1;
	}
	return k;
}

static void unmark(struct memb *m, size_t k)
{
	for (size_t i = 0; i < k; i++)
		m->pick[i]->mark = 0;
}

static int is_alive(const struct member *r)
{
	return r->pub.state == MEMB_ALIVE;
}

static int is_suspect(const struct member *r)
{
	return r->pub.state == MEMB_SUSPECT;
}

static int is_dead(const struct member *r)
{
	return r->pub.state == MEMB_DEAD;
}

/* ---- encoding ---- */

/* A bounded output buffer behind a msgpack_packer: writes past cap fail and
 * set over, so a caller can pack, check, and roll back to a mark. */
struct obuf {
	uint8_t *p;
	size_t len, cap;
	int over;
};

static int ob_write(void *data, const char *buf, size_t len)
{
	struct obuf *b = data;
	if (b->over || len > b->cap - b->len) {
		b->over = 1;
		return -1;
	}
	memcpy(b->p + b->len, buf, len);
	b->len += len;
	return 0;
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
	size_t len = strlen(s);
	msgpack_pack_str(pk, len);
	msgpack_pack_str_body(pk, s, len);
}

static void pack_item(msgpack_packer *pk, const struct member *r)
{
	msgpack_pack_array(pk, 5);
	msgpack_pack_uint8(pk, (uint8_t)r->pub.state);
	pack_cstr(pk, r->pub.name);
	msgpack_pack_uint64(pk, r->pub.incarnation);
	pack_cstr(pk, r->pub.addr);
	pack_cstr(pk, r->pub.client_addr);
}

/* Starts [version, type, sender, seq, <nfields fields>, list] in m->out. */
static void dg_begin(struct memb *m, struct obuf *ob, msgpack_packer *pk, size_t cap,
		     unsigned type, uint64_t seq, unsigned nfields)
{
	ob->p = m->out;
	ob->len = 0;
	ob->cap = cap;
	ob->over = 0;
	msgpack_packer_init(pk, ob, ob_write);
	msgpack_pack_array(pk, 5 + nfields);
	msgpack_pack_uint8(pk, MEMB_VERSION);
	msgpack_pack_uint8(pk, (uint8_t)type);
	pack_cstr(pk, m->self->pub.name);
	msgpack_pack_uint64(pk, seq);
}

/* Ends a datagram with its list (k items packed in lb) and sends it. */
static void dg_send(struct memb *m, struct obuf *ob, msgpack_packer *pk, const struct obuf *lb,
		    unsigned k, const char *to)
{
	msgpack_pack_array(pk, k);
	ob_write(ob, (const char *)lb->p, lb->len);
	/* the room for the list was taken from what the header left */
	assert(!ob->over && ob->len <= MEMB_DGRAM_MAX);
	m->st.sent++;
	m->ops->send(m->arg, to, ob->p, ob->len);
}

static int by_gossip_order(const void *a, const void *b)
{
	const struct member *x = *(struct member *const *)a, *y = *(struct member *const *)b;
	if (x->tx != y->tx)
		return x->tx < y->tx ? -1 : 1;
	return x->qserial > y->qserial ? -1 : x->qserial < y->qserial;
}

/* Members whose state is still to be gossiped, fewest transmissions first,
 * then newest first, into m->pick; retires the ones at the limit. */
static size_t gossip_queue(struct memb *m)
{
	unsigned limit = tx_limit(m);
	size_t c = 0;
	for (size_t i = 0; i < m->n; i++) {
		struct member *r = m->v[i];
		if (r->queued && r->tx >= limit)
			r->queued = 0;
		if (r->queued)
			m->pick[c++] = r;
	}
	qsort(m->pick, c, sizeof(*m->pick), by_gossip_order);
	return c;
}

/* Ends a small datagram with a gossip list: `first` if not NULL (outside
 * the retransmit count: a notice for the receiver), then whatever queued
 * states fit. Sends it to `to`. */
static void dg_gossip_send(struct memb *m, struct obuf *ob, msgpack_packer *pk,
			   const struct member *first, const char *to)
{
	assert(!ob->over && ob->len + 3 + ITEM_BYTES_MAX <= ob->cap);
	struct obuf lb = {m->list, 0, ob->cap - ob->len - 3, 0};
	msgpack_packer lp;
	unsigned k = 0;

	msgpack_packer_init(&lp, &lb, ob_write);
	if (first) {
		pack_item(&lp, first);
		k++;
	}
	size_t c = gossip_queue(m);
	for (size_t i = 0; i < c && k < MEMB_GOSSIP_MAX; i++) {
		struct member *r = m->pick[i];
		size_t mark = lb.len;
		if (r == first)
			continue;
		pack_item(&lp, r);
		if (lb.over) { /* a shorter one further on may still fit */
			lb.over = 0;
			lb.len = mark;
			continue;
		}
		r->tx++;
		k++;
	}
	assert(!lb.over);
	dg_send(m, ob, pk, &lb, k, to);
}

static void send_ping(struct memb *m, const char *to, const char *target, uint64_t seq,
		      const struct member *buddy)
{
	struct obuf ob;
	msgpack_packer pk;
	dg_begin(m, &ob, &pk, MEMB_SMALL_MAX, MT_PING, seq, 1);
	pack_cstr(&pk, target);
	dg_gossip_send(m, &ob, &pk, buddy, to);
}

static void send_ack(struct memb *m, const char *to, uint64_t seq)
{
	struct obuf ob;
	msgpack_packer pk;
	dg_begin(m, &ob, &pk, MEMB_SMALL_MAX, MT_ACK, seq, 0);
	dg_gossip_send(m, &ob, &pk, NULL, to);
}

static void send_ping_req(struct memb *m, const char *to, const struct member *target, uint64_t seq)
{
	struct obuf ob;
	msgpack_packer pk;
	dg_begin(m, &ob, &pk, MEMB_SMALL_MAX, MT_PING_REQ, seq, 2);
	pack_cstr(&pk, target->pub.name);
	pack_cstr(&pk, target->pub.addr);
	dg_gossip_send(m, &ob, &pk, NULL, to);
}

static void send_gossip(struct memb *m, const char *to, const struct member *first)
{
	struct obuf ob;
	msgpack_packer pk;
	dg_begin(m, &ob, &pk, MEMB_SMALL_MAX, MT_GOSSIP, ++m->seq, 0);
	dg_gossip_send(m, &ob, &pk, first, to);
}

/* Sends the whole table to `to`, every member (self, dead and left ones
 * included), in as many datagrams of at most MEMB_SYNC_MAX as it takes. The
 * first is a SYNC if want_reply, the others STATE. */
static void send_state(struct memb *m, const char *to, int want_reply)
{
	size_t i = 0;
	int first = 1;
	do {
		struct obuf ob, lb;
		msgpack_packer pk, lp;
		unsigned k = 0;
		dg_begin(m, &ob, &pk, MEMB_SYNC_MAX, want_reply && first ? MT_SYNC : MT_STATE,
			 ++m->seq, 0);
		lb = (struct obuf){m->list, 0, ob.cap - ob.len - 3, 0};
		msgpack_packer_init(&lp, &lb, ob_write);
		for (; i < m->n; i++, k++) {
			size_t mark = lb.len;
			pack_item(&lp, m->v[i]);
			if (lb.over) {
				lb.over = 0;
				lb.len = mark;
				break;
			}
		}
		assert(k > 0); /* one item always fits in a fresh datagram */
		dg_send(m, &ob, &pk, &lb, k, to);
		first = 0;
	} while (i < m->n);
}

/* ---- decoding ---- */

static int get_uint(const msgpack_object *o, uint64_t *u)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -1;
	*u = o->via.u64;
	return 0;
}

/* Copies a str object into out (room for max + 1) if check() accepts it.
 * msgpack-c may give an empty str a NULL pointer: it is never read. */
static int get_str(const msgpack_object *o, char *out, size_t max, int empty_ok, int is_name)
{
	if (o->type != MSGPACK_OBJECT_STR)
		return -1;
	const char *p = o->via.str.ptr;
	size_t len = o->via.str.size;
	if (len > max)
		return -1;
	if (len == 0) {
		if (!empty_ok)
			return -1;
		out[0] = 0;
		return 0;
	}
	if (is_name ? !name_ok(p, len) : !addr_ok(p, len, empty_ok))
		return -1;
	memcpy(out, p, len);
	out[len] = 0;
	return 0;
}

static int get_name(const msgpack_object *o, char *out)
{
	return get_str(o, out, MEMB_NAME_MAX, 0, 1);
}

static int get_addr(const msgpack_object *o, char *out, int empty_ok)
{
	return get_str(o, out, MEMB_ADDR_MAX, empty_ok, 0);
}

static int get_item(const msgpack_object *o, struct item *it)
{
	uint64_t st;
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 5 ||
	    o->via.array.size > ITEM_ELEMS_MAX)
		return -1;
	const msgpack_object *a = o->via.array.ptr;
	if (get_uint(&a[0], &st) < 0 || st > MEMB_LEFT)
		return -1;
	it->state = (enum memb_state)st;
	if (get_name(&a[1], it->name) < 0 || get_uint(&a[2], &it->inc) < 0 ||
	    it->inc >= INC_LIMIT || get_addr(&a[3], it->addr, 0) < 0 ||
	    get_addr(&a[4], it->caddr, 1) < 0)
		return -1;
	return 0;
}

/* Checks and decodes a datagram, every item included; 0 or -1. */
static int parse(struct memb *m, const uint8_t *buf, size_t len, struct dgram *d)
{
	const char *why;
	msgpack_object root;
	size_t off = 0;
	uint64_t u;
	unsigned fields;

	if (len == 0 || len > MEMB_DGRAM_MAX)
		return -1;
	/* msgpack-c preallocates from the counts: bound them first */
	if (wire_check(buf, len, DEPTH, &why) < 0)
		return -1;
	msgpack_zone_clear(&m->zone);
	if (msgpack_unpack((const char *)buf, len, &off, &m->zone, &root) != MSGPACK_UNPACK_SUCCESS)
		return -1;
	if (root.type != MSGPACK_OBJECT_ARRAY || root.via.array.size < 5 ||
	    root.via.array.size > DG_ELEMS_MAX)
		return -1;
	const msgpack_object *a = root.via.array.ptr;
	uint32_t n = root.via.array.size;
	if (get_uint(&a[0], &u) < 0 || u != MEMB_VERSION)
		return -1;
	if (get_uint(&a[1], &u) < 0)
		return -1;
	switch (u) {
	case MT_PING: fields = 1; break;
	case MT_PING_REQ: fields = 2; break;
	case MT_ACK: case MT_SYNC: case MT_STATE: case MT_GOSSIP: fields = 0; break;
	default: return -1;
	}
	d->type = (unsigned)u;
	if (n < 5 + fields || get_name(&a[2], d->sender) < 0 || get_uint(&a[3], &d->seq) < 0)
		return -1;
	if (fields >= 1 && get_name(&a[4], d->target) < 0)
		return -1;
	if (fields >= 2 && get_addr(&a[5], d->taddr, 0) < 0)
		return -1;
	const msgpack_object *l = &a[n - 1];
	int full = d->type == MT_SYNC || d->type == MT_STATE;
	if (l->type != MSGPACK_OBJECT_ARRAY ||
	    l->via.array.size > (full ? MEMB_MAX : MEMB_GOSSIP_MAX))
		return -1;
	d->list = l->via.array.ptr;
	d->nlist = l->via.array.size;
	for (uint32_t i = 0; i < d->nlist; i++) {
		struct item it;
		if (get_item(&d->list[i], &it) < 0)
			return -1;
	}
	return 0;
}

/* ---- merging ---- */

/* An item about this node. Anything at our incarnation or newer that is not
 * exactly our state is refuted with a higher incarnation. */
static void self_claim(struct memb *m, const struct item *it)
{
	struct member *s = m->self;
	if (it->inc < s->pub.incarnation)
		return;
	if (it->inc == s->pub.incarnation && it->state == s->pub.state &&
	    strcmp(it->addr, s->pub.addr) == 0 && strcmp(it->caddr, s->pub.client_addr) == 0)
		return;
	/* at our incarnation nothing outranks LEFT: a leaving node only
	 * answers newer claims, and stays LEFT */
	if (m->left && it->inc == s->pub.incarnation)
		return;
	/* a claim at the very last incarnation cannot be outbid; only a
	 * peer holding the cluster key can make one */
	if (it->inc + 1 >= INC_LIMIT)
		return;
	s->pub.incarnation = it->inc + 1;
	enqueue(m, s);
	m->st.refuted++;
	m->refuted = 1;
}

/* Merges one item from a datagram of `sender`; `full` for a full state. */
static void apply(struct memb *m, const struct item *it, int full, const char *sender)
{
	enum memb_state st = it->state;

	if (strcmp(it->name, m->self->pub.name) == 0) {
		self_claim(m, it);
		return;
	}
	struct member *r = find(m, it->name);
	if (!r && (st == MEMB_DEAD || st == MEMB_LEFT))
		return; /* nothing to forget */
	if (full && st == MEMB_DEAD)
		st = MEMB_SUSPECT;
	if (!r) {
		r = add(m, it, st);
		if (!r)
			return;
		/* News is gossiped on. But a joiner that learns a whole cluster
		 * from one reply repeats it only gossip_mult times, not the full
		 * retransmit count: its sender knew it all already (except
		 * itself), it helps only nodes that joined at the same time. */
		enqueue(m, r);
		if (full && strcmp(it->name, sender) != 0)
			r->tx = tx_limit(m) - m->cfg.gossip_mult;
		notify(m, r, -1);
		return;
	}
	uint64_t inc = r->pub.incarnation;
	int old = (int)r->pub.state;
	if (!(it->inc > inc || (it->inc == inc && (int)st > old)))
		return;
	int moved = 0;
	if (it->inc > inc &&
	    (strcmp(r->pub.addr, it->addr) != 0 || strcmp(r->pub.client_addr, it->caddr) != 0)) {
		/* a restart, maybe elsewhere: addresses change only with the
		 * incarnation */
		memcpy(r->pub.addr, it->addr, sizeof(r->pub.addr));
		memcpy(r->pub.client_addr, it->caddr, sizeof(r->pub.client_addr));
		moved = 1;
	}
	r->pub.incarnation = it->inc;
	if ((int)st != old || st == MEMB_SUSPECT) /* a suspicion at a newer incarnation restarts */
		set_state(m, r, st);
	enqueue(m, r);
	if ((int)st != old || moved)
		notify(m, r, old);
}

/* ---- the protocol period ---- */

static void clock_at(struct memb *m, uint64_t now)
{
	if (m->clock) {
		if (now > m->now)
			m->now = now;
		return;
	}
	/* the first time seen: spread the timers so that nodes started
	 * together do not probe and sync in step */
	m->clock = 1;
	m->now = now;
	m->self->pub.since_ms = now;
	m->next_probe = now + rnd_below(m, m->cfg.probe_interval_ms);
	m->next_gossip = now + rnd_below(m, m->cfg.gossip_interval_ms);
	m->next_sync = now + m->cfg.sync_interval_ms / 2 + rnd_below(m, m->cfg.sync_interval_ms);
	m->sync_window = now;
}

/* Ends the probe of the period: no ack at all makes the target suspect. */
static void probe_end(struct memb *m)
{
	if (!m->probing)
		return;
	m->probing = 0;
	if (m->acked)
		return;
	struct member *r = find(m, m->target);
	if (!r || r->pub.state != MEMB_ALIVE)
		return; /* gone, already suspect, dead or left */
	set_state(m, r, MEMB_SUSPECT);
	enqueue(m, r);
	notify(m, r, MEMB_ALIVE);
	/* tell the accused at once: if it is only slow it refutes in time */
	send_gossip(m, r->pub.addr, r);
}

static void probe_start(struct memb *m)
{
	for (size_t tries = 0; tries <= m->norder; tries++) {
		if (m->next >= m->norder) { /* a new round, in a new order */
			for (size_t i = m->norder; i > 1; i--) {
				size_t j = rnd_below(m, i);
				struct member *t = m->order[i - 1];
				m->order[i - 1] = m->order[j];
				m->order[j] = t;
			}
			m->next = 0;
			if (m->norder == 0)
				return;
		}
		struct member *r = m->order[m->next++];
		if (!live(r))
			continue;
		memcpy(m->target, r->pub.name, sizeof(m->target));
		m->probing = 1;
		m->acked = 0;
		m->indirect = 0;
		m->probe_seq = ++m->seq;
		m->probe_at = m->now;
		/* a suspect is told it is suspected with every probe (Lifeguard's
		 * buddy system) */
		send_ping(m, r->pub.addr, r->pub.name, m->probe_seq,
			  r->pub.state == MEMB_SUSPECT ? r : NULL);
		return;
	}
}

static void probe_tick(struct memb *m)
{
	uint64_t now = m->now;
	if (m->probing && !m->acked && !m->indirect &&
	    now >= m->probe_at + m->cfg.probe_timeout_ms) {
		struct member *t = find(m, m->target);
		m->indirect = 1;
		if (t && live(t)) {
			t->mark = 1; /* not its own prober */
			size_t k = pick_random(m, m->cfg.indirect_k, is_alive);
			t->mark = 0;
			for (size_t i = 0; i < k; i++)
				send_ping_req(m, m->pick[i]->pub.addr, t, m->probe_seq);
			unmark(m, k);
		}
	}
	if (now < m->next_probe)
		return;
	probe_end(m);
	m->next_probe += m->cfg.probe_interval_ms;
	if (m->next_probe <= now) /* late ticks: do not catch up in a burst */
		m->next_probe = now + m->cfg.probe_interval_ms;
	probe_start(m);
}

static void gossip_tick(struct memb *m)
{
	if (m->now < m->next_gossip)
		return;
	m->next_gossip += m->cfg.gossip_interval_ms;
	if (m->next_gossip <= m->now)
		m->next_gossip = m->now + m->cfg.gossip_interval_ms;

	if (gossip_queue(m) > 0) {
		size_t k = pick_random(m, m->cfg.gossip_nodes, live);
		for (size_t i = 0; i < k; i++) {
			struct member *r = m->pick[i];
			send_gossip(m, r->pub.addr, r->pub.state == MEMB_SUSPECT ? r : NULL);
		}
	}
	/* and some suspects, each told that it is suspected (whatever else is
	 * queued): the ones above stay marked, they were told already */
	size_t k = pick_random(m, m->cfg.gossip_nodes, is_suspect);
	for (size_t i = 0; i < k; i++)
		send_gossip(m, m->pick[i]->pub.addr, m->pick[i]);
	for (size_t i = 0; i < m->n; i++)
		m->v[i]->mark = 0;
}

/* The sync period, longer past SYNC_SCALE_AT members (memberlist's
 * pushPullScale): x2 up to 64, x3 up to 128, ... */
static uint64_t sync_period(const struct memb *m)
{
	uint64_t mult = 1;
	for (size_t x = SYNC_SCALE_AT; x < m->n; x *= 2)
		mult++;
	return m->cfg.sync_interval_ms * mult;
}

static void sync_tick(struct memb *m)
{
	if (m->now < m->next_sync)
		return;
	m->next_sync = m->now + sync_period(m);
	size_t k = pick_random(m, 1, is_alive);
	if (k)
		send_state(m, m->pick[0]->pub.addr, 1);
	unmark(m, k);
	/* Now and then a dead member too, as serf's reconnect does, with a
	 * chance of dead / (alive + 1): after a partition heals, the side it
	 * reaches hears it is dead, refutes, and the views merge. */
	size_t nd = 0, na = 0;
	for (size_t i = 0; i < m->n; i++) {
		nd += is_dead(m->v[i]);
		na += m->v[i] != m->self && is_alive(m->v[i]);
	}
	if (nd && rnd_below(m, na + 1 + nd) < nd) {
		k = pick_random(m, 1, is_dead);
		if (k)
			send_state(m, m->pick[0]->pub.addr, 1);
		unmark(m, k);
	}
}

/* Suspicion timeouts, then members dead or left for dead_forget_ms. */
static void timeouts(struct memb *m)
{
	for (size_t i = m->n; i-- > 0;) {
		struct member *r = m->v[i];
		if (r == m->self)
			continue;
		if (r->pub.state == MEMB_SUSPECT && m->now >= r->suspect_until) {
			set_state(m, r, MEMB_DEAD);
			enqueue(m, r);
			notify(m, r, MEMB_SUSPECT);
		} else if ((r->pub.state == MEMB_DEAD || r->pub.state == MEMB_LEFT) &&
			   m->now - r->pub.since_ms >= m->cfg.dead_forget_ms) {
			forget(m, i);
		}
	}
}

/* ---- the API ---- */

struct memb *memb_new(const char *name, const char *addr, const char *client_addr,
		      uint64_t incarnation, const struct memb_cfg *cfg, const struct memb_ops *ops,
		      void *arg)
{
	struct memb_cfg def;
	struct item self;

	if (!cfg) {
		memb_cfg_defaults(&def);
		cfg = &def;
	}
	if (!client_addr)
		client_addr = "";
	if (!name || !addr || !ops || !ops->send || incarnation >= INC_LIMIT)
		return NULL;
	size_t nl = len_upto(name, MEMB_NAME_MAX), al = len_upto(addr, MEMB_ADDR_MAX),
	       cl = len_upto(client_addr, MEMB_ADDR_MAX);
	if (!name_ok(name, nl) || !addr_ok(addr, al, 0) || !addr_ok(client_addr, cl, 1))
		return NULL;
	if (cfg->probe_interval_ms == 0 || cfg->probe_timeout_ms == 0 ||
	    cfg->probe_timeout_ms >= cfg->probe_interval_ms || cfg->suspicion_ms == 0 ||
	    cfg->gossip_mult == 0 || cfg->gossip_mult > 100 || cfg->sync_interval_ms == 0 ||
	    cfg->gossip_interval_ms == 0 || cfg->indirect_k > FANOUT_MAX ||
	    cfg->gossip_nodes > FANOUT_MAX)
		return NULL;

	struct memb *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cfg = *cfg;
	m->ops = ops;
	m->arg = arg;
	if (cfg->rng_seed) {
		m->rng = cfg->rng_seed;
	} else {
		if (sodium_init() < 0)
			goto fail_zone;
		randombytes_buf(&m->rng, sizeof(m->rng));
	}
	m->seq = rnd(m) & 0xffffffffu;
	if (!msgpack_zone_init(&m->zone, 4096))
		goto fail_zone;
	m->v = calloc(MEMB_MAX, sizeof(*m->v));
	m->order = calloc(MEMB_MAX, sizeof(*m->order));
	m->pick = calloc(MEMB_MAX, sizeof(*m->pick));
	m->out = malloc(MEMB_DGRAM_MAX);
	m->list = malloc(MEMB_DGRAM_MAX);
	if (!m->v || !m->order || !m->pick || !m->out || !m->list)
		goto fail;

	memcpy(self.name, name, nl + 1);
	memcpy(self.addr, addr, al + 1);
	memcpy(self.caddr, client_addr, cl + 1);
	self.inc = incarnation;
	m->self = add(m, &self, MEMB_ALIVE);
	if (!m->self)
		goto fail;
	/* self is in v but never in the probe order */
	m->norder = 0;
	m->next = 0;
	enqueue(m, m->self);
	return m;

fail:
	msgpack_zone_destroy(&m->zone);
fail_zone:
	free(m->v);
	free(m->order);
	free(m->pick);
	free(m->out);
	free(m->list);
	free(m);
	return NULL;
}

void memb_free(struct memb *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i]);
	msgpack_zone_destroy(&m->zone);
	free(m->v);
	free(m->order);
	free(m->pick);
	free(m->out);
	free(m->list);
	free(m);
}

void memb_join(struct memb *m, const char *seed_addr, uint64_t now_ms)
{
	clock_at(m, now_ms);
	if (!seed_addr || !addr_ok(seed_addr, len_upto(seed_addr, MEMB_ADDR_MAX), 0))
		return;
	send_state(m, seed_addr, 1);
}

void memb_tick(struct memb *m, uint64_t now_ms)
{
	clock_at(m, now_ms);
	timeouts(m);
	if (!m->left) {
		probe_tick(m);
		sync_tick(m);
	}
	gossip_tick(m);
}

static void on_ack(struct memb *m, uint64_t seq)
{
	if (m->probing && seq == m->probe_seq) {
		m->acked = 1;
		return;
	}
	for (size_t i = 0; i < RELAYS; i++) {
		struct relay *r = &m->relays[i];
		if (!r->used || r->seq != seq)
			continue;
		r->used = 0;
		if (m->now <= r->until)
			send_ack(m, r->to, r->orig);
		return;
	}
}

static void on_ping_req(struct memb *m, const struct dgram *d, const char *from)
{
	if (strcmp(d->target, m->self->pub.name) == 0)
		return;
	struct relay *r = &m->relays[m->relay_next++ % RELAYS];
	r->used = 1;
	r->seq = ++m->seq;
	r->orig = d->seq;
	r->until = m->now + m->cfg.probe_interval_ms;
	memcpy(r->to, from, strlen(from) + 1);
	const struct member *t = find(m, d->target);
	send_ping(m, d->taddr, d->target, r->seq,
		  t && t->pub.state == MEMB_SUSPECT ? t : NULL);
}

void memb_recv(struct memb *m, const char *from_addr, const uint8_t *buf, size_t len,
	       uint64_t now_ms)
{
	struct dgram d;

	clock_at(m, now_ms);
	m->st.received++;
	if (!from_addr || !addr_ok(from_addr, len_upto(from_addr, MEMB_ADDR_MAX), 0) || !buf ||
	    parse(m, buf, len, &d) < 0) {
		m->st.bad++;
		return;
	}
	int full = d.type == MT_SYNC || d.type == MT_STATE;
	/* A sender we do not know missed our news, or we missed its: one
	 * that we hold dead does not know it, and refutes once it hears. At
	 * most one such exchange per protocol period. */
	const struct member *snd = find(m, d.sender);
	int pull = !full && (snd ? snd->pub.state == MEMB_DEAD : m->n < MEMB_MAX) &&
		   m->now >= m->next_pull && !m->left;
	m->refuted = 0;
	for (uint32_t i = 0; i < d.nlist; i++) {
		struct item it;
		int rc = get_item(&d.list[i], &it);
		assert(rc == 0); /* parse() checked every item */
		(void)rc;
		apply(m, &it, full, d.sender);
	}
	switch (d.type) {
	case MT_PING:
		/* a PING for another name reached a stale address: no ack */
		if (strcmp(d.target, m->self->pub.name) == 0) {
			send_ack(m, from_addr, d.seq); /* carries any refutation */
			m->refuted = 0;
		}
		break;
	case MT_ACK:
		on_ack(m, d.seq);
		break;
	case MT_PING_REQ:
		on_ping_req(m, &d, from_addr);
		break;
	case MT_SYNC:
		if (m->now >= m->sync_window + m->cfg.sync_interval_ms) {
			m->sync_window = m->now;
			m->sync_replies = 0;
		}
		if (m->sync_replies < SYNC_REPLIES) {
			m->sync_replies++;
			send_state(m, from_addr, 0);
		}
		break;
	}
	/* whoever said we were suspect or dead hears the refutation first */
	if (m->refuted)
		send_gossip(m, from_addr, m->self);
	m->refuted = 0;
	if (pull) {
		m->next_pull = m->now + m->cfg.probe_interval_ms;
		send_state(m, from_addr, 1);
	}
}

void memb_declare_dead(struct memb *m, const char *name, uint64_t now_ms)
{
	clock_at(m, now_ms);
	struct member *r = find(m, name);
	if (!r || r == m->self || !live(r))
		return;
	int old = (int)r->pub.state;
	set_state(m, r, MEMB_DEAD);
	enqueue(m, r);
	notify(m, r, old);
	/* Spread it now rather than at the next gossip tick: the point of
	 * outside evidence is speed. A member wrongly declared refutes. */
	for (size_t i = 0; i < m->norder; i++)
		if (live(m->order[i]) && m->order[i] != r)
			send_gossip(m, m->order[i]->pub.addr, r);
}

void memb_alive_again(struct memb *m, uint64_t now_ms)
{
	clock_at(m, now_ms);
	struct member *s = m->self;
	if (m->left || s->pub.incarnation + 1 >= INC_LIMIT)
		return;
	s->pub.incarnation++;
	enqueue(m, s);
	for (size_t i = 0; i < m->n; i++)
		if (m->v[i] != s)
			send_gossip(m, m->v[i]->pub.addr, s);
}

void memb_leave(struct memb *m, uint64_t now_ms)
{
	clock_at(m, now_ms);
	if (m->left)
		return;
	m->left = 1;
	m->probing = 0;
	set_state(m, m->self, MEMB_LEFT);
	enqueue(m, m->self);
	for (size_t i = 0; i < m->n; i++) {
		struct member *r = m->v[i];
		if (r != m->self && live(r))
			send_gossip(m, r->pub.addr, m->self);
	}
}

size_t memb_count(const struct memb *m)
{
	return m->n;
}

const struct memb_member *memb_at(const struct memb *m, size_t i)
{
	return i < m->n ? &m->v[i]->pub : NULL;
}

const struct memb_member *memb_find(const struct memb *m, const char *name)
{
	if (!name || len_upto(name, MEMB_NAME_MAX) > MEMB_NAME_MAX)
		return NULL;
	const struct member *r = find(m, name);
	return r ? &r->pub : NULL;
}

const struct memb_member *memb_self(const struct memb *m)
{
	return &m->self->pub;
}

size_t memb_live(const struct memb *m, const char **names, size_t max)
{
	size_t k = 0;
	for (size_t i = 0; i < m->n && k < max; i++)
		if (live(m->v[i]))
			names[k++] = m->v[i]->pub.name;
	return k;
}

uint64_t memb_bad(const struct memb *m)
{
	return m->st.bad;
}

void memb_stats(const struct memb *m, struct memb_stats *st)
{
	*st = m->st;
}

/*
 * memb: SWIM-style cluster membership, as a state machine with no I/O.
 *
 * The caller feeds it received datagrams (plaintext: sealing is the caller's
 * job) and the time, and it asks the caller to send datagrams and tells it
 * when a member changes state. Failure detection: one direct probe per
 * protocol period to the next member of a shuffled round robin; without an
 * ack in probe_timeout, indirect probes through indirect_k other members;
 * without any ack by the end of the period the member becomes suspect, and
 * dead after the suspicion timeout unless it refutes with a higher
 * incarnation. Changes spread by gossip piggybacked on probes and acks (each
 * retransmitted gossip_mult * ceil(log2(n + 1)) times), by gossip datagrams
 * to gossip_nodes random members every gossip_interval, and by a periodic
 * full state exchange with one random member, so views converge. The
 * datagram format is at the top of memb.c and in docs/protocol.md.
 *
 * Invariants: a member's (incarnation, state) only moves forward: a higher
 * incarnation wins; at equal incarnation left > dead > suspect > alive. This
 * node's own incarnation only grows: it refutes suspicion by bumping it.
 * Names are unique cluster-wide; a restarted node rejoins under its name with
 * a newer incarnation (the caller passes the start time in ms).
 *
 * Not thread-safe; callbacks run inside memb_join/tick/recv/leave and must not
 * call those (queue the datagram, or send it right away with sendto()).
 * Peers are trusted only as far as the caller's sealing authenticates them.
 */
#ifndef VROOM_CLUSTER_MEMB_H
#define VROOM_CLUSTER_MEMB_H

#include <stddef.h>
#include <stdint.h>

#define MEMB_NAME_MAX 64  /* node name */
#define MEMB_ADDR_MAX 64  /* "host:port" */
#define MEMB_MAX      1024 /* members tracked; more are refused (and counted) */
#define MEMB_DGRAM_MAX 65000 /* the largest datagram memb sends or accepts */
#define MEMB_SMALL_MAX 1400  /* pings, acks and gossip datagrams stay under this */
#define MEMB_SYNC_MAX  8192  /* one datagram of a full state exchange (split in several) */
#define MEMB_GOSSIP_MAX 64   /* state items in one gossip list */
#define MEMB_VERSION   1     /* first element of every datagram */

enum memb_state { MEMB_ALIVE = 0, MEMB_SUSPECT = 1, MEMB_DEAD = 2, MEMB_LEFT = 3 };

struct memb_member {
	char name[MEMB_NAME_MAX + 1];
	char addr[MEMB_ADDR_MAX + 1];	     /* cluster address (datagrams, node links) */
	char client_addr[MEMB_ADDR_MAX + 1]; /* where clients connect */
	uint64_t incarnation;
	enum memb_state state;
	uint64_t since_ms; /* when it entered this state, on this node's clock */
};

struct memb_cfg {
	uint64_t probe_interval_ms; /* protocol period (default 200) */
	uint64_t probe_timeout_ms;  /* direct ack deadline (default 80) */
	uint64_t suspicion_ms;	    /* suspect -> dead (default 1000) */
	unsigned indirect_k;	    /* indirect probers (default 3) */
	unsigned gossip_mult;	    /* retransmit factor (default 3) */
	uint64_t sync_interval_ms;  /* full state exchange (default 2000; scaled past 32 members) */
	uint64_t dead_forget_ms;    /* drop dead/left members after (default 60000) */
	uint64_t gossip_interval_ms; /* gossip datagrams (default 200) */
	unsigned gossip_nodes;	     /* members each gossip round goes to (default 3) */
	uint64_t rng_seed; /* 0: random from libsodium; else a fixed seed (tests) */
};

struct memb_ops {
	/* Send buf[len] (borrowed for the call, len <= MEMB_DGRAM_MAX) to addr
	 * ("host:port" as a member announced it, or a from_addr given to
	 * memb_recv). Best effort: a lost datagram is what SWIM expects. */
	void (*send)(void *arg, const char *addr, const uint8_t *buf, size_t len);
	/* Member m appeared (old is -1), changed state (old is the previous
	 * state), or came back under a newer incarnation with a new address
	 * (old == m->state). May be NULL. Never called for this node itself: it
	 * does not change state on others' word, it refutes. Forgotten members
	 * go silently. m is valid during the call. */
	void (*change)(void *arg, const struct memb_member *m, int old);
};

struct memb;

/* Fills c with the LAN defaults above. */
void memb_cfg_defaults(struct memb_cfg *c);

/* This node: name (1-MEMB_NAME_MAX bytes of UTF-8, no control characters),
 * cluster address and client address (printable ASCII without spaces, at
 * most MEMB_ADDR_MAX; client_addr may be "" or NULL), incarnation (below
 * 2^63 and larger than any earlier run's, e.g. the start time in ms). cfg
 * NULL means the defaults. NULL on no memory or bad arguments. The strings
 * are copied; cfg is copied; ops and arg are borrowed. */
struct memb *memb_new(const char *name, const char *addr, const char *client_addr,
		      uint64_t incarnation, const struct memb_cfg *cfg, const struct memb_ops *ops,
		      void *arg);
void memb_free(struct memb *m);

/* Asks a seed for the full state (and announces this node to it). Call for
 * each seed; repeat (e.g. every second) until memb_count() > 1 if the seeds
 * were not up yet. Joining is also how a node that every other member has
 * forgotten (dead for longer than dead_forget_ms) comes back. */
void memb_join(struct memb *m, const char *seed_addr, uint64_t now_ms);
/* Drives probes, timeouts, gossip and syncs: call at least every
 * probe_interval_ms / 4 (the node calls it every 50 ms). now_ms is any
 * monotonic clock in ms, the same for every call; it must not go back. */
void memb_tick(struct memb *m, uint64_t now_ms);
/* A datagram from from_addr (the sender's "host:port": acks and state
 * replies go there). buf is borrowed. Malformed or oversized input is
 * dropped and counted (memb_bad()), never trusted: every count is bounded
 * first, and a datagram is applied whole or not at all. */
void memb_recv(struct memb *m, const char *from_addr, const uint8_t *buf, size_t len,
	       uint64_t now_ms);
/* Announces a graceful leave (state LEFT) to every live member at once and
 * stops probing. Keep calling memb_tick()/memb_recv() for a few probe
 * intervals afterwards so that gossip repeats it, then memb_free(). */
void memb_leave(struct memb *m, uint64_t now_ms);

/* Outside evidence that a member died (its node link was reset and its
 * cluster port refuses connections): declares it dead now, without waiting
 * for probes and the suspicion timeout, and gossips that to every live
 * member at once. A member declared dead while alive refutes with a higher
 * incarnation, as for any suspicion. */
void memb_declare_dead(struct memb *m, const char *name, uint64_t now_ms);

/* This node was unresponsive for a while (its process stopped, its host
 * hung) and may have been declared dead: announces it alive under a newer
 * incarnation to every member it knows, without waiting to hear the
 * verdict. */
void memb_alive_again(struct memb *m, uint64_t now_ms);

/* Members known, this node included, in a stable order (sorted by name).
 * Pointers stay valid until the member is forgotten (dead_forget_ms after it
 * died or left) or memb_free(); indexes only until the next call that
 * takes a time. */
size_t memb_count(const struct memb *m);
const struct memb_member *memb_at(const struct memb *m, size_t i);
const struct memb_member *memb_find(const struct memb *m, const char *name);
const struct memb_member *memb_self(const struct memb *m);
/* Names of members that hold rooms: alive or suspect, this node included
 * (unless it left), sorted by name. Returns how many (at most max). The
 * names are borrowed, valid as the memb_at() pointers are. */
size_t memb_live(const struct memb *m, const char **names, size_t max);
/* Datagrams dropped as malformed. */
uint64_t memb_bad(const struct memb *m);

/* Counters for the stats port. */
struct memb_stats {
	uint64_t bad;	   /* datagrams dropped as malformed (memb_bad()) */
	uint64_t refused;  /* new members not taken: MEMB_MAX reached */
	uint64_t refuted;  /* times this node refuted a claim about itself */
	uint64_t sent;	   /* datagrams handed to ops->send */
	uint64_t received; /* datagrams given to memb_recv (bad ones included) */
};
void memb_stats(const struct memb *m, struct memb_stats *st);

#endif

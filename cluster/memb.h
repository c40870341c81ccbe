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
 * retransmitted gossip_mult * ceil(log2(n + 1)) times) and by a periodic full
 * state exchange with one random member, so views converge.
 *
 * Invariants: a member's (incarnation, state) only moves forward: a higher
 * incarnation wins; at equal incarnation dead/left > suspect > alive. This
 * node's own incarnation only grows: it refutes suspicion by bumping it.
 * Names are unique cluster-wide; a restarted node rejoins under its name with
 * a newer incarnation (the caller passes the start time in ms).
 */
#ifndef VROOM_CLUSTER_MEMB_H
#define VROOM_CLUSTER_MEMB_H

#include <stddef.h>
#include <stdint.h>

#define MEMB_NAME_MAX 64  /* node name */
#define MEMB_ADDR_MAX 64  /* "host:port" */
#define MEMB_MAX      1024 /* members tracked; more are refused (and counted) */
#define MEMB_DGRAM_MAX 65000 /* the largest datagram memb asks to send */

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
	uint64_t sync_interval_ms;  /* full state exchange (default 2000) */
	uint64_t dead_forget_ms;    /* drop dead/left members after (default 60000) */
};

struct memb_ops {
	/* Send buf[len] to addr ("host:port"). */
	void (*send)(void *arg, const char *addr, const uint8_t *buf, size_t len);
	/* Member m changed state (or appeared: old is -1). Also called for
	 * this node itself when it learns it is suspected and refutes (no). */
	void (*change)(void *arg, const struct memb_member *m, int old);
};

struct memb;

/* Fills c with the LAN defaults above. */
void memb_cfg_defaults(struct memb_cfg *c);

/* This node: name, cluster address, client address, incarnation (a value
 * larger than any earlier run's, e.g. the start time in ms). NULL on no
 * memory or bad arguments. ops and arg are borrowed. */
struct memb *memb_new(const char *name, const char *addr, const char *client_addr,
		      uint64_t incarnation, const struct memb_cfg *cfg, const struct memb_ops *ops,
		      void *arg);
void memb_free(struct memb *m);

/* Asks a seed for the full state (and announces this node to it). Call for
 * each seed; repeat until memb_count() > 1 if the seeds were not up yet. */
void memb_join(struct memb *m, const char *seed_addr, uint64_t now_ms);
/* Drives probes, timeouts, gossip and syncs: call at least every
 * probe_interval_ms / 4 (the node calls it every 50 ms). */
void memb_tick(struct memb *m, uint64_t now_ms);
/* A datagram from from_addr. Malformed or oversized input is dropped and
 * counted (memb_bad()), never trusted: every count is bounded first. */
void memb_recv(struct memb *m, const char *from_addr, const uint8_t *buf, size_t len,
	       uint64_t now_ms);
/* Announces a graceful leave (state LEFT) to every live member. */
void memb_leave(struct memb *m, uint64_t now_ms);

/* Members known, this node included, in a stable order (sorted by name). */
size_t memb_count(const struct memb *m);
const struct memb_member *memb_at(const struct memb *m, size_t i);
const struct memb_member *memb_find(const struct memb *m, const char *name);
const struct memb_member *memb_self(const struct memb *m);
/* Names of members that hold rooms: alive or suspect, this node included,
 * sorted by name. Returns how many (at most max). */
size_t memb_live(const struct memb *m, const char **names, size_t max);
/* Datagrams dropped as malformed. */
uint64_t memb_bad(const struct memb *m);

#endif

/*
 * clus: a node's part in the cluster: the datagram socket that carries
 * membership (sealed with the cluster key), the links to other nodes, and
 * placement: which node relays a room.
 *
 * The cluster address is one port for both: UDP for membership, TCP for
 * links. Datagrams and link messages that do not open under the key are
 * dropped and counted. Links are made on demand and remade after a failure;
 * a link whose node is declared dead or left is closed.
 */
#ifndef VROOM_NODE_CLUS_H
#define VROOM_NODE_CLUS_H

#include <stddef.h>
#include <stdint.h>

struct node;
struct clus;
struct peer;
struct memb;

struct clus_cfg {
	const char *addr;	 /* cluster address, IP:PORT */
	const char *seeds;	 /* comma-separated IP:PORT list, or NULL */
	const char *key_file;	 /* the cluster key */
	const char *name;	 /* this node's name (NULL: the cluster address) */
	const char *client_addr; /* where clients reach this node */
	unsigned replicas;	 /* relay + backups */
	uint64_t probe_interval_ms, probe_timeout_ms, suspicion_ms, sync_interval_ms;
};

/* Joins (or founds) the cluster. NULL with a reason on failure. */
struct clus *clus_new(struct node *n, const struct clus_cfg *cc, char *why, size_t whylen);
void clus_free(struct clus *c);
/* Announces a graceful leave. */
void clus_leave(struct clus *c);

/* Announces this node alive under a newer incarnation (after a stall). */
void clus_alive_again(struct clus *c);
const char *clus_self(const struct clus *c);
const struct memb *clus_memb(const struct clus *c);
unsigned clus_replicas(const struct clus *c);
/* Whether this node has seen at least one other member (or has no seeds). */
int clus_joined(const struct clus *c);

/* The room's preference list as names (relay first), at most max. */
size_t clus_placement(struct clus *c, const char *room, size_t len, const char **names,
		      size_t max);
/* The link to the room's relay, or NULL when this node is the relay. */
struct peer *clus_route(struct clus *c, const char *room, size_t len);
/* A link to the named node (made if needed), or NULL if it is unknown. */
struct peer *clus_peer(struct clus *c, const char *name);

/* Counters for the stats. */
uint64_t clus_bad_packets(const struct clus *c);
uint64_t clus_bad_links(const struct clus *c);

#endif

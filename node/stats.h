/*
 * stats: the node's stats port, an HTTP server (libevent evhttp) on the
 * node's event loop: /healthz, /stats (JSON, built with jansson), /cluster
 * (JSON: every member's summary, gathered over the node links), /metrics
 * (Prometheus text exposition) and / (a self-contained HTML dashboard that
 * polls /stats and /cluster). It also samples the node's counters every
 * second to give rates over the last few seconds, and answers the
 * NODE_STATS_REQ of other nodes with this node's summary.
 *
 * Invariant: it only reads the node (counters, rooms, connections); a
 * request is bounded in header size, body size and time, and answered from
 * the callback that received it, except /cluster: at most 16 of those wait,
 * each at most 500 ms, for the other nodes' NODE_STATS. On loopback it
 * answers only requests whose Host names a loopback address or localhost
 * (no DNS rebinding).
 */
#ifndef VROOM_NODE_STATS_H
#define VROOM_NODE_STATS_H

#include <stddef.h>

struct node;
struct peer;
struct stats;
struct wire_msg;

/* A stats server for n bound to addr (HOST:PORT; port 0 picks one); a
 * non-loopback address needs insecure. Logs "stats on HOST:PORT (http)".
 * NULL with a reason in why[whylen]. */
struct stats *stats_new(struct node *n, const char *addr, int insecure, char *why,
			size_t whylen);
/* Closes the port and frees. stats_free(NULL) is a no-op. */
void stats_free(struct stats *s);
/* The bound address, "HOST:PORT". */
const char *stats_addr(const struct stats *s);

/* Node links (node/route.c hands these over). A NODE_STATS_REQ from p:
 * answered with NODE_STATS (this node's summary, same rid), or ERROR
 * bad_request for rid 0 or a node without a stats port (n's stats may be
 * NULL). */
void stats_peer_request(struct node *n, struct peer *p, const struct wire_msg *m);
/* A NODE_STATS from p: taken if a /cluster request waits for that rid from
 * that node, else dropped. s may be NULL. */
void stats_peer_answer(struct stats *s, struct peer *p, const struct wire_msg *m);
/* An OK or ERROR from p: 1 if it answers one of our NODE_STATS_REQs (and
 * is taken), 0 if it is someone else's. s may be NULL. */
int stats_peer_error(struct stats *s, struct peer *p, const struct wire_msg *m);

#endif

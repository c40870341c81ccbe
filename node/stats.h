/*
 * stats: the node's stats port, an HTTP server (libevent evhttp) on the
 * node's event loop: /healthz, /stats (JSON, built with jansson), /metrics
 * (Prometheus text exposition) and / (a self-contained HTML dashboard that
 * polls /stats). It also samples the node's counters every second to give
 * rates over the last few seconds.
 *
 * Invariant: it only reads the node (counters, rooms, connections); a
 * request is bounded in header size, body size and time, and answered from
 * the callback that received it. On loopback it answers only requests whose
 * Host names a loopback address or localhost (no DNS rebinding).
 */
#ifndef VROOM_NODE_STATS_H
#define VROOM_NODE_STATS_H

#include <stddef.h>

struct node;
struct stats;

/* A stats server for n bound to addr (HOST:PORT; port 0 picks one); a
 * non-loopback address needs insecure. Logs "stats on HOST:PORT (http)".
 * NULL with a reason in why[whylen]. */
struct stats *stats_new(struct node *n, const char *addr, int insecure, char *why,
			size_t whylen);
/* Closes the port and frees. stats_free(NULL) is a no-op. */
void stats_free(struct stats *s);
/* The bound address, "HOST:PORT". */
const char *stats_addr(const struct stats *s);

#endif

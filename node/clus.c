#include "node/clus.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "cluster/memb.h"
#include "cluster/place.h"
#include "cluster/seal.h"
#include "node/node.h"
#include "node/park.h"
#include "node/peer.h"
#include "node/route.h"
#include "stream/addr.h"
#include "stream/wire.h"

#define TICK_MS	      50
#define JOIN_RETRY_MS 500
#define LINK_MAX_PENDING (256u << 20)
#define LINKS_IN_MAX	 (2 * MEMB_MAX) /* inbound links; each must say PEER_HELLO within 5 s */

struct link {
	struct peer *p;
	TAILQ_ENTRY(link) next;
};

struct clus {
	struct node *node;
	struct seal *seal;
	struct memb *memb;
	char self[MEMB_NAME_MAX + 1];
	char addr[MEMB_ADDR_MAX + 1];
	char *seeds;
	unsigned replicas;
	evutil_socket_t udp;
	struct event *udp_ev, *tick;
	struct evconnlistener *lev;
	struct peer_cfg pcfg;
	TAILQ_HEAD(, link) links, dead;
	struct event *reap;
	uint64_t last_join;
	int joined;
	/* Placement view: live names, sorted, and their weight seeds. The
	 * names are copied: memb's own are valid only until its next change. */
	char names[MEMB_MAX][MEMB_NAME_MAX + 1];
	const char *live[MEMB_MAX];
	uint64_t seeds_w[MEMB_MAX];
	size_t nlive;
	uint64_t bad_packets, bad_links;
	uint8_t dgram[MEMB_DGRAM_MAX + SEAL_OVERHEAD];
	uint8_t plain[MEMB_DGRAM_MAX + SEAL_OVERHEAD];
};

static uint64_t now_ms(struct clus *c)
{
	return node_now_ms(c->node);
}

static void refresh_view(struct clus *c)
{
	const char *now[MEMB_MAX];
	c->nlive = memb_live(c->memb, now, MEMB_MAX);
	uint64_t seed = seal_placement_seed(c->seal);
	for (size_t i = 0; i < c->nlive; i++) {
		snprintf(c->names[i], sizeof(c->names[i]), "%s", now[i]);
		c->live[i] = c->names[i];
		c->seeds_w[i] = place_node_seed(seed, c->live[i], strlen(c->live[i]));
	}
}

static int sockaddr_of(const char *addr, struct sockaddr_storage *ss, int *len)
{
	*len = sizeof(*ss);
	return evutil_parse_sockaddr_port(addr, (struct sockaddr *)ss, len);
}

static void on_send(void *arg, const char *addr, const uint8_t *buf, size_t len)
{
	struct clus *c = arg;
	struct sockaddr_storage ss;
	int sl;
	if (len > MEMB_DGRAM_MAX || sockaddr_of(addr, &ss, &sl) < 0)
		return;
	seal_dgram(c->seal, buf, len, c->dgram);
	(void)sendto(c->udp, c->dgram, len + SEAL_OVERHEAD, MSG_DONTWAIT, (struct sockaddr *)&ss,
		     (socklen_t)sl);
}

static void close_links_to(struct clus *c, const char *name);

static const char *state_name(int s)
{
	static const char *names[] = {"alive", "suspect", "dead", "left"};
	return s >= 0 && s <= 3 ? names[s] : "new";
}

static void on_change(void *arg, const struct memb_member *m, int old)
{
	struct clus *c = arg;
	int level = m->state == MEMB_ALIVE && old < 0 ? LOG_NOTICE : LOG_WARN;
	if (m->state == MEMB_LEFT || (m->state == MEMB_ALIVE && old != MEMB_SUSPECT))
		level = LOG_NOTICE;
	vlog(node_log(c->node), level, "member %s (%s) is %s (was %s), incarnation %llu", m->name,
	     m->addr, state_name((int)m->state), state_name(old),
	     (unsigned long long)m->incarnation);
	if (strcmp(m->name, c->self) != 0 && memb_count(c->memb) > 1)
		c->joined = 1;
	refresh_view(c);
	if (m->state == MEMB_DEAD || m->state == MEMB_LEFT)
		close_links_to(c, m->name);
	route_members_changed(c->node);
}

static void on_udp(evutil_socket_t fd, short what, void *arg)
{
	struct clus *c = arg;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		ssize_t n = recvfrom(fd, c->dgram, sizeof(c->dgram), MSG_DONTWAIT,
				     (struct sockaddr *)&ss, &sl);
		if (n < 0)
			return;
		long plen = seal_open_dgram(c->seal, c->dgram, (size_t)n, c->plain);
		char from[64] = "?";
		char host[INET6_ADDRSTRLEN] = "?";
		int port = 0;
		if (ss.ss_family == AF_INET) {
			evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host,
					 sizeof(host));
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
			snprintf(from, sizeof(from), "%s:%d", host, port);
		} else if (ss.ss_family == AF_INET6) {
			evutil_inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host,
					 sizeof(host));
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
			snprintf(from, sizeof(from), "[%s]:%d", host, port);
		}
		if (plen < 0) {
			c->bad_packets++;
			vlog(node_log(c->node), LOG_WARN,
			     "dropped a datagram from %s that does not open under the cluster key",
			     from);
			continue;
		}
		memb_recv(c->memb, from, c->plain, (size_t)plen, now_ms(c));
	}
}

static void join_seeds(struct clus *c)
{
	if (!c->seeds)
		return;
	char *list = strdup(c->seeds), *save = NULL;
	for (char *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save))
		if (strcmp(s, c->addr) != 0)
			memb_join(c->memb, s, now_ms(c));
	free(list);
	c->last_join = now_ms(c);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct clus *c = arg;
	park_check_stall(c->node, node_mono_ns());
	memb_tick(c->memb, now_ms(c));
	if (!c->joined && c->seeds && now_ms(c) - c->last_join >= JOIN_RETRY_MS)
		join_seeds(c);
}

/* ---- links ---- */

static struct link *link_of(struct clus *c, const struct peer *p)
{
	struct link *l;
	TAILQ_FOREACH(l, &c->links, next)
		if (l->p == p)
			return l;
	return NULL;
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct clus *c = arg;
	struct link *l;
	while ((l = TAILQ_FIRST(&c->dead)) != NULL) {
		TAILQ_REMOVE(&c->dead, l, next);
		peer_free(l->p);
		free(l);
	}
}

static void peer_ready(struct peer *p, void *arg)
{
	struct clus *c = arg;
	vlog(node_log(c->node), LOG_INFO, "link %s %s %s is up", peer_outgoing(p) ? "to" : "from",
	     peer_name(p), peer_addr(p));
}

static void peer_frame(struct peer *p, const struct wire_msg *m, const uint8_t *raw, size_t len,
		       void *arg)
{
	struct clus *c = arg;
	route_peer_frame(c->node, p, m, raw, len);
}

/* The member a link is (or was being made) to: by its name once known,
 * else by the address an outgoing link was made for. */
static const struct memb_member *member_of(struct clus *c, const struct peer *p)
{
	if (*peer_name(p))
		return memb_find(c->memb, peer_name(p));
	if (!peer_outgoing(p))
		return NULL;
	for (size_t i = 0; i < memb_count(c->memb); i++)
		if (strcmp(memb_at(c->memb, i)->addr, peer_addr(p)) == 0)
			return memb_at(c->memb, i);
	return NULL;
}

static void peer_gone(struct peer *p, const char *why, void *arg)
{
	struct clus *c = arg;
	struct link *l = link_of(c, p);
	if (peer_bad(p))
		c->bad_links++;
	vlog(node_log(c->node), peer_bad(p) ? LOG_WARN : LOG_INFO, "link %s %s %s closed: %s",
	     peer_outgoing(p) ? "to" : "from", *peer_name(p) ? peer_name(p) : "?", peer_addr(p),
	     why);
	route_peer_gone(c->node, p);
	if (l) {
		TAILQ_REMOVE(&c->links, l, next);
		TAILQ_INSERT_TAIL(&c->dead, l, next);
		event_active(c->reap, 0, 0);
	}
	/* Faster than probes: a member whose link reset is tried again at
	 * once, and one whose cluster port refuses the connection is dead
	 * (a live vroomd listens there). */
	const struct memb_member *m = member_of(c, p);
	if (!m || m->state >= MEMB_DEAD || strcmp(m->name, c->self) == 0)
		return;
	if (peer_refused(p)) {
		vlog(node_log(c->node), LOG_WARN, "member %s refuses connections: declared dead",
		     m->name);
		memb_declare_dead(c->memb, m->name, now_ms(c));
	} else if (peer_is_ready(p) || peer_outgoing(p)) {
		char name[MEMB_NAME_MAX + 1];
		snprintf(name, sizeof(name), "%s", m->name);
		if (!peer_refused(p) && *peer_name(p))
			clus_peer(c, name);
	}
}

static const struct peer_ops peer_ops = {peer_ready, peer_frame, peer_gone};

static void add_link(struct clus *c, struct peer *p)
{
	struct link *l = calloc(1, sizeof(*l));
	if (!l) {
		peer_free(p);
		return;
	}
	l->p = p;
	TAILQ_INSERT_TAIL(&c->links, l, next);
}

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct clus *c = arg;
	char host[INET6_ADDRSTRLEN] = "?", from[64];
	if (sa->sa_family == AF_INET) {
		evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
		snprintf(from, sizeof(from), "%s:%d", host,
			 ntohs(((struct sockaddr_in *)sa)->sin_port));
	} else {
		snprintf(from, sizeof(from), "?");
	}
	/* Links are a few per member: a flood of connections to the cluster
	 * port is refused rather than allowed to use up descriptors. */
	size_t inbound = 0;
	struct link *l;
	TAILQ_FOREACH(l, &c->links, next)
		inbound += !peer_outgoing(l->p);
	if (inbound >= LINKS_IN_MAX) {
		c->bad_links++;
		vlog(node_log(c->node), LOG_WARN, "refused a link from %s: %zu inbound links", from,
		     inbound);
		evutil_closesocket(fd);
		return;
	}
	struct peer *p = peer_accept(node_base(c->node), fd, from, &c->pcfg, &peer_ops, c);
	if (p)
		add_link(c, p);
}

static void close_links_to(struct clus *c, const char *name)
{
	struct link *l, *next;
	for (l = TAILQ_FIRST(&c->links); l; l = next) {
		next = TAILQ_NEXT(l, next);
		if (strcmp(peer_name(l->p), name) == 0)
			peer_gone(l->p, "its node is no longer a member", c);
	}
}

struct peer *clus_peer(struct clus *c, const char *name)
{
	/* One link per peer for what this node sends: its own outgoing link
	 * (named by the member's address until it is ready), even while it
	 * connects, and a link the peer made only when there is no outgoing
	 * one. Switching between two links could deliver frames in another
	 * order than they were sent: a publisher's pushes would be reordered. */
	const struct memb_member *m = memb_find(c->memb, name);
	struct link *l;
	struct peer *in = NULL;
	TAILQ_FOREACH(l, &c->links, next) {
		if (peer_is_gone(l->p))
			continue;
		if (peer_outgoing(l->p)) {
			if (m && strcmp(peer_addr(l->p), m->addr) == 0)
				return l->p;
		} else if (!in && peer_is_ready(l->p) && strcmp(peer_name(l->p), name) == 0) {
			in = l->p;
		}
	}
	if (in)
		return in;
	if (!m || m->state >= MEMB_DEAD || strcmp(name, c->self) == 0)
		return NULL;
	struct peer *p = peer_connect(node_base(c->node), m->addr, &c->pcfg, &peer_ops, c);
	if (!p)
		return NULL;
	add_link(c, p);
	return p;
}

/* ---- placement ---- */

size_t clus_placement(struct clus *c, const char *room, size_t len, const char **names,
		      size_t max)
{
	size_t order[16];
	if (max > 16)
		max = 16;
	size_t n = place_rank(c->seeds_w, c->nlive, room, len, order, max);
	for (size_t i = 0; i < n; i++)
		names[i] = c->live[order[i]];
	return n;
}

struct peer *clus_route(struct clus *c, const char *room, size_t len)
{
	const char *relay;
	if (clus_placement(c, room, len, &relay, 1) == 0 || strcmp(relay, c->self) == 0)
		return NULL;
	return clus_peer(c, relay);
}

/* ---- life ---- */

struct clus *clus_new(struct node *n, const struct clus_cfg *cc, char *why, size_t whylen)
{
	struct clus *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	c->node = n;
	c->udp = -1;
	TAILQ_INIT(&c->links);
	TAILQ_INIT(&c->dead);
	c->replicas = cc->replicas ? cc->replicas : 3;
	snprintf(c->addr, sizeof(c->addr), "%s", cc->addr);
	snprintf(c->self, sizeof(c->self), "%s", cc->name && *cc->name ? cc->name : cc->addr);
	if (cc->seeds && *cc->seeds)
		c->seeds = strdup(cc->seeds);
	if (!(c->seal = seal_load(cc->key_file, why, whylen)))
		goto fail;

	struct sockaddr_storage ss;
	int sl;
	if (sockaddr_of(cc->addr, &ss, &sl) < 0) {
		snprintf(why, whylen, "cluster address '%s' is not IP:PORT", cc->addr);
		goto fail;
	}
	c->udp = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(c->udp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (c->udp < 0 || bind(c->udp, (struct sockaddr *)&ss, (socklen_t)sl) < 0) {
		snprintf(why, whylen, "cannot bind the cluster address %s (udp): %s", cc->addr,
			 strerror(errno));
		goto fail;
	}
	c->lev = evconnlistener_new_bind(node_base(n), on_accept, c,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
					 (struct sockaddr *)&ss, sl);
	if (!c->lev) {
		snprintf(why, whylen, "cannot listen on the cluster address %s (tcp): %s", cc->addr,
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		goto fail;
	}
	c->pcfg.self = c->self;
	c->pcfg.key = seal_link_key(c->seal);
	c->pcfg.frame_max = 2 * node_cfg(n)->frame_max + 65536;
	c->pcfg.max_pending = LINK_MAX_PENDING;

	struct memb_cfg mc;
	memb_cfg_defaults(&mc);
	if (cc->probe_interval_ms) {
		mc.probe_interval_ms = cc->probe_interval_ms;
		mc.probe_timeout_ms = cc->probe_timeout_ms;
		mc.suspicion_ms = cc->suspicion_ms;
		mc.sync_interval_ms = cc->sync_interval_ms;
	}
	static const struct memb_ops mops = {on_send, on_change};
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	/* The start time in ms: a restarted node is a newer incarnation. */
	uint64_t inc = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	c->memb = memb_new(c->self, c->addr, cc->client_addr, inc, &mc, &mops, c);
	c->udp_ev = event_new(node_base(n), c->udp, EV_READ | EV_PERSIST, on_udp, c);
	c->tick = event_new(node_base(n), -1, EV_PERSIST, on_tick, c);
	c->reap = event_new(node_base(n), -1, 0, on_reap, c);
	if (!c->memb || !c->udp_ev || !c->tick || !c->reap) {
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	refresh_view(c);
	event_add(c->udp_ev, NULL);
	struct timeval tv = {0, TICK_MS * 1000};
	event_add(c->tick, &tv);
	join_seeds(c);
	if (!c->seeds)
		c->joined = 1;
	vlog(node_log(n), LOG_NOTICE, "node %s in the cluster on %s (udp+tcp), %u replicas%s%s",
	     c->self, c->addr, c->replicas, c->seeds ? ", seeds " : "", c->seeds ? c->seeds : "");
	return c;
fail:
	clus_free(c);
	return NULL;
}

void clus_free(struct clus *c)
{
	if (!c)
		return;
	struct link *l;
	while ((l = TAILQ_FIRST(&c->links)) != NULL) {
		TAILQ_REMOVE(&c->links, l, next);
		peer_free(l->p);
		free(l);
	}
	if (c->reap) {
		on_reap(-1, 0, c);
		event_free(c->reap);
	}
	if (c->lev)
		evconnlistener_free(c->lev);
	if (c->udp_ev)
		event_free(c->udp_ev);
	if (c->tick)
		event_free(c->tick);
	if (c->udp >= 0)
		close(c->udp);
	memb_free(c->memb);
	seal_free(c->seal);
	free(c->seeds);
	free(c);
}

void clus_alive_again(struct clus *c)
{
	memb_alive_again(c->memb, now_ms(c));
}

void clus_leave(struct clus *c)
{
	memb_leave(c->memb, now_ms(c));
}

const char *clus_self(const struct clus *c)
{
	return c->self;
}

const struct memb *clus_memb(const struct clus *c)
{
	return c->memb;
}

unsigned clus_replicas(const struct clus *c)
{
	return c->replicas;
}

int clus_joined(const struct clus *c)
{
	return c->joined;
}

uint64_t clus_bad_packets(const struct clus *c)
{
	return c->bad_packets + memb_bad(c->memb);
}

uint64_t clus_bad_links(const struct clus *c)
{
	return c->bad_links;
}

#include "node/stats.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <jansson.h>

#include "dashboard_html.h" /* dashboard_html[], generated from node/dashboard.html */
#include "node/conn.h"
#include "node/guard.h"
#include "cluster/memb.h"
#include "node/clus.h"
#include "node/node.h"
#include "node/peer.h"
#include "node/route.h"
#include "stream/addr.h"
#include "stream/room.h"
#include "stream/strm.h"
#include "stream/wire.h"
#include "vroom_version.h"

#define SAMPLES	      6	     /* one a second: rates over the last 5 s */
#define ROOMS_LISTED  100    /* /stats lists the most recently active rooms */
#define ID_PREFIX     6	     /* characters of a room id shown (the id is its key) */
#define MAX_HEADERS   8192   /* bytes of request line and headers */
#define MAX_BODY      1024   /* GET and HEAD only: no body expected */
#define TIMEOUT_S     10     /* a request must arrive and be answered in this */
#define SUMMARY_ROOMS 20     /* rooms in a node's summary (NODE_STATS, /cluster) */
#define ASKS_MAX      16     /* /cluster requests waiting for other nodes at once */
#define ASK_WAIT_MS   500    /* how long /cluster waits for the other nodes */

/* A summary (at most WIRE_NODE_STATS_MAX bytes) in a NODE_STATS frame fits
 * the smallest node-link frame limit, 2 x WIRE_FRAME_MIN_MAX + 64 KiB
 * (node/clus.c), with room for [type, rid] and the bin header. */
_Static_assert(WIRE_NODE_STATS_MAX + 32 <= 2 * WIRE_FRAME_MIN_MAX + 65536,
	       "a NODE_STATS frame must fit every node link");

/* One member's part of a /cluster answer. */
struct ask_node {
	char name[MEMB_NAME_MAX + 1];
	const char *state; /* static: the member's state as this node sees it */
	int self, ask;	   /* this node; a member to ask (alive or suspect) */
	uint64_t rid;	   /* the NODE_STATS_REQ's rid while its answer is awaited, else 0 */
	json_t *summary;   /* the node's summary once it came, else NULL */
	char error[200];   /* why there is no summary */
};

/* A /cluster request waiting for the summaries of the other nodes.
 * Invariant: it is on its stats' list from its start until it is answered,
 * and `waiting` counts the nodes whose rid is not 0. */
struct ask {
	struct stats *s;
	struct evhttp_request *req;	 /* NULL: libevent freed it with its connection */
	struct evhttp_connection *evcon; /* its close callback points here; NULL once closed */
	struct event *timer;		 /* the deadline (also made active to end early) */
	size_t n, waiting;
	TAILQ_ENTRY(ask) next;
	struct ask_node nodes[];
};

/* The counters rates are computed from. */
struct sample {
	uint64_t t_ns;
	uint64_t frames_in, frames_out, bytes_in, bytes_out, pushes, deliveries;
};

struct stats {
	struct node *node;
	struct evhttp *http;
	struct event *tick;
	int loopback; /* bound to a loopback address: check Host */
	uint64_t started_ns;
	struct sample ring[SAMPLES];
	size_t next, count;
	char addr[80];
	TAILQ_HEAD(, ask) asks; /* /cluster requests waiting for answers */
	size_t nasks;
};

static void take(struct stats *s, struct sample *out)
{
	const struct node_counters *k = node_counters(s->node);
	out->t_ns = node_mono_ns();
	out->frames_in = k->frames_in;
	out->frames_out = k->frames_out;
	out->bytes_in = k->bytes_in;
	out->bytes_out = k->bytes_out;
	out->pushes = k->pushes;
	out->deliveries = k->deliveries;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct stats *s = arg;
	take(s, &s->ring[s->next]);
	s->next = (s->next + 1) % SAMPLES;
	if (s->count < SAMPLES)
		s->count++;
}

/* ---------------------------------------------------------------- /stats */

static json_t *member_self(struct stats *s)
{
	struct node *n = s->node;
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:b}", "id", node_id(n), "name",
			 node_id(n), "address", node_addr(n), "stats_address", s->addr, "state",
			 node_draining(n) ? "leaving" : "alive", "incarnation", (json_int_t)0,
			 "self", 1);
}

/* The members as this node sees them: itself alone without a cluster. */
static json_t *members_json(struct stats *s)
{
	struct clus *cl = node_clus(s->node);
	json_t *list = json_array();
	if (!cl) {
		json_array_append_new(list, member_self(s));
		return list;
	}
	static const char *states[] = {"alive", "suspect", "dead", "left"};
	const struct memb *m = clus_memb(cl);
	for (size_t i = 0; i < memb_count(m); i++) {
		const struct memb_member *mm = memb_at(m, i);
		int self = strcmp(mm->name, clus_self(cl)) == 0;
		json_array_append_new(
			list, json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:b}", "id", mm->name, "name",
					mm->name, "address", mm->client_addr, "cluster_address",
					mm->addr, "state",
					self && node_draining(s->node) ? "leaving"
								       : states[mm->state & 3],
					"incarnation", (json_int_t)mm->incarnation, "self", self));
	}
	return list;
}

static json_t *room_json(struct node *n, const struct room *r, uint64_t now_ms)
{
	char prefix[ID_PREFIX + 1];
	snprintf(prefix, sizeof(prefix), "%s", room_id(r));
	uint64_t active = room_last_active(r);
	struct clus *cl = node_clus(n);
	const char *names[16];
	size_t k = cl ? clus_placement(cl, room_id(r), ROOM_ID_LEN, names, clus_replicas(cl)) : 0;
	json_t *backups = json_array();
	for (size_t i = 1; i < k; i++)
		json_array_append_new(backups, json_string(names[i]));
	uint64_t local = 0, remote = 0;
	for (const struct room_sub *sub = room_subs(r); sub; sub = room_sub_next(sub))
		if (room_sub_is_peer(sub))
			remote += room_sub_weight(sub);
		else
			local++;
	return json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}",
			 "id_prefix", prefix, "owner", room_owner(r), "relay",
			 cl ? clus_self(cl) : node_id(n), "backups", backups, "subscribers_local",
			 (json_int_t)local, "subscribers_remote", (json_int_t)remote, "pushes",
			 (json_int_t)room_msgs(r),
			 "bytes", (json_int_t)room_bytes(r), "streams_open",
			 (json_int_t)room_streams(r), "epoch", (json_int_t)0, "seq",
			 (json_int_t)room_seq(r), "idle_s",
			 now_ms > active ? (double)(now_ms - active) / 1000.0 : 0.0);
}

static double rate(uint64_t now, uint64_t then, double secs)
{
	return secs > 0 && now >= then ? (double)(now - then) / secs : 0.0;
}

static json_t *rates_json(struct stats *s)
{
	struct sample now, then;
	take(s, &now);
	if (s->count == 0) {
		memset(&then, 0, sizeof(then));
		then.t_ns = s->started_ns;
	} else {
		/* the oldest sample kept */
		then = s->ring[s->count < SAMPLES ? 0 : s->next];
	}
	double secs = (double)(now.t_ns - then.t_ns) / 1e9;
	return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "window_s", secs,
			 "frames_in_per_s", rate(now.frames_in, then.frames_in, secs),
			 "frames_out_per_s", rate(now.frames_out, then.frames_out, secs),
			 "bytes_in_per_s", rate(now.bytes_in, then.bytes_in, secs),
			 "bytes_out_per_s", rate(now.bytes_out, then.bytes_out, secs),
			 "pushes_per_s", rate(now.pushes, then.pushes, secs),
			 "deliveries_per_s", rate(now.deliveries, then.deliveries, secs));
}

static json_t *latency_json(const struct node_counters *k)
{
	json_t *buckets = json_array();
	for (size_t i = 0; i < NODE_LAT_BUCKETS; i++) {
		uint64_t bound = node_lat_bound_us(i);
		json_array_append_new(buckets,
				      json_pack("{s:o, s:I}", "le_us",
						bound ? json_integer((json_int_t)bound) : json_null(),
						"count", (json_int_t)k->lat_bucket[i]));
	}
	return json_pack("{s:s, s:I, s:f, s:o}", "measured",
			 "read callback start to DELIVER queued on the subscriber's output",
			 "count", (json_int_t)k->lat_count, "sum_s", (double)k->lat_sum_ns / 1e9,
			 "buckets", buckets);
}

static char *stats_text(struct stats *s)
{
	struct node *n = s->node;
	const struct node_counters *k = node_counters(n);
	const struct cfg *c = node_cfg(n);
	uint64_t now_ms = node_now_ms(n);

	json_t *list = json_array();
	size_t listed = 0;
	for (struct room *r = rooms_recent(node_rooms(n)); r && listed < ROOMS_LISTED;
	     r = room_older(r), listed++)
		json_array_append_new(list, room_json(n, r, now_ms));

	json_t *root = json_pack(
		"{s:{s:s, s:s, s:s, s:s, s:s, s:s, s:f},"
		" s:o,"
		" s:{s:I, s:I, s:I, s:I},"
		" s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I},"
		" s:o,"
		" s:{s:I, s:I, s:o},"
		" s:{s:I, s:I, s:I, s:I},"
		" s:I, s:I, s:I,"
		" s:{s:I, s:I, s:I},"
		" s:o}",
		"node", "id", node_id(n), "name",
		node_clus(n) ? clus_self(node_clus(n)) : node_id(n), "version", VROOM_VERSION, "address",
		node_addr(n), "stats_address", s->addr, "state",
		node_draining(n) ? "draining" : "serving", "uptime_s",
		(double)(node_mono_ns() - s->started_ns) / 1e9,
		"members", members_json(s),
		"connections", "open", (json_int_t)conns_count(node_conns(n)), "max",
		(json_int_t)c->max_conns, "accepted", (json_int_t)k->conns_accepted, "rejected",
		(json_int_t)k->conns_rejected,
		"traffic", "frames_in", (json_int_t)k->frames_in, "frames_out",
		(json_int_t)k->frames_out, "bytes_in", (json_int_t)k->bytes_in, "bytes_out",
		(json_int_t)k->bytes_out, "pushes", (json_int_t)k->pushes, "deliveries",
		(json_int_t)k->deliveries, "delivered_bytes", (json_int_t)k->delivered_bytes,
		"stream_bytes", (json_int_t)k->stream_bytes,
		"rates", rates_json(s),
		"rooms", "count", (json_int_t)rooms_count(node_rooms(n)), "listed",
		(json_int_t)listed, "list", list,
		"streams", "open", (json_int_t)strms_count(node_strms(n)), "opened",
		(json_int_t)k->streams_opened, "ended", (json_int_t)k->streams_ended, "timeouts",
		(json_int_t)k->stream_timeouts,
		"slow_consumer_disconnects", (json_int_t)k->slow_consumers, "failovers",
		(json_int_t)k->failovers, "limits_hit", (json_int_t)k->limits_hit,
		"errors", "sent", (json_int_t)k->errors_sent, "bad_frames",
		(json_int_t)k->bad_frames, "hello_timeouts", (json_int_t)k->hello_timeouts,
		"delivery_latency", latency_json(k));
	if (!root)
		return NULL;
	/* tokens and abuse limits (node/guard.c; docs/protocol.md "Limits") */
	json_object_set_new(root, "guard", json_pack(
		"{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
		"tokens_required", guard_keys(node_guard(n)) != NULL,
		"auth_failures", (json_int_t)k->auth_failures,
		"hello_failures", (json_int_t)k->hello_failures,
		"hello_refused", (json_int_t)k->hello_refused,
		"tokens_expired", (json_int_t)k->tokens_expired,
		"grant_refusals", (json_int_t)k->grant_refusals,
		"limit_conns", (json_int_t)k->limit_conns,
		"limit_frame", (json_int_t)k->limit_frame,
		"limit_rooms", (json_int_t)k->limit_rooms,
		"limit_owner", (json_int_t)k->limit_owner,
		"limit_subs", (json_int_t)k->limit_subs,
		"limit_streams", (json_int_t)k->limit_streams,
		"rate_limited", (json_int_t)k->rate_limited));
	char *text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	return text;
}

/* ---------------------------------------------------------------- /metrics */

static void metric(struct evbuffer *b, const char *name, const char *type, const char *help,
		   uint64_t v)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type,
			    name, (unsigned long long)v);
}

#define COUNTER(name, help, v) metric(b, "vroom_" name "_total", "counter", help, v)
#define GAUGE(name, help, v)   metric(b, "vroom_" name, "gauge", help, v)

static void metrics_text(struct stats *s, struct evbuffer *b)
{
	struct node *n = s->node;
	const struct node_counters *k = node_counters(n);

	evbuffer_add_printf(b,
			    "# HELP vroom_build_info The running vroomd: version and node id.\n"
			    "# TYPE vroom_build_info gauge\n"
			    "vroom_build_info{version=\"%s\",node=\"%s\"} 1\n",
			    VROOM_VERSION, node_id(n));
	evbuffer_add_printf(b,
			    "# HELP vroom_uptime_seconds Seconds since the node started.\n"
			    "# TYPE vroom_uptime_seconds gauge\n"
			    "vroom_uptime_seconds %.3f\n",
			    (double)(node_mono_ns() - s->started_ns) / 1e9);
	GAUGE("draining", "1 while the node drains after SIGTERM, else 0.", node_draining(n) != 0);
	GAUGE("cluster_members", "Members of the cluster as this node sees them (itself included).",
	      node_clus(n) ? memb_count(clus_memb(node_clus(n))) : 1);
	GAUGE("cluster_mirrors", "Rooms relayed by other nodes that have subscribers here.",
	      route_mirrors(n));
	COUNTER("cluster_bad_packets", "Cluster datagrams dropped: not sealed with the cluster key, or malformed.",
		node_clus(n) ? clus_bad_packets(node_clus(n)) : 0);
	COUNTER("cluster_bad_links", "Node links dropped for a bad key, a bad handshake or a bad frame.",
		node_clus(n) ? clus_bad_links(node_clus(n)) : 0);
	COUNTER("forwarded", "Client requests sent on to the relay of their room on another node.",
		k->forwarded);
	COUNTER("duplicate_replies", "Relays' answers dropped because the request they answer was answered already (sent again after a failover).",
		k->dup_replies);
	COUNTER("parked", "Requests held for a room about to be relayed here (a takeover or a hand-over in progress).",
		k->parked);
	COUNTER("park_timeouts", "Held requests handled at their deadline, the room not having come.",
		k->park_timeouts);
	COUNTER("replication_ack_timeouts", "Pushes delivered without their room's first backup acknowledging them within 2 s.",
		k->repl_ack_timeouts);
	COUNTER("stepdowns", "Rooms this node stopped relaying on hearing that another node relays them under a newer epoch.",
		k->stepdowns);
	COUNTER("stalls", "Event loop stalls longer than the suspicion timeout (a frozen process): the node fenced its rooms.",
		k->stalls);
	GAUGE("connections", "Client connections open now.", conns_count(node_conns(n)));
	GAUGE("connections_max", "The max_conns limit.", node_cfg(n)->max_conns);
	GAUGE("rooms", "Rooms on this node now.", rooms_count(node_rooms(n)));
	GAUGE("streams_open", "Byte streams open now.", strms_count(node_strms(n)));

	COUNTER("connections_accepted", "Client connections accepted.", k->conns_accepted);
	COUNTER("connections_rejected", "Client connections refused (max_conns or draining).",
		k->conns_rejected);
	COUNTER("frames_received", "Frames (messages) read from clients.", k->frames_in);
	COUNTER("frames_sent", "Frames (messages) queued to clients.", k->frames_out);
	COUNTER("received_bytes", "Bytes of frames read from clients.", k->bytes_in);
	COUNTER("sent_bytes", "Bytes of frames queued to clients.", k->bytes_out);
	COUNTER("pushes", "Pushes accepted.", k->pushes);
	COUNTER("deliveries", "Pushes handed to subscribers (one per subscriber).", k->deliveries);
	COUNTER("delivered_bytes", "Payload bytes handed to subscribers.", k->delivered_bytes);
	COUNTER("errors_sent", "Error replies sent.", k->errors_sent);
	COUNTER("bad_frames", "Malformed frames received (the connection is closed).",
		k->bad_frames);
	COUNTER("hello_timeouts", "Connections closed for not saying HELLO in time.",
		k->hello_timeouts);
	COUNTER("slow_consumer_disconnects",
		"Connections dropped as slow consumers (max_pending or slow_timeout).",
		k->slow_consumers);
	COUNTER("limits_hit", "Requests refused at a limit (max_conns, max_subs, max_grants, "
		"max_streams).", k->limits_hit);
	COUNTER("rooms_created", "Rooms created.", k->rooms_created);
	COUNTER("rooms_removed", "Rooms removed by their owner.", k->rooms_removed);
	COUNTER("rooms_expired", "Rooms destroyed after room_idle_timeout.", k->rooms_expired);
	COUNTER("streams_opened", "Byte streams opened.", k->streams_opened);
	COUNTER("streams_ended", "Byte streams ended (closed, aborted or timed out).",
		k->streams_ended);
	COUNTER("stream_timeouts", "Byte streams ended by stream_idle_timeout.",
		k->stream_timeouts);
	COUNTER("stream_bytes", "Byte-stream payload bytes accepted.", k->stream_bytes);
	COUNTER("failovers", "Rooms this node took over from a failed relay.", k->failovers);
	/* tokens and abuse limits (node/guard.c) */
	COUNTER("auth_failures", "HELLOs refused with auth (token or identity).", k->auth_failures);
	COUNTER("hello_failures", "Connections the node ended before HELLO succeeded.",
		k->hello_failures);
	COUNTER("hello_refused", "Connections refused: source over max_hello_failures.",
		k->hello_refused);
	COUNTER("tokens_expired", "Sessions closed when their token expired.", k->tokens_expired);
	COUNTER("grant_refusals", "Requests refused by a token's grants.", k->grant_refusals);
	COUNTER("limit_conns", "Connections refused at max_conns.", k->limit_conns);
	COUNTER("limit_frame", "Frames refused over frame_max.", k->limit_frame);
	COUNTER("limit_rooms", "CREATEs refused at max_rooms.", k->limit_rooms);
	COUNTER("limit_owner", "CREATEs refused at max_rooms_per_identity.", k->limit_owner);
	COUNTER("limit_subs", "SUBSCRIBEs refused at max_subs.", k->limit_subs);
	COUNTER("limit_streams", "STREAM_OPENs refused at max_streams.", k->limit_streams);
	COUNTER("rate_limited", "Reads that found the max_in_rate bucket empty.", k->rate_limited);

	evbuffer_add_printf(b,
			    "# HELP vroom_delivery_latency_seconds Time from the start of the read "
			    "callback holding a push to its delivery queued on a subscriber's "
			    "output.\n"
			    "# TYPE vroom_delivery_latency_seconds histogram\n");
	uint64_t cum = 0;
	for (size_t i = 0; i < NODE_LAT_BUCKETS; i++) {
		uint64_t bound = node_lat_bound_us(i);
		cum += k->lat_bucket[i];
		if (bound)
			evbuffer_add_printf(b, "vroom_delivery_latency_seconds_bucket{le=\"%g\"} %llu\n",
					    (double)bound / 1e6, (unsigned long long)cum);
		else
			evbuffer_add_printf(b,
					    "vroom_delivery_latency_seconds_bucket{le=\"+Inf\"} %llu\n",
					    (unsigned long long)cum);
	}
	evbuffer_add_printf(b,
			    "vroom_delivery_latency_seconds_sum %.9f\n"
			    "vroom_delivery_latency_seconds_count %llu\n",
			    (double)k->lat_sum_ns / 1e9, (unsigned long long)k->lat_count);
}

/* ---------------------------------------------------------------- HTTP */

/* Whether host (a Host header without its port) names this machine by a
 * loopback address or as localhost. */
static int loopback_host(const char *hdr)
{
	char host[128];
	size_t len;
	if (hdr[0] == '[') {
		const char *end = strchr(hdr, ']');
		if (!end)
			return 0;
		len = (size_t)(end - hdr - 1);
		hdr++;
	} else {
		const char *colon = strrchr(hdr, ':');
		len = colon ? (size_t)(colon - hdr) : strlen(hdr);
	}
	if (len == 0 || len >= sizeof(host))
		return 0;
	memcpy(host, hdr, len);
	host[len] = '\0';
	if (strcasecmp(host, "localhost") == 0)
		return 1;
	struct in_addr a4;
	struct in6_addr a6;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return 0;
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *type,
		  struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	evhttp_send_reply(req, code, reason, body);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	evbuffer_add(b, text, strlen(text));
	reply(req, code, reason, "text/plain; charset=utf-8", b);
	evbuffer_free(b);
}

/* ---------------------------------------------------------------- /cluster */

/* This node's summary: what the dashboard shows of each node. The room list
 * holds at most max_rooms, the most recently active first. */
static json_t *summary_json(struct stats *s, size_t max_rooms)
{
	struct node *n = s->node;
	const struct node_counters *k = node_counters(n);
	uint64_t now_ms = node_now_ms(n);
	json_t *list = json_array();
	size_t listed = 0;
	for (struct room *r = rooms_recent(node_rooms(n)); r && listed < max_rooms;
	     r = room_older(r), listed++)
		json_array_append_new(list, room_json(n, r, now_ms));
	return json_pack(
	    "{s:s, s:s, s:s, s:s, s:s, s:f, s:{s:I, s:I}, s:I, s:o,"
	    " s:{s:I, s:I, s:o}, s:I, s:I, s:I}",
	    "id", node_id(n), "name", node_clus(n) ? clus_self(node_clus(n)) : node_id(n),
	    "version", VROOM_VERSION, "address", node_addr(n), "state",
	    node_draining(n) ? "draining" : "serving", "uptime_s",
	    (double)(node_mono_ns() - s->started_ns) / 1e9, "connections", "open",
	    (json_int_t)conns_count(node_conns(n)), "max", (json_int_t)node_cfg(n)->max_conns,
	    "streams_open", (json_int_t)strms_count(node_strms(n)), "rates", rates_json(s), "rooms",
	    "count", (json_int_t)rooms_count(node_rooms(n)), "listed", (json_int_t)listed, "list",
	    list, "slow_consumer_disconnects", (json_int_t)k->slow_consumers, "failovers",
	    (json_int_t)k->failovers, "limits_hit", (json_int_t)k->limits_hit);
}

/* The summary as compact JSON of at most WIRE_NODE_STATS_MAX bytes: rooms
 * are left off the end of the list (half at a time) until it fits. NULL on
 * no memory. */
static char *summary_text(struct stats *s, size_t *len)
{
	json_t *root = summary_json(s, SUMMARY_ROOMS);
	if (!root)
		return NULL;
	json_t *rooms = json_object_get(root, "rooms");
	json_t *list = json_object_get(rooms, "list");
	char *text;
	while ((text = json_dumps(root, JSON_COMPACT)) != NULL &&
	       strlen(text) > WIRE_NODE_STATS_MAX && json_array_size(list) > 0) {
		free(text);
		size_t keep = json_array_size(list) / 2;
		while (json_array_size(list) > keep)
			json_array_remove(list, json_array_size(list) - 1);
		json_object_set_new(rooms, "listed", json_integer((json_int_t)keep));
	}
	json_decref(root);
	if (text && strlen(text) > WIRE_NODE_STATS_MAX) {
		free(text); /* names and the version are bounded: cannot happen */
		return NULL;
	}
	if (text)
		*len = strlen(text);
	return text;
}

void stats_peer_request(struct node *n, struct peer *p, const struct wire_msg *m)
{
	struct stats *s = node_stats(n);
	struct wire_buf *b = node_scratch(n);
	if (m->rid == 0) {
		vlog(node_log(n), LOG_WARN, "link %s: NODE_STATS_REQ with request id 0 refused",
		     peer_name(p));
		wire_enc_error(b, 0, WIRE_E_BAD_REQUEST,
			       "NODE_STATS_REQ needs a request id other than 0 to answer to");
	} else if (!s) {
		wire_enc_error(b, m->rid, WIRE_E_BAD_REQUEST,
			       "this node serves no stats (stats = off)");
	} else {
		size_t len = 0;
		char *text = summary_text(s, &len);
		if (!text) {
			wire_enc_error(b, m->rid, WIRE_E_INTERNAL,
				       "out of memory for the node's summary");
		} else {
			msgpack_packer *pk = wire_begin(b, WIRE_NODE_STATS, m->rid, 1);
			wire_pack_bin(pk, text, len);
			wire_end(b, 0);
			free(text);
		}
	}
	peer_send(p, b->p, b->len);
}

/* The member and ask waiting for this rid from this link's node, if any. */
static struct ask_node *waiting_for(struct stats *s, const struct peer *p, uint64_t rid,
				    struct ask **of)
{
	struct ask *a;
	if (!s || rid == 0)
		return NULL;
	TAILQ_FOREACH(a, &s->asks, next)
		for (size_t i = 0; i < a->n; i++)
			if (a->nodes[i].rid == rid && strcmp(a->nodes[i].name, peer_name(p)) == 0) {
				*of = a;
				return &a->nodes[i];
			}
	return NULL;
}

/* Copies at most dstlen - 1 bytes of printable ASCII from src (others
 * become '?'), so that a peer's text is always a valid JSON string. */
static void copy_text(char *dst, size_t dstlen, const char *src, size_t len)
{
	size_t i;
	for (i = 0; i < len && i + 1 < dstlen; i++)
		dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
	dst[i] = '\0';
}

static void ask_got(struct ask *a, struct ask_node *an)
{
	an->rid = 0;
	if (--a->waiting == 0)
		event_active(a->timer, EV_TIMEOUT, 1); /* answer after this callback */
}

void stats_peer_answer(struct stats *s, struct peer *p, const struct wire_msg *m)
{
	struct ask *a = NULL;
	struct ask_node *an = waiting_for(s, p, m->rid, &a);
	if (!an)
		return; /* after the deadline, or never asked: nothing waits for it */
	const struct wire_str *t = &m->f[0].s;
	json_error_t jerr;
	if (t->len > WIRE_NODE_STATS_MAX) {
		snprintf(an->error, sizeof(an->error),
			 "its summary is %u bytes, over the limit of %u", (unsigned)t->len,
			 (unsigned)WIRE_NODE_STATS_MAX);
	} else if (!(an->summary = json_loadb(t->ptr, t->len, JSON_REJECT_DUPLICATES, &jerr))) {
		char why[sizeof(jerr.text)];
		copy_text(why, sizeof(why), jerr.text, strlen(jerr.text));
		snprintf(an->error, sizeof(an->error), "its summary is not JSON: %s", why);
	} else if (!json_is_object(an->summary)) {
		json_decref(an->summary);
		an->summary = NULL;
		snprintf(an->error, sizeof(an->error), "its summary is not a JSON object");
	}
	ask_got(a, an);
}

int stats_peer_error(struct stats *s, struct peer *p, const struct wire_msg *m)
{
	struct ask *a = NULL;
	struct ask_node *an = waiting_for(s, p, m->rid, &a);
	if (!an)
		return 0;
	if (m->type == WIRE_ERROR) {
		char msg[120];
		copy_text(msg, sizeof(msg), m->f[1].s.ptr, m->f[1].s.len);
		snprintf(an->error, sizeof(an->error), "it answered %s: %s",
			 wire_err_name((int)m->f[0].u), msg);
	} else {
		snprintf(an->error, sizeof(an->error), "it answered OK, not NODE_STATS");
	}
	ask_got(a, an);
	return 1;
}

static json_t *ask_entry(const struct ask_node *an)
{
	json_t *e =
	    json_pack("{s:s, s:s, s:b}", "name", an->name, "state", an->state, "self", an->self);
	if (!e)
		return NULL;
	if (an->summary) {
		json_object_set_new(e, "ok", json_true());
		json_object_set(e, "summary", an->summary);
	} else {
		json_object_set_new(e, "ok", json_false());
		json_object_set_new(e, "error", json_string(an->error));
	}
	return e;
}

static void ask_free(struct ask *a)
{
	for (size_t i = 0; i < a->n; i++)
		json_decref(a->nodes[i].summary);
	if (a->timer)
		event_free(a->timer);
	free(a);
}

/* Answers the request (if its connection is still there, else only frees
 * it) and forgets the ask. code 200: the nodes as they are; else a short
 * text (the stats port is closing). */
static void ask_finish(struct ask *a, int code)
{
	struct stats *s = a->s;
	TAILQ_REMOVE(&s->asks, a, next);
	s->nasks--;
	if (a->evcon)
		evhttp_connection_set_closecb(a->evcon, NULL, NULL);
	if (a->req && code != 200) {
		reply_text(a->req, code, "Service Unavailable", "the stats port is closing\n");
	} else if (a->req) {
		json_t *list = json_array();
		for (size_t i = 0; i < a->n; i++) {
			if (a->nodes[i].rid)
				snprintf(a->nodes[i].error, sizeof(a->nodes[i].error),
					 "no answer in %d ms", ASK_WAIT_MS);
			json_array_append_new(list, ask_entry(&a->nodes[i]));
		}
		json_t *root = json_pack("{s:s, s:I, s:o}", "self", a->nodes[0].name, "wait_ms",
					 (json_int_t)ASK_WAIT_MS, "nodes", list);
		char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
		json_decref(root);
		struct evbuffer *b = text ? evbuffer_new() : NULL;
		if (b) {
			evbuffer_add(b, text, strlen(text));
			evbuffer_add(b, "\n", 1);
			reply(a->req, 200, "OK", "application/json", b);
			evbuffer_free(b);
		} else {
			evhttp_send_error(a->req, 500, "out of memory");
		}
		free(text);
	}
	ask_free(a);
}

static void on_ask_timer(evutil_socket_t fd, short what, void *arg)
{
	ask_finish(arg, 200);
}

/* The client closed the connection before the answer (or the server is being
 * freed). In the first case libevent has detached the request and leaves it
 * to us: answering it only frees it. In the second the request goes with
 * its connection. Either way the ask ends after this callback. */
static void on_ask_closed(struct evhttp_connection *evcon, void *arg)
{
	struct ask *a = arg;
	if (a->req && evhttp_request_get_connection(a->req) == evcon)
		a->req = NULL;
	a->evcon = NULL;
	vlog(node_log(a->s->node), LOG_INFO,
	     "a /cluster request's connection closed before its answer");
	event_active(a->timer, EV_TIMEOUT, 1);
}

static void cluster_request(struct stats *s, struct evhttp_request *req)
{
	struct node *n = s->node;
	struct clus *cl = node_clus(n);
	if (s->nasks >= ASKS_MAX) {
		reply_text(req, 503, "Service Unavailable",
			   "too many /cluster requests are waiting for other nodes; try again\n");
		return;
	}
	size_t total = cl ? memb_count(clus_memb(cl)) : 1;
	struct ask *a = calloc(1, sizeof(*a) + (total ? total : 1) * sizeof(a->nodes[0]));
	json_t *self = summary_json(s, SUMMARY_ROOMS);
	if (!a || !self || !(a->timer = evtimer_new(node_base(n), on_ask_timer, a))) {
		json_decref(self);
		if (a)
			ask_free(a);
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	a->s = s;
	a->req = req;
	/* This node first, then the members in the order memb keeps them. The
	 * names are copied before anything is sent: memb's own are valid only
	 * until its next change, which a failing link may cause. */
	struct ask_node *me = &a->nodes[a->n++];
	snprintf(me->name, sizeof(me->name), "%s", cl ? clus_self(cl) : node_id(n));
	me->state = node_draining(n) ? "leaving" : "alive";
	me->self = 1;
	me->summary = self;
	static const char *states[] = {"alive", "suspect", "dead", "left"};
	for (size_t i = 0; cl && i < total; i++) {
		const struct memb_member *mm = memb_at(clus_memb(cl), i);
		if (strcmp(mm->name, clus_self(cl)) == 0)
			continue;
		struct ask_node *an = &a->nodes[a->n++];
		snprintf(an->name, sizeof(an->name), "%s", mm->name);
		an->state = states[mm->state & 3];
		an->ask = mm->state == MEMB_ALIVE || mm->state == MEMB_SUSPECT;
		if (!an->ask)
			snprintf(an->error, sizeof(an->error), "not asked: the member is %s",
				 an->state);
	}
	TAILQ_INSERT_TAIL(&s->asks, a, next);
	s->nasks++;
	for (size_t i = 1; i < a->n; i++) {
		struct ask_node *an = &a->nodes[i];
		if (!an->ask)
			continue;
		struct peer *p = clus_peer(cl, an->name);
		if (!p) {
			snprintf(an->error, sizeof(an->error), "no link to the member");
			continue;
		}
		uint64_t rid = route_new_rid(n);
		struct wire_buf *b = node_scratch(n);
		wire_begin(b, WIRE_NODE_STATS_REQ, rid, 0);
		wire_end(b, 0);
		if (peer_send(p, b->p, b->len) < 0) {
			snprintf(an->error, sizeof(an->error), "the link to the member failed");
			continue;
		}
		an->rid = rid;
		a->waiting++;
	}
	if (a->waiting == 0) {
		ask_finish(a, 200);
		return;
	}
	a->evcon = evhttp_request_get_connection(req);
	if (a->evcon)
		evhttp_connection_set_closecb(a->evcon, on_ask_closed, a);
	struct timeval tv = {0, ASK_WAIT_MS * 1000};
	evtimer_add(a->timer, &tv);
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct stats *s = arg;
	const char *hosthdr = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
	if (s->loopback && hosthdr && !loopback_host(hosthdr)) {
		reply_text(req, 403, "Forbidden",
			   "this stats port answers only Host: localhost or a loopback address\n");
		return;
	}
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *path = u ? evhttp_uri_get_path(u) : NULL;
	if (!path) {
		reply_text(req, 400, "Bad Request", "no path\n");
		return;
	}
	if (strcmp(path, "/healthz") == 0) {
		/* 503 while draining, and in a cluster until this node has
		 * seen another member (clus_joined). */
		struct clus *cl = node_clus(s->node);
		if (node_draining(s->node))
			reply_text(req, 503, "Service Unavailable", "draining\n");
		else if (cl && !clus_joined(cl))
			reply_text(req, 503, "Service Unavailable", "joining\n");
		else
			reply_text(req, 200, "OK", "ok\n");
		return;
	}
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, 500, "out of memory");
		return;
	}
	if (strcmp(path, "/stats") == 0) {
		char *text = stats_text(s);
		if (!text) {
			evbuffer_free(b);
			evhttp_send_error(req, 500, "out of memory");
			return;
		}
		evbuffer_add(b, text, strlen(text));
		evbuffer_add(b, "\n", 1);
		free(text);
		reply(req, 200, "OK", "application/json", b);
	} else if (strcmp(path, "/cluster") == 0) {
		evbuffer_free(b);
		cluster_request(s, req);
		return;
	} else if (strcmp(path, "/metrics") == 0) {
		metrics_text(s, b);
		reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
	} else if (strcmp(path, "/") == 0) {
		evbuffer_add_reference(b, dashboard_html, sizeof(dashboard_html), NULL, NULL);
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Security-Policy",
				  "default-src 'none'; script-src 'unsafe-inline'; "
				  "style-src 'unsafe-inline'; connect-src 'self'; img-src data:");
		reply(req, 200, "OK", "text/html; charset=utf-8", b);
	} else {
		evbuffer_add_printf(
		    b, "no such page; try /, /stats, /cluster, /metrics or /healthz\n");
		reply(req, 404, "Not Found", "text/plain; charset=utf-8", b);
	}
	evbuffer_free(b);
}

static int is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return 0;
}

struct stats *stats_new(struct node *n, const char *addr, int insecure, char *why,
			size_t whylen)
{
	char host[256];
	struct evutil_addrinfo *ai = node_resolve_listen(addr, "stats", why, whylen);
	if (!ai)
		return NULL;
	if (addr_split(addr, "127.0.0.1", host, sizeof(host), &(int){0}) < 0)
		host[0] = '\0';
	int loopback = is_loopback(ai->ai_addr);
	if (!loopback && !insecure) {
		snprintf(why, whylen,
			 "refusing to serve stats on %s: the stats port has no authentication "
			 "and shows rooms and identities; pass --insecure to serve it on %s anyway",
			 addr, host);
		evutil_freeaddrinfo(ai);
		return NULL;
	}
	struct stats *s = calloc(1, sizeof(*s));
	struct evconnlistener *lev = NULL;
	if (!s)
		goto nomem;
	s->node = n;
	TAILQ_INIT(&s->asks);
	s->loopback = loopback;
	s->started_ns = node_mono_ns();
	s->http = evhttp_new(node_base(n));
	s->tick = event_new(node_base(n), -1, EV_PERSIST, on_tick, s);
	if (!s->http || !s->tick)
		goto nomem;
	lev = evconnlistener_new_bind(node_base(n), NULL, NULL,
				      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
				      64, ai->ai_addr, (int)ai->ai_addrlen);
	if (!lev) {
		snprintf(why, whylen, "cannot serve stats on %s: %s", addr,
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		goto fail;
	}
	if (!evhttp_bind_listener(s->http, lev)) { /* on success the http owns lev */
		evconnlistener_free(lev);
		goto nomem;
	}
	evutil_freeaddrinfo(ai);
	ai = NULL;

	evhttp_set_max_headers_size(s->http, MAX_HEADERS);
	evhttp_set_max_body_size(s->http, MAX_BODY);
	evhttp_set_timeout(s->http, TIMEOUT_S);
	evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_gencb(s->http, on_request, s);

	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char shost[INET6_ADDRSTRLEN] = "?";
	int sport = 0;
	getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&ss, &sl);
	if (ss.ss_family == AF_INET) {
		evutil_inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, shost,
				 sizeof(shost));
		sport = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		snprintf(s->addr, sizeof(s->addr), "%s:%d", shost, sport);
	} else if (ss.ss_family == AF_INET6) {
		evutil_inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, shost,
				 sizeof(shost));
		sport = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		snprintf(s->addr, sizeof(s->addr), "[%s]:%d", shost, sport);
	}
	struct timeval tv = {1, 0};
	event_add(s->tick, &tv);
	/* Tests and scripts read this line to learn an ephemeral port. */
	vlog(node_log(n), LOG_NOTICE, "node %s stats on %s (http)", node_id(n), s->addr);
	node_set_stats(n, s);
	return s;

nomem:
	snprintf(why, whylen, "cannot serve stats on %s: out of memory", addr);
fail:
	if (ai)
		evutil_freeaddrinfo(ai);
	stats_free(s);
	return NULL;
}

void stats_free(struct stats *s)
{
	if (!s)
		return;
	if (node_stats(s->node) == s)
		node_set_stats(s->node, NULL);
	/* Requests still waiting for other nodes are answered first, so that
	 * libevent owns each again: evhttp_free then frees them with the
	 * connections it closes (without flushing the 503), and one whose
	 * client had already gone is freed by the answer itself. */
	while (!TAILQ_EMPTY(&s->asks))
		ask_finish(TAILQ_FIRST(&s->asks), 503);
	if (s->http)
		evhttp_free(s->http); /* closes the port and open requests */
	if (s->tick)
		event_free(s->tick);
	free(s);
}

const char *stats_addr(const struct stats *s)
{
	return s->addr;
}

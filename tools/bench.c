/*
 * vroom-bench: one publisher and N subscribers on one room, in one thread on
 * one event base, through libvroom's event-driven API.
 *
 * It pushes --count messages of --size bytes as fast as the node and the
 * subscribers take them: at most --window pushes are unacknowledged, and at
 * most --window per subscriber are undelivered, so the publisher neither
 * fills its own buffers nor drives its subscribers into the node's
 * slow-consumer limit. It reports pushes/s, deliveries/s, payload MB/s summed over the
 * subscribers, and losses (deliveries missing or out of order).
 *
 * In a cluster, --pub-server and --sub-servers put the publisher and the
 * subscribers (round robin over the list) on different nodes, and --relay
 * NAME makes rooms until one is relayed by that node (PLACE), so that the
 * path a push takes is known.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "client/vroom.h"

struct bench {
	struct event_base *base;
	const char *server;
	const char *pub_server; /* NULL: server */
	char **sub_servers;	/* round robin; NULL: server */
	int nsub_servers;
	const char *relay;	/* make rooms until this node relays one */
	int tries;
	int nsubs;
	size_t size;
	long count, window;
	double max_seconds;

	struct vroom *pub, **subs;
	char room[VROOM_ROOM_ID_MAX + 1];
	int connected, subscribed, failed;
	long sent, acked, delivered, disorder;
	uint64_t *last_seq; /* per subscriber */
	uint64_t stream_bytes;
	struct vroom_writer *writer;
	uint64_t written;
	int streams_ok, streams_bad;
	int writer_done; /* the close's OK (in a cluster it may follow the receivers' ends) */
	unsigned char *payload;
	double t0, t_end;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(struct bench *b, const struct vroom_error *e, const char *what)
{
	fprintf(stderr, "vroom-bench: %s: %s: %s\n", what, vroom_code_name(e->code), e->message);
	b->failed = 1;
	event_base_loopbreak(b->base);
}

static void pump(struct bench *b);

static void on_push(struct vroom *v, const struct vroom_push *p, void *arg)
{
	struct bench *b = arg;
	int i = 0;
	while (i < b->nsubs && b->subs[i] != v)
		i++;
	if (p->seq != b->last_seq[i] + 1)
		b->disorder++;
	b->last_seq[i] = p->seq;
	b->delivered++;
	pump(b);
	if (b->delivered == b->count * b->nsubs) {
		b->t_end = now_s();
		event_base_loopbreak(b->base);
	}
}

static void on_ack(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct bench *b = arg;
	if (r->err) {
		if (b->t_end == 0) /* not the teardown after the run */
			fail(b, r->err, "push");
		return;
	}
	b->acked++;
	pump(b);
}

/* Keeps at most `window` pushes unacknowledged and, on average, at most
 * `window` undelivered per subscriber, until `count` are sent. */
static void pump(struct bench *b)
{
	struct vroom_error e;
	while (b->sent < b->count && b->sent - b->acked < b->window &&
	       b->sent * b->nsubs - b->delivered < b->window * b->nsubs) {
		memcpy(b->payload, &b->sent, sizeof(b->sent) < b->size ? sizeof(b->sent) : b->size);
		if (vroom_push_async(b->pub, b->room, 0, b->payload, b->size, on_ack, b, &e) < 0) {
			fail(b, &e, "push");
			return;
		}
		b->sent++;
	}
}

/* Stream mode: offer the writer as much as its window takes. */
static void stream_pump(struct vroom_writer *w, void *arg)
{
	struct bench *b = arg;
	struct vroom_error e;
	while (b->written < b->stream_bytes) {
		uint64_t left = b->stream_bytes - b->written;
		size_t n = left < b->size ? (size_t)left : b->size;
		long took = vroom_writer_offer(w, b->payload, n, &e);
		if (took < 0) {
			fail(b, &e, "stream");
			return;
		}
		b->written += (uint64_t)took;
		if ((size_t)took < n)
			return; /* the window is full: wait for credit */
	}
	/* All written: close (writable is not called again once closing). */
	if (vroom_writer_close_async(w, NULL, 0, &e) < 0)
		fail(b, &e, "close");
}

static void stream_done(struct vroom_writer *w, const struct vroom_error *e, void *arg)
{
	struct bench *b = arg;
	b->writer_done = 1;
	if (e)
		fail(b, e, "stream");
	else if (b->streams_ok + b->streams_bad == b->nsubs)
		event_base_loopbreak(b->base);
}

static void stream_end(struct vroom_reader *r, const struct vroom_stream_end *e, void *arg)
{
	struct bench *b = arg;
	if (e->ok && e->bytes == b->stream_bytes)
		b->streams_ok++;
	else
		b->streams_bad++;
	if (b->streams_ok + b->streams_bad == b->nsubs) {
		b->t_end = now_s();
		if (b->writer_done)
			event_base_loopbreak(b->base);
	}
}

static void stream_handler(struct vroom *v, struct vroom_reader *r, void *arg)
{
	struct vroom_reader_cbs cbs = {.end = stream_end};
	vroom_reader_set(r, &cbs, arg);
}

static void on_subscribed(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct bench *b = arg;
	struct vroom_error e;
	if (r->err) {
		fail(b, r->err, "subscribe");
		return;
	}
	if (++b->subscribed < b->nsubs)
		return;
	b->t0 = now_s();
	if (!b->stream_bytes) {
		pump(b);
		return;
	}
	struct vroom_stream_opts o = {.name = "bench", .size = (int64_t)b->stream_bytes};
	b->writer = vroom_stream_open(b->pub, b->room, &o, &e);
	if (!b->writer) {
		fail(b, &e, "stream");
		return;
	}
	vroom_writer_set_cbs(b->writer, stream_pump, NULL, stream_done, b);
	stream_pump(b->writer, b);
}

static void subscribe_all(struct bench *b)
{
	struct vroom_error e;
	for (int i = 0; i < b->nsubs; i++)
		if (vroom_subscribe_async(b->subs[i], b->room, on_subscribed, b, &e) < 0)
			fail(b, &e, "subscribe");
}

static void on_created(struct vroom *v, const struct vroom_result *r, void *arg);

static void on_placed(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct bench *b = arg;
	struct vroom_error e;
	if (r->err) {
		fail(b, r->err, "place");
		return;
	}
	if (strcmp(r->place->relay, b->relay) == 0) {
		fprintf(stderr, "vroom-bench: room %s, relay %s (%d rooms made before it)\n", b->room,
			r->place->relay, b->tries);
		subscribe_all(b);
		return;
	}
	if (++b->tries >= 1000) {
		fprintf(stderr, "vroom-bench: no room relayed by %s in 1000 tries\n", b->relay);
		b->failed = 1;
		event_base_loopbreak(b->base);
		return;
	}
	if (vroom_remove_async(b->pub, b->room, NULL, NULL, &e) < 0 ||
	    vroom_create_async(b->pub, on_created, b, &e) < 0)
		fail(b, &e, "create");
}

static void on_created(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct bench *b = arg;
	struct vroom_error e;
	if (r->err) {
		fail(b, r->err, "create");
		return;
	}
	snprintf(b->room, sizeof(b->room), "%s", r->room);
	if (!b->relay)
		subscribe_all(b);
	else if (vroom_place_async(b->pub, b->room, on_placed, b, &e) < 0)
		fail(b, &e, "place");
}

/* Splits a comma-separated list in place. */
static int split_list(char *s, char ***out)
{
	int n = 1;
	for (char *p = s; *p; p++)
		n += *p == ',';
	char **v = calloc((size_t)n, sizeof(*v));
	int k = 0;
	for (char *save = NULL, *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save))
		v[k++] = t;
	*out = v;
	return k;
}

static void on_connected(struct vroom *v, const struct vroom_result *r, void *arg)
{
	struct bench *b = arg;
	struct vroom_error e;
	if (r->err) {
		fail(b, r->err, "connect");
		return;
	}
	if (++b->connected == b->nsubs + 1 && vroom_create_async(b->pub, on_created, b, &e) < 0)
		fail(b, &e, "create");
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct bench *b = arg;
	fprintf(stderr, "vroom-bench: stopped at the %.0f s limit\n", b->max_seconds);
	b->t_end = now_s();
	event_base_loopbreak(b->base);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vroom-bench [-s HOST:PORT] [--subs N] [--size BYTES] [--count N]\n"
		   "                   [--window N] [--max-seconds S] [--stream BYTES]\n"
		   "                   [--pub-server HOST:PORT] [--sub-servers HOST:PORT,...]\n"
		   "                   [--relay NODE]\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"server", required_argument, 0, 's'}, {"subs", required_argument, 0, 'n'},
		{"size", required_argument, 0, 'z'},   {"count", required_argument, 0, 'c'},
		{"window", required_argument, 0, 'w'}, {"max-seconds", required_argument, 0, 't'},
		{"stream", required_argument, 0, 'S'},
		{"pub-server", required_argument, 0, 'P'},
		{"sub-servers", required_argument, 0, 'B'},
		{"relay", required_argument, 0, 'R'},
		{"help", no_argument, 0, 'h'},	       {0, 0, 0, 0},
	};
	struct bench b = {.server = VROOM_DEFAULT_SERVER, .nsubs = 10, .size = 1024,
			  .count = 100000, .window = 256, .max_seconds = 60};
	int o, size_set = 0;
	while ((o = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
		switch (o) {
		case 's': b.server = optarg; break;
		case 'n': b.nsubs = atoi(optarg); break;
		case 'z': b.size = (size_t)atol(optarg); size_set = 1; break;
		case 'c': b.count = atol(optarg); break;
		case 'w': b.window = atol(optarg); break;
		case 't': b.max_seconds = atof(optarg); break;
		case 'S': b.stream_bytes = strtoull(optarg, NULL, 10); break;
		case 'P': b.pub_server = optarg; break;
		case 'B': b.nsub_servers = split_list(optarg, &b.sub_servers); break;
		case 'R': b.relay = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (b.nsubs < 1 || b.count < 1 || b.window < 1 || b.max_seconds <= 0 ||
	    (b.sub_servers && b.nsub_servers < 1)) {
		usage(stderr);
		return 2;
	}
	if (b.stream_bytes && !size_set)
		b.size = 1u << 20; /* write size in stream mode */
	const char *s = getenv("VROOM_SERVER");
	if (s && *s && b.server == (const char *)VROOM_DEFAULT_SERVER)
		b.server = s;

	b.base = event_base_new();
	b.subs = calloc((size_t)b.nsubs, sizeof(*b.subs));
	b.last_seq = calloc((size_t)b.nsubs, sizeof(*b.last_seq));
	b.payload = calloc(1, b.size + sizeof(long));
	struct vroom_handlers h = {.push = on_push};
	struct vroom_error e;
	b.pub = vroom_new(b.base, NULL, &b);
	if (vroom_connect(b.pub, b.pub_server ? b.pub_server : b.server, "bench-pub", on_connected,
			  &b, &e) < 0)
		return fail(&b, &e, "connect"), 1;
	for (int i = 0; i < b.nsubs; i++) {
		char id[32];
		snprintf(id, sizeof(id), "bench-sub-%d", i);
		b.subs[i] = vroom_new(b.base, &h, &b);
		const char *at = b.sub_servers ? b.sub_servers[i % b.nsub_servers] : b.server;
		if (vroom_connect(b.subs[i], at, id, on_connected, &b, &e) < 0)
			return fail(&b, &e, "connect"), 1;
		if (b.stream_bytes && vroom_set_stream_handler(b.subs[i], NULL, stream_handler, &b, &e) < 0)
			return fail(&b, &e, "handler"), 1;
	}
	struct event *deadline = evtimer_new(b.base, on_deadline, &b);
	struct timeval tv = {(time_t)b.max_seconds, 0};
	evtimer_add(deadline, &tv);
	event_base_dispatch(b.base);

	double secs = b.t_end > b.t0 && b.t0 > 0 ? b.t_end - b.t0 : 0;
	if (b.stream_bytes) {
		if (secs > 0)
			printf("stream subs=%d bytes=%llu seconds=%.3f MB/s-per-receiver=%.1f "
			       "MB/s-total=%.1f verified=%d failed=%d\n",
			       b.nsubs, (unsigned long long)b.stream_bytes, secs,
			       (double)b.stream_bytes / secs / 1e6,
			       (double)b.stream_bytes * b.nsubs / secs / 1e6, b.streams_ok,
			       b.streams_bad);
		b.count = 0;
	}
	long expected = b.count * b.nsubs;
	if (secs > 0 && !b.stream_bytes)
		printf("subs=%d size=%zu count=%ld window=%ld seconds=%.3f pushes/s=%.0f "
		       "deliveries/s=%.0f MB/s=%.1f lost=%ld disorder=%ld\n",
		       b.nsubs, b.size, b.count, b.window, secs, b.acked / secs, b.delivered / secs,
		       (double)b.delivered * (double)b.size / secs / 1e6, expected - b.delivered,
		       b.disorder);
	event_free(deadline);
	vroom_free(b.pub);
	for (int i = 0; i < b.nsubs; i++)
		vroom_free(b.subs[i]);
	event_base_free(b.base);
	free(b.subs);
	free(b.last_seq);
	free(b.payload);
	free(b.sub_servers);
	if (b.stream_bytes)
		return b.failed || b.streams_ok != b.nsubs ? 1 : 0;
	return b.failed || b.delivered != expected || b.disorder ? 1 : 0;
}

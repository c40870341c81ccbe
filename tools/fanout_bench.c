/*
 * fanout_bench: one publisher and N subscribers on one channel, against
 * vroomd, redis-server (pub/sub), nats-server, mosquitto (MQTT 3.1.1, QoS 0)
 * or tools/ceiling_relay, with the same workload and the same accounting for
 * all of them. One thread, epoll, non-blocking sockets; an adapter per
 * protocol frames the publishes and finds the payloads in what subscribers
 * receive (raw frames for vroom: no libvroom, so that every server is driven
 * by the same loop).
 *
 * Every payload starts with its number (8 bytes) and its send time (8 bytes,
 * CLOCK_MONOTONIC ns), so each subscriber counts losses and reorderings and
 * measures latency.
 *
 * Throughput (default): messages of --size bytes as fast as the server takes
 * them, with at most --window messages sent and not yet received by the
 * slowest subscriber (and, where the protocol acknowledges publishes, not
 * yet acknowledged): backpressure is respected, so no server has a reason to
 * drop a slow consumer. --warmup seconds, then --seconds measured.
 * Latency (--rate R): R messages per second on a fixed schedule; p50, p90,
 * p99, p99.9 and max of the delivery latency over every subscriber.
 * Idle (--idle N, vroom only): N connections that say HELLO and then hold
 * still for --hold seconds (memory per idle connection).
 *
 * The result is one line on stdout: "RESULT key=value ...".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum proto { P_VROOM, P_REDIS, P_NATS, P_MQTT, P_CEIL };
static const char *proto_names[] = {"vroom", "redis", "nats", "mqtt", "ceiling"};

#define TOPIC "bench"
#define SCRATCH (1u << 20) /* one read */
#define OUT_HIGH (256u << 10) /* the publisher stops encoding past this */
#define PENDING_MAX 256 /* connections handshaking at once */

struct conn {
	int fd;
	int sub;	 /* 1: a subscriber */
	int ready;	 /* handshake done */
	int want_out;	 /* EPOLLOUT armed */
	int step;	 /* handshake step (per protocol) */
	uint8_t *res;	 /* a partial message left from the last read */
	size_t reslen, rescap;
	uint8_t *out;	 /* bytes not yet written */
	size_t outlen, outoff, outcap;
	uint64_t rx, rx_bytes; /* messages and payload bytes received */
	uint64_t next;	       /* the number expected next */
	uint64_t lost, reordered;
};

struct bench {
	enum proto proto;
	const char *host;
	int port;
	int nsubs;
	size_t size;
	long window;
	double seconds, warmup, rate, hold;
	long idle;
	int ep;

	struct conn pub;
	struct conn *subs;
	int nconns, nready, npending; /* subscribers opened, ready, handshaking */
	char room[32];
	size_t roomlen;

	uint8_t *scratch;
	uint8_t *payload;
	uint64_t sent, acks, min_rx;
	int stopping;
	int64_t t0, t_measure, t_end;
	uint64_t rx0, bytes0, rx1, bytes1;
	uint64_t *lat; /* ns, measured window only */
	size_t nlat, caplat;
	int warned;
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((format(printf, 1, 2), noreturn)) static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "fanout_bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- output ---- */

/* Room for len more bytes at the end of c's output. */
static uint8_t *out_reserve(struct conn *c, size_t len)
{
	if (c->outoff && c->outoff == c->outlen)
		c->outoff = c->outlen = 0;
	if (c->outlen + len > c->outcap) {
		if (c->outoff) {
			memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
			c->outlen -= c->outoff;
			c->outoff = 0;
		}
		if (c->outlen + len > c->outcap) {
			size_t cap = c->outcap ? c->outcap : 4096;
			while (cap < c->outlen + len)
				cap *= 2;
			if (!(c->out = realloc(c->out, cap)))
				die("%s", "out of memory");
			c->outcap = cap;
		}
	}
	uint8_t *p = c->out + c->outlen;
	c->outlen += len;
	return p;
}

static void out_add(struct conn *c, const void *p, size_t len)
{
	memcpy(out_reserve(c, len), p, len);
}

static void out_str(struct conn *c, const char *s)
{
	out_add(c, s, strlen(s));
}

static size_t out_pending(const struct conn *c)
{
	return c->outlen - c->outoff;
}

static void arm(struct bench *b, struct conn *c, int out)
{
	if (out == c->want_out)
		return;
	struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0u), .data.ptr = c};
	epoll_ctl(b->ep, EPOLL_CTL_MOD, c->fd, &ev);
	c->want_out = out;
}

static void flush(struct bench *b, struct conn *c)
{
	while (out_pending(c)) {
		ssize_t w = write(c->fd, c->out + c->outoff, out_pending(c));
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			die("write: %s", strerror(errno));
		}
		c->outoff += (size_t)w;
	}
	arm(b, c, out_pending(c) != 0);
}

/* ---- msgpack, the little vroom needs ---- */

/* Each returns the bytes it read, 0 when the value does not fit. */
static size_t mp_uint(const uint8_t *p, const uint8_t *e, uint64_t *v)
{
	if (p >= e)
		return 0;
	size_t n;
	switch (p[0]) {
	case 0xcc: n = 1; break;
	case 0xcd: n = 2; break;
	case 0xce: n = 4; break;
	case 0xcf: n = 8; break;
	default:
		if (p[0] <= 0x7f) {
			*v = p[0];
			return 1;
		}
		return 0;
	}
	if ((size_t)(e - p) < n + 1)
		return 0;
	*v = 0;
	for (size_t i = 0; i < n; i++)
		*v = *v << 8 | p[1 + i];
	return n + 1;
}

/* str or bin */
static size_t mp_bytes(const uint8_t *p, const uint8_t *e, const uint8_t **data, size_t *len)
{
	if (p >= e)
		return 0;
	size_t h, l;
	if ((p[0] & 0xe0) == 0xa0) {
		h = 1;
		l = p[0] & 0x1f;
	} else if (p[0] == 0xd9 || p[0] == 0xc4) {
		h = 2;
		if (e - p < 2)
			return 0;
		l = p[1];
	} else if (p[0] == 0xda || p[0] == 0xc5) {
		h = 3;
		if (e - p < 3)
			return 0;
		l = (size_t)p[1] << 8 | p[2];
	} else if (p[0] == 0xdb || p[0] == 0xc6) {
		h = 5;
		if (e - p < 5)
			return 0;
		l = be32(p + 1);
	} else {
		return 0;
	}
	if ((size_t)(e - p) < h + l)
		return 0;
	*data = p + h;
	*len = l;
	return h + l;
}

static size_t mp_array(const uint8_t *p, const uint8_t *e, size_t *n)
{
	if (p < e && (p[0] & 0xf0) == 0x90) {
		*n = p[0] & 0x0f;
		return 1;
	}
	return 0;
}

/* ---- the load ---- */

static void on_payload(struct bench *b, struct conn *c, const uint8_t *p, size_t len)
{
	uint64_t seq, ts;
	if (len < 16)
		die("%s", "a payload shorter than 16 bytes");
	memcpy(&seq, p, 8);
	memcpy(&ts, p + 8, 8);
	if (seq == c->next)
		c->next++;
	else if (seq > c->next) {
		c->lost += seq - c->next;
		c->next = seq + 1;
	} else {
		c->reordered++;
	}
	c->rx++;
	c->rx_bytes += len;
	if (b->rate > 0 && b->t_measure && !b->stopping) {
		int64_t t = now_ns();
		if (t >= b->t_measure && (int64_t)ts >= b->t_measure) {
			if (b->nlat == b->caplat) {
				b->caplat = b->caplat ? 2 * b->caplat : 1 << 16;
				if (!(b->lat = realloc(b->lat, b->caplat * sizeof(*b->lat))))
					die("%s", "out of memory");
			}
			b->lat[b->nlat++] = (uint64_t)(t - (int64_t)ts);
		}
	}
}

static void became_ready(struct bench *b, struct conn *c)
{
	c->ready = 1;
	if (c->sub) {
		b->nready++;
		b->npending--;
	}
}

/* Frames one publish of the payload at p. */
static void encode_pub(struct bench *b, const uint8_t *p, size_t len)
{
	struct conn *c = &b->pub;
	char hdr[96];
	int h;
	switch (b->proto) {
	case P_VROOM: {
		/* [200, rid, room, 0, bin] */
		size_t binh = len < 256 ? 2 : len < 65536 ? 3 : 5;
		size_t body = 1 + 2 + 9 + 1 + b->roomlen + 1 + binh + len;
		uint8_t *o = out_reserve(c, 4 + body - len), *q = o;
		put_be32(q, (uint32_t)body);
		q += 4;
		*q++ = 0x95;
		*q++ = 0xcc;
		*q++ = 200;
		*q++ = 0xcf;
		uint64_t rid = b->sent + 10;
		for (int i = 0; i < 8; i++)
			*q++ = (uint8_t)(rid >> (56 - 8 * i));
		*q++ = (uint8_t)(0xa0 | b->roomlen);
		memcpy(q, b->room, b->roomlen);
		q += b->roomlen;
		*q++ = 0;
		if (binh == 2) {
			*q++ = 0xc4;
			*q++ = (uint8_t)len;
		} else if (binh == 3) {
			*q++ = 0xc5;
			*q++ = (uint8_t)(len >> 8);
			*q++ = (uint8_t)len;
		} else {
			*q++ = 0xc6;
			put_be32(q, (uint32_t)len);
			q += 4;
		}
		out_add(c, p, len);
		return;
	}
	case P_REDIS:
		h = snprintf(hdr, sizeof(hdr), "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%zu\r\n",
			     strlen(TOPIC), TOPIC, len);
		out_add(c, hdr, (size_t)h);
		out_add(c, p, len);
		out_add(c, "\r\n", 2);
		return;
	case P_NATS:
		h = snprintf(hdr, sizeof(hdr), "PUB %s %zu\r\n", TOPIC, len);
		out_add(c, hdr, (size_t)h);
		out_add(c, p, len);
		out_add(c, "\r\n", 2);
		return;
	case P_MQTT: {
		size_t rem = 2 + strlen(TOPIC) + len;
		uint8_t *q = (uint8_t *)hdr;
		*q++ = 0x30;
		do {
			uint8_t d = rem & 0x7f;
			rem >>= 7;
			*q++ = d | (rem ? 0x80 : 0);
		} while (rem);
		*q++ = 0;
		*q++ = (uint8_t)strlen(TOPIC);
		memcpy(q, TOPIC, strlen(TOPIC));
		q += strlen(TOPIC);
		out_add(c, hdr, (size_t)(q - (uint8_t *)hdr));
		out_add(c, p, len);
		return;
	}
	case P_CEIL: {
		uint8_t l[4];
		put_be32(l, (uint32_t)len);
		out_add(c, l, 4);
		out_add(c, p, len);
		return;
	}
	}
}

/* The handshake's first bytes. */
static void start_conn(struct bench *b, struct conn *c, int idx)
{
	char buf[256];
	int n;
	switch (b->proto) {
	case P_VROOM: {
		/* HELLO [1, 1, 1, identity] */
		char id[16];
		int idl = snprintf(id, sizeof(id), c->sub ? "s%d" : "pub", idx);
		uint8_t f[32];
		put_be32(f, (uint32_t)(4 + 1 + idl));
		f[4] = 0x94;
		f[5] = 1;
		f[6] = 1;
		f[7] = 1;
		f[8] = (uint8_t)(0xa0 | idl);
		memcpy(f + 9, id, (size_t)idl);
		out_add(c, f, 9 + (size_t)idl);
		break;
	}
	case P_REDIS:
		if (c->sub) {
			n = snprintf(buf, sizeof(buf), "*2\r\n$9\r\nSUBSCRIBE\r\n$%zu\r\n%s\r\n",
				     strlen(TOPIC), TOPIC);
			out_add(c, buf, (size_t)n);
		} else {
			out_str(c, "*1\r\n$4\r\nPING\r\n");
		}
		break;
	case P_NATS:
		out_str(c, "CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n");
		if (c->sub) {
			n = snprintf(buf, sizeof(buf), "SUB %s 1\r\n", TOPIC);
			out_add(c, buf, (size_t)n);
		}
		out_str(c, "PING\r\n");
		break;
	case P_MQTT: {
		char id[32];
		int idl = snprintf(id, sizeof(id), "fb%d-%d", (int)getpid(), c->sub ? idx : -1);
		uint8_t f[64], *q = f;
		*q++ = 0x10;
		*q++ = (uint8_t)(10 + 2 + idl);
		memcpy(q, "\0\4MQTT\4\2\0\0", 10); /* level 4, clean session, no keepalive */
		q += 10;
		*q++ = 0;
		*q++ = (uint8_t)idl;
		memcpy(q, id, (size_t)idl);
		q += idl;
		out_add(c, f, (size_t)(q - f));
		if (c->sub) {
			size_t tl = strlen(TOPIC);
			q = f;
			*q++ = 0x82;
			*q++ = (uint8_t)(2 + 2 + tl + 1);
			*q++ = 0;
			*q++ = 1; /* packet id */
			*q++ = 0;
			*q++ = (uint8_t)tl;
			memcpy(q, TOPIC, tl);
			q += tl;
			*q++ = 0; /* QoS 0 */
			out_add(c, f, (size_t)(q - f));
		}
		break;
	}
	case P_CEIL:
		out_add(c, c->sub ? "S" : "P", 1);
		break;
	}
}

/* vroom: after WELCOME the publisher creates the room, a subscriber joins it. */
static size_t parse_vroom(struct bench *b, struct conn *c, const uint8_t *p, size_t len)
{
	if (len < 4)
		return 0;
	size_t flen = be32(p);
	if (len - 4 < flen)
		return 0;
	const uint8_t *q = p + 4, *e = q + flen;
	size_t n, k;
	uint64_t type, rid;
	if (!(k = mp_array(q, e, &n)) || n < 2)
		die("%s", "vroom: not a frame");
	q += k;
	if (!(k = mp_uint(q, e, &type)))
		die("%s", "vroom: no type");
	q += k;
	if (!(k = mp_uint(q, e, &rid)))
		die("%s", "vroom: no rid");
	q += k;
	if (type == 201) { /* DELIVER [201, 0, room, seq, sender, dtype, data, origin] */
		const uint8_t *d;
		size_t dl;
		uint64_t v;
		if (!(k = mp_bytes(q, e, &d, &dl)))
			die("%s", "vroom: DELIVER room");
		q += k;
		if (!(k = mp_uint(q, e, &v)))
			die("%s", "vroom: DELIVER seq");
		q += k;
		if (!(k = mp_bytes(q, e, &d, &dl)))
			die("%s", "vroom: DELIVER sender");
		q += k;
		if (!(k = mp_uint(q, e, &v)))
			die("%s", "vroom: DELIVER dtype");
		q += k;
		if (!(k = mp_bytes(q, e, &d, &dl)))
			die("%s", "vroom: DELIVER data");
		on_payload(b, c, d, dl);
		return 4 + flen;
	}
	if (type == 4) {
		const uint8_t *d = NULL;
		size_t dl = 0;
		uint64_t code = 0;
		q += mp_uint(q, e, &code);
		mp_bytes(q, e, &d, &dl);
		char msg[256];
		snprintf(msg, sizeof(msg), "error %llu: %.*s", (unsigned long long)code,
			 (int)(dl < 200 ? dl : 200), d ? (const char *)d : "");
		die("vroom: %s", msg);
	}
	if (type == 2) { /* WELCOME */
		if (b->idle) {
			became_ready(b, c);
		} else if (!c->sub) {
			uint8_t f[] = {0, 0, 0, 3, 0x92, 100, 2}; /* CREATE [100, 2] */
			out_add(c, f, sizeof(f));
		} else {
			uint8_t f[40];
			put_be32(f, (uint32_t)(4 + b->roomlen));
			f[4] = 0x93;
			f[5] = 104;
			f[6] = 2;
			f[7] = (uint8_t)(0xa0 | b->roomlen);
			memcpy(f + 8, b->room, b->roomlen);
			out_add(c, f, 8 + b->roomlen); /* SUBSCRIBE [104, 2, room] */
		}
		return 4 + flen;
	}
	if (type == 3) { /* OK */
		if (c->ready) {
			b->acks++;
		} else if (!c->sub) {
			const uint8_t *d;
			size_t dl;
			if (!mp_bytes(q, e, &d, &dl) || dl >= sizeof(b->room) || dl > 31)
				die("%s", "vroom: CREATE's OK carries no room id");
			memcpy(b->room, d, dl);
			b->roomlen = dl;
			became_ready(b, c);
		} else {
			became_ready(b, c);
		}
		return 4 + flen;
	}
	return 4 + flen; /* anything else is ignored */
}

/* Redis RESP2: a value; arrays hold at most 4 bulk strings or integers. */
struct resp {
	char kind;
	const uint8_t *s[4];
	size_t l[4];
	long long n[4];
	size_t count;
};

static const uint8_t *line_end(const uint8_t *p, const uint8_t *e)
{
	const uint8_t *q = memchr(p, '\r', (size_t)(e - p));
	if (!q || q + 1 >= e)
		return NULL;
	return q;
}

/* One element at p into r's slot i. 0: incomplete. */
static size_t resp_elem(const uint8_t *p, const uint8_t *e, struct resp *r, size_t i)
{
	const uint8_t *le = line_end(p, e);
	if (!le)
		return 0;
	long long v = strtoll((const char *)p + 1, NULL, 10);
	size_t used = (size_t)(le - p) + 2;
	r->s[i] = p + 1;
	r->l[i] = (size_t)(le - p - 1);
	r->n[i] = v;
	if (p[0] == '$') {
		if (v < 0)
			return used;
		if ((size_t)(e - p) < used + (size_t)v + 2)
			return 0;
		r->s[i] = p + used;
		r->l[i] = (size_t)v;
		return used + (size_t)v + 2;
	}
	return used;
}

static size_t parse_redis(struct bench *b, struct conn *c, const uint8_t *p, size_t len)
{
	const uint8_t *e = p + len;
	struct resp r = {0};
	if (len < 3)
		return 0;
	r.kind = (char)p[0];
	size_t used;
	if (p[0] == '*') {
		const uint8_t *le = line_end(p, e);
		if (!le)
			return 0;
		long long n = strtoll((const char *)p + 1, NULL, 10);
		if (n < 0 || n > 4)
			die("%s", "redis: unexpected array");
		used = (size_t)(le - p) + 2;
		for (long long i = 0; i < n; i++) {
			size_t k = resp_elem(p + used, e, &r, (size_t)i);
			if (!k)
				return 0;
			used += k;
		}
		r.count = (size_t)n;
	} else {
		if (!(used = resp_elem(p, e, &r, 0)))
			return 0;
		r.count = 1;
	}
	if (r.kind == '-') {
		char msg[256];
		snprintf(msg, sizeof(msg), "%.*s", (int)(r.l[0] < 200 ? r.l[0] : 200),
			 (const char *)r.s[0]);
		die("redis: %s", msg);
	}
	if (c->sub) {
		if (r.kind == '*' && r.count == 3 && r.l[0] == 7 && memcmp(r.s[0], "message", 7) == 0)
			on_payload(b, c, r.s[2], r.l[2]);
		else if (r.kind == '*' && r.count == 3 && r.l[0] == 9 && !c->ready)
			became_ready(b, c); /* ["subscribe", channel, 1] */
	} else if (!c->ready) {
		became_ready(b, c); /* +PONG */
	} else if (r.kind == ':') {
		b->acks++;
		if (r.n[0] != b->nsubs && !b->warned) {
			b->warned = 1;
			fprintf(stderr, "fanout_bench: redis: a PUBLISH reached %lld subscribers, not %d\n",
				r.n[0], b->nsubs);
		}
	}
	return used;
}

static size_t parse_nats(struct bench *b, struct conn *c, const uint8_t *p, size_t len)
{
	const uint8_t *e = p + len;
	const uint8_t *le = line_end(p, e);
	if (!le)
		return 0;
	size_t hl = (size_t)(le - p) + 2;
	if (len >= 4 && memcmp(p, "MSG ", 4) == 0) {
		/* MSG <subject> <sid> [reply-to] <#bytes> */
		const uint8_t *sp = le;
		while (sp > p && sp[-1] != ' ')
			sp--;
		size_t n = (size_t)strtoull((const char *)sp, NULL, 10);
		if (len < hl + n + 2)
			return 0;
		on_payload(b, c, p + hl, n);
		return hl + n + 2;
	}
	if (len >= 4 && memcmp(p, "PING", 4) == 0)
		out_str(c, "PONG\r\n");
	else if (len >= 4 && memcmp(p, "PONG", 4) == 0 && !c->ready)
		became_ready(b, c);
	else if (len >= 4 && memcmp(p, "-ERR", 4) == 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%.*s", (int)(hl - 2 < 200 ? hl - 2 : 200), (const char *)p);
		die("nats: %s", msg);
	}
	return hl; /* INFO, +OK */
}

static size_t parse_mqtt(struct bench *b, struct conn *c, const uint8_t *p, size_t len)
{
	if (len < 2)
		return 0;
	size_t rem = 0, i = 1;
	int shift = 0;
	for (;;) {
		if (i >= len)
			return 0;
		rem |= (size_t)(p[i] & 0x7f) << shift;
		if (!(p[i++] & 0x80))
			break;
		shift += 7;
		if (shift > 21)
			die("%s", "mqtt: bad remaining length");
	}
	if (len - i < rem)
		return 0;
	const uint8_t *v = p + i;
	switch (p[0] >> 4) {
	case 2: /* CONNACK */
		if (rem < 2 || v[1] != 0)
			die("%s", "mqtt: connection refused");
		if (!c->sub)
			became_ready(b, c);
		break;
	case 9: /* SUBACK */
		if (rem < 3 || v[2] == 0x80)
			die("%s", "mqtt: subscription refused");
		became_ready(b, c);
		break;
	case 3: { /* PUBLISH */
		size_t tl = (size_t)v[0] << 8 | v[1];
		size_t off = 2 + tl + (((p[0] >> 1) & 3) ? 2 : 0);
		if (off > rem)
			die("%s", "mqtt: bad PUBLISH");
		on_payload(b, c, v + off, rem - off);
		break;
	}
	default:
		break;
	}
	return i + rem;
}

static size_t parse_ceil(struct bench *b, struct conn *c, const uint8_t *p, size_t len)
{
	if (!c->ready) {
		if (p[0] != 'K')
			die("%s", "ceiling: no K");
		became_ready(b, c);
		return 1;
	}
	if (len < 4)
		return 0;
	size_t n = be32(p);
	if (len - 4 < n)
		return 0;
	on_payload(b, c, p + 4, n);
	return 4 + n;
}

static size_t parse(struct bench *b, struct conn *c, const uint8_t *p, size_t len)
{
	switch (b->proto) {
	case P_VROOM: return parse_vroom(b, c, p, len);
	case P_REDIS: return parse_redis(b, c, p, len);
	case P_NATS: return parse_nats(b, c, p, len);
	case P_MQTT: return parse_mqtt(b, c, p, len);
	case P_CEIL: return parse_ceil(b, c, p, len);
	}
	return 0;
}

/* Reads what c has (a few reads at most, for fairness) and parses it in
 * the shared scratch buffer; a partial message stays in c->res. */
static void on_readable(struct bench *b, struct conn *c)
{
	for (int rounds = 0; rounds < 4; rounds++) {
		uint8_t *s = b->scratch;
		size_t have = c->reslen;
		memcpy(s, c->res, have);
		ssize_t r = read(c->fd, s + have, SCRATCH * 2 - have);
		if (r == 0)
			die("%s", "the server closed a connection");
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			die("read: %s", strerror(errno));
		}
		size_t len = have + (size_t)r, off = 0, k;
		while (off < len && (k = parse(b, c, s + off, len - off)) > 0)
			off += k;
		c->reslen = len - off;
		if (c->reslen > c->rescap) {
			if (!(c->res = realloc(c->res, c->reslen)))
				die("%s", "out of memory");
			c->rescap = c->reslen;
		}
		memcpy(c->res, s + off, c->reslen);
		if (out_pending(c))
			flush(b, c);
		if ((size_t)r < SCRATCH)
			return;
	}
}

static void open_conn(struct bench *b, struct conn *c, int sub, int idx)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)b->port)};
	if (inet_pton(AF_INET, b->host, &sa.sin_addr) != 1)
		die("bad host %s", b->host);
	memset(c, 0, sizeof(*c));
	c->sub = sub;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd < 0)
		die("socket: %s", strerror(errno));
	for (int tries = 0; connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0; tries++) {
		if (tries > 50 || (errno != EAGAIN && errno != ECONNREFUSED && errno != EINTR))
			die("connect: %s", strerror(errno));
		usleep(20000);
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
		die("fcntl: %s", strerror(errno));
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	epoll_ctl(b->ep, EPOLL_CTL_ADD, c->fd, &ev);
	start_conn(b, c, idx);
	flush(b, c);
}

/* The fewest messages any subscriber has received. */
static uint64_t min_rx(const struct bench *b)
{
	uint64_t m = UINT64_MAX;
	for (int i = 0; i < b->nsubs; i++)
		if (b->subs[i].rx < m)
			m = b->subs[i].rx;
	return b->nsubs ? m : b->sent;
}

static int acked_proto(const struct bench *b)
{
	return b->proto == P_VROOM || b->proto == P_REDIS;
}

static void send_one(struct bench *b, int64_t t)
{
	uint64_t seq = b->sent;
	memcpy(b->payload, &seq, 8);
	memcpy(b->payload + 8, &t, 8);
	encode_pub(b, b->payload, b->size);
	b->sent++;
}

/* Throughput: encode while the window allows and the output is short. */
static void pump(struct bench *b)
{
	if (b->stopping)
		return;
	int64_t t = now_ns();
	while (out_pending(&b->pub) < OUT_HIGH) {
		if ((long)(b->sent - b->min_rx) >= b->window) {
			b->min_rx = min_rx(b);
			if ((long)(b->sent - b->min_rx) >= b->window)
				break;
		}
		if (acked_proto(b) && (long)(b->sent - b->acks) >= b->window)
			break;
		send_one(b, t);
	}
	flush(b, &b->pub);
}

/* Latency: every message that is due by now, at the fixed rate. */
static void pace(struct bench *b, int64_t t)
{
	if (b->stopping)
		return;
	uint64_t due = (uint64_t)((double)(t - b->t0) * b->rate / 1e9) + 1;
	while (b->sent < due && out_pending(&b->pub) < (16u << 20))
		send_one(b, now_ns());
	flush(b, &b->pub);
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, c = *(const uint64_t *)y;
	return a < c ? -1 : a > c;
}

static double pct(const uint64_t *v, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)ceil(q * (double)n);
	if (i > 0)
		i--;
	if (i >= n)
		i = n - 1;
	return (double)v[i] / 1e3;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: fanout_bench --proto vroom|redis|nats|mqtt|ceiling --port P [--host H]\n"
		"         [--subs N] [--size S] [--seconds T] [--warmup T] [--window W]\n"
		"         [--rate R]            latency at R messages/s\n"
		"         [--idle N --hold T]   vroom: N idle HELLO'd connections\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct bench b = {.host = "127.0.0.1", .nsubs = 1, .size = 1024, .seconds = 3,
			  .warmup = 0.5, .proto = P_CEIL, .port = -1, .hold = 5};
	static const struct option opts[] = {
	    {"proto", 1, 0, 'P'},  {"host", 1, 0, 'h'},	 {"port", 1, 0, 'p'},
	    {"subs", 1, 0, 'n'},   {"size", 1, 0, 's'},	 {"seconds", 1, 0, 't'},
	    {"warmup", 1, 0, 'w'}, {"window", 1, 0, 'W'}, {"rate", 1, 0, 'r'},
	    {"idle", 1, 0, 'i'},   {"hold", 1, 0, 'H'},	 {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'P': {
			int k = 0;
			while (k < 5 && strcmp(optarg, proto_names[k]) != 0)
				k++;
			if (k == 5)
				usage();
			b.proto = (enum proto)k;
			break;
		}
		case 'h': b.host = optarg; break;
		case 'p': b.port = atoi(optarg); break;
		case 'n': b.nsubs = atoi(optarg); break;
		case 's': b.size = (size_t)atol(optarg); break;
		case 't': b.seconds = atof(optarg); break;
		case 'w': b.warmup = atof(optarg); break;
		case 'W': b.window = atol(optarg); break;
		case 'r': b.rate = atof(optarg); break;
		case 'i': b.idle = atol(optarg); break;
		case 'H': b.hold = atof(optarg); break;
		default: usage();
		}
	}
	if (b.port <= 0 || b.nsubs < 0 || b.size < 16 || b.size > (16u << 20))
		usage();
	if (b.idle && b.proto != P_VROOM)
		die("%s", "--idle is for vroom only");
	if (b.window <= 0) {
		/* About 2 MiB in flight per subscriber, 8 to 2048 messages. */
		long w = (long)((2u << 20) / b.size);
		b.window = w < 8 ? 8 : w > 2048 ? 2048 : w;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!(b.scratch = malloc(SCRATCH * 2 + 16)) || !(b.payload = malloc(b.size)))
		die("%s", "out of memory");
	memset(b.payload, 'x', b.size);
	b.ep = epoll_create1(0);
	int total = b.idle ? (int)b.idle : b.nsubs;
	if (!(b.subs = calloc((size_t)total + 1, sizeof(*b.subs))))
		die("%s", "out of memory");
	struct epoll_event evs[512];

	/* The publisher first (it makes vroom's room), then the subscribers,
	 * at most PENDING_MAX handshaking at once. */
	if (!b.idle) {
		open_conn(&b, &b.pub, 0, 0);
		while (!b.pub.ready) {
			int n = epoll_wait(b.ep, evs, 512, 5000);
			if (n <= 0)
				die("%s", "the publisher's handshake timed out");
			for (int i = 0; i < n; i++)
				on_readable(&b, evs[i].data.ptr);
		}
	}
	int64_t deadline = now_ns() + 120 * (int64_t)1000000000;
	while (b.nready < total) {
		while (b.nconns < total && b.npending < PENDING_MAX) {
			b.subs[b.nconns].sub = 1;
			open_conn(&b, &b.subs[b.nconns], 1, b.nconns);
			b.subs[b.nconns].sub = 1;
			b.nconns++;
			b.npending++;
		}
		int n = epoll_wait(b.ep, evs, 512, 1000);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (evs[i].events & EPOLLIN)
				on_readable(&b, c);
			if (evs[i].events & EPOLLOUT)
				flush(&b, c);
		}
		if (now_ns() > deadline)
			die("%s", "subscribers' handshakes timed out");
	}
	if (b.idle) {
		printf("READY %ld\n", b.idle);
		fflush(stdout);
		int64_t end = now_ns() + (int64_t)(b.hold * 1e9);
		while (now_ns() < end) {
			int n = epoll_wait(b.ep, evs, 512, 100);
			for (int i = 0; i < n; i++)
				on_readable(&b, evs[i].data.ptr);
		}
		printf("RESULT proto=vroom idle=%ld\n", b.idle);
		return 0;
	}

	b.t0 = now_ns();
	b.t_measure = b.t0 + (int64_t)(b.warmup * 1e9);
	b.t_end = b.t_measure + (int64_t)(b.seconds * 1e9);
	int measuring = 0;
	int64_t drain_end = 0;
	for (;;) {
		int64_t t = now_ns();
		if (!measuring && t >= b.t_measure) {
			measuring = 1;
			for (int i = 0; i < b.nsubs; i++) {
				b.rx0 += b.subs[i].rx;
				b.bytes0 += b.subs[i].rx_bytes;
			}
		}
		if (!b.stopping && t >= b.t_end) {
			b.stopping = 1;
			for (int i = 0; i < b.nsubs; i++) {
				b.rx1 += b.subs[i].rx;
				b.bytes1 += b.subs[i].rx_bytes;
			}
			/* Long enough on a loaded machine: a loss means a drop. */
			drain_end = t + 15 * (int64_t)1000000000;
		}
		if (b.stopping && (min_rx(&b) >= b.sent || t >= drain_end))
			break;
		if (b.rate > 0)
			pace(&b, t);
		else
			pump(&b);
		int timeout_ms = 1;
		if (b.rate > 0) {
			/* until the next message is due: epoll_pwait2 takes ns */
			int64_t next = b.t0 + (int64_t)((double)b.sent * 1e9 / b.rate);
			int64_t wait = next - now_ns();
			struct timespec ts = {0, wait > 0 ? (long)(wait < 1000000 ? wait : 1000000) : 0};
			int n = epoll_pwait2(b.ep, evs, 512, &ts, NULL);
			for (int i = 0; i < n; i++) {
				struct conn *c = evs[i].data.ptr;
				if (evs[i].events & EPOLLIN)
					on_readable(&b, c);
				if (evs[i].events & EPOLLOUT)
					flush(&b, c);
			}
			continue;
		}
		int n = epoll_wait(b.ep, evs, 512, timeout_ms);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (evs[i].events & EPOLLIN)
				on_readable(&b, c);
			if (evs[i].events & EPOLLOUT)
				flush(&b, c);
		}
	}
	uint64_t lost = 0, reordered = 0;
	for (int i = 0; i < b.nsubs; i++) {
		struct conn *c = &b.subs[i];
		lost += c->lost + (b.sent > c->next ? b.sent - c->next : 0);
		reordered += c->reordered;
	}
	double secs = (double)(b.t_end - b.t_measure) / 1e9;
	printf("RESULT proto=%s size=%zu subs=%d window=%ld sent=%llu", proto_names[b.proto], b.size,
	       b.nsubs, b.window, (unsigned long long)b.sent);
	if (b.rate > 0) {
		qsort(b.lat, b.nlat, sizeof(*b.lat), cmp_u64);
		printf(" rate=%.0f samples=%zu p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f "
		       "max_us=%.1f",
		       b.rate, b.nlat, pct(b.lat, b.nlat, 0.5), pct(b.lat, b.nlat, 0.9),
		       pct(b.lat, b.nlat, 0.99), pct(b.lat, b.nlat, 0.999),
		       b.nlat ? (double)b.lat[b.nlat - 1] / 1e3 : 0.0);
	}
	printf(" secs=%.3f msgs_per_s=%.0f mb_per_s=%.1f lost=%llu reordered=%llu\n", secs,
	       (double)(b.rx1 - b.rx0) / secs, (double)(b.bytes1 - b.bytes0) / 1e6 / secs,
	       (unsigned long long)lost, (unsigned long long)reordered);
	return lost || reordered ? 3 : 0;
}

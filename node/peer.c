#include "node/peer.h"

#include "node/bevio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <sodium.h>

#include "stream/addr.h"
#include "stream/wire.h"

#define HDR  crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define ABYT crypto_secretstream_xchacha20poly1305_ABYTES
/* Frames sent in one loop turn are sealed together, as one message of at
 * most this many plaintext bytes (a longer frame goes alone): one seal, one
 * length prefix and one tag per batch instead of per frame. Any receiver
 * takes it: a link accepts messages up to its frame_max + 4096, and a
 * link's frame_max is at least 2 * 1024 + 65536 (node/clus.c). A receiver
 * parses the frames of a message one after another whatever the batching,
 * as it always has. */
#define STAGE_MAX (64u << 10)
/* Bytes per read and per write system call at most: libevent 2.1 reads at
 * most 4096 bytes per callback (see read_more) and writes 16 KiB per call
 * unless told otherwise. */
#define MAX_READ  (256u << 10)
#define MAX_WRITE (1u << 20)

struct peer {
	struct bufferevent *bev;
	struct peer_cfg cfg;
	const struct peer_ops *ops;
	void *arg;
	int outgoing, ready, gone, hello_sent;
	int refused; /* an outgoing connect was refused: nothing listens there */
	char name[65];
	char addr[64];
	uint8_t my_hdr[HDR];
	int have_peer_hdr;
	crypto_secretstream_xchacha20poly1305_state tx, rx;
	struct evbuffer *queue; /* plaintext frames waiting for the handshake */
	struct evbuffer *in;	/* decrypted bytes of a frame split across messages */
	uint8_t *plain;		/* one opened message, when in is empty */
	size_t plain_cap;	/* at most frame_max + 4096 */
	uint8_t *stage;		/* plaintext frames to seal as one message */
	size_t stage_len;	/* at most STAGE_MAX; nonzero: flush_ev is active */
	struct event *flush_ev; /* seals the stage at the end of the loop turn */
	struct wire_dec *dec;
	uint64_t bad;
	int busy;		/* inside our own callbacks */
	struct event *deadline; /* the handshake must be done by then */
};

static void fail(struct peer *p, const char *why)
{
	if (p->gone)
		return;
	p->gone = 1;
	bufferevent_disable(p->bev, EV_READ | EV_WRITE);
	p->ops->gone(p, why, p->arg);
}

/* Encrypts one message straight into the output buffer. */
static int push(struct peer *p, const uint8_t *m, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(p->bev);
	if (evbuffer_get_length(out) + p->stage_len + len > p->cfg.max_pending) {
		fail(p, "output over its bound (the peer does not keep up)");
		return -1;
	}
	struct evbuffer_iovec v;
	size_t need = 4 + len + ABYT;
	if (evbuffer_reserve_space(out, (ev_ssize_t)need, &v, 1) < 1 || v.iov_len < need) {
		fail(p, "out of memory");
		return -1;
	}
	uint8_t *q = v.iov_base;
	uint32_t clen = (uint32_t)(len + ABYT);
	q[0] = (uint8_t)(clen >> 24);
	q[1] = (uint8_t)(clen >> 16);
	q[2] = (uint8_t)(clen >> 8);
	q[3] = (uint8_t)clen;
	crypto_secretstream_xchacha20poly1305_push(&p->tx, q + 4, NULL, m, len, NULL, 0, 0);
	v.iov_len = need;
	evbuffer_commit_space(out, &v, 1);
	return 0;
}

/* Seals what the stage holds as one message. */
static void flush_stage(struct peer *p)
{
	if (p->stage_len == 0)
		return;
	size_t len = p->stage_len;
	p->stage_len = 0;
	if (!p->gone)
		push(p, p->stage, len);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	flush_stage(arg);
}

/* Queues one frame for the batch sealed at the end of this loop turn
 * (earlier if the stage would pass STAGE_MAX). Order is kept: a frame is
 * sealed alone only after the stage before it. */
static int stage_frame(struct peer *p, const uint8_t *f, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(p->bev);
	if (evbuffer_get_length(out) + p->stage_len + len > p->cfg.max_pending) {
		fail(p, "output over its bound (the peer does not keep up)");
		return -1;
	}
	if (p->stage_len + len > STAGE_MAX)
		flush_stage(p);
	if (len > STAGE_MAX)
		return p->gone ? -1 : push(p, f, len);
	if (!p->stage && !(p->stage = malloc(STAGE_MAX))) {
		fail(p, "out of memory");
		return -1;
	}
	if (p->stage_len == 0)
		event_active(p->flush_ev, EV_TIMEOUT, 0);
	memcpy(p->stage + p->stage_len, f, len);
	p->stage_len += len;
	return 0;
}

static void send_hello(struct peer *p, const uint8_t peer_hdr[HDR])
{
	struct wire_buf b;
	wire_buf_init(&b);
	msgpack_packer *pk = wire_begin(&b, WIRE_PEER_HELLO, 0, 3);
	wire_pack_cstr(pk, p->cfg.self);
	msgpack_pack_uint64(pk, WIRE_VERSION);
	wire_pack_bin(pk, peer_hdr, HDR);
	wire_end(&b, 0);
	push(p, b.p, b.len);
	wire_buf_free(&b);
	p->hello_sent = 1;
}

static void on_hello(struct peer *p, const struct wire_msg *m)
{
	if (m->type != WIRE_PEER_HELLO || m->nfields < 3) {
		p->bad++;
		fail(p, "the first message is not PEER_HELLO");
		return;
	}
	if (m->f[2].s.len != HDR || sodium_memcmp(m->f[2].s.ptr, p->my_hdr, HDR) != 0) {
		p->bad++;
		fail(p, "PEER_HELLO does not echo this link's header (a replayed session?)");
		return;
	}
	if (m->f[1].u != WIRE_VERSION) {
		fail(p, "the peer speaks another protocol version");
		return;
	}
	if (m->f[0].s.len == 0 || m->f[0].s.len >= sizeof(p->name)) {
		p->bad++;
		fail(p, "bad peer name");
		return;
	}
	memcpy(p->name, m->f[0].s.ptr, m->f[0].s.len);
	p->name[m->f[0].s.len] = '\0';
	p->ready = 1;
	event_del(p->deadline);
	/* Flush what waited for the handshake, one frame per message. */
	size_t qlen;
	while (!p->gone && (qlen = evbuffer_get_length(p->queue)) >= WIRE_HDR) {
		uint8_t h[WIRE_HDR];
		evbuffer_copyout(p->queue, h, WIRE_HDR);
		size_t flen = WIRE_HDR + ((size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3]);
		const uint8_t *f = evbuffer_pullup(p->queue, (ev_ssize_t)flen);
		push(p, f, flen);
		evbuffer_drain(p->queue, flen);
	}
	p->ops->ready(p, p->arg);
}

/* Parses and hands on one frame from f[0..avail). Returns the bytes it
 * took, 0 if the frame is not complete yet, or -1 if the link failed. The
 * prefix alone decides a too-large frame: nothing is read past it. */
static long one_frame(struct peer *p, const uint8_t *f, size_t avail)
{
	struct wire_msg m;
	size_t used;
	if (avail < WIRE_HDR)
		return 0;
	size_t flen = (size_t)f[0] << 24 | (size_t)f[1] << 16 | (size_t)f[2] << 8 | f[3];
	size_t need = flen <= p->cfg.frame_max ? WIRE_HDR + flen : WIRE_HDR;
	if (avail < need)
		return 0;
	if (wire_parse(p->dec, f, need, &m, &used) != WIRE_OK_) {
		const char *why;
		wire_dec_error(p->dec, &why);
		p->bad++;
		fail(p, why);
		return -1;
	}
	if (!p->ready)
		on_hello(p, &m);
	else
		p->ops->frame(p, &m, f, used, p->arg);
	return (long)used;
}

/* The frames in p->in (a frame that spanned messages, and what follows). */
static void parse_frames(struct peer *p)
{
	while (!p->gone) {
		size_t avail = evbuffer_get_length(p->in);
		if (avail < WIRE_HDR)
			return;
		uint8_t h[WIRE_HDR];
		evbuffer_copyout(p->in, h, WIRE_HDR);
		size_t flen = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
		size_t need = flen <= p->cfg.frame_max ? WIRE_HDR + flen : WIRE_HDR;
		if (avail < need)
			return;
		const uint8_t *f = evbuffer_pullup(p->in, (ev_ssize_t)need);
		long used = one_frame(p, f, need);
		if (used <= 0)
			return;
		evbuffer_drain(p->in, (size_t)used);
	}
}

/* The frames of one opened message in p->plain, parsed in place; a
 * trailing partial frame waits in p->in for the next message. */
static void parse_plain(struct peer *p, size_t len)
{
	size_t at = 0;
	while (!p->gone && at < len) {
		long used = one_frame(p, p->plain + at, len - at);
		if (used < 0)
			return;
		if (used == 0) {
			if (evbuffer_add(p->in, p->plain + at, len - at) < 0)
				fail(p, "out of memory");
			return;
		}
		at += (size_t)used;
	}
}

/* Reads past libevent's 4 KiB per callback (node/bevio.h). Bounded:
 * on_read opens every complete message before it returns, so the input
 * holds at most one partial message plus MAX_READ. */
static void on_read(struct bufferevent *bev, void *arg)
{
	struct peer *p = arg;
	struct evbuffer *raw = bufferevent_get_input(bev);
	p->busy++;
	if (!p->have_peer_hdr) {
		if (evbuffer_get_length(raw) < HDR)
			goto out;
		uint8_t h[HDR];
		evbuffer_remove(raw, h, HDR);
		if (crypto_secretstream_xchacha20poly1305_init_pull(&p->rx, h, p->cfg.key) < 0) {
			p->bad++;
			fail(p, "bad stream header");
			goto out;
		}
		p->have_peer_hdr = 1;
		send_hello(p, h);
	}
	/* A full 4 KiB read means more is likely waiting. */
	if (!p->gone && evbuffer_get_length(raw) >= 4096)
		bevio_read_more(p->bev, MAX_READ);
	while (!p->gone) {
		size_t avail = evbuffer_get_length(raw);
		uint8_t lh[4];
		if (avail < 4)
			break;
		evbuffer_copyout(raw, lh, 4);
		size_t clen = (size_t)lh[0] << 24 | (size_t)lh[1] << 16 | (size_t)lh[2] << 8 | lh[3];
		if (clen < ABYT || clen > p->cfg.frame_max + 4096) {
			p->bad++;
			fail(p, "message length out of bounds");
			break;
		}
		if (avail < 4 + clen)
			break;
		const uint8_t *c = evbuffer_pullup(raw, (ev_ssize_t)(4 + clen));
		/* Opened in place when no partial frame waits (the usual case:
		 * senders never split a frame), else behind it in p->in. */
		int flat = evbuffer_get_length(p->in) == 0;
		struct evbuffer_iovec v;
		if (flat && p->plain_cap < clen - ABYT) {
			/* clen is bounded above: at most frame_max + 4096. */
			uint8_t *np = realloc(p->plain, clen - ABYT);
			if (!np) {
				fail(p, "out of memory");
				break;
			}
			p->plain = np;
			p->plain_cap = clen - ABYT;
		}
		if (flat) {
			v.iov_base = p->plain;
		} else if (evbuffer_reserve_space(p->in, (ev_ssize_t)(clen - ABYT), &v, 1) < 1) {
			fail(p, "out of memory");
			break;
		}
		unsigned long long mlen;
		unsigned char tag;
		if (crypto_secretstream_xchacha20poly1305_pull(&p->rx, v.iov_base, &mlen, &tag, c + 4,
							       clen, NULL, 0) < 0) {
			p->bad++;
			fail(p, "a message does not open under the cluster key");
			break;
		}
		evbuffer_drain(raw, 4 + clen);
		if (flat) {
			parse_plain(p, (size_t)mlen);
		} else {
			v.iov_len = (size_t)mlen;
			evbuffer_commit_space(p->in, &v, 1);
			parse_frames(p);
		}
	}
out:
	p->busy--;
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct peer *p = arg;
	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		return;
	}
	if (what & BEV_EVENT_EOF) {
		fail(p, "closed by the peer");
	} else if (what & BEV_EVENT_ERROR) {
		int err = EVUTIL_SOCKET_ERROR();
		if (p->outgoing && !p->have_peer_hdr && err == ECONNREFUSED)
			p->refused = 1;
		fail(p, evutil_socket_error_to_string(err));
	}
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct peer *p = arg;
	if (!p->ready) {
		p->bad++;
		fail(p, "no handshake within 5 s");
	}
}

static struct peer *peer_new(struct event_base *base, evutil_socket_t fd, const char *addr,
			     const struct peer_cfg *cfg, const struct peer_ops *ops, void *arg)
{
	struct peer *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->cfg = *cfg;
	p->ops = ops;
	p->arg = arg;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	p->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	p->queue = evbuffer_new();
	p->in = evbuffer_new();
	p->dec = wire_dec_new(cfg->frame_max);
	p->deadline = evtimer_new(base, on_deadline, p);
	p->flush_ev = event_new(base, -1, 0, on_flush, p);
	if (!p->bev || !p->queue || !p->in || !p->dec || !p->deadline || !p->flush_ev) {
		if (!p->bev && fd >= 0)
			evutil_closesocket(fd);
		peer_free(p);
		return NULL;
	}
	bufferevent_setcb(p->bev, on_read, NULL, on_event, p);
	bufferevent_set_max_single_read(p->bev, MAX_READ);
	bufferevent_set_max_single_write(p->bev, MAX_WRITE);
	bufferevent_enable(p->bev, EV_READ | EV_WRITE);
	struct timeval tv = {5, 0};
	evtimer_add(p->deadline, &tv);
	/* Our direction's header goes first; it is also the challenge the
	 * other side must echo. */
	crypto_secretstream_xchacha20poly1305_init_push(&p->tx, p->my_hdr, cfg->key);
	bufferevent_write(p->bev, p->my_hdr, HDR);
	return p;
}

struct peer *peer_connect(struct event_base *base, const char *addr, const struct peer_cfg *cfg,
			  const struct peer_ops *ops, void *arg)
{
	char host[128];
	int port;
	if (addr_split(addr, "127.0.0.1", host, sizeof(host), &port) < 0)
		return NULL;
	struct peer *p = peer_new(base, -1, addr, cfg, ops, arg);
	if (!p)
		return NULL;
	p->outgoing = 1;
	if (bufferevent_socket_connect_hostname(p->bev, NULL, AF_UNSPEC, host, port) < 0) {
		peer_free(p);
		return NULL;
	}
	return p;
}

struct peer *peer_accept(struct event_base *base, evutil_socket_t fd, const char *from,
			 const struct peer_cfg *cfg, const struct peer_ops *ops, void *arg)
{
	evutil_make_socket_nonblocking(fd);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return peer_new(base, fd, from, cfg, ops, arg);
}

void peer_free(struct peer *p)
{
	if (!p)
		return;
	if (p->deadline)
		event_free(p->deadline);
	if (p->flush_ev)
		event_free(p->flush_ev);
	if (p->bev)
		bufferevent_free(p->bev);
	if (p->queue)
		evbuffer_free(p->queue);
	if (p->in)
		evbuffer_free(p->in);
	wire_dec_free(p->dec);
	if (p->plain)
		sodium_memzero(p->plain, p->plain_cap);
	free(p->plain);
	if (p->stage)
		sodium_memzero(p->stage, STAGE_MAX);
	free(p->stage);
	sodium_memzero(&p->tx, sizeof(p->tx));
	sodium_memzero(&p->rx, sizeof(p->rx));
	free(p);
}

const char *peer_name(const struct peer *p)
{
	return p->name;
}

const char *peer_addr(const struct peer *p)
{
	return p->addr;
}

int peer_is_ready(const struct peer *p)
{
	return p->ready && !p->gone;
}

int peer_is_gone(const struct peer *p)
{
	return p->gone;
}

int peer_refused(const struct peer *p)
{
	return p->refused;
}

int peer_outgoing(const struct peer *p)
{
	return p->outgoing;
}

int peer_send(struct peer *p, const uint8_t *frame, size_t len)
{
	if (p->gone)
		return -1;
	if (!p->ready) {
		if (evbuffer_get_length(p->queue) + len > p->cfg.max_pending) {
			fail(p, "too much queued before the handshake");
			return -1;
		}
		return evbuffer_add(p->queue, frame, len);
	}
	return stage_frame(p, frame, len);
}

size_t peer_pending(const struct peer *p)
{
	return evbuffer_get_length(bufferevent_get_output(p->bev)) + evbuffer_get_length(p->queue) +
	       p->stage_len;
}

uint64_t peer_bad(const struct peer *p)
{
	return p->bad;
}

/*
 * ceiling_relay: the fan-out ceiling for tools/fanout_compare.sh.
 *
 * A relay that does no parsing: each client sends one byte, 'P' (publisher)
 * or 'S' (subscriber), and gets one byte 'K' back; from then on every byte
 * read from a publisher is written verbatim to every subscriber. One thread,
 * epoll, non-blocking sockets. A read lands in a refcounted chunk that every
 * subscriber's queue references (no copy per subscriber in user space); a
 * subscriber that cannot take it all keeps the rest queued, and the relay
 * stops reading publishers while any queue is past HIGH bytes, until every
 * queue is under LOW. That is the least a relay can do and still be correct,
 * so what it delivers is the ceiling for any server in the same conditions.
 *
 *   ceiling_relay [--listen 127.0.0.1:PORT]   (port 0: any; printed on stdout)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define CHUNK (256u << 10)
#define HIGH (4u << 20)
#define LOW (1u << 20)
#define MAXQ 64 /* iovecs per writev */

struct chunk {
	unsigned refs;
	size_t len;
	unsigned char data[];
};

struct qent {
	struct chunk *c;
	size_t off;
};

enum role { R_NEW, R_PUB, R_SUB, R_DEAD };

struct client {
	int fd;
	enum role role;
	struct qent *q; /* ring of queued chunk references */
	size_t qhead, qlen, qcap, qbytes;
	int want_out; /* EPOLLOUT is armed */
	int over;     /* went past HIGH and is not yet under LOW */
	struct client *next, *prev; /* in the subscriber or publisher list */
};

static struct client *subs, *pubs, *dead;
static int ep;
static size_t blocked; /* subscribers at or over HIGH, then until under LOW */
static int pubs_paused;

static void unref(struct chunk *c)
{
	if (--c->refs == 0)
		free(c);
}

static void ctl(struct client *cl, int op, unsigned events)
{
	struct epoll_event ev = {.events = events, .data.ptr = cl};
	epoll_ctl(ep, op, cl->fd, &ev);
}

static void list_del(struct client **head, struct client *cl)
{
	if (cl->prev)
		cl->prev->next = cl->next;
	else if (*head == cl)
		*head = cl->next;
	if (cl->next)
		cl->next->prev = cl->prev;
	cl->next = cl->prev = NULL;
}

static void list_add(struct client **head, struct client *cl)
{
	cl->next = *head;
	cl->prev = NULL;
	if (*head)
		(*head)->prev = cl;
	*head = cl;
}

static void set_pubs(int paused)
{
	if (paused == pubs_paused)
		return;
	pubs_paused = paused;
	for (struct client *p = pubs; p; p = p->next)
		ctl(p, EPOLL_CTL_MOD, paused ? 0 : EPOLLIN);
}

/* Closes now; the memory goes after the current batch of events, which
 * may still name it. */
static void drop(struct client *cl)
{
	if (cl->role == R_DEAD)
		return;
	if (cl->role == R_SUB) {
		if (cl->over && --blocked == 0)
			set_pubs(0);
		list_del(&subs, cl);
	} else if (cl->role == R_PUB) {
		list_del(&pubs, cl);
	}
	for (size_t i = 0; i < cl->qlen; i++)
		unref(cl->q[(cl->qhead + i) % cl->qcap].c);
	cl->qlen = 0;
	close(cl->fd);
	cl->role = R_DEAD;
	list_add(&dead, cl);
}

/* Writes as much of the queue as the socket takes. -1: the client is gone. */
static int flush(struct client *cl)
{
	while (cl->qlen) {
		struct iovec iov[MAXQ];
		int n = 0;
		for (size_t i = 0; i < cl->qlen && n < MAXQ; i++, n++) {
			struct qent *e = &cl->q[(cl->qhead + i) % cl->qcap];
			iov[n].iov_base = e->c->data + e->off;
			iov[n].iov_len = e->c->len - e->off;
		}
		ssize_t w = writev(cl->fd, iov, n);
		if (w < 0) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			return -1;
		}
		cl->qbytes -= (size_t)w;
		while (w > 0) {
			struct qent *e = &cl->q[cl->qhead];
			size_t left = e->c->len - e->off;
			if ((size_t)w < left) {
				e->off += (size_t)w;
				break;
			}
			w -= (ssize_t)left;
			unref(e->c);
			cl->qhead = (cl->qhead + 1) % cl->qcap;
			cl->qlen--;
		}
	}
	int want = cl->qlen ? 1 : 0;
	if (want != cl->want_out) {
		ctl(cl, EPOLL_CTL_MOD, want ? EPOLLOUT : 0);
		cl->want_out = want;
	}
	if (!cl->over && cl->qbytes >= HIGH) {
		cl->over = 1;
		blocked++;
		set_pubs(1);
	} else if (cl->over && cl->qbytes < LOW) {
		cl->over = 0;
		if (--blocked == 0)
			set_pubs(0);
	}
	return 0;
}

static int enqueue(struct client *cl, struct chunk *c)
{
	if (cl->qlen == cl->qcap) {
		size_t cap = cl->qcap ? cl->qcap * 2 : 16;
		struct qent *v = malloc(cap * sizeof(*v));
		if (!v)
			return -1;
		for (size_t i = 0; i < cl->qlen; i++)
			v[i] = cl->q[(cl->qhead + i) % cl->qcap];
		free(cl->q);
		cl->q = v;
		cl->qhead = 0;
		cl->qcap = cap;
	}
	c->refs++;
	cl->q[(cl->qhead + cl->qlen) % cl->qcap] = (struct qent){c, 0};
	cl->qlen++;
	cl->qbytes += c->len;
	return 0;
}

/* Reads a publisher until it would block and fans each read out. */
static void on_pub(struct client *p)
{
	for (int rounds = 0; rounds < 16 && !pubs_paused; rounds++) {
		struct chunk *c = malloc(sizeof(*c) + CHUNK);
		if (!c)
			return;
		ssize_t r = read(p->fd, c->data, CHUNK);
		if (r <= 0) {
			free(c);
			if (r == 0 || (errno != EAGAIN && errno != EINTR))
				drop(p);
			return;
		}
		c->len = (size_t)r;
		c->refs = 1;
		struct client *s, *next;
		for (s = subs; s; s = next) {
			next = s->next;
			if (s->qlen == 0) { /* the common case: straight to the socket */
				ssize_t w = write(s->fd, c->data, c->len);
				if (w == (ssize_t)c->len)
					continue;
				if (w < 0 && errno != EAGAIN && errno != EINTR) {
					drop(s);
					continue;
				}
				if (enqueue(s, c) < 0) {
					drop(s);
					continue;
				}
				if (w > 0) {
					s->q[s->qhead].off = (size_t)w;
					s->qbytes -= (size_t)w;
				}
				if (flush(s) < 0)
					drop(s);
			} else if (enqueue(s, c) < 0 || flush(s) < 0) {
				drop(s);
			}
		}
		unref(c);
		if ((size_t)r < CHUNK)
			return;
	}
}

static void on_new(struct client *cl)
{
	char role;
	ssize_t r = read(cl->fd, &role, 1);
	if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
		drop(cl);
		return;
	}
	if (r < 0)
		return;
	if (role == 'P') {
		cl->role = R_PUB;
		list_add(&pubs, cl);
		ctl(cl, EPOLL_CTL_MOD, pubs_paused ? 0 : EPOLLIN);
	} else if (role == 'S') {
		cl->role = R_SUB;
		list_add(&subs, cl);
		ctl(cl, EPOLL_CTL_MOD, 0); /* a subscriber's input is ignored */
	} else {
		drop(cl);
		return;
	}
	(void)!write(cl->fd, "K", 1);
}

int main(int argc, char **argv)
{
	const char *listen_at = "127.0.0.1:0";
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
			listen_at = argv[++i];
		else {
			fprintf(stderr, "usage: ceiling_relay [--listen 127.0.0.1:PORT]\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	char host[64];
	const char *colon = strrchr(listen_at, ':');
	if (!colon || (size_t)(colon - listen_at) >= sizeof(host)) {
		fprintf(stderr, "ceiling_relay: --listen HOST:PORT\n");
		return 2;
	}
	memcpy(host, listen_at, (size_t)(colon - listen_at));
	host[colon - listen_at] = '\0';
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "ceiling_relay: bad address %s\n", host);
		return 2;
	}
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0) {
		perror("ceiling_relay: listen");
		return 1;
	}
	socklen_t sl = sizeof(sa);
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
	fflush(stdout);

	ep = epoll_create1(0);
	struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
	struct epoll_event evs[256];
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1);
		if (n < 0 && errno == EINTR)
			continue;
		for (int i = 0; i < n; i++) {
			struct client *cl = evs[i].data.ptr;
			if (!cl) {
				int fd;
				while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					struct client *c = calloc(1, sizeof(*c));
					if (!c) {
						close(fd);
						continue;
					}
					c->fd = fd;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ctl(c, EPOLL_CTL_ADD, EPOLLIN);
				}
				continue;
			}
			if (cl->role == R_DEAD)
				continue;
			if (cl->role == R_NEW)
				on_new(cl);
			else if (cl->role == R_PUB)
				on_pub(cl);
			else if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
				drop(cl);
			} else if (flush(cl) < 0)
				drop(cl);
		}
		while (dead) {
			struct client *d = dead;
			dead = d->next;
			free(d->q);
			free(d);
		}
	}
}

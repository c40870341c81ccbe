#include "node/bevio.h"

#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

size_t bevio_read_more(struct bufferevent *bev, size_t want)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v[2];
	/* A bufferevent keeps its input's end frozen except around its own
	 * reads; this read does the same. */
	evbuffer_unfreeze(in, 0);
	int nv = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
	if (nv <= 0) {
		evbuffer_freeze(in, 0);
		return 0;
	}
	struct iovec iov[2];
	size_t room = 0;
	for (int i = 0; i < nv; i++) {
		size_t l = v[i].iov_len;
		if (l > want - room)
			l = want - room;
		iov[i].iov_base = v[i].iov_base;
		iov[i].iov_len = l;
		room += l;
	}
	ssize_t got = readv(bufferevent_getfd(bev), iov, nv);
	if (got > 0) {
		size_t left = (size_t)got;
		for (int i = 0; i < nv; i++) {
			v[i].iov_len = left < iov[i].iov_len ? left : iov[i].iov_len;
			left -= v[i].iov_len;
		}
		evbuffer_commit_space(in, v, nv);
	}
	evbuffer_freeze(in, 0);
	return got > 0 ? (size_t)got : 0;
}

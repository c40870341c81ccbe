/*
 * bevio: one read past libevent 2.1's 4096 bytes per read callback.
 *
 * evbuffer_read reads at most EVBUFFER_MAX_READ (4096) bytes per callback,
 * whatever bufferevent_set_max_single_read says: a busy connection then
 * costs a loop turn per 4 KiB. bevio_read_more tops a bufferevent's input
 * up with one readv into space reserved in it. End of file and errors are
 * left for libevent's next read to report.
 */
#ifndef VROOM_NODE_BEVIO_H
#define VROOM_NODE_BEVIO_H

#include <stddef.h>
#include <sys/types.h>

struct bufferevent;

/* Reads up to want bytes from bev's socket into its input buffer; the bytes
 * read (0 if none, or on end of file or an error). */
size_t bevio_read_more(struct bufferevent *bev, size_t want);

#endif

#include "node/cfg.h"

#include <stdio.h>
#include <string.h>

#include "node/log.h"
#include "stream/wire.h"

void cfg_defaults(struct cfg *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->listen, sizeof(c->listen), "%s", CFG_DEFAULT_LISTEN);
	c->log_level = LOG_INFO;
	c->room_idle_ms = 300 * 1000;
	c->hello_timeout_ms = 5 * 1000;
	c->frame_max = WIRE_FRAME_MAX;
	c->max_pending = 8u << 20;
	c->max_conns = 10000;
	c->max_subs = 1024;
	c->max_grants = 256;
	c->max_streams = 64;
	c->chunk_max = 128u << 10;
	c->stream_window = 1u << 20;
	c->stream_idle_ms = 30 * 1000;
	c->slow_timeout_ms = 10 * 1000;
}

int cfg_check(const struct cfg *c, char *why, size_t whylen)
{
	if (c->room_idle_ms < 1000) {
		snprintf(why, whylen, "room_idle_timeout must be at least 1 second");
		return -1;
	}
	if (c->frame_max < WIRE_FRAME_MIN_MAX || c->frame_max > (64u << 20)) {
		snprintf(why, whylen, "frame_max must be between %u and %u bytes",
			 WIRE_FRAME_MIN_MAX, 64u << 20);
		return -1;
	}
	if (c->max_pending < 2 * (c->frame_max + WIRE_HDR)) {
		snprintf(why, whylen, "max_pending (%zu) must be at least twice frame_max (%zu)",
			 c->max_pending, c->frame_max);
		return -1;
	}
	if (c->hello_timeout_ms < 100) {
		snprintf(why, whylen, "hello_timeout must be at least 100 ms");
		return -1;
	}
	if (c->chunk_max < 1024 || c->chunk_max + 512 > c->frame_max) {
		snprintf(why, whylen, "chunk_max must be at least 1024 and 512 bytes under frame_max");
		return -1;
	}
	if (c->stream_window < c->chunk_max || c->stream_window > c->max_pending) {
		snprintf(why, whylen, "stream_window must be between chunk_max and max_pending");
		return -1;
	}
	if (c->stream_idle_ms < 100 || c->slow_timeout_ms < 100) {
		snprintf(why, whylen, "stream_idle_timeout and slow_timeout must be at least 100 ms");
		return -1;
	}
	if (c->max_conns < 1 || c->max_subs < 1 || c->max_streams < 1) {
		snprintf(why, whylen, "max_conns, max_subs and max_streams must be at least 1");
		return -1;
	}
	return 0;
}

#include "stream/gate.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "stream/room.h"
#include "stream/wire.h"

size_t gate_source(const struct sockaddr *sa, uint8_t key[QUOTA_WKEY_MAX])
{
	if (sa->sa_family == AF_INET) {
		key[0] = 4;
		memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 5;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			key[0] = 4;
			memcpy(key + 1, a->s6_addr + 12, 4);
			return 5;
		}
		key[0] = 6;
		memcpy(key + 1, a->s6_addr, 8); /* the /64: one site's addresses */
		return 9;
	}
	return 0;
}

uint64_t gate_hello_refused(const struct quota_window *q, const uint8_t *src, size_t len,
			    size_t max, uint64_t now_ms)
{
	if (!max || !len)
		return 0;
	uint64_t fails = quota_window_get(q, src, len, now_ms);
	return fails >= max ? fails : 0;
}

void gate_hello_failed(struct quota_window *q, const uint8_t *src, size_t len, size_t max,
		       uint64_t now_ms)
{
	if (max && len)
		quota_window_hit(q, src, len, now_ms);
}

struct gate_bucket gate_bucket_of(size_t max_in_rate)
{
	size_t per_tick = max_in_rate / (1000 / GATE_BUCKET_TICK_MS);
	struct gate_bucket b = {per_tick ? per_tick : 1,
				per_tick > GATE_BUCKET_BURST ? per_tick : GATE_BUCKET_BURST};
	return b;
}

int gate_allowed(const struct token_grants *gr, const struct room *r, const char *identity,
		 size_t len, enum token_grant_kind kind)
{
	return !gr || room_is_owner(r, identity, len) ||
	       token_grants_allow(gr, kind, room_id(r), strlen(room_id(r)));
}

int gate_may_route(const struct token_grants *gr, unsigned type, const struct wire_str *room,
		   const struct rooms *here)
{
	int sub = 0, push = 0;
	switch (type) {
	case WIRE_CREATE:
		return gr->create != 0;
	case WIRE_SUBSCRIBE:
		sub = 1;
		break;
	case WIRE_PUSH:
	case WIRE_STREAM_OPEN:
	case WIRE_STREAM_CLAIM:
		push = 1;
		break;
	case WIRE_INFO:
		sub = push = 1;
		break;
	default:
		return 1;
	}
	if (rooms_find(here, room->ptr, room->len))
		return 1; /* held here: the handler checks, owner included */
	return (sub && token_grants_allow(gr, TOKEN_SUB, room->ptr, room->len)) ||
	       (push && token_grants_allow(gr, TOKEN_PUSH, room->ptr, room->len));
}

enum gate_create gate_may_create(const struct token_grants *gr, size_t rooms, size_t max_rooms,
				 size_t owned, size_t max_owned)
{
	if (gr && !gr->create)
		return GATE_CREATE_FORBIDDEN;
	if (rooms >= max_rooms)
		return GATE_CREATE_MAX_ROOMS;
	if (owned >= max_owned)
		return GATE_CREATE_MAX_OWNED;
	return GATE_CREATE_OK;
}

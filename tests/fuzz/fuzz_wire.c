/*
 * fuzz_wire: feeds arbitrary bytes to wire_parse() as a stream of frames
 * (parse, advance by *used, stop at NEED_MORE or BAD) with the default 1 MiB
 * frame limit, and checks what wire.h promises about each outcome:
 *   OK:        0 < used <= bytes left, used = prefix + the prefix's length,
 *              every str/bin field borrowed from inside that frame (never
 *              NULL, even when empty);
 *   NEED_MORE: used is 0 while the prefix is incomplete, else the whole
 *              frame's size, which is more than the bytes left;
 *   BAD:       a fatal error code with a reason, and never "msgpack-c
 *              rejected" a body that the bounds pass accepted.
 * Built as a libFuzzer target with -Dfuzzing=true; replay.c runs the saved
 * corpus through the same function in every other build.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "fuzz_wire: %s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                                     \
			abort();                                                      \
		}                                                                     \
	} while (0)

/* Which fields of the known types are borrowed byte ranges ('s' for str or
 * bin), mirroring docs/protocol.md independently of wire.c's table. */
static const struct {
	uint16_t type;
	const char *fields;
} strs[] = {
	{WIRE_HELLO, "-ss"},	{WIRE_WELCOME, "ss-"},	  {WIRE_ERROR, "-s"},
	{WIRE_REMOVE, "s"},	{WIRE_GRANT, "ss"},	  {WIRE_REVOKE, "ss"},
	{WIRE_SUBSCRIBE, "s-"}, {WIRE_UNSUBSCRIBE, "s"},  {WIRE_INFO, "s"},
	{WIRE_PUSH, "s-s"},	{WIRE_DELIVER, "s-s-s"}, {WIRE_ROOM_CLOSED, "ss"},
	{WIRE_STREAM_OPEN, "sssss"},	{WIRE_STREAM_CHUNK, "s-s"},
	{WIRE_STREAM_CLOSE, "ss"},	{WIRE_STREAM_ABORT, "ss"},
	{WIRE_STREAM_OPENED, "ssssss"}, {WIRE_STREAM_DATA, "s-s"},
	{WIRE_STREAM_END, "sss"},	{WIRE_STREAM_CREDIT, "s"},
};

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Every str/bin field of a parsed frame lies inside frame[0..len). */
static void check_borrowed(const struct wire_msg *m, const uint8_t *frame, size_t len)
{
	CHECK(m->nfields <= WIRE_MAX_FIELDS);
	if (!wire_type_known(m->type)) {
		CHECK(m->nfields == 0);
		return;
	}
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (strs[i].type != m->type)
			continue;
		const char *f = strs[i].fields;
		for (unsigned k = 0; k < m->nfields && f[k]; k++) {
			if (f[k] != 's')
				continue;
			const uint8_t *p = (const uint8_t *)m->f[k].s.ptr;
			CHECK(p >= frame && p <= frame + len);
			CHECK(m->f[k].s.len <= (size_t)(frame + len - p));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct wire_dec *d = wire_dec_new(WIRE_FRAME_MAX);
	size_t off = 0;

	if (!d)
		return 0;
	for (;;) {
		const uint8_t *p = data + off;
		size_t left = size - off;
		struct wire_msg m;
		size_t used = (size_t)-1;
		const char *why = NULL;
		enum wire_status st = wire_parse(d, p, left, &m, &used);

		if (st == WIRE_OK_) {
			CHECK(used > 0 && used <= left);
			CHECK(used == WIRE_HDR + (size_t)be32(p));
			check_borrowed(&m, p, used);
			off += used;
			continue;
		}
		if (st == WIRE_NEED_MORE) {
			if (left < WIRE_HDR)
				CHECK(used == 0);
			else
				CHECK(used == WIRE_HDR + (size_t)be32(p) && used > left);
			break;
		}
		CHECK(st == WIRE_BAD);
		int err = wire_dec_error(d, &why);
		CHECK(why != NULL);
		CHECK(err == WIRE_E_BAD_FRAME || err == WIRE_E_TOO_LARGE);
		CHECK(wire_err_fatal(err));
		CHECK((err == WIRE_E_TOO_LARGE) == (be32(p) > WIRE_FRAME_MAX));
		/* the bounds pass accepts only well-formed msgpack: msgpack-c must
		 * never reject a body that got past it */
		CHECK(strstr(why, "msgpack-c") == NULL);
		break;
	}
	wire_dec_free(d);
	return 0;
}

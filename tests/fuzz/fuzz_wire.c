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
 *              rejected" a body that the bounds pass accepted;
 * and that the flat path (wire.c parse_flat) decides every frame exactly as
 * the generic path does: a second decoder with the flat path off must give
 * the same status, size, error and fields.
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

/* The fields of the known types: 'u' unsigned, 's' a borrowed byte range
 * (str or bin), 'o' a msgpack object (map, list or any value), mirroring
 * docs/protocol.md independently of wire.c's table. */
static const struct {
	uint16_t type;
	const char *fields;
} strs[] = {
	{WIRE_HELLO, "uss"},		{WIRE_WELCOME, "sso"},
	{WIRE_OK, "o"},			{WIRE_ERROR, "us"},
	{WIRE_REMOVE, "s"},		{WIRE_GRANT, "ss"},
	{WIRE_REVOKE, "ss"},		{WIRE_SUBSCRIBE, "so"},
	{WIRE_UNSUBSCRIBE, "s"},	{WIRE_INFO, "s"},
	{WIRE_CREATE_ID, "s"},		{WIRE_PLACE, "s"},
	{WIRE_PUSH, "sus"},		{WIRE_DELIVER, "susus" "u"},
	{WIRE_ROOM_CLOSED, "ss"},	{WIRE_STREAM_OPEN, "sssssoolu"},
	{WIRE_STREAM_CHUNK, "sus"},	{WIRE_STREAM_CLOSE, "ssoo"},
	{WIRE_STREAM_ABORT, "ss"},	{WIRE_STREAM_OPENED, "ssssssoolu" "u"},
	{WIRE_STREAM_DATA, "sus"},	{WIRE_STREAM_END, "sssouo"},
	{WIRE_STREAM_CREDIT, "suu"},	{WIRE_PEER_HELLO, "sus"},
	{WIRE_FWD, "uss"},		{WIRE_FWD_REPLY, "us"},
	{WIRE_NODE_SUB, "suu"},		{WIRE_SESSION_END, "u"},
	{WIRE_STREAM_ACK, "su"},	{WIRE_REPL_STATE, "ssouu"},
	{WIRE_REPL_PUSH, "suuus"},	{WIRE_REPL_GONE, "s"},
};

static const char *fields_of(uint16_t type)
{
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		if (strs[i].type == type)
			return strs[i].fields;
	return NULL;
}

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
	const char *f = fields_of(m->type);
	for (unsigned k = 0; f && k < m->nfields && f[k]; k++) {
		if (f[k] != 's')
			continue;
		const uint8_t *p = (const uint8_t *)m->f[k].s.ptr;
		CHECK(p >= frame && p <= frame + len);
		CHECK(m->f[k].s.len <= (size_t)(frame + len - p));
	}
}

/* The flat path and the generic path gave the same message. */
static void check_same(const struct wire_msg *a, const struct wire_msg *b)
{
	CHECK(a->type == b->type && a->rid == b->rid && a->nfields == b->nfields);
	const char *f = fields_of(a->type);
	for (unsigned k = 0; f && k < a->nfields && f[k]; k++) {
		if (f[k] == 'u')
			CHECK(a->f[k].u == b->f[k].u);
		else if (f[k] == 's')
			CHECK(a->f[k].s.ptr == b->f[k].s.ptr && a->f[k].s.len == b->f[k].s.len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* d: as the node parses; g: the generic path alone (bounds pass and
	 * msgpack-c), which must decide every frame the same way. */
	struct wire_dec *d = wire_dec_new(WIRE_FRAME_MAX);
	struct wire_dec *g = wire_dec_new(WIRE_FRAME_MAX);
	size_t off = 0;

	if (!d || !g) {
		wire_dec_free(d);
		wire_dec_free(g);
		return 0;
	}
	wire_dec_set_flat(g, 0);
	for (;;) {
		const uint8_t *p = data + off;
		size_t left = size - off;
		struct wire_msg m, mg;
		size_t used = (size_t)-1, used_g = (size_t)-1;
		const char *why = NULL, *why_g = NULL;
		enum wire_status st = wire_parse(d, p, left, &m, &used);
		enum wire_status st_g = wire_parse(g, p, left, &mg, &used_g);

		CHECK(st == st_g && used == used_g);
		if (st == WIRE_OK_) {
			CHECK(used > 0 && used <= left);
			CHECK(used == WIRE_HDR + (size_t)be32(p));
			check_borrowed(&m, p, used);
			check_same(&m, &mg);
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
		CHECK(err == wire_dec_error(g, &why_g) && why == why_g);
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
	wire_dec_free(g);
	return 0;
}

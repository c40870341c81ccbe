/*
 * Unit tests for stream/wire: round trips for every message type, the
 * NEED_MORE / BAD decisions of wire_parse(), the bounds pass (wire_check) on
 * hostile counts, depth and bytes, and the schema checks.
 *
 * Hand-made frames are copied into buffers of exactly their size, so that
 * AddressSanitizer reports any read past the bytes wire_parse() was given.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "stream/wire.h"

struct fx {
	struct wire_dec *d;
	struct wire_buf b;     /* frames packed with wire_begin()/wire_end() */
	msgpack_sbuffer sb;    /* raw msgpack bodies, for frames wire_begin() cannot make */
	msgpack_packer pk;     /* packs into sb */
	uint8_t *raw;	       /* exact-size copy of the last hand-made frame */
	struct wire_msg m;
	size_t used;
};

static int group_setup(void **state)
{
	return sodium_init() < 0 ? -1 : 0;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->d = wire_dec_new(WIRE_FRAME_MAX);
	if (!f->d) {
		free(f);
		return -1;
	}
	wire_buf_init(&f->b); /* the packer points at f->b: f must not move */
	msgpack_sbuffer_init(&f->sb);
	msgpack_packer_init(&f->pk, &f->sb, msgpack_sbuffer_write);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	wire_dec_free(f->d);
	wire_buf_free(&f->b);
	msgpack_sbuffer_destroy(&f->sb);
	free(f->raw);
	free(f);
	return 0;
}

/* Parses the first n bytes of f->b, from an exact-size copy. */
static enum wire_status parse_prefix(struct fx *f, size_t n)
{
	free(f->raw);
	f->raw = malloc(n ? n : 1);
	assert_non_null(f->raw);
	memcpy(f->raw, f->b.p, n);
	return wire_parse(f->d, f->raw, n, &f->m, &f->used);
}

/* Parses everything packed into f->b. */
static enum wire_status parse_buf(struct fx *f)
{
	return parse_prefix(f, f->b.len);
}

/* Frames body[0..len) with a length prefix and parses it. */
static enum wire_status parse_body(struct fx *f, const void *body, size_t len)
{
	free(f->raw);
	f->raw = malloc(WIRE_HDR + len);
	assert_non_null(f->raw);
	f->raw[0] = (uint8_t)(len >> 24);
	f->raw[1] = (uint8_t)(len >> 16);
	f->raw[2] = (uint8_t)(len >> 8);
	f->raw[3] = (uint8_t)len;
	memcpy(f->raw + WIRE_HDR, body, len);
	return wire_parse(f->d, f->raw, WIRE_HDR + len, &f->m, &f->used);
}

/* Frames and parses the raw msgpack packed into f->sb, then clears f->sb. */
static enum wire_status parse_sb(struct fx *f)
{
	enum wire_status st = parse_body(f, f->sb.data, f->sb.size);
	msgpack_sbuffer_clear(&f->sb);
	return st;
}

#define PARSE_BYTES(f, ...) \
	parse_body((f), (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

/* Asserts the last parse failed with code, for a reason mentioning why_part. */
static void assert_bad(struct fx *f, enum wire_status st, int code, const char *why_part)
{
	const char *why = NULL;
	assert_int_equal(st, WIRE_BAD);
	assert_int_equal(wire_dec_error(f->d, &why), code);
	assert_non_null(why);
	if (!strstr(why, why_part))
		fail_msg("reason \"%s\" does not mention \"%s\"", why, why_part);
}

/* Parses f->b expecting WIRE_BAD, then empties f->b for the next case. */
static void expect_bad_buf(struct fx *f, int code, const char *why_part)
{
	assert_bad(f, parse_buf(f), code, why_part);
	wire_buf_reset(&f->b);
}

static void assert_str(struct wire_str s, const char *want, size_t len)
{
	assert_int_equal(s.len, len);
	assert_memory_equal(s.ptr, want, len);
}

/* ---- round trips ---- */

/* Fields are packed from a spec with one char per field, as in wire.c's schema
 * table: u unsigned, s str, b bin, m map, l array, v any (here an array). */
struct rt_case {
	const char *name;
	unsigned type;
	const char *fields;
};

static const struct rt_case rt_cases[] = {
	{"HELLO", WIRE_HELLO, "us"},
	{"HELLO with token", WIRE_HELLO, "usb"},
	{"HELLO with publisher", WIRE_HELLO, "usbu"},
	{"WELCOME", WIRE_WELCOME, "ssm"},
	{"WELCOME with nodes", WIRE_WELCOME, "ssml"},
	{"OK", WIRE_OK, ""},
	{"OK with value", WIRE_OK, "v"},
	{"ERROR", WIRE_ERROR, "us"},
	{"PING", WIRE_PING, ""},
	{"PONG", WIRE_PONG, ""},
	{"CREATE", WIRE_CREATE, ""},
	{"REMOVE", WIRE_REMOVE, "s"},
	{"GRANT", WIRE_GRANT, "ss"},
	{"REVOKE", WIRE_REVOKE, "ss"},
	{"SUBSCRIBE", WIRE_SUBSCRIBE, "s"},
	{"SUBSCRIBE with topics", WIRE_SUBSCRIBE, "sl"},
	{"SUBSCRIBE with after", WIRE_SUBSCRIBE, "slu"},
	{"UNSUBSCRIBE", WIRE_UNSUBSCRIBE, "s"},
	{"INFO", WIRE_INFO, "s"},
	{"PUSH", WIRE_PUSH, "sub"},
	{"DELIVER", WIRE_DELIVER, "susub"},
	{"DELIVER with origin", WIRE_DELIVER, "susubu"},
	{"ROOM_CLOSED", WIRE_ROOM_CLOSED, "ss"},
	{"STREAM_OPEN", WIRE_STREAM_OPEN, "sssssvmlu"},
	{"STREAM_CHUNK", WIRE_STREAM_CHUNK, "sub"},
	{"STREAM_CLOSE", WIRE_STREAM_CLOSE, "ssmv"},
	{"STREAM_ABORT", WIRE_STREAM_ABORT, "ss"},
	{"STREAM_CLAIM", WIRE_STREAM_CLAIM, "ss"},
	{"STREAM_REJOIN", WIRE_STREAM_REJOIN, "ssu"},
	{"STREAM_REJOIN with topics", WIRE_STREAM_REJOIN, "ssul"},
	{"STREAM_OPENED", WIRE_STREAM_OPENED, "ssssssvmlu"},
	{"STREAM_OPENED with origin", WIRE_STREAM_OPENED, "ssssssvmluu"},
	{"STREAM_DATA", WIRE_STREAM_DATA, "sub"},
	{"STREAM_END", WIRE_STREAM_END, "sssmuv"},
	{"STREAM_CREDIT", WIRE_STREAM_CREDIT, "suu"},
	{"CREATE_ID", WIRE_CREATE_ID, "s"},
	{"SUB_REPLAY", WIRE_SUB_REPLAY, "su"},
	{"PEER_HELLO", WIRE_PEER_HELLO, "sub"},
	{"FWD", WIRE_FWD, "usb"},
	{"FWD with publisher", WIRE_FWD, "usbu"},
	{"FWD_REPLY", WIRE_FWD_REPLY, "ub"},
	{"NODE_SUB", WIRE_NODE_SUB, "su"},
	{"SESSION_END", WIRE_SESSION_END, "u"},
	{"STREAM_ACK", WIRE_STREAM_ACK, "su"},
	{"NODE_STATS_REQ", WIRE_NODE_STATS_REQ, ""},
	{"NODE_STATS", WIRE_NODE_STATS, "b"},
};
#define NCASES (sizeof(rt_cases) / sizeof(rt_cases[0]))

static uint64_t rt_rid(size_t i)
{
	return 0xfeedface0000ull + i; /* wider than 32 bits */
}

static void pack_sample_field(msgpack_packer *pk, char t, unsigned k)
{
	char s[16];
	const uint8_t bin[] = {0x00, (uint8_t)k, 0xff, 'b'}; /* a NUL inside on purpose */

	switch (t) {
	case 'u':
		msgpack_pack_uint64(pk, 0x100000000ull * k + 7);
		break;
	case 's':
		snprintf(s, sizeof(s), "str-%u", k);
		wire_pack_cstr(pk, s);
		break;
	case 'b':
		wire_pack_bin(pk, bin, sizeof(bin));
		break;
	case 'm':
		msgpack_pack_map(pk, 1);
		wire_pack_cstr(pk, "key");
		msgpack_pack_unsigned_int(pk, k);
		break;
	case 'l':
		msgpack_pack_array(pk, 2);
		wire_pack_cstr(pk, "topic-a");
		wire_pack_cstr(pk, "topic-b");
		break;
	case 'v':
		msgpack_pack_array(pk, 1);
		msgpack_pack_int(pk, -(int)k);
		break;
	}
}

static void check_sample_field(char t, unsigned k, const union wire_field *f)
{
	char s[16];
	const uint8_t bin[] = {0x00, (uint8_t)k, 0xff, 'b'};
	const msgpack_object *o;

	switch (t) {
	case 'u':
		assert_true(f->u == 0x100000000ull * k + 7);
		break;
	case 's':
		snprintf(s, sizeof(s), "str-%u", k);
		assert_str(f->s, s, strlen(s));
		break;
	case 'b':
		assert_str(f->s, (const char *)bin, sizeof(bin));
		break;
	case 'm':
		o = f->o;
		assert_int_equal(o->type, MSGPACK_OBJECT_MAP);
		assert_int_equal(o->via.map.size, 1);
		assert_int_equal(o->via.map.ptr[0].key.type, MSGPACK_OBJECT_STR);
		assert_memory_equal(o->via.map.ptr[0].key.via.str.ptr, "key", 3);
		assert_int_equal(o->via.map.ptr[0].val.via.u64, k);
		break;
	case 'l':
		o = f->o;
		assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
		assert_int_equal(o->via.array.size, 2);
		assert_int_equal(o->via.array.ptr[1].type, MSGPACK_OBJECT_STR);
		assert_memory_equal(o->via.array.ptr[1].via.str.ptr, "topic-b", 7);
		break;
	case 'v':
		o = f->o;
		assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
		assert_int_equal(o->via.array.size, 1);
		assert_true(o->via.array.ptr[0].via.i64 == -(int64_t)k);
		break;
	}
}

static void pack_case(struct wire_buf *b, size_t i)
{
	const struct rt_case *c = &rt_cases[i];
	size_t n = strlen(c->fields);
	msgpack_packer *pk = wire_begin(b, c->type, rt_rid(i), (unsigned)n);
	for (size_t k = 0; k < n; k++)
		pack_sample_field(pk, c->fields[k], (unsigned)k);
	wire_end(b, 0);
}

static void check_case(const struct wire_msg *m, size_t i)
{
	const struct rt_case *c = &rt_cases[i];
	size_t n = strlen(c->fields);
	assert_int_equal(m->type, c->type);
	assert_true(m->rid == rt_rid(i));
	assert_int_equal(m->nfields, n);
	for (size_t k = 0; k < n; k++)
		check_sample_field(c->fields[k], (unsigned)k, &m->f[k]);
}

static void test_roundtrip_every_type(void **state)
{
	struct fx *f = *state;
	for (size_t i = 0; i < NCASES; i++) {
		print_message("round trip %s\n", rt_cases[i].name);
		assert_true(wire_type_known(rt_cases[i].type));
		wire_buf_reset(&f->b);
		pack_case(&f->b, i);
		assert_int_equal(parse_buf(f), WIRE_OK_);
		assert_int_equal(f->used, f->b.len);
		check_case(&f->m, i);
	}
}

/* Every case back to back in one buffer parses as a stream, frame by frame. */
static void test_stream_of_frames(void **state)
{
	struct fx *f = *state;
	for (size_t i = 0; i < NCASES; i++)
		pack_case(&f->b, i);
	assert_int_equal(parse_buf(f), WIRE_OK_);

	size_t off = 0;
	for (size_t i = 0; i < NCASES; i++) {
		enum wire_status st =
			wire_parse(f->d, f->raw + off, f->b.len - off, &f->m, &f->used);
		assert_int_equal(st, WIRE_OK_);
		assert_true(f->used > WIRE_HDR && f->used <= f->b.len - off);
		check_case(&f->m, i);
		off += f->used;
	}
	assert_int_equal(off, f->b.len);
	assert_int_equal(wire_parse(f->d, f->raw + off, 0, &f->m, &f->used), WIRE_NEED_MORE);
	assert_int_equal(f->used, 0);
}

/* HELLO's token ('b') accepts a str as well as a bin. */
static void test_hello_token_str(void **state)
{
	struct fx *f = *state;
	msgpack_packer *pk = wire_begin(&f->b, WIRE_HELLO, 9, 3);
	msgpack_pack_unsigned_int(pk, WIRE_VERSION);
	wire_pack_cstr(pk, "alice");
	wire_pack_cstr(pk, "s3cret");
	wire_end(&f->b, 0);
	assert_int_equal(parse_buf(f), WIRE_OK_);
	assert_int_equal(f->m.type, WIRE_HELLO);
	assert_int_equal(f->m.nfields, 3);
	assert_int_equal(f->m.f[0].u, WIRE_VERSION);
	assert_str(f->m.f[1].s, "alice", 5);
	assert_str(f->m.f[2].s, "s3cret", 6);
}

static void test_enc_helpers(void **state)
{
	struct fx *f = *state;
	wire_enc_error(&f->b, 41, WIRE_E_FORBIDDEN, "no");
	wire_enc_ok_nil(&f->b, 42);
	assert_int_equal(parse_buf(f), WIRE_OK_);
	assert_int_equal(f->m.type, WIRE_ERROR);
	assert_int_equal(f->m.rid, 41);
	assert_int_equal(f->m.nfields, 2);
	assert_int_equal(f->m.f[0].u, WIRE_E_FORBIDDEN);
	assert_str(f->m.f[1].s, "no", 2);

	size_t first = f->used;
	assert_int_equal(wire_parse(f->d, f->raw + first, f->b.len - first, &f->m, &f->used),
			 WIRE_OK_);
	assert_int_equal(first + f->used, f->b.len);
	assert_int_equal(f->m.type, WIRE_OK);
	assert_int_equal(f->m.rid, 42);
	assert_int_equal(f->m.nfields, 1);
	assert_int_equal(f->m.f[0].o->type, MSGPACK_OBJECT_NIL);
}

/* wire_end(extra): a bin header packed into b and its payload sent after b's
 * bytes form one frame. Without the payload the frame is incomplete. */
static void test_end_extra(void **state)
{
	struct fx *f = *state;
	uint8_t payload[300];
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);

	msgpack_packer *pk = wire_begin(&f->b, WIRE_PUSH, 5, 3);
	wire_pack_cstr(pk, "room");
	msgpack_pack_unsigned_int(pk, 2);
	msgpack_pack_bin(pk, sizeof(payload));
	wire_end(&f->b, sizeof(payload));
	size_t head = f->b.len;

	assert_int_equal(parse_buf(f), WIRE_NEED_MORE);
	assert_int_equal(f->used, head + sizeof(payload));

	/* what the sender puts on the wire: b's bytes, then the payload */
	uint8_t *wire = malloc(head + sizeof(payload));
	assert_non_null(wire);
	memcpy(wire, f->b.p, head);
	memcpy(wire + head, payload, sizeof(payload));
	assert_int_equal(wire_parse(f->d, wire, head + sizeof(payload), &f->m, &f->used),
			 WIRE_OK_);
	assert_int_equal(f->used, head + sizeof(payload));
	assert_int_equal(f->m.type, WIRE_PUSH);
	assert_int_equal(f->m.f[1].u, 2);
	assert_str(f->m.f[2].s, (const char *)payload, sizeof(payload));
	assert_ptr_equal(f->m.f[2].s.ptr, wire + head);
	free(wire);
}

/* Packs PUSH ["r", 0, <bin>] with a body of exactly body_len bytes (at least
 * 16) and returns the bin's length. The bin holds data's first bytes. */
static size_t pack_push_sized(struct wire_buf *b, const uint8_t *data, size_t body_len)
{
	/* body = fixed part + bin header (2, 3 or 5 bytes) + bin */
	const size_t fixed = 1 + 2 + 1 + 2 + 1; /* array, 200, rid 1, "r", 0 */
	size_t binlen = 0;
	for (size_t h = 2; h <= 5; h++) {
		binlen = body_len - fixed - h;
		size_t need = binlen < 256 ? 2 : binlen < 65536 ? 3 : 5;
		if (need == h)
			break;
	}
	msgpack_packer *pk = wire_begin(b, WIRE_PUSH, 1, 3);
	wire_pack_cstr(pk, "r");
	msgpack_pack_unsigned_int(pk, 0);
	wire_pack_bin(pk, data, binlen);
	wire_end(b, 0);
	assert_int_equal(b->len - b->frame_at, WIRE_HDR + body_len);
	return binlen;
}

/* A frame exactly at the 1 MiB limit parses, and its bin borrows the input. */
static void test_big_frame_borrows(void **state)
{
	struct fx *f = *state;
	uint8_t *data = malloc(WIRE_FRAME_MAX);
	assert_non_null(data);
	for (size_t i = 0; i < WIRE_FRAME_MAX; i++)
		data[i] = (uint8_t)(i * 31 + 1);

	size_t binlen = pack_push_sized(&f->b, data, WIRE_FRAME_MAX);
	assert_int_equal(wire_parse(f->d, f->b.p, f->b.len, &f->m, &f->used), WIRE_OK_);
	assert_int_equal(f->used, WIRE_HDR + WIRE_FRAME_MAX);
	const struct wire_str *s = &f->m.f[2].s;
	assert_int_equal(s->len, binlen);
	/* borrowed: the bin is the last binlen bytes of the input, not a copy */
	assert_ptr_equal(s->ptr, f->b.p + f->b.len - binlen);
	assert_memory_equal(s->ptr, data, binlen);

	/* one byte more is over the limit */
	wire_buf_reset(&f->b);
	pack_push_sized(&f->b, data, WIRE_FRAME_MAX + 1);
	assert_bad(f, wire_parse(f->d, f->b.p, f->b.len, &f->m, &f->used), WIRE_E_TOO_LARGE,
		   "limit");
	free(data);
}

/* An empty str or bin field is still a range inside the frame, never NULL:
 * msgpack-c leaves the pointer of an empty fixstr NULL when no value with a
 * payload came before it, and callers memcpy() from the field. */
static void test_empty_fields_point_into_frame(void **state)
{
	struct fx *f = *state;

	/* PUSH [room "", dtype 0, payload ""]: both fixstr, nothing before them */
	assert_int_equal(PARSE_BYTES(f, 0x95, 0xcc, 0xc8, 0x01, 0xa0, 0x00, 0xa0), WIRE_OK_);
	for (unsigned k = 0; k < 3; k += 2) {
		assert_int_equal(f->m.f[k].s.len, 0);
		assert_non_null(f->m.f[k].s.ptr);
		assert_true((const uint8_t *)f->m.f[k].s.ptr >= f->raw);
		assert_true((const uint8_t *)f->m.f[k].s.ptr <= f->raw + f->used);
	}

	/* HELLO [1, "", bin8 of 0] */
	assert_int_equal(PARSE_BYTES(f, 0x95, 0x01, 0x01, 0x01, 0xa0, 0xc4, 0x00), WIRE_OK_);
	assert_int_equal(f->m.nfields, 3);
	for (unsigned k = 1; k < 3; k++) {
		assert_int_equal(f->m.f[k].s.len, 0);
		assert_non_null(f->m.f[k].s.ptr);
		assert_true((const uint8_t *)f->m.f[k].s.ptr >= f->raw);
		assert_true((const uint8_t *)f->m.f[k].s.ptr <= f->raw + f->used);
	}
}

/* ---- framing ---- */

static void test_need_more_prefix(void **state)
{
	struct fx *f = *state;
	wire_enc_ok_nil(&f->b, 1);
	for (size_t n = 0; n < WIRE_HDR; n++) {
		f->used = 12345;
		assert_int_equal(parse_prefix(f, n), WIRE_NEED_MORE);
		assert_int_equal(f->used, 0);
	}
}

static void test_need_more_body(void **state)
{
	struct fx *f = *state;
	msgpack_packer *pk = wire_begin(&f->b, WIRE_DELIVER, 77, 5);
	wire_pack_cstr(pk, "room");
	msgpack_pack_uint64(pk, 12);
	wire_pack_cstr(pk, "alice");
	msgpack_pack_unsigned_int(pk, 1);
	wire_pack_bin(pk, "payload", 7);
	wire_end(&f->b, 0);
	size_t total = f->b.len;

	for (size_t n = WIRE_HDR; n < total; n++) {
		assert_int_equal(parse_prefix(f, n), WIRE_NEED_MORE);
		assert_int_equal(f->used, total);
	}
	assert_int_equal(parse_prefix(f, total), WIRE_OK_);
	assert_int_equal(f->used, total);
}

/* The limit is checked on the 4-byte prefix before any body byte arrives. */
static void test_too_large_from_prefix(void **state)
{
	struct fx *f = *state;
	const uint32_t lens[] = {WIRE_FRAME_MAX + 1, 0x7fffffffu, 0xffffffffu};

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		uint8_t *p = malloc(WIRE_HDR);
		assert_non_null(p);
		p[0] = (uint8_t)(lens[i] >> 24);
		p[1] = (uint8_t)(lens[i] >> 16);
		p[2] = (uint8_t)(lens[i] >> 8);
		p[3] = (uint8_t)lens[i];
		assert_bad(f, wire_parse(f->d, p, WIRE_HDR, &f->m, &f->used), WIRE_E_TOO_LARGE,
			   "limit");
		assert_true(wire_err_fatal(WIRE_E_TOO_LARGE));
		free(p);
	}

	/* exactly at the limit: not an error, just waiting for the body */
	const uint8_t at[] = {0x00, 0x10, 0x00, 0x00};
	assert_int_equal(wire_parse(f->d, at, sizeof(at), &f->m, &f->used), WIRE_NEED_MORE);
	assert_int_equal(f->used, WIRE_HDR + WIRE_FRAME_MAX);
	assert_int_equal(wire_dec_error(f->d, NULL), 0);
}

static void test_frame_max_setter(void **state)
{
	struct fx *f = *state;
	uint8_t body[WIRE_FRAME_MIN_MAX + 1];
	memset(body, 0, sizeof(body)); /* content does not matter: the length decides */

	wire_dec_set_frame_max(f->d, WIRE_FRAME_MIN_MAX);
	assert_bad(f, parse_body(f, body, sizeof(body)), WIRE_E_TOO_LARGE, "limit");

	/* a frame exactly at the lowered limit is judged on its content */
	pack_push_sized(&f->b, body, WIRE_FRAME_MIN_MAX);
	assert_int_equal(parse_buf(f), WIRE_OK_);
}

static void test_zero_length(void **state)
{
	struct fx *f = *state;
	const uint8_t zero[] = {0, 0, 0, 0};
	assert_bad(f, wire_parse(f->d, zero, sizeof(zero), &f->m, &f->used), WIRE_E_BAD_FRAME,
		   "empty");
	assert_true(wire_err_fatal(WIRE_E_BAD_FRAME));
}

/* ---- the bounds pass ---- */

/* Counts from the wire far larger than the bytes left, at the root and as a
 * field, for each 32-bit and 16-bit count format. */
static void test_huge_counts(void **state)
{
	struct fx *f = *state;
	const char *why = "count";

	/* at the root: array32 / map32 of 2^32-1, str32 / bin32 / ext32 of 2^31 */
	assert_bad(f, PARSE_BYTES(f, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01), WIRE_E_BAD_FRAME, why);
	assert_bad(f, PARSE_BYTES(f, 0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01), WIRE_E_BAD_FRAME,
		   why);
	why = "length";
	assert_bad(f, PARSE_BYTES(f, 0xdb, 0x80, 0x00, 0x00, 0x00, 'a'), WIRE_E_BAD_FRAME, why);
	assert_bad(f, PARSE_BYTES(f, 0xc6, 0x80, 0x00, 0x00, 0x00, 'a'), WIRE_E_BAD_FRAME, why);
	assert_bad(f, PARSE_BYTES(f, 0xc9, 0x80, 0x00, 0x00, 0x00, 0x01, 'a'), WIRE_E_BAD_FRAME,
		   why);

	/* as the value of OK: [3, 1, <huge>] */
	assert_bad(f, PARSE_BYTES(f, 0x93, 0x03, 0x01, 0xdd, 0x7f, 0xff, 0xff, 0xff, 0xc0),
		   WIRE_E_BAD_FRAME, "count");
	assert_bad(f, PARSE_BYTES(f, 0x93, 0x03, 0x01, 0xdf, 0x7f, 0xff, 0xff, 0xff, 0xc0, 0xc0),
		   WIRE_E_BAD_FRAME, "count");
	assert_bad(f, PARSE_BYTES(f, 0x93, 0x03, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'),
		   WIRE_E_BAD_FRAME, "length");
	assert_bad(f, PARSE_BYTES(f, 0x93, 0x03, 0x01, 0xc6, 0xff, 0xff, 0xff, 0xff, 'x'),
		   WIRE_E_BAD_FRAME, "length");
	assert_bad(f, PARSE_BYTES(f, 0x93, 0x03, 0x01, 0xdc, 0xff, 0xff, 0xc0), WIRE_E_BAD_FRAME,
		   "count");
	assert_bad(f, PARSE_BYTES(f, 0x93, 0x03, 0x01, 0xda, 0xff, 0xff, 'x'), WIRE_E_BAD_FRAME,
		   "length");

	/* the root array itself claiming more elements than there are bytes */
	assert_bad(f, PARSE_BYTES(f, 0xdc, 0x10, 0x00, 0x03, 0x01), WIRE_E_BAD_FRAME, "count");
	/* a length field cut short */
	assert_bad(f, PARSE_BYTES(f, 0x93, 0x03, 0x01, 0xdd, 0x00, 0x00), WIRE_E_BAD_FRAME,
		   "truncated");
}

/* A count is accepted exactly while it fits in the bytes left. */
static void test_count_boundary(void **state)
{
	const char *why = NULL;
	/* array16 of 3 with 3 bytes left; then of 4 with 3 bytes left */
	const uint8_t fits[] = {0xdc, 0x00, 0x03, 0x01, 0x02, 0x03};
	const uint8_t over[] = {0xdc, 0x00, 0x04, 0x01, 0x02, 0x03};
	/* map16 of 2 pairs (4 values) with 4 bytes left; then 3 pairs */
	const uint8_t mfits[] = {0xde, 0x00, 0x02, 0x01, 0x02, 0x03, 0x04};
	const uint8_t mover[] = {0xde, 0x00, 0x03, 0x01, 0x02, 0x03, 0x04};
	/* str8 of 3 with 3 bytes left; then of 4 */
	const uint8_t sfits[] = {0xd9, 0x03, 'a', 'b', 'c'};
	const uint8_t sover[] = {0xd9, 0x04, 'a', 'b', 'c'};

	assert_int_equal(wire_check(fits, sizeof(fits), WIRE_MAX_DEPTH, &why), 0);
	assert_int_equal(wire_check(over, sizeof(over), WIRE_MAX_DEPTH, &why), -1);
	assert_non_null(strstr(why, "count"));
	assert_int_equal(wire_check(mfits, sizeof(mfits), WIRE_MAX_DEPTH, &why), 0);
	assert_int_equal(wire_check(mover, sizeof(mover), WIRE_MAX_DEPTH, &why), -1);
	assert_non_null(strstr(why, "count"));
	assert_int_equal(wire_check(sfits, sizeof(sfits), WIRE_MAX_DEPTH, &why), 0);
	assert_int_equal(wire_check(sover, sizeof(sover), WIRE_MAX_DEPTH, &why), -1);
	assert_non_null(strstr(why, "length"));
}

/* Packs msgpack sample i (one or more per format) and returns the format byte
 * it must start with; -1 when there are no more samples. */
static int pack_sample(msgpack_packer *pk, int i)
{
	static const char bytes[70000]; /* zeroes: only the sizes matter */
	switch (i) {
	case 0: msgpack_pack_nil(pk); return 0xc0;
	case 1: msgpack_pack_true(pk); return 0xc3;
	case 2: msgpack_pack_false(pk); return 0xc2;
	case 3: msgpack_pack_uint8(pk, 5); return 0x05;
	case 4: msgpack_pack_int8(pk, -5); return 0xfb;
	case 5: msgpack_pack_uint8(pk, 200); return 0xcc;
	case 6: msgpack_pack_uint16(pk, 60000); return 0xcd;
	case 7: msgpack_pack_uint32(pk, 4000000000u); return 0xce;
	case 8: msgpack_pack_uint64(pk, 1ull << 40); return 0xcf;
	case 9: msgpack_pack_int8(pk, -100); return 0xd0;
	case 10: msgpack_pack_int16(pk, -1000); return 0xd1;
	case 11: msgpack_pack_int32(pk, -100000); return 0xd2;
	case 12: msgpack_pack_int64(pk, -(1ll << 40)); return 0xd3;
	case 13: msgpack_pack_float(pk, 1.5f); return 0xca;
	case 14: msgpack_pack_double(pk, 2.25); return 0xcb;
	case 15: wire_pack_str(pk, bytes, 5); return 0xa5;
	case 16: wire_pack_str(pk, bytes, 40); return 0xd9;
	case 17: wire_pack_str(pk, bytes, 300); return 0xda;
	case 18: wire_pack_str(pk, bytes, 70000); return 0xdb;
	case 19: wire_pack_bin(pk, bytes, 0); return 0xc4;
	case 20: wire_pack_bin(pk, bytes, 300); return 0xc5;
	case 21: wire_pack_bin(pk, bytes, 70000); return 0xc6;
	case 22: msgpack_pack_ext(pk, 1, 7); msgpack_pack_ext_body(pk, bytes, 1); return 0xd4;
	case 23: msgpack_pack_ext(pk, 2, 7); msgpack_pack_ext_body(pk, bytes, 2); return 0xd5;
	case 24: msgpack_pack_ext(pk, 4, 7); msgpack_pack_ext_body(pk, bytes, 4); return 0xd6;
	case 25: msgpack_pack_ext(pk, 8, 7); msgpack_pack_ext_body(pk, bytes, 8); return 0xd7;
	case 26: msgpack_pack_ext(pk, 16, 7); msgpack_pack_ext_body(pk, bytes, 16); return 0xd8;
	case 27: msgpack_pack_ext(pk, 3, 7); msgpack_pack_ext_body(pk, bytes, 3); return 0xc7;
	case 28: msgpack_pack_ext(pk, 300, 7); msgpack_pack_ext_body(pk, bytes, 300); return 0xc8;
	case 29:
		msgpack_pack_ext(pk, 70000, 7);
		msgpack_pack_ext_body(pk, bytes, 70000);
		return 0xc9;
	case 30:
		msgpack_pack_array(pk, 2);
		msgpack_pack_nil(pk);
		msgpack_pack_map(pk, 0);
		return 0x92;
	case 31:
		msgpack_pack_array(pk, 20);
		for (int k = 0; k < 20; k++)
			msgpack_pack_int(pk, k);
		return 0xdc;
	case 32:
		msgpack_pack_array(pk, 70000);
		for (int k = 0; k < 70000; k++)
			msgpack_pack_nil(pk);
		return 0xdd;
	case 33:
		msgpack_pack_map(pk, 1);
		wire_pack_str(pk, "k", 1);
		msgpack_pack_array(pk, 0);
		return 0x81;
	case 34:
		msgpack_pack_map(pk, 20);
		for (int k = 0; k < 40; k++)
			msgpack_pack_int(pk, k);
		return 0xde;
	case 35:
		msgpack_pack_map(pk, 70000);
		for (int k = 0; k < 140000; k++)
			msgpack_pack_true(pk);
		return 0xdf;
	}
	return -1;
}

/* Every msgpack format passes the bounds pass and msgpack-c agrees; every
 * strict prefix of it is rejected. */
static void test_every_format(void **state)
{
	struct fx *f = *state;
	msgpack_zone zone;
	assert_true(msgpack_zone_init(&zone, 4096));

	for (int i = 0;; i++) {
		msgpack_sbuffer_clear(&f->sb);
		int first = pack_sample(&f->pk, i);
		if (first < 0)
			break;
		const uint8_t *p = (const uint8_t *)f->sb.data;
		size_t len = f->sb.size;
		const char *why = NULL;

		assert_int_equal(p[0], first);
		if (wire_check(p, len, WIRE_MAX_DEPTH, &why) != 0)
			fail_msg("sample %d (0x%02x) rejected: %s", i, first, why);

		msgpack_object o;
		size_t off = 0;
		msgpack_zone_clear(&zone);
		assert_int_equal(msgpack_unpack((const char *)p, len, &off, &zone, &o),
				 MSGPACK_UNPACK_SUCCESS);
		assert_int_equal(off, len);

		/* strict prefixes: all of them for small samples, the telling ones
		 * (header cut, body cut by one) for big ones */
		for (size_t n = 0; n < len; n++) {
			if (len > 400 && n > 8 && n != len - 1)
				continue;
			if (wire_check(p, n, WIRE_MAX_DEPTH, &why) != -1)
				fail_msg("prefix %zu of sample %d (0x%02x) accepted", n, i, first);
		}
	}
	msgpack_zone_destroy(&zone);
}

/* n nested one-element arrays around a final byte `leaf`. */
static size_t nest(uint8_t *out, int n, uint8_t leaf)
{
	for (int i = 0; i < n; i++)
		out[i] = 0x91;
	out[n] = leaf;
	return (size_t)n + 1;
}

static void test_nesting_limit(void **state)
{
	struct fx *f = *state;
	uint8_t b[64];
	const char *why = NULL;

	/* WIRE_MAX_DEPTH counts value levels: 3 arrays + a scalar is 4 levels */
	assert_int_equal(wire_check(b, nest(b, WIRE_MAX_DEPTH - 1, 0x01), WIRE_MAX_DEPTH, &why), 0);
	assert_int_equal(wire_check(b, nest(b, WIRE_MAX_DEPTH - 1, 0x90), WIRE_MAX_DEPTH, &why), 0);
	assert_int_equal(wire_check(b, nest(b, WIRE_MAX_DEPTH, 0x01), WIRE_MAX_DEPTH, &why), -1);
	assert_non_null(strstr(why, "deep"));
	assert_int_equal(wire_check(b, nest(b, 60, 0x01), WIRE_MAX_DEPTH, &why), -1);
	assert_non_null(strstr(why, "deep"));

	/* through wire_parse: OK's value [[1]] fits, [[[1]]] is one too deep */
	assert_int_equal(PARSE_BYTES(f, 0x93, 0x03, 0x01, 0x91, 0x91, 0x01), WIRE_OK_);
	assert_bad(f, PARSE_BYTES(f, 0x93, 0x03, 0x01, 0x91, 0x91, 0x91, 0x01), WIRE_E_BAD_FRAME,
		   "deep");

	/* WELCOME's map may hold a list of scalars, not a list of lists */
	msgpack_packer *pk = wire_begin(&f->b, WIRE_WELCOME, 1, 3);
	wire_pack_cstr(pk, "node");
	wire_pack_cstr(pk, "0.1");
	msgpack_pack_map(pk, 1);
	wire_pack_cstr(pk, "peers");
	msgpack_pack_array(pk, 1);
	wire_pack_cstr(pk, "a");
	wire_end(&f->b, 0);
	assert_int_equal(parse_buf(f), WIRE_OK_);

	wire_buf_reset(&f->b);
	pk = wire_begin(&f->b, WIRE_WELCOME, 1, 3);
	wire_pack_cstr(pk, "node");
	wire_pack_cstr(pk, "0.1");
	msgpack_pack_map(pk, 1);
	wire_pack_cstr(pk, "peers");
	msgpack_pack_array(pk, 1);
	msgpack_pack_array(pk, 1);
	wire_pack_cstr(pk, "a");
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, "deep");
}

/* wire_check clamps max_depth to its own stack: a caller's large limit must
 * not let deep input overrun it (ASan would catch the overrun). */
static void test_nesting_clamped(void **state)
{
	uint8_t b[64];
	const char *why = NULL;

	assert_int_equal(wire_check(b, nest(b, 40, 0x01), 1000, &why), -1);
	assert_non_null(strstr(why, "deep"));
	assert_int_equal(wire_check(b, nest(b, WIRE_MAX_DEPTH, 0x01), WIRE_MAX_DEPTH + 1, &why),
			 0);
	/* max_depth 1: scalars and empty containers only */
	assert_int_equal(wire_check(b, nest(b, 0, 0x01), 1, &why), 0);
	assert_int_equal(wire_check(b, nest(b, 0, 0x90), 1, &why), 0);
	assert_int_equal(wire_check(b, nest(b, 1, 0x01), 1, &why), -1);
}

static void test_trailing_bytes(void **state)
{
	struct fx *f = *state;
	/* [5, 1] (PING) followed by nil, inside the frame's length */
	assert_bad(f, PARSE_BYTES(f, 0x92, 0x05, 0x01, 0xc0), WIRE_E_BAD_FRAME, "trailing");
	/* a second complete array */
	assert_bad(f, PARSE_BYTES(f, 0x92, 0x05, 0x01, 0x92, 0x05, 0x02), WIRE_E_BAD_FRAME,
		   "trailing");
	assert_int_equal(PARSE_BYTES(f, 0x92, 0x05, 0x01), WIRE_OK_);
	assert_int_equal(f->m.type, WIRE_PING);
}

static void test_invalid_byte(void **state)
{
	struct fx *f = *state;
	assert_bad(f, PARSE_BYTES(f, 0xc1), WIRE_E_BAD_FRAME, "invalid");
	assert_bad(f, PARSE_BYTES(f, 0x93, 0x03, 0x01, 0xc1), WIRE_E_BAD_FRAME, "invalid");
	assert_bad(f, PARSE_BYTES(f, 0x93, 0x03, 0x01, 0x91, 0xc1), WIRE_E_BAD_FRAME, "invalid");
}

/* ---- schema ---- */

static void test_wrong_field_types(void **state)
{
	struct fx *f = *state;
	const char *why = "wrong type";
	msgpack_packer *pk;

	/* REMOVE: uint where the room id (str) goes */
	pk = wire_begin(&f->b, WIRE_REMOVE, 1, 1);
	msgpack_pack_unsigned_int(pk, 5);
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	/* HELLO: str where the version (uint) goes */
	pk = wire_begin(&f->b, WIRE_HELLO, 1, 2);
	wire_pack_cstr(pk, "1");
	wire_pack_cstr(pk, "alice");
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	/* HELLO: a negative version is not an unsigned int */
	pk = wire_begin(&f->b, WIRE_HELLO, 1, 2);
	msgpack_pack_int(pk, -1);
	wire_pack_cstr(pk, "alice");
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	/* HELLO: a float version is not an unsigned int either */
	pk = wire_begin(&f->b, WIRE_HELLO, 1, 2);
	msgpack_pack_double(pk, 1.0);
	wire_pack_cstr(pk, "alice");
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	/* HELLO: the token ('b') may be bin or str, not a map */
	pk = wire_begin(&f->b, WIRE_HELLO, 1, 3);
	msgpack_pack_unsigned_int(pk, 1);
	wire_pack_cstr(pk, "alice");
	msgpack_pack_map(pk, 0);
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	/* NODE_STATS: the summary ('b') may be bin or str, not a uint */
	pk = wire_begin(&f->b, WIRE_NODE_STATS, 9, 1);
	msgpack_pack_unsigned_int(pk, 12345);
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	/* NODE_STATS: the summary is not optional */
	wire_begin(&f->b, WIRE_NODE_STATS, 9, 0);
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, "missing");

	/* GRANT: an identity ('s') must be str, bin is refused */
	pk = wire_begin(&f->b, WIRE_GRANT, 1, 2);
	wire_pack_cstr(pk, "room");
	wire_pack_bin(pk, "bob", 3);
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	/* PUSH: uint where the payload (bin) goes */
	pk = wire_begin(&f->b, WIRE_PUSH, 1, 3);
	wire_pack_cstr(pk, "room");
	msgpack_pack_unsigned_int(pk, 1);
	msgpack_pack_unsigned_int(pk, 7);
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	/* WELCOME: an array where the map goes */
	pk = wire_begin(&f->b, WIRE_WELCOME, 1, 3);
	wire_pack_cstr(pk, "node");
	wire_pack_cstr(pk, "0.1");
	msgpack_pack_array(pk, 0);
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	/* SUBSCRIBE: topics must be a list, not a str */
	pk = wire_begin(&f->b, WIRE_SUBSCRIBE, 1, 2);
	wire_pack_cstr(pk, "room");
	wire_pack_cstr(pk, "topic");
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	/* DELIVER: nil where the seq (uint) goes */
	pk = wire_begin(&f->b, WIRE_DELIVER, 1, 5);
	wire_pack_cstr(pk, "room");
	msgpack_pack_nil(pk);
	wire_pack_cstr(pk, "alice");
	msgpack_pack_unsigned_int(pk, 1);
	wire_pack_bin(pk, "x", 1);
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);
}

static void test_missing_field(void **state)
{
	struct fx *f = *state;
	const char *why = "missing";
	msgpack_packer *pk;

	pk = wire_begin(&f->b, WIRE_REMOVE, 1, 0);
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	pk = wire_begin(&f->b, WIRE_GRANT, 1, 1);
	wire_pack_cstr(pk, "room");
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	/* HELLO's token is optional, its identity is not */
	pk = wire_begin(&f->b, WIRE_HELLO, 1, 1);
	msgpack_pack_unsigned_int(pk, 1);
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	pk = wire_begin(&f->b, WIRE_DELIVER, 1, 4);
	wire_pack_cstr(pk, "room");
	msgpack_pack_unsigned_int(pk, 1);
	wire_pack_cstr(pk, "alice");
	msgpack_pack_unsigned_int(pk, 1);
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);

	pk = wire_begin(&f->b, WIRE_WELCOME, 1, 2);
	wire_pack_cstr(pk, "node");
	wire_pack_cstr(pk, "0.1");
	wire_end(&f->b, 0);
	expect_bad_buf(f, WIRE_E_BAD_FRAME, why);
}

/* More than WIRE_MAX_FIELDS after [type, rid] is refused for any type. */
static void test_too_many_fields(void **state)
{
	struct fx *f = *state;
	const unsigned types[] = {WIRE_PING, 7 /* unknown */};

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		msgpack_packer *pk = wire_begin(&f->b, types[i], 1, WIRE_MAX_FIELDS + 1);
		for (unsigned k = 0; k < WIRE_MAX_FIELDS + 1; k++)
			msgpack_pack_unsigned_int(pk, k);
		wire_end(&f->b, 0);
		expect_bad_buf(f, WIRE_E_BAD_FRAME, "too many");
	}

	/* exactly WIRE_MAX_FIELDS is still a frame */
	msgpack_packer *pk = wire_begin(&f->b, 7, 1, WIRE_MAX_FIELDS);
	for (unsigned k = 0; k < WIRE_MAX_FIELDS; k++)
		msgpack_pack_unsigned_int(pk, k);
	wire_end(&f->b, 0);
	assert_int_equal(parse_buf(f), WIRE_OK_);
}

static void test_type_not_integer(void **state)
{
	struct fx *f = *state;
	const char *why = "type";

	msgpack_pack_array(&f->pk, 2); /* ["5", 1] */
	wire_pack_cstr(&f->pk, "5");
	msgpack_pack_unsigned_int(&f->pk, 1);
	assert_bad(f, parse_sb(f), WIRE_E_BAD_FRAME, why);

	msgpack_pack_array(&f->pk, 2); /* [-5, 1] */
	msgpack_pack_int(&f->pk, -5);
	msgpack_pack_unsigned_int(&f->pk, 1);
	assert_bad(f, parse_sb(f), WIRE_E_BAD_FRAME, why);

	msgpack_pack_array(&f->pk, 2); /* [nil, 1] */
	msgpack_pack_nil(&f->pk);
	msgpack_pack_unsigned_int(&f->pk, 1);
	assert_bad(f, parse_sb(f), WIRE_E_BAD_FRAME, why);

	msgpack_pack_array(&f->pk, 2); /* [65536, 1]: over 16 bits */
	msgpack_pack_uint32(&f->pk, 65536);
	msgpack_pack_unsigned_int(&f->pk, 1);
	assert_bad(f, parse_sb(f), WIRE_E_BAD_FRAME, why);

	msgpack_pack_array(&f->pk, 2); /* [65535, 1]: the largest type */
	msgpack_pack_uint32(&f->pk, 65535);
	msgpack_pack_unsigned_int(&f->pk, 1);
	assert_int_equal(parse_sb(f), WIRE_OK_);
	assert_int_equal(f->m.type, 65535);
}

static void test_rid_not_unsigned(void **state)
{
	struct fx *f = *state;
	const char *why = "request id";

	msgpack_pack_array(&f->pk, 2); /* [5, -1] */
	msgpack_pack_unsigned_int(&f->pk, WIRE_PING);
	msgpack_pack_int(&f->pk, -1);
	assert_bad(f, parse_sb(f), WIRE_E_BAD_FRAME, why);

	msgpack_pack_array(&f->pk, 2); /* [5, "1"] */
	msgpack_pack_unsigned_int(&f->pk, WIRE_PING);
	wire_pack_cstr(&f->pk, "1");
	assert_bad(f, parse_sb(f), WIRE_E_BAD_FRAME, why);

	/* the full 64-bit range survives */
	wire_begin(&f->b, WIRE_PING, UINT64_MAX, 0);
	wire_end(&f->b, 0);
	assert_int_equal(parse_buf(f), WIRE_OK_);
	assert_true(f->m.rid == UINT64_MAX);
}

static void test_root_not_array(void **state)
{
	struct fx *f = *state;
	const char *why = "not an array";

	assert_bad(f, PARSE_BYTES(f, 0x05), WIRE_E_BAD_FRAME, why);
	assert_bad(f, PARSE_BYTES(f, 0x81, 0x05, 0x01), WIRE_E_BAD_FRAME, why);
	assert_bad(f, PARSE_BYTES(f, 0x90), WIRE_E_BAD_FRAME, why);
	assert_bad(f, PARSE_BYTES(f, 0x91, 0x05), WIRE_E_BAD_FRAME, why);
	assert_bad(f, PARSE_BYTES(f, 0xa2, 'h', 'i'), WIRE_E_BAD_FRAME, why);
}

/* An unknown type is a frame, with only type and rid; its fields, of any
 * type, are not decoded. */
static void test_unknown_type(void **state)
{
	struct fx *f = *state;
	const unsigned types[] = {0, 7, 99, 110, 306, 399, 401, 499, 514, 599, 65535};

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		assert_false(wire_type_known(types[i]));
		msgpack_packer *pk = wire_begin(&f->b, types[i], 1000 + i, 3);
		wire_pack_cstr(pk, "x");
		msgpack_pack_map(pk, 0);
		msgpack_pack_int(pk, -3);
		wire_end(&f->b, 0);
		f->m.nfields = 99;
		assert_int_equal(parse_buf(f), WIRE_OK_);
		assert_int_equal(f->m.type, types[i]);
		assert_int_equal(f->m.rid, 1000 + i);
		assert_int_equal(f->m.nfields, 0);
		assert_int_equal(f->used, f->b.len);
		wire_buf_reset(&f->b);
	}
}

/* ---- error codes ---- */

static void test_err_name(void **state)
{
	static const struct {
		int code;
		const char *name;
	} names[] = {
		{WIRE_E_OK, "ok"},
		{WIRE_E_BAD_FRAME, "bad_frame"},
		{WIRE_E_TOO_LARGE, "too_large"},
		{WIRE_E_UNKNOWN_TYPE, "unknown_type"},
		{WIRE_E_HELLO_REQUIRED, "hello_required"},
		{WIRE_E_VERSION, "version"},
		{WIRE_E_AUTH, "auth"},
		{WIRE_E_TIMEOUT, "timeout"},
		{WIRE_E_SLOW_CONSUMER, "slow_consumer"},
		{WIRE_E_SHUTDOWN, "shutdown"},
		{WIRE_E_UNKNOWN_ROOM, "unknown_room"},
		{WIRE_E_FORBIDDEN, "forbidden"},
		{WIRE_E_NOT_OWNER, "not_owner"},
		{WIRE_E_LIMIT, "limit"},
		{WIRE_E_BAD_REQUEST, "bad_request"},
		{WIRE_E_MOVED, "moved"},
		{WIRE_E_UNKNOWN_STREAM, "unknown_stream"},
		{WIRE_E_STREAM_EXISTS, "stream_exists"},
		{WIRE_E_BAD_OFFSET, "bad_offset"},
		{WIRE_E_OVER_SIZE, "over_size"},
		{WIRE_E_CHUNK_TOO_LARGE, "chunk_too_large"},
		{WIRE_E_SIZE_MISMATCH, "size_mismatch"},
		{WIRE_E_CHECKSUM, "checksum_mismatch"},
		{WIRE_E_WINDOW, "window"},
		{WIRE_E_INTERNAL, "internal"},
	};
	const int unknown[] = {-1, 10, 19, 26, 29, 38, 98, 100, 65535};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		assert_string_equal(wire_err_name(names[i].code), names[i].name);
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
		assert_string_equal(wire_err_name(unknown[i]), "unknown");
}

static void test_err_fatal(void **state)
{
	const int fatal[] = {WIRE_E_BAD_FRAME,	   WIRE_E_TOO_LARGE, WIRE_E_HELLO_REQUIRED,
			     WIRE_E_VERSION,	   WIRE_E_AUTH,	     WIRE_E_TIMEOUT,
			     WIRE_E_SLOW_CONSUMER, WIRE_E_SHUTDOWN,  19};
	const int kept[] = {WIRE_E_OK,	      WIRE_E_UNKNOWN_TYPE, WIRE_E_UNKNOWN_ROOM,
			    WIRE_E_FORBIDDEN, WIRE_E_NOT_OWNER,	   WIRE_E_LIMIT,
			    WIRE_E_BAD_REQUEST, WIRE_E_INTERNAL,   -1,
			    /* stream errors end the stream, not the connection */
			    WIRE_E_UNKNOWN_STREAM, WIRE_E_STREAM_EXISTS, WIRE_E_BAD_OFFSET,
			    WIRE_E_OVER_SIZE, WIRE_E_CHUNK_TOO_LARGE, WIRE_E_SIZE_MISMATCH,
			    WIRE_E_CHECKSUM, WIRE_E_WINDOW};

	for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
		assert_true(wire_err_fatal(fatal[i]));
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		assert_false(wire_err_fatal(kept[i]));
}

#define UTF8(lit) (lit), sizeof(lit) - 1

static void test_utf8(void **state)
{
	/* well-formed: ASCII, 2/3/4-byte forms at their edges, empty */
	assert_true(wire_utf8_ok(UTF8("")));
	assert_true(wire_utf8_ok(UTF8("alice")));
	assert_true(wire_utf8_ok(UTF8("caf\xc3\xa9")));		/* U+00E9 */
	assert_true(wire_utf8_ok(UTF8("\xc2\x80")));		/* U+0080 */
	assert_true(wire_utf8_ok(UTF8("\xe0\xa0\x80")));		/* U+0800 */
	assert_true(wire_utf8_ok(UTF8("\xed\x9f\xbf")));		/* U+D7FF */
	assert_true(wire_utf8_ok(UTF8("\xee\x80\x80")));		/* U+E000 */
	assert_true(wire_utf8_ok(UTF8("\xf0\x9f\x98\x80")));	/* U+1F600 */
	assert_true(wire_utf8_ok(UTF8("\xf4\x8f\xbf\xbf")));	/* U+10FFFF */
	assert_true(wire_utf8_ok("a\0b", 3)); /* NUL is UTF-8; callers refuse it */

	/* ill-formed */
	assert_false(wire_utf8_ok(UTF8("\x80")));			/* lone continuation */
	assert_false(wire_utf8_ok(UTF8("\xc0\xaf")));		/* overlong '/' */
	assert_false(wire_utf8_ok(UTF8("\xc1\xbf")));		/* overlong */
	assert_false(wire_utf8_ok(UTF8("\xe0\x80\xaf")));		/* overlong 3-byte */
	assert_false(wire_utf8_ok(UTF8("\xf0\x80\x80\xaf")));	/* overlong 4-byte */
	assert_false(wire_utf8_ok(UTF8("\xed\xa0\x80")));		/* surrogate U+D800 */
	assert_false(wire_utf8_ok(UTF8("\xed\xbf\xbf")));		/* surrogate U+DFFF */
	assert_false(wire_utf8_ok(UTF8("\xf4\x90\x80\x80")));	/* U+110000 */
	assert_false(wire_utf8_ok(UTF8("\xf5\x80\x80\x80")));
	assert_false(wire_utf8_ok(UTF8("\xff")));
	assert_false(wire_utf8_ok(UTF8("caf\xc3")));			/* cut at the end */
	assert_false(wire_utf8_ok(UTF8("\xe2\x82")));
	assert_false(wire_utf8_ok(UTF8("\xc3\x28")));		/* bad continuation */
	/* only len bytes are looked at */
	assert_true(wire_utf8_ok("ok\xff", 2));
}

/* A decoder forgets the last error once a frame parses. */
static void test_error_cleared(void **state)
{
	struct fx *f = *state;
	const char *why = "stale";
	assert_bad(f, PARSE_BYTES(f, 0xc1), WIRE_E_BAD_FRAME, "invalid");
	assert_int_equal(PARSE_BYTES(f, 0x92, 0x05, 0x01), WIRE_OK_);
	assert_int_equal(wire_dec_error(f->d, &why), 0);
	assert_null(why);
}

/* Parses frame[0..len) (an exact-size copy) with the flat path on and off
 * and asserts the same outcome: status, size, error and every field. */
static void same_both_ways(const uint8_t *frame, size_t len, const char *fields)
{
	struct wire_dec *d = wire_dec_new(WIRE_FRAME_MAX), *g = wire_dec_new(WIRE_FRAME_MAX);
	assert_non_null(d);
	assert_non_null(g);
	wire_dec_set_flat(g, 0);
	uint8_t *copy = malloc(len ? len : 1);
	assert_non_null(copy);
	memcpy(copy, frame, len);
	struct wire_msg a, b;
	size_t ua = 7, ub = 9;
	enum wire_status sa = wire_parse(d, copy, len, &a, &ua);
	enum wire_status sb = wire_parse(g, copy, len, &b, &ub);
	assert_int_equal(sa, sb);
	assert_int_equal(ua, ub);
	if (sa == WIRE_BAD) {
		const char *wa, *wb;
		assert_int_equal(wire_dec_error(d, &wa), wire_dec_error(g, &wb));
		assert_ptr_equal(wa, wb);
	} else if (sa == WIRE_OK_) {
		assert_int_equal(a.type, b.type);
		assert_true(a.rid == b.rid);
		assert_int_equal(a.nfields, b.nfields);
		/* fields names the case's own kinds; after a mutation only a
		 * field both parsers typed the same way can be compared */
		for (unsigned k = 0; fields && k < a.nfields && fields[k]; k++) {
			if (fields[k] == 'u') {
				assert_true(a.f[k].u == b.f[k].u);
			} else if (fields[k] == 's' || fields[k] == 'b') {
				assert_ptr_equal(a.f[k].s.ptr, b.f[k].s.ptr);
				assert_int_equal(a.f[k].s.len, b.f[k].s.len);
			}
		}
	}
	free(copy);
	wire_dec_free(d);
	wire_dec_free(g);
}

/* The flat path (frames of unsigned integers, strs and bins) decides every
 * frame as the bounds pass and msgpack-c do: every case, every truncation,
 * every byte replaced by each interesting value (type bytes of every
 * format, lengths at their edges). */
static void test_flat_same_as_generic(void **state)
{
	struct fx *f = *state;
	static const uint8_t vals[] = {0x00, 0x01, 0x02, 0x03, 0x7f, 0x80, 0x90, 0x91, 0x92,
				       0x93, 0x9f, 0xa0, 0xa1, 0xbf, 0xc0, 0xc1, 0xc2, 0xc4,
				       0xc5, 0xc6, 0xc7, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
				       0xd0, 0xd3, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xe0,
				       0xff};
	for (size_t i = 0; i < NCASES; i++) {
		const char *fields = rt_cases[i].fields;
		wire_buf_reset(&f->b);
		pack_case(&f->b, i);
		size_t len = f->b.len;
		uint8_t *fr = malloc(len);
		assert_non_null(fr);
		memcpy(fr, f->b.p, len);
		same_both_ways(fr, len, fields);
		for (size_t n = 0; n < len; n++)
			same_both_ways(fr, n, fields);
		for (size_t at = WIRE_HDR; at < len; at++) {
			uint8_t keep = fr[at];
			for (size_t v = 0; v < sizeof(vals); v++) {
				fr[at] = vals[v];
				same_both_ways(fr, len, NULL);
			}
			fr[at] = keep;
		}
		free(fr);
	}
	/* Every width of every flat kind, and an array16 header. */
	const uint8_t pushes[][40] = {
		/* [200, 1, "r", 5, b"x"] with uint16 type, str8 room, uint64 dtype, bin16 data */
		{0x95, 0xcd, 0x00, 0xc8, 0x01, 0xd9, 0x01, 'r', 0xcf, 0, 0, 0, 0, 0, 0, 0, 5, 0xc5,
		 0x00, 0x01, 'x'},
		/* the same with str32 / bin32 and a uint32 rid */
		{0x95, 0xcc, 0xc8, 0xce, 0, 0, 0, 9, 0xdb, 0, 0, 0, 1, 'r', 0xcc, 5, 0xc6, 0, 0, 0, 1,
		 'x'},
		/* array16 of 5, str16 room, data as str (b accepts str) */
		{0xdc, 0x00, 0x05, 0xcc, 0xc8, 0x00, 0xda, 0x00, 0x01, 'r', 0x05, 0xa1, 'x'},
		/* extra trailing elements after the schema: a uint and an empty bin */
		{0x97, 0xcc, 0xc8, 0x00, 0xa1, 'r', 0x05, 0xc4, 0x00, 0x2a, 0xc4, 0x00},
		/* extra trailing element that is not flat (nil) */
		{0x96, 0xcc, 0xc8, 0x00, 0xa1, 'r', 0x05, 0xc4, 0x00, 0xc0},
		/* dtype as int8 (positive; msgpack-c calls it unsigned) */
		{0x95, 0xcc, 0xc8, 0x00, 0xa1, 'r', 0xd0, 0x05, 0xc4, 0x00},
	};
	const size_t plens[] = {21, 22, 13, 12, 10, 10};
	for (size_t i = 0; i < sizeof(plens) / sizeof(plens[0]); i++) {
		uint8_t fr[44];
		fr[0] = fr[1] = fr[2] = 0;
		fr[3] = (uint8_t)plens[i];
		memcpy(fr + WIRE_HDR, pushes[i], plens[i]);
		same_both_ways(fr, WIRE_HDR + plens[i], "sub");
		assert_int_equal(parse_body(f, pushes[i], plens[i]), WIRE_OK_);
		assert_int_equal(f->m.type, WIRE_PUSH);
		for (size_t n = 0; n < WIRE_HDR + plens[i]; n++)
			same_both_ways(fr, n, "sub");
		for (size_t at = WIRE_HDR; at < WIRE_HDR + plens[i]; at++) {
			uint8_t keep = fr[at];
			for (size_t v = 0; v < sizeof(vals); v++) {
				fr[at] = vals[v];
				same_both_ways(fr, WIRE_HDR + plens[i], NULL);
			}
			fr[at] = keep;
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip_every_type, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_of_frames, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hello_token_str, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enc_helpers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_end_extra, setup, teardown),
		cmocka_unit_test_setup_teardown(test_big_frame_borrows, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_fields_point_into_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_need_more_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_need_more_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_large_from_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_frame_max_setter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zero_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_huge_counts, setup, teardown),
		cmocka_unit_test(test_count_boundary),
		cmocka_unit_test_setup_teardown(test_every_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nesting_limit, setup, teardown),
		cmocka_unit_test(test_nesting_clamped),
		cmocka_unit_test_setup_teardown(test_trailing_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_field_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_field, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_type_not_integer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rid_not_unsigned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_root_not_array, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_type, setup, teardown),
		cmocka_unit_test(test_err_name),
		cmocka_unit_test(test_err_fatal),
		cmocka_unit_test(test_utf8),
		cmocka_unit_test_setup_teardown(test_error_cleared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flat_same_as_generic, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}

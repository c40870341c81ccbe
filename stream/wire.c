/*
 * wire: bounds pass, msgpack-c decode into a schema-checked message, and
 * frame encoding. See wire.h and docs/protocol.md.
 */
#include "stream/wire.h"

#include <stdlib.h>
#include <string.h>

struct wire_dec {
	size_t frame_max;
	msgpack_zone zone;
	int err;
	const char *why;
	int no_flat; /* tests: every frame takes the generic path */
};

/* Field schemas, one char per field after [type, rid]:
 *   u unsigned int   s str   b bin or str   m map   l array   v any
 *   | the fields after it are optional.                                    */
struct wire_schema {
	uint16_t type;
	const char *fields;
};

static const struct wire_schema schemas[] = {
	{WIRE_HELLO, "us|bu"},
	{WIRE_WELCOME, "ssm|l"},
	{WIRE_OK, "|v"},
	{WIRE_ERROR, "us"},
	{WIRE_PING, ""},
	{WIRE_PONG, ""},
	{WIRE_CREATE, ""},
	{WIRE_REMOVE, "s"},
	{WIRE_GRANT, "ss"},
	{WIRE_REVOKE, "ss"},
	{WIRE_SUBSCRIBE, "s|lu"},
	{WIRE_UNSUBSCRIBE, "s"},
	{WIRE_INFO, "s"},
	{WIRE_CREATE_ID, "s"},
	{WIRE_PLACE, "s"},
	{WIRE_SUB_REPLAY, "su"},
	{WIRE_PUSH, "sub"},
	{WIRE_DELIVER, "susub|u"},
	{WIRE_ROOM_CLOSED, "ss"},
	{WIRE_STREAM_OPEN, "sssssvmlu"},
	{WIRE_STREAM_CHUNK, "sub"},
	{WIRE_STREAM_CLOSE, "ssmv"},
	{WIRE_STREAM_ABORT, "ss"},
	{WIRE_STREAM_CLAIM, "ss"},
	/* room, stream, offset; topics: only from a client's node to the relay */
	{WIRE_STREAM_REJOIN, "ssu|l"},
	{WIRE_STREAM_OPENED, "ssssssvmlu|u"},
	{WIRE_STREAM_DATA, "sub"},
	{WIRE_STREAM_END, "sssmuv"},
	{WIRE_STREAM_CREDIT, "suu"},
	{WIRE_PEER_HELLO, "sub"},
	{WIRE_FWD, "usb|u"},
	{WIRE_FWD_REPLY, "ub"},
	{WIRE_NODE_SUB, "su|u"},
	{WIRE_SESSION_END, "u"},
	{WIRE_STREAM_ACK, "su"},
	{WIRE_REPL_STATE, "sslu|uuul"},
	{WIRE_REPL_PUSH, "suuub|u"},
	{WIRE_REPL_GONE, "s"},
	{WIRE_NODE_STATS_REQ, ""},
	{WIRE_NODE_STATS, "b"},
	{WIRE_REPL_ACK, "su"},
	{WIRE_REPL_NACK, "su"},
	{WIRE_ROOM_MOVED, "ss"},
	{WIRE_REPL_STREAM, "ssbsuuubl"},
	{WIRE_REPL_CHUNK, "suub"},
	{WIRE_REPL_CHUNK_ACK, "su"},
	{WIRE_REPL_STREAM_END, "s"},
	{WIRE_STREAM_RESUME, "suu"},
	{WIRE_STREAM_REATTACH, "ssuu"},
};

static const char *schema_of(unsigned type)
{
	for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++)
		if (schemas[i].type == type)
			return schemas[i].fields;
	return NULL;
}

int wire_type_known(unsigned type)
{
	return schema_of(type) != NULL;
}

const char *wire_err_name(int code)
{
	switch (code) {
	case WIRE_E_OK: return "ok";
	case WIRE_E_BAD_FRAME: return "bad_frame";
	case WIRE_E_TOO_LARGE: return "too_large";
	case WIRE_E_UNKNOWN_TYPE: return "unknown_type";
	case WIRE_E_HELLO_REQUIRED: return "hello_required";
	case WIRE_E_VERSION: return "version";
	case WIRE_E_AUTH: return "auth";
	case WIRE_E_TIMEOUT: return "timeout";
	case WIRE_E_SLOW_CONSUMER: return "slow_consumer";
	case WIRE_E_SHUTDOWN: return "shutdown";
	case WIRE_E_UNKNOWN_ROOM: return "unknown_room";
	case WIRE_E_FORBIDDEN: return "forbidden";
	case WIRE_E_NOT_OWNER: return "not_owner";
	case WIRE_E_LIMIT: return "limit";
	case WIRE_E_BAD_REQUEST: return "bad_request";
	case WIRE_E_MOVED: return "moved";
	case WIRE_E_UNKNOWN_STREAM: return "unknown_stream";
	case WIRE_E_STREAM_EXISTS: return "stream_exists";
	case WIRE_E_BAD_OFFSET: return "bad_offset";
	case WIRE_E_OVER_SIZE: return "over_size";
	case WIRE_E_CHUNK_TOO_LARGE: return "chunk_too_large";
	case WIRE_E_SIZE_MISMATCH: return "size_mismatch";
	case WIRE_E_CHECKSUM: return "checksum_mismatch";
	case WIRE_E_WINDOW: return "window";
	case WIRE_E_INTERNAL: return "internal";
	}
	return "unknown";
}

int wire_err_fatal(int code)
{
	return code > 0 && code < 20 && code != WIRE_E_UNKNOWN_TYPE;
}

struct wire_dec *wire_dec_new(size_t frame_max)
{
	struct wire_dec *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	if (!msgpack_zone_init(&d->zone, 4096)) {
		free(d);
		return NULL;
	}
	d->frame_max = frame_max;
	return d;
}

void wire_dec_free(struct wire_dec *d)
{
	if (!d)
		return;
	msgpack_zone_destroy(&d->zone);
	free(d);
}

void wire_dec_set_flat(struct wire_dec *d, int on)
{
	d->no_flat = !on;
}

void wire_dec_set_frame_max(struct wire_dec *d, size_t frame_max)
{
	d->frame_max = frame_max;
}

int wire_dec_error(const struct wire_dec *d, const char **why)
{
	if (why)
		*why = d->why;
	return d->err;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be_n(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/*
 * The bounds pass. `pending[d]` counts the values still owed at depth d; a
 * container's count is accepted only if it fits in the bytes left (each value
 * takes at least one byte), so the unpacker that runs after this allocates at
 * most one msgpack_object per byte of the frame.
 */
int wire_check(const uint8_t *p, size_t len, int max_depth, const char **why)
{
	uint64_t pending[WIRE_MAX_DEPTH + 2];
	int depth = 0;
	size_t i = 0;

	if (max_depth > WIRE_MAX_DEPTH + 1)
		max_depth = WIRE_MAX_DEPTH + 1;
	pending[0] = 1;
	while (depth >= 0) {
		if (pending[depth] == 0) {
			depth--;
			continue;
		}
		if (i >= len) {
			*why = "truncated msgpack value";
			return -1;
		}
		pending[depth]--;
		uint8_t c = p[i++];
		size_t left = len - i;
		uint64_t n = 0; /* payload bytes to skip */
		uint64_t kids = 0;
		int lensz = 0;

		if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
			continue; /* fixint, nil, bool */
		} else if (c >= 0x80 && c <= 0x8f) {
			kids = 2ull * (c & 0x0f);
		} else if (c >= 0x90 && c <= 0x9f) {
			kids = c & 0x0f;
		} else if (c >= 0xa0 && c <= 0xbf) {
			n = c & 0x1f;
		} else {
			switch (c) {
			case 0xc4: case 0xd9: lensz = 1; break; /* bin8, str8 */
			case 0xc5: case 0xda: lensz = 2; break;
			case 0xc6: case 0xdb: lensz = 4; break;
			case 0xc7: lensz = 1; n = 1; break; /* ext: + type byte */
			case 0xc8: lensz = 2; n = 1; break;
			case 0xc9: lensz = 4; n = 1; break;
			case 0xca: n = 4; break;
			case 0xcb: n = 8; break;
			case 0xcc: case 0xd0: n = 1; break;
			case 0xcd: case 0xd1: n = 2; break;
			case 0xce: case 0xd2: n = 4; break;
			case 0xcf: case 0xd3: n = 8; break;
			case 0xd4: n = 2; break; /* fixext */
			case 0xd5: n = 3; break;
			case 0xd6: n = 5; break;
			case 0xd7: n = 9; break;
			case 0xd8: n = 17; break;
			case 0xdc: case 0xde: lensz = 2; break;
			case 0xdd: case 0xdf: lensz = 4; break;
			default:
				*why = "invalid msgpack type byte";
				return -1;
			}
			if (lensz) {
				if (left < (size_t)lensz) {
					*why = "truncated msgpack length";
					return -1;
				}
				uint64_t cnt = be_n(p + i, lensz);
				i += lensz;
				left -= lensz;
				if (c == 0xdc || c == 0xdd)
					kids = cnt;
				else if (c == 0xde || c == 0xdf)
					kids = 2 * cnt;
				else
					n += cnt;
			}
		}
		if (n > left) {
			*why = "msgpack length larger than the bytes left";
			return -1;
		}
		i += n;
		if (kids) {
			if (kids > len - i) {
				*why = "msgpack count larger than the bytes left";
				return -1;
			}
			if (depth + 1 >= max_depth) {
				*why = "msgpack nested too deep";
				return -1;
			}
			pending[++depth] = kids;
		}
	}
	if (i != len) {
		*why = "trailing bytes after the msgpack value";
		return -1;
	}
	return 0;
}

int wire_utf8_ok(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	while (p < end) {
		unsigned c = *p++;
		int more;
		unsigned min, cp;
		if (c < 0x80)
			continue;
		if (c >= 0xc2 && c <= 0xdf) {
			more = 1, min = 0x80, cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			more = 2, min = 0x800, cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			more = 3, min = 0x10000, cp = c & 0x07;
		} else {
			return 0;
		}
		if (end - p < more)
			return 0;
		while (more--) {
			if ((*p & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (*p++ & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
	}
	return 1;
}

int wire_identity_ok(const char *p, size_t len)
{
	if (len == 0 || len > WIRE_IDENTITY_MAX || !wire_utf8_ok(p, len))
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch <= 0x20 || ch == 0x7f)
			return 0;
	}
	return 1;
}

static enum wire_status bad(struct wire_dec *d, int err, const char *why)
{
	d->err = err;
	d->why = why;
	return WIRE_BAD;
}

static int field_ok(char t, const msgpack_object *o, union wire_field *f)
{
	switch (t) {
	case 'u':
		if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			return 0;
		f->u = o->via.u64;
		return 1;
	case 's':
		if (o->type != MSGPACK_OBJECT_STR)
			return 0;
		f->s.ptr = o->via.str.ptr;
		f->s.len = o->via.str.size;
		return 1;
	case 'b':
		if (o->type == MSGPACK_OBJECT_BIN) {
			f->s.ptr = o->via.bin.ptr;
			f->s.len = o->via.bin.size;
			return 1;
		}
		if (o->type == MSGPACK_OBJECT_STR) {
			f->s.ptr = o->via.str.ptr;
			f->s.len = o->via.str.size;
			return 1;
		}
		return 0;
	case 'm':
		f->o = o;
		return o->type == MSGPACK_OBJECT_MAP;
	case 'l':
		f->o = o;
		return o->type == MSGPACK_OBJECT_ARRAY;
	case 'v':
		f->o = o;
		return 1;
	}
	return 0;
}

/*
 * The flat path. Most frames on the hot paths (PUSH, DELIVER, FWD,
 * REPL_PUSH, STREAM_CHUNK, ...) are arrays of unsigned integers, strs and
 * bins only. Such a frame is decoded here in one pass, without the bounds
 * pass and msgpack-c, into exactly what the generic path would give. It
 * takes only what it is sure of: a known type whose schema has only 'u',
 * 's' and 'b' fields, every element a positive fixint, a uint 8-64, a str
 * or a bin, and the last element ending exactly at the frame's end. Any
 * other byte, a wrong kind, a missing field or a truncation returns 0 and
 * the generic path decides (and names the error). Every length is checked
 * against the bytes left before anything is read past it.
 */
struct flat_el {
	char kind; /* 'u' unsigned, 's' str, 'b' bin */
	uint64_t u;
	const uint8_t *ptr;
	uint32_t len;
};

static int flat_next(const uint8_t *p, size_t len, size_t *at, struct flat_el *e)
{
	size_t i = *at;
	if (i >= len)
		return 0;
	uint8_t c = p[i++];
	size_t left = len - i, w = 0, n;
	if (c <= 0x7f) {
		e->kind = 'u';
		e->u = c;
		*at = i;
		return 1;
	}
	if (c >= 0xcc && c <= 0xcf) {
		w = (size_t)1 << (c - 0xcc);
		if (left < w)
			return 0;
		e->kind = 'u';
		e->u = be_n(p + i, (int)w);
		*at = i + w;
		return 1;
	}
	if (c >= 0xa0 && c <= 0xbf) {
		e->kind = 's';
		n = c & 0x1f;
	} else {
		switch (c) {
		case 0xd9: e->kind = 's'; w = 1; break;
		case 0xda: e->kind = 's'; w = 2; break;
		case 0xdb: e->kind = 's'; w = 4; break;
		case 0xc4: e->kind = 'b'; w = 1; break;
		case 0xc5: e->kind = 'b'; w = 2; break;
		case 0xc6: e->kind = 'b'; w = 4; break;
		default: return 0; /* signed, float, nil, bool, ext, containers */
		}
		if (left < w)
			return 0;
		n = (size_t)be_n(p + i, (int)w);
		i += w;
		left -= w;
	}
	if (n > left)
		return 0;
	e->ptr = p + i;
	e->len = (uint32_t)n;
	*at = i + n;
	return 1;
}

static int parse_flat(const uint8_t *body, size_t len, struct wire_msg *msg)
{
	size_t at = 1, n;
	if (body[0] >= 0x90 && body[0] <= 0x9f) {
		n = body[0] & 0x0f;
	} else if (body[0] == 0xdc && len >= 3) {
		n = (size_t)body[1] << 8 | body[2];
		at = 3;
	} else {
		return 0;
	}
	if (n < 2 || n > 2 + WIRE_MAX_FIELDS)
		return 0;
	struct flat_el e;
	if (!flat_next(body, len, &at, &e) || e.kind != 'u' || e.u > 0xffff)
		return 0;
	uint16_t type = (uint16_t)e.u;
	if (!flat_next(body, len, &at, &e) || e.kind != 'u')
		return 0;
	uint64_t rid = e.u;
	const char *schema = schema_of(type);
	if (!schema)
		return 0;
	unsigned k = 0;
	int optional = 0;
	for (const char *s = schema; *s; s++) {
		if (*s == '|') {
			optional = 1;
			continue;
		}
		if (*s != 'u' && *s != 's' && *s != 'b')
			return 0;
		if (2 + k >= n) {
			if (optional)
				break;
			return 0;
		}
		if (!flat_next(body, len, &at, &e))
			return 0;
		if (*s == 'u') {
			if (e.kind != 'u')
				return 0;
			msg->f[k].u = e.u;
		} else {
			if (e.kind == 'u' || (*s == 's' && e.kind != 's'))
				return 0;
			/* an empty str/bin points at the body, as on the
			 * generic path */
			msg->f[k].s.ptr = (const char *)(e.len ? e.ptr : body);
			msg->f[k].s.len = e.len;
		}
		k++;
	}
	/* Elements past the schema are allowed and ignored, as msgpack-c's
	 * would be, but must be flat too. */
	for (size_t i = 2 + k; i < n; i++)
		if (!flat_next(body, len, &at, &e))
			return 0;
	if (at != len)
		return 0;
	msg->type = type;
	msg->rid = rid;
	msg->nfields = k;
	return 1;
}

enum wire_status wire_parse(struct wire_dec *d, const uint8_t *buf, size_t len,
			    struct wire_msg *msg, size_t *used)
{
	const char *why = NULL;

	*used = 0;
	d->err = 0;
	d->why = NULL;
	if (len < WIRE_HDR)
		return WIRE_NEED_MORE;
	uint32_t flen = be32(buf);
	if (flen > d->frame_max)
		return bad(d, WIRE_E_TOO_LARGE, "frame length over the frame limit");
	if (flen == 0)
		return bad(d, WIRE_E_BAD_FRAME, "empty frame");
	if (len - WIRE_HDR < flen) {
		*used = WIRE_HDR + (size_t)flen;
		return WIRE_NEED_MORE;
	}
	const uint8_t *body = buf + WIRE_HDR;
	if (!d->no_flat && parse_flat(body, flen, msg)) {
		*used = WIRE_HDR + (size_t)flen;
		return WIRE_OK_;
	}
	if (wire_check(body, flen, WIRE_MAX_DEPTH, &why) < 0)
		return bad(d, WIRE_E_BAD_FRAME, why);

	msgpack_object root;
	size_t off = 0;
	msgpack_zone_clear(&d->zone);
	msgpack_unpack_return rc =
		msgpack_unpack((const char *)body, flen, &off, &d->zone, &root);
	if (rc != MSGPACK_UNPACK_SUCCESS)
		return bad(d, WIRE_E_BAD_FRAME, "msgpack-c rejected the frame");
	if (root.type != MSGPACK_OBJECT_ARRAY || root.via.array.size < 2)
		return bad(d, WIRE_E_BAD_FRAME, "frame is not an array [type, rid, ...]");
	const msgpack_object *a = root.via.array.ptr;
	unsigned n = root.via.array.size;
	if (n > 2 + WIRE_MAX_FIELDS)
		return bad(d, WIRE_E_BAD_FRAME, "frame has too many fields");
	if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 > 0xffff)
		return bad(d, WIRE_E_BAD_FRAME, "frame type is not an integer 0-65535");
	if (a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return bad(d, WIRE_E_BAD_FRAME, "request id is not an unsigned integer");
	msg->type = (uint16_t)a[0].via.u64;
	msg->rid = a[1].via.u64;
	msg->nfields = 0;

	const char *schema = schema_of(msg->type);
	if (schema) {
		unsigned k = 0;
		int optional = 0;
		for (const char *s = schema; *s; s++) {
			if (*s == '|') {
				optional = 1;
				continue;
			}
			if (2 + k >= n) {
				if (optional)
					break;
				return bad(d, WIRE_E_BAD_FRAME, "frame is missing a field");
			}
			if (!field_ok(*s, &a[2 + k], &msg->f[k]))
				return bad(d, WIRE_E_BAD_FRAME, "frame field has the wrong type");
			/* msgpack-c gives an empty fixstr a NULL (or stale) pointer:
			 * keep every str/bin field a range inside the frame */
			if ((*s == 's' || *s == 'b') && msg->f[k].s.len == 0)
				msg->f[k].s.ptr = (const char *)body;
			k++;
		}
		msg->nfields = k;
	}
	*used = WIRE_HDR + (size_t)flen;
	return WIRE_OK_;
}

/* ---- encoding ---- */

static int buf_write(void *data, const char *p, size_t n)
{
	struct wire_buf *b = data;
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n)
			cap *= 2;
		uint8_t *q = realloc(b->p, cap);
		if (!q)
			abort(); /* out of memory: no sane recovery mid-frame */
		b->p = q;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

void wire_buf_init(struct wire_buf *b)
{
	memset(b, 0, sizeof(*b));
	msgpack_packer_init(&b->pk, b, buf_write);
}

void wire_buf_reset(struct wire_buf *b)
{
	b->len = 0;
	b->frame_at = 0;
}

void wire_buf_free(struct wire_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

void wire_buf_shrink(struct wire_buf *b, size_t max)
{
	if (b->cap > max)
		wire_buf_free(b);
	wire_buf_reset(b);
}

msgpack_packer *wire_begin(struct wire_buf *b, unsigned type, uint64_t rid, unsigned nfields)
{
	static const char zero[WIRE_HDR];
	b->frame_at = b->len;
	buf_write(b, zero, WIRE_HDR);
	msgpack_pack_array(&b->pk, 2 + nfields);
	msgpack_pack_unsigned_int(&b->pk, type);
	msgpack_pack_uint64(&b->pk, rid);
	return &b->pk;
}

void wire_end(struct wire_buf *b, size_t extra)
{
	size_t flen = b->len - b->frame_at - WIRE_HDR + extra;
	uint8_t *p = b->p + b->frame_at;
	p[0] = (uint8_t)(flen >> 24);
	p[1] = (uint8_t)(flen >> 16);
	p[2] = (uint8_t)(flen >> 8);
	p[3] = (uint8_t)flen;
}

void wire_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
	msgpack_pack_str(pk, len);
	msgpack_pack_str_body(pk, s, len);
}

void wire_pack_cstr(msgpack_packer *pk, const char *s)
{
	wire_pack_str(pk, s, strlen(s));
}

void wire_pack_bin(msgpack_packer *pk, const void *p, size_t len)
{
	msgpack_pack_bin(pk, len);
	msgpack_pack_bin_body(pk, p, len);
}

void wire_enc_error(struct wire_buf *b, uint64_t rid, int code, const char *msg)
{
	msgpack_packer *pk = wire_begin(b, WIRE_ERROR, rid, 2);
	msgpack_pack_unsigned_int(pk, (unsigned)code);
	wire_pack_cstr(pk, msg);
	wire_end(b, 0);
}

void wire_enc_ok_nil(struct wire_buf *b, uint64_t rid)
{
	msgpack_packer *pk = wire_begin(b, WIRE_OK, rid, 1);
	msgpack_pack_nil(pk);
	wire_end(b, 0);
}

/*
 * wire: the vroom frame codec (no I/O).
 *
 * A frame is a 4-byte big-endian length L followed by L bytes holding exactly
 * one msgpack array [type, rid, field...]. Before msgpack-c sees a byte, the
 * length is checked against the frame limit and every array/map/str/bin count
 * is checked against the bytes that remain, so no count from the wire can make
 * the unpacker allocate more than a small multiple of the frame's own size.
 * docs/protocol.md describes every type and field listed here.
 */
#ifndef VROOM_STREAM_WIRE_H
#define VROOM_STREAM_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#define WIRE_VERSION	   1
#define WIRE_HDR	   4		/* length prefix */
#define WIRE_FRAME_MAX	   (1u << 20)	/* default frame limit */
#define WIRE_FRAME_MIN_MAX 1024		/* smallest frame limit a node accepts */
#define WIRE_MAX_DEPTH	   4		/* frame array > map/list > value */
#define WIRE_MAX_FIELDS	   14		/* fields after type and rid */
#define WIRE_IDENTITY_MAX  128
#define WIRE_ROOM_ID_MAX   64		/* longest room id a request may name */
#define WIRE_REASON_MAX	   256
#define WIRE_STREAM_ID_MAX 64
#define WIRE_TOPIC_MAX	   128
#define WIRE_NAME_MAX	   255
#define WIRE_MIME_MAX	   127
#define WIRE_ATTRS_MAX	   32	/* attribute pairs per open or close */
#define WIRE_ATTR_LEN_MAX  1024 /* bytes per attribute key or value */
#define WIRE_DESTS_MAX	   64	/* destination identities per stream */
#define WIRE_TOPICS_MAX	   16	/* topics per subscription */
#define WIRE_NODES_MAX	   64	/* client addresses a WELCOME lists */

/* Bytes of a NODE_STATS summary (JSON): small enough that the frame fits
 * the frame limit of every node link (2 x WIRE_FRAME_MIN_MAX + 64 KiB). */
#define WIRE_NODE_STATS_MAX (64u << 10)

/* Message types: grouped by hundreds, never renumbered; retired values stay
 * reserved. */
enum wire_type {
	/* session */
	WIRE_HELLO = 1,
	WIRE_WELCOME = 2,
	WIRE_OK = 3,
	WIRE_ERROR = 4,
	WIRE_PING = 5,
	WIRE_PONG = 6,
	/* rooms */
	WIRE_CREATE = 100,
	WIRE_REMOVE = 101,
	WIRE_GRANT = 102,
	WIRE_REVOKE = 103,
	WIRE_SUBSCRIBE = 104,
	WIRE_UNSUBSCRIBE = 105,
	WIRE_INFO = 106,
	WIRE_CREATE_ID = 107,  /* node to relay only: create with this id */
	WIRE_PLACE = 108,      /* a room's relay and backups as this node sees them */
	WIRE_SUB_REPLAY = 109, /* node to relay only: a resuming subscriber's missed pushes */
	/* pushes */
	WIRE_PUSH = 200,
	WIRE_DELIVER = 201,
	/* byte streams */
	WIRE_STREAM_OPEN = 300,
	WIRE_STREAM_CHUNK = 301,
	WIRE_STREAM_CLOSE = 302,
	WIRE_STREAM_ABORT = 303,
	WIRE_STREAM_CLAIM = 304, /* a sender back on another session: its stream goes on */
	WIRE_STREAM_REJOIN = 305, /* a receiver moved to another node takes the stream again */
	WIRE_STREAM_OPENED = 310,
	WIRE_STREAM_DATA = 311,
	WIRE_STREAM_END = 312,
	WIRE_STREAM_CREDIT = 320,
	/* events */
	WIRE_ROOM_CLOSED = 400,
	/* node to node, on encrypted links only */
	WIRE_PEER_HELLO = 500,
	WIRE_FWD = 501,
	WIRE_FWD_REPLY = 502,
	WIRE_NODE_SUB = 503,
	WIRE_SESSION_END = 504,
	WIRE_STREAM_ACK = 505,
	WIRE_REPL_STATE = 506,
	WIRE_REPL_PUSH = 507,
	WIRE_REPL_GONE = 508,
	WIRE_NODE_STATS_REQ = 509, /* the stats port of one node asks another's summary */
	WIRE_NODE_STATS = 510,	   /* the answer: a JSON summary, same rid */
	WIRE_REPL_ACK = 511,	   /* backup to relay: it holds the room's pushes up to seq */
	WIRE_REPL_NACK = 512,	   /* to a relay of an older epoch: this node knows a newer one */
	WIRE_ROOM_MOVED = 513,	   /* relay to a subscribing node: the room is relayed by the node named */
	/* byte streams across a failover (node/srepl.c) */
	WIRE_REPL_STREAM = 520,	    /* relay to backup: an open stream's replica */
	WIRE_REPL_CHUNK = 521,	    /* relay to backup: a stream's bytes at an offset */
	WIRE_REPL_CHUNK_ACK = 522,  /* backup to relay: it holds the stream up to upto */
	WIRE_REPL_STREAM_END = 523, /* relay to backup: the stream ended */
	WIRE_STREAM_RESUME = 524,   /* new relay to the sender's node: send from offset */
	WIRE_STREAM_REATTACH = 525, /* receiver's node to new relay: resume from offset */
};

/* Error codes: one enum, stable numbers, mapped to names in wire_err_name().
 * Codes below 20 end the connection after the reply. */
enum wire_err {
	WIRE_E_OK = 0,
	WIRE_E_BAD_FRAME = 1,
	WIRE_E_TOO_LARGE = 2,
	WIRE_E_UNKNOWN_TYPE = 3, /* the one protocol error that keeps the connection */
	WIRE_E_HELLO_REQUIRED = 4,
	WIRE_E_VERSION = 5,
	WIRE_E_AUTH = 6,
	WIRE_E_TIMEOUT = 7,
	WIRE_E_SLOW_CONSUMER = 8,
	WIRE_E_SHUTDOWN = 9,
	WIRE_E_UNKNOWN_ROOM = 20,
	WIRE_E_FORBIDDEN = 21,
	WIRE_E_NOT_OWNER = 22,
	WIRE_E_LIMIT = 23,
	WIRE_E_BAD_REQUEST = 24,
	WIRE_E_MOVED = 25, /* node links only: the room was handed to the node named */
	/* byte streams: never end the connection; 32-37 end the stream */
	WIRE_E_UNKNOWN_STREAM = 30,
	WIRE_E_STREAM_EXISTS = 31,
	WIRE_E_BAD_OFFSET = 32,
	WIRE_E_OVER_SIZE = 33,
	WIRE_E_CHUNK_TOO_LARGE = 34,
	WIRE_E_SIZE_MISMATCH = 35,
	WIRE_E_CHECKSUM = 36,
	WIRE_E_WINDOW = 37,
	WIRE_E_INTERNAL = 99,
};

/* Stable lower-case name of an error code ("forbidden"), "unknown" if none. */
const char *wire_err_name(int code);
/* Whether an error with this code ends the connection. */
int wire_err_fatal(int code);

/* A borrowed byte range inside the frame being decoded. */
struct wire_str {
	const char *ptr;
	uint32_t len;
};

/* One decoded field. Which member is valid is given by the type's schema. */
union wire_field {
	uint64_t u;
	struct wire_str s;	  /* str or bin */
	const msgpack_object *o; /* map, list or any value */
};

/* A decoded frame. Strings and objects borrow the frame bytes and the
 * decoder's zone: valid until the next wire_parse() on the same decoder. */
struct wire_msg {
	uint16_t type;
	uint64_t rid;
	unsigned nfields; /* fields present (optional ones may be missing) */
	union wire_field f[WIRE_MAX_FIELDS];
};

enum wire_status { WIRE_OK_ = 0, WIRE_NEED_MORE = 1, WIRE_BAD = 2 };

struct wire_dec;

/* A decoder with its own msgpack zone; frame_max bounds accepted frames. */
struct wire_dec *wire_dec_new(size_t frame_max);
void wire_dec_free(struct wire_dec *d);
void wire_dec_set_frame_max(struct wire_dec *d, size_t frame_max);
/* Whether frames made only of unsigned integers, strs and bins are decoded
 * by the flat path (the default) or, like every other frame, by the bounds
 * pass and msgpack-c. Both give the same result; for tests. */
void wire_dec_set_flat(struct wire_dec *d, int on);

/* Parses one frame from buf (borrowed). WIRE_OK_: *msg is filled and *used is
 * the frame's size including the prefix. WIRE_NEED_MORE: *used is how many
 * bytes the frame needs in all (0 if the prefix is incomplete). WIRE_BAD:
 * wire_dec_error() says why; the stream cannot be resynchronised. A frame of
 * an unknown type parses as WIRE_OK_ with only type and rid. */
enum wire_status wire_parse(struct wire_dec *d, const uint8_t *buf, size_t len,
			    struct wire_msg *msg, size_t *used);

/* After WIRE_BAD: the error code and a message naming the offending field. */
int wire_dec_error(const struct wire_dec *d, const char **why);

/* Only the bounds pass: does body[0..len) hold exactly one msgpack value whose
 * counts all fit in the bytes that remain, nested at most max_depth deep?
 * Returns 0 or -1 with *why set. Exposed for tests and fuzzing. */
int wire_check(const uint8_t *body, size_t len, int max_depth, const char **why);

/* The identity rule: 1-WIRE_IDENTITY_MAX bytes of UTF-8, no byte at or
 * below 0x20 (no spaces, no control characters) and no 0x7f. */
int wire_identity_ok(const char *p, size_t len);

/* Whether p[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
int wire_utf8_ok(const char *p, size_t len);

/* Whether a known type's schema accepts this message (for tests). */
int wire_type_known(unsigned type);

/* ---- encoding ---- */

/* A growable byte buffer that frames are packed into. Owns its bytes. */
struct wire_buf {
	uint8_t *p;
	size_t len, cap;
	msgpack_packer pk;
	size_t frame_at; /* offset of the current frame's prefix */
};

void wire_buf_init(struct wire_buf *b);
void wire_buf_reset(struct wire_buf *b);
/* Frees b's bytes; b stays usable (the next frame allocates again). */
void wire_buf_free(struct wire_buf *b);
/* Between uses of a buffer that is kept (the node's scratch buffers): frees
 * its bytes if it grew over max for a big frame, so that one big frame does
 * not hold its size for good. Whatever b held is dropped. */
void wire_buf_shrink(struct wire_buf *b, size_t max);

/* Starts a frame [type, rid, <nfields fields>] at the end of b and returns the
 * packer for the fields, which the caller packs with msgpack_pack_*(). */
msgpack_packer *wire_begin(struct wire_buf *b, unsigned type, uint64_t rid, unsigned nfields);
/* Ends the frame: writes its length prefix, counting `extra` bytes that the
 * caller will send right after b's bytes (a bin body packed by reference). */
void wire_end(struct wire_buf *b, size_t extra);

void wire_pack_str(msgpack_packer *pk, const char *s, size_t len);
void wire_pack_cstr(msgpack_packer *pk, const char *s);
void wire_pack_bin(msgpack_packer *pk, const void *p, size_t len);

/* Convenience encoders for the frames every side sends. */
void wire_enc_error(struct wire_buf *b, uint64_t rid, int code, const char *msg);
void wire_enc_ok_nil(struct wire_buf *b, uint64_t rid);

#endif

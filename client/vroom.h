/*
 * vroom.h: libvroom, the client library for vroom relay nodes.
 *
 * A `struct vroom` is one connection to one node. The core is event-driven on
 * a libevent base you own: requests take a callback that runs when the node
 * replies, and pushes and room events arrive through handlers. A thin blocking
 * layer (vroom_open() and the calls without _async) runs the same loop until
 * the reply arrives, for simple programs and scripts.
 *
 * Threads: a struct vroom belongs to the thread running its event base.
 * Strings passed to callbacks are valid only during the callback. Inside a
 * callback use the _async calls: a blocking call there fails with
 * VROOM_E_ARG. vroom_free() may be called from a callback; nothing more is
 * dispatched after it.
 */
#ifndef VROOM_H
#define VROOM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;
struct vroom;

#define VROOM_DEFAULT_SERVER "127.0.0.1:7700"
#define VROOM_ROOM_ID_MAX    64	 /* a room id fits in VROOM_ROOM_ID_MAX + 1 bytes */
#define VROOM_IDENTITY_MAX   128 /* an identity fits in VROOM_IDENTITY_MAX + 1 bytes */
/* The socket receive buffer a client asks for: what the kernel may hold
 * ahead of the library, and so ahead of a push behind a large stream. */
#define VROOM_DEFAULT_RCVBUF (256 << 10) /* the kernel doubles it */

/* Error codes: 1-99 come from the node (docs/protocol.md), 1000 and up are
 * the library's own. */
enum vroom_code {
	VROOM_OK = 0,
	VROOM_E_BAD_FRAME = 1,
	VROOM_E_TOO_LARGE = 2,
	VROOM_E_UNKNOWN_TYPE = 3,
	VROOM_E_HELLO_REQUIRED = 4,
	VROOM_E_VERSION = 5,
	VROOM_E_AUTH = 6,
	VROOM_E_TIMEOUT = 7,
	VROOM_E_SLOW_CONSUMER = 8,
	VROOM_E_SHUTDOWN = 9,
	VROOM_E_UNKNOWN_ROOM = 20,
	VROOM_E_FORBIDDEN = 21,
	VROOM_E_NOT_OWNER = 22,
	VROOM_E_LIMIT = 23,
	VROOM_E_BAD_REQUEST = 24,
	VROOM_E_UNKNOWN_STREAM = 30,
	VROOM_E_STREAM_EXISTS = 31,
	VROOM_E_BAD_OFFSET = 32,
	VROOM_E_OVER_SIZE = 33,
	VROOM_E_CHUNK_TOO_LARGE = 34,
	VROOM_E_SIZE_MISMATCH = 35,
	VROOM_E_CHECKSUM = 36,
	VROOM_E_WINDOW = 37,
	VROOM_E_INTERNAL = 99,
	VROOM_E_CONNECT = 1000,	 /* could not connect */
	VROOM_E_CLOSED = 1001,	 /* the connection closed */
	VROOM_E_PROTOCOL = 1002, /* the node sent something this library cannot read */
	VROOM_E_ARG = 1003,	 /* a bad argument to a library call */
	VROOM_E_WAIT = 1004,	 /* a blocking call ran out of time */
	VROOM_E_ABORTED = 1005,	 /* a stream was aborted (by its sender or the node) */
};

struct vroom_error {
	int code;	   /* enum vroom_code */
	char message[256]; /* what happened and why */
};

/* The stable name of a code: "forbidden", "closed", ... ("unknown" if none). */
const char *vroom_code_name(int code);

/* A push delivered to a subscriber. */
struct vroom_push {
	const char *room;
	uint64_t seq; /* per room, strictly increasing */
	const char *sender;
	uint8_t dtype;
	const void *data;
	size_t len;
};

/* What `info` returns. grants is set only when the caller owns the room. */
struct vroom_room_info {
	char id[VROOM_ROOM_ID_MAX + 1];
	char owner[VROOM_IDENTITY_MAX + 1];
	uint64_t subscribers;
	uint64_t created_ms, last_active_ms; /* Unix time in milliseconds */
	uint64_t seq, pushes, bytes;
	int has_grants;
	size_t ngrants;
	const char *const *grants;
};

/* Handlers for what the node sends unasked. Any may be NULL. */
struct vroom_handlers {
	void (*push)(struct vroom *v, const struct vroom_push *p, void *arg);
	/* The room closed: reason is "removed" or "expired". */
	void (*room_closed)(struct vroom *v, const char *room, const char *reason, void *arg);
	/* The connection is gone; e says why (the node's reason if it gave one). */
	void (*disconnected)(struct vroom *v, const struct vroom_error *e, void *arg);
};

/* Where a room lives, as the asked node sees the cluster. */
struct vroom_placement {
	char node[65];	     /* the node that answered */
	char relay[65];	     /* the room's relay */
	size_t nbackups;     /* its ordered backups */
	char backups[15][65];
};

/* A request's outcome: err is NULL on success; the other fields are set
 * according to the request. */
struct vroom_result {
	const struct vroom_error *err;
	const char *room;		    /* create: the new room's id */
	uint64_t seq;			    /* push: the seq the node assigned */
	const struct vroom_room_info *info; /* info */
	const struct vroom_placement *place; /* place */
};

typedef void (*vroom_cb)(struct vroom *v, const struct vroom_result *r, void *arg);

/* ---- event-driven core ---- */

/* A client on base (borrowed) with handlers h (copied, may be NULL). */
struct vroom *vroom_new(struct event_base *base, const struct vroom_handlers *h, void *arg);
/* Connects to server ("HOST:PORT") and says HELLO as identity; done runs once
 * the node has welcomed us or refused. server may list several nodes,
 * "HOST:PORT,HOST:PORT,..." (at most 64): the first is used, and with
 * reconnection on (vroom_set_reconnect) the others when it fails.
 * 0, or -1 with *err set. */
int vroom_connect(struct vroom *v, const char *server, const char *identity, vroom_cb done,
		  void *arg, struct vroom_error *err);
/* Closes the connection; pending callbacks run with VROOM_E_CLOSED. */
void vroom_free(struct vroom *v);
/* The token HELLO will carry: its text form as `vroom token` prints it
 * (copied; white space around it ignored), or NULL for none. Call it before
 * vroom_connect(). A node with trusted keys admits a client only with a
 * valid token and names it by the token's identity, so identity may then be
 * NULL or "" (a different one is refused). 0, or -1 with *err set
 * (VROOM_E_ARG) if the text is not a token. */
int vroom_set_token(struct vroom *v, const char *token, struct vroom_error *err);

/* Requests. Each returns 0 once queued, or -1 with *err set (not connected,
 * bad argument); cb (may be NULL) runs when the node replies. Strings are
 * copied. */
int vroom_create_async(struct vroom *v, vroom_cb cb, void *arg, struct vroom_error *err);
int vroom_remove_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
		       struct vroom_error *err);
int vroom_grant_async(struct vroom *v, const char *room, const char *identity, vroom_cb cb,
		      void *arg, struct vroom_error *err);
int vroom_revoke_async(struct vroom *v, const char *room, const char *identity, vroom_cb cb,
		       void *arg, struct vroom_error *err);
int vroom_subscribe_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
			  struct vroom_error *err);
int vroom_unsubscribe_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
			    struct vroom_error *err);
int vroom_info_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
		     struct vroom_error *err);
/* The relay and backups of a room id (existing or not). */
int vroom_place_async(struct vroom *v, const char *room, vroom_cb cb, void *arg,
		      struct vroom_error *err);
/* Pushes len bytes of data (copied) with dtype to the room's subscribers. */
int vroom_push_async(struct vroom *v, const char *room, uint8_t dtype, const void *data,
		     size_t len, vroom_cb cb, void *arg, struct vroom_error *err);

/* Requests sent and not yet answered, and bytes queued but not yet written:
 * a publisher that wants to go as fast as the node accepts keeps these
 * bounded. */
size_t vroom_inflight(const struct vroom *v);
size_t vroom_pending_output(const struct vroom *v);
/* The node's identifiers from WELCOME ("" before). */
const char *vroom_node_id(const struct vroom *v);
const char *vroom_session_id(const struct vroom *v);
/* The node's limit called name in WELCOME (frame_max, max_pending, ...), or 0. */
uint64_t vroom_limit(const struct vroom *v, const char *name);
int vroom_connected(const struct vroom *v);
/* SO_RCVBUF for the next vroom_connect (default VROOM_DEFAULT_RCVBUF; 0:
 * the system's autotuning, for high-latency links at the cost of latency
 * behind large streams). */
void vroom_set_rcvbuf(struct vroom *v, int bytes);
struct event_base *vroom_base(const struct vroom *v);

/* ---- moving between nodes ----
 *
 * With reconnection on, a client survives the loss of its node: it connects
 * to the next node of its list (the addresses given to vroom_connect(),
 * comma-separated, then the cluster's members as WELCOME names them), says
 * HELLO with the same identity and token, subscribes again to its rooms
 * after the last seq it delivered (the node replays what it missed), and
 * sends again the pushes not yet acknowledged (the relay counts each once:
 * HELLO carries a publisher id, and rids keep increasing). Each push's
 * callback runs once, with its seq. Other requests in flight when the
 * connection drops fail with VROOM_E_CLOSED; open byte streams end with an
 * error (they are not resumed). docs/client.md, "Moving between nodes".
 */

enum vroom_event_type {
	VROOM_EV_LOST = 1,  /* the connection to server is gone (err why): reconnecting */
	VROOM_EV_MOVED = 2, /* welcomed by server (another node, or the same again) */
	VROOM_EV_GAP = 3,   /* room: seqs from..to are lost for good (no node holds them) */
	VROOM_EV_RESUMED = 4, /* room: subscribed again; from is the first seq it delivers */
};

struct vroom_event {
	int type;		       /* enum vroom_event_type */
	const char *server;	       /* LOST, MOVED: the node's address */
	const struct vroom_error *err; /* LOST: why */
	const char *room;	       /* GAP, RESUMED */
	uint64_t from, to;	       /* GAP: the seqs lost; RESUMED: from */
	unsigned attempt;	       /* LOST, MOVED: attempts since the connection was lost */
};

/* Reconnection settings; 0 in a field means its default. */
struct vroom_reconnect {
	int enabled;
	int backoff_min_ms;	/* 100: wait before the first attempt, doubled per attempt */
	int backoff_max_ms;	/* 2000: the longest wait between attempts */
	int give_up_ms;		/* 30000: total time without a node, then disconnected */
	int attempt_timeout_ms; /* 5000: connect and WELCOME, per attempt */
	int resume_timeout_ms;	/* 10000: a resumed subscription's answer, else try another node */
	size_t max_unacked;	/* 4096: pushes kept until acknowledged; more: VROOM_E_LIMIT */
	size_t max_unacked_bytes; /* 64 MiB: their payload bytes */
	size_t max_held;	  /* 65536: pushes held to put a resumed room in order */
	uint64_t publisher_id;	  /* 0: random; names this client's pushes across sessions */
	void (*event)(struct vroom *v, const struct vroom_event *e, void *arg); /* may be NULL */
	void *event_arg;
};

/* Before vroom_connect(): turns reconnection on (o->enabled) or off. The
 * settings are copied. 0, or -1 with *err (VROOM_E_ARG) if connected. */
int vroom_set_reconnect(struct vroom *v, const struct vroom_reconnect *o, struct vroom_error *err);
/* The address of the node the client is connected to (or trying). */
const char *vroom_server(const struct vroom *v);
/* Connections made since vroom_connect() (1 until the first move). */
unsigned vroom_connections(const struct vroom *v);

/* ---- blocking layer ---- */

/* Connects and waits for WELCOME on a base of its own (freed by vroom_close).
 * server NULL means VROOM_DEFAULT_SERVER. NULL with *err set on failure. */
struct vroom *vroom_open(const char *server, const char *identity,
			 const struct vroom_handlers *h, void *arg, struct vroom_error *err);
/* vroom_open() with a token (its text form; NULL: none), as vroom_set_token(). */
struct vroom *vroom_open_token(const char *server, const char *identity, const char *token,
			       const struct vroom_handlers *h, void *arg, struct vroom_error *err);
/* vroom_open_token() with reconnection settings (NULL: off). */
struct vroom *vroom_open_reconnect(const char *servers, const char *identity, const char *token,
				   const struct vroom_reconnect *rc, const struct vroom_handlers *h,
				   void *arg, struct vroom_error *err);
/* vroom_free() plus the base vroom_open() made. vroom_close(NULL) is a no-op. */
void vroom_close(struct vroom *v);
/* Each waits for the reply and returns 0, or -1 with *err set. */
int vroom_create(struct vroom *v, char id[VROOM_ROOM_ID_MAX + 1], struct vroom_error *err);
int vroom_remove(struct vroom *v, const char *room, struct vroom_error *err);
int vroom_grant(struct vroom *v, const char *room, const char *identity, struct vroom_error *err);
int vroom_revoke(struct vroom *v, const char *room, const char *identity, struct vroom_error *err);
int vroom_subscribe(struct vroom *v, const char *room, struct vroom_error *err);
int vroom_unsubscribe(struct vroom *v, const char *room, struct vroom_error *err);
/* Fills *info; call vroom_info_release() on it after. */
int vroom_info(struct vroom *v, const char *room, struct vroom_room_info *info,
	       struct vroom_error *err);
void vroom_info_release(struct vroom_room_info *info);
int vroom_place(struct vroom *v, const char *room, struct vroom_placement *out,
		struct vroom_error *err);
int vroom_push(struct vroom *v, const char *room, uint8_t dtype, const void *data, size_t len,
	       uint64_t *seq, struct vroom_error *err);
/* Runs the event loop, dispatching handlers, for up to timeout_ms (-1: no
 * limit) or until vroom_stop() is called from a handler. Returns 0, or -1
 * with *err set if the connection is lost. */
int vroom_run(struct vroom *v, int timeout_ms, struct vroom_error *err);
void vroom_stop(struct vroom *v);

/* ---- byte streams ----
 *
 * A stream carries one file or blob into a room: opened with its metadata,
 * written in chunks, closed (or aborted). The node grants each stream a
 * window of bytes; a writer never has more than that outstanding, so a sender
 * may write as fast as it likes without any node's memory growing. Progress
 * on the sending side counts bytes the node has acknowledged (handed on to
 * every receiver), not bytes given to the kernel. Receivers register one
 * handler per topic; each stream arrives complete and in order, or ends with
 * a status that says why not.
 */

struct vroom_attr {
	const char *key, *value;
};

struct vroom_stream_opts {
	const char *topic; /* NULL: "" */
	const char *name;  /* NULL: "" (send_file: the file's base name) */
	const char *mime;  /* NULL: application/octet-stream (send_file: detected) */
	int64_t size;	   /* -1: unknown (send_file/send_bytes: filled in) */
	const struct vroom_attr *attrs;
	size_t nattrs;
	const char *const *dests; /* identities; none: every subscriber */
	size_t ndests;
	const char *id; /* NULL: a random id */
};

/* The sender's progress: bytes the node acknowledged, of total (-1 unknown). */
typedef void (*vroom_progress_cb)(void *arg, uint64_t acked, int64_t total);

struct vroom_writer;

/* Opens a stream into room. The writer may be written to at once (the open
 * and the first window's chunks are pipelined). NULL with *err on a bad
 * argument or when not connected; a refusal by the node (forbidden, ...)
 * fails the writer later. Strings in o are copied. */
struct vroom_writer *vroom_stream_open(struct vroom *v, const char *room,
				       const struct vroom_stream_opts *o, struct vroom_error *err);
const char *vroom_writer_id(const struct vroom_writer *w);
/* Bytes acknowledged by the node so far. */
uint64_t vroom_writer_acked(const struct vroom_writer *w);
/* Event-driven: writable runs when the window opens again, progress when
 * the node acknowledges bytes, done once when the stream is over (e NULL on
 * success: closed and fully acknowledged). Any may be NULL. */
void vroom_writer_set_cbs(struct vroom_writer *w, void (*writable)(struct vroom_writer *, void *),
			  vroom_progress_cb progress,
			  void (*done)(struct vroom_writer *, const struct vroom_error *, void *),
			  void *arg);
/* Takes as much of data as the window allows now, copying it: returns the
 * number of bytes taken (possibly 0), or -1 with *err if the stream failed. */
long vroom_writer_offer(struct vroom_writer *w, const void *data, size_t len,
			struct vroom_error *err);
/* Ends the stream; attrs are merged into the receivers' stream info. done
 * runs when the node has acknowledged everything. */
int vroom_writer_close_async(struct vroom_writer *w, const struct vroom_attr *attrs,
			     size_t nattrs, struct vroom_error *err);
/* Abandons the stream: receivers see status "aborted" with reason. */
int vroom_writer_abort(struct vroom_writer *w, const char *reason, struct vroom_error *err);
/* Releases a writer whose done callback has run (or to forget it early:
 * an open stream is aborted). */
void vroom_writer_free(struct vroom_writer *w);

/* Blocking: writes all of data, waiting for window as needed. */
int vroom_writer_write(struct vroom_writer *w, const void *data, size_t len,
		       struct vroom_error *err);
/* Blocking: closes, waits until everything is acknowledged, frees w. */
int vroom_writer_close(struct vroom_writer *w, const struct vroom_attr *attrs, size_t nattrs,
		       struct vroom_error *err);
/* Blocking: one stream from memory or from a file, with progress. The
 * stream id goes to id if not NULL. */
int vroom_send_bytes(struct vroom *v, const char *room, const struct vroom_stream_opts *o,
		     const void *data, size_t len, vroom_progress_cb progress, void *arg,
		     char id[VROOM_ROOM_ID_MAX + 1], struct vroom_error *err);
int vroom_send_file(struct vroom *v, const char *room, const char *path,
		    const struct vroom_stream_opts *o, vroom_progress_cb progress, void *arg,
		    char id[VROOM_ROOM_ID_MAX + 1], struct vroom_error *err);
/* The MIME type of a file: libmagic, then the extension, then
 * application/octet-stream. Writes at most cap bytes. */
void vroom_guess_mime(const char *path, char *out, size_t cap);

/* Subscribes to only these topics' streams (pushes are not filtered). */
int vroom_subscribe_topics_async(struct vroom *v, const char *room, const char *const *topics,
				 size_t ntopics, vroom_cb cb, void *arg, struct vroom_error *err);
int vroom_subscribe_topics(struct vroom *v, const char *room, const char *const *topics,
			   size_t ntopics, struct vroom_error *err);

struct vroom_stream_info {
	const char *id, *room, *sender, *topic, *name, *mime;
	int64_t size; /* -1 if the sender did not say */
	uint64_t timestamp_ms;
	const struct vroom_attr *attrs; /* at close: merged with the close's */
	size_t nattrs;
};

struct vroom_stream_end {
	int ok;		    /* complete, in order, size and checksum verified */
	const char *status; /* "ok", "aborted", "timeout" or "error" */
	const char *reason; /* why, when not ok ("" otherwise) */
	uint64_t bytes;	    /* bytes received */
	int checksum;	    /* whether the sender's XXH3-64 was given and matched */
};

struct vroom_reader;

/* Called once per stream, in the order the node accepted the opens. To read
 * the stream, call vroom_reader_set() and optionally vroom_reader_collect()
 * or vroom_reader_save() before returning; otherwise it is skipped. */
typedef void (*vroom_stream_handler)(struct vroom *v, struct vroom_reader *r, void *arg);

/* One handler per topic; topic NULL: every topic without a handler of its
 * own. -1 with *err if the topic already has one. Streams with no handler
 * are dropped and counted (vroom_streams_dropped), and a line is written to
 * stderr once per topic. */
int vroom_set_stream_handler(struct vroom *v, const char *topic, vroom_stream_handler h,
			     void *arg, struct vroom_error *err);
uint64_t vroom_streams_dropped(const struct vroom *v);

struct vroom_reader_cbs {
	/* Bytes in order; chunk sizes need not match the sender's. */
	void (*chunk)(struct vroom_reader *r, const void *data, size_t len, void *arg);
	/* Bytes received so far, of the declared size (-1 unknown). */
	void (*progress)(struct vroom_reader *r, uint64_t received, int64_t total, void *arg);
	/* Once, last: how the stream ended. The reader is freed after it. */
	void (*end)(struct vroom_reader *r, const struct vroom_stream_end *e, void *arg);
};

const struct vroom_stream_info *vroom_reader_info(const struct vroom_reader *r);
void vroom_reader_set(struct vroom_reader *r, const struct vroom_reader_cbs *cbs, void *arg);
/* Read all: keep the bytes (at most max; more ends the stream with an error);
 * vroom_reader_data() gives them in the end callback. */
int vroom_reader_collect(struct vroom_reader *r, size_t max, struct vroom_error *err);
const void *vroom_reader_data(const struct vroom_reader *r, size_t *len);
/* Write to a file in dir under the sender's name, sanitized (no path
 * separators, no leading dot, no control characters); an existing file is
 * kept and a suffix added unless overwrite. The file appears under its name
 * only once complete and verified. */
int vroom_reader_save(struct vroom_reader *r, const char *dir, int overwrite,
		      struct vroom_error *err);
/* The file's path once vroom_reader_save() chose it. */
const char *vroom_reader_path(const struct vroom_reader *r);
/* The safe file name for a sender's name (at most cap bytes with the NUL). */
void vroom_sanitize_name(const char *name, const char *fallback, char *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif

/*
 * The vroom command's byte-stream subcommands: send (files), stream (stdin)
 * and recv (streams into a directory), with progress on a terminal.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "client/cli.h"
#include "client/vroom.h"

/* ---- progress ---- */

struct progress {
	const char *label;
	int tty;
	double t0, last;
	int last_pct;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void human(double bytes, char *out, size_t cap)
{
	const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int u = 0;
	while (bytes >= 1024 && u < 4) {
		bytes /= 1024;
		u++;
	}
	snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
}

/* A bar on a terminal (redrawn at most 10 times a second); plain lines
 * otherwise, at most one per second and one at the end. */
static void progress_show(struct progress *p, uint64_t done, int64_t total)
{
	double t = now_s();
	int final = total >= 0 && done >= (uint64_t)total;
	if (!final && t - p->last < (p->tty ? 0.1 : 1.0))
		return;
	int pct = total > 0 ? (int)(100.0 * (double)done / (double)total) : (final ? 100 : -1);
	if (!p->tty && final && p->last_pct == 100)
		return;
	p->last = t;
	p->last_pct = pct;
	double rate = t > p->t0 ? (double)done / (t - p->t0) : 0;
	char d[32], tot[32], r[32], eta[32] = "";
	human((double)done, d, sizeof(d));
	human(total >= 0 ? (double)total : 0, tot, sizeof(tot));
	human(rate, r, sizeof(r));
	if (total > 0 && rate > 0 && !final) {
		double left = ((double)total - (double)done) / rate;
		snprintf(eta, sizeof(eta), " %d:%02d left", (int)left / 60, (int)left % 60);
	}
	if (p->tty)
		fprintf(stderr, "\r\033[K%.40s  %s / %s  %3d%%  %s/s%s%s", p->label, d,
			total >= 0 ? tot : "?", pct < 0 ? 0 : pct, r, eta, final ? "\n" : "");
	else if (pct >= 0)
		fprintf(stderr, "%s: %s of %s (%d%%) at %s/s\n", p->label, d, tot, pct, r);
	else
		fprintf(stderr, "%s: %s at %s/s\n", p->label, d, r);
}

static void send_progress(void *arg, uint64_t acked, int64_t total)
{
	progress_show(arg, acked, total);
}

/* ---- options shared by send and stream ---- */

static int stream_opts(struct cli *c, struct vroom_stream_opts *o, struct vroom_attr *attrs,
		       char *keys, const char **dests, char *tobuf, size_t tocap)
{
	memset(o, 0, sizeof(*o));
	o->topic = c->topic;
	o->name = c->name;
	o->mime = c->mime;
	o->size = -1;
	for (int i = 0; i < c->nattrs; i++) {
		const char *eq = strchr(c->attrs[i], '=');
		if (!eq || eq == c->attrs[i])
			return cli_usage("--attr: '%s' is not KEY=VALUE", c->attrs[i]);
		char *k = keys + i * 256;
		snprintf(k, 256, "%.*s", (int)(eq - c->attrs[i]), c->attrs[i]);
		attrs[i].key = k;
		attrs[i].value = eq + 1;
	}
	o->attrs = attrs;
	o->nattrs = (size_t)c->nattrs;
	if (c->to) {
		snprintf(tobuf, tocap, "%s", c->to);
		for (char *save = NULL, *t = strtok_r(tobuf, ",", &save); t;
		     t = strtok_r(NULL, ",", &save)) {
			if (o->ndests == 64)
				return cli_usage("--to: at most %d identities", 64);
			dests[o->ndests++] = t;
		}
		o->dests = dests;
	}
	return 0;
}

static struct vroom *open_or_fail(struct cli *c, const struct vroom_handlers *h, void *arg)
{
	struct vroom_error e;
	struct vroom *v = cli_open(c, h, arg, &e);
	if (!v)
		cli_fail(&e);
	return v;
}

int cli_send(struct cli *c)
{
	if (c->npos < 3)
		return cli_usage("send: expected ID FILE...");
	struct vroom_stream_opts o;
	struct vroom_attr attrs[CLI_MAX_ATTRS];
	char keys[CLI_MAX_ATTRS * 256], tobuf[8192];
	const char *dests[64];
	int rc = stream_opts(c, &o, attrs, keys, dests, tobuf, sizeof(tobuf));
	if (rc)
		return rc;
	struct vroom *v = open_or_fail(c, NULL, NULL);
	if (!v)
		return 1;
	int failed = 0;
	for (int i = 2; i < c->npos; i++) {
		const char *path = c->pos[i];
		const char *base = strrchr(path, '/');
		struct progress p = {.label = base ? base + 1 : path, .tty = isatty(2), .t0 = now_s(),
				     .last_pct = -1};
		char id[VROOM_ROOM_ID_MAX + 1];
		struct vroom_error e;
		if (vroom_send_file(v, c->pos[1], path, &o, send_progress, &p, id, &e) < 0) {
			if (p.tty)
				fputc('\n', stderr);
			fprintf(stderr, "vroom: %s: %s: %s\n", vroom_code_name(e.code), path, e.message);
			failed = 1;
			if (!vroom_connected(v))
				break;
			continue;
		}
		printf("%s\n", id);
		fflush(stdout);
	}
	vroom_close(v);
	return failed;
}

int cli_stream(struct cli *c)
{
	if (c->npos != 2)
		return cli_usage("stream: expected ID (the data comes from stdin)");
	struct vroom_stream_opts o;
	struct vroom_attr attrs[CLI_MAX_ATTRS];
	char keys[CLI_MAX_ATTRS * 256], tobuf[8192];
	const char *dests[64];
	int rc = stream_opts(c, &o, attrs, keys, dests, tobuf, sizeof(tobuf));
	if (rc)
		return rc;
	struct vroom *v = open_or_fail(c, NULL, NULL);
	if (!v)
		return 1;
	struct vroom_error e;
	struct progress p = {.label = c->name ? c->name : "stdin", .tty = isatty(2),
			     .t0 = now_s(), .last_pct = -1};
	struct vroom_writer *w = vroom_stream_open(v, c->pos[1], &o, &e);
	if (!w) {
		vroom_close(v);
		return cli_fail(&e);
	}
	vroom_writer_set_cbs(w, NULL, send_progress, NULL, &p);
	char id[VROOM_ROOM_ID_MAX + 1];
	snprintf(id, sizeof(id), "%s", vroom_writer_id(w));
	static char buf[1 << 20];
	size_t n;
	rc = 0;
	while (rc == 0 && (n = fread(buf, 1, sizeof(buf), stdin)) > 0)
		rc = vroom_writer_write(w, buf, n, &e);
	if (rc == 0 && ferror(stdin)) {
		vroom_writer_abort(w, "the sender could not read its input", NULL);
		vroom_writer_free(w);
		vroom_close(v);
		fprintf(stderr, "vroom: io: cannot read stdin: %s\n", strerror(errno));
		return 1;
	}
	if (rc == 0)
		rc = vroom_writer_close(w, NULL, 0, &e);
	else
		vroom_writer_free(w);
	vroom_close(v);
	if (rc < 0)
		return cli_fail(&e);
	printf("%s\n", id);
	return 0;
}

/* ---- recv ---- */

struct recv_state {
	struct cli *c;
	struct vroom *v;
	long finished, failed;
	int closed;
	char reason[256];
	struct progress p;
	char label[300];
};

static void recv_progress(struct vroom_reader *r, uint64_t received, int64_t total, void *arg)
{
	struct recv_state *s = arg;
	if (s->p.tty)
		progress_show(&s->p, received, total);
}

static void recv_end(struct vroom_reader *r, const struct vroom_stream_end *e, void *arg)
{
	struct recv_state *s = arg;
	const struct vroom_stream_info *in = vroom_reader_info(r);
	json_t *attrs = json_object();
	for (size_t i = 0; i < in->nattrs; i++)
		json_object_set_new(attrs, in->attrs[i].key, json_string(in->attrs[i].value));
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:o, s:s, s:s}", "id", in->id,
			      "topic", in->topic, "name", in->name, "mime", in->mime, "size",
			      (json_int_t)in->size, "bytes", (json_int_t)e->bytes, "sender",
			      in->sender, "attributes", attrs, "status", e->ok ? "ok" : e->status,
			      "reason", e->reason);
	if (o && vroom_reader_path(r))
		json_object_set_new(o, "path", json_string(vroom_reader_path(r)));
	if (s->p.tty && s->p.last_pct != 100)
		fputc('\n', stderr);
	if (o) {
		json_dumpf(o, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		fflush(stdout);
		json_decref(o);
	}
	s->finished++;
	if (!e->ok)
		s->failed++;
	if (s->finished == s->c->count)
		vroom_stop(s->v);
}

static void recv_handler(struct vroom *v, struct vroom_reader *r, void *arg)
{
	struct recv_state *s = arg;
	struct vroom_error e;
	const struct vroom_stream_info *in = vroom_reader_info(r);
	struct vroom_reader_cbs cbs = {.progress = recv_progress, .end = recv_end};
	snprintf(s->label, sizeof(s->label), "%s", *in->name ? in->name : in->id);
	s->p = (struct progress){.label = s->label, .tty = isatty(2), .t0 = 0, .last_pct = -1};
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	s->p.t0 = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	vroom_reader_set(r, &cbs, s);
	if (vroom_reader_save(r, s->c->dir ? s->c->dir : ".", s->c->overwrite, &e) < 0)
		fprintf(stderr, "vroom: %s: %s\n", vroom_code_name(e.code), e.message);
}

static void recv_closed(struct vroom *v, const char *room, const char *reason, void *arg)
{
	struct recv_state *s = arg;
	s->closed = 1;
	snprintf(s->reason, sizeof(s->reason), "%s", reason);
	vroom_stop(v);
}

int cli_recv(struct cli *c)
{
	if (c->npos != 2)
		return cli_usage("recv: expected one room id");
	const char *dir = c->dir ? c->dir : ".";
	struct stat st;
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "vroom: argument: --dir %s is not a directory\n", dir);
		return 2;
	}
	struct recv_state s = {.c = c};
	struct vroom_handlers h = {.room_closed = recv_closed};
	struct vroom_error e;
	s.v = open_or_fail(c, &h, &s);
	if (!s.v)
		return 1;
	const char *topics[1] = {c->topic};
	if (vroom_set_stream_handler(s.v, c->topic, recv_handler, &s, &e) < 0 ||
	    vroom_subscribe_topics(s.v, c->pos[1], topics, c->topic ? 1 : 0, &e) < 0) {
		vroom_close(s.v);
		return cli_fail(&e);
	}
	if (c->verbose)
		fprintf(stderr, "vroom: subscribed to %s\n", c->pos[1]);
	int rc = 0;
	if (c->count != 0)
		rc = vroom_run(s.v, cli_timeout_ms(c), &e);
	vroom_close(s.v);
	if (s.closed) {
		fprintf(stderr, "vroom: room_closed: room %s closed (%s)\n", c->pos[1], s.reason);
		return 3;
	}
	if (rc < 0)
		return cli_fail(&e);
	return s.failed ? 4 : 0;
}

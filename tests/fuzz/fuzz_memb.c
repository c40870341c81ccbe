/*
 * fuzz_memb: feeds arbitrary bytes to memb_recv() and checks what memb.h
 * promises after every step.
 *
 * The instance under test ("a", fixed random seed, so runs reproduce) first
 * learns two members from a well-formed GOSSIP, so that input can probe,
 * suspect, refute and sync. Then it gets the whole input as one datagram,
 * and then the input read as records [flags, len_hi, len_lo, bytes...]: flags
 * bits 0-1 pick the sender's address, bits 2-7 advance the clock by 10 ms
 * steps (with a memb_tick), len bytes follow (fewer if the input ends). An
 * empty record with flags 0xff calls memb_leave(), with 0xfe memb_join().
 *
 * After each step: at most MEMB_MAX members, sorted by name, self among them
 * and never dead or suspect (left after a leave, then for good), every
 * incarnation below 2^63, the bad counter
 * never going back. Every datagram the instance sends fits its limit and is
 * accepted by a second instance ("b"): memb never sends what it would drop.
 * Built as a libFuzzer target with -Dfuzzing=true; replay.c runs the saved
 * corpus through the same function in every other build.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "cluster/memb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "fuzz_memb: %s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                                     \
			abort();                                                      \
		}                                                                     \
	} while (0)

static const char *const froms[4] = {"10.0.0.2:7946", "10.0.0.3:7946", "10.0.0.9:7946",
				     "[::1]:7946"};

struct fx {
	struct memb *a, *b;
	uint64_t now, sent;
	int left;
};

/* b only checks what a sends; what b would send goes nowhere. */
static void b_send(void *arg, const char *addr, const uint8_t *buf, size_t len)
{
	CHECK(len > 0 && len <= MEMB_DGRAM_MAX);
}

static void a_send(void *arg, const char *addr, const uint8_t *buf, size_t len)
{
	struct fx *f = arg;
	CHECK(addr && strlen(addr) <= MEMB_ADDR_MAX);
	CHECK(len > 0 && len <= MEMB_SYNC_MAX);
	uint64_t bad = memb_bad(f->b);
	memb_recv(f->b, "10.0.0.1:7946", buf, len, f->now);
	CHECK(memb_bad(f->b) == bad);
	f->sent++;
}

static void a_change(void *arg, const struct memb_member *m, int old)
{
	CHECK(m->state <= MEMB_LEFT && old >= -1 && old <= MEMB_LEFT);
	CHECK(strcmp(m->name, "a") != 0);
}

static void check(struct fx *f, uint64_t *bad)
{
	struct memb *m = f->a;
	size_t n = memb_count(m);
	CHECK(n >= 1 && n <= MEMB_MAX);
	for (size_t i = 0; i < n; i++) {
		const struct memb_member *x = memb_at(m, i);
		CHECK(x && x->name[0] && x->addr[0]);
		CHECK(strlen(x->name) <= MEMB_NAME_MAX && strlen(x->addr) <= MEMB_ADDR_MAX);
		CHECK(x->state <= MEMB_LEFT);
		CHECK(x->incarnation < (UINT64_C(1) << 63));
		if (i > 0)
			CHECK(strcmp(memb_at(m, i - 1)->name, x->name) < 0);
	}
	CHECK(memb_find(m, "a") == memb_self(m));
	CHECK(memb_self(m)->state == (f->left ? MEMB_LEFT : MEMB_ALIVE));
	const char *names[8];
	CHECK(memb_live(m, names, 8) <= 8);
	CHECK(memb_bad(m) >= *bad);
	*bad = memb_bad(m);
}

/* [1, 6, "b", 1, [[0, "b", 1, ...], [0, "c", 1, ...]]] */
static void introduce(struct fx *f)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;
	static const char *const who[2][2] = {{"b", "10.0.0.2:7946"}, {"c", "10.0.0.3:7946"}};

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 5);
	msgpack_pack_uint8(&pk, 1);
	msgpack_pack_uint8(&pk, 6);
	msgpack_pack_str_with_body(&pk, "b", 1);
	msgpack_pack_uint8(&pk, 1);
	msgpack_pack_array(&pk, 2);
	for (int i = 0; i < 2; i++) {
		msgpack_pack_array(&pk, 5);
		msgpack_pack_uint8(&pk, 0);
		msgpack_pack_str_with_body(&pk, who[i][0], 1);
		msgpack_pack_uint8(&pk, 1);
		msgpack_pack_str_with_body(&pk, who[i][1], strlen(who[i][1]));
		msgpack_pack_str_with_body(&pk, "", 0);
	}
	memb_recv(f->a, "10.0.0.2:7946", (const uint8_t *)sb.data, sb.size, f->now);
	CHECK(memb_bad(f->a) == 0 && memb_count(f->a) == 3);
	msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct memb_ops a_ops = {a_send, a_change}, b_ops = {b_send, NULL};
	struct memb_cfg cfg;
	struct fx f = {.now = 1000};
	uint64_t bad = 0;

	memb_cfg_defaults(&cfg);
	cfg.rng_seed = 1;
	cfg.dead_forget_ms = 3000; /* reachable within an input */
	f.b = memb_new("b", "10.0.0.2:7946", "", 1, &cfg, &b_ops, NULL);
	cfg.rng_seed = 2;
	f.a = memb_new("a", "10.0.0.1:7946", "10.0.0.1:7400", 5, &cfg, &a_ops, &f);
	CHECK(f.a && f.b);
	memb_tick(f.a, f.now);
	introduce(&f);

	memb_recv(f.a, froms[0], data, size, f.now);
	check(&f, &bad);

	size_t off = 0;
	while (size - off >= 3) {
		uint8_t flags = data[off];
		size_t len = (size_t)data[off + 1] << 8 | data[off + 2];
		off += 3;
		if (len > size - off)
			len = size - off;
		f.now += 10 * (uint64_t)(flags >> 2);
		memb_tick(f.a, f.now);
		if (len == 0 && flags == 0xff) {
			memb_leave(f.a, f.now);
			f.left = 1;
		} else if (len == 0 && flags == 0xfe) {
			memb_join(f.a, froms[2], f.now);
		}
		memb_recv(f.a, froms[flags & 3], data + off, len, f.now);
		off += len;
		check(&f, &bad);
	}
	/* long enough for every timer: suspicions end, the dead are forgotten */
	for (int i = 0; i < 8; i++) {
		f.now += 500;
		memb_tick(f.a, f.now);
	}
	check(&f, &bad);
	memb_free(f.a);
	memb_free(f.b);
	return 0;
}

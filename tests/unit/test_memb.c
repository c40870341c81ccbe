/*
 * Unit tests for cluster/memb: N instances on a simulated network (an
 * in-memory queue of datagrams with 1-3 ms latency, a virtual clock in ms,
 * random loss, partitions, crashed and deaf nodes; no sockets, no sleeps).
 * Every instance and the network draw from seeded generators, so a run is
 * reproducible; the tests assert outcomes within time bounds, never message
 * sequences. Then hostile datagrams against one instance, and the bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>
#include <sodium.h>

#include "cluster/memb.h"

#define NMAX	 16
#define TICK_MS	 50 /* as the node calls memb_tick */
#define JOIN_MS	 1000
#define NEVER	 UINT64_MAX
#define SEEDS	 seeds() /* runs per test with different seeds */

/* 20, or MEMB_TEST_SEEDS from the environment for longer explorations. */
static int seeds(void)
{
	const char *e = getenv("MEMB_TEST_SEEDS");
	int n = e ? atoi(e) : 0;
	return n > 0 ? n : 20;
}

/* ---- the simulated network ---- */

struct pkt {
	uint64_t at;
	int from, to;
	size_t len;
	uint8_t *buf;
};

struct sim;

struct snode {
	struct sim *sim;
	int id;
	struct memb *m;
	char name[32], addr[32], caddr[32];
	uint64_t inc;
	int up;		     /* 0: crashed: no ticks, nothing in or out */
	uint64_t deaf_until; /* drops everything in and out until then */
	int group;	     /* partition: traffic only within a group */
	uint64_t next_tick, last_join;
};

struct sim {
	struct snode n[NMAX];
	int count;
	struct memb_cfg cfg;
	struct memb_ops ops;
	uint64_t now, rng;
	unsigned loss_pct;
	struct pkt *q;
	size_t nq, capq;
	uint64_t sent, sent_bytes, dropped;
	size_t max_small, max_sync; /* largest datagram by kind */
	/* what observer i was told about subject j through ops->change */
	int saw_dead[NMAX][NMAX], saw_suspect[NMAX][NMAX], saw_left[NMAX][NMAX];
};

static uint64_t srnd(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static int node_by_addr(struct sim *s, const char *addr)
{
	for (int i = 0; i < s->count; i++)
		if (strcmp(s->n[i].addr, addr) == 0)
			return i;
	return -1;
}

static int node_by_name(struct sim *s, const char *name)
{
	for (int i = 0; i < s->count; i++)
		if (strcmp(s->n[i].name, name) == 0)
			return i;
	return -1;
}

static int can_talk(struct sim *s, const struct snode *x)
{
	return x->up && s->now >= x->deaf_until;
}

static void sim_send(void *arg, const char *addr, const uint8_t *buf, size_t len)
{
	struct snode *x = arg;
	struct sim *s = x->sim;

	assert_true(len > 0 && len <= MEMB_SYNC_MAX);
	/* msgpack [version, type, ...]: byte 2 is the type for a fixarray */
	if (buf[2] == 4 || buf[2] == 5) {
		if (len > s->max_sync)
			s->max_sync = len;
	} else {
		assert_true(len <= MEMB_SMALL_MAX);
		if (len > s->max_small)
			s->max_small = len;
	}
	s->sent++;
	s->sent_bytes += len;
	int to = node_by_addr(s, addr);
	if (to < 0 || !can_talk(s, x) || s->n[to].group != x->group ||
	    srnd(&s->rng) % 100 < s->loss_pct) {
		s->dropped++;
		return;
	}
	if (s->nq == s->capq) {
		s->capq = s->capq ? 2 * s->capq : 256;
		s->q = realloc(s->q, s->capq * sizeof(*s->q));
		assert_non_null(s->q);
	}
	struct pkt *p = &s->q[s->nq++];
	p->at = s->now + 1 + srnd(&s->rng) % 3;
	p->from = x->id;
	p->to = to;
	p->len = len;
	p->buf = malloc(len);
	assert_non_null(p->buf);
	memcpy(p->buf, buf, len);
}

static void sim_change(void *arg, const struct memb_member *mm, int old)
{
	struct snode *x = arg;
	int j = node_by_name(x->sim, mm->name);
	if (j < 0)
		return;
	if (mm->state == MEMB_DEAD)
		x->sim->saw_dead[x->id][j]++;
	if (mm->state == MEMB_SUSPECT)
		x->sim->saw_suspect[x->id][j]++;
	if (mm->state == MEMB_LEFT)
		x->sim->saw_left[x->id][j]++;
}

static void node_start(struct sim *s, int i, uint64_t inc)
{
	struct snode *x = &s->n[i];
	struct memb_cfg c = s->cfg;
	c.rng_seed = s->rng ^ (UINT64_C(0x1000) * (uint64_t)(i + 1) + inc);
	x->inc = inc;
	x->m = memb_new(x->name, x->addr, x->caddr, inc, &c, &s->ops, x);
	assert_non_null(x->m);
	x->up = 1;
	x->deaf_until = 0;
	x->next_tick = s->now + srnd(&s->rng) % TICK_MS;
	x->last_join = s->now;
	if (i != 0)
		memb_join(x->m, s->n[0].addr, s->now);
}

static void node_crash(struct sim *s, int i)
{
	s->n[i].up = 0;
}

static struct sim *sim_new(int count, uint64_t seed, const struct memb_cfg *cfg)
{
	struct sim *s = calloc(1, sizeof(*s));
	assert_non_null(s);
	assert_true(count <= NMAX);
	s->count = count;
	s->rng = seed * UINT64_C(0x2545f4914f6cdd1d) + 1;
	s->now = 1000000; /* any clock */
	if (cfg)
		s->cfg = *cfg;
	else
		memb_cfg_defaults(&s->cfg);
	s->ops.send = sim_send;
	s->ops.change = sim_change;
	for (int i = 0; i < count; i++) {
		struct snode *x = &s->n[i];
		x->sim = s;
		x->id = i;
		snprintf(x->name, sizeof(x->name), "node-%02d", i);
		snprintf(x->addr, sizeof(x->addr), "10.0.0.%d:7946", i + 1);
		snprintf(x->caddr, sizeof(x->caddr), "10.0.0.%d:7400", i + 1);
	}
	for (int i = 0; i < count; i++)
		node_start(s, i, 1000 + (uint64_t)i);
	return s;
}

static void sim_free(struct sim *s)
{
	for (int i = 0; i < s->count; i++)
		memb_free(s->n[i].m);
	for (size_t i = 0; i < s->nq; i++)
		free(s->q[i].buf);
	free(s->q);
	free(s);
}

/* One millisecond: deliveries due, then ticks due, then the joins a node
 * repeats while it knows nobody (as the node does with its seeds). */
static void sim_step(struct sim *s)
{
	s->now++;
	for (size_t i = 0; i < s->nq;) {
		if (s->q[i].at > s->now) {
			i++;
			continue;
		}
		struct pkt p = s->q[i];
		s->q[i] = s->q[--s->nq];
		struct snode *to = &s->n[p.to];
		if (can_talk(s, to))
			memb_recv(to->m, s->n[p.from].addr, p.buf, p.len, s->now);
		free(p.buf);
	}
	for (int i = 0; i < s->count; i++) {
		struct snode *x = &s->n[i];
		if (!x->up || s->now < x->next_tick)
			continue;
		x->next_tick += TICK_MS;
		memb_tick(x->m, s->now);
		if (i != 0 && memb_count(x->m) <= 1 && s->now - x->last_join >= JOIN_MS) {
			x->last_join = s->now;
			memb_join(x->m, s->n[0].addr, s->now);
		}
	}
}

/* Runs until done(s, arg) or for at most ms; the time it took, or NEVER. */
static uint64_t sim_until(struct sim *s, uint64_t ms, int (*done)(struct sim *, int), int arg)
{
	uint64_t t0 = s->now;
	while (s->now - t0 < ms) {
		if (done && done(s, arg))
			return s->now - t0;
		sim_step(s);
	}
	return done && done(s, arg) ? s->now - t0 : NEVER;
}

static void sim_run(struct sim *s, uint64_t ms)
{
	sim_until(s, ms, NULL, 0);
}

static const struct memb_member *view(struct sim *s, int obs, int subj)
{
	return memb_find(s->n[obs].m, s->n[subj].name);
}

/* Every running node sees every running node alive at its current
 * incarnation. */
static int converged(struct sim *s, int unused)
{
	for (int i = 0; i < s->count; i++) {
		if (!s->n[i].up)
			continue;
		for (int j = 0; j < s->count; j++) {
			if (!s->n[j].up)
				continue;
			const struct memb_member *v = view(s, i, j);
			if (!v || v->state != MEMB_ALIVE ||
			    v->incarnation != memb_self(s->n[j].m)->incarnation)
				return 0;
		}
	}
	return 1;
}

static int all_see_dead(struct sim *s, int j)
{
	for (int i = 0; i < s->count; i++) {
		if (i == j || !s->n[i].up)
			continue;
		const struct memb_member *v = view(s, i, j);
		if (!v || v->state != MEMB_DEAD)
			return 0;
	}
	return 1;
}

static int all_see_left(struct sim *s, int j)
{
	for (int i = 0; i < s->count; i++) {
		if (i == j || !s->n[i].up)
			continue;
		const struct memb_member *v = view(s, i, j);
		if (!v || v->state != MEMB_LEFT)
			return 0;
	}
	return 1;
}

static int none_knows(struct sim *s, int j)
{
	for (int i = 0; i < s->count; i++)
		if (i != j && s->n[i].up && view(s, i, j))
			return 0;
	return 1;
}

static int dead_seen_by_anyone(struct sim *s, int j)
{
	int c = 0;
	for (int i = 0; i < s->count; i++)
		c += s->saw_dead[i][j];
	return c;
}

static int group_setup(void **state)
{
	return sodium_init() < 0 ? -1 : 0;
}

/* ---- convergence ---- */

static void converge_n(int n, uint64_t bound)
{
	uint64_t worst = 0, sum = 0, dgrams = 0, bytes = 0;
	for (uint64_t seed = 1; seed <= (uint64_t)SEEDS; seed++) {
		struct sim *s = sim_new(n, seed, NULL);
		uint64_t t = sim_until(s, 10000, converged, 0);
		assert_true(t != NEVER);
		/* and it stays that way: no false suspicion on a clean network */
		uint64_t d0 = s->sent, b0 = s->sent_bytes;
		sim_run(s, 3000);
		dgrams += s->sent - d0;
		bytes += s->sent_bytes - b0;
		assert_true(converged(s, 0));
		for (int i = 0; i < n; i++)
			for (int j = 0; j < n; j++)
				assert_int_equal(s->saw_suspect[i][j], 0);
		if (t > worst)
			worst = t;
		sum += t;
		sim_free(s);
	}
	printf("# %d nodes from one seed: converged in %.0f ms on average, %llu ms at worst "
	       "(%d runs)\n",
	       n, (double)sum / SEEDS, (unsigned long long)worst, SEEDS);
	printf("#   then %.1f datagrams and %.0f bytes per node per second\n",
	       (double)dgrams / 3.0 / n / SEEDS, (double)bytes / 3.0 / n / SEEDS);
	assert_true(worst <= bound);
}

static void test_converge_3(void **state)
{
	converge_n(3, 1000);
}

static void test_converge_5(void **state)
{
	converge_n(5, 1500);
}

static void test_converge_10(void **state)
{
	converge_n(10, 2000);
}

/* ---- failure detection ---- */

/* Crashes one node of n after convergence; the time until every other
 * node holds it dead, worst over the seeds. No other node may be declared
 * dead on the way. */
static uint64_t crash_worst(int n, unsigned loss, uint64_t bound, uint64_t *avg)
{
	uint64_t worst = 0, sum = 0;
	int false_dead = 0;
	for (uint64_t seed = 1; seed <= (uint64_t)SEEDS; seed++) {
		struct sim *s = sim_new(n, seed + 100 * loss, NULL);
		s->loss_pct = loss;
		assert_true(sim_until(s, 20000, converged, 0) != NEVER);
		sim_run(s, 1000 + srnd(&s->rng) % 1000);
		int k = 1 + (int)(srnd(&s->rng) % (uint64_t)(n - 1));
		node_crash(s, k);
		uint64_t t = sim_until(s, 10000, all_see_dead, k);
		if (t == NEVER || t > bound)
			printf("# seed %llu: node %d not dead everywhere after %llu ms\n",
			       (unsigned long long)seed, k, (unsigned long long)bound);
		assert_true(t != NEVER && t <= bound);
		for (int j = 0; j < n; j++) {
			if (j == k)
				continue;
			if (loss == 0)
				assert_int_equal(dead_seen_by_anyone(s, j), 0);
			else
				false_dead += dead_seen_by_anyone(s, j) > 0;
		}
		if (t > worst)
			worst = t;
		sum += t;
		sim_free(s);
	}
	*avg = sum / SEEDS;
	if (loss)
		printf("# (%d%% loss: %d live nodes were held dead for a while in %d runs)\n", loss,
		       false_dead, SEEDS);
	return worst;
}

static void test_crash_10(void **state)
{
	uint64_t avg, worst = crash_worst(10, 0, 3000, &avg);
	printf("# 10 nodes, crash: dead everywhere in %llu ms on average, %llu ms at worst "
	       "(%d runs)\n",
	       (unsigned long long)avg, (unsigned long long)worst, SEEDS);
}

static void test_crash_3_5(void **state)
{
	uint64_t avg, worst = crash_worst(3, 0, 3000, &avg);
	printf("# 3 nodes, crash: dead everywhere in %llu ms on average, %llu ms at worst\n",
	       (unsigned long long)avg, (unsigned long long)worst);
	worst = crash_worst(5, 0, 3000, &avg);
	printf("# 5 nodes, crash: dead everywhere in %llu ms on average, %llu ms at worst\n",
	       (unsigned long long)avg, (unsigned long long)worst);
}

/* A node deaf for 500 ms (everything in and out lost) may be suspected, but
 * it refutes in time: nobody ever holds it dead, and it ends alive
 * everywhere. Over the seeds it must have been suspected at least once, or
 * the test tests nothing. */
static void test_slow_node(void **state)
{
	int suspected_runs = 0;
	for (uint64_t seed = 1; seed <= (uint64_t)SEEDS; seed++) {
		struct sim *s = sim_new(10, seed + 500, NULL);
		assert_true(sim_until(s, 10000, converged, 0) != NEVER);
		sim_run(s, 500 + srnd(&s->rng) % 1000);
		int k = 1 + (int)(srnd(&s->rng) % 9);
		uint64_t inc = memb_self(s->n[k].m)->incarnation;
		s->n[k].deaf_until = s->now + 500;
		sim_run(s, 4000);
		int susp = 0;
		for (int i = 0; i < s->count; i++) {
			assert_int_equal(s->saw_dead[i][k], 0);
			susp += s->saw_suspect[i][k];
		}
		assert_true(sim_until(s, 3000, converged, 0) != NEVER);
		if (susp) {
			suspected_runs++;
			assert_true(memb_self(s->n[k].m)->incarnation > inc);
		}
		sim_free(s);
	}
	printf("# slow node: suspected in %d of %d runs, never dead\n", suspected_runs, SEEDS);
	assert_true(suspected_runs > 0);
}

/* A graceful leave is LEFT everywhere quickly, never DEAD, and forgotten
 * after dead_forget_ms. */
static void test_leave(void **state)
{
	struct memb_cfg c;
	memb_cfg_defaults(&c);
	c.dead_forget_ms = 5000;
	uint64_t worst = 0;
	for (uint64_t seed = 1; seed <= (uint64_t)SEEDS; seed++) {
		struct sim *s = sim_new(10, seed + 900, &c);
		assert_true(sim_until(s, 10000, converged, 0) != NEVER);
		int k = 1 + (int)(srnd(&s->rng) % 9);
		memb_leave(s->n[k].m, s->now);
		assert_int_equal(memb_self(s->n[k].m)->state, MEMB_LEFT);
		uint64_t t = sim_until(s, 5000, all_see_left, k);
		assert_true(t != NEVER && t <= 100);
		if (t > worst)
			worst = t;
		sim_run(s, 400); /* the node lingers as memb.h asks, then exits */
		node_crash(s, k);
		sim_run(s, 2000);
		assert_true(all_see_left(s, k));
		assert_int_equal(dead_seen_by_anyone(s, k), 0);
		for (int i = 0; i < s->count; i++) {
			const char *names[NMAX];
			size_t nl = memb_live(s->n[i].m, names, NMAX);
			for (size_t j = 0; j < nl; j++)
				assert_string_not_equal(names[j], s->n[k].name);
		}
		assert_true(sim_until(s, 5000, none_knows, k) != NEVER);
		sim_free(s);
	}
	printf("# leave: LEFT everywhere in %llu ms at worst, never DEAD\n",
	       (unsigned long long)worst);
}

/* A restarted node (same name, higher incarnation, another address)
 * replaces its dead record, and also a record that was still alive. */
static void test_restart(void **state)
{
	uint64_t worst_dead = 0, worst_fast = 0;
	for (uint64_t seed = 1; seed <= (uint64_t)SEEDS; seed++) {
		struct sim *s = sim_new(10, seed + 1300, NULL);
		assert_true(sim_until(s, 10000, converged, 0) != NEVER);
		int k = 1 + (int)(srnd(&s->rng) % 9);
		node_crash(s, k);
		assert_true(sim_until(s, 4000, all_see_dead, k) != NEVER);
		sim_run(s, 500);
		memb_free(s->n[k].m);
		snprintf(s->n[k].addr, sizeof(s->n[k].addr), "10.0.1.%d:7946", k + 1);
		node_start(s, k, s->n[k].inc + 100000);
		uint64_t t = sim_until(s, 5000, converged, 0);
		assert_true(t != NEVER);
		if (t > worst_dead)
			worst_dead = t;
		for (int i = 0; i < s->count; i++)
			assert_string_equal(view(s, i, k)->addr, s->n[k].addr);

		/* again, before anyone noticed the crash */
		node_crash(s, k);
		sim_run(s, 100);
		memb_free(s->n[k].m);
		snprintf(s->n[k].addr, sizeof(s->n[k].addr), "10.0.2.%d:7946", k + 1);
		node_start(s, k, s->n[k].inc + 100000);
		t = sim_until(s, 5000, converged, 0);
		assert_true(t != NEVER);
		if (t > worst_fast)
			worst_fast = t;
		for (int i = 0; i < s->count; i++)
			assert_string_equal(view(s, i, k)->addr, s->n[k].addr);
		sim_free(s);
	}
	printf("# restart: alive again everywhere in %llu ms at worst after it was dead, "
	       "%llu ms when it was not yet\n",
	       (unsigned long long)worst_dead, (unsigned long long)worst_fast);
}

/* A node cut off for 3 s is declared dead (and declares the others dead);
 * once the partition heals it hears it, refutes, and the views merge. */
static void test_partition_heals(void **state)
{
	uint64_t worst = 0;
	for (uint64_t seed = 1; seed <= (uint64_t)SEEDS; seed++) {
		struct sim *s = sim_new(10, seed + 1700, NULL);
		assert_true(sim_until(s, 10000, converged, 0) != NEVER);
		int k = 1 + (int)(srnd(&s->rng) % 9);
		s->n[k].group = 1;
		assert_true(sim_until(s, 5000, all_see_dead, k) != NEVER);
		s->n[k].group = 0;
		uint64_t t = sim_until(s, 30000, converged, 0);
		assert_true(t != NEVER);
		if (t > worst)
			worst = t;
		sim_free(s);
	}
	printf("# partition of one node for ~3 s: views merged %llu ms after it healed, at worst\n",
	       (unsigned long long)worst);
}

/* 10% of datagrams lost: still converges, and a crash is still detected
 * (within a looser bound). */
static void test_loss(void **state)
{
	uint64_t worst = 0, sum = 0;
	for (uint64_t seed = 1; seed <= (uint64_t)SEEDS; seed++) {
		struct sim *s = sim_new(10, seed + 2100, NULL);
		s->loss_pct = 10;
		uint64_t t = sim_until(s, 20000, converged, 0);
		assert_true(t != NEVER && t <= 5000);
		if (t > worst)
			worst = t;
		sum += t;
		sim_free(s);
	}
	printf("# 10 nodes, 10%% loss: converged in %llu ms on average, %llu ms at worst\n",
	       (unsigned long long)(sum / SEEDS), (unsigned long long)worst);
	uint64_t avg;
	worst = crash_worst(10, 10, 5000, &avg);
	printf("# 10 nodes, 10%% loss, crash: dead everywhere in %llu ms on average, %llu ms "
	       "at worst\n",
	       (unsigned long long)avg, (unsigned long long)worst);
}

/* ---- one instance against hand-made datagrams ---- */

struct cap {
	int n;
	char to[8][MEMB_ADDR_MAX + 1];
	uint8_t buf[8][MEMB_DGRAM_MAX];
	size_t len[8];
	/* every datagram, for the sync test */
	uint8_t **all;
	size_t *all_len, nall;
	int keep_all;
};

static void cap_send(void *arg, const char *addr, const uint8_t *buf, size_t len)
{
	struct cap *c = arg;
	assert_true(len <= MEMB_DGRAM_MAX);
	if (c->keep_all) {
		c->all = realloc(c->all, (c->nall + 1) * sizeof(*c->all));
		c->all_len = realloc(c->all_len, (c->nall + 1) * sizeof(*c->all_len));
		assert_true(c->all && c->all_len);
		c->all[c->nall] = malloc(len);
		assert_non_null(c->all[c->nall]);
		memcpy(c->all[c->nall], buf, len);
		c->all_len[c->nall++] = len;
	}
	if (c->n < 8) {
		snprintf(c->to[c->n], sizeof(c->to[c->n]), "%s", addr);
		memcpy(c->buf[c->n], buf, len);
		c->len[c->n++] = len;
	}
}

static const struct memb_ops cap_ops = {cap_send, NULL};

static struct memb *lone(struct cap *c)
{
	struct memb_cfg cfg;
	memb_cfg_defaults(&cfg);
	cfg.rng_seed = 42;
	memset(c, 0, sizeof(*c));
	struct memb *m = memb_new("a", "10.0.0.1:7946", "10.0.0.1:7400", 5, &cfg, &cap_ops, c);
	assert_non_null(m);
	return m;
}

/* A datagram being written by hand: a packer into an sbuffer. */
struct hand {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void hand_init(struct hand *h)
{
	msgpack_sbuffer_init(&h->sb);
	msgpack_packer_init(&h->pk, &h->sb, msgpack_sbuffer_write);
}

static void hstr(struct hand *h, const char *s)
{
	msgpack_pack_str(&h->pk, strlen(s));
	msgpack_pack_str_body(&h->pk, s, strlen(s));
}

static void hitem(struct hand *h, unsigned st, const char *name, uint64_t inc, const char *addr,
		  const char *caddr)
{
	msgpack_pack_array(&h->pk, 5);
	msgpack_pack_uint64(&h->pk, st);
	hstr(h, name);
	msgpack_pack_uint64(&h->pk, inc);
	hstr(h, addr);
	hstr(h, caddr);
}

/* [1, 6, "b", 9, [items: alive "b", and `name` in `st`]] */
static void gossip_about(struct hand *h, unsigned st, const char *name, uint64_t inc)
{
	hand_init(h);
	msgpack_pack_array(&h->pk, 5);
	msgpack_pack_uint64(&h->pk, 1);
	msgpack_pack_uint64(&h->pk, 6);
	hstr(h, "b");
	msgpack_pack_uint64(&h->pk, 9);
	msgpack_pack_array(&h->pk, 1);
	hitem(h, st, name, inc, "10.0.0.9:7946", "");
}

static void deliver(struct memb *m, struct hand *h, uint64_t now)
{
	memb_recv(m, "10.0.0.2:7946", (const uint8_t *)h->sb.data, h->sb.size, now);
	msgpack_sbuffer_destroy(&h->sb);
}

/* Makes "b" (the sender of the hand-made datagrams) a known member, and
 * forgets what m sent on meeting it. */
static void meet_b(struct memb *m, struct cap *c, uint64_t now)
{
	struct hand h;
	gossip_about(&h, MEMB_ALIVE, "b", 1);
	deliver(m, &h, now);
	assert_non_null(memb_find(m, "b"));
	c->n = 0;
}

/* The documented format, byte for byte: a PING to "a" is answered with one
 * ACK to the sender's address echoing the seq, and a GOSSIP adds a member. */
static void test_format(void **state)
{
	struct cap c;
	struct memb *m = lone(&c);
	/* [1, 1, "b", 77, "a", [[0, "b", 3, "10.0.0.2:7946", "10.0.0.2:7400"]]] */
	static const uint8_t ping[] = {
		0x96, 0x01, 0x01, 0xa1, 'b', 0x4d, 0xa1, 'a', 0x91, 0x95, 0x00, 0xa1, 'b', 0x03,
		0xad, '1', '0', '.', '0', '.', '0', '.', '2', ':', '7', '9', '4', '6',
		0xad, '1', '0', '.', '0', '.', '0', '.', '2', ':', '7', '4', '0', '0'};
	memb_recv(m, "10.0.0.2:7946", ping, sizeof(ping), 1000);
	assert_int_equal(memb_bad(m), 0);
	/* the ACK, then a SYNC: "b" was a stranger, so they swap states */
	assert_int_equal(c.n, 2);
	assert_string_equal(c.to[0], "10.0.0.2:7946");
	assert_string_equal(c.to[1], "10.0.0.2:7946");
	assert_int_equal(c.buf[1][2], 4);

	msgpack_zone z;
	msgpack_object o;
	size_t off = 0;
	msgpack_zone_init(&z, 1024);
	assert_int_equal(msgpack_unpack((const char *)c.buf[0], c.len[0], &off, &z, &o),
			 MSGPACK_UNPACK_SUCCESS);
	assert_int_equal(o.type, MSGPACK_OBJECT_ARRAY);
	assert_int_equal(o.via.array.size, 5);
	assert_int_equal(o.via.array.ptr[0].via.u64, 1);  /* version */
	assert_int_equal(o.via.array.ptr[1].via.u64, 2);  /* ACK */
	assert_int_equal(o.via.array.ptr[3].via.u64, 77); /* the PING's seq */
	assert_int_equal(o.via.array.ptr[4].type, MSGPACK_OBJECT_ARRAY);
	msgpack_zone_destroy(&z);

	const struct memb_member *b = memb_find(m, "b");
	assert_non_null(b);
	assert_int_equal(b->state, MEMB_ALIVE);
	assert_int_equal(b->incarnation, 3);
	assert_string_equal(b->client_addr, "10.0.0.2:7400");

	/* a PING for another name (a stale address) is not acked */
	c.n = 0;
	static const uint8_t other[] = {0x96, 0x01, 0x01, 0xa1, 'b', 0x4d, 0xa1, 'z', 0x90};
	memb_recv(m, "10.0.0.2:7946", other, sizeof(other), 1001);
	assert_int_equal(c.n, 0);
	assert_int_equal(memb_bad(m), 0);

	/* extra elements before the list, and in an item, are ignored */
	struct hand h;
	hand_init(&h);
	msgpack_pack_array(&h.pk, 7);
	msgpack_pack_uint64(&h.pk, 1);
	msgpack_pack_uint64(&h.pk, 6);
	hstr(&h, "b");
	msgpack_pack_uint64(&h.pk, 1);
	msgpack_pack_nil(&h.pk);
	hstr(&h, "future");
	msgpack_pack_array(&h.pk, 1);
	msgpack_pack_array(&h.pk, 6);
	msgpack_pack_uint64(&h.pk, 0);
	hstr(&h, "c");
	msgpack_pack_uint64(&h.pk, 1);
	hstr(&h, "10.0.0.3:7946");
	hstr(&h, "");
	msgpack_pack_true(&h.pk);
	deliver(m, &h, 1002);
	assert_int_equal(memb_bad(m), 0);
	assert_non_null(memb_find(m, "c"));
	assert_int_equal(memb_count(m), 3);
	memb_free(m);
}

/* Claims about this node: suspect or dead at its incarnation make it
 * refute (incarnation + 1, sent straight back); older claims do nothing. */
static void test_refute(void **state)
{
	struct cap c;
	struct hand h;
	struct memb *m = lone(&c);
	struct memb_stats st;

	meet_b(m, &c, 999);
	gossip_about(&h, MEMB_SUSPECT, "a", 4);
	deliver(m, &h, 1000);
	assert_int_equal(memb_self(m)->incarnation, 5);
	assert_int_equal(c.n, 0);

	gossip_about(&h, MEMB_SUSPECT, "a", 5);
	deliver(m, &h, 1001);
	assert_int_equal(memb_self(m)->incarnation, 6);
	assert_int_equal(memb_self(m)->state, MEMB_ALIVE);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.to[0], "10.0.0.2:7946");

	gossip_about(&h, MEMB_DEAD, "a", 9);
	deliver(m, &h, 1002);
	assert_int_equal(memb_self(m)->incarnation, 10);
	memb_stats(m, &st);
	assert_int_equal(st.refuted, 2);
	assert_int_equal(st.bad, 0);

	/* a member: alive, then suspect and dead at that incarnation, then a
	 * stale alive does nothing, a newer one revives it */
	gossip_about(&h, MEMB_ALIVE, "x", 3);
	deliver(m, &h, 1003);
	gossip_about(&h, MEMB_SUSPECT, "x", 3);
	deliver(m, &h, 1004);
	assert_int_equal(memb_find(m, "x")->state, MEMB_SUSPECT);
	gossip_about(&h, MEMB_ALIVE, "x", 3);
	deliver(m, &h, 1005);
	assert_int_equal(memb_find(m, "x")->state, MEMB_SUSPECT);
	memb_tick(m, 1004 + 1000);
	assert_int_equal(memb_find(m, "x")->state, MEMB_DEAD);
	gossip_about(&h, MEMB_LEFT, "x", 3);
	deliver(m, &h, 2010);
	assert_int_equal(memb_find(m, "x")->state, MEMB_LEFT);
	gossip_about(&h, MEMB_DEAD, "x", 3);
	deliver(m, &h, 2011);
	assert_int_equal(memb_find(m, "x")->state, MEMB_LEFT);
	gossip_about(&h, MEMB_ALIVE, "x", 4);
	deliver(m, &h, 2012);
	assert_int_equal(memb_find(m, "x")->state, MEMB_ALIVE);
	/* dead and left news of unknown members are not recorded */
	gossip_about(&h, MEMB_DEAD, "y", 3);
	deliver(m, &h, 2013);
	gossip_about(&h, MEMB_LEFT, "z", 3);
	deliver(m, &h, 2014);
	assert_null(memb_find(m, "y"));
	assert_null(memb_find(m, "z"));
	assert_int_equal(memb_bad(m), 0);
	memb_free(m);
}

/* Each of these is dropped and counted once, and changes nothing. */
static void test_malformed(void **state)
{
	struct cap c;
	struct memb *m = lone(&c);
	uint64_t bad = 0;
	struct hand h;
	char longname[MEMB_NAME_MAX + 2], longaddr[MEMB_ADDR_MAX + 2];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	memset(longaddr, '1', sizeof(longaddr) - 1);
	longaddr[sizeof(longaddr) - 1] = 0;

#define EXPECT_BAD()                                           \
	do {                                                   \
		assert_int_equal(memb_bad(m), ++bad);          \
		assert_int_equal(memb_count(m), 1);            \
		assert_int_equal(memb_self(m)->incarnation, 5); \
	} while (0)

	/* raw bytes */
	static const uint8_t huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
	static const uint8_t huge_map[] = {0xdf, 0x7f, 0xff, 0xff, 0xff};
	static const uint8_t huge_str[] = {0x95, 0x01, 0x06, 0xdb, 0xff, 0xff, 0xff, 0xf0, 'b'};
	static const uint8_t huge_list[] = {0x95, 0x01, 0x06, 0xa1, 'b', 0x01,
					    0xdd, 0x00, 0x10, 0x00, 0x00};
	static const uint8_t deep[] = {0x95, 0x01, 0x06, 0xa1, 'b', 0x01, 0x91, 0x91, 0x91, 0x00};
	static const uint8_t trailing[] = {0x95, 0x01, 0x06, 0xa1, 'b', 0x01, 0x90, 0x00};
	static const uint8_t two_values[] = {0x90, 0x90};
	static const uint8_t bad_byte[] = {0xc1};
	static const uint8_t not_array[] = {0xa3, 'a', 'b', 'c'};
	static const uint8_t short_array[] = {0x94, 0x01, 0x06, 0xa1, 'b', 0x01};
	static const uint8_t ext[] = {0x95, 0x01, 0x06, 0xa1, 'b', 0xd4, 0x01, 0x02, 0x90};
	const struct {
		const uint8_t *p;
		size_t len;
	} raw[] = {
		{huge_array, sizeof(huge_array)}, {huge_map, sizeof(huge_map)},
		{huge_str, sizeof(huge_str)},	  {huge_list, sizeof(huge_list)},
		{deep, sizeof(deep)},		  {trailing, sizeof(trailing)},
		{two_values, sizeof(two_values)}, {bad_byte, sizeof(bad_byte)},
		{not_array, sizeof(not_array)},	  {short_array, sizeof(short_array)},
		{ext, sizeof(ext)},		  {huge_array, 0},
	};
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		memb_recv(m, "10.0.0.2:7946", raw[i].p, raw[i].len, 1000);
		EXPECT_BAD();
	}
	/* a datagram over MEMB_DGRAM_MAX, even a well-formed one */
	uint8_t *big = calloc(1, MEMB_DGRAM_MAX + 1);
	assert_non_null(big);
	memb_recv(m, "10.0.0.2:7946", big, MEMB_DGRAM_MAX + 1, 1000);
	EXPECT_BAD();
	free(big);
	/* a bad from_addr (the caller's, but still not trusted) */
	gossip_about(&h, MEMB_ALIVE, "x", 1);
	memb_recv(m, longaddr, (const uint8_t *)h.sb.data, h.sb.size, 1000);
	msgpack_sbuffer_destroy(&h.sb);
	EXPECT_BAD();

	/* well-formed msgpack, wrong schema. Each builds [v, t, sender, seq,
	 * (fields), list] with one thing wrong. */
	enum { WRONG_VERSION, UNKNOWN_TYPE, TYPE_STR, SENDER_INT, SENDER_EMPTY, SENDER_LONG,
	       SENDER_UTF8, SENDER_CTRL, SEQ_NEG, LIST_MAP, LIST_LONG, ITEM_SHORT, ITEM_LONG,
	       STATE_4, INC_HUGE, NAME_LONG, ADDR_LONG, ADDR_EMPTY, ADDR_SPACE, CADDR_INT,
	       PING_NO_TARGET, PING_REQ_NO_ADDR, TOO_MANY, BIN_NAME, CASES };
	for (int k = 0; k < CASES; k++) {
		hand_init(&h);
		int nfields = k == PING_NO_TARGET ? 0 : k == PING_REQ_NO_ADDR ? 1 : 0;
		unsigned type = k == PING_NO_TARGET ? 1 : k == PING_REQ_NO_ADDR ? 3 : 6;
		msgpack_pack_array(&h.pk, (k == TOO_MANY ? 17 : 5 + nfields));
		msgpack_pack_uint64(&h.pk, k == WRONG_VERSION ? 2 : 1);
		if (k == TYPE_STR)
			hstr(&h, "6");
		else
			msgpack_pack_uint64(&h.pk, k == UNKNOWN_TYPE ? 7 : type);
		if (k == SENDER_INT)
			msgpack_pack_uint64(&h.pk, 3);
		else if (k == SENDER_EMPTY)
			hstr(&h, "");
		else if (k == SENDER_LONG)
			hstr(&h, longname);
		else if (k == SENDER_UTF8)
			hstr(&h, "b\xc0\xaf");
		else if (k == SENDER_CTRL)
			hstr(&h, "b\n");
		else if (k == BIN_NAME) {
			msgpack_pack_bin(&h.pk, 1);
			msgpack_pack_bin_body(&h.pk, "b", 1);
		} else
			hstr(&h, "b");
		if (k == SEQ_NEG)
			msgpack_pack_int64(&h.pk, -1);
		else
			msgpack_pack_uint64(&h.pk, 1);
		if (k == PING_REQ_NO_ADDR)
			hstr(&h, "c");
		if (k == TOO_MANY)
			for (int i = 0; i < 12; i++)
				msgpack_pack_nil(&h.pk);
		if (k == LIST_MAP) {
			msgpack_pack_map(&h.pk, 0);
		} else if (k == LIST_LONG) {
			msgpack_pack_array(&h.pk, MEMB_GOSSIP_MAX + 1);
			for (int i = 0; i < MEMB_GOSSIP_MAX + 1; i++)
				hitem(&h, 0, "c", 1, "10.0.0.3:1", "");
		} else {
			msgpack_pack_array(&h.pk, 2);
			hitem(&h, 0, "c", 1, "10.0.0.3:1", ""); /* one good item first */
			switch (k) {
			case ITEM_SHORT:
				msgpack_pack_array(&h.pk, 4);
				msgpack_pack_uint64(&h.pk, 0);
				hstr(&h, "d");
				msgpack_pack_uint64(&h.pk, 1);
				hstr(&h, "10.0.0.4:1");
				break;
			case ITEM_LONG:
				msgpack_pack_array(&h.pk, 9);
				msgpack_pack_uint64(&h.pk, 0);
				hstr(&h, "d");
				msgpack_pack_uint64(&h.pk, 1);
				hstr(&h, "10.0.0.4:1");
				hstr(&h, "");
				for (int i = 0; i < 4; i++)
					msgpack_pack_nil(&h.pk);
				break;
			case STATE_4: hitem(&h, 4, "d", 1, "10.0.0.4:1", ""); break;
			case INC_HUGE: hitem(&h, 0, "d", UINT64_C(1) << 63, "10.0.0.4:1", ""); break;
			case NAME_LONG: hitem(&h, 0, longname, 1, "10.0.0.4:1", ""); break;
			case ADDR_LONG: hitem(&h, 0, "d", 1, longaddr, ""); break;
			case ADDR_EMPTY: hitem(&h, 0, "d", 1, "", ""); break;
			case ADDR_SPACE: hitem(&h, 0, "d", 1, "10.0.0.4 :1", ""); break;
			case CADDR_INT:
				msgpack_pack_array(&h.pk, 5);
				msgpack_pack_uint64(&h.pk, 0);
				hstr(&h, "d");
				msgpack_pack_uint64(&h.pk, 1);
				hstr(&h, "10.0.0.4:1");
				msgpack_pack_uint64(&h.pk, 1);
				break;
			default: hitem(&h, 0, "d", 1, "10.0.0.4:1", ""); break;
			}
		}
		deliver(m, &h, 1000);
		if (memb_bad(m) != bad + 1)
			printf("# case %d was accepted\n", k);
		EXPECT_BAD();
	}

	/* every strict prefix of a valid datagram */
	gossip_about(&h, MEMB_ALIVE, "x", 1);
	for (size_t len = 0; len < h.sb.size; len++) {
		memb_recv(m, "10.0.0.2:7946", (const uint8_t *)h.sb.data, len, 1000);
		EXPECT_BAD();
	}
	/* random bytes, and random corruptions of the valid datagram: never a
	 * crash, and at most MEMB_MAX members */
	uint64_t rng = 7;
	uint8_t buf[256];
	for (int i = 0; i < 20000; i++) {
		size_t len = srnd(&rng) % sizeof(buf);
		for (size_t j = 0; j < len; j++)
			buf[j] = (uint8_t)srnd(&rng);
		memb_recv(m, "10.0.0.2:7946", buf, len, 1000 + (uint64_t)i);
	}
	for (int i = 0; i < 20000; i++) {
		size_t len = h.sb.size;
		memcpy(buf, h.sb.data, len);
		for (int f = 0; f < 3; f++)
			buf[srnd(&rng) % len] = (uint8_t)srnd(&rng);
		memb_recv(m, "10.0.0.2:7946", buf, len, 30000 + (uint64_t)i);
		memb_tick(m, 30000 + (uint64_t)i);
	}
	msgpack_sbuffer_destroy(&h.sb);
	assert_true(memb_count(m) <= MEMB_MAX);
	assert_true(memb_bad(m) > bad + 20000);
	memb_free(m);
#undef EXPECT_BAD
}

/* ---- bounds ---- */

/* MEMB_MAX members at most (the rest refused and counted); a full state of
 * MEMB_MAX members with the longest names and addresses goes out in several
 * datagrams of at most MEMB_SYNC_MAX, and another node learns all of it. */
static void test_max(void **state)
{
	struct cap c;
	struct memb *m = lone(&c);
	char name[MEMB_NAME_MAX + 1], addr[MEMB_ADDR_MAX + 1];
	const int total = MEMB_MAX + 100;
	struct memb_stats st;

	for (int i = 0; i < total;) {
		struct hand h;
		hand_init(&h);
		int k = total - i < 40 ? total - i : 40;
		msgpack_pack_array(&h.pk, 5);
		msgpack_pack_uint64(&h.pk, 1);
		msgpack_pack_uint64(&h.pk, 6);
		hstr(&h, "b");
		msgpack_pack_uint64(&h.pk, 1);
		msgpack_pack_array(&h.pk, k);
		for (int j = 0; j < k; j++, i++) {
			snprintf(name, sizeof(name), "%0*d", MEMB_NAME_MAX, i);
			snprintf(addr, sizeof(addr), "%0*d", MEMB_ADDR_MAX, i);
			hitem(&h, 0, name, 1, addr, addr);
		}
		assert_true(h.sb.size <= MEMB_DGRAM_MAX);
		deliver(m, &h, 1000);
	}
	memb_stats(m, &st);
	assert_int_equal(st.bad, 0);
	assert_int_equal(memb_count(m), MEMB_MAX);
	assert_int_equal(st.refused, total - (MEMB_MAX - 1));
	for (size_t i = 1; i < memb_count(m); i++)
		assert_true(strcmp(memb_at(m, i - 1)->name, memb_at(m, i)->name) < 0);
	assert_null(memb_at(m, MEMB_MAX));
	const char **names = calloc(MEMB_MAX, sizeof(*names));
	assert_non_null(names);
	assert_int_equal(memb_live(m, names, MEMB_MAX), MEMB_MAX);
	assert_int_equal(memb_live(m, names, 10), 10);
	free(names);

	/* a SYNC from "b": the reply is the whole table, split */
	struct hand h;
	hand_init(&h);
	msgpack_pack_array(&h.pk, 5);
	msgpack_pack_uint64(&h.pk, 1);
	msgpack_pack_uint64(&h.pk, 4);
	hstr(&h, "b");
	msgpack_pack_uint64(&h.pk, 1);
	msgpack_pack_array(&h.pk, 0);
	c.keep_all = 1;
	deliver(m, &h, 1001);
	assert_true(c.nall > 20);
	struct cap c2;
	struct memb_cfg cfg;
	memb_cfg_defaults(&cfg);
	cfg.rng_seed = 43;
	memset(&c2, 0, sizeof(c2));
	struct memb *b = memb_new("b", "10.0.0.2:7946", "", 1, &cfg, &cap_ops, &c2);
	assert_non_null(b);
	size_t largest = 0;
	for (size_t i = 0; i < c.nall; i++) {
		assert_true(c.all_len[i] <= MEMB_SYNC_MAX);
		if (c.all_len[i] > largest)
			largest = c.all_len[i];
		memb_recv(b, "10.0.0.1:7946", c.all[i], c.all_len[i], 1001);
		free(c.all[i]);
	}
	printf("# full state of %d members with the longest names: %zu datagrams of at most "
	       "%zu bytes\n",
	       MEMB_MAX, c.nall, largest);
	free(c.all);
	free(c.all_len);
	memb_stats(b, &st);
	assert_int_equal(st.bad, 0);
	assert_int_equal(memb_count(b), MEMB_MAX); /* b, and all of a's but one */
	assert_int_equal(st.refused, 1);
	memb_free(b);
	memb_free(m);
}

/* memb_new refuses bad arguments; the accessors behave at the edges. */
static void test_api(void **state)
{
	struct cap c;
	struct memb_cfg cfg;
	char longname[MEMB_NAME_MAX + 2];
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	memb_cfg_defaults(&cfg);
	assert_int_equal(cfg.probe_interval_ms, 200);
	assert_int_equal(cfg.probe_timeout_ms, 80);
	assert_int_equal(cfg.suspicion_ms, 1000);
	assert_int_equal(cfg.indirect_k, 3);
	assert_int_equal(cfg.gossip_mult, 3);
	assert_int_equal(cfg.sync_interval_ms, 2000);
	assert_int_equal(cfg.dead_forget_ms, 60000);

	assert_null(memb_new(NULL, "h:1", "", 1, &cfg, &cap_ops, &c));
	assert_null(memb_new("", "h:1", "", 1, &cfg, &cap_ops, &c));
	assert_null(memb_new(longname, "h:1", "", 1, &cfg, &cap_ops, &c));
	assert_null(memb_new("a\x01", "h:1", "", 1, &cfg, &cap_ops, &c));
	assert_null(memb_new("a", "", "", 1, &cfg, &cap_ops, &c));
	assert_null(memb_new("a", "h 1", "", 1, &cfg, &cap_ops, &c));
	assert_null(memb_new("a", "h:1", "", UINT64_C(1) << 63, &cfg, &cap_ops, &c));
	assert_null(memb_new("a", "h:1", "", 1, &cfg, NULL, &c));
	struct memb_cfg bad = cfg;
	bad.probe_timeout_ms = bad.probe_interval_ms;
	assert_null(memb_new("a", "h:1", "", 1, &bad, &cap_ops, &c));
	memb_free(NULL);

	memset(&c, 0, sizeof(c));
	struct memb *m = memb_new("ä-node", "[::1]:7946", NULL, 1, NULL, &cap_ops, &c);
	assert_non_null(m);
	assert_int_equal(memb_count(m), 1);
	assert_string_equal(memb_self(m)->name, "ä-node");
	assert_string_equal(memb_self(m)->client_addr, "");
	assert_ptr_equal(memb_at(m, 0), memb_self(m));
	assert_null(memb_find(m, "nobody"));
	assert_null(memb_find(m, longname));
	const char *names[2];
	assert_int_equal(memb_live(m, names, 2), 1);
	/* alone: ticks send nothing but never crash */
	for (uint64_t t = 0; t < 10000; t += 50)
		memb_tick(m, t);
	assert_int_equal(c.n, 0);
	memb_join(m, "h:1", 10000);
	assert_int_equal(c.n, 1);
	memb_join(m, "bad addr", 10000);
	assert_int_equal(c.n, 1);
	memb_leave(m, 10001);
	assert_int_equal(memb_self(m)->state, MEMB_LEFT);
	assert_int_equal(memb_live(m, names, 2), 0);
	memb_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_api),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_refute),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_max),
		cmocka_unit_test(test_converge_3),
		cmocka_unit_test(test_converge_5),
		cmocka_unit_test(test_converge_10),
		cmocka_unit_test(test_crash_3_5),
		cmocka_unit_test(test_crash_10),
		cmocka_unit_test(test_slow_node),
		cmocka_unit_test(test_leave),
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_partition_heals),
		cmocka_unit_test(test_loss),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}

// SPDX-License-Identifier: MIT
/*
 * bench_query.c - the per-page fast paths, on one core.
 *
 *   gmem_state on random pages of a memory with scattered shared pages, vs
 *   the same loop reading a plain bitmap of our own (the floor: RNG, loop,
 *   one load). Target >= 50 M queries/s.
 *
 *   gmem_pin + gmem_unpin of one shared 4 KiB page, vs two uncontended
 *   pthread mutex lock/unlock pairs (the floor of two locked calls).
 *   Target >= 10 M pairs/s. Also, without target, the same on random
 *   shared pages.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define NSHARED 4096u

static volatile uint64_t sink;

struct q_ctx {
	struct gmem *g;
	const uint64_t *bitmap; /* baseline */
	uint64_t mask;          /* npages - 1 (npages a power of two) */
	uint64_t seed;
	const uint64_t *shared; /* offsets of shared pages (pin random) */
	pthread_mutex_t lock;   /* baseline of pin */
};

static uint64_t lib_query(void *p, uint64_t iters, int *err)
{
	struct q_ctx *x = p;
	uint64_t s = x->seed, sum = 0, t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++)
		sum += (uint64_t)gmem_state(x->g, (rng_next(&s) & x->mask) << 12);
	t0 = now_ns() - t0;
	x->seed = s;
	sink = sum;
	(void)err;
	return t0;
}

static uint64_t bare_query(void *p, uint64_t iters, int *err)
{
	struct q_ctx *x = p;
	uint64_t s = x->seed, sum = 0, t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		uint64_t pg = rng_next(&s) & x->mask;

		sum += (__atomic_load_n(&x->bitmap[pg >> 6], __ATOMIC_RELAXED) >> (pg & 63)) & 1;
	}
	t0 = now_ns() - t0;
	x->seed = s;
	sink = sum;
	(void)err;
	return t0;
}

static uint64_t lib_pin_one(void *p, uint64_t iters, int *err)
{
	struct q_ctx *x = p;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		int r = gmem_pin(x->g, 0, 4096);

		if (!r)
			r = gmem_unpin(x->g, 0, 4096);
		if (r) {
			*err = r;
			break;
		}
	}
	return now_ns() - t0;
}

static uint64_t lib_pin_random(void *p, uint64_t iters, int *err)
{
	struct q_ctx *x = p;
	uint64_t s = x->seed, t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		uint64_t off = x->shared[rng_next(&s) % NSHARED];
		int r = gmem_pin(x->g, off, 4096);

		if (!r)
			r = gmem_unpin(x->g, off, 4096);
		if (r) {
			*err = r;
			break;
		}
	}
	t0 = now_ns() - t0;
	x->seed = s;
	return t0;
}

static uint64_t bare_lock_pairs(void *p, uint64_t iters, int *err)
{
	struct q_ctx *x = p;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		pthread_mutex_lock(&x->lock);
		sink++;
		pthread_mutex_unlock(&x->lock);
		pthread_mutex_lock(&x->lock);
		sink--;
		pthread_mutex_unlock(&x->lock);
	}
	(void)err;
	return now_ns() - t0;
}

/* A memory of @size with NSHARED random single pages shared; fills @shared. */
static struct gmem *open_scattered(uint64_t size, uint64_t *shared)
{
	uint64_t seed = 0x853c49e6748fea9bull, npages = size >> 12;
	struct gmem *g;
	int r = 0;

	if (open_mem(GMEM_BACKEND_MEMFD, size, 0, &g))
		return NULL;
	for (unsigned k = 0; k < NSHARED && !r; k++) {
		shared[k] = (rng_next(&seed) % npages) << 12;
		r = gmem_convert(g, shared[k], 4096, GMEM_SHARED, NULL);
	}
	if (r) {
		out_fail("sharing %u scattered pages: %s (%s)", NSHARED, gmem_strerror(r),
			 gmem_last_error());
		gmem_close(g);
		return NULL;
	}
	return g;
}

static void query_size(uint64_t size, uint64_t *shared)
{
	uint64_t npages = size >> 12, *bm;
	struct pair_result r;
	struct q_ctx lib = { 0 }, bare = { 0 };
	char sz[32];

	out_section("gmem_state, %s memory (%u random pages shared), random pages",
		    fmt_size(size, sz, sizeof(sz)), NSHARED);
	lib.g = open_scattered(size, shared);
	if (!lib.g)
		return;
	bm = calloc(npages / 64, sizeof(*bm));
	if (!bm) {
		out_fail("no memory for the baseline bitmap");
		gmem_close(lib.g);
		return;
	}
	for (unsigned k = 0; k < NSHARED; k++)
		bm[shared[k] >> 18] |= 1ull << ((shared[k] >> 12) & 63);
	/* Check the two sides agree before timing them. */
	for (uint64_t pg = 0; pg < npages; pg += 7) {
		if (gmem_state(lib.g, pg << 12) != (int)((bm[pg >> 6] >> (pg & 63)) & 1)) {
			out_fail("gmem_state disagrees with the conversions at page %llu",
				 (unsigned long long)pg);
			goto out;
		}
	}
	bare.bitmap = bm;
	lib.mask = bare.mask = npages - 1;
	lib.seed = bare.seed = 0x9e3779b97f4a7c15ull;
	run_pair(&(struct side){ "library", lib_query, &lib },
		 &(struct side){ "baseline", bare_query, &bare }, &pair_defaults, &r);
	if (r.err) {
		out_fail("query: %s", gmem_strerror(r.err));
		goto out;
	}
	out_target("gmem_state rate", 1e3 / r.a_ns, "M/s", CMP_GE, 50,
		   "one core, random pages");
	out_pair("query", &r, 1, "ns", CMP_NONE, 0);
	out_row("baseline rate (plain bitmap)", 1e3 / r.b_ns, "M/s", NULL);
out:
	free(bm);
	gmem_close(lib.g);
}

int bench_query(void)
{
	uint64_t *shared = malloc(NSHARED * sizeof(*shared));
	struct q_ctx lib = { 0 }, bare = { 0 };
	struct pair_result r;
	int ret;

	if (!shared)
		return -ENOMEM;
	query_size(1 * GiB, shared);
	query_size(64 * GiB, shared);

	out_section("gmem_pin + gmem_unpin of 4 KiB, 1 GiB memory");
	lib.g = open_scattered(1 * GiB, shared);
	if (!lib.g)
		goto out;
	ret = gmem_convert(lib.g, 0, 4096, GMEM_SHARED, NULL);
	if (ret) {
		out_fail("sharing page 0: %s", gmem_strerror(ret));
		goto out_close;
	}
	pthread_mutex_init(&bare.lock, NULL);
	run_pair(&(struct side){ "library", lib_pin_one, &lib },
		 &(struct side){ "baseline", bare_lock_pairs, &bare }, &pair_defaults, &r);
	if (r.err) {
		out_fail("pin/unpin: %s (%s)", gmem_strerror(r.err), gmem_last_error());
	} else {
		out_target("pin+unpin rate, same page", 1e3 / r.a_ns, "M/s", CMP_GE, 10,
			   "one core");
		out_pair("pin+unpin (base: 2 mutex pairs)", &r, 1, "ns", CMP_NONE, 0);
	}
	lib.shared = shared;
	lib.seed = 0x1234567887654321ull;
	run_pair(&(struct side){ "library", lib_pin_random, &lib },
		 &(struct side){ "baseline", bare_lock_pairs, &bare }, &pair_defaults, &r);
	if (r.err) {
		out_fail("pin/unpin random: %s (%s)", gmem_strerror(r.err), gmem_last_error());
	} else {
		out_row("pin+unpin rate, random shared pages", 1e3 / r.a_ns, "M/s",
			"no target; 4096 candidate pages");
	}
	pthread_mutex_destroy(&bare.lock);
out_close:
	gmem_close(lib.g);
out:
	free(shared);
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * test_state.c - unit tests of the pure modules: the page-state machine
 * (state.c), the sparse pin table (pintab.c) and the direct-map model
 * (dmap.c). No syscalls: every answer is checked against a brute-force
 * recomputation from plain per-page arrays.
 *
 * Suites: state, pintab, dmap.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#include "dmap.h"
#include "pintab.h"
#include "state.h"

#define NREG    4u
#define NPAGES  (NREG * GM_REGION_PAGES)

/* splitmix64: a tiny deterministic generator, so failures reproduce. */
static uint64_t ts_rng = 0x5eed5eed5eedull;

static uint64_t ts_rand(void)
{
	uint64_t z = (ts_rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t ts_below(uint64_t n)
{
	return ts_rand() % n;
}

/* A random range inside [0, npages), biased to word/region boundaries,
 * where the bit tricks have their edge cases. */
static void ts_range(uint64_t npages, uint64_t *first, uint64_t *n)
{
	switch (ts_below(4)) {
	case 0: /* around a 64-page word boundary */
		*first = ts_below(npages / 64) * 64 + ts_below(3) - (ts_below(2) ? 1 : 0);
		*first = *first >= npages ? npages - 1 : *first;
		*n = 1 + ts_below(130);
		break;
	case 1: /* around a region boundary */
		*first = ts_below(npages / GM_REGION_PAGES) * GM_REGION_PAGES;
		*first = *first ? *first - ts_below(3) : 0;
		*n = 1 + ts_below(2 * GM_REGION_PAGES);
		break;
	case 2: /* whole regions */
		*first = ts_below(npages / GM_REGION_PAGES) * GM_REGION_PAGES;
		*n = GM_REGION_PAGES * (1 + ts_below(2));
		break;
	default:
		*first = ts_below(npages);
		*n = 1 + ts_below(npages);
		break;
	}
	if (*first + *n > npages)
		*n = npages - *first;
}

/* ---------------------------------------------------------------------------
 * Reference model of gm_state: one byte per page, everything recomputed.
 */
struct ref {
	uint8_t shared[NPAGES];
	uint32_t pins[NPAGES];
	uint32_t kmaps[NPAGES];
};

static uint64_t ref_count_other(const struct ref *r, uint64_t first, uint64_t n, int to)
{
	uint64_t c = 0;

	for (uint64_t p = first; p < first + n; p++)
		c += r->shared[p] != to;
	return c;
}

static uint64_t ref_runs(const struct ref *r)
{
	uint64_t runs = 1;

	for (uint64_t p = 1; p < NPAGES; p++)
		runs += r->shared[p] != r->shared[p - 1];
	return runs;
}

static unsigned ref_region_shared(const struct ref *r, uint64_t reg)
{
	unsigned c = 0;

	for (uint64_t p = reg * GM_REGION_PAGES; p < (reg + 1) * GM_REGION_PAGES; p++)
		c += r->shared[p];
	return c;
}

static bool ref_busy(const struct ref *r, uint64_t p)
{
	return r->pins[p] || r->kmaps[p];
}

/* Every derived field of @st against the reference. */
static void check_invariants(const struct gm_state *st, const struct ref *r)
{
	uint64_t nshared = 0, npinned = 0, nkmapped = 0, nmixed = 0;

	for (uint64_t p = 0; p < NPAGES; p++) {
		bool busy = (st->busy[p >> 6] >> (p & 63)) & 1;

		cr_assert_eq(gm_state_get(st, p), r->shared[p], "page %llu: state %d, want %d",
			     (unsigned long long)p, gm_state_get(st, p), r->shared[p]);
		cr_assert_eq(gm_state_pins(st, p), r->pins[p], "page %llu: pins %u, want %u",
			     (unsigned long long)p, gm_state_pins(st, p), r->pins[p]);
		cr_assert_eq(busy, ref_busy(r, p), "page %llu: busy bit %d, want %d",
			     (unsigned long long)p, busy, ref_busy(r, p));
		nshared += r->shared[p];
		npinned += r->pins[p] != 0;
		nkmapped += r->kmaps[p] != 0;
	}
	for (uint64_t reg = 0; reg < NREG; reg++) {
		unsigned want = ref_region_shared(r, reg), nbusy = 0;

		for (uint64_t p = reg * GM_REGION_PAGES; p < (reg + 1) * GM_REGION_PAGES; p++)
			nbusy += ref_busy(r, p);
		cr_assert_eq(st->regions[reg].nshared, want, "region %llu: nshared %u, want %u",
			     (unsigned long long)reg, st->regions[reg].nshared, want);
		cr_assert_eq(st->regions[reg].nbusy, nbusy, "region %llu: nbusy %u, want %u",
			     (unsigned long long)reg, st->regions[reg].nbusy, nbusy);
		nmixed += want && want < GM_REGION_PAGES;
	}
	cr_assert_eq(st->nshared, nshared, "nshared %llu, want %llu",
		     (unsigned long long)st->nshared, (unsigned long long)nshared);
	cr_assert_eq(st->npinned, npinned, "npinned %llu, want %llu",
		     (unsigned long long)st->npinned, (unsigned long long)npinned);
	cr_assert_eq(st->nkmapped, nkmapped, "nkmapped %llu, want %llu",
		     (unsigned long long)st->nkmapped, (unsigned long long)nkmapped);
	cr_assert_eq(st->nmixed, nmixed, "nmixed %llu, want %llu",
		     (unsigned long long)st->nmixed, (unsigned long long)nmixed);
	cr_assert_eq(st->edges + 1, ref_runs(r), "edges %llu + 1, want %llu runs",
		     (unsigned long long)st->edges, (unsigned long long)ref_runs(r));
}

static void ref_init(struct ref *r, int shared)
{
	memset(r, 0, sizeof(*r));
	memset(r->shared, shared, sizeof(r->shared));
}

static void ref_set(struct ref *r, uint64_t first, uint64_t n, int to)
{
	memset(r->shared + first, to, n);
}

/* Set [first, first + n) in both the state and the reference. */
static void both_set(struct gm_state *st, struct ref *r, uint64_t first, uint64_t n, int to)
{
	uint64_t want = ref_count_other(r, first, n, to);
	uint64_t got = gm_state_set(st, first, n, to, NULL, NULL);

	cr_assert_eq(got, want, "set [%llu, +%llu) to %d: %llu changed, want %llu",
		     (unsigned long long)first, (unsigned long long)n, to,
		     (unsigned long long)got, (unsigned long long)want);
	ref_set(r, first, n, to);
}

Test(state, init_private)
{
	static struct ref r;
	struct gm_state st;

	cr_assert_eq(gm_state_init(&st, NPAGES, false), 0);
	ref_init(&r, 0);
	check_invariants(&st, &r);
	cr_assert_eq(gm_state_count_other(&st, 0, NPAGES, 1), NPAGES);
	cr_assert_eq(gm_state_count_other(&st, 0, NPAGES, 0), 0);
	cr_assert_eq(gm_state_runs_after(&st, 0, NPAGES, 1), 1);
	cr_assert_eq(gm_state_runs_after(&st, 7, 1, 1), 3);
	gm_state_fini(&st);
}

Test(state, init_shared)
{
	static struct ref r;
	struct gm_state st;
	uint64_t s = ~0ull, l = ~0ull;

	cr_assert_eq(gm_state_init(&st, NPAGES, true), 0);
	ref_init(&r, 1);
	check_invariants(&st, &r);
	cr_assert_eq(gm_state_count_other(&st, 0, NPAGES, 0), NPAGES);
	cr_assert(gm_state_next_run(&st, 0, NPAGES, 1, &s, &l));
	cr_assert(s == 0 && l == NPAGES, "run %llu+%llu, want 0+%u", (unsigned long long)s,
		  (unsigned long long)l, NPAGES);
	cr_assert_not(gm_state_next_run(&st, 0, NPAGES, 0, &s, &l));
	/* Runs after privatising the last page: the end has no right neighbour. */
	cr_assert_eq(gm_state_runs_after(&st, NPAGES - 1, 1, 0), 2);
	cr_assert_eq(gm_state_runs_after(&st, 0, 1, 0), 2);
	gm_state_fini(&st);
}

Test(state, count_other_matches_brute_force)
{
	static struct ref r;
	struct gm_state st;

	ts_rng = 1;
	cr_assert_eq(gm_state_init(&st, NPAGES, false), 0);
	ref_init(&r, 0);
	for (int i = 0; i < 2000; i++) {
		uint64_t f, n;
		int to = (int)ts_below(2);

		ts_range(NPAGES, &f, &n);
		both_set(&st, &r, f, n, to);
		ts_range(NPAGES, &f, &n);
		for (int t = 0; t < 2; t++) {
			uint64_t got = gm_state_count_other(&st, f, n, t);
			uint64_t want = ref_count_other(&r, f, n, t);

			cr_assert_eq(got, want, "iter %d count_other(%llu, %llu, %d) = %llu, want %llu",
				     i, (unsigned long long)f, (unsigned long long)n, t,
				     (unsigned long long)got, (unsigned long long)want);
		}
	}
	check_invariants(&st, &r);
	gm_state_fini(&st);
}

Test(state, next_run_across_word_and_region_boundaries)
{
	struct gm_state st;
	uint64_t s, l;

	cr_assert_eq(gm_state_init(&st, NPAGES, false), 0);
	/* Shared run [60, 1030): crosses words 0..16 and regions 0, 1, 2. */
	gm_state_set(&st, 60, 1030 - 60, 1, NULL, NULL);
	cr_assert(gm_state_next_run(&st, 0, NPAGES, 1, &s, &l));
	cr_assert(s == 60 && l == 970, "shared run %llu+%llu, want 60+970",
		  (unsigned long long)s, (unsigned long long)l);
	/* Clipped to the range on both sides. */
	cr_assert(gm_state_next_run(&st, 100, 412, 1, &s, &l));
	cr_assert(s == 100 && l == 412, "clipped run %llu+%llu, want 100+412",
		  (unsigned long long)s, (unsigned long long)l);
	/* Private runs on either side, the second crossing regions 2 and 3. */
	cr_assert(gm_state_next_run(&st, 0, NPAGES, 0, &s, &l));
	cr_assert(s == 0 && l == 60, "private run %llu+%llu, want 0+60",
		  (unsigned long long)s, (unsigned long long)l);
	cr_assert(gm_state_next_run(&st, 61, NPAGES - 61, 0, &s, &l));
	cr_assert(s == 1030 && l == NPAGES - 1030, "private run %llu+%llu, want 1030+%u",
		  (unsigned long long)s, (unsigned long long)l, NPAGES - 1030);
	/* Whole-region skip: region 1 is uniformly shared, look for private. */
	cr_assert_not(gm_state_next_run(&st, 512, 512, 0, &s, &l));
	/* Single pages at word ends: 63, 64, 511, 512 (region boundary). */
	gm_state_set(&st, 0, NPAGES, 0, NULL, NULL);
	gm_state_set(&st, 63, 2, 1, NULL, NULL);
	gm_state_set(&st, 511, 2, 1, NULL, NULL);
	cr_assert(gm_state_next_run(&st, 0, NPAGES, 1, &s, &l));
	cr_assert(s == 63 && l == 2, "run %llu+%llu, want 63+2", (unsigned long long)s,
		  (unsigned long long)l);
	cr_assert(gm_state_next_run(&st, 65, NPAGES - 65, 1, &s, &l));
	cr_assert(s == 511 && l == 2, "run %llu+%llu, want 511+2", (unsigned long long)s,
		  (unsigned long long)l);
	cr_assert_not(gm_state_next_run(&st, 513, NPAGES - 513, 1, &s, &l));
	gm_state_fini(&st);
}

/* next_run against a scan of the reference, over random states. */
Test(state, next_run_matches_brute_force)
{
	static struct ref r;
	struct gm_state st;

	ts_rng = 2;
	cr_assert_eq(gm_state_init(&st, NPAGES, true), 0);
	ref_init(&r, 1);
	for (int i = 0; i < 3000; i++) {
		uint64_t f, n, s = 0, l = 0, ws, wl = 0;
		int want = (int)ts_below(2);
		bool got, exp;

		ts_range(NPAGES, &f, &n);
		both_set(&st, &r, f, n, (int)ts_below(2));
		ts_range(NPAGES, &f, &n);
		for (ws = f; ws < f + n && r.shared[ws] != want; ws++)
			;
		exp = ws < f + n;
		while (exp && ws + wl < f + n && r.shared[ws + wl] == want)
			wl++;
		got = gm_state_next_run(&st, f, n, want, &s, &l);
		cr_assert_eq(got, exp, "iter %d next_run(%llu, %llu, %d) found %d, want %d", i,
			     (unsigned long long)f, (unsigned long long)n, want, got, exp);
		if (exp)
			cr_assert(s == ws && l == wl,
				  "iter %d next_run(%llu, %llu, %d) = %llu+%llu, want %llu+%llu", i,
				  (unsigned long long)f, (unsigned long long)n, want,
				  (unsigned long long)s, (unsigned long long)l,
				  (unsigned long long)ws, (unsigned long long)wl);
	}
	gm_state_fini(&st);
}

Test(state, runs_after_matches_brute_force)
{
	static struct ref r, tmp;
	struct gm_state st;

	ts_rng = 3;
	cr_assert_eq(gm_state_init(&st, NPAGES, false), 0);
	ref_init(&r, 0);
	for (int i = 0; i < 2000; i++) {
		uint64_t f, n, got, want;
		int to = (int)ts_below(2);

		ts_range(NPAGES, &f, &n);
		/* Also hit the very first and last pages, which lack a neighbour. */
		if (i % 50 == 0)
			f = ts_below(2) ? 0 : NPAGES - n;
		tmp = r;
		ref_set(&tmp, f, n, to);
		want = ref_runs(&tmp);
		got = gm_state_runs_after(&st, f, n, to);
		cr_assert_eq(got, want, "iter %d runs_after(%llu, %llu, %d) = %llu, want %llu", i,
			     (unsigned long long)f, (unsigned long long)n, to,
			     (unsigned long long)got, (unsigned long long)want);
		if (ts_below(2))
			both_set(&st, &r, f, n, to);
		cr_assert_eq(st.edges + 1, ref_runs(&r), "iter %d: edges %llu + 1, want %llu", i,
			     (unsigned long long)st.edges, (unsigned long long)ref_runs(&r));
	}
	check_invariants(&st, &r);
	gm_state_fini(&st);
}

/* Region callbacks: one per region whose count changed, with old and new. */
struct cb_log {
	unsigned calls;
	bool seen[NREG];
	unsigned old_n[NREG], new_n[NREG];
};

static void cb_record(void *ctx, uint64_t region, unsigned old_n, unsigned new_n)
{
	struct cb_log *log = ctx;

	cr_assert_lt(region, NREG, "callback for region %llu of %u",
		     (unsigned long long)region, NREG);
	cr_assert_not(log->seen[region], "two callbacks for region %llu",
		      (unsigned long long)region);
	log->seen[region] = true;
	log->old_n[region] = old_n;
	log->new_n[region] = new_n;
	log->calls++;
}

Test(state, set_reports_region_counts)
{
	static struct ref r;
	struct gm_state st;

	ts_rng = 4;
	cr_assert_eq(gm_state_init(&st, NPAGES, false), 0);
	ref_init(&r, 0);
	for (int i = 0; i < 2000; i++) {
		struct cb_log log = { 0 };
		unsigned before[NREG];
		uint64_t f, n, got, want;
		int to = (int)ts_below(2);

		ts_range(NPAGES, &f, &n);
		for (unsigned g = 0; g < NREG; g++)
			before[g] = ref_region_shared(&r, g);
		want = ref_count_other(&r, f, n, to);
		got = gm_state_set(&st, f, n, to, cb_record, &log);
		ref_set(&r, f, n, to);
		cr_assert_eq(got, want, "iter %d: %llu changed, want %llu", i,
			     (unsigned long long)got, (unsigned long long)want);
		for (unsigned g = 0; g < NREG; g++) {
			unsigned after = ref_region_shared(&r, g);

			cr_assert_eq(log.seen[g], before[g] != after,
				     "iter %d region %u: callback %d, counts %u -> %u", i, g,
				     log.seen[g], before[g], after);
			if (log.seen[g])
				cr_assert(log.old_n[g] == before[g] && log.new_n[g] == after,
					  "iter %d region %u: callback %u -> %u, want %u -> %u", i,
					  g, log.old_n[g], log.new_n[g], before[g], after);
		}
	}
	check_invariants(&st, &r);
	gm_state_fini(&st);
}

Test(state, nmixed_and_edges)
{
	static struct ref r;
	struct gm_state st;

	cr_assert_eq(gm_state_init(&st, NPAGES, false), 0);
	ref_init(&r, 0);
	both_set(&st, &r, 511, 2, 1);           /* regions 0 and 1 mixed */
	cr_assert_eq(st.nmixed, 2, "nmixed %llu, want 2", (unsigned long long)st.nmixed);
	cr_assert_eq(st.edges, 2, "edges %llu, want 2", (unsigned long long)st.edges);
	both_set(&st, &r, 0, 512, 1);           /* region 0 uniform shared */
	cr_assert_eq(st.nmixed, 1, "nmixed %llu, want 1", (unsigned long long)st.nmixed);
	cr_assert_eq(st.edges, 1, "edges %llu, want 1", (unsigned long long)st.edges);
	both_set(&st, &r, 512, 512, 1);         /* regions 0, 1 uniform shared */
	cr_assert_eq(st.nmixed, 0, "nmixed %llu, want 0", (unsigned long long)st.nmixed);
	both_set(&st, &r, NPAGES - 1, 1, 1);    /* last page alone: one edge */
	cr_assert_eq(st.edges, 2, "edges %llu, want 2", (unsigned long long)st.edges);
	check_invariants(&st, &r);
	/* Random sets keep both counts right. */
	ts_rng = 5;
	for (int i = 0; i < 500; i++) {
		uint64_t f, n;

		ts_range(NPAGES, &f, &n);
		both_set(&st, &r, f, n, (int)ts_below(2));
		if (i % 25 == 0)
			check_invariants(&st, &r);
	}
	check_invariants(&st, &r);
	gm_state_fini(&st);
}

Test(state, first_busy)
{
	static struct ref r;
	struct gm_state st;
	uint64_t p = ~0ull;

	cr_assert_eq(gm_state_init(&st, NPAGES, true), 0);
	ref_init(&r, 1);
	cr_assert_not(gm_state_first_busy(&st, 0, NPAGES, &p));
	cr_assert_eq(gm_state_pin(&st, 700, 1), 0);
	r.pins[700] = 1;
	cr_assert_eq(gm_state_kmap_get(&st, 1500), 0);
	r.kmaps[1500] = 1;
	cr_assert(gm_state_first_busy(&st, 0, NPAGES, &p));
	cr_assert_eq(p, 700, "first busy %llu, want 700", (unsigned long long)p);
	cr_assert(gm_state_first_busy(&st, 701, NPAGES - 701, &p));
	cr_assert_eq(p, 1500, "first busy %llu, want 1500", (unsigned long long)p);
	cr_assert_not(gm_state_first_busy(&st, 0, 700, &p));
	cr_assert_not(gm_state_first_busy(&st, 701, 799, &p));
	cr_assert(gm_state_first_busy(&st, 1500, 1, &p) && p == 1500);
	check_invariants(&st, &r);
	gm_state_unpin(&st, 700, 1);
	r.pins[700] = 0;
	cr_assert(gm_state_first_busy(&st, 0, NPAGES, &p));
	cr_assert_eq(p, 1500, "first busy %llu, want 1500", (unsigned long long)p);
	gm_state_kmap_put(&st, 1500);
	r.kmaps[1500] = 0;
	cr_assert_not(gm_state_first_busy(&st, 0, NPAGES, &p));
	check_invariants(&st, &r);
	gm_state_fini(&st);
}

Test(state, pins_nest_and_share_busy_bit_with_kmaps)
{
	static struct ref r;
	struct gm_state st;
	uint64_t p;

	cr_assert_eq(gm_state_init(&st, NPAGES, true), 0);
	ref_init(&r, 1);
	/* Pins over a word and region boundary, twice over the middle. */
	cr_assert_eq(gm_state_pin(&st, 500, 30), 0);
	cr_assert_eq(gm_state_pin(&st, 510, 5), 0);
	for (uint64_t i = 500; i < 530; i++)
		r.pins[i]++;
	for (uint64_t i = 510; i < 515; i++)
		r.pins[i]++;
	check_invariants(&st, &r);
	cr_assert_eq(gm_state_pins(&st, 512), 2, "pins %u, want 2", gm_state_pins(&st, 512));
	/* A kmap on a pinned page: still one busy bit, counted once. */
	cr_assert_eq(gm_state_kmap_get(&st, 512), 0);
	cr_assert_eq(gm_state_kmap_get(&st, 512), 0);
	r.kmaps[512] = 2;
	check_invariants(&st, &r);
	cr_assert_not(gm_state_first_unpinned(&st, 500, 30, &p));
	cr_assert(gm_state_first_unpinned(&st, 499, 2, &p) && p == 499);
	cr_assert(gm_state_first_unpinned(&st, 520, 20, &p) && p == 530);
	/* Unpin the outer range: the inner one stays pinned. */
	gm_state_unpin(&st, 500, 30);
	for (uint64_t i = 500; i < 530; i++)
		r.pins[i]--;
	check_invariants(&st, &r);
	cr_assert_eq(gm_state_pins(&st, 512), 1, "pins %u, want 1", gm_state_pins(&st, 512));
	gm_state_unpin(&st, 510, 5);
	for (uint64_t i = 510; i < 515; i++)
		r.pins[i]--;
	/* Page 512 stays busy through its kmaps alone. */
	check_invariants(&st, &r);
	cr_assert(gm_state_first_busy(&st, 0, NPAGES, &p) && p == 512);
	gm_state_kmap_put(&st, 512);
	gm_state_kmap_put(&st, 512);
	r.kmaps[512] = 0;
	check_invariants(&st, &r);
	cr_assert_eq(st.counts.used, 0, "pin table holds %llu entries, want 0",
		     (unsigned long long)st.counts.used);
	gm_state_fini(&st);
}

/* kmaps work on private pages too (the hypervisor's path to them). */
Test(state, kmap_private_page)
{
	static struct ref r;
	struct gm_state st;

	cr_assert_eq(gm_state_init(&st, NPAGES, false), 0);
	ref_init(&r, 0);
	cr_assert_eq(gm_state_kmap_get(&st, 3), 0);
	r.kmaps[3] = 1;
	check_invariants(&st, &r);
	cr_assert_eq(gm_state_pins(&st, 3), 0);
	gm_state_kmap_put(&st, 3);
	r.kmaps[3] = 0;
	check_invariants(&st, &r);
	gm_state_fini(&st);
}

/* Everything at once, against the reference: sets, pins, kmaps. */
Test(state, random_ops_keep_invariants)
{
	static struct ref r;
	struct gm_state st;

	ts_rng = 6;
	cr_assert_eq(gm_state_init(&st, NPAGES, false), 0);
	ref_init(&r, 0);
	for (int i = 0; i < 20000; i++) {
		uint64_t f, n, p;

		ts_range(NPAGES, &f, &n);
		if (n > 16 && ts_below(2))
			n = 1 + ts_below(16);
		switch (ts_below(5)) {
		case 0: /* set, if allowed: to private needs no busy page */
		case 1: {
			int to = (int)ts_below(2);
			bool busy = false;

			for (p = f; p < f + n && to == 0; p++)
				busy |= ref_busy(&r, p);
			if (!busy)
				both_set(&st, &r, f, n, to);
			break;
		}
		case 2: /* pin, if all shared */
			if (ref_count_other(&r, f, n, 1) == 0) {
				cr_assert_eq(gm_state_pin(&st, f, n), 0);
				for (p = f; p < f + n; p++)
					r.pins[p]++;
			}
			break;
		case 3: { /* unpin, if all pinned */
			bool ok = true, got;
			uint64_t q = 0;

			for (p = f; p < f + n; p++)
				ok &= r.pins[p] != 0;
			got = !gm_state_first_unpinned(&st, f, n, &q);
			cr_assert_eq(got, ok, "iter %d first_unpinned(%llu, %llu): %d, want %d", i,
				     (unsigned long long)f, (unsigned long long)n, !got, !ok);
			if (ok) {
				gm_state_unpin(&st, f, n);
				for (p = f; p < f + n; p++)
					r.pins[p]--;
			}
			break;
		}
		default: /* kmap get or put */
			if (r.kmaps[f]) {
				gm_state_kmap_put(&st, f);
				r.kmaps[f]--;
			} else {
				cr_assert_eq(gm_state_kmap_get(&st, f), 0);
				r.kmaps[f]++;
			}
			break;
		}
		if (i % 1000 == 0)
			check_invariants(&st, &r);
	}
	check_invariants(&st, &r);
	gm_state_fini(&st);
}

Test(state, bytes_per_page)
{
	struct gm_state st;
	uint64_t npages = 1ull << 20; /* 4 GiB */

	cr_assert_eq(gm_state_init(&st, npages, false), 0);
	/* Design limit: <= 4 bits per page plus a constant per region. */
	cr_assert_leq(gm_state_bytes(&st), npages / 2 + st.nregions * 64,
		      "%llu bytes for %llu pages", (unsigned long long)gm_state_bytes(&st),
		      (unsigned long long)npages);
	gm_state_fini(&st);
}

/* ---------------------------------------------------------------------------
 * gm_pintab
 */

static void pt_check_present(struct gm_pintab *t, const uint64_t *keys, const bool *in,
			     unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct gm_pin_entry *e = gm_pintab_get(t, keys[i], 0);

		cr_assert_eq(e != NULL, in[i], "key %llu: found %d, want %d",
			     (unsigned long long)keys[i], e != NULL, in[i]);
		if (e)
			cr_assert_eq(e->pins, (uint32_t)i + 1, "key %llu: pins %u, want %u",
				     (unsigned long long)keys[i], e->pins, i + 1);
	}
}

static void pt_shuffle(unsigned *a, unsigned n)
{
	for (unsigned i = n - 1; i > 0; i--) {
		unsigned j = (unsigned)ts_below(i + 1), t = a[i];

		a[i] = a[j];
		a[j] = t;
	}
}

/* @n keys inserted and deleted in random orders; all others stay found. */
static void pt_random_round(uint64_t n_keys, uint64_t key_space)
{
	static uint64_t keys[4096];
	static bool in[4096];
	static unsigned order[4096];
	struct gm_pintab t;
	unsigned n = (unsigned)n_keys;

	cr_assert_eq(gm_pintab_init(&t), 0);
	for (unsigned i = 0; i < n; i++) {
		bool dup;

		/* Dense key spaces: take every key (long clusters, no sampling). */
		if (key_space <= 2 * n_keys) {
			keys[i] = i;
			dup = false;
		} else {
			do {
				keys[i] = ts_below(key_space);
				dup = false;
				for (unsigned j = 0; j < i; j++)
					dup |= keys[j] == keys[i];
			} while (dup);
		}
		in[i] = false;
		order[i] = i;
	}
	pt_shuffle(order, n);
	for (unsigned k = 0; k < n; k++) {
		unsigned i = order[k];
		struct gm_pin_entry *e;

		cr_assert_eq(gm_pintab_reserve(&t, 1), 0);
		e = gm_pintab_get(&t, keys[i], 1);
		cr_assert(e && e->pins == 0 && e->kmaps == 0, "new entry for %llu not zeroed",
			  (unsigned long long)keys[i]);
		e->pins = i + 1;
		in[i] = true;
	}
	cr_assert_eq(t.used, n, "used %llu, want %u", (unsigned long long)t.used, n);
	cr_assert_leq(t.used, (t.mask + 1) / 2, "load above one half: %llu of %llu",
		      (unsigned long long)t.used, (unsigned long long)(t.mask + 1));
	pt_check_present(&t, keys, in, n);
	pt_shuffle(order, n);
	for (unsigned k = 0; k < n; k++) {
		unsigned i = order[k];
		struct gm_pin_entry *e = gm_pintab_get(&t, keys[i], 0);

		cr_assert_not_null(e, "key %llu lost before its deletion",
				   (unsigned long long)keys[i]);
		e->pins = 0;
		gm_pintab_put(&t, e);
		in[i] = false;
		if (k % 7 == 0 || n < 64)
			pt_check_present(&t, keys, in, n);
	}
	cr_assert_eq(t.used, 0, "used %llu after deleting all", (unsigned long long)t.used);
	for (uint64_t s = 0; s <= t.mask; s++)
		cr_assert_eq(t.slots[s].key, 0, "slot %llu still holds key %llu",
			     (unsigned long long)s, (unsigned long long)t.slots[s].key);
	gm_pintab_fini(&t);
}

Test(pintab, random_insert_delete)
{
	ts_rng = 7;
	for (int round = 0; round < 20; round++)
		pt_random_round(1 + ts_below(40), 1000);        /* stays at 64 slots */
	for (int round = 0; round < 5; round++)
		pt_random_round(2000 + ts_below(2000), 1ull << 40); /* grows */
	/* Dense consecutive keys: long clusters. */
	pt_random_round(3000, 3001);
}

/* Home slot of @key in a table of the minimum size, found by inserting it
 * alone (the hash is private to pintab.c). */
static uint64_t pt_home(uint64_t key)
{
	struct gm_pintab t;
	struct gm_pin_entry *e;
	uint64_t slot;

	cr_assert_eq(gm_pintab_init(&t), 0);
	e = gm_pintab_get(&t, key, 1);
	slot = (uint64_t)(e - t.slots);
	gm_pintab_fini(&t);
	return slot;
}

/*
 * A cluster that wraps from the last slot to slot 0: deleting its head
 * must shift the wrapped entries back across the end of the table, and an
 * entry whose home lies after the hole must stay put.
 */
Test(pintab, wraparound_backward_shift)
{
	uint64_t at_last[3], at_zero = ~0ull, at_one = ~0ull;
	unsigned nlast = 0;
	struct gm_pintab t;
	struct gm_pin_entry *e;
	uint64_t mask;

	cr_assert_eq(gm_pintab_init(&t), 0);
	mask = t.mask;
	for (uint64_t k = 0; k < 100000 && (nlast < 3 || at_zero == ~0ull || at_one == ~0ull);
	     k++) {
		uint64_t h = pt_home(k);

		if (h == mask && nlast < 3)
			at_last[nlast++] = k;
		else if (h == 0 && at_zero == ~0ull)
			at_zero = k;
		else if (h == 1 && at_one == ~0ull)
			at_one = k;
	}
	cr_assert(nlast == 3 && at_zero != ~0ull && at_one != ~0ull,
		  "no keys with the wanted homes");
	/* Slots: last=a0, 0=a1, 1=a2, 2=z (home 0), 3=o (home 1). */
	cr_assert_eq(gm_pintab_reserve(&t, 5), 0);
	for (unsigned i = 0; i < 3; i++)
		gm_pintab_get(&t, at_last[i], 1)->pins = 1;
	gm_pintab_get(&t, at_zero, 1)->pins = 1;
	gm_pintab_get(&t, at_one, 1)->pins = 1;
	cr_assert_eq(t.mask, mask, "table grew: mask %llu, want %llu",
		     (unsigned long long)t.mask, (unsigned long long)mask);
	cr_assert_eq(t.slots[0].key, at_last[1] + 1, "slot 0 holds %llu, want %llu",
		     (unsigned long long)t.slots[0].key, (unsigned long long)at_last[1] + 1);
	cr_assert_eq(t.slots[2].key, at_zero + 1);
	cr_assert_eq(t.slots[3].key, at_one + 1);
	/* Delete the head at the last slot: a1 and a2 move back across the end,
	 * z moves to slot 1 (its home is 0, not in (hole, its slot]) and so on. */
	e = gm_pintab_get(&t, at_last[0], 0);
	cr_assert_eq((uint64_t)(e - t.slots), mask);
	e->pins = 0;
	gm_pintab_put(&t, e);
	cr_assert_eq(t.slots[mask].key, at_last[1] + 1, "last slot holds %llu, want %llu",
		     (unsigned long long)t.slots[mask].key, (unsigned long long)at_last[1] + 1);
	cr_assert_eq(t.slots[0].key, at_last[2] + 1, "slot 0 holds %llu, want %llu",
		     (unsigned long long)t.slots[0].key, (unsigned long long)at_last[2] + 1);
	cr_assert_eq(t.slots[1].key, at_zero + 1, "slot 1 holds %llu, want %llu",
		     (unsigned long long)t.slots[1].key, (unsigned long long)at_zero + 1);
	cr_assert_eq(t.slots[2].key, at_one + 1, "slot 2 holds %llu, want %llu",
		     (unsigned long long)t.slots[2].key, (unsigned long long)at_one + 1);
	cr_assert_eq(t.slots[3].key, 0, "slot 3 not emptied");
	/* Delete z from slot 1: o (home 1) moves into its home. */
	e = gm_pintab_get(&t, at_zero, 0);
	e->pins = 0;
	gm_pintab_put(&t, e);
	cr_assert_eq(t.slots[1].key, at_one + 1, "slot 1 holds %llu, want %llu",
		     (unsigned long long)t.slots[1].key, (unsigned long long)at_one + 1);
	for (unsigned i = 1; i < 3; i++)
		cr_assert_not_null(gm_pintab_get(&t, at_last[i], 0), "key %llu lost",
				   (unsigned long long)at_last[i]);
	cr_assert_not_null(gm_pintab_get(&t, at_one, 0), "key %llu lost",
			   (unsigned long long)at_one);
	cr_assert_null(gm_pintab_get(&t, at_zero, 0));
	cr_assert_null(gm_pintab_get(&t, at_last[0], 0));
	cr_assert_eq(t.used, 3, "used %llu, want 3", (unsigned long long)t.used);
	gm_pintab_fini(&t);
}

/* An entry with counts left is not dropped by put. */
Test(pintab, put_keeps_live_entry)
{
	struct gm_pintab t;
	struct gm_pin_entry *e;

	cr_assert_eq(gm_pintab_init(&t), 0);
	cr_assert_eq(gm_pintab_reserve(&t, 1), 0);
	e = gm_pintab_get(&t, 42, 1);
	e->kmaps = 1;
	gm_pintab_put(&t, e);
	cr_assert_not_null(gm_pintab_get(&t, 42, 0), "entry with a kmap was dropped");
	cr_assert_eq(t.used, 1);
	gm_pintab_fini(&t);
}

/* After reserve(k), k creating gets never move the table (pointers held by
 * the caller across them stay valid), and the load stays at most a half. */
Test(pintab, reserve)
{
	struct gm_pintab t;
	struct gm_pin_entry *slots;
	uint64_t cap;

	cr_assert_eq(gm_pintab_init(&t), 0);
	for (uint64_t k = 1; k <= 1000; k *= 3) {
		uint64_t base = t.used;

		cr_assert_eq(gm_pintab_reserve(&t, k), 0);
		cr_assert_leq(t.used + k, (t.mask + 1) / 2, "reserve(%llu): %llu + %llu of %llu",
			      (unsigned long long)k, (unsigned long long)t.used,
			      (unsigned long long)k, (unsigned long long)(t.mask + 1));
		slots = t.slots;
		for (uint64_t i = 0; i < k; i++)
			gm_pintab_get(&t, 1000000 * k + i, 1)->pins = 1;
		cr_assert_eq(t.slots, slots, "table moved within a reservation of %llu",
			     (unsigned long long)k);
		cr_assert_eq(t.used, base + k);
	}
	/* Reserving what fits is free; an absurd reservation fails cleanly. */
	cap = t.mask + 1;
	slots = t.slots;
	cr_assert_eq(gm_pintab_reserve(&t, 0), 0);
	cr_assert_eq(gm_pintab_reserve(&t, UINT64_MAX / 2), -ENOMEM);
	cr_assert(t.slots == slots && t.mask + 1 == cap, "failed reserve changed the table");
	cr_assert_eq(gm_pintab_bytes(&t), cap * sizeof(struct gm_pin_entry));
	gm_pintab_fini(&t);
}

/* ---------------------------------------------------------------------------
 * gm_dmap
 */

#define C(d, f) ((unsigned long long)(d).c.f)

/* One conversion call in the 2 MiB model: a region from @o to @n shared. */
static void dm_region_call(struct gm_dmap *d, uint64_t r, unsigned o, unsigned n)
{
	gm_dmap_region(d, r, o, n);
	gm_dmap_call_end(d);
}

#define DM_EXPECT(d, field, want)                                                   \
	cr_assert_eq((d).c.field, (uint64_t)(want), #field " = %llu, want %llu", C(d, field), \
		     (unsigned long long)(want))

Test(dmap, huge_uniform_mixed_uniform)
{
	struct gm_dmap d;
	const unsigned full = GM_REGION_PAGES;

	/* 2 GiB opened shared: nothing removed yet. */
	cr_assert_eq(gm_dmap_init(&d, 1024 * full, true, true), 0);
	DM_EXPECT(d, removed_2m, 0);
	DM_EXPECT(d, splits_1g, 0);
	/* Region 0: one page private -> mixed: 1 GiB split, 2 MiB split. */
	dm_region_call(&d, 0, full, full - 1);
	DM_EXPECT(d, splits_1g, 1);
	DM_EXPECT(d, splits_2m, 1);
	DM_EXPECT(d, removed_4k, 1);
	DM_EXPECT(d, flushes_batched, 1);
	DM_EXPECT(d, flushes_per_page, 1);
	/* More pages private, still mixed: no new split. */
	dm_region_call(&d, 0, full - 1, 10);
	DM_EXPECT(d, splits_2m, 1);
	DM_EXPECT(d, removed_4k, full - 10);
	DM_EXPECT(d, flushes_batched, 2);
	DM_EXPECT(d, flushes_per_page, full - 10);
	/* Back to uniformly shared: restored and merged, nothing removed. */
	dm_region_call(&d, 0, 10, full);
	DM_EXPECT(d, restored_4k, full - 10);
	DM_EXPECT(d, merges_2m, 1);
	DM_EXPECT(d, flushes_batched, 3);
	DM_EXPECT(d, flushes_per_page, full - 10);
	/* Mixed again, then uniformly private: split again, merge again. */
	dm_region_call(&d, 0, full, 100);
	DM_EXPECT(d, splits_2m, 2);
	dm_region_call(&d, 0, 100, 0);
	DM_EXPECT(d, merges_2m, 2);
	DM_EXPECT(d, removed_4k, full - 10 + full - 100 + 100);
	/* Uniform to uniform: whole 2 MiB entries, 1 GiB split only once. */
	dm_region_call(&d, 0, 0, full);
	DM_EXPECT(d, restored_2m, 1);
	dm_region_call(&d, 1, full, 0);
	DM_EXPECT(d, removed_2m, 1);
	DM_EXPECT(d, splits_1g, 1);
	/* A region in the second GiB splits the second 1 GiB entry, once. */
	dm_region_call(&d, 512, full, 0);
	dm_region_call(&d, 700, full, 3);
	DM_EXPECT(d, splits_1g, 2);
	DM_EXPECT(d, removed_2m, 2);
	/* Restoring costs no TLB flush. */
	{
		uint64_t fb = d.c.flushes_batched;

		dm_region_call(&d, 1, 0, full);
		DM_EXPECT(d, flushes_batched, fb);
	}
	gm_dmap_fini(&d);
}

Test(dmap, huge_opened_private)
{
	struct gm_dmap d;

	/* 3 GiB + one region: 4 GiB blocks, each 1 GiB parent split at open. */
	cr_assert_eq(gm_dmap_init(&d, (3 * 512 + 1) * GM_REGION_PAGES, true, false), 0);
	DM_EXPECT(d, removed_2m, 3 * 512 + 1);
	DM_EXPECT(d, splits_1g, 4);
	DM_EXPECT(d, flushes_batched, 1);
	/* Mixing a region splits its 2 MiB entry, never the 1 GiB one again. */
	dm_region_call(&d, 5, 0, 1);
	DM_EXPECT(d, splits_1g, 4);
	DM_EXPECT(d, splits_2m, 1);
	DM_EXPECT(d, restored_4k, 1);
	gm_dmap_fini(&d);
}

Test(dmap, small_opened_shared_splits_once)
{
	struct gm_dmap d;

	cr_assert_eq(gm_dmap_init(&d, NPAGES, false, true), 0);
	DM_EXPECT(d, splits_2m, 0);
	/* First privatisation of pages 60..69 (crosses a word): 10 splits. */
	gm_dmap_pages(&d, 60, 10, 0, 10);
	gm_dmap_call_end(&d);
	DM_EXPECT(d, splits_2m, 10);
	DM_EXPECT(d, splits_1g, 10);
	DM_EXPECT(d, removed_4k, 10);
	DM_EXPECT(d, flushes_batched, 1);
	DM_EXPECT(d, flushes_per_page, 10);
	/* Shared again: restored, never merged, no flush. */
	gm_dmap_pages(&d, 60, 10, 1, 10);
	gm_dmap_call_end(&d);
	DM_EXPECT(d, restored_4k, 10);
	DM_EXPECT(d, merges_2m, 0);
	DM_EXPECT(d, flushes_batched, 1);
	/* Second privatisation: entries already split. Overlap adds 5 new. */
	gm_dmap_pages(&d, 55, 15, 0, 15);
	gm_dmap_call_end(&d);
	DM_EXPECT(d, splits_2m, 15);
	DM_EXPECT(d, splits_1g, 15);
	DM_EXPECT(d, removed_4k, 25);
	DM_EXPECT(d, flushes_batched, 2);
	DM_EXPECT(d, flushes_per_page, 25);
	/* A call that changes nothing costs nothing. */
	gm_dmap_pages(&d, 0, 100, 0, 0);
	gm_dmap_call_end(&d);
	DM_EXPECT(d, flushes_batched, 2);
	gm_dmap_fini(&d);
}

Test(dmap, small_opened_private)
{
	struct gm_dmap d;

	cr_assert_eq(gm_dmap_init(&d, NPAGES, false, false), 0);
	DM_EXPECT(d, removed_4k, NPAGES);
	DM_EXPECT(d, splits_2m, NPAGES);
	DM_EXPECT(d, splits_1g, NPAGES);
	gm_dmap_pages(&d, 0, 64, 1, 64);
	gm_dmap_pages(&d, 0, 64, 0, 64);
	gm_dmap_call_end(&d);
	DM_EXPECT(d, splits_2m, NPAGES);
	DM_EXPECT(d, removed_4k, NPAGES + 64);
	cr_assert_eq(gm_dmap_bytes(&d, NPAGES), 0);
	gm_dmap_fini(&d);
}

/* Batched: one flush per call; per page: one per page removed. */
Test(dmap, batched_vs_per_page_flushes)
{
	struct gm_dmap d;

	cr_assert_eq(gm_dmap_init(&d, NPAGES, false, true), 0);
	for (uint64_t i = 0; i < 8; i++) {
		gm_dmap_pages(&d, i * 100, 100, 0, 100);
		gm_dmap_call_end(&d);
	}
	DM_EXPECT(d, flushes_batched, 8);
	DM_EXPECT(d, flushes_per_page, 800);
	gm_dmap_fini(&d);

	/* 2 MiB model: a call over four regions is still one flush. */
	cr_assert_eq(gm_dmap_init(&d, NPAGES, true, true), 0);
	for (uint64_t r = 0; r < NREG; r++)
		gm_dmap_region(&d, r, GM_REGION_PAGES, 0);
	gm_dmap_call_end(&d);
	DM_EXPECT(d, flushes_batched, 1);
	DM_EXPECT(d, flushes_per_page, NPAGES);
	DM_EXPECT(d, removed_2m, NREG);
	gm_dmap_fini(&d);
}

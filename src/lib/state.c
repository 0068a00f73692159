// SPDX-License-Identifier: MIT
/*
 * state.c - the page-state machine (see state.h).
 *
 * Model: guest memory is npages 4 KiB pages grouped in 2 MiB regions of 512.
 * Each page has a shared bit (1 = shared) and a busy bit (pinned or
 * temporarily mapped); pin and kmap counts live in a sparse table for busy
 * pages only. Each region keeps its shared and busy counts, so whole-region
 * questions ("uniform?", "any busy page?") are O(1) and a range covering
 * whole regions is processed a region at a time, never a page at a time.
 * That keeps metadata at 2 bits per page plus 4 bytes per region.
 *
 * The shared bitmap is read without the lock by gm_state_get(), so its words
 * are loaded and stored atomically (relaxed: a reader racing a conversion may
 * see either side of it, which is all the API promises). Everything else is
 * protected by the caller's lock.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <gmem.h>

#include "state.h"

static inline uint64_t gm_ld(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void gm_st(uint64_t *p, uint64_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline uint64_t gm_min(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* Mask of bits [off, off + take) of a word; take in 1..64. */
static inline uint64_t gm_word_mask(unsigned off, unsigned take)
{
	return (take == 64 ? ~0ull : ((1ull << take) - 1)) << off;
}

static inline bool gm_region_uniform(const struct gm_region *r)
{
	return r->nshared == 0 || r->nshared == GM_REGION_PAGES;
}

int gm_state_init(struct gm_state *st, uint64_t npages, bool init_shared)
{
	/* One spare word so edge counting may peek one word past the end. */
	uint64_t words = npages / 64 + 1;
	int ret = -ENOMEM;

	assert(npages && npages % GM_REGION_PAGES == 0);
	memset(st, 0, sizeof(*st));
	st->npages = npages;
	st->nregions = npages / GM_REGION_PAGES;
	/* calloc of large sizes is fresh zero pages: opening 1 TiB touches none. */
	st->shared = calloc(words, sizeof(uint64_t));
	if (!st->shared)
		goto err;
	st->busy = calloc(words, sizeof(uint64_t));
	if (!st->busy)
		goto err_shared;
	st->regions = calloc(st->nregions, sizeof(*st->regions));
	if (!st->regions)
		goto err_busy;
	ret = gm_pintab_init(&st->counts);
	if (ret)
		goto err_regions;
	if (init_shared) {
		memset(st->shared, 0xff, (npages / 64) * sizeof(uint64_t));
		for (uint64_t r = 0; r < st->nregions; r++)
			st->regions[r].nshared = GM_REGION_PAGES;
		st->nshared = npages;
	}
	return 0;

err_regions:
	free(st->regions);
err_busy:
	free(st->busy);
err_shared:
	free(st->shared);
err:
	return ret;
}

void gm_state_fini(struct gm_state *st)
{
	gm_pintab_fini(&st->counts);
	free(st->regions);
	free(st->busy);
	free(st->shared);
	memset(st, 0, sizeof(*st));
}

uint64_t gm_state_count_other(const struct gm_state *st, uint64_t first, uint64_t n,
			      int to)
{
	uint64_t pos = first, end = first + n, cnt = 0;

	while (pos < end) {
		uint64_t r = pos / GM_REGION_PAGES;
		const struct gm_region *reg = &st->regions[r];

		if (pos % GM_REGION_PAGES == 0 && end - pos >= GM_REGION_PAGES) {
			cnt += to ? GM_REGION_PAGES - reg->nshared : reg->nshared;
			pos += GM_REGION_PAGES;
			continue;
		}
		unsigned off = pos & 63, take = (unsigned)gm_min(64 - off, end - pos);
		uint64_t w = gm_ld(&st->shared[pos >> 6]);

		cnt += (uint64_t)__builtin_popcountll((to ? ~w : w) & gm_word_mask(off, take));
		pos += take;
	}
	return cnt;
}

/*
 * First page in [pos, end) whose bit in @map equals @val. @skip(region)
 * says a whole region surely holds no such page, so it is stepped over.
 */
static uint64_t gm_find(const struct gm_state *st, const uint64_t *map, uint64_t pos,
			uint64_t end, int val, bool (*skip)(const struct gm_region *, int))
{
	while (pos < end) {
		if (pos % GM_REGION_PAGES == 0 &&
		    skip(&st->regions[pos / GM_REGION_PAGES], val)) {
			pos += GM_REGION_PAGES;
			continue;
		}
		unsigned off = pos & 63, take = (unsigned)gm_min(64 - off, end - pos);
		uint64_t w = gm_ld(&map[pos >> 6]);
		uint64_t hit = (val ? w : ~w) & gm_word_mask(off, take);

		if (hit)
			return (pos & ~63ull) + (uint64_t)__builtin_ctzll(hit);
		pos += take;
	}
	return end;
}

static bool gm_skip_shared(const struct gm_region *r, int val)
{
	return r->nshared == (val ? 0 : GM_REGION_PAGES);
}

static bool gm_skip_busy(const struct gm_region *r, int val)
{
	return val ? r->nbusy == 0 : r->nbusy == GM_REGION_PAGES;
}

bool gm_state_next_run(const struct gm_state *st, uint64_t first, uint64_t n, int want,
		       uint64_t *start, uint64_t *len)
{
	uint64_t end = first + n;
	uint64_t s = gm_find(st, st->shared, first, end, want, gm_skip_shared);

	if (s == end)
		return false;
	*start = s;
	*len = gm_find(st, st->shared, s, end, !want, gm_skip_shared) - s;
	return true;
}

bool gm_state_first_busy(const struct gm_state *st, uint64_t first, uint64_t n,
			 uint64_t *page)
{
	uint64_t end = first + n, p;

	if (!st->npinned && !st->nkmapped)
		return false;
	p = gm_find(st, st->busy, first, end, 1, gm_skip_busy);
	if (p == end)
		return false;
	*page = p;
	return true;
}

/* Edges i in [lo, hi) with state(i) != state(i + 1); needs hi < npages.
 * A uniform region wholly inside the range has no inner edge, so only the
 * edge to the next region is looked at: O(regions), not O(pages). */
static uint64_t gm_count_edges(const struct gm_state *st, uint64_t lo, uint64_t hi)
{
	uint64_t cnt = 0;

	while (lo < hi) {
		const struct gm_region *reg = &st->regions[lo / GM_REGION_PAGES];
		uint64_t next = lo + GM_REGION_PAGES;

		if (lo % GM_REGION_PAGES == 0 && hi >= next && gm_region_uniform(reg)) {
			/* Edge next - 1 lies in the range and next < npages. */
			cnt += (reg->nshared != 0) != gm_state_get(st, next);
			lo = next;
			continue;
		}
		uint64_t wi = lo >> 6;
		unsigned off = lo & 63, take = (unsigned)gm_min(64 - off, hi - lo);
		uint64_t cur = gm_ld(&st->shared[wi]);
		uint64_t succ = (cur >> 1) | (gm_ld(&st->shared[wi + 1]) << 63);

		cnt += (uint64_t)__builtin_popcountll((cur ^ succ) & gm_word_mask(off, take));
		lo += take;
	}
	return cnt;
}

/* Change in st->edges if [first, first + n) were set to @to. */
static int64_t gm_edges_delta(const struct gm_state *st, uint64_t first, uint64_t n, int to)
{
	uint64_t last = first + n - 1, lo = first ? first - 1 : first;
	uint64_t hi = last + 1 < st->npages ? last + 1 : last;
	int64_t after = 0;

	if (first)
		after += gm_state_get(st, first - 1) != to;
	if (last + 1 < st->npages)
		after += gm_state_get(st, last + 1) != to;
	return after - (int64_t)gm_count_edges(st, lo, hi);
}

uint64_t gm_state_runs_after(const struct gm_state *st, uint64_t first, uint64_t n, int to)
{
	return (uint64_t)((int64_t)st->edges + gm_edges_delta(st, first, n, to)) + 1;
}

/* Set pages [pos, pos + take) of one region to @to; returns pages changed.
 * A whole region is filled without looking at its words: its count says how
 * many pages change. */
static unsigned gm_region_set(struct gm_state *st, uint64_t pos, uint64_t take, int to)
{
	unsigned changed = 0;
	uint64_t end = pos + take;

	if (take == GM_REGION_PAGES) {
		unsigned old = st->regions[pos / GM_REGION_PAGES].nshared;

		for (unsigned i = 0; i < GM_REGION_WORDS; i++)
			gm_st(&st->shared[(pos >> 6) + i], to ? ~0ull : 0);
		return to ? GM_REGION_PAGES - old : old;
	}
	while (pos < end) {
		unsigned off = pos & 63, t = (unsigned)gm_min(64 - off, end - pos);
		uint64_t *wp = &st->shared[pos >> 6], w = gm_ld(wp);
		uint64_t m = gm_word_mask(off, t);
		uint64_t nw = to ? (w | m) : (w & ~m);

		changed += (unsigned)__builtin_popcountll(w ^ nw);
		gm_st(wp, nw);
		pos += t;
	}
	return changed;
}

uint64_t gm_state_set(struct gm_state *st, uint64_t first, uint64_t n, int to,
		      gm_region_fn fn, void *ctx)
{
	uint64_t pos = first, end = first + n, total = 0;

	st->edges = (uint64_t)((int64_t)st->edges + gm_edges_delta(st, first, n, to));
	while (pos < end) {
		uint64_t r = pos / GM_REGION_PAGES;
		struct gm_region *reg = &st->regions[r];
		uint64_t take = gm_min(GM_REGION_PAGES - pos % GM_REGION_PAGES, end - pos);
		unsigned old = reg->nshared, changed;

		/* A uniform region already in the target state needs nothing. */
		if (old == (to ? GM_REGION_PAGES : 0)) {
			pos += take;
			continue;
		}
		changed = gm_region_set(st, pos, take, to);
		reg->nshared = (uint16_t)(to ? old + changed : old - changed);
		assert(reg->nshared <= GM_REGION_PAGES);
		if (gm_region_uniform(reg) != (old == 0 || old == GM_REGION_PAGES))
			st->nmixed += gm_region_uniform(reg) ? (uint64_t)-1 : 1;
		if (changed && fn)
			fn(ctx, r, old, reg->nshared);
		total += changed;
		pos += take;
	}
	st->nshared = to ? st->nshared + total : st->nshared - total;
	return total;
}

static void gm_busy_set(struct gm_state *st, uint64_t page, bool busy)
{
	uint64_t bit = 1ull << (page & 63);
	struct gm_region *reg = &st->regions[page / GM_REGION_PAGES];

	if (busy) {
		assert(!(st->busy[page >> 6] & bit));
		st->busy[page >> 6] |= bit;
		reg->nbusy++;
	} else {
		assert(st->busy[page >> 6] & bit);
		st->busy[page >> 6] &= ~bit;
		reg->nbusy--;
	}
}

/*
 * Pin each page of a shared range once more. A count is bounded by
 * GMEM_PIN_MAX, checked for the whole range before anything changes, so a
 * caller (or a guest) looping on pins gets -EOVERFLOW instead of a wrapped
 * count. Pages that are not busy have no entry and hold no pin.
 */
int gm_state_pin(struct gm_state *st, uint64_t first, uint64_t n)
{
	int ret;

	if (st->npinned)
		for (uint64_t p = first; p < first + n; p++)
			if (gm_state_pins(st, p) >= GMEM_PIN_MAX)
				return -EOVERFLOW;
	ret = gm_pintab_reserve(&st->counts, n);
	if (ret)
		return ret;
	for (uint64_t p = first; p < first + n; p++) {
		struct gm_pin_entry *e = gm_pintab_get(&st->counts, p, 1);

		assert(gm_state_get(st, p));
		if (!e->pins && !e->kmaps)
			gm_busy_set(st, p, true);
		if (!e->pins++)
			st->npinned++;
	}
	return 0;
}

void gm_state_unpin(struct gm_state *st, uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n; p++) {
		struct gm_pin_entry *e = gm_pintab_get(&st->counts, p, 0);

		assert(e && e->pins);
		if (!--e->pins) {
			st->npinned--;
			if (!e->kmaps) {
				gm_busy_set(st, p, false);
				gm_pintab_put(&st->counts, e);
			}
		}
	}
}

bool gm_state_first_unpinned(const struct gm_state *st, uint64_t first, uint64_t n,
			     uint64_t *page)
{
	for (uint64_t p = first; p < first + n; p++) {
		if (!gm_state_pins(st, p)) {
			*page = p;
			return true;
		}
	}
	return false;
}

uint32_t gm_state_pins(const struct gm_state *st, uint64_t page)
{
	struct gm_pin_entry *e;

	if (!(st->busy[page >> 6] & (1ull << (page & 63))))
		return 0;
	e = gm_pintab_get((struct gm_pintab *)&st->counts, page, 0);
	return e ? e->pins : 0;
}

int gm_state_kmap_get(struct gm_state *st, uint64_t page)
{
	struct gm_pin_entry *e;
	int ret = gm_pintab_reserve(&st->counts, 1);

	if (ret)
		return ret;
	e = gm_pintab_get(&st->counts, page, 1);
	if (!e->pins && !e->kmaps)
		gm_busy_set(st, page, true);
	if (!e->kmaps++)
		st->nkmapped++;
	return 0;
}

void gm_state_kmap_put(struct gm_state *st, uint64_t page)
{
	struct gm_pin_entry *e = gm_pintab_get(&st->counts, page, 0);

	assert(e && e->kmaps);
	if (!--e->kmaps) {
		st->nkmapped--;
		if (!e->pins) {
			gm_busy_set(st, page, false);
			gm_pintab_put(&st->counts, e);
		}
	}
}

uint64_t gm_state_bytes(const struct gm_state *st)
{
	uint64_t words = st->npages / 64 + 1;

	return 2 * words * sizeof(uint64_t) + st->nregions * sizeof(struct gm_region) +
	       gm_pintab_bytes(&st->counts);
}

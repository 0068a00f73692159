/* SPDX-License-Identifier: MIT */
/*
 * state.h - the page-state machine: one shared bit and one busy bit per
 * 4 KiB page, a summary per 2 MiB region, pin/kmap counts for busy pages.
 *
 * Pure: no syscalls, no locks. The caller (gmem.c) serialises every call
 * that modifies it; gm_state_get() alone may run concurrently with writers
 * and sees each page either before or after a change.
 */
#ifndef GM_STATE_H
#define GM_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include "pintab.h"

#define GM_PAGE_SHIFT     12
#define GM_REGION_SHIFT   21
#define GM_REGION_PAGES   512u
#define GM_REGION_WORDS   (GM_REGION_PAGES / 64)

/* Region summary: O(1) answers to whole-region questions. */
struct gm_region {
	uint16_t nshared;       /* pages shared, 0..512                         */
	uint16_t nbusy;         /* pages pinned or temporarily mapped           */
};

struct gm_state {
	uint64_t npages;
	uint64_t nregions;
	uint64_t *shared;       /* bit per page: 1 = shared                     */
	uint64_t *busy;         /* bit per page: pins + kmaps > 0               */
	struct gm_region *regions;
	struct gm_pintab counts;
	uint64_t nshared;       /* pages shared in all                          */
	uint64_t npinned;       /* pages with pins > 0                          */
	uint64_t nkmapped;      /* pages with kmaps > 0                         */
	uint64_t nmixed;        /* regions holding both states                  */
	uint64_t edges;         /* i with state(i) != state(i + 1)              */
};

/* Told of every region whose shared count a gm_state_set() call changed.
 * A region is mixed iff 0 < nshared < 512. */
typedef void (*gm_region_fn)(void *ctx, uint64_t region, unsigned old_nshared,
			     unsigned new_nshared);

int  gm_state_init(struct gm_state *st, uint64_t npages, bool init_shared);
void gm_state_fini(struct gm_state *st);

static inline int gm_state_get(const struct gm_state *st, uint64_t page)
{
	uint64_t w = __atomic_load_n(&st->shared[page >> 6], __ATOMIC_RELAXED);

	return (int)((w >> (page & 63)) & 1);
}

/* Pages in [first, first + n) whose state differs from @to. */
uint64_t gm_state_count_other(const struct gm_state *st, uint64_t first, uint64_t n,
			      int to);
/* First page in [first, first + n) with state @want and its maximal run
 * (clipped to the range) in *start, *len; false when there is none. */
bool gm_state_next_run(const struct gm_state *st, uint64_t first, uint64_t n, int want,
		       uint64_t *start, uint64_t *len);
/* First pinned or temporarily mapped page in the range, if any. */
bool gm_state_first_busy(const struct gm_state *st, uint64_t first, uint64_t n,
			 uint64_t *page);
/* Number of runs of equal state the whole memory would have after setting
 * [first, first + n) to @to (the host view needs one mapping per run). */
uint64_t gm_state_runs_after(const struct gm_state *st, uint64_t first, uint64_t n, int to);
/* Set the range to @to; returns pages changed. Calls @fn per changed region. */
uint64_t gm_state_set(struct gm_state *st, uint64_t first, uint64_t n, int to,
		      gm_region_fn fn, void *ctx);

/* Pins and temporary mappings. Caller has checked the preconditions
 * (pin: every page shared; unpin: every page pinned). All or nothing:
 * -ENOMEM before anything changes. */
int  gm_state_pin(struct gm_state *st, uint64_t first, uint64_t n);
void gm_state_unpin(struct gm_state *st, uint64_t first, uint64_t n);
/* First page in the range with no pin, if any. */
bool gm_state_first_unpinned(const struct gm_state *st, uint64_t first, uint64_t n,
			     uint64_t *page);
int  gm_state_kmap_get(struct gm_state *st, uint64_t page);
void gm_state_kmap_put(struct gm_state *st, uint64_t page);
uint32_t gm_state_pins(const struct gm_state *st, uint64_t page);

uint64_t gm_state_bytes(const struct gm_state *st);

#endif /* GM_STATE_H */

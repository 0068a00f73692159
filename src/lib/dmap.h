/* SPDX-License-Identifier: MIT */
/*
 * dmap.h - direct-map model: what the host kernel would do to its direct map
 * if it removed private guest memory from it, under the same operations.
 *
 * Assumptions (printed with every report): all guest memory is populated;
 * the direct map starts as 1 GiB entries; with 2 MiB backing each region is
 * one aligned 2 MiB physical block, so a uniformly private region removes one
 * 2 MiB entry (after its 1 GiB parent is split once), a mixed region splits
 * its 2 MiB entry into 4 KiB entries and a region uniform again is merged
 * back; with 4 KiB backing each page sits in a different 2 MiB and 1 GiB
 * block (worst case), so a page's first removal splits one entry at each
 * level and nothing is ever merged. TLB flushes are counted both batched
 * (one per conversion call that removes or reshapes entries) and as
 * secretmem does (one per page removed).
 *
 * Pure: no syscalls. Caller serialises.
 */
#ifndef GM_DMAP_H
#define GM_DMAP_H

#include <stdbool.h>
#include <stdint.h>

#include "gmem.h"

struct gm_dmap {
	struct gmem_dmap_model c;
	bool huge;              /* 2 MiB backing                                  */
	uint64_t *gib_split;    /* huge: bit per 1 GiB block, parent entry split  */
	uint64_t *page_split;   /* 4 KiB backing opened shared: bit per page whose */
	                        /* 2 MiB/1 GiB entries are split; NULL if opened  */
	                        /* private (then every page was split at open)    */
	bool flush_pending;     /* this call removed or reshaped an entry         */
};

extern const char gm_dmap_assumptions[];

int  gm_dmap_init(struct gm_dmap *d, uint64_t npages, bool huge, bool init_shared);
void gm_dmap_fini(struct gm_dmap *d);
/* 2 MiB backing: region @r went from @old to @new shared pages. */
void gm_dmap_region(struct gm_dmap *d, uint64_t r, unsigned old_nshared,
		    unsigned new_nshared);
/* 4 KiB backing: @changed pages of [first, first + n) became @to. */
void gm_dmap_pages(struct gm_dmap *d, uint64_t first, uint64_t n, int to,
		   uint64_t changed);
/* End of one conversion call. */
void gm_dmap_call_end(struct gm_dmap *d);
uint64_t gm_dmap_bytes(const struct gm_dmap *d, uint64_t npages);

#endif /* GM_DMAP_H */

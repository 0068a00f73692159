// SPDX-License-Identifier: MIT
/*
 * dmap.c - the direct-map model (see dmap.h for the assumptions).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dmap.h"
#include "state.h"

#define GM_GIB_REGIONS 512u     /* 2 MiB regions per 1 GiB */

const char gm_dmap_assumptions[] =
	"all guest memory populated; direct map starts as 1 GiB entries; "
	"2 MiB backing: one aligned 2 MiB block per region, mixed regions split "
	"to 4 KiB and merge back when uniform; 4 KiB backing: each page in its own "
	"2 MiB and 1 GiB block (worst case), never merged";

int gm_dmap_init(struct gm_dmap *d, uint64_t npages, bool huge, bool init_shared)
{
	uint64_t nregions = npages / GM_REGION_PAGES;
	uint64_t ngib = (nregions + GM_GIB_REGIONS - 1) / GM_GIB_REGIONS;

	memset(d, 0, sizeof(*d));
	d->huge = huge;
	if (huge) {
		d->gib_split = calloc(ngib / 64 + 1, sizeof(uint64_t));
		if (!d->gib_split)
			return -ENOMEM;
		if (!init_shared) {
			/* Every region private from the start: one 2 MiB entry
			 * removed each, each 1 GiB parent split once. */
			d->c.removed_2m = nregions;
			d->c.splits_1g = ngib;
			memset(d->gib_split, 0xff, (ngib / 64 + 1) * sizeof(uint64_t));
			d->c.flushes_batched = 1;
			d->c.flushes_per_page = npages;
		}
		return 0;
	}
	if (init_shared) {
		d->page_split = calloc(npages / 64 + 1, sizeof(uint64_t));
		if (!d->page_split)
			return -ENOMEM;
		return 0;
	}
	d->c.removed_4k = npages;
	d->c.splits_2m = npages;
	d->c.splits_1g = npages;
	d->c.flushes_batched = 1;
	d->c.flushes_per_page = npages;
	return 0;
}

void gm_dmap_fini(struct gm_dmap *d)
{
	free(d->gib_split);
	free(d->page_split);
	memset(d, 0, sizeof(*d));
}

/* Split the 1 GiB parent of region @r once. */
static void gm_dmap_split_gib(struct gm_dmap *d, uint64_t r)
{
	uint64_t g = r / GM_GIB_REGIONS, bit = 1ull << (g & 63);

	if (d->gib_split[g >> 6] & bit)
		return;
	d->gib_split[g >> 6] |= bit;
	d->c.splits_1g++;
}

void gm_dmap_region(struct gm_dmap *d, uint64_t r, unsigned old_n, unsigned new_n)
{
	const unsigned full = GM_REGION_PAGES;
	bool old_mixed = old_n && old_n < full, new_mixed = new_n && new_n < full;

	if (new_n < old_n)
		d->c.flushes_per_page += old_n - new_n;
	if (!old_mixed && !new_mixed) {
		/* Uniform to uniform: the one 2 MiB entry goes or comes back. */
		if (new_n == 0) {
			gm_dmap_split_gib(d, r);
			d->c.removed_2m++;
			d->flush_pending = true;
		} else {
			d->c.restored_2m++;
		}
		return;
	}
	if (!old_mixed) {
		/* Uniform to mixed: the 2 MiB entry (present or removed) is split
		 * into 512 4 KiB entries, then the changed ones flip. */
		gm_dmap_split_gib(d, r);
		d->c.splits_2m++;
		d->flush_pending = true;
	}
	if (new_n < old_n)
		d->c.removed_4k += old_n - new_n;
	else
		d->c.restored_4k += new_n - old_n;
	if (new_n < old_n)
		d->flush_pending = true;
	if (!new_mixed) {
		d->c.merges_2m++;
		d->flush_pending = true;
	}
}

void gm_dmap_pages(struct gm_dmap *d, uint64_t first, uint64_t n, int to, uint64_t changed)
{
	if (!changed)
		return;
	if (to) {
		d->c.restored_4k += changed;
		return;
	}
	d->c.removed_4k += changed;
	d->c.flushes_per_page += changed;
	d->flush_pending = true;
	if (!d->page_split)
		return; /* opened private: every page was split at open */
	/* A page not yet split is one shared since open and never private. */
	for (uint64_t pos = first, end = first + n; pos < end;) {
		unsigned off = pos & 63;
		unsigned take = (unsigned)(end - pos < 64 - off ? end - pos : 64 - off);
		uint64_t m = (take == 64 ? ~0ull : ((1ull << take) - 1)) << off;
		uint64_t w = d->page_split[pos >> 6];
		/* Whole words are mostly all-fresh or all-split: skip the count. */
		uint64_t k = (w & m) == 0 ? take
			   : (w & m) == m ? 0 : (uint64_t)__builtin_popcountll(~w & m);

		d->c.splits_2m += k;
		d->c.splits_1g += k;
		d->page_split[pos >> 6] |= m;
		pos += take;
	}
}

void gm_dmap_call_end(struct gm_dmap *d)
{
	if (d->flush_pending)
		d->c.flushes_batched++;
	d->flush_pending = false;
}

uint64_t gm_dmap_bytes(const struct gm_dmap *d, uint64_t npages)
{
	uint64_t nregions = npages / GM_REGION_PAGES;

	if (d->huge)
		return (nregions / GM_GIB_REGIONS / 64 + 1) * sizeof(uint64_t);
	return d->page_split ? (npages / 64 + 1) * sizeof(uint64_t) : 0;
}

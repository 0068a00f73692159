// SPDX-License-Identifier: MIT
/*
 * populated.c - which pages of guest memory hold data, without reading it.
 *
 * A snapshot stores populated pages only, so its cost follows what the
 * guest touched, not the memory's size. Three ways, by backing:
 *
 *  - memfd (shmem): lseek(SEEK_DATA / SEEK_HOLE) walks the file's page
 *    cache and swap, skipping holes of any size at once.
 *  - KVM guest_memfd: no SEEK_DATA, st_blocks stays 0. cachestat(2) counts
 *    the file's cached pages in any range by walking its page-cache tree
 *    (empty subtrees cost nothing: 1 TiB in under a millisecond here), so
 *    empty ranges are skipped a level at a time (2 MiB x 64^k blocks), full
 *    ones taken whole; a mixed 2 MiB block is halved with cachestat while
 *    it is sparse (gm_scan_resolve) and its small or dense pieces resolved
 *    with mincore(2) on the KVM view, which for a shared file mapping
 *    reports the page cache (pages written through any mapping or window
 *    count, checked on 6.18). Where cachestat is refused, every 2 MiB block
 *    is asked with mincore (about 13 s per TiB here).
 *  - hugetlb memfd: SEEK_DATA says "all data", cachestat refuses hugetlbfs
 *    and mincore sees only this mapping's page tables. Every page is read
 *    through the KVM view and all-zero pages are skipped: honest, and still
 *    sparse on disk, but the cost follows the memory's size. Reading
 *    faults in huge pages that were reserved for the file already.
 *
 * Lock rule: callers hold g->lock, so no conversion or discard changes the
 * answer while it is used.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "snap.h"

#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif

struct gm_cachestat_range {
	uint64_t off, len;
};

struct gm_cachestat {
	uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* Each level of the cachestat walk covers 64 blocks of the level below. */
#define GM_SCAN_FANOUT_SHIFT 6
/* Inside a mixed 2 MiB block: pieces this small, or more than 1/GM_SCAN_DENSE
 * cached, are asked page by page (mincore) rather than halved again. */
#define GM_SCAN_LEAF_PAGES 16
#define GM_SCAN_DENSE      8

void gm_scan_init(struct gm_scan *s, struct gmem *g)
{
	memset(s, 0, sizeof(*s));
	s->g = g;
	s->end = g->size;
	if (g->b.huge == GMEM_HUGE_HUGETLB)
		s->mode = GM_SCAN_NONZERO;
	else if (g->b.kind == GMEM_BACKEND_MEMFD)
		s->mode = GM_SCAN_SEEK;
	else
		s->mode = GM_SCAN_CACHE;
}

static int gm_scan_seek(struct gm_scan *s, uint64_t *start, uint64_t *len)
{
	off_t data, hole;

	if (s->pos >= s->end)
		return 0;
	data = lseek(s->g->b.fd, (off_t)s->pos, SEEK_DATA);
	if (data < 0)
		return errno == ENXIO ? 0 : -errno;
	hole = lseek(s->g->b.fd, data, SEEK_HOLE);
	if (hole < 0)
		return -errno;
	if ((uint64_t)hole > s->end)
		hole = (off_t)s->end;
	if ((uint64_t)data >= s->end || hole <= data)
		return 0;
	/* shmem answers in pages; keep extents page-aligned whatever happens. */
	*start = (uint64_t)data & ~(GMEM_PAGE_SIZE - 1);
	*len = (((uint64_t)hole + GMEM_PAGE_SIZE - 1) & ~(GMEM_PAGE_SIZE - 1)) - *start;
	s->pos = *start + *len;
	return 1;
}

/* Cached pages of [off, off + len), or -1 when cachestat cannot say. */
static int64_t gm_cached_pages(struct gm_scan *s, uint64_t off, uint64_t len)
{
	struct gm_cachestat_range r = { off, len };
	struct gm_cachestat cs;

	if (s->no_cachestat)
		return -1;
	if (syscall(__NR_cachestat, s->g->b.fd, &r, &cs, 0)) {
		s->no_cachestat = true;
		return -1;
	}
	return (int64_t)cs.nr_cache;
}

/*
 * Resolve pages [first, first + n) of the block at s->pos, @cached of them
 * in the page cache, into s->vec. cachestat(2) costs about the same for any
 * range (it visits only the entries present), mincore(2) a lookup per page
 * that no page table maps (~70 ns here): so a sparse range is halved, one
 * cachestat per half (the other half's count follows), empty halves are
 * skipped and full ones taken whole, and only small or dense pieces are
 * asked page by page. A 2 MiB block holding one 64 KiB extent costs five
 * cachestat calls instead of 512 lookups.
 */
static int gm_scan_resolve(struct gm_scan *s, unsigned first, unsigned n, uint64_t cached)
{
	uint8_t *base = s->g->kvm_view + s->pos;
	int64_t left;
	int ret;

	if (!cached)
		return 0;
	if (cached == n) {
		memset(s->vec + first, 1, n);
		return 0;
	}
	if (n <= GM_SCAN_LEAF_PAGES || cached * GM_SCAN_DENSE > n ||
	    (left = gm_cached_pages(s, s->pos + ((uint64_t)first << GM_PAGE_SHIFT),
				    (uint64_t)n / 2 << GM_PAGE_SHIFT)) < 0) {
		if (mincore(base + ((uint64_t)first << GM_PAGE_SHIFT),
			    (size_t)n << GM_PAGE_SHIFT, s->vec + first))
			return -errno;
		return 0;
	}
	/* Pages may come and go between the two calls: never trust a count
	 * that does not fit, ask the pages instead. */
	if ((uint64_t)left > cached)
		left = (int64_t)cached;
	ret = gm_scan_resolve(s, first, n / 2, (uint64_t)left);
	if (!ret)
		ret = gm_scan_resolve(s, first + n / 2, n / 2, cached - (uint64_t)left);
	return ret;
}

/* Fill s->vec for the 2 MiB block at s->pos: 1 per populated page.
 * @cached: its cached pages as cachestat counted them, or -1. */
static int gm_scan_block(struct gm_scan *s, int64_t cached)
{
	uint8_t *base = s->g->kvm_view + s->pos;
	int ret;

	if (s->mode == GM_SCAN_NONZERO) {
		for (unsigned i = 0; i < GM_REGION_PAGES; i++) {
			const uint64_t *w = (const uint64_t *)(base + i * GMEM_PAGE_SIZE);
			uint64_t acc = 0;

			for (unsigned j = 0; j < GMEM_PAGE_SIZE / 8; j++)
				acc |= w[j];
			s->vec[i] = acc != 0;
		}
	} else if (cached < 0) {
		if (mincore(base, GMEM_REGION_SIZE, s->vec))
			return -errno;
	} else {
		memset(s->vec, 0, sizeof(s->vec));
		ret = gm_scan_resolve(s, 0, GM_REGION_PAGES, (uint64_t)cached);
		if (ret)
			return ret;
	}
	s->blk = s->pos;
	s->blk_valid = true;
	return 0;
}

/* Next run of populated pages in the block s->vec describes, from s->pos. */
static bool gm_scan_in_block(struct gm_scan *s, uint64_t *start, uint64_t *len)
{
	unsigned i = (unsigned)((s->pos - s->blk) >> GM_PAGE_SHIFT), j;

	while (i < GM_REGION_PAGES && !(s->vec[i] & 1))
		i++;
	for (j = i; j < GM_REGION_PAGES && (s->vec[j] & 1); j++)
		;
	if (i == GM_REGION_PAGES) {
		s->blk_valid = false;
		s->pos = s->blk + GMEM_REGION_SIZE;
		return false;
	}
	*start = s->blk + ((uint64_t)i << GM_PAGE_SHIFT);
	*len = (uint64_t)(j - i) << GM_PAGE_SHIFT;
	s->pos = *start + *len;
	if (j == GM_REGION_PAGES)
		s->blk_valid = false;
	return true;
}

/*
 * At a 2 MiB boundary: try the largest aligned block at s->pos first.
 * Returns 1 with an extent (a fully cached block), 0 after skipping an
 * empty block, 2 when the 2 MiB block at s->pos is mixed: *cached is then
 * its cached page count, or -1 when cachestat cannot say.
 */
static int gm_scan_levels(struct gm_scan *s, uint64_t *start, uint64_t *len, int64_t *cached)
{
	unsigned shift = GM_REGION_SHIFT;

	while (shift + GM_SCAN_FANOUT_SHIFT < 63 &&
	       !(s->pos & ((1ull << (shift + GM_SCAN_FANOUT_SHIFT)) - 1)) &&
	       (1ull << (shift + GM_SCAN_FANOUT_SHIFT)) < s->end)
		shift += GM_SCAN_FANOUT_SHIFT;
	for (;; shift -= GM_SCAN_FANOUT_SHIFT) {
		uint64_t blen = 1ull << shift;
		int64_t n;

		if (blen > s->end - s->pos)
			blen = s->end - s->pos;
		n = gm_cached_pages(s, s->pos, blen);
		if (n == 0) {
			s->pos += blen;
			return 0;
		}
		if (n > 0 && (uint64_t)n == blen >> GM_PAGE_SHIFT) {
			*start = s->pos;
			*len = blen;
			s->pos += blen;
			return 1;
		}
		if (n < 0 || shift == GM_REGION_SHIFT) {
			*cached = n;
			return 2;
		}
	}
}

int gm_scan_next(struct gm_scan *s, uint64_t *start, uint64_t *len)
{
	int64_t cached = -1;
	int ret;

	if (s->mode == GM_SCAN_SEEK)
		return gm_scan_seek(s, start, len);
	while (s->pos < s->end) {
		if (s->blk_valid) {
			if (gm_scan_in_block(s, start, len))
				return 1;
			continue;
		}
		if (s->mode == GM_SCAN_CACHE) {
			ret = gm_scan_levels(s, start, len, &cached);
			if (ret == 1)
				return 1;
			if (ret == 0)
				continue;
		}
		ret = gm_scan_block(s, cached);
		if (ret)
			return ret;
	}
	return 0;
}

int gm_scan_total(struct gmem *g, uint64_t *bytes)
{
	struct gm_scan s;
	uint64_t start, len, sum = 0;
	int ret;

	gm_scan_init(&s, g);
	while ((ret = gm_scan_next(&s, &start, &len)) > 0)
		sum += len;
	*bytes = sum;
	return ret;
}

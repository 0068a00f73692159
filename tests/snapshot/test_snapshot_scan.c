// SPDX-License-Identifier: MIT
/*
 * test_snapshot_scan.c - the populated-page scans (snapshot/populated.c)
 * agree with each other.
 *
 * Each backing has its own way to find the pages that hold data (SEEK_DATA
 * on a memfd; a cachestat walk with mincore leaves on guest_memfd; reading
 * every page on hugetlb). The last two are written for backings this host
 * may lack, but both work on a memfd too (shmem answers cachestat and
 * mincore alike), so here each scan runs on one memfd with a pattern built
 * to reach every branch: a fully cached 128 MiB block (taken whole at the
 * top level), an empty one (skipped at once), a full 2 MiB block, a sparse
 * block (halved with cachestat), a dense one (resolved by mincore), lone
 * pages at the first and last page of memory, and it is checked page by
 * page against SEEK_DATA, the kernel's own answer.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "snap_th.h"
#include "snapshot/snap.h"

#define SC_SIZE   (384 * TH_MIB)
#define SC_PAGES  (SC_SIZE / TH_PAGE)
#define SC_2M     (2 * TH_MIB)
#define SC_BIG    (128 * TH_MIB)

/* The pages the pattern writes, as [first page, count) runs. */
static const struct { uint64_t first, n; } sc_runs[] = {
	{ 0, 1 },                                       /* the first page       */
	{ SC_BIG / TH_PAGE, SC_BIG / TH_PAGE },         /* 128 MiB, all of it   */
	/* 256 MiB..: 2 MiB blocks of one kind each */
	{ (2 * SC_BIG) / TH_PAGE, 512 },                /* a full 2 MiB block   */
	{ (2 * SC_BIG + SC_2M) / TH_PAGE + 100, 16 },   /* sparse: one 64 KiB   */
	{ (2 * SC_BIG + 2 * SC_2M) / TH_PAGE, 300 },    /* dense                */
	{ (2 * SC_BIG + 2 * SC_2M) / TH_PAGE + 301, 7 },
	{ (2 * SC_BIG + 3 * SC_2M) / TH_PAGE + 1, 1 },  /* sparse: lone pages   */
	{ (2 * SC_BIG + 3 * SC_2M) / TH_PAGE + 257, 1 },
	{ (2 * SC_BIG + 3 * SC_2M) / TH_PAGE + 511, 1 },
	{ SC_PAGES - 1, 1 },                            /* the last page        */
};

static void sc_fill(struct gmem *g, uint8_t *want)
{
	memset(want, 0, SC_PAGES);
	for (size_t r = 0; r < sizeof(sc_runs) / sizeof(sc_runs[0]); r++)
		for (uint64_t p = sc_runs[r].first; p < sc_runs[r].first + sc_runs[r].n; p++) {
			/* Through the KVM view, as a guest's writes land. */
			g->kvm_view[p * TH_PAGE + (p % 4096)] = (uint8_t)(p | 1);
			want[p] = 1;
		}
}

/* Run @s to the end; mark each extent's pages in @got, checking extents
 * ascend, do not overlap, stay page-aligned and inside the memory. */
static void sc_collect(struct gm_scan *s, uint8_t *got, const char *what)
{
	uint64_t start, len, last_end = 0, n = 0;
	int ret;

	memset(got, 0, SC_PAGES);
	while ((ret = gm_scan_next(s, &start, &len)) > 0) {
		cr_assert(start >= last_end && len && start % TH_PAGE == 0 && len % TH_PAGE == 0 &&
			  start + len <= SC_SIZE,
			  "%s: extent %#llx+%#llx after %#llx", what, (unsigned long long)start,
			  (unsigned long long)len, (unsigned long long)last_end);
		memset(got + start / TH_PAGE, 1, len / TH_PAGE);
		last_end = start + len;
		cr_assert_lt(++n, SC_PAGES, "%s: no end", what);
	}
	TH_EQ(ret, 0);
}

static void sc_expect_same(const uint8_t *got, const uint8_t *want, const char *what)
{
	for (uint64_t p = 0; p < SC_PAGES; p++)
		cr_assert_eq(got[p], want[p], "%s: page %llu: scan says %u, written %u", what,
			     (unsigned long long)p, got[p], want[p]);
}

static void sc_scan(struct gmem *g, enum gm_scan_mode mode, bool no_cachestat, uint8_t *got,
		    const char *what)
{
	struct gm_scan *s = malloc(sizeof(*s));

	cr_assert_not_null(s);
	gm_scan_init(s, g);
	s->mode = mode;
	s->no_cachestat = no_cachestat;
	pthread_mutex_lock(&g->lock);
	sc_collect(s, got, what);
	pthread_mutex_unlock(&g->lock);
	free(s);
}

Test(snapshot_scan, every_scan_finds_exactly_the_written_pages, .timeout = 120)
{
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, SC_SIZE, 0);
	uint8_t *want = malloc(SC_PAGES), *got = malloc(SC_PAGES);
	uint64_t total = 0, written = 0;

	cr_assert(want && got);
	sc_fill(g, want);
	for (uint64_t p = 0; p < SC_PAGES; p++)
		written += want[p];
	/* The kernel's answer first: SEEK_DATA is the memfd's own mode. */
	sc_scan(g, GM_SCAN_SEEK, false, got, "SEEK_DATA");
	sc_expect_same(got, want, "SEEK_DATA");
	/* guest_memfd's walk: cachestat levels, halving, mincore leaves. */
	sc_scan(g, GM_SCAN_CACHE, false, got, "cachestat");
	sc_expect_same(got, want, "cachestat");
	/* ... where the kernel refuses cachestat: mincore per 2 MiB block. */
	sc_scan(g, GM_SCAN_CACHE, true, got, "mincore");
	sc_expect_same(got, want, "mincore");
	TH_EQ(gm_scan_total(g, &total), 0);
	TH_EQ(total, written * TH_PAGE);
	/* hugetlb's: every page read, the zero ones skipped. Last, since
	 * reading a hole of a shmem file fills it. */
	sc_scan(g, GM_SCAN_NONZERO, false, got, "non-zero");
	sc_expect_same(got, want, "non-zero");
	free(want);
	free(got);
	gmem_close(g);
}

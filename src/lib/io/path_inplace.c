// SPDX-License-Identifier: MIT
/*
 * path_inplace.c - in-place I/O: share, pin, I/O on the host view, unpin,
 * make private again.
 *
 * Model: only the conversion granules lying wholly inside a segment are
 * shared (shares.c counts the references, so overlapping requests never
 * undo each other and pages the VMM shared stay shared). The partial
 * granules at a segment's ends go through temporary mappings: sharing them
 * would expose bytes of the guest that the request does not cover. Where
 * the kernel converts in place (cap 249) a private page cannot be mapped
 * temporarily at all; there the ends are rounded out to whole granules and
 * shared for the request's duration (gmem_io_rw(3) says so).
 *
 * Order: acquire every segment's granules first, then one pass of I/O in
 * request order, then release everything acquired, whatever happened. A
 * granule is pinned for the whole request, so the VMM cannot make it
 * private under the I/O (its conversion is refused with -EAGAIN).
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "io.h"

struct gm_io_span {
	uint64_t first, n;      /* granules */
};

/* Whole granules of [gpa, gpa + len), rounded out when @round. */
static struct gm_io_span gm_io_span_of(uint64_t gpa, uint64_t len, uint64_t gran,
				       bool round)
{
	uint64_t lo = round ? gpa / gran : (gpa + gran - 1) / gran;
	uint64_t hi = round ? (gpa + len + gran - 1) / gran : (gpa + len) / gran;

	return (struct gm_io_span){ lo, hi > lo ? hi - lo : 0 };
}

static void gm_io_release_all(struct gm_io_run *r, const struct gm_io_span *sp,
			      unsigned n, uint64_t *conv)
{
	while (n--)
		if (sp[n].n)
			gm_io_shares_release(r->m->shares, sp[n].first, sp[n].n, conv);
}

/* Fault in the host view of the acquired granules with one call per span:
 * a granule just made shared is a fresh mapping, and the I/O would
 * otherwise take a page fault per page. A span of one 4 KiB page is left
 * to its one fault, which costs what the call would. Advisory: a kernel
 * without MADV_POPULATE_* (before 5.14) leaves the faults to the I/O. */
static void gm_io_prefault(struct gm_io_run *r, const struct gm_io_span *sp, unsigned n)
{
	int advice = r->req->dir == GMEM_IO_READ ? MADV_POPULATE_WRITE : MADV_POPULATE_READ;
	uint64_t gran = r->m->granule;

	for (unsigned i = 0; i < n; i++)
		if (sp[i].n * gran > GMEM_PAGE_SIZE)
			madvise(gmem_host(r->m->g, sp[i].first * gran), sp[i].n * gran, advice);
}

static int gm_io_acquire_all(struct gm_io_run *r, struct gm_io_span *sp, uint64_t *conv)
{
	const struct gmem_io_req *q = r->req;
	bool round = r->m->kernel_inplace;
	int ret;

	for (unsigned i = 0; i < q->nsegs; i++) {
		sp[i] = gm_io_span_of(q->segs[i].gpa, q->segs[i].len, r->m->granule, round);
		if (!sp[i].n)
			continue;
		ret = gm_io_shares_acquire(r->m->shares, sp[i].first, sp[i].n, conv);
		if (ret) {
			gm_io_release_all(r, sp, i, conv);
			return ret;
		}
	}
	return 0;
}

/* Queue one segment: host view for the acquired granules, windows for the
 * partial ones at its ends. */
static int gm_io_inplace_seg(struct gm_io_run *r, const struct gmem_io_seg *s,
			     struct gm_io_span sp)
{
	uint64_t gran = r->m->granule, lo = sp.first * gran, hi = lo + sp.n * gran;
	uint64_t gpa = s->gpa, end = s->gpa + s->len;
	int ret = 0;

	if (!sp.n)
		lo = hi = end;          /* no whole granule: all by windows */
	while (!ret && !gm_io_run_stopped(r) && gpa < end) {
		uint64_t stop;

		if (gpa >= lo && gpa < hi) {
			stop = hi < end ? hi : end;
			ret = gm_io_run_add(r, gmem_host(r->m->g, gpa), stop - gpa);
		} else {
			stop = (gpa / gran + 1) * gran;
			if (stop > end)
				stop = end;
			ret = gm_io_run_add_kmap(r, gpa, stop - gpa);
		}
		gpa = stop;
	}
	return ret;
}

int gm_io_inplace(struct gm_io_run *r)
{
	const struct gmem_io_req *q = r->req;
	struct gm_io_span local[8], *sp = local;
	uint64_t conv = 0;
	int ret;

	if (q->nsegs > 8) {
		sp = calloc(q->nsegs, sizeof(*sp));
		if (!sp)
			return -ENOMEM;
	}
	ret = gm_io_acquire_all(r, sp, &conv);
	if (ret)
		goto out;
	gm_io_prefault(r, sp, q->nsegs);
	for (unsigned i = 0; !ret && !gm_io_run_stopped(r) && i < q->nsegs; i++)
		ret = gm_io_inplace_seg(r, &q->segs[i], sp[i]);
	if (!ret)
		ret = gm_io_run_flush(r);
	gm_io_run_drop(r);
	gm_io_release_all(r, sp, q->nsegs, &conv);
out:
	/* Only conversions of the context's own memory: calibration runs
	 * this path on a scratch memory, which is nobody's business. */
	if (r->m == &r->io->mem)
		__atomic_add_fetch(&r->io->n.conversions, conv, __ATOMIC_RELAXED);
	if (sp != local)
		free(sp);
	return ret;
}

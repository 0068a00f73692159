// SPDX-License-Identifier: MIT
/*
 * path_kmap.c - I/O through temporary mappings, no pool, no conversion.
 *
 * Model: every piece of the request that lies in one conversion granule is
 * reached through its own gmem_kmap window; the target moves up to
 * GM_IO_WINDOWS windows' worth per call (one preadv over all of them), and
 * the windows go away when their batch is flushed. The pages are busy only
 * while a window is on them, so the VMM's conversions wait microseconds.
 */
#include "io.h"

int gm_io_kmap(struct gm_io_run *r)
{
	const struct gmem_io_req *q = r->req;
	uint64_t gran = r->m->granule;
	int ret = 0;

	for (unsigned i = 0; !ret && !gm_io_run_stopped(r) && i < q->nsegs; i++) {
		uint64_t gpa = q->segs[i].gpa, end = gpa + q->segs[i].len;

		while (!ret && !gm_io_run_stopped(r) && gpa < end) {
			uint64_t stop = (gpa / gran + 1) * gran;

			if (stop > end)
				stop = end;
			ret = gm_io_run_add_kmap(r, gpa, stop - gpa);
			gpa = stop;
		}
	}
	if (!ret)
		ret = gm_io_run_flush(r);
	gm_io_run_drop(r);
	return ret;
}

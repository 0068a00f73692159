// SPDX-License-Identifier: MIT
/*
 * serve.c - what the public calls and the calibration share below them: a
 * memory's I/O state (its sizes, its sharing table) and running one request
 * on a path already chosen. Below calib.c and io.c, above the paths: no
 * file it calls calls back into it.
 */
#include <errno.h>
#include <string.h>

#include "io.h"

/* ---- memory ------------------------------------------------------------ */

int gm_io_mem_init(struct gm_io_mem *m, struct gmem *g, struct gmem_io *io)
{
	struct gmem_info info;
	int ret = gmem_info(g, &info);

	if (ret)
		return ret;
	memset(m, 0, sizeof(*m));
	m->g = g;
	m->kvm = gmem_kvm_view(g);
	m->size = info.size;
	m->granule = info.granule;
	m->kernel_inplace = info.inplace;
	m->no_pin = info.flags & GMEM_F_NO_PIN;
	return gm_io_shares_get(g, io, &m->shares);
}

int gm_io_mem_fini(struct gm_io_mem *m, struct gmem_io *io)
{
	int ret = gm_io_shares_flush(m->shares);

	gm_io_shares_put(m->shares, io);
	return ret;
}

int gm_io_path_ok(const struct gm_io_mem *m, enum gmem_io_path path)
{
	switch (path) {
	case GMEM_IO_INPLACE:
		return m->no_pin ? -EPERM : 0;
	case GMEM_IO_BOUNCE:
	case GMEM_IO_KMAP:
		/* The kernel refuses the host any access to private pages. */
		return m->kernel_inplace ? -EOPNOTSUPP : 0;
	default:
		return -EINVAL;
	}
}

/* ---- one request on one path ------------------------------------------ */

int64_t gm_io_serve(struct gmem_io *io, struct gm_io_mem *m, struct gmem_io_req *req,
		    enum gmem_io_path path, unsigned cpu)
{
	struct gm_io_run r;
	int ret = gm_io_path_ok(m, path);

	req->done = 0;
	req->used = path;
	if (ret)
		return ret;
	gm_io_run_init(&r, io, m, req, cpu);
	switch (path) {
	case GMEM_IO_INPLACE:
		ret = gm_io_inplace(&r);
		break;
	case GMEM_IO_BOUNCE:
		ret = gm_io_bounce(&r);
		break;
	default:
		ret = gm_io_kmap(&r);
		break;
	}
	req->done = r.done;
	return ret ? ret : (int64_t)r.done;
}

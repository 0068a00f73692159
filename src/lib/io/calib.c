// SPDX-License-Identifier: MIT
/*
 * calib.c - the automatic path: a cost table measured on this host, and the
 * choice per request.
 *
 * Model: the cost of a request on each fixed path is measured, as the median
 * of a few timed requests, for 12 sizes (512 B .. 1 MiB, doubling) and three
 * shapes: contiguous and page-aligned, contiguous starting mid-page, and
 * scattered (one page per segment, every other page). The measurement runs
 * on a scratch memory of the same backend (never on the guest's memory:
 * calibrating must not touch guest data or states) against a memory target,
 * so it measures what the paths cost, not the device; device reads for
 * speed, the paths' costs being symmetric.
 *
 * A request is placed in that table by its size (interpolated linearly in
 * bytes between the two nearest sizes, extrapolated past 1 MiB), its
 * fragmentation (segments per page, 0 = contiguous .. 1 = one page per
 * segment, blending the contiguous and scattered costs) and its alignment
 * (a segment not page-aligned adds the measured penalty of the unaligned
 * shape). A request whose pages are all shared already goes in place: no
 * conversion, zero-copy. Paths the memory cannot take are never chosen.
 *
 * Single-segment requests up to GM_IO_FAST_MAX bytes (most block I/O)
 * skip the model: the answer for every 512-byte size class, aligned or
 * not, is computed from it whenever the table changes, and such a request
 * costs one page-state read and one table load (the model's interpolation
 * and lock took 50-80 ns, 10-15 % of a bounced 512 B request).
 *
 * Lock rule: io->calib_lock is a reader-writer lock: requests read the
 * table, gmem_io_calibrate() measures into a private copy and swaps it in
 * under the write lock, so requests never wait for a measurement. The
 * per-class answers are bytes stored and loaded atomically without the
 * lock: a request racing a recalibration gets the old or the new answer,
 * both usable paths.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "io.h"

#define GM_IO_CAL_MEM     (8ull << 20)          /* scratch memory          */
#define GM_IO_CAL_TARGET  (2ull << 20)          /* memory target           */
#define GM_IO_CAL_MIN_NS  200000ull             /* per cell, at least ...  */
#define GM_IO_CAL_MIN_REP 3u                    /* ... and this many       */
#define GM_IO_CAL_MAX_REP 31u
#define GM_IO_NO_PATH     1e18                  /* cost of a path not taken */
#define GM_IO_SHARED_SCAN 4096u                 /* pages checked for "all shared" */

enum { GM_SHAPE_CONTIG, GM_SHAPE_UNALIGNED, GM_SHAPE_SCATTER };

static const enum gmem_io_path gm_io_fixed[GM_IO_NFIXED] = {
	GMEM_IO_INPLACE, GMEM_IO_BOUNCE, GMEM_IO_KMAP,
};

static uint64_t gm_io_size(unsigned i)
{
	return 512ull << i;
}

static uint64_t gm_io_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void gm_io_calib_defaults(struct gm_io_calib *c)
{
	/* Uncalibrated: bounce everywhere, the path that is never slow. */
	for (unsigned p = 0; p < GM_IO_NFIXED; p++)
		for (unsigned s = 0; s < GM_IO_NSHAPES; s++)
			for (unsigned i = 0; i < GM_IO_NSIZES; i++)
				c->ns[p][s][i] = gm_io_fixed[p] == GMEM_IO_BOUNCE ? 1.0 : 2.0;
	c->measured = false;
}

/* ---- measuring --------------------------------------------------------- */

struct gm_io_bench {
	struct gmem_io *io;
	struct gm_io_mem mem;
	struct gmem *scratch;
	void *target;
	struct gmem_io_seg segs[256];
};

/* The segments of one shape and size; returns their number. */
static unsigned gm_io_shape(struct gmem_io_seg *segs, unsigned shape, uint64_t size)
{
	uint64_t pg = GMEM_PAGE_SIZE, base = 2 * pg;
	unsigned n = 0;

	if (shape == GM_SHAPE_UNALIGNED) {
		segs[0] = (struct gmem_io_seg){ base + 512, size };
		return 1;
	}
	if (shape == GM_SHAPE_CONTIG || size <= pg) {
		segs[0] = (struct gmem_io_seg){ base, size };
		return 1;
	}
	for (uint64_t at = 0; at < size; at += pg, n++)
		segs[n] = (struct gmem_io_seg){ base + 2 * at, pg };
	return n;
}

static int gm_io_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median ns of one path on one shape and size. */
static int gm_io_measure(struct gm_io_bench *b, enum gmem_io_path path, unsigned shape,
			 uint64_t size, double *out)
{
	struct gmem_io_target t = { .kind = GMEM_IO_MEMORY, .mem = b->target,
				    .mem_len = GM_IO_CAL_TARGET };
	struct gmem_io_req q = { .dir = GMEM_IO_READ, .segs = b->segs, .target = &t };
	double v[GM_IO_CAL_MAX_REP];
	uint64_t spent = 0;
	unsigned n = 0;

	q.nsegs = gm_io_shape(b->segs, shape, size);
	for (int warm = 1; warm >= 0; warm--) {
		do {
			uint64_t t0 = gm_io_now(), dt;
			int64_t ret = gm_io_serve(b->io, &b->mem, &q, path);

			if (ret < 0)
				return (int)ret;
			dt = gm_io_now() - t0;
			if (!warm) {
				v[n++] = (double)dt;
				spent += dt;
			}
		} while (!warm && n < GM_IO_CAL_MAX_REP &&
			 (n < GM_IO_CAL_MIN_REP || spent < GM_IO_CAL_MIN_NS));
	}
	qsort(v, n, sizeof(v[0]), gm_io_cmp_double);
	*out = v[n / 2];
	return 0;
}

static int gm_io_measure_all(struct gm_io_bench *b, struct gm_io_calib *c)
{
	for (unsigned p = 0; p < GM_IO_NFIXED; p++) {
		bool usable = !gm_io_path_ok(&b->io->mem, gm_io_fixed[p]) &&
			      !gm_io_path_ok(&b->mem, gm_io_fixed[p]);

		for (unsigned s = 0; s < GM_IO_NSHAPES; s++) {
			for (unsigned i = 0; i < GM_IO_NSIZES; i++) {
				int ret;

				c->ns[p][s][i] = GM_IO_NO_PATH;
				if (!usable)
					continue;
				ret = gm_io_measure(b, gm_io_fixed[p], s, gm_io_size(i),
						    &c->ns[p][s][i]);
				if (ret)
					return ret;
			}
		}
	}
	c->measured = true;
	return 0;
}

/* A private scratch memory like the guest's: same backend and backing,
 * else a plain memfd. */
static int gm_io_scratch_open(struct gmem *g, struct gmem **out)
{
	struct gmem_info info;
	struct gmem_config cfg = { .size = GM_IO_CAL_MEM, .vm_fd = -1 };
	int ret = gmem_info(g, &info);

	if (ret)
		return ret;
	cfg.backend = info.backend;
	cfg.flags = info.flags & (GMEM_F_HUGE | GMEM_F_NO_PIN);
	if (!gmem_open(&cfg, out))
		return 0;
	cfg.backend = GMEM_BACKEND_MEMFD;
	cfg.flags &= ~GMEM_F_HUGE;
	return gmem_open(&cfg, out);
}

int gm_io_calibrate(struct gmem_io *io)
{
	struct gm_io_bench b = { .io = io };
	struct gm_io_calib *c;
	uint64_t t0 = gm_io_now();
	int ret;

	c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	ret = gm_io_scratch_open(io->mem.g, &b.scratch);
	if (ret)
		goto out_calib;
	ret = gm_io_mem_init(&b.mem, b.scratch);
	if (ret)
		goto out_scratch;
	b.target = mmap(NULL, GM_IO_CAL_TARGET, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (b.target == MAP_FAILED) {
		ret = -errno;
		goto out_mem;
	}
	ret = gm_io_measure_all(&b, c);
	if (ret)
		goto out_target;
	pthread_rwlock_wrlock(&io->calib_lock);
	io->calib = *c;
	gm_io_fast_fill(io);
	pthread_rwlock_unlock(&io->calib_lock);
	__atomic_add_fetch(&io->n.calibrations, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&io->n.calib_ns, gm_io_now() - t0, __ATOMIC_RELAXED);

out_target:
	munmap(b.target, GM_IO_CAL_TARGET);
out_mem:
	gm_io_mem_fini(&b.mem);
out_scratch:
	gmem_close(b.scratch);
out_calib:
	free(c);
	return ret;
}

/* ---- choosing ------------------------------------------------------------ */

/* Cost of @bytes on row @row, linear in bytes between the measured sizes. */
static double gm_io_interp(const double *row, uint64_t bytes)
{
	unsigned i = 0;
	double lo, hi;

	if (bytes <= gm_io_size(0))
		return row[0];
	while (i + 2 < GM_IO_NSIZES && gm_io_size(i + 1) < bytes)
		i++;
	lo = (double)gm_io_size(i);
	hi = (double)gm_io_size(i + 1);
	return row[i] + (row[i + 1] - row[i]) * ((double)bytes - lo) / (hi - lo);
}

struct gm_io_shape_of {
	uint64_t bytes;
	double frag;            /* 0 contiguous .. 1 one page per segment */
	bool unaligned;
	bool all_shared;
};

static bool gm_io_seg_shared(const struct gm_io_mem *m, const struct gmem_io_seg *s,
			     uint64_t *budget)
{
	uint64_t first = s->gpa / GMEM_PAGE_SIZE;
	uint64_t last = (s->gpa + s->len - 1) / GMEM_PAGE_SIZE;

	for (uint64_t p = first; p <= last; p++) {
		if (!*budget || gmem_state(m->g, p * GMEM_PAGE_SIZE) != GMEM_SHARED)
			return false;
		(*budget)--;
	}
	return true;
}

static struct gm_io_shape_of gm_io_describe(const struct gm_io_mem *m,
					    const struct gmem_io_req *q)
{
	struct gm_io_shape_of d = { .all_shared = true };
	uint64_t pages = 0, budget = GM_IO_SHARED_SCAN;

	for (unsigned i = 0; i < q->nsegs; i++) {
		const struct gmem_io_seg *s = &q->segs[i];

		d.bytes += s->len;
		pages += (s->gpa + s->len - 1) / GMEM_PAGE_SIZE - s->gpa / GMEM_PAGE_SIZE + 1;
		d.unaligned |= ((s->gpa | s->len) & (GMEM_PAGE_SIZE - 1)) != 0;
		if (d.all_shared)
			d.all_shared = gm_io_seg_shared(m, s, &budget);
	}
	if (q->nsegs > 1 && pages > 1)
		d.frag = (double)(q->nsegs - 1) / (double)(pages - 1);
	if (d.frag > 1.0)
		d.frag = 1.0;
	return d;
}

static double gm_io_cost(const struct gm_io_calib *c, unsigned p,
			 const struct gm_io_shape_of *d)
{
	double contig = gm_io_interp(c->ns[p][GM_SHAPE_CONTIG], d->bytes);
	double cost = (1.0 - d->frag) * contig +
		      d->frag * gm_io_interp(c->ns[p][GM_SHAPE_SCATTER], d->bytes);

	if (d->unaligned)
		cost += gm_io_interp(c->ns[p][GM_SHAPE_UNALIGNED], d->bytes) - contig;
	return cost;
}

/* The cheapest path @m can take for a request shaped @d. */
static enum gmem_io_path gm_io_best(const struct gm_io_mem *m, const struct gm_io_calib *c,
				    const struct gm_io_shape_of *d)
{
	enum gmem_io_path best = GMEM_IO_BOUNCE;
	double best_cost = INFINITY;

	for (unsigned p = 0; p < GM_IO_NFIXED; p++) {
		double cost;

		if (gm_io_path_ok(m, gm_io_fixed[p]))
			continue;
		cost = gm_io_cost(c, p, d);
		if (cost < best_cost) {
			best_cost = cost;
			best = gm_io_fixed[p];
		}
	}
	return best;
}

void gm_io_fast_fill(struct gmem_io *io)
{
	for (unsigned u = 0; u < 2; u++) {
		for (unsigned i = 0; i < GM_IO_FAST_N; i++) {
			/* The class's largest size: requests are mostly whole
			 * sectors, and the cost model is linear in between. */
			struct gm_io_shape_of d = { .bytes = (i + 1ull) * GM_IO_FAST_STEP,
						    .unaligned = u };

			__atomic_store_n(&io->fast[u][i],
					 (uint8_t)gm_io_best(&io->mem, &io->calib, &d),
					 __ATOMIC_RELAXED);
		}
	}
}

/* A single small segment: one page-state read when the buffer is private
 * (the common case), one table load, no lock and no interpolation. */
static enum gmem_io_path gm_io_choose_fast(struct gmem_io *io, const struct gmem_io_seg *s)
{
	const struct gm_io_mem *m = &io->mem;
	uint64_t budget = GM_IO_SHARED_SCAN;
	bool unaligned = ((s->gpa | s->len) & (GMEM_PAGE_SIZE - 1)) != 0;

	if (!m->no_pin && gm_io_seg_shared(m, s, &budget))
		return GMEM_IO_INPLACE;
	return (enum gmem_io_path)__atomic_load_n(
		&io->fast[unaligned][(s->len - 1) / GM_IO_FAST_STEP], __ATOMIC_RELAXED);
}

enum gmem_io_path gm_io_choose(struct gmem_io *io, const struct gmem_io_req *req)
{
	const struct gm_io_mem *m = &io->mem;
	struct gm_io_shape_of d;
	enum gmem_io_path best;

	if (m->kernel_inplace)
		return GMEM_IO_INPLACE;
	if (req->nsegs == 1 && req->segs[0].len <= GM_IO_FAST_MAX)
		return gm_io_choose_fast(io, req->segs);
	d = gm_io_describe(m, req);
	if (d.all_shared && !m->no_pin)
		return GMEM_IO_INPLACE;
	pthread_rwlock_rdlock(&io->calib_lock);
	best = gm_io_best(m, &io->calib, &d);
	pthread_rwlock_unlock(&io->calib_lock);
	return best;
}

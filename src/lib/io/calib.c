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
 * The model places a request by its size (interpolated linearly in bytes
 * between the two nearest sizes, extrapolated past 1 MiB), its
 * fragmentation (segments per page, 0 = contiguous .. 1 = one page per
 * segment, blending the contiguous and scattered costs) and its alignment
 * (a segment not page-aligned adds the measured penalty of the unaligned
 * shape). Paths the memory cannot take are never chosen.
 *
 * Requests do not run the model: whenever the table changes, its answer is
 * computed for every size class (512 B wide up to 64 KiB, then 1/8 of a
 * doubling), fragmentation class (eighths) and alignment, and a request
 * costs one table load, found from the size, page count and alignment that
 * validating it gathered anyway, plus one page-state read: a request whose
 * pages are all shared already goes in place (no conversion, zero-copy).
 * Multi-segment and larger requests used to run the model under a reader
 * lock: 60-100 ns a request (8 % of a bounced 8 KiB scattered one) and a
 * lock cache line passed between the cores of concurrent requests.
 *
 * Lock rule: gmem_io_calibrate() measures into a private copy and takes
 * io->calib_lock only to install it and refill the decision table, so
 * requests never wait for a measurement and never take the lock. Table
 * entries are bytes stored and loaded atomically: a request racing a
 * recalibration gets the old or the new answer, both usable paths.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "clock.h"
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
			uint64_t t0 = gm_clock_ns(CLOCK_MONOTONIC), dt;
			int64_t ret = gm_io_serve(b->io, &b->mem, &q, path, gm_io_cpu());

			if (ret < 0)
				return (int)ret;
			dt = gm_clock_ns(CLOCK_MONOTONIC) - t0;
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
	uint64_t t0 = gm_clock_ns(CLOCK_MONOTONIC);
	int ret;

	c = malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	ret = gm_io_scratch_open(io->mem.g, &b.scratch);
	if (ret)
		goto out_calib;
	ret = gm_io_mem_init(&b.mem, b.scratch, NULL);
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
	pthread_mutex_lock(&io->calib_lock);
	io->calib = *c;
	gm_io_choice_fill(io);
	pthread_mutex_unlock(&io->calib_lock);
	__atomic_add_fetch(&io->n.calibrations, 1, __ATOMIC_RELAXED);
	__atomic_store_n(&io->n.calib_ns, gm_clock_ns(CLOCK_MONOTONIC) - t0, __ATOMIC_RELAXED);

out_target:
	munmap(b.target, GM_IO_CAL_TARGET);
out_mem:
	gm_io_mem_fini(&b.mem, NULL);
out_scratch:
	gmem_close(b.scratch);
out_calib:
	free(c);
	return ret;
}

/* ---- the cost model ------------------------------------------------------ */

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

/* A request as the model sees it. */
struct gm_io_shape_of {
	uint64_t bytes;
	double frag;            /* 0 contiguous .. 1 one page per segment */
	bool unaligned;
};

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

/* ---- the decision table ---------------------------------------------------- */

/* Size class of a request of @bytes (>= 1): 512-byte steps, then
 * GM_IO_LOG_SUB steps per doubling, read off the top bits. */
static unsigned gm_io_class(uint64_t bytes)
{
	uint64_t b = bytes - 1;
	unsigned msb, cls;

	if (b < (uint64_t)GM_IO_LIN_N * GM_IO_LIN_STEP)
		return (unsigned)(b / GM_IO_LIN_STEP);
	msb = 63u - (unsigned)__builtin_clzll(b);
	cls = GM_IO_LIN_N + (msb - 16u) * GM_IO_LOG_SUB +
	      (unsigned)((b >> (msb - 3u)) & (GM_IO_LOG_SUB - 1));
	return cls < GM_IO_NCLASS ? cls : GM_IO_NCLASS - 1;
}

/* The largest size of class @cls: requests are mostly whole sectors or
 * pages, and the model is linear within a class. */
static uint64_t gm_io_class_bytes(unsigned cls)
{
	unsigned j, msb;

	if (cls < GM_IO_LIN_N)
		return (cls + 1ull) * GM_IO_LIN_STEP;
	j = cls - GM_IO_LIN_N;
	msb = 16u + j / GM_IO_LOG_SUB;
	return (GM_IO_LOG_SUB + 1ull + j % GM_IO_LOG_SUB) << (msb - 3u);
}

/* Fragmentation class: segments per page, (nsegs - 1) / (pages - 1),
 * rounded to eighths. */
static unsigned gm_io_frag(uint64_t nsegs, uint64_t pages)
{
	uint64_t steps = GM_IO_NFRAG - 1;

	if (nsegs < 2 || pages < 2)
		return 0;
	if (nsegs >= pages)
		return GM_IO_NFRAG - 1;
	return (unsigned)((steps * (nsegs - 1) + (pages - 1) / 2) / (pages - 1));
}

void gm_io_choice_fill(struct gmem_io *io)
{
	for (unsigned u = 0; u < 2; u++) {
		for (unsigned f = 0; f < GM_IO_NFRAG; f++) {
			for (unsigned i = 0; i < GM_IO_NCLASS; i++) {
				struct gm_io_shape_of d = {
					.bytes = gm_io_class_bytes(i),
					.frag = (double)f / (GM_IO_NFRAG - 1),
					.unaligned = u,
				};

				__atomic_store_n(&io->choice[u][f][i],
						 (uint8_t)gm_io_best(&io->mem, &io->calib, &d),
						 __ATOMIC_RELAXED);
			}
		}
	}
}

/* ---- choosing ------------------------------------------------------------ */

/* Are the first GM_IO_SHARED_SCAN pages of @q all shared? Out of line:
 * the caller has seen the first page shared already, which private
 * buffers, the common case, are not. */
static __attribute__((noinline)) bool gm_io_all_shared(const struct gm_io_mem *m,
						       const struct gmem_io_req *q)
{
	uint64_t budget = GM_IO_SHARED_SCAN;

	for (unsigned i = 0; i < q->nsegs; i++) {
		const struct gmem_io_seg *s = &q->segs[i];
		uint64_t last = (s->gpa + s->len - 1) / GMEM_PAGE_SIZE;

		for (uint64_t p = s->gpa / GMEM_PAGE_SIZE; p <= last; p++) {
			if (!budget-- || gmem_state(m->g, p * GMEM_PAGE_SIZE) != GMEM_SHARED)
				return false;
		}
	}
	return true;
}

enum gmem_io_path gm_io_choose(struct gmem_io *io, const struct gmem_io_req *req,
			       const struct gm_io_shape *sh)
{
	const struct gm_io_mem *m = &io->mem;

	if (m->kernel_inplace)
		return GMEM_IO_INPLACE;
	if (!m->no_pin && gmem_state(m->g, req->segs[0].gpa) == GMEM_SHARED &&
	    gm_io_all_shared(m, req))
		return GMEM_IO_INPLACE;
	return (enum gmem_io_path)__atomic_load_n(
		&io->choice[sh->unaligned][gm_io_frag(req->nsegs, sh->pages)]
			   [gm_io_class(sh->bytes)], __ATOMIC_RELAXED);
}

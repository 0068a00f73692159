// SPDX-License-Identifier: MIT
/*
 * io.c - public entry points of the I/O subsystem.
 *
 * Model: a context (struct gmem_io) belongs to one memory and owns a bounce
 * pool and a calibration; the sharing references are per memory
 * (shares.c). gmem_io_rw() is synchronous and may be called from any number
 * of threads at once, which is how a VMM device thread (or several) uses it:
 * validate the request, pick the path (auto: calib.c), run it (serve.c,
 * path_*.c), report bytes moved. The layers, bottom up: xfer, copy, pool,
 * shares; the paths; serve.c; calib.c; this file. Every path puts states, pins and temporary mappings
 * back before returning, on success and on failure alike.
 *
 * Short transfers: the return value is the bytes moved when no error
 * occurred (fewer than asked only when the target ended: end of file,
 * closed pipe, end of a memory target), else the negative errno; req->done
 * always holds the bytes moved, a prefix of the request in segment order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include "io.h"

#define GM_IO_CTX_FLAGS GMEM_IO_CTX_NO_CALIBRATE
#define GM_IO_REQ_FLAGS GMEM_IO_NOWAIT

/* ---- context ----------------------------------------------------------- */

static int gm_io_config_ok(const struct gmem_io_config *c, uint64_t *pool, uint32_t *slot)
{
	*pool = c && c->pool_size ? c->pool_size : GM_IO_POOL_DEF;
	*slot = c && c->slot_size ? c->slot_size : GM_IO_SLOT_DEF;
	if (c && c->flags & ~GM_IO_CTX_FLAGS)
		return -EINVAL;
	if (*slot < GM_IO_SLOT_MIN || *slot > GM_IO_SLOT_MAX || (*slot & (*slot - 1)))
		return -EINVAL;
	if (*pool < *slot || *pool % *slot || *pool / *slot > UINT32_MAX)
		return -EINVAL;
	return 0;
}

int gmem_io_create(struct gmem *g, const struct gmem_io_config *cfg, struct gmem_io **out)
{
	struct gmem_io *io;
	uint64_t pool;
	uint32_t slot;
	int ret;

	if (!g || !out)
		return -EINVAL;
	ret = gm_io_config_ok(cfg, &pool, &slot);
	if (ret)
		return ret;
	/* Aligned: the per-CPU counters must not share cache lines. */
	if (posix_memalign((void **)&io, 64, sizeof(*io)))
		return -ENOMEM;
	memset(io, 0, sizeof(*io));
	io->ncpus = gm_io_ncpus();
	ret = gm_io_mem_init(&io->mem, g, io);
	if (ret)
		goto err_free;
	ret = gm_io_pool_init(&io->pool, pool, slot);
	if (ret)
		goto err_mem;
	pthread_mutex_init(&io->calib_lock, NULL);
	gm_io_calib_defaults(&io->calib);
	gm_io_choice_fill(io);
	if (!(cfg && cfg->flags & GMEM_IO_CTX_NO_CALIBRATE)) {
		ret = gm_io_calibrate(io);
		if (ret)
			goto err_pool;
	}
	*out = io;
	return 0;

err_pool:
	pthread_mutex_destroy(&io->calib_lock);
	gm_io_pool_fini(&io->pool);
err_mem:
	gm_io_mem_fini(&io->mem, io);
err_free:
	free(io);
	return ret;
}

int gmem_io_destroy(struct gmem_io *io)
{
	int ret = 0;

	if (!io)
		return -EINVAL;
	pthread_mutex_destroy(&io->calib_lock);
	/* Detached by gmem_close: it freed the pool and restored already. */
	if (io->mem.g) {
		gm_io_pool_fini(&io->pool);
		ret = gm_io_mem_fini(&io->mem, io);
	}
	free(io);
	return ret;
}

/* ---- requests ---------------------------------------------------------- */

static int gm_io_target_ok(const struct gmem_io_target *t)
{
	if (!t)
		return -EINVAL;
	switch (t->kind) {
	case GMEM_IO_FILE:
		if (t->dio_mem_align && (t->direct_fd < 0 ||
		    (t->dio_mem_align & (t->dio_mem_align - 1)) || !t->dio_off_align ||
		    (t->dio_off_align & (t->dio_off_align - 1))))
			return -EINVAL;
		return t->fd < 0 ? -EBADF : 0;
	case GMEM_IO_STREAM:
		return t->fd < 0 ? -EBADF : 0;
	case GMEM_IO_MEMORY:
		return t->mem || !t->mem_len ? 0 : -EINVAL;
	case GMEM_IO_CALLBACK:
		return t->fn ? 0 : -EINVAL;
	}
	return -EINVAL;
}

/* Check the request; *sh gets its size and shape, which auto needs, in the
 * same pass over the segments. */
static int gm_io_req_ok(const struct gm_io_mem *m, const struct gmem_io_req *q,
			struct gm_io_shape *sh)
{
	uint64_t sum = 0, pages = 0, odd = 0;

	if (q->dir != GMEM_IO_READ && q->dir != GMEM_IO_WRITE)
		return -EINVAL;
	if ((unsigned)q->path >= GMEM_IO_NPATHS || q->flags & ~GM_IO_REQ_FLAGS)
		return -EINVAL;
	if (!q->nsegs || !q->segs)
		return -EINVAL;
	for (unsigned i = 0; i < q->nsegs; i++) {
		const struct gmem_io_seg *s = &q->segs[i];

		if (!s->len || s->gpa >= m->size || s->len > m->size - s->gpa)
			return -EINVAL;
		if (sum + s->len < sum)
			return -EINVAL;
		sum += s->len;
		pages += (s->gpa + s->len - 1) / GMEM_PAGE_SIZE - s->gpa / GMEM_PAGE_SIZE + 1;
		odd |= s->gpa | s->len;
	}
	if (q->off + sum < q->off)
		return -EINVAL;
	*sh = (struct gm_io_shape){ .bytes = sum, .pages = pages,
				    .unaligned = (odd & (GMEM_PAGE_SIZE - 1)) != 0 };
	return gm_io_target_ok(q->target);
}

static void gm_io_count(struct gmem_io *io, unsigned cpu, enum gmem_io_path p, int64_t ret,
			uint64_t done, uint64_t total)
{
	struct gm_io_cpu_counts *c = &io->cpu[gm_io_cpu_set(cpu, io->ncpus)];

	/* Atomic still: two threads may share a CPU's set. */
	__atomic_add_fetch(&c->requests[p], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&c->bytes[p], done, __ATOMIC_RELAXED);
	if (ret < 0)
		__atomic_add_fetch(&c->errors, 1, __ATOMIC_RELAXED);
	else if (done < total)
		__atomic_add_fetch(&c->short_transfers, 1, __ATOMIC_RELAXED);
}

int64_t gmem_io_rw(struct gmem_io *io, struct gmem_io_req *req)
{
	enum gmem_io_path path;
	struct gm_io_shape sh;
	unsigned cpu;
	int64_t ret;

	if (!io || !req)
		return -EINVAL;
	req->done = 0;
	if (!io->mem.g)
		return -ENODEV;
	ret = gm_io_req_ok(&io->mem, req, &sh);
	if (ret)
		return ret;
	path = req->path == GMEM_IO_AUTO ? gm_io_choose(io, req, &sh) : req->path;
	cpu = gm_io_cpu();
	ret = gm_io_serve(io, &io->mem, req, path, cpu);
	gm_io_count(io, cpu, path, ret, req->done, sh.bytes);
	return ret;
}

int gmem_io_choose(struct gmem_io *io, const struct gmem_io_req *req)
{
	struct gm_io_shape sh;
	int ret;

	if (!io || !req)
		return -EINVAL;
	if (!io->mem.g)
		return -ENODEV;
	ret = gm_io_req_ok(&io->mem, req, &sh);
	return ret ? ret : (int)gm_io_choose(io, req, &sh);
}

int gmem_io_calibrate(struct gmem_io *io)
{
	if (!io)
		return -EINVAL;
	return io->mem.g ? gm_io_calibrate(io) : -ENODEV;
}

int gmem_io_stats(struct gmem_io *io, struct gmem_io_stats *st)
{
	if (!io || !st)
		return -EINVAL;
	if (!io->mem.g)
		return -ENODEV;
	memset(st, 0, sizeof(*st));
	for (unsigned k = 0; k < io->ncpus; k++) {
		const struct gm_io_cpu_counts *c = &io->cpu[k];

		for (unsigned p = 0; p < GMEM_IO_NPATHS; p++) {
			st->requests[p] += __atomic_load_n(&c->requests[p], __ATOMIC_RELAXED);
			st->bytes[p] += __atomic_load_n(&c->bytes[p], __ATOMIC_RELAXED);
		}
		st->errors += __atomic_load_n(&c->errors, __ATOMIC_RELAXED);
		st->short_transfers += __atomic_load_n(&c->short_transfers, __ATOMIC_RELAXED);
	}
	st->conversions = __atomic_load_n(&io->n.conversions, __ATOMIC_RELAXED);
	st->calibrations = __atomic_load_n(&io->n.calibrations, __ATOMIC_RELAXED);
	st->calib_ns = __atomic_load_n(&io->n.calib_ns, __ATOMIC_RELAXED);
	gm_io_shares_counts(io->mem.shares, &st->shared_now, &st->deferred,
			    &st->restore_retries);
	st->pool_size = io->pool.size;
	st->pool_slot_size = io->pool.slot_size;
	st->pool_slots = io->pool.nslots;
	st->pool_free = gm_io_pool_free(&io->pool);
	st->pool_waits = __atomic_load_n(&io->pool.waits, __ATOMIC_RELAXED);
	st->pool_nobufs = __atomic_load_n(&io->pool.nobufs, __ATOMIC_RELAXED);
	return 0;
}

const char *gmem_io_path_name(enum gmem_io_path p)
{
	switch (p) {
	case GMEM_IO_AUTO:
		return "auto";
	case GMEM_IO_INPLACE:
		return "inplace";
	case GMEM_IO_BOUNCE:
		return "bounce";
	case GMEM_IO_KMAP:
		return "kmap";
	}
	return "unknown";
}

/* ---- targets ----------------------------------------------------------- */

/* O_DIRECT alignment of @fd: statx where the filesystem reports it, else
 * the block device's logical block size, else 512 for both. */
static void gm_io_dio_align(int fd, uint32_t *mem, uint32_t *off)
{
	struct statx stx;
	int lbs;

	*mem = *off = 512;
	if (!statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) &&
	    (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_mem_align) {
		*mem = stx.stx_dio_mem_align;
		*off = stx.stx_dio_offset_align;
		return;
	}
	if (!ioctl(fd, BLKSSZGET, &lbs) && lbs > 0)
		*mem = *off = (uint32_t)lbs;
}

int gmem_io_target_file(struct gmem_io_target *t, int fd, int direct_fd)
{
	if (!t || fd < 0)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	t->kind = GMEM_IO_FILE;
	t->fd = fd;
	t->direct_fd = -1;
	if (direct_fd < 0)
		return 0;
	if (fcntl(direct_fd, F_GETFL) < 0)
		return -errno;
	t->direct_fd = direct_fd;
	gm_io_dio_align(direct_fd, &t->dio_mem_align, &t->dio_off_align);
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * xfer.c - moving bytes between iovecs and a target, and the batches the
 * paths fill.
 *
 * Model: a target call moves a batch of up to GM_IO_IOV iovecs at the
 * request's current position, repeating on a short count until every byte
 * has moved, the target ends (a zero count: end of file, closed pipe, end of
 * a memory target) or fails. A failure after some bytes still returns the
 * count and hands the error back separately, so the caller learns both how
 * far it got and why it stopped. EINTR is a failure like any other: a device
 * thread interrupted by a signal is told, not silently restarted.
 *
 * O_DIRECT: a FILE target with a direct_fd uses it for every call whose
 * buffers, lengths and offset meet its alignment, and the plain fd for the
 * rest (mixing the two is coherent: a direct write invalidates the cache).
 *
 * A memory target is written as a device's DMA would write it, with
 * streaming stores for pieces of a page or more (copy.c): no read of the
 * target's old lines, no eviction of the caller's cache. With plain stores
 * a bounced device write of 64 KiB or more ran at 0.70-0.79x memcpy (per-run
 * medians of gmem bench io), streamed at 0.87-0.98x.
 *
 * A batch may hold temporary mappings; they are released when the batch is
 * flushed or dropped, so a request never holds more than GM_IO_WINDOWS.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

#include "io.h"

static bool gm_io_direct_ok(const struct gmem_io_target *t, const struct iovec *iov,
			    unsigned cnt, uint64_t off)
{
	uint64_t mmask, omask;

	if (!t->dio_mem_align || t->direct_fd < 0)
		return false;
	mmask = t->dio_mem_align - 1;
	omask = t->dio_off_align - 1;
	if (off & omask)
		return false;
	for (unsigned i = 0; i < cnt; i++)
		if (((uintptr_t)iov[i].iov_base & mmask) || (iov[i].iov_len & omask))
			return false;
	return true;
}

static int64_t gm_io_memory_xfer(const struct gmem_io_target *t, enum gmem_io_dir dir,
				 const struct iovec *iov, unsigned cnt, uint64_t off)
{
	bool streamed = false;
	int64_t moved = 0;

	for (unsigned i = 0; i < cnt && off < t->mem_len; i++) {
		uint64_t n = iov[i].iov_len, room = t->mem_len - off;
		uint8_t *m = (uint8_t *)t->mem + off;

		if (n > room)
			n = room;
		if (dir == GMEM_IO_READ)
			memcpy(iov[i].iov_base, m, n);
		else
			streamed |= gm_io_copy_nt(m, iov[i].iov_base, n);
		moved += (int64_t)n;
		off += n;
	}
	if (streamed)
		gm_io_copy_fence();
	return moved;
}

/* One call on the target: bytes moved (0 = ended) or -errno. */
static int64_t gm_io_target_call(const struct gmem_io_target *t, enum gmem_io_dir dir,
				 const struct iovec *iov, unsigned cnt, uint64_t off)
{
	bool rd = dir == GMEM_IO_READ;
	ssize_t n;
	int fd;

	switch (t->kind) {
	case GMEM_IO_FILE:
		fd = gm_io_direct_ok(t, iov, cnt, off) ? t->direct_fd : t->fd;
		n = rd ? preadv(fd, iov, (int)cnt, (off_t)off)
		       : pwritev(fd, iov, (int)cnt, (off_t)off);
		break;
	case GMEM_IO_STREAM:
		n = rd ? readv(t->fd, iov, (int)cnt) : writev(t->fd, iov, (int)cnt);
		break;
	case GMEM_IO_MEMORY:
		return gm_io_memory_xfer(t, dir, iov, cnt, off);
	case GMEM_IO_CALLBACK:
		return t->fn(t->opaque, dir, iov, (int)cnt, off);
	default:
		return -EINVAL;
	}
	return n < 0 ? -errno : n;
}

int64_t gm_io_target_xfer(const struct gmem_io_target *t, enum gmem_io_dir dir,
			  const struct iovec *iov, unsigned cnt, uint64_t off, int *err)
{
	struct iovec rest[GM_IO_IOV];
	int64_t total = 0;
	uint64_t left = 0;

	memcpy(rest, iov, cnt * sizeof(*iov));
	for (unsigned i = 0; i < cnt; i++)
		left += iov[i].iov_len;
	*err = 0;
	while (cnt) {
		int64_t n = gm_io_target_call(t, dir, rest, cnt, off + (uint64_t)total);

		/* A callback claiming more than it was given is broken. */
		if (n > 0 && (uint64_t)n > left)
			n = -EIO;
		if (n <= 0) {
			if (n < 0 && !total)
				return n;
			*err = (int)n;
			break;
		}
		left -= (uint64_t)n;
		total += n;
		/* Step over what moved: whole iovecs, then part of one. */
		while (cnt && (uint64_t)n >= rest[0].iov_len) {
			n -= (int64_t)rest[0].iov_len;
			memmove(rest, rest + 1, --cnt * sizeof(*rest));
		}
		if (cnt) {
			rest[0].iov_base = (uint8_t *)rest[0].iov_base + n;
			rest[0].iov_len -= (size_t)n;
		}
	}
	return total;
}

/* ---- batches --------------------------------------------------------- */

void gm_io_run_init(struct gm_io_run *r, struct gmem_io *io, struct gm_io_mem *m,
		    const struct gmem_io_req *req, unsigned cpu)
{
	/* Field by field: the iovec and window arrays (1 KiB) are written
	 * before they are read, and zeroing them was a sixth of a small
	 * request's cost. */
	r->io = io;
	r->m = m;
	r->req = req;
	r->t = req->target;
	r->off = req->off;
	r->done = 0;
	r->eof = false;
	r->niov = 0;
	r->nbytes = 0;
	r->nwin = 0;
	r->cpu = cpu;
}

void gm_io_run_drop(struct gm_io_run *r)
{
	for (unsigned i = 0; i < r->nwin; i++)
		gmem_kunmap(r->m->g, r->win[i]);
	r->nwin = 0;
	r->niov = 0;
	r->nbytes = 0;
}

int gm_io_run_flush(struct gm_io_run *r)
{
	int64_t n;
	int err = 0;

	if (!r->niov)
		return 0;
	n = gm_io_target_xfer(r->t, r->req->dir, r->iov, r->niov, r->off, &err);
	if (n > 0) {
		r->done += (uint64_t)n;
		r->off += (uint64_t)n;
	}
	if (n >= 0 && (uint64_t)n < r->nbytes && !err)
		r->eof = true;
	gm_io_run_drop(r);
	return n < 0 ? (int)n : err;
}

int gm_io_run_add(struct gm_io_run *r, void *p, uint64_t len)
{
	int ret = 0;

	if (r->niov == GM_IO_IOV) {
		ret = gm_io_run_flush(r);
		if (ret || r->eof)
			return ret;
	}
	r->iov[r->niov].iov_base = p;
	r->iov[r->niov].iov_len = len;
	r->niov++;
	r->nbytes += len;
	return 0;
}

/* A window on @gpa's granule. When none is free: flush to give back this
 * request's own, else wait for others' (short-lived by contract) or, with
 * GMEM_IO_NOWAIT, refuse. */
static int gm_io_window(struct gm_io_run *r, uint64_t gpa, void **out)
{
	for (;;) {
		void *p = gmem_kmap(r->m->g, gpa);
		int ret;

		if (p) {
			*out = p;
			return 0;
		}
		if (errno != EBUSY)
			return -errno;
		if (r->nwin) {
			ret = gm_io_run_flush(r);
			if (ret || r->eof)
				return ret;
			continue;
		}
		if (r->req->flags & GMEM_IO_NOWAIT)
			return -ENOBUFS;
		sched_yield();
	}
}

int gm_io_run_add_kmap(struct gm_io_run *r, uint64_t gpa, uint64_t len)
{
	void *p = NULL;
	int ret;

	if (r->nwin == GM_IO_WINDOWS || r->niov == GM_IO_IOV) {
		ret = gm_io_run_flush(r);
		if (ret || r->eof)
			return ret;
	}
	ret = gm_io_window(r, gpa, &p);
	if (ret || r->eof)
		return ret;
	r->win[r->nwin++] = p;
	return gm_io_run_add(r, p, len);
}

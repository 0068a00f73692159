/* SPDX-License-Identifier: MIT */
/*
 * io.h - the I/O subsystem's internals: context, bounce pool, sharing
 * references, the target transfer engine and the three paths.
 *
 * Model: a request is a list of guest ranges served, in order, against one
 * host target. Each path walks the request in pieces that never cross a
 * conversion granule (4 KiB, or 2 MiB on hugetlb memory) and hands the
 * target batches of iovecs:
 *   inplace - whole granules are shared (reference-counted per granule, per
 *             memory), pinned and used through the host view; the partial
 *             granules at a segment's ends go through temporary mappings, so
 *             no byte outside the request ever becomes host-visible;
 *   bounce  - one pool slot per request; data is copied between the slot
 *             and the guest through the KVM view, a slot-full at a time;
 *   kmap    - every piece through a temporary mapping (gmem_kmap), up to
 *             GM_IO_WINDOWS windows per batch.
 * Only the library's public calls are used on guest memory (gmem_convert,
 * gmem_pin, gmem_kmap, gmem_kvm_view), so every rule of the core holds.
 *
 * Lock order: shares->lock, then g->lock (taken inside gmem_* calls). The
 * pool lock and the calibration lock are leaves. No request holds a
 * temporary mapping while it takes shares->lock, so a restore that waits
 * for a window to go away under shares->lock cannot wait for itself.
 */
#ifndef GM_IO_H
#define GM_IO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "gmem.h"

#define GM_IO_IOV        64u            /* iovecs per target call            */
#define GM_IO_WINDOWS    8u             /* temporary mappings per batch      */
#define GM_IO_POOL_DEF   (4ull << 20)
#define GM_IO_SLOT_DEF   (64u << 10)
#define GM_IO_SLOT_MIN   4096u
#define GM_IO_SLOT_MAX   (4u << 20)

/* ---- sharing references (shares.c) ------------------------------------ */

/* One per memory, whatever the number of contexts on it: two contexts
 * must not undo each other's sharing either. */
struct gm_io_shares;

int  gm_io_shares_get(struct gmem *g, struct gm_io_shares **out);
void gm_io_shares_put(struct gm_io_shares *s);
/* Take a reference on granules [first, first + n): the first reference
 * notes whether the granule was private, the range is made shared and
 * pinned. All or nothing. */
int  gm_io_shares_acquire(struct gm_io_shares *s, uint64_t first, uint64_t n,
			  uint64_t *conversions);
/* Unpin and drop the references; granules nobody uses any more that were
 * private before the first reference go back to private. 0, or -EBUSY when
 * a page stayed busy (pinned by someone else) and its restore was deferred. */
int  gm_io_shares_release(struct gm_io_shares *s, uint64_t first, uint64_t n,
			  uint64_t *conversions);
/* Retry deferred restores; 0 when none is left. */
int  gm_io_shares_flush(struct gm_io_shares *s);
void gm_io_shares_counts(struct gm_io_shares *s, uint64_t *held, uint64_t *deferred,
			 uint64_t *retries);

/* ---- bounce pool (pool.c) --------------------------------------------- */

/* Plain anonymous memory, never guest memory: see pool.c for why. */
struct gm_io_pool {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	uint8_t *base;
	uint64_t size;
	uint32_t slot_size;
	uint32_t nslots;
	uint32_t nfree;
	uint32_t *stack;                /* free slot numbers, nfree of them  */
	uint64_t waits, nobufs;
};

int   gm_io_pool_init(struct gm_io_pool *p, uint64_t size, uint32_t slot_size);
void  gm_io_pool_fini(struct gm_io_pool *p);
/* A slot, or NULL with *err = -ENOBUFS when none is free and @nowait. */
void *gm_io_pool_get(struct gm_io_pool *p, bool nowait, int *err);
void  gm_io_pool_put(struct gm_io_pool *p, void *slot);

/* ---- the memory a request runs on ------------------------------------- */

struct gm_io_mem {
	struct gmem *g;
	uint8_t *kvm;                   /* full view: the bounce copy engine   */
	uint64_t size;
	uint64_t granule;
	bool kernel_inplace;            /* cap 249: private pages unreachable  */
	bool no_pin;
	struct gm_io_shares *shares;
};

int  gm_io_mem_init(struct gm_io_mem *m, struct gmem *g);
void gm_io_mem_fini(struct gm_io_mem *m);

/* ---- calibration (calib.c) -------------------------------------------- */

#define GM_IO_NSIZES  12u               /* 512 B << 0 .. 11 = 1 MiB           */
#define GM_IO_NSHAPES 3u                /* contiguous, unaligned, scattered   */
#define GM_IO_NFIXED  3u                /* inplace, bounce, kmap              */

struct gm_io_calib {
	double ns[GM_IO_NFIXED][GM_IO_NSHAPES][GM_IO_NSIZES];
	bool measured;
};

/* Single-segment requests up to GM_IO_FAST_MAX bytes are decided by a
 * table precomputed from the calibration, one entry per GM_IO_FAST_STEP
 * bytes and alignment, read without a lock (calib.c). */
#define GM_IO_FAST_MAX   (64u << 10)
#define GM_IO_FAST_STEP  512u
#define GM_IO_FAST_N     (GM_IO_FAST_MAX / GM_IO_FAST_STEP)

/* ---- the context ------------------------------------------------------ */

struct gm_io_counts {
	uint64_t requests[GMEM_IO_NPATHS], bytes[GMEM_IO_NPATHS];
	uint64_t errors, short_transfers, conversions, calibrations, calib_ns;
};

struct gmem_io {
	struct gm_io_mem mem;
	struct gm_io_pool pool;
	pthread_rwlock_t calib_lock;    /* readers: auto; writer: calibrate   */
	struct gm_io_calib calib;
	/* [unaligned][(len - 1) / GM_IO_FAST_STEP]: an enum gmem_io_path,
	 * written under the write lock, read with atomic loads and no lock. */
	uint8_t fast[2][GM_IO_FAST_N];
	struct gm_io_counts n;          /* updated with atomic adds            */
};

/* One request in flight on memory @m. */
struct gm_io_run {
	struct gmem_io *io;
	struct gm_io_mem *m;
	const struct gmem_io_req *req;
	const struct gmem_io_target *t;
	uint64_t off;                   /* target position of the next byte    */
	uint64_t done;
	bool eof;                       /* the target ended before the request */
	struct iovec iov[GM_IO_IOV];
	unsigned niov;
	uint64_t nbytes;                /* bytes the batch holds               */
	void *win[GM_IO_WINDOWS];
	unsigned nwin;
};

/* ---- target transfer and batches (xfer.c) ------------------------------ */

/* Move the bytes of @iov from/to the target at @off until all are moved,
 * the target ends, or an error: bytes moved, or -errno when an error came
 * before any byte (after some, *err gets it and the count is returned). */
int64_t gm_io_target_xfer(const struct gmem_io_target *t, enum gmem_io_dir dir,
			  const struct iovec *iov, unsigned cnt, uint64_t off, int *err);

void gm_io_run_init(struct gm_io_run *r, struct gmem_io *io, struct gm_io_mem *m,
		    const struct gmem_io_req *req);
/* Queue @len bytes at @p; flushes first when the batch is full. */
int  gm_io_run_add(struct gm_io_run *r, void *p, uint64_t len);
/* Queue a piece through a temporary mapping of @gpa (within one granule). */
int  gm_io_run_add_kmap(struct gm_io_run *r, uint64_t gpa, uint64_t len);
/* Hand the batch to the target, release its windows. */
int  gm_io_run_flush(struct gm_io_run *r);
/* Release whatever the batch still holds (error paths). */
void gm_io_run_drop(struct gm_io_run *r);

static inline bool gm_io_run_stopped(const struct gm_io_run *r)
{
	return r->eof;
}

/* ---- the paths ---------------------------------------------------------- */

int gm_io_inplace(struct gm_io_run *r);         /* path_inplace.c          */
int gm_io_bounce(struct gm_io_run *r);          /* path_bounce.c           */
int gm_io_kmap(struct gm_io_run *r);            /* path_kmap.c             */

/* Serve @req on @m with a fixed path (io.c); bytes or -errno, req->done set. */
int64_t gm_io_serve(struct gmem_io *io, struct gm_io_mem *m, struct gmem_io_req *req,
		    enum gmem_io_path path);
/* Is @path usable on @m? 0 or -errno. */
int  gm_io_path_ok(const struct gm_io_mem *m, enum gmem_io_path path);

int  gm_io_calibrate(struct gmem_io *io);
void gm_io_calib_defaults(struct gm_io_calib *c);
/* Recompute io->fast from io->calib (write lock held, or no other user). */
void gm_io_fast_fill(struct gmem_io *io);
enum gmem_io_path gm_io_choose(struct gmem_io *io, const struct gmem_io_req *req);

#endif /* GM_IO_H */

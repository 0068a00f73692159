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
 * The paths use the library's public calls on guest memory (gmem_kmap,
 * gmem_kvm_view, gmem_host); the sharing table (shares.c) alone works under
 * g->lock with the core's workers, so that noting a state, converting and
 * pinning are one step.
 *
 * Lock order: g->lock (shares.c) is never held while a pool lock or the
 * calibration lock is taken, and those are leaves; nothing sleeps under
 * g->lock.
 */
#ifndef GM_IO_H
#define GM_IO_H

#include <pthread.h>
#include <sched.h>
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
 * must not undo each other's sharing either. It lives under g->lock. */
struct gm_io_shares;

/* Join @io to @g's table (made on first use). */
int  gm_io_shares_get(struct gmem *g, struct gmem_io *io, struct gm_io_shares **out);
void gm_io_shares_put(struct gm_io_shares *s, struct gmem_io *io);
/* Take a reference on granules [first, first + n): the first reference
 * notes whether the granule is owed back to private; the range is made
 * shared and pinned, all in one step under g->lock. All or nothing. */
int  gm_io_shares_acquire(struct gm_io_shares *s, uint64_t first, uint64_t n,
			  uint64_t *conversions);
/* Unpin and drop the references; owed granules nobody uses any more go
 * back to private. 0, or -EBUSY when a page is still busy (pinned or mapped
 * by someone else): its unpin or kunmap makes it private. */
int  gm_io_shares_release(struct gm_io_shares *s, uint64_t first, uint64_t n,
			  uint64_t *conversions);
/* Restore every deferred granule now; 0 when none is left, else -EBUSY. */
int  gm_io_shares_flush(struct gm_io_shares *s);
void gm_io_shares_counts(struct gm_io_shares *s, uint64_t *held, uint64_t *deferred,
			 uint64_t *retries);

/* ---- per-CPU state (pool.c) -------------------------------------------- */

/* What every request updates (the pool's free lists, the request counters)
 * is kept per CPU, so requests on different cores do not pass one cache
 * line, or one lock, back and forth. */
#define GM_IO_CPUS_MAX 64u

/* CPUs to spread over: the configured ones, 1 .. GM_IO_CPUS_MAX. */
unsigned gm_io_ncpus(void);

/* The CPU this thread runs on, read once per request (3-4 ns a call). */
static inline unsigned gm_io_cpu(void)
{
	int cpu = sched_getcpu();

	return cpu < 0 ? 0 : (unsigned)cpu;
}

/* Which of @n per-CPU sets CPU @cpu uses (no division in the usual case). */
static inline unsigned gm_io_cpu_set(unsigned cpu, unsigned n)
{
	return cpu < n ? cpu : cpu % n;
}

/* ---- bounce pool (pool.c) --------------------------------------------- */

/* One CPU's list of free slots, on a cache line of its own. */
struct gm_io_shard {
	pthread_mutex_t lock;
	uint32_t head;                  /* first free slot, or GM_IO_NO_SLOT  */
	uint32_t nfree;
} __attribute__((aligned(64)));

#define GM_IO_NO_SLOT UINT32_MAX

/* Plain anonymous memory, never guest memory: see pool.c for why. */
struct gm_io_pool {
	uint8_t *base;
	uint64_t size;
	uint32_t slot_size;
	unsigned slot_shift;            /* log2(slot_size)                    */
	uint32_t nslots;
	uint32_t *next;                 /* free-list links, one per slot      */
	struct gm_io_shard *shard;
	unsigned nshards;
	/* Sleeping for a slot: only when every list is empty. */
	pthread_mutex_t wait_lock;
	pthread_cond_t freed;
	uint32_t nwaiting;              /* atomic: requests asleep on freed   */
	uint64_t waits, nobufs;         /* atomic                             */
};

int   gm_io_pool_init(struct gm_io_pool *p, uint64_t size, uint32_t slot_size);
void  gm_io_pool_fini(struct gm_io_pool *p);
/* A slot, or NULL with *err = -ENOBUFS when none is free and @nowait;
 * @cpu (gm_io_cpu()) picks the list to try first and to give back to. */
void *gm_io_pool_get(struct gm_io_pool *p, unsigned cpu, bool nowait, int *err);
void  gm_io_pool_put(struct gm_io_pool *p, unsigned cpu, void *slot);
uint64_t gm_io_pool_free(struct gm_io_pool *p);

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

/* @io: the context the memory is for, or NULL (calibration's scratch). */
int  gm_io_mem_init(struct gm_io_mem *m, struct gmem *g, struct gmem_io *io);
/* Restore what is deferred and leave the table: 0 or -EBUSY. */
int  gm_io_mem_fini(struct gm_io_mem *m, struct gmem_io *io);

/* ---- calibration (calib.c) -------------------------------------------- */

#define GM_IO_NSIZES  12u               /* 512 B << 0 .. 11 = 1 MiB           */
#define GM_IO_NSHAPES 3u                /* contiguous, unaligned, scattered   */
#define GM_IO_NFIXED  3u                /* inplace, bounce, kmap              */

struct gm_io_calib {
	double ns[GM_IO_NFIXED][GM_IO_NSHAPES][GM_IO_NSIZES];
	bool measured;
};

/* auto decides from a table precomputed from the calibration and read
 * without a lock (calib.c): one entry per alignment, fragmentation class
 * and size class. Size classes are 512 bytes wide up to GM_IO_LIN_N * 512
 * (64 KiB: most block I/O), then GM_IO_LOG_SUB per doubling up to
 * GM_IO_LOG_OCT doublings more (64 MiB); larger requests share the last. */
#define GM_IO_LIN_STEP   512u
#define GM_IO_LIN_N      128u
#define GM_IO_LOG_SUB    8u
#define GM_IO_LOG_OCT    10u
#define GM_IO_NCLASS     (GM_IO_LIN_N + GM_IO_LOG_SUB * GM_IO_LOG_OCT)
#define GM_IO_NFRAG      9u             /* segments per page: 0, 1/8 .. 1     */

/* What auto needs of a request, gathered while it is validated. */
struct gm_io_shape {
	uint64_t bytes;
	uint64_t pages;                 /* pages touched, summed over segments */
	bool unaligned;                 /* a segment starts or ends mid-page   */
};

/* ---- the context ------------------------------------------------------ */

/* Counted on every request: one set per CPU, on its own cache line. */
struct gm_io_cpu_counts {
	uint64_t requests[GMEM_IO_NPATHS], bytes[GMEM_IO_NPATHS];
	uint64_t errors, short_transfers;
} __attribute__((aligned(64)));

/* Counted on rarer events (conversions come with system calls anyway). */
struct gm_io_counts {
	uint64_t conversions, calibrations, calib_ns;
};

struct gmem_io {
	struct gm_io_mem mem;           /* mem.g NULL: detached by gmem_close  */
	struct gmem_io *next_ctx;       /* the memory's contexts (g->lock)     */
	struct gm_io_pool pool;
	pthread_mutex_t calib_lock;     /* one calibration at a time          */
	struct gm_io_calib calib;
	/* [unaligned][fragmentation class][size class]: an enum gmem_io_path,
	 * written under calib_lock, read with atomic loads and no lock. */
	uint8_t choice[2][GM_IO_NFRAG][GM_IO_NCLASS];
	struct gm_io_counts n;          /* updated with atomic adds            */
	unsigned ncpus;
	struct gm_io_cpu_counts cpu[GM_IO_CPUS_MAX];    /* atomic adds too  */
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
	unsigned cpu;                   /* gm_io_cpu() at the start            */
};

/* ---- target transfer and batches (xfer.c) ------------------------------ */

/* Move the bytes of @iov from/to the target at @off until all are moved,
 * the target ends, or an error: bytes moved, or -errno when an error came
 * before any byte (after some, *err gets it and the count is returned). */
int64_t gm_io_target_xfer(const struct gmem_io_target *t, enum gmem_io_dir dir,
			  const struct iovec *iov, unsigned cnt, uint64_t off, int *err);

void gm_io_run_init(struct gm_io_run *r, struct gmem_io *io, struct gm_io_mem *m,
		    const struct gmem_io_req *req, unsigned cpu);
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

/* ---- copies (copy.c) ---------------------------------------------------- */

#define GM_IO_NT_MIN 4096u      /* below this, plain stores are cheaper  */

/* memcpy to a cold destination: streaming stores from GM_IO_NT_MIN bytes.
 * True when it streamed: the bytes are visible to other threads only after
 * gm_io_copy_fence(). */
bool gm_io_copy_nt(void *dst, const void *src, uint64_t n);
void gm_io_copy_fence(void);

/* ---- the paths ---------------------------------------------------------- */

int gm_io_inplace(struct gm_io_run *r);         /* path_inplace.c          */
int gm_io_bounce(struct gm_io_run *r);          /* path_bounce.c           */
int gm_io_kmap(struct gm_io_run *r);            /* path_kmap.c             */

/* Serve @req on @m with a fixed path, on CPU @cpu (io.c); bytes or -errno,
 * req->done set. */
int64_t gm_io_serve(struct gmem_io *io, struct gm_io_mem *m, struct gmem_io_req *req,
		    enum gmem_io_path path, unsigned cpu);
/* Is @path usable on @m? 0 or -errno. */
int  gm_io_path_ok(const struct gm_io_mem *m, enum gmem_io_path path);

int  gm_io_calibrate(struct gmem_io *io);
void gm_io_calib_defaults(struct gm_io_calib *c);
/* Recompute io->choice from io->calib (calib_lock held, or no other user). */
void gm_io_choice_fill(struct gmem_io *io);
/* The path auto takes for @req, shaped @sh (validated). */
enum gmem_io_path gm_io_choose(struct gmem_io *io, const struct gmem_io_req *req,
			       const struct gm_io_shape *sh);

#endif /* GM_IO_H */

// SPDX-License-Identifier: MIT
/*
 * restore.c - open a new memory holding a saved snapshot.
 *
 * Model: the file's ends are checked first (gm_snap_open: header, footer,
 * END chunk), so a truncated file is refused before any memory is opened.
 * Then a fresh memory is opened, every chunk is read in order and checked,
 * page data goes straight into the memory through its KVM view (which maps
 * every page whatever its state, so nothing is shared to load it), and only
 * once the whole file has been read and found intact are the saved states
 * applied, one gmem_convert() per run that differs from the initial state:
 * runs, never pages. Pages the snapshot does not hold stay holes (reads
 * zero, no memory used). On any failure the new memory is closed: the
 * caller gets either the whole snapshot or nothing.
 *
 * With GMEM_SNAP_LAZY (lazy.c) the walk checks every chunk the same way but
 * only notes where each DATA chunk lies; the states are applied, and then
 * the page data is loaded on first touch and by a background thread.
 *
 * Speed: the loading (reading, checking, decompressing, copying) is done
 * by worker threads (gm_ld_*) while this thread walks the file's
 * structure. A worker copies a payload in one of two ways:
 *  - through the KVM view, its destination first faulted in with one
 *    MADV_POPULATE_WRITE (a page fault per 4 KiB inside the copy costs
 *    more than the copy);
 *  - with pwrite() into the memory's file, where the file takes it (memfd
 *    in small pages): no page table is touched and no page zeroed first;
 *    1280 scattered 64 KiB chunks went in 29-41 ms against 54-79 ms to
 *    fault their pages in alone.
 * shmem lets one writer into a file at a time, so the first worker writes
 * and the others fault, which take the address space's lock only for
 * reading: restoring 8 GiB at 1 % took 69-73 ms so, 78-84 ms with both
 * workers faulting and 88-91 ms with both writing, handing the file's
 * lock back and forth (1 GiB at 100 %: 517, 555 and 602 ms).
 *
 * The file is read with direct I/O into a ring (in.c) that the walk and
 * the workers use in place, where the file system allows and
 * GMEM_SNAP_BUFFERED does not forbid it; otherwise through the page cache,
 * with the kernel's sequential read-ahead.
 *
 * Lock rule: the new memory is not yet visible to anyone, so loading needs
 * no lock; conversions go through the public call, which takes it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <zstd.h>

#include "sys.h"
#include "in.h"
#include "seal.h"
#include "snap.h"
#include "snapshot.h"

/*
 * Page data is loaded by up to GM_LD_WORKERS threads while this one walks
 * the file and checks its structure. Each chunk is handed over by file
 * offset, its payload in the ring or still on disk. The writing worker
 * reads the payload into the job's buffer if need be, checks its hash,
 * decompresses into a buffer of its own and writes. The others fault the
 * destination in, read the payload (a raw one straight into guest memory,
 * a compressed one into the job's buffer), check its hash, and copy or
 * decompress. Chunks cover disjoint guest ranges, so any order will do,
 * and the memory is nobody's until the restore returns: a chunk that fails
 * is reported and the memory closed. Copying, faulting in and decompressing
 * are CPU work; split over the CPUs they keep up with the disk.
 */
#define GM_LD_WORKERS 2
#define GM_LD_JOBS    8

/* The ring holds every queued job's payload and the walk's next chunk. */
_Static_assert((GM_LD_JOBS + 1) * (ZSTD_COMPRESSBOUND(GM_SNAP_CHUNK_MAX) +
				   sizeof(struct gm_snap_chunk)) <= GM_IN_MAX,
	       "the snapshot ring is too small for the loading jobs");
_Static_assert(ZSTD_COMPRESSBOUND(GM_SNAP_CHUNK_MAX) <= GM_IN_SPILL,
	       "a chunk's payload may not be contiguous in the snapshot ring");

enum { GM_JOB_FREE, GM_JOB_READY, GM_JOB_BUSY };

/* Why a job failed, for the message. */
enum gm_ld_fail { GM_LD_READ = 1, GM_LD_HASH, GM_LD_DECODE, GM_LD_WRITE, GM_LD_SEAL };

struct gm_ld_job {
	struct gm_snap_chunk c;
	uint64_t index;         /* chunk number (seeds its hash)               */
	uint64_t hdr_off;       /* file offset of its header, for messages     */
	uint64_t pay_off;       /* file offset of its payload                  */
	bool zstd;              /* compressed: read into buf first             */
	uint8_t *buf;
	const uint8_t *src;     /* the stored payload in the ring, or NULL     */
	int state;
	char why[GM_SNAP_WHY_MAX];  /* GM_LD_DECODE: what was wrong with the frame */
};

struct gm_ld {
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* any job changed state, or stop              */
	struct gm_ld_job job[GM_LD_JOBS];
	pthread_t thread[GM_LD_WORKERS];
	void *dctx[GM_LD_WORKERS];
	unsigned nthreads;
	bool stop;
	int err;                /* first failure: -errno, why, which chunk     */
	enum gm_ld_fail why;
	struct gm_ld_job failed;
	uint8_t *base;          /* the KVM view                                */
	int fd;                 /* the snapshot                                */
	int mem_fd;             /* the memory's file if worker 0 writes it, or -1 */
	uint8_t *bufs;          /* every job's buffer and out, one mapping     */
	size_t bufs_len;
	uint8_t *out;           /* worker 0's decompressed payload, if it writes */
	struct gm_in *in;       /* the file's ring, if read that way           */
	const struct gm_seal *seal;     /* sealed file: payloads opened (seal.h) */
};

struct gm_ld_arg {
	struct gm_ld *u;
	unsigned i;
};

struct gm_restorer {
	struct gmem *g;
	struct gm_snap_reader *r;
	const struct gmem_snapshot_opts *o;
	uint64_t *runs;         /* saved runs, applied after the walk          */
	uint64_t nruns, cap;
	struct gm_lazy_index ix;        /* lazy: where the DATA chunks lie     */
	struct gm_ld *ld;               /* loading workers, if any             */
	struct gm_in in;                /* the file read direct, if r->in      */
	struct gm_ld_arg ld_arg[GM_LD_WORKERS];
	bool ld_failed;                 /* the walk stopped on a worker's error */
	/* Chains: the layer being read (0 the newest) and what it holds. */
	unsigned layer;
	bool diff;                      /* it has a parent                     */
	struct gm_ranges chg, data;     /* its changed pages, its DATA (pages) */
	uint64_t *decided;              /* lazy: pages a newer layer decided   */
};

/* Fault the destination in with one call: far cheaper than a fault per page
 * inside the copy. Advisory; the copy faults in whatever is left. */
static void gm_restore_populate(void *dst, size_t len)
{
	madvise(dst, len, MADV_POPULATE_WRITE);
}

/* Write all of @src to @fd at @off. */
static int gm_ld_pwrite(int fd, const uint8_t *src, size_t n, uint64_t off)
{
	while (n) {
		ssize_t put = pwrite(fd, src, n, (off_t)off);

		if (put < 0 && errno == EINTR)
			continue;
		if (put < 0)
			return -errno;
		if (put == 0)
			return -EIO;
		src += put;
		n -= (size_t)put;
		off += (uint64_t)put;
	}
	return 0;
}

/* Job @j's stored payload, checked against its hash: in the ring, or read
 * from the file into @into. 0 and *@src, or -errno and *@why. */
static int gm_ld_payload(struct gm_ld *u, const struct gm_ld_job *j, uint8_t *into,
			 const uint8_t **src, enum gm_ld_fail *why)
{
	int ret;

	*src = j->src;
	if (!*src) {
		*why = GM_LD_READ;
		ret = gm_snap_pread(u->fd, into, j->c.stored_len, j->pay_off);
		if (ret)
			return ret;
		*src = into;
	}
	*why = GM_LD_HASH;
	if (j->c.hash != gm_snap_chunk_hash(&j->c, j->index, *src))
		return -EINVAL;
	return 0;
}

/* Sealed: open job @j's checked payload @src into @dst (@dst may be @src).
 * A zstd payload is then decoded as chunk *@plain says. */
static int gm_ld_unseal(struct gm_ld *u, const struct gm_ld_job *j, const uint8_t *src,
			uint8_t *dst, struct gm_snap_chunk *plain, enum gm_ld_fail *why)
{
	*why = GM_LD_SEAL;
	*plain = gm_seal_plain(&j->c);
	return gm_seal_open(u->seal, &j->c, j->index, src, dst);
}

/* Load job @j by writing the memory's file (worker 0 only): 0, or -errno
 * and *@why. */
static int gm_ld_job_write(struct gm_ld *u, struct gm_ld_job *j, enum gm_ld_fail *why)
{
	const uint8_t *src;
	int ret;

	struct gm_snap_chunk p = j->c;

	ret = gm_ld_payload(u, j, j->buf, &src, why);
	if (!ret && u->seal) {
		ret = gm_ld_unseal(u, j, src, j->zstd ? j->buf : u->out, &p, why);
		src = j->zstd ? j->buf : u->out;
	}
	if (ret)
		return ret;
	if (j->zstd) {
		*why = GM_LD_DECODE;
		ret = gm_snap_decode(u->dctx[0], &p, src, u->out, j->why, sizeof(j->why));
		if (ret)
			return ret;
		src = u->out;
	}
	*why = GM_LD_WRITE;
	return gm_ld_pwrite(u->mem_fd, src, j->c.raw_len, j->c.first);
}

/* Load job @j through the KVM view: a raw payload not in the ring is read
 * straight into guest memory. 0, or -errno and *@why. */
static int gm_ld_job_map(struct gm_ld *u, unsigned worker, struct gm_ld_job *j,
			 enum gm_ld_fail *why)
{
	uint8_t *dst = u->base + j->c.first;
	const uint8_t *src;
	int ret;

	struct gm_snap_chunk p = j->c;

	gm_restore_populate(dst, j->c.raw_len);
	/* Sealed: the payload is longer than its pages (the tag), so it is
	 * read into the job's buffer and opened into guest memory. */
	ret = gm_ld_payload(u, j, j->zstd || u->seal ? j->buf : dst, &src, why);
	if (!ret && u->seal) {
		ret = gm_ld_unseal(u, j, src, j->zstd ? j->buf : dst, &p, why);
		src = j->zstd ? j->buf : dst;
	}
	if (ret)
		return ret;
	if (j->zstd) {
		*why = GM_LD_DECODE;
		return gm_snap_decode(u->dctx[worker], &p, src, dst, j->why, sizeof(j->why));
	}
	if (src != dst)
		memcpy(dst, src, j->c.raw_len);
	return 0;
}

/* Tell the ring what the queued and running jobs still need. Called with
 * u->mu held. */
static void gm_ld_ring_need(struct gm_ld *u)
{
	uint64_t lo = UINT64_MAX;

	if (!u->in)
		return;
	for (unsigned i = 0; i < GM_LD_JOBS; i++)
		if (u->job[i].state != GM_JOB_FREE && u->job[i].pay_off < lo)
			lo = u->job[i].pay_off;
	gm_in_jobs_need(u->in, lo);
}

static void *gm_ld_main(void *arg)
{
	struct gm_ld_arg *a = arg;
	struct gm_ld *u = a->u;
	bool writes = u->mem_fd >= 0 && a->i == 0;

	pthread_mutex_lock(&u->mu);
	for (;;) {
		struct gm_ld_job *j = NULL;
		enum gm_ld_fail why;
		int ret;

		for (unsigned i = 0; i < GM_LD_JOBS && !j; i++)
			if (u->job[i].state == GM_JOB_READY)
				j = &u->job[i];
		if (!j) {
			if (u->stop)
				break;
			pthread_cond_wait(&u->cv, &u->mu);
			continue;
		}
		j->state = GM_JOB_BUSY;
		pthread_mutex_unlock(&u->mu);
		ret = writes ? gm_ld_job_write(u, j, &why) : gm_ld_job_map(u, a->i, j, &why);
		pthread_mutex_lock(&u->mu);
		if (ret && !u->err) {
			u->err = ret;
			u->why = why;
			u->failed = *j;
		}
		j->state = GM_JOB_FREE;
		gm_ld_ring_need(u);
		pthread_cond_broadcast(&u->cv);
	}
	pthread_mutex_unlock(&u->mu);
	gm_sys_stack_wipe();      /* page data passed through this stack */
	return NULL;
}

/* Report the first failed job against its chunk. */
static int gm_ld_report(struct gm_restorer *x, const struct gm_ld *u)
{
	struct gm_snap_reader *r = x->r;

	r->index = u->failed.index;
	r->chunk_off = u->failed.hdr_off;
	r->chunk = u->failed.c;
	switch (u->why) {
	case GM_LD_READ:
		return gm_snap_bad(r, u->err, "reading the payload: %s", strerror(-u->err));
	case GM_LD_HASH:
		return gm_snap_bad(r, u->err, "checksum mismatch");
	case GM_LD_WRITE:
		return gm_snap_bad(r, u->err, "writing into the memory: %s", strerror(-u->err));
	case GM_LD_SEAL:
		return gm_snap_bad(r, u->err, "authentication failed");
	case GM_LD_DECODE:
		break;
	}
	return gm_snap_bad(r, u->err, "%s", u->failed.why);
}

/* Wait for every queued job, stop the workers, free everything; the first
 * loading failure, reported against its chunk if @say (not when the walk
 * failed first for its own reason, which is the message to keep). */
static int gm_ld_stop(struct gm_restorer *x, bool say)
{
	struct gm_ld *u = x->ld;
	int ret;

	if (!u)
		return 0;
	pthread_mutex_lock(&u->mu);
	u->stop = true;
	pthread_cond_broadcast(&u->cv);
	pthread_mutex_unlock(&u->mu);
	for (unsigned i = 0; i < u->nthreads; i++)
		pthread_join(u->thread[i], NULL);
	ret = u->err;
	if (ret && say)
		ret = gm_ld_report(x, u);       /* sealed: -EBADMSG */
	for (unsigned i = 0; i < GM_LD_WORKERS; i++)
		ZSTD_freeDCtx(u->dctx[i]);
	if (u->bufs)
		munmap(u->bufs, u->bufs_len);
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mu);
	free(u);
	x->ld = NULL;
	return ret;
}

/* Buffers for payloads read from disk, one per job, and for the writing
 * worker's decompressed ones: one mapping, faulted in as used. */
static int gm_ld_bufs(struct gm_ld *u)
{
	size_t one = (ZSTD_compressBound(GM_SNAP_CHUNK_MAX) + 4095) & ~(size_t)4095;
	size_t jobs = one * GM_LD_JOBS;

	u->bufs_len = jobs + (u->mem_fd >= 0 ? GM_SNAP_CHUNK_MAX : 0);
	u->bufs = mmap(NULL, u->bufs_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (u->bufs == MAP_FAILED) {
		u->bufs = NULL;
		return -ENOMEM;
	}
	/* Guest data passes through: no core dump, no child. */
	if (gm_sys_guard(u->bufs, u->bufs_len, true)) {
		munmap(u->bufs, u->bufs_len);
		u->bufs = NULL;
		return -ENOMEM;
	}
	for (unsigned i = 0; i < GM_LD_JOBS; i++)
		u->job[i].buf = u->bufs + i * one;
	if (u->mem_fd >= 0)
		u->out = u->bufs + jobs;
	return 0;
}

/* Start the workers of an eager restore; without them (one CPU, or no
 * thread could start) this thread loads every chunk itself. */
static void gm_ld_start(struct gm_restorer *x)
{
	struct gm_ld *u;

	if (x->o->flags & GMEM_SNAP_LAZY || sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	u = calloc(1, sizeof(*u));
	if (!u)
		return;
	pthread_mutex_init(&u->mu, NULL);
	pthread_cond_init(&u->cv, NULL);
	u->base = x->g->kvm_view;
	u->fd = x->r->fd;
	u->seal = x->r->seal;
	u->mem_fd = x->g->b.writable ? x->g->b.fd : -1;
	x->ld = u;
	if (gm_ld_bufs(u))
		goto fail;
	for (unsigned i = 0; i < GM_LD_WORKERS; i++) {
		x->ld_arg[i] = (struct gm_ld_arg){ .u = u, .i = i };
		u->dctx[i] = ZSTD_createDCtx();
		if (!u->dctx[i] || pthread_create(&u->thread[i], NULL, gm_ld_main, &x->ld_arg[i]))
			break;
		u->nthreads++;
	}
	if (u->nthreads)
		return;
fail:
	gm_ld_stop(x, false);
}

/* Queue DATA chunk @c by its file offset. */
static int gm_ld_queue(struct gm_restorer *x, struct gm_snap_reader *r,
		       const struct gm_snap_chunk *c)
{
	struct gm_ld *u = x->ld;
	struct gm_ld_job *j = NULL;
	int ret;

	pthread_mutex_lock(&u->mu);
	for (;;) {
		for (unsigned i = 0; i < GM_LD_JOBS && !j; i++)
			if (u->job[i].state == GM_JOB_FREE)
				j = &u->job[i];
		if (j || u->err)
			break;
		pthread_cond_wait(&u->cv, &u->mu);
	}
	ret = u->err;
	pthread_mutex_unlock(&u->mu);
	if (ret) {
		x->ld_failed = true;    /* reported by gm_ld_stop() */
		return ret;
	}
	/* A free job is touched by this thread only until it is queued. */
	j->c = *c;
	j->index = r->index;
	j->hdr_off = r->chunk_off;
	j->pay_off = r->pos;
	j->zstd = c->flags & GM_SNAP_CHUNK_ZSTD;
	j->src = NULL;
	ret = gm_snap_skip(r, c);       /* checks that the file holds it */
	if (ret)
		return ret;
	if (u->in) {
		/* Waits for the payload to be read; it then stays in the ring
		 * until the job is done (gm_ld_ring_need). */
		j->src = gm_in_get(u->in, j->pay_off, c->stored_len, &ret);
		if (!j->src)
			return gm_snap_bad(r, ret, "reading the payload: %s", strerror(-ret));
	}
	pthread_mutex_lock(&u->mu);
	j->state = GM_JOB_READY;
	gm_ld_ring_need(u);
	pthread_cond_signal(&u->cv);
	pthread_mutex_unlock(&u->mu);
	return 0;
}

static int gm_restore_on_states(void *ctx, uint64_t first, const uint64_t *runs, uint64_t n)
{
	struct gm_restorer *x = ctx;

	(void)first;    /* the walk checked that runs follow on */
	if (x->nruns + n > x->cap) {
		uint64_t cap = (x->nruns + n) * 2;
		uint64_t *p = realloc(x->runs, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		x->runs = p;
		x->cap = cap;
	}
	memcpy(x->runs + x->nruns, runs, n * sizeof(*runs));
	x->nruns += n;
	return 0;
}

/* A layer with a parent: note its changed pages. */
static int gm_restore_on_changed(void *ctx, uint64_t first, const uint64_t *runs, uint64_t n)
{
	struct gm_restorer *x = ctx;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t len = runs[i] >> 1;

		if (runs[i] & 1 && gm_ranges_add(&x->chg, first, first + len))
			return -ENOMEM;
		first += len;
	}
	return 0;
}

static int gm_restore_on_data(void *ctx, struct gm_snap_reader *r, const struct gm_snap_chunk *c)
{
	struct gm_restorer *x = ctx;

	if (x->o->flags & GMEM_SNAP_LAZY)
		return gm_lazy_note(&x->ix, r, c, x->layer, x->decided);
	if (x->diff && gm_ranges_add(&x->data, c->first >> GM_PAGE_SHIFT,
				     (c->first + c->raw_len) >> GM_PAGE_SHIFT))
		return -ENOMEM;
	if (x->ld)
		return gm_ld_queue(x, r, c);
	gm_restore_populate(x->g->kvm_view + c->first, c->raw_len);
	return gm_snap_load(r, c, x->g->kvm_view + c->first);
}

static void gm_restore_on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct gm_restorer *x = ctx;

	x->o->progress(x->o->progress_ctx, done, total);
}

/* Give every run its saved state. The memory starts all shared or all
 * private (@init); only runs of the other state are converted. */
static int gm_restore_states(struct gm_restorer *x, int init)
{
	uint64_t page = 0, busy;

	for (uint64_t i = 0; i < x->nruns; i++) {
		uint64_t len = x->runs[i] >> 1;
		int to = (int)(x->runs[i] & 1), ret = 0;

		if (to != init)
			ret = gmem_convert(x->g, page << GM_PAGE_SHIFT, len << GM_PAGE_SHIFT,
					   to ? GMEM_SHARED : GMEM_PRIVATE, &busy);
		if (ret == -EINVAL && x->g->b.granule > GMEM_PAGE_SIZE)
			gm_set_error("snapshot %s: page-state run at page %llu (%llu pages) does "
				     "not fit the target's %llu KiB conversion granule", x->r->path,
				     (unsigned long long)page, (unsigned long long)len,
				     (unsigned long long)(x->g->b.granule >> 10));
		else if (ret && !gmem_last_error()[0])
			gm_set_error("snapshot %s: restoring the state of pages %llu..%llu: %s",
				     x->r->path, (unsigned long long)page,
				     (unsigned long long)(page + len - 1), gmem_strerror(ret));
		if (ret)
			return ret;
		page += len;
	}
	return 0;
}

/* The largest memory a restore without a config opens: the host's RAM. */
static uint64_t gm_restore_auto_max(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);

	return pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
}

/* The configuration to open: @cfg checked against the snapshot, or the
 * saved size and flags on the best backend (lazy: memfd, small pages, the
 * backing userfaultfd serves). */
static int gm_restore_cfg(struct gm_snap_reader *r, const struct gmem_config *cfg,
			  bool lazy, struct gmem_config *use)
{
	if (!cfg && r->hdr.mem_size > gm_restore_auto_max()) {
		/* The file chose the size: not more than this host could hold. */
		return gm_snap_bad(r, -EFBIG, "holds %llu bytes of memory, more than this host's "
				   "%llu bytes of RAM; give a gmem_config to restore it",
				   (unsigned long long)r->hdr.mem_size,
				   (unsigned long long)gm_restore_auto_max());
	}
	if (!cfg) {
		*use = (struct gmem_config){
			.size = r->hdr.mem_size,
			.backend = lazy ? GMEM_BACKEND_MEMFD : GMEM_BACKEND_AUTO,
			.vm_fd = -1,
			.flags = r->hdr.mem_flags & (lazy ? GMEM_F_NO_PIN
							  : GMEM_F_HUGE | GMEM_F_NO_PIN),
		};
		return 0;
	}
	if (cfg->size < r->hdr.mem_size)
		return gm_snap_bad(r, -EFBIG, "holds %llu bytes of memory; the target has %llu",
				   (unsigned long long)r->hdr.mem_size,
				   (unsigned long long)cfg->size);
	*use = *cfg;
	return 0;
}

/* A kernel that converts in place hides private pages even from the KVM
 * view: load into a memory made all shared, convert at the end. */
static int gm_restore_open(const struct gmem_config *use, struct gmem **g, int *init)
{
	int ret = gmem_open(use, g);

	if (ret)
		return ret;
	*init = !!(use->flags & GMEM_F_INIT_SHARED);
	if ((*g)->b.inplace && !*init) {
		ret = gmem_convert(*g, 0, (*g)->size, GMEM_SHARED, NULL);
		if (ret) {
			gmem_close(*g);
			return ret;
		}
		*init = 1;
	}
	return 0;
}

void (*gm_snap_opened_hook)(const char *path);

/* Pages a layer marks changed but holds no data for were discarded since
 * its parent: a parent's data there must go. Eager restores only, once the
 * layer's data is in (older layers were loaded before it). */
static int gm_restore_holes(struct gm_restorer *x)
{
	struct gmem *g = x->g;
	uint64_t d = 0;

	for (uint64_t i = 0; i < x->chg.n; i++) {
		uint64_t p = x->chg.v[i][0], end = x->chg.v[i][1];

		while (p < end) {
			uint64_t hole_end = end;
			int ret;

			while (d < x->data.n && x->data.v[d][1] <= p)
				d++;
			if (d < x->data.n && x->data.v[d][0] <= p) {
				p = x->data.v[d][1] < end ? x->data.v[d][1] : end;
				continue;
			}
			if (d < x->data.n && x->data.v[d][0] < end)
				hole_end = x->data.v[d][0];
			/* The memory is nobody's yet: straight to its backing. */
			if (g->b.granule == GMEM_PAGE_SIZE)
				ret = gm_backing_discard(&g->b, p << GM_PAGE_SHIFT,
							 (hole_end - p) << GM_PAGE_SHIFT);
			else
				ret = (memset(g->kvm_view + (p << GM_PAGE_SHIFT), 0,
					      (hole_end - p) << GM_PAGE_SHIFT), 0);
			if (ret)
				return gm_snap_bad(x->r, ret, "discarding pages %llu..%llu: %s",
						   (unsigned long long)p,
						   (unsigned long long)(hole_end - 1), strerror(-ret));
			p = hole_end;
		}
	}
	return 0;
}

/* Mark the pages layer x->layer changed as decided (lazy, newest first). */
static void gm_restore_decide(struct gm_restorer *x, struct gm_snap_reader *r)
{
	uint64_t npages = r->hdr.mem_size >> GM_PAGE_SHIFT;

	if (!x->diff) {
		memset(x->decided, 0xff, (npages + 63) / 64 * 8);
		return;
	}
	for (uint64_t i = 0; i < x->chg.n; i++)
		for (uint64_t p = x->chg.v[i][0]; p < x->chg.v[i][1]; p++)
			x->decided[p / 64] |= 1ull << (p % 64);
}

/* Read one file of the chain: every chunk checked, its data loaded (eager)
 * or noted (lazy), the page states kept if it is the newest. */
static int gm_restore_layer(struct gm_restorer *x, struct gm_snap_chain *ch, unsigned layer)
{
	struct gm_snap_reader *r = &ch->r[layer];
	const struct gm_snap_walk_ops ops = {
		.on_states = layer ? NULL : gm_restore_on_states,
		.on_changed = gm_restore_on_changed,
		.on_data = gm_restore_on_data,
		.on_progress = x->o->progress ? gm_restore_on_progress : NULL,
	};
	int ret;

	x->r = r;
	x->layer = layer;
	x->diff = r->hdr.flags & GM_SNAP_HDR_PARENT;
	x->chg.n = x->data.n = 0;
	x->ld_failed = false;
	gm_ld_start(x);
	if (x->ld && !(x->o->flags & GMEM_SNAP_BUFFERED) && r->file_size >= gm_in_min_file &&
	    !gm_in_open(&x->in, r->fd, r->file_size)) {
		r->in = x->ld->in = &x->in;
	} else if (x->ld) {
		gm_snap_headers_only(r);
	}
	ret = gm_snap_walk(r, &ops, x);
	if (x->ld) {
		/* Every chunk loaded, or why not. */
		int uret = gm_ld_stop(x, !ret || x->ld_failed);

		ret = ret && !x->ld_failed ? ret : uret;
	}
	if (r->in) {
		/* The workers are gone: nothing reads the ring any more. */
		r->in = NULL;
		gm_in_close(&x->in);
	}
	if (!ret && x->diff && !(x->o->flags & GMEM_SNAP_LAZY))
		ret = gm_restore_holes(x);
	if (!ret && x->decided)
		gm_restore_decide(x, r);
	return ret;
}

/* Every file of the chain: eager, oldest first, so that each newer file's
 * pages land over its parent's; lazy, newest first, so that each page is
 * noted from the newest file that decides it. */
static int gm_restore_chain(struct gm_restorer *x, struct gm_snap_chain *ch)
{
	bool lazy = x->o->flags & GMEM_SNAP_LAZY;
	int ret = 0;

	if (lazy && ch->n > 1) {
		x->decided = calloc((x->g->st.npages + 63) / 64, sizeof(uint64_t));
		if (!x->decided)
			return -ENOMEM;
	}
	for (unsigned i = 0; i < ch->n && !ret; i++)
		ret = gm_restore_layer(x, ch, lazy ? i : ch->n - 1 - i);
	x->r = &ch->r[0];
	if (lazy)
		gm_lazy_sort(&x->ix);
	return ret;
}

int gm_snap_restore(const char *path, const struct gmem_config *cfg,
		    const struct gmem_snapshot_opts *o, struct gmem **out)
{
	struct gm_snap_chain ch;
	struct gm_restorer x = { .o = o };
	bool lazy = o->flags & GMEM_SNAP_LAZY;
	struct gmem_config use;
	int ret, init;

	ret = gm_chain_open(&ch, path, o->key);
	if (ret)
		return ret;
	x.r = &ch.r[0];
	if (gm_snap_opened_hook)
		gm_snap_opened_hook(path);
	ret = gm_restore_cfg(x.r, cfg, lazy, &use);
	if (ret)
		goto out_reader;
	ret = gm_restore_open(&use, &x.g, &init);
	if (ret)
		goto out_reader;
	if (lazy && (ret = gm_lazy_supported(x.g)))
		goto out_mem;
	ret = gm_restore_chain(&x, &ch);
	if (!ret)
		ret = gm_restore_states(&x, init);
	if (!ret && lazy) {
		ret = gm_lazy_start(x.g, &ch, &x.ix);   /* takes x.ix */
		x.ix.v = NULL;
	}
	if (ret)
		goto out_mem;
	*out = x.g;
	goto out_runs;

out_mem:
	gmem_close(x.g);
out_runs:
	free(x.ix.v);
	free(x.runs);
	free(x.chg.v);
	free(x.data.v);
	free(x.decided);
out_reader:
	gm_chain_close(&ch);
	return ret;
}

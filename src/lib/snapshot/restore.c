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
 * Speed: each destination range is faulted in with one MADV_POPULATE_WRITE
 * before its payload is copied (a page fault per 4 KiB inside the copy costs
 * more than the copy), raw payloads are read straight into guest memory,
 * the kernel's sequential read-ahead does the prefetching, and compressed
 * chunks are decompressed by worker threads (gm_unz_*) while this thread
 * reads and checks the next ones.
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

#include "snap.h"
#include "snapshot.h"

/* Compressed chunks are decompressed by up to GM_UNZ_WORKERS threads while
 * this one reads and checks the next ones: zstd is CPU-bound and slower
 * than the disk. Chunks cover disjoint guest ranges, so any order will do.
 * Their payloads are checked against their hashes before they are queued. */
#define GM_UNZ_WORKERS 2
#define GM_UNZ_JOBS    8

enum { GM_JOB_FREE, GM_JOB_READY, GM_JOB_BUSY };

struct gm_unz_job {
	struct gm_snap_chunk c;
	uint64_t index, off;    /* chunk number and file offset, for messages  */
	uint8_t *buf;           /* its checked stored payload                  */
	int state;
};

struct gm_unz {
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* any job changed state, or stop              */
	struct gm_unz_job job[GM_UNZ_JOBS];
	pthread_t thread[GM_UNZ_WORKERS];
	void *dctx[GM_UNZ_WORKERS];
	unsigned nthreads;
	bool stop;
	int err;                /* first failure, and which chunk              */
	struct gm_snap_chunk err_c;
	uint64_t err_index, err_off;
	uint8_t *base;          /* the KVM view                                */
};

struct gm_unz_arg {
	struct gm_unz *u;
	unsigned i;
};

struct gm_restorer {
	struct gmem *g;
	struct gm_snap_reader *r;
	const struct gmem_snapshot_opts *o;
	uint64_t *runs;         /* saved runs, applied after the walk          */
	uint64_t nruns, cap;
	struct gm_lazy_index ix;        /* lazy: where the DATA chunks lie     */
	struct gm_unz *unz;             /* decompression workers, if any       */
	struct gm_unz_arg unz_arg[GM_UNZ_WORKERS];
	bool unz_failed;                /* the walk stopped on a worker's error */
};

/* Fault the destination in with one call: far cheaper than a fault per page
 * inside the copy. Advisory; the copy faults in whatever is left. */
static void gm_restore_populate(void *dst, size_t len)
{
	madvise(dst, len, MADV_POPULATE_WRITE);
}

static void *gm_unz_main(void *arg)
{
	struct gm_unz_arg *a = arg;
	struct gm_unz *u = a->u;

	pthread_mutex_lock(&u->mu);
	for (;;) {
		struct gm_unz_job *j = NULL;
		uint8_t *dst;
		int ret;

		for (unsigned i = 0; i < GM_UNZ_JOBS && !j; i++)
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
		dst = u->base + j->c.first;
		gm_restore_populate(dst, j->c.raw_len);
		ret = gm_snap_decode(u->dctx[a->i], &j->c, j->buf, dst);
		pthread_mutex_lock(&u->mu);
		if (ret && !u->err) {
			u->err = ret;
			u->err_c = j->c;
			u->err_index = j->index;
			u->err_off = j->off;
		}
		j->state = GM_JOB_FREE;
		pthread_cond_broadcast(&u->cv);
	}
	pthread_mutex_unlock(&u->mu);
	return NULL;
}

/* Wait for every queued job, stop the workers, free everything; the first
 * decoding failure, reported against its chunk if @say (not when the walk
 * failed first for its own reason, which is the message to keep). */
static int gm_unz_stop(struct gm_restorer *x, bool say)
{
	struct gm_unz *u = x->unz;
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
	if (ret && say) {
		x->r->index = u->err_index;
		x->r->chunk_off = u->err_off;
		x->r->chunk = u->err_c;
		gm_snap_bad(x->r, ret, "zstd frame does not decode to %u bytes", u->err_c.raw_len);
	}
	for (unsigned i = 0; i < GM_UNZ_WORKERS; i++)
		ZSTD_freeDCtx(u->dctx[i]);
	for (unsigned i = 0; i < GM_UNZ_JOBS; i++)
		free(u->job[i].buf);
	pthread_cond_destroy(&u->cv);
	pthread_mutex_destroy(&u->mu);
	free(u);
	x->unz = NULL;
	return ret;
}

/* Start the workers for a compressed snapshot; without them (one CPU, or
 * no thread could start) chunks are decompressed in line. */
static void gm_unz_start(struct gm_restorer *x)
{
	struct gm_unz *u;

	if (!(x->r->hdr.flags & GM_SNAP_HDR_COMPRESSED) || x->o->flags & GMEM_SNAP_LAZY ||
	    sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	u = calloc(1, sizeof(*u));
	if (!u)
		return;
	pthread_mutex_init(&u->mu, NULL);
	pthread_cond_init(&u->cv, NULL);
	u->base = x->g->kvm_view;
	x->unz = u;
	for (unsigned i = 0; i < GM_UNZ_JOBS; i++) {
		u->job[i].buf = malloc(ZSTD_compressBound(GM_SNAP_CHUNK_MAX));
		if (!u->job[i].buf)
			goto fail;
	}
	for (unsigned i = 0; i < GM_UNZ_WORKERS; i++) {
		x->unz_arg[i] = (struct gm_unz_arg){ .u = u, .i = i };
		u->dctx[i] = ZSTD_createDCtx();
		if (!u->dctx[i] || pthread_create(&u->thread[i], NULL, gm_unz_main, &x->unz_arg[i]))
			break;
		u->nthreads++;
	}
	if (u->nthreads)
		return;
fail:
	gm_unz_stop(x, false);
}

/* Read and check zstd chunk @c into a free job and queue it. */
static int gm_unz_queue(struct gm_restorer *x, struct gm_snap_reader *r,
			const struct gm_snap_chunk *c)
{
	struct gm_unz *u = x->unz;
	struct gm_unz_job *j = NULL;
	uint64_t off = r->pos;
	int ret;

	pthread_mutex_lock(&u->mu);
	for (;;) {
		for (unsigned i = 0; i < GM_UNZ_JOBS && !j; i++)
			if (u->job[i].state == GM_JOB_FREE)
				j = &u->job[i];
		if (j || u->err)
			break;
		pthread_cond_wait(&u->cv, &u->mu);
	}
	ret = u->err;
	pthread_mutex_unlock(&u->mu);
	if (ret) {
		x->unz_failed = true;   /* reported by gm_unz_stop() */
		return ret;
	}
	/* A free job is touched by this thread only until it is queued. */
	ret = gm_snap_fetch(r, c, j->buf);
	if (ret)
		return ret;
	j->c = *c;
	j->index = r->index;
	j->off = off;
	pthread_mutex_lock(&u->mu);
	j->state = GM_JOB_READY;
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

static int gm_restore_on_data(void *ctx, struct gm_snap_reader *r, const struct gm_snap_chunk *c)
{
	struct gm_restorer *x = ctx;

	if (x->o->flags & GMEM_SNAP_LAZY)
		return gm_lazy_note(&x->ix, r, c);
	if (x->unz && c->flags & GM_SNAP_CHUNK_ZSTD)
		return gm_unz_queue(x, r, c);
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

/* The configuration to open: @cfg checked against the snapshot, or the
 * saved size and flags on the best backend (lazy: memfd, small pages, the
 * backing userfaultfd serves). */
static int gm_restore_cfg(struct gm_snap_reader *r, const struct gmem_config *cfg,
			  bool lazy, struct gmem_config *use)
{
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

int gm_snap_restore(const char *path, const struct gmem_config *cfg,
		    const struct gmem_snapshot_opts *o, struct gmem **out)
{
	const struct gm_snap_walk_ops ops = {
		.on_states = gm_restore_on_states,
		.on_data = gm_restore_on_data,
		.on_progress = o->progress ? gm_restore_on_progress : NULL,
	};
	struct gm_snap_reader r;
	struct gm_restorer x = { .o = o, .r = &r };
	bool lazy = o->flags & GMEM_SNAP_LAZY;
	struct gmem_config use;
	int ret, init;

	ret = gm_snap_open(&r, path);
	if (ret)
		return ret;
	ret = gm_restore_cfg(&r, cfg, lazy, &use);
	if (ret)
		goto out_reader;
	ret = gm_restore_open(&use, &x.g, &init);
	if (ret)
		goto out_reader;
	if (lazy && (ret = gm_lazy_supported(x.g)))
		goto out_mem;
	gm_unz_start(&x);
	ret = gm_snap_walk(&r, &ops, &x);
	if (x.unz) {
		/* Every chunk decoded, or why not. */
		int uret = gm_unz_stop(&x, !ret || x.unz_failed);

		ret = ret ? ret : uret;
	}
	if (!ret)
		ret = gm_restore_states(&x, init);
	if (!ret && lazy) {
		ret = gm_lazy_start(x.g, &r, &x.ix);    /* takes x.ix */
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
out_reader:
	gm_snap_close(&r);
	return ret;
}

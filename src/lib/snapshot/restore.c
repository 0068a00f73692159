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
 * Lock rule: the new memory is not yet visible to anyone, so loading needs
 * no lock; conversions go through the public call, which takes it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "snap.h"
#include "snapshot.h"

struct gm_restorer {
	struct gmem *g;
	struct gm_snap_reader *r;
	const struct gmem_snapshot_opts *o;
	uint64_t *runs;         /* saved runs, applied after the walk          */
	uint64_t nruns, cap;
	struct gm_lazy_index ix;        /* lazy: where the DATA chunks lie     */
};

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
	ret = gm_snap_walk(&r, &ops, &x);
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

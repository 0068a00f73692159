// SPDX-License-Identifier: MIT
/*
 * snapshot.c - public entry points of snapshots: save, restore, inspect.
 *
 * Model: each call validates its arguments (-EINVAL on anything unknown,
 * reserved fields included, so they can gain meaning later) and calls a
 * worker: save.c writes, restore.c reads into a new memory, and inspect
 * here reads the file's ends, or with GMEM_SNAP_VERIFY every chunk, without
 * any memory. The format is in snap.h and docs/snapshot-format.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "sys.h"
#include "snap.h"
#include "snapshot.h"

static int gm_snap_opts_ok(const struct gmem_snapshot_opts *o)
{
	if (o->flags & ~GMEM_SNAP_ALL) {
		gm_set_error("snapshot: unknown flags %#x", o->flags & ~GMEM_SNAP_ALL);
		return -EINVAL;
	}
	if (o->level && (o->level < ZSTD_minCLevel() || o->level > ZSTD_maxCLevel())) {
		gm_set_error("snapshot: zstd level %d outside %d..%d", o->level,
			     ZSTD_minCLevel(), ZSTD_maxCLevel());
		return -EINVAL;
	}
	for (unsigned i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
		if (o->reserved[i])
			return -EINVAL;
	if (o->live_pause && !(o->flags & GMEM_SNAP_LIVE)) {
		gm_set_error("snapshot: live_pause is for GMEM_SNAP_LIVE saves");
		return -EINVAL;
	}
	return 0;
}

int gmem_snapshot_save_ex(struct gmem *g, const char *path,
			  const struct gmem_snapshot_opts *opts)
{
	const struct gmem_snapshot_opts none = { 0 };
	int ret;

	gm_clear_error();
	if (!g || !path || !path[0])
		return -EINVAL;
	ret = gm_snap_opts_ok(opts ? opts : &none);
	if (ret)
		return ret;
	if (opts && opts->flags & GMEM_SNAP_LAZY) {
		gm_set_error("snapshot: GMEM_SNAP_LAZY is a restore flag");
		return -EINVAL;
	}
	ret = gm_snap_save(g, path, opts ? opts : &none);
	gm_sys_stack_wipe();
	return ret;
}

int gmem_snapshot_save(struct gmem *g, const char *path, unsigned flags)
{
	const struct gmem_snapshot_opts o = { .flags = flags };

	return gmem_snapshot_save_ex(g, path, &o);
}

int gmem_snapshot_restore_ex(const char *path, const struct gmem_config *cfg,
			     const struct gmem_snapshot_opts *opts, struct gmem **out)
{
	const struct gmem_snapshot_opts none = { 0 };
	int ret;

	gm_clear_error();
	if (!path || !out)
		return -EINVAL;
	ret = gm_snap_opts_ok(opts ? opts : &none);
	if (ret)
		return ret;
	if (opts && opts->parent) {
		gm_set_error("snapshot: parent is a save option; a restore follows the "
			     "file's own chain");
		return -EINVAL;
	}
	if (opts && opts->flags & GMEM_SNAP_LIVE) {
		gm_set_error("snapshot: GMEM_SNAP_LIVE is a save flag");
		return -EINVAL;
	}
	ret = gm_snap_restore(path, cfg, opts ? opts : &none, out);
	gm_sys_stack_wipe();
	return ret;
}

int gmem_snapshot_restore(const char *path, const struct gmem_config *cfg, struct gmem **out)
{
	return gmem_snapshot_restore_ex(path, cfg, NULL, out);
}

/* ---- inspect ------------------------------------------------------------ */

struct gm_inspector {
	uint8_t *dst;           /* one decompressed payload                    */
	const struct gmem_snapshot_opts *o;
};

static int gm_inspect_on_data(void *ctx, struct gm_snap_reader *r, const struct gm_snap_chunk *c)
{
	struct gm_inspector *x = ctx;

	return gm_snap_load(r, c, x->dst);
}

static void gm_inspect_on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct gm_inspector *x = ctx;

	x->o->progress(x->o->progress_ctx, done, total);
}

static int gm_inspect_verify(struct gm_snap_reader *r, const struct gmem_snapshot_opts *o)
{
	const struct gm_snap_walk_ops ops = {
		.on_data = gm_inspect_on_data,
		.on_progress = o->progress ? gm_inspect_on_progress : NULL,
	};
	struct gm_inspector x = { .o = o };
	int ret;

	x.dst = gm_sys_guarded_alloc(r->hdr.chunk_max);
	if (!x.dst)
		return -ENOMEM;
	ret = gm_snap_walk(r, &ops, &x);
	gm_sys_guarded_free(x.dst);
	return ret;
}

static void gm_inspect_fill(const struct gm_snap_reader *r, struct gmem_snapshot_info *in)
{
	uint64_t npages = r->hdr.mem_size >> GM_PAGE_SHIFT;

	in->version_major = r->hdr.major;
	in->version_minor = r->hdr.minor;
	in->size = r->hdr.mem_size;
	in->page_size = r->hdr.page_size;
	in->backend = (enum gmem_backend)r->hdr.backend;
	in->mem_flags = r->hdr.mem_flags;
	in->compressed = !!(r->hdr.flags & GM_SNAP_HDR_COMPRESSED);
	in->file_bytes = r->file_size;
	in->shared_pages = r->end.shared_pages;
	in->private_pages = npages - (r->end.shared_pages < npages ? r->end.shared_pages : npages);
	in->runs = r->end.runs;
	in->populated_bytes = r->end.populated;
	in->stored_bytes = r->end.stored;
	in->chunks = r->end.chunks;
	in->data_chunks = r->end.data_chunks;
	in->incremental = !!(r->hdr.flags & GM_SNAP_HDR_PARENT);
	in->sealed = gm_snap_sealed(r);
	in->changed_pages = r->end.changed_pages;
}

static int gm_inspect_parent(const char *path, const struct gm_snap_reader *r,
			     struct gmem_snapshot_info *in)
{
	char *p;

	if (!r->parent[0])
		return 0;
	p = gm_chain_parent_path(path, r->parent);
	if (!p)
		return -ENOMEM;
	snprintf(in->parent, sizeof(in->parent), "%s", p);
	free(p);
	return 0;
}

int gmem_snapshot_inspect(const char *path, unsigned flags,
			  const struct gmem_snapshot_opts *opts,
			  struct gmem_snapshot_info *info)
{
	const struct gmem_snapshot_opts none = { 0 };
	struct gm_snap_reader r;
	int ret;

	gm_clear_error();
	if (!path || !info || flags & ~GMEM_SNAP_VERIFY)
		return -EINVAL;
	ret = gm_snap_opts_ok(opts ? opts : &none);
	if (ret)
		return ret;
	ret = gm_snap_open_key(&r, path, opts ? opts->key : NULL);
	if (ret)
		return ret;
	if (flags & GMEM_SNAP_VERIFY)
		ret = gm_inspect_verify(&r, opts ? opts : &none);
	if (!ret)
		ret = gm_snap_read_parent(&r);
	if (!ret) {
		memset(info, 0, sizeof(*info));
		gm_inspect_fill(&r, info);
		info->verified = !!(flags & GMEM_SNAP_VERIFY);
		ret = gm_inspect_parent(path, &r, info);
	}
	gm_snap_close(&r);
	gm_sys_stack_wipe();
	return ret;
}

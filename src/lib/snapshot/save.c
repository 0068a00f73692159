// SPDX-License-Identifier: MIT
/*
 * save.c - write a snapshot: file header, page-state runs, populated pages,
 * END chunk, footer (snap.h, docs/snapshot-format.md).
 *
 * Model: the whole save runs under g->lock, so no conversion, discard or
 * temporary mapping changes states or contents meanwhile; the guest (through
 * KVM) and devices (through pins) may still write, and what they write
 * lands in the file or not, page by page. Page data is read through the KVM
 * view, which maps every page whatever its state: private pages are never
 * made shared or mapped in the host view.
 *
 * Each chunk is first copied (or compressed) from guest memory into an
 * output arena and hashed there, then the arena goes to the file in large
 * writes. Hashing the copy, not guest memory, keeps every chunk consistent
 * with its checksum even when the guest writes during the save.
 *
 * Atomicity: the file is built as a temporary in the same directory, then
 * fsync, rename over @path, fsync of the directory. A save that fails or is
 * killed leaves an earlier file at @path as it was (a killed one may leave
 * its ".NAME.gmem-XXXXXX" temporary behind).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "snap.h"

/* Arena: payloads queue up to this many bytes before one write(). */
#define GM_ARENA_FLUSH (8u << 20)

struct gm_saver {
	struct gmem *g;
	const struct gmem_snapshot_opts *o;
	int fd;
	char *tmp;              /* temporary file, unlinked on failure          */
	uint8_t *arena;
	size_t len, cap;
	uint64_t off;           /* file offset of arena[0]                      */
	uint64_t index;         /* chunks emitted                               */
	ZSTD_CCtx *cctx;
	struct gm_snap_end end;
	uint64_t total, done;   /* populated bytes, for progress                */
};

static int gm_save_flush(struct gm_saver *s)
{
	size_t put = 0;

	while (put < s->len) {
		ssize_t n = write(s->fd, s->arena + put, s->len - put);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;

			gm_set_error("snapshot: writing %s at offset %llu: %s", s->tmp,
				     (unsigned long long)(s->off + put), strerror(errno));
			return err;
		}
		put += (size_t)n;
	}
	s->off += s->len;
	s->len = 0;
	if (s->o->progress)
		s->o->progress(s->o->progress_ctx, s->done, s->total);
	return 0;
}

/* Room for @need more bytes in the arena, flushing it first if needed. */
static int gm_save_room(struct gm_saver *s, size_t need)
{
	if (s->len + need <= s->cap)
		return 0;
	return gm_save_flush(s);
}

/* The chunk whose payload was just placed after room for its header at
 * arena[len]: write the header in front and account for it. The arena
 * holds payloads of any length back to back, so headers are copied in,
 * never accessed in place (they may be unaligned). */
static int gm_save_emit(struct gm_saver *s, uint32_t type, uint32_t flags, uint64_t first,
			uint32_t raw_len, uint32_t stored_len)
{
	struct gm_snap_chunk c = { .type = type, .flags = flags, .first = first,
				   .raw_len = raw_len, .stored_len = stored_len };
	uint8_t *at = s->arena + s->len;

	c.hash = gm_snap_chunk_hash(&c, s->index, at + sizeof(c));
	memcpy(at, &c, sizeof(c));
	s->index++;
	s->len += sizeof(c) + stored_len;
	return s->len >= GM_ARENA_FLUSH ? gm_save_flush(s) : 0;
}

static int gm_save_header(struct gm_saver *s)
{
	struct gm_snap_header h = {
		.major = GM_SNAP_VERSION_MAJOR,
		.minor = GM_SNAP_VERSION_MINOR,
		.header_size = sizeof(h),
		.page_size = GMEM_PAGE_SIZE,
		.flags = s->o->flags & GMEM_SNAP_COMPRESS ? GM_SNAP_HDR_COMPRESSED : 0,
		.mem_size = s->g->size,
		.backend = s->g->b.kind,
		.mem_flags = s->g->flags,
		.chunk_max = GM_SNAP_CHUNK_MAX,
	};

	memcpy(h.magic, GM_SNAP_MAGIC, sizeof(h.magic));
	h.hash = gm_snap_header_hash(&h);
	memcpy(s->arena, &h, sizeof(h));
	s->len = sizeof(h);
	return 0;
}

static int gm_save_runs(struct gm_saver *s, uint64_t first, const uint64_t *runs, uint64_t n)
{
	uint32_t bytes = (uint32_t)(n * sizeof(*runs));
	int ret = gm_save_room(s, sizeof(struct gm_snap_chunk) + bytes);

	if (ret)
		return ret;
	memcpy(s->arena + s->len + sizeof(struct gm_snap_chunk), runs, bytes);
	return gm_save_emit(s, GM_SNAP_STATES, 0, first, bytes, bytes);
}

/* Page states as runs, GM_SNAP_CHUNK_MAX bytes of runs per chunk. */
static int gm_save_states(struct gm_saver *s)
{
	const struct gm_state *st = &s->g->st;
	const uint64_t per = GM_SNAP_CHUNK_MAX / sizeof(uint64_t);
	uint64_t pos = 0, first = 0, n = 0, *runs;
	int ret = 0;

	runs = malloc(GM_SNAP_CHUNK_MAX);
	if (!runs)
		return -ENOMEM;
	while (pos < st->npages) {
		int cur = gm_state_get(st, pos);
		uint64_t start, len;

		/* Cannot fail: page pos has state cur. */
		gm_state_next_run(st, pos, st->npages - pos, cur, &start, &len);
		if (!n)
			first = pos;
		runs[n++] = gm_snap_run(len, cur);
		s->end.runs++;
		s->end.shared_pages += cur ? len : 0;
		pos = start + len;
		if (n == per || pos == st->npages) {
			ret = gm_save_runs(s, first, runs, n);
			if (ret)
				break;
			n = 0;
		}
	}
	free(runs);
	return ret;
}

/* One DATA chunk of at most GM_SNAP_CHUNK_MAX bytes at @gpa. */
static int gm_save_piece(struct gm_saver *s, uint64_t gpa, uint32_t len)
{
	const uint8_t *src = s->g->kvm_view + gpa;
	size_t bound = s->cctx ? ZSTD_compressBound(len) : len;
	uint8_t *dst;
	uint32_t stored = len, flags = 0;
	int ret;

	ret = gm_save_room(s, sizeof(struct gm_snap_chunk) + (bound > len ? bound : len));
	if (ret)
		return ret;
	dst = s->arena + s->len + sizeof(struct gm_snap_chunk);
	if (s->cctx) {
		size_t z = ZSTD_compress2(s->cctx, dst, bound, src, len);

		/* Keep it raw when zstd does not help: loads faster. */
		if (!ZSTD_isError(z) && z < len) {
			stored = (uint32_t)z;
			flags = GM_SNAP_CHUNK_ZSTD;
		}
	}
	if (!flags)
		memcpy(dst, src, len);
	s->end.data_chunks++;
	s->end.populated += len;
	s->end.stored += stored;
	s->done += len;
	return gm_save_emit(s, GM_SNAP_DATA, flags, gpa, len, stored);
}

static int gm_save_data(struct gm_saver *s)
{
	struct gm_scan scan;
	uint64_t start, len;
	int ret;

	gm_scan_init(&scan, s->g);
	while ((ret = gm_scan_next(&scan, &start, &len)) > 0) {
		for (uint64_t off = 0; off < len; off += GM_SNAP_CHUNK_MAX) {
			uint64_t take = len - off < GM_SNAP_CHUNK_MAX ? len - off
								      : GM_SNAP_CHUNK_MAX;

			ret = gm_save_piece(s, start + off, (uint32_t)take);
			if (ret)
				return ret;
		}
	}
	if (ret < 0)
		gm_set_error("snapshot: finding populated pages: %s", strerror(-ret));
	return ret;
}

static int gm_save_end(struct gm_saver *s)
{
	struct gm_snap_footer f;
	uint64_t end_off;
	int ret;

	ret = gm_save_room(s, sizeof(struct gm_snap_chunk) + sizeof(s->end) + sizeof(f));
	if (ret)
		return ret;
	end_off = s->off + s->len;
	s->end.chunks = s->index;
	memcpy(s->arena + s->len + sizeof(struct gm_snap_chunk), &s->end, sizeof(s->end));
	ret = gm_save_emit(s, GM_SNAP_END, 0, 0, sizeof(s->end), sizeof(s->end));
	if (ret)
		return ret;
	ret = gm_save_room(s, sizeof(f));
	if (ret)
		return ret;
	f.end_offset = end_off;
	memcpy(f.magic, GM_SNAP_END_MAGIC, sizeof(f.magic));
	memcpy(s->arena + s->len, &f, sizeof(f));
	s->len += sizeof(f);
	return gm_save_flush(s);
}

/* Everything that reads the memory. Caller holds g->lock. */
static int gm_save_locked(struct gm_saver *s)
{
	struct gmem *g = s->g;
	int ret;

	if (g->broken)
		return -EIO;
	/* Pages a lazy restore has not loaded yet look like holes to the scan. */
	ret = gm_loader_ensure(g, 0, g->st.npages);
	if (ret)
		return ret;
	if (g->b.inplace && g->st.nshared < g->st.npages) {
		gm_set_error("snapshot: the kernel converts in place and refuses host access "
			     "to private pages; they cannot be saved without sharing them");
		return -EOPNOTSUPP;
	}
	if (s->o->progress) {
		ret = gm_scan_total(g, &s->total);
		if (ret)
			return ret;
	}
	ret = gm_save_header(s);
	if (!ret)
		ret = gm_save_states(s);
	if (!ret)
		ret = gm_save_data(s);
	if (!ret)
		ret = gm_save_end(s);
	return ret;
}

/* Create the temporary file next to @path. */
static int gm_save_tmp(struct gm_saver *s, const char *path)
{
	char *d = strdup(path), *b = strdup(path);
	int ret = 0;

	if (!d || !b || asprintf(&s->tmp, "%s/.%s.gmem-XXXXXX", dirname(d), basename(b)) < 0) {
		s->tmp = NULL;
		ret = -ENOMEM;
		goto out;
	}
	s->fd = mkostemp(s->tmp, O_CLOEXEC);
	if (s->fd < 0) {
		ret = -errno;
		gm_set_error("snapshot: creating a temporary file for %s: %s", path,
			     strerror(errno));
		free(s->tmp);
		s->tmp = NULL;
	}
out:
	free(d);
	free(b);
	return ret;
}

static int gm_fsync_dir(const char *path)
{
	char *d = strdup(path);
	int fd, ret = 0;

	if (!d)
		return -ENOMEM;
	fd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd))
		ret = -errno;
	if (fd >= 0)
		close(fd);
	free(d);
	return ret;
}

/* Make the temporary durable, then atomically the file at @path. */
static int gm_save_commit(struct gm_saver *s, const char *path)
{
	int ret;

	if (fsync(s->fd)) {
		ret = -errno;
		gm_set_error("snapshot: syncing %s: %s", s->tmp, strerror(errno));
		return ret;
	}
	if (rename(s->tmp, path)) {
		ret = -errno;
		gm_set_error("snapshot: renaming %s to %s: %s", s->tmp, path, strerror(errno));
		return ret;
	}
	free(s->tmp);
	s->tmp = NULL;  /* renamed: nothing to unlink any more */
	ret = gm_fsync_dir(path);
	if (ret)
		gm_set_error("snapshot: syncing the directory of %s: %s", path, strerror(-ret));
	return ret;
}

static int gm_save_setup(struct gm_saver *s)
{
	s->cap = GM_ARENA_FLUSH + 2 * sizeof(struct gm_snap_chunk) +
		 ZSTD_compressBound(GM_SNAP_CHUNK_MAX) + 4096;
	s->arena = malloc(s->cap);
	if (!s->arena)
		return -ENOMEM;
	if (!(s->o->flags & GMEM_SNAP_COMPRESS))
		return 0;
	s->cctx = ZSTD_createCCtx();
	if (!s->cctx)
		return -ENOMEM;
	ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_compressionLevel, s->o->level ? s->o->level : 1);
	/* The chunk header has the sizes and the hash already. */
	ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_checksumFlag, 0);
	ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_contentSizeFlag, 1);
	return 0;
}

/* Validated arguments; the whole save. */
int gm_snap_save(struct gmem *g, const char *path, const struct gmem_snapshot_opts *o)
{
	struct gm_saver s = { .g = g, .o = o, .fd = -1 };
	int ret;

	ret = gm_save_setup(&s);
	if (ret)
		goto out;
	ret = gm_save_tmp(&s, path);
	if (ret)
		goto out;
	pthread_mutex_lock(&g->lock);
	ret = gm_save_locked(&s);
	pthread_mutex_unlock(&g->lock);
	if (!ret)
		ret = gm_save_commit(&s, path);
	if (s.tmp)
		unlink(s.tmp);
	close(s.fd);
out:
	free(s.tmp);
	ZSTD_freeCCtx(s.cctx);
	free(s.arena);
	return ret;
}

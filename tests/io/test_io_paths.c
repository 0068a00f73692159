// SPDX-License-Identifier: MIT
/*
 * test_io_paths.c - suite "io": every path moves exactly the bytes of the
 * request, in order, and leaves the memory as it found it.
 *
 * For each path (inplace, bounce, kmap, auto), both directions, a set of
 * sizes (1 B .. 1 MiB), in-page offsets (0, 1, 512, 4095) and segment
 * layouts (one segment; four spread over a 2 MiB region boundary; the same
 * in reverse order), on memory where every 7th page is shared by "the VMM":
 * the bytes the target and the guest hold afterwards are compared (by
 * checksum, then first difference) with what they must hold, bytes around
 * the segments included, and every page's state, the pin and temporary
 * mapping counts are compared with before. Then the same over a file (with
 * an O_DIRECT descriptor) and a pipe.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io_helpers.h"

#define TGT_LEN   (3 * TH_MIB)
#define TGT_OFF   777u
#define MAX_SEGS  4u

enum layout { LAYOUT_ONE, LAYOUT_SPREAD, LAYOUT_REVERSE, NLAYOUTS };

static const uint64_t sizes[] = { 1, 511, 512, 4095, 4096, 4097, 12288, 65536 + 123,
				  TH_MIB };
static const uint64_t aligns[] = { 0, 1, 512, 4095 };

/* Segments of @layout for @size bytes starting @align into a page. The
 * spread layout puts its four pieces around the 2 MiB boundary at 4 MiB,
 * 8 KiB + 3 bytes apart beyond their length. */
static unsigned make_segs(struct gmem_io_seg *s, enum layout l, uint64_t size,
			  uint64_t align)
{
	uint64_t base = 4 * TH_MIB - 2 * TH_PAGE + align, piece, at;
	unsigned n;

	if (l == LAYOUT_ONE || size < MAX_SEGS) {
		s[0] = (struct gmem_io_seg){ base, size };
		return 1;
	}
	piece = size / MAX_SEGS;
	at = base - (size / 2 + 4 * 8195);
	for (n = 0; n < MAX_SEGS; n++) {
		uint64_t len = n == MAX_SEGS - 1 ? size - piece * (MAX_SEGS - 1) : piece;

		s[l == LAYOUT_REVERSE ? MAX_SEGS - 1 - n : n] = (struct gmem_io_seg){ at, len };
		at += len + 8195;
	}
	return MAX_SEGS;
}

/* [lo, hi) covering the segments and a page either side. */
static void span_of(const struct gmem_io_seg *s, unsigned n, uint64_t *lo, uint64_t *hi)
{
	*lo = UINT64_MAX;
	*hi = 0;
	for (unsigned i = 0; i < n; i++) {
		if (s[i].gpa < *lo)
			*lo = s[i].gpa;
		if (s[i].gpa + s[i].len > *hi)
			*hi = s[i].gpa + s[i].len;
	}
	*lo = (*lo & ~(TH_PAGE - 1)) - TH_PAGE;
	*hi = ((*hi + TH_PAGE - 1) & ~(TH_PAGE - 1)) + TH_PAGE;
}

static void share_every_7th(struct gmem *g)
{
	for (uint64_t p = 3; p < IO_MEM / TH_PAGE; p += 7) {
		int ret = gmem_convert(g, p * TH_PAGE, TH_PAGE, GMEM_SHARED, NULL);

		cr_assert_eq(ret, 0, "share page %llu: %d", (unsigned long long)p, ret);
	}
}

struct world {
	struct gmem *g;
	struct gmem_io *io;
	struct gmem_io_target t;
	uint8_t *tgt;
	uint8_t *want, *got;    /* guest span or target, expected / actual */
};

static void run_one(struct world *w, enum gmem_io_path path, enum gmem_io_dir dir,
		    const struct gmem_io_seg *segs, unsigned n)
{
	uint64_t total = io_total(segs, n), lo, hi;
	struct io_picture before = io_picture(w->g);
	struct gmem_io_req q = { .dir = dir, .path = path, .nsegs = n, .segs = segs,
				 .target = &w->t, .off = TGT_OFF };
	char what[160];
	int64_t ret;

	snprintf(what, sizeof(what), "%s %s of %llu bytes at %#llx in %u segment(s)",
		 gmem_io_path_name(path), dir == GMEM_IO_READ ? "read" : "write",
		 (unsigned long long)total, (unsigned long long)segs[0].gpa, n);
	span_of(segs, n, &lo, &hi);
	if (dir == GMEM_IO_READ) {
		io_guest_read(w->g, lo, w->want, hi - lo);
		for (unsigned i = 0, k = 0; i < n; k += (unsigned)segs[i].len, i++)
			memcpy(w->want + (segs[i].gpa - lo), w->tgt + TGT_OFF + k, segs[i].len);
	} else {
		memcpy(w->want, w->tgt, TGT_LEN);
		io_gather(w->g, segs, n, w->want + TGT_OFF);
		io_guest_read(w->g, lo, w->got, hi - lo);   /* guest must not change */
	}
	ret = gmem_io_rw(w->io, &q);
	cr_assert_eq(ret, (int64_t)total, "%s: returned %lld (%s), want %llu", what,
		     (long long)ret, ret < 0 ? gmem_strerror((int)ret) : "bytes",
		     (unsigned long long)total);
	cr_assert_eq(q.done, total, "%s: done %llu, want %llu", what,
		     (unsigned long long)q.done, (unsigned long long)total);
	cr_assert(path == GMEM_IO_AUTO ? q.used != GMEM_IO_AUTO : q.used == path,
		  "%s: used %s", what, gmem_io_path_name(q.used));
	if (dir == GMEM_IO_READ) {
		uint8_t *now = malloc(hi - lo);

		io_guest_read(w->g, lo, now, hi - lo);
		io_expect_bytes(what, now, w->want, hi - lo);
		free(now);
	} else {
		uint8_t *now = malloc(hi - lo);

		io_expect_bytes(what, w->tgt, w->want, TGT_LEN);
		io_guest_read(w->g, lo, now, hi - lo);
		io_expect_bytes("guest after a write", now, w->got, hi - lo);
		free(now);
	}
	io_expect_picture(what, &before, w->g);
	io_picture_free(&before);
}

static void world_open(struct world *w, enum gmem_backend backend)
{
	w->g = th_open(backend, IO_MEM, 0);
	share_every_7th(w->g);
	io_guest_fill(w->g, 11);
	w->io = io_ctx(w->g, 0, 0, 0);
	w->tgt = malloc(TGT_LEN);
	w->want = malloc(TGT_LEN);
	w->got = malloc(TGT_LEN);
	cr_assert(w->tgt && w->want && w->got);
	io_rand_bytes(w->tgt, TGT_LEN, 5);
	w->t = (struct gmem_io_target){ .kind = GMEM_IO_MEMORY, .mem = w->tgt,
					.mem_len = TGT_LEN };
}

static void world_close(struct world *w)
{
	gmem_io_destroy(w->io);
	gmem_close(w->g);
	free(w->tgt);
	free(w->want);
	free(w->got);
}

static void integrity(enum gmem_backend backend, enum gmem_io_path path)
{
	struct gmem_io_seg segs[MAX_SEGS];
	struct world w;

	world_open(&w, backend);
	for (unsigned si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
		for (unsigned ai = 0; ai < sizeof(aligns) / sizeof(aligns[0]); ai++)
			for (unsigned l = 0; l < NLAYOUTS; l++) {
				unsigned n = make_segs(segs, l, sizes[si], aligns[ai]);

				run_one(&w, path, GMEM_IO_READ, segs, n);
				run_one(&w, path, GMEM_IO_WRITE, segs, n);
				io_rand_bytes(w.tgt, TGT_LEN, si * 100 + ai * 10 + l);
			}
	world_close(&w);
}

TH_TEST(io, integrity_inplace, .timeout = 120) { integrity(backend, GMEM_IO_INPLACE); }
TH_TEST(io, integrity_bounce, .timeout = 120) { integrity(backend, GMEM_IO_BOUNCE); }
TH_TEST(io, integrity_kmap, .timeout = 120) { integrity(backend, GMEM_IO_KMAP); }
TH_TEST(io, integrity_auto, .timeout = 120) { integrity(backend, GMEM_IO_AUTO); }

/* A small slot makes bounce move many slot-fulls, and pieces that straddle
 * two of them. */
TH_TEST(io, bounce_small_slots)
{
	struct gmem_io_seg segs[MAX_SEGS];
	struct world w;

	world_open(&w, backend);
	gmem_io_destroy(w.io);
	w.io = io_ctx(w.g, 4 * TH_PAGE, 4096, 0);
	for (unsigned l = 0; l < NLAYOUTS; l++) {
		unsigned n = make_segs(segs, l, 65536 + 123, 1);

		run_one(&w, GMEM_IO_BOUNCE, GMEM_IO_READ, segs, n);
		run_one(&w, GMEM_IO_BOUNCE, GMEM_IO_WRITE, segs, n);
	}
	world_close(&w);
}

/* ---- file and pipe targets ---------------------------------------------- */

static int tmp_file(char *path, uint64_t len, const uint8_t *data)
{
	int fd;

	strcpy(path, "/tmp/gmem-io-test-XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	cr_assert_eq(pwrite(fd, data, len, 0), (ssize_t)len);
	return fd;
}

TH_TEST(io, file_target_direct, .timeout = 60)
{
	static const uint64_t fsizes[] = { 512, 4096, 65536, TH_MIB, 4097 };
	struct gmem_io_seg seg;
	char path[64];
	struct world w;
	uint8_t *back;
	int fd, dfd;

	world_open(&w, backend);
	fd = tmp_file(path, TGT_LEN, w.tgt);
	dfd = open(path, O_RDWR | O_DIRECT);
	unlink(path);
	cr_assert_geq(dfd, 0, "O_DIRECT open: %s", strerror(errno));
	cr_assert_eq(gmem_io_target_file(&w.t, fd, dfd), 0);
	cr_assert_gt(w.t.dio_mem_align, 0);
	back = malloc(TGT_LEN);
	for (unsigned p = 0; p < 4; p++) {
		for (unsigned i = 0; i < sizeof(fsizes) / sizeof(fsizes[0]); i++) {
			struct gmem_io_req q = { .path = io_paths[p], .nsegs = 1, .segs = &seg,
						 .target = &w.t, .off = 4096 };
			int64_t ret;

			seg = (struct gmem_io_seg){ 2 * TH_MIB - 8 * TH_PAGE, fsizes[i] };
			q.dir = GMEM_IO_READ;
			ret = gmem_io_rw(w.io, &q);
			cr_assert_eq(ret, (int64_t)fsizes[i], "%s file read of %llu: %lld",
				     gmem_io_path_name(io_paths[p]),
				     (unsigned long long)fsizes[i], (long long)ret);
			io_guest_read(w.g, seg.gpa, back, seg.len);
			io_expect_bytes("file read", back, w.tgt + 4096, seg.len);
			/* Write it back one page further; the file must follow. */
			q.dir = GMEM_IO_WRITE;
			q.off = 8192;
			ret = gmem_io_rw(w.io, &q);
			cr_assert_eq(ret, (int64_t)fsizes[i], "file write: %lld", (long long)ret);
			memmove(w.tgt + 8192, w.tgt + 4096, seg.len);
			cr_assert_eq(pread(fd, back, TGT_LEN, 0), (ssize_t)TGT_LEN);
			io_expect_bytes("file after write", back, w.tgt, TGT_LEN);
		}
	}
	close(dfd);
	close(fd);
	free(back);
	world_close(&w);
}

struct pipe_feed {
	int fd;
	const uint8_t *data;
	uint64_t len;
};

static void *pipe_writer(void *arg)
{
	struct pipe_feed *f = arg;

	/* Small writes: the reader sees short reads and must go on. */
	for (uint64_t at = 0; at < f->len; at += 1000) {
		uint64_t n = f->len - at < 1000 ? f->len - at : 1000;

		if (write(f->fd, f->data + at, n) != (ssize_t)n)
			break;
	}
	close(f->fd);
	return NULL;
}

TH_TEST(io, pipe_target, .timeout = 60)
{
	struct gmem_io_seg segs[MAX_SEGS];
	struct world w;
	uint8_t *back;

	world_open(&w, backend);
	back = malloc(TGT_LEN);
	for (unsigned p = 0; p < 4; p++) {
		unsigned n = make_segs(segs, LAYOUT_SPREAD, 100000, 3);
		uint64_t total = io_total(segs, n);
		struct gmem_io_target t = { .kind = GMEM_IO_STREAM };
		struct gmem_io_req q = { .dir = GMEM_IO_READ, .path = io_paths[p], .nsegs = n,
					 .segs = segs, .target = &t };
		struct io_picture before = io_picture(w.g);
		struct pipe_feed f;
		pthread_t th;
		int fds[2];
		int64_t ret;

		cr_assert_eq(pipe(fds), 0);
		f = (struct pipe_feed){ fds[1], w.tgt, total };
		t.fd = fds[0];
		pthread_create(&th, NULL, pipe_writer, &f);
		ret = gmem_io_rw(w.io, &q);
		pthread_join(th, NULL);
		close(fds[0]);
		cr_assert_eq(ret, (int64_t)total, "%s pipe read: %lld, want %llu",
			     gmem_io_path_name(io_paths[p]), (long long)ret,
			     (unsigned long long)total);
		io_gather(w.g, segs, n, back);
		io_expect_bytes("pipe read", back, w.tgt, total);
		io_expect_picture("after a pipe read", &before, w.g);
		io_picture_free(&before);
	}
	free(back);
	world_close(&w);
}

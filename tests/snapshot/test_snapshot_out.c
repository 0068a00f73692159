// SPDX-License-Identifier: MIT
/*
 * test_snapshot_out.c - suite "snapshot_out": writing the snapshot file
 * with direct I/O or through the page cache (src/lib/snapshot/out.c).
 *
 * The stream on its own: random lengths, data placed where it can be
 * written as it lies or anywhere else, direct writes refused (EINVAL: the
 * stream goes on buffered) or failing; the file must always be exactly the
 * bytes handed over. Then whole saves: with and without GMEM_SNAP_BUFFERED
 * the files are byte for byte the same, and a direct save leaves the file
 * out of the page cache. Direct tests skip, saying so, where the scratch
 * directory's file system has no direct I/O.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "snapshot/out.h"
#include "snap_th.h"
#include "sys.h"

#define STREAM_MAX (3u << 20)   /* bytes of one stream test */

static uint64_t out_rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A file in @dir, and whether direct I/O works there. */
static int out_file(const char *dir, const char *name, bool need_direct)
{
	int fd = open(snap_file(dir, name, 0), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	cr_assert_geq(fd, 0, "open %s/%s: %s", dir, name, strerror(errno));
	if (need_direct && !gm_out_direct_ok(fd)) {
		close(fd);
		snap_rmdir(dir);
		cr_skip_test("%s: the file system has no direct I/O (statx STATX_DIOALIGN)", dir);
	}
	return fd;
}

/* The file at @fd holds exactly @want[0..@len). */
static void out_expect_file(int fd, const uint8_t *want, size_t len)
{
	uint8_t *got = malloc(len + 1);
	ssize_t n;

	cr_assert_not_null(got);
	n = pread(fd, got, len + 1, 0);
	TH_EQ(n, len);
	for (size_t i = 0; i < len; i++)
		if (got[i] != want[i])
			cr_assert_fail("file byte %zu is %#x, want %#x (of %zu)", i, got[i],
				       want[i], len);
	free(got);
}

/*
 * Hand @fd random stretches of random bytes (1 B .. 300 KiB, now and then
 * empty), placed where gm_out_phase() says about half the time and at a
 * random spot otherwise, then finish; the file must be what was handed.
 * @fail_at >= 0: the write of that number fails with @err.
 */
static void out_stream(int fd, bool direct, uint64_t seed, long fail_at, int err,
		       bool *was_direct)
{
	uint8_t *want = malloc(STREAM_MAX), *room = aligned_alloc(GM_OUT_ALIGN,
								   2 * GM_OUT_ALIGN + 300 * 1024);
	struct gm_out o;
	uint64_t rng = seed, len = 0;
	int ret;

	cr_assert(want && room);
	cr_assert_eq(gm_out_init(&o, fd, "stream", direct), 0);
	*was_direct = o.direct;
	if (fail_at >= 0)
		gm_sys_inject(GM_SYS_WRITE, (unsigned long)fail_at, err);
	while (len < STREAM_MAX - 300 * 1024) {
		size_t n = out_rng(&rng) % 8 ? 1 + out_rng(&rng) % (300 * 1024) : 0;
		size_t at = out_rng(&rng) & 1 ? gm_out_phase(&o) : out_rng(&rng) % GM_OUT_ALIGN;

		for (size_t i = 0; i < n; i++)
			want[len + i] = (uint8_t)out_rng(&rng);
		memcpy(room + at, want + len, n);
		ret = gm_out_put(&o, room, room + at, n);
		if (ret) {
			gm_sys_inject_clear();
			cr_assert_neq(err, EINVAL, "a direct write refused with EINVAL failed "
				      "the stream: %s", gmem_last_error());
			TH_EQ(ret, -err);
			cr_assert(strstr(gmem_last_error(), "writing stream at offset"),
				  "message: '%s'", gmem_last_error());
			goto out;
		}
		len += n;
		TH_EQ(o.off, len);
		if (o.direct)
			TH_EQ(gm_out_phase(&o), len % GM_OUT_ALIGN);
	}
	gm_sys_inject_clear();
	cr_assert_eq(gm_out_finish(&o), 0, "finish: %s", gmem_last_error());
	out_expect_file(fd, want, len);
	cr_assert(fail_at < 0 || err == EINVAL, "write %ld failing with %d went unnoticed",
		  fail_at, err);
out:
	gm_out_destroy(&o);
	free(room);
	free(want);
}

/* @n streams from @seed on, direct or not as asked, and none failing. */
static void out_clean_streams(bool direct, uint64_t seed, unsigned n)
{
	const char *dir = snap_tmpdir();
	bool used;

	for (unsigned i = 0; i < n; i++) {
		int fd = out_file(dir, "s", direct);

		out_stream(fd, direct, seed + i, -1, 0, &used);
		cr_assert_eq(used, direct, "%s", direct ? "direct I/O was available but not used"
						     : "direct I/O used when not asked for");
		close(fd);
	}
	snap_rmdir(dir);
}

Test(snapshot_out, stream_direct)
{
	out_clean_streams(true, 1, 4);
}

Test(snapshot_out, stream_buffered)
{
	out_clean_streams(false, 11, 2);
}

/* A direct write refused with EINVAL, wherever it comes: the stream goes on
 * buffered and the file is still exact. */
Test(snapshot_out, einval_falls_back_to_buffered)
{
	const char *dir = snap_tmpdir();
	bool direct;

	for (long at = 0; at < 4; at++) {
		int fd = out_file(dir, "s", true);

		out_stream(fd, true, 20 + (uint64_t)at, at, EINVAL, &direct);
		cr_assert(direct);
		close(fd);
	}
	snap_rmdir(dir);
}

/* Any other error fails the put that met it, with the offset named. */
Test(snapshot_out, write_errors_fail)
{
	const char *dir = snap_tmpdir();
	static const int errs[] = { EIO, ENOSPC };
	bool direct;

	for (unsigned i = 0; i < 2; i++)
		for (int d = 0; d < 2; d++) {
			int fd = out_file(dir, "s", false);

			out_stream(fd, d && gm_out_direct_ok(fd), 30 + i, 2, errs[i], &direct);
			close(fd);
		}
	snap_rmdir(dir);
}

/* Pages of the file at @path in the page cache. */
static size_t out_cached_pages(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t len = lseek(fd, 0, SEEK_END);
	size_t pages = (size_t)(len + 4095) / 4096, n = 0;
	unsigned char *vec = malloc(pages);
	void *p;

	cr_assert(fd >= 0 && len > 0 && vec);
	p = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, 0);
	cr_assert_neq(p, MAP_FAILED, "mmap %s: %s", path, strerror(errno));
	cr_assert_eq(mincore(p, (size_t)len, vec), 0, "mincore: %s", strerror(errno));
	for (size_t i = 0; i < pages; i++)
		n += vec[i] & 1;
	munmap(p, (size_t)len);
	free(vec);
	close(fd);
	return n;
}

/* The same memory saved direct and buffered gives the same bytes, raw and
 * compressed (GMEM_SNAP_COMPRESS_ALL: its choices do not depend on timing);
 * the direct file is not in the page cache (its last partial page may be:
 * that one is written buffered), the buffered one is. */
TH_TEST(snapshot_out, direct_file_equals_buffered)
{
	const char *dir = snap_tmpdir();
	const char *dpath = snap_file(dir, "direct.snap", 1);
	const char *bpath = snap_file(dir, "buffered.snap", 2);
	static const unsigned flags[] = { 0, GMEM_SNAP_COMPRESS_ALL };
	struct gmem *g = th_open(backend, 32 * TH_MIB, 0);
	int fd = out_file(dir, "probe", true);

	close(fd);
	snap_randomize(g, 41, 35);
	for (unsigned i = 0; i < 2; i++) {
		size_t dlen, blen, dcached, bcached;
		uint8_t *d, *b;
		int ret;

		ret = gmem_snapshot_save(g, dpath, flags[i]);
		cr_assert_eq(ret, 0, "save direct: %d (%s)", ret, gmem_last_error());
		ret = gmem_snapshot_save(g, bpath, flags[i] | GMEM_SNAP_BUFFERED);
		cr_assert_eq(ret, 0, "save buffered: %d (%s)", ret, gmem_last_error());
		dcached = out_cached_pages(dpath);
		bcached = out_cached_pages(bpath);
		d = snap_slurp(dpath, &dlen);
		b = snap_slurp(bpath, &blen);
		TH_EQ(dlen, blen);
		for (size_t k = 0; k < dlen; k++)
			if (d[k] != b[k])
				cr_assert_fail("flags %#x: byte %zu is %#x direct, %#x buffered",
					       flags[i], k, d[k], b[k]);
		cr_assert_leq(dcached, 1, "direct save: %zu of %zu pages in the page cache",
			      dcached, (dlen + 4095) / 4096);
		cr_assert_geq(bcached, blen / 4096 / 2, "buffered save: only %zu of %zu pages "
			      "cached (is the measurement blind?)", bcached, (blen + 4095) / 4096);
		cr_assert_eq(gmem_snapshot_inspect(dpath, GMEM_SNAP_VERIFY, NULL,
						   &(struct gmem_snapshot_info){ 0 }), 0,
			     "verify: %s", gmem_last_error());
		free(d);
		free(b);
	}
	gmem_close(g);
	snap_rmdir(dir);
}

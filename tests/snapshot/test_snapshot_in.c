// SPDX-License-Identifier: MIT
/*
 * test_snapshot_in.c - suite "snapshot_in": reading the snapshot file with
 * direct I/O into a ring (src/lib/snapshot/in.c).
 *
 * The ring on its own: a file several rings long with a ragged end, taken
 * in stretches of random size (up to the largest allowed) that straddle
 * the ring's wrap, with the loaders' hold on old bytes released late; a
 * file cut short under the reader is an error, not a hang. Then whole
 * restores: a memory larger than the ring restores to the same contents
 * and states read direct (the size threshold lowered) and read buffered,
 * raw and compressed. Tests skip,
 * saying so, where the scratch directory's file system has no direct I/O.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "snap_th.h"
#include "snapshot/in.h"
#include "snapshot/out.h"

static uint64_t in_rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A file of @size random bytes at @path; its bytes in *@data. */
static void in_make_file(const char *dir, const char *path, uint64_t size, uint8_t **data)
{
	uint8_t *p = malloc(size);
	uint64_t rng = size;
	int fd;

	cr_assert_not_null(p);
	for (uint64_t i = 0; i + 8 <= size; i += 8) {
		uint64_t v = in_rng(&rng);

		memcpy(p + i, &v, 8);
	}
	for (uint64_t i = size & ~7ull; i < size; i++)
		p[i] = (uint8_t)i;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	if (!gm_out_direct_ok(fd)) {
		close(fd);
		free(p);
		snap_rmdir(dir);
		cr_skip_test("%s: the file system has no direct I/O (statx STATX_DIOALIGN)", dir);
	}
	cr_assert_eq(write(fd, p, size), (ssize_t)size);
	close(fd);
	*data = p;
}

/* The ring over the file at @path: through a descriptor of it, as a
 * restore opens it (the ring reopens that descriptor for direct I/O). */
static int in_open(struct gm_in *in, const char *path, uint64_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret;

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	ret = gm_in_open(in, fd, size);
	close(fd);
	return ret;
}

/* Walk a file of 2.3 rings plus a ragged end in stretches up to the most
 * allowed; the loaders' hold lags the parser by up to a quarter ring and
 * is dropped now and then. Every stretch must be the file's bytes,
 * wherever the ring wraps. */
Test(snapshot_in, ring_walk_matches_file)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "f", 0);
	uint64_t size = GM_IN_RING * 2 + GM_IN_RING / 3 + 1234, rng = 7, off = 0, hold = 0;
	struct gm_in in;
	uint8_t *data;
	unsigned gets = 0;

	in_make_file(dir, path, size, &data);
	cr_assert_eq(in_open(&in, path, size), 0, "gm_in_open: %s", strerror(errno));
	while (off < size) {
		uint64_t left = size - off, most = GM_IN_MAX - (off - hold);
		const uint8_t *p;
		int err = 0;
		size_t n;

		most = most < GM_IN_SPILL ? most : GM_IN_SPILL;
		n = in_rng(&rng) % 16 ? in_rng(&rng) % (1u << 20) : most;

		n = n > left ? (size_t)left : n > most ? most : n ? n : 1;
		p = gm_in_get(&in, off, n, &err);
		cr_assert_not_null(p, "get %zu at %llu: %d", n, (unsigned long long)off, err);
		if (memcmp(p, data + off, n)) {
			for (size_t i = 0; i < n; i++)
				cr_assert_eq(p[i], data[off + i], "byte %llu (get %u of %zu at %llu): "
					     "%#x, want %#x", (unsigned long long)(off + i), gets,
					     n, (unsigned long long)off, p[i], data[off + i]);
		}
		/* A loader holds this stretch until the parser is a quarter ring on. */
		if (off - hold > GM_IN_RING / 4 || !(in_rng(&rng) % 8))
			hold = off;
		gm_in_jobs_need(&in, in_rng(&rng) % 32 ? hold : UINT64_MAX);
		off += n;
		gets++;
	}
	gm_in_close(&in);
	free(data);
	snap_rmdir(dir);
}

/* Requests of the longest length allowed that straddle the ring's wrap,
 * from one byte before it to a whole block before it: each ends in the
 * spill area that repeats the ring's start, as far as its last byte. */
Test(snapshot_in, longest_requests_across_the_wrap)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "f", 0);
	static const uint64_t before[] = { 1, 4096, GM_IN_BLOCK / 2 + 17, GM_IN_BLOCK };
	const unsigned laps = sizeof(before) / sizeof(before[0]);
	uint64_t size = (laps + 1) * (uint64_t)GM_IN_RING;
	struct gm_in in;
	uint8_t *data;

	in_make_file(dir, path, size, &data);
	cr_assert_eq(in_open(&in, path, size), 0);
	for (unsigned i = 0; i < laps; i++) {
		uint64_t off = (i + 1) * (uint64_t)GM_IN_RING - before[i];
		const uint8_t *p;
		int err = 0;

		p = gm_in_get(&in, off, GM_IN_SPILL, &err);
		cr_assert_not_null(p, "get at %llu: %d", (unsigned long long)off, err);
		for (size_t k = 0; k < GM_IN_SPILL; k++)
			if (p[k] != data[off + k])
				cr_assert_eq(p[k], data[off + k], "byte %zu of the get %llu before "
					     "wrap %u: %#x, want %#x", k,
					     (unsigned long long)before[i], i + 1, p[k],
					     data[off + k]);
	}
	gm_in_close(&in);
	free(data);
	snap_rmdir(dir);
}

/* A file cut short under the reader: the parser gets -EIO, never waits
 * forever. */
Test(snapshot_in, file_cut_short_is_an_error)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "f", 0);
	uint64_t size = 3ull * GM_IN_RING, off = 0;
	const uint8_t *p = NULL;
	struct gm_in in;
	uint8_t *data;
	int err = 0;

	in_make_file(dir, path, size, &data);
	cr_assert_eq(in_open(&in, path, size), 0);
	cr_assert_eq(truncate(path, 2 * GM_IN_RING), 0, "truncate: %s", strerror(errno));
	for (; off < size; off += 1u << 20) {
		p = gm_in_get(&in, off, 1u << 20, &err);
		if (!p)
			break;
		gm_in_jobs_need(&in, UINT64_MAX);
	}
	cr_assert_null(p, "read all %llu bytes of a file cut to %llu",
		       (unsigned long long)size, 2ull * GM_IN_RING);
	TH_EQ(err, -EIO);
	cr_assert_geq(off, GM_IN_RING, "failed at %llu, before the ring was even full",
		      (unsigned long long)off);
	gm_in_close(&in);
	free(data);
	snap_rmdir(dir);
}

/* A memory whose snapshot is larger than the ring, restored read direct
 * and read buffered: the same contents and states as the original. */
TH_TEST(snapshot_in, restore_direct_equals_buffered)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "big.snap", 0);
	static const unsigned flags[] = { 0, GMEM_SNAP_COMPRESS_ALL };
	struct gmem *g = th_open(backend, 192 * TH_MIB, 0);
	char probe[300];
	int fd;

	snprintf(probe, sizeof(probe), "%s/probe", dir);
	fd = open(probe, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || !gm_out_direct_ok(fd)) {
		close(fd);
		gmem_close(g);
		snap_rmdir(dir);
		cr_skip_test("%s: the file system has no direct I/O", dir);
	}
	close(fd);
	snap_randomize(g, 77, 90);
	for (unsigned i = 0; i < 2; i++) {
		struct gmem_config cfg = { .size = 192 * TH_MIB, .backend = backend, .vm_fd = -1 };
		struct gmem_snapshot_opts o = { 0 };
		struct gmem_snapshot_info in;
		struct gmem *r;
		int ret;

		ret = gmem_snapshot_save(g, path, flags[i]);
		cr_assert_eq(ret, 0, "save: %d (%s)", ret, gmem_last_error());
		cr_assert_eq(gmem_snapshot_inspect(path, 0, NULL, &in), 0);
		cr_assert_gt(in.file_bytes, GM_IN_RING, "file of %llu bytes does not wrap the ring",
			     (unsigned long long)in.file_bytes);
		for (int buffered = 0; buffered < 2; buffered++) {
			unsigned long rings = __atomic_load_n(&gm_in_opened, __ATOMIC_RELAXED);

			o.flags = buffered ? GMEM_SNAP_BUFFERED : 0;
			gm_in_min_file = 0;     /* the ring for any size */
			ret = gmem_snapshot_restore_ex(path, &cfg, &o, &r);
			gm_in_min_file = GM_IN_MIN_FILE;
			cr_assert_eq(ret, 0, "restore (%s): %d (%s)", buffered ? "buffered" : "direct",
				     ret, gmem_last_error());
			TH_EQ(__atomic_load_n(&gm_in_opened, __ATOMIC_RELAXED) - rings, !buffered);
			snap_expect_same(g, r);
			gmem_close(r);
		}
	}
	gmem_close(g);
	snap_rmdir(dir);
}

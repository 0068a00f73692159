// SPDX-License-Identifier: MIT
/*
 * test_snapshot.c - suite "snapshot": save and restore round trips.
 *
 * Random page states (runs of 1..300 pages) and random contents (half
 * random, half pattern; some pages populated but zero; holes elsewhere) on
 * both backends, with and without compression; restore into the same and
 * the other backend and into a larger memory; sparse 1 TiB memories; what
 * a save must not do (share private pages, leave temporaries behind); bad
 * arguments and a snapshot larger than its target.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "snap_th.h"
#include "sys.h"


#define SZ (32 * TH_MIB)

static struct gmem *open_cfg(enum gmem_backend be, uint64_t size, unsigned flags)
{
	return th_open(be, size, flags);
}

static struct gmem *restore_or_fail(const char *path, enum gmem_backend be, uint64_t size)
{
	struct gmem_config cfg = { .size = size, .backend = be, .vm_fd = -1 };
	struct gmem *r = NULL;
	int ret;

	if (be == GMEM_BACKEND_KVM && th_kvm_unavailable())
		cr_skip_test("kvm backend: %s", th_kvm_unavailable());
	ret = gmem_snapshot_restore(path, &cfg, &r);
	cr_assert_eq(ret, 0, "restore %s into %s: %d (%s): %s", path, gmem_backend_name(be), ret,
		     gmem_strerror(ret), gmem_last_error());
	return r;
}

static void round_trip(enum gmem_backend from, enum gmem_backend to, unsigned flags,
		       uint64_t seed)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = open_cfg(from, SZ, 0), *r;
	struct gmem_snapshot_info in;
	uint64_t filled, populated;
	int ret;

	filled = snap_randomize(g, seed, 30);
	populated = snap_populated_pages(g);
	TH_EQ(populated, filled);
	ret = gmem_snapshot_save(g, path, flags);
	cr_assert_eq(ret, 0, "save: %d (%s)", ret, gmem_last_error());
	ret = gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, NULL, &in);
	cr_assert_eq(ret, 0, "verify: %d (%s)", ret, gmem_last_error());
	TH_EQ(in.populated_bytes, populated * TH_PAGE);
	TH_EQ(in.shared_pages, th_stats(g).shared_pages);
	TH_EQ(in.compressed, !!(flags & (GMEM_SNAP_COMPRESS | GMEM_SNAP_COMPRESS_ALL)));
	/* Adaptive compression may keep any chunk raw, never make one larger. */
	cr_assert_leq(in.stored_bytes, in.populated_bytes, "stored %llu of %llu bytes",
		      (unsigned long long)in.stored_bytes, (unsigned long long)in.populated_bytes);
	if (flags & GMEM_SNAP_COMPRESS_ALL)
		cr_assert_lt(in.stored_bytes, in.populated_bytes * 3 / 4,
			     "compressed %llu of %llu bytes: expected < 3/4",
			     (unsigned long long)in.stored_bytes,
			     (unsigned long long)in.populated_bytes);
	r = restore_or_fail(path, to, SZ);
	/* Holes stay holes: the restored memory uses what the saved one did. */
	TH_EQ(snap_populated_pages(r), populated);
	TH_EQ(th_stats(r).view_mappings, th_stats(g).view_mappings);
	snap_expect_same(g, r);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

TH_TEST(snapshot, round_trip)
{
	round_trip(backend, backend, 0, 1);
}

TH_TEST(snapshot, round_trip_compressed)
{
	round_trip(backend, backend, GMEM_SNAP_COMPRESS_ALL, 2);
}

TH_TEST(snapshot, round_trip_adaptive)
{
	round_trip(backend, backend, GMEM_SNAP_COMPRESS, 6);
}

TH_TEST(snapshot, round_trip_many_seeds)
{
	static const unsigned flags[] = { 0, GMEM_SNAP_COMPRESS, GMEM_SNAP_COMPRESS_ALL };

	for (uint64_t seed = 10; seed < 16; seed++)
		round_trip(backend, backend, flags[seed % 3], seed);
}

TH_TEST(snapshot, cross_backend)
{
	enum gmem_backend other = backend == GMEM_BACKEND_KVM ? GMEM_BACKEND_MEMFD
							      : GMEM_BACKEND_KVM;

	round_trip(backend, other, 0, 3);
	round_trip(backend, other, GMEM_SNAP_COMPRESS_ALL, 4);
}

/* @bytes of pages that compress about 2:1 (half random, half pattern). */
static uint64_t fill_compressible(struct gmem *g, uint64_t bytes)
{
	uint8_t *kv = gmem_kvm_view(g);
	uint64_t rng = 0x2545f4914f6cdd1dull;

	for (uint64_t off = 0; off < bytes; off += 8) {
		uint64_t v = off / 8;

		if (off % TH_PAGE < TH_PAGE / 2) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			v = rng;
		}
		memcpy(kv + off, &v, 8);
	}
	return bytes;
}

/* Adaptive compression compresses when the device is the bottleneck: with
 * every write made to take 20 ms (blocked, off CPU; 50 MiB/s, slower than
 * zstd even under ASan on a loaded machine), every chunk but the few filled
 * before the first write has been timed is compressed. */
TH_TEST(snapshot, adaptive_compresses_for_slow_device)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "slow.snap", 0);
	struct gmem *g = open_cfg(backend, 2 * SZ, 0), *r;
	struct gmem_snapshot_info in;
	uint64_t bytes = fill_compressible(g, 40 * TH_MIB);
	int ret;

	gm_sys_set_delay(GM_SYS_WRITE, 20 * 1000 * 1000);
	ret = gmem_snapshot_save(g, path, GMEM_SNAP_COMPRESS);
	gm_sys_inject_clear();
	cr_assert_eq(ret, 0, "save: %d (%s)", ret, gmem_last_error());
	ret = gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, NULL, &in);
	cr_assert_eq(ret, 0, "verify: %d (%s)", ret, gmem_last_error());
	TH_EQ(in.populated_bytes, bytes);
	cr_assert_lt(in.stored_bytes, bytes * 3 / 4, "slow device: stored %llu of %llu bytes, "
		     "expected < 3/4", (unsigned long long)in.stored_bytes,
		     (unsigned long long)bytes);
	r = restore_or_fail(path, backend, 2 * SZ);
	snap_expect_same(g, r);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

/* A write that fails midway (EIO, ENOSPC) fails the save with its errno and
 * leaves the earlier snapshot at the path intact and no temporary. */
TH_TEST(snapshot, write_error_keeps_old_file)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = open_cfg(backend, SZ, 0);
	struct gmem_snapshot_info before, after;
	static const int errs[] = { EIO, ENOSPC };
	size_t len0, len1;
	uint8_t *old, *now;
	int ret;

	snap_randomize(g, 21, 40);
	cr_assert_eq(gmem_snapshot_save(g, path, 0), 0, "save: %s", gmem_last_error());
	cr_assert_eq(gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, NULL, &before), 0);
	old = snap_slurp(path, &len0);
	snap_randomize(g, 22, 60);
	for (unsigned i = 0; i < 2; i++)
		for (unsigned long skip = 0; skip < 3; skip++) {
			gm_sys_inject(GM_SYS_WRITE, skip, errs[i]);
			ret = gmem_snapshot_save(g, path, i ? GMEM_SNAP_COMPRESS : 0);
			gm_sys_inject_clear();
			TH_EQ(ret, -errs[i]);
			cr_assert(strstr(gmem_last_error(), "writing"), "message: '%s'",
				  gmem_last_error());
			TH_EQ(th_dir_entries(dir), 1);
			now = snap_slurp(path, &len1);
			TH_EQ(len1, len0);
			cr_assert(!memcmp(old, now, len0), "write failure %lu changed the old file",
				  skip);
			free(now);
		}
	cr_assert_eq(gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, NULL, &after), 0);
	TH_EQ(after.populated_bytes, before.populated_bytes);
	free(old);
	gmem_close(g);
	snap_rmdir(dir);
}

/* Memory beyond the snapshot keeps the target's initial state and zeroes. */
TH_TEST(snapshot, into_larger)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = open_cfg(backend, 8 * TH_MIB, 0), *r = NULL;
	struct gmem_config cfg = { .size = 16 * TH_MIB, .backend = backend, .vm_fd = -1,
				   .flags = GMEM_F_INIT_SHARED };
	int ret;

	snap_randomize(g, 5, 50);
	cr_assert_eq(gmem_snapshot_save(g, path, 0), 0, "save: %s", gmem_last_error());
	ret = gmem_snapshot_restore(path, &cfg, &r);
	cr_assert_eq(ret, 0, "restore: %d (%s)", ret, gmem_last_error());
	snap_expect_same(g, r);
	for (uint64_t gpa = 8 * TH_MIB; gpa < 16 * TH_MIB; gpa += TH_PAGE)
		cr_assert_eq(gmem_state(r, gpa), GMEM_SHARED, "gpa %#llx past the snapshot: "
			     "state %d, want shared (INIT_SHARED)", (unsigned long long)gpa,
			     gmem_state(r, gpa));
	TH_EQ(snap_populated_pages(r), snap_populated_pages(g));
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

/* cfg NULL: the saved size, on the best backend. */
Test(snapshot, restore_default_cfg)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = open_cfg(GMEM_BACKEND_MEMFD, 4 * TH_MIB, GMEM_F_NO_PIN), *r = NULL;
	struct gmem_info in;
	int ret;

	snap_randomize(g, 6, 40);
	cr_assert_eq(gmem_snapshot_save(g, path, GMEM_SNAP_COMPRESS), 0, "save: %s",
		     gmem_last_error());
	ret = gmem_snapshot_restore(path, NULL, &r);
	cr_assert_eq(ret, 0, "restore: %d (%s)", ret, gmem_last_error());
	gmem_info(r, &in);
	TH_EQ(in.size, 4 * TH_MIB);
	TH_EQ(in.flags, GMEM_F_NO_PIN);
	snap_expect_same(g, r);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

/* Saving reads private pages without sharing them or changing anything. */
TH_TEST(snapshot, save_keeps_private_private)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = open_cfg(backend, 4 * TH_MIB, 0);
	struct gmem_stats before, after;

	th_fill(g, 0, 64 * TH_PAGE, 7);
	before = th_stats(g);
	cr_assert_eq(gmem_snapshot_save(g, path, 0), 0, "save: %s", gmem_last_error());
	after = th_stats(g);
	TH_EQ(after.conversions, before.conversions);
	TH_EQ(after.shared_pages, 0);
	TH_EQ(after.kmaps, before.kmaps);
	TH_EQ(after.view_syscalls, before.view_syscalls);
	cr_assert(th_read_faults(gmem_host(g, 0)), "private page readable after a save");
	gmem_close(g);
	snap_rmdir(dir);
}

/* A sparse 1 TiB memory costs what it holds, not its size. */
TH_TEST(snapshot, sparse_1t)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = open_cfg(backend, 1ull << 40, 0), *r;
	struct gmem_snapshot_info in;
	struct timespec t0, t1;
	uint8_t *kv = gmem_kvm_view(g);
	double s;

	for (uint64_t i = 0; i < 64; i++)
		memset(kv + i * (16ull << 30) + i * TH_PAGE, (int)i + 1, 3 * TH_PAGE);
	cr_assert_eq(gmem_convert(g, 1ull << 39, 2 * TH_MIB, GMEM_SHARED, NULL), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(gmem_snapshot_save(g, path, 0), 0, "save: %s", gmem_last_error());
	clock_gettime(CLOCK_MONOTONIC, &t1);
	s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_lt(s, 1.0, "saving 1 TiB holding 768 KiB took %.3f s", s);
	cr_assert_eq(gmem_snapshot_inspect(path, 0, NULL, &in), 0);
	TH_EQ(in.populated_bytes, 64 * 3 * TH_PAGE);
	TH_EQ(in.runs, 3);
	cr_assert_lt(in.file_bytes, 64 * 3 * TH_PAGE + 64 * 1024, "file %llu bytes",
		     (unsigned long long)in.file_bytes);
	r = restore_or_fail(path, backend, 1ull << 40);
	TH_EQ(snap_populated_pages(r), 64 * 3);
	for (uint64_t i = 0; i < 64; i++) {
		const uint8_t *p = (uint8_t *)gmem_kvm_view(r) + i * (16ull << 30) + i * TH_PAGE;

		TH_EQ(p[0], i + 1);
		TH_EQ(p[3 * TH_PAGE - 1], i + 1);
	}
	TH_EQ(gmem_state(r, 1ull << 39), GMEM_SHARED);
	TH_EQ(gmem_state(r, (1ull << 39) - TH_PAGE), GMEM_PRIVATE);
	TH_EQ(th_stats(r).shared_pages, 512);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}


/* Success leaves exactly the file; a failed save leaves nothing new. */
Test(snapshot, no_temporaries)
{
	const char *dir = snap_tmpdir();
	struct gmem *g = open_cfg(GMEM_BACKEND_MEMFD, 4 * TH_MIB, 0);
	struct stat sb;
	int ret;

	snap_randomize(g, 8, 20);
	cr_assert_eq(gmem_snapshot_save(g, snap_file(dir, "a.snap", 0), 0), 0);
	cr_assert_eq(gmem_snapshot_save(g, snap_file(dir, "a.snap", 0), GMEM_SNAP_COMPRESS), 0);
	TH_EQ(th_dir_entries(dir), 1);
	cr_assert_eq(stat(snap_file(dir, "a.snap", 0), &sb), 0);
	TH_EQ(sb.st_mode & 0777, 0600);
	ret = gmem_snapshot_save(g, snap_file(dir, "missing/b.snap", 1), 0);
	TH_EQ(ret, -ENOENT);
	cr_assert(strstr(gmem_last_error(), "missing"), "message: '%s'", gmem_last_error());
	TH_EQ(th_dir_entries(dir), 1);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot, bad_arguments)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "a.snap", 0);
	struct gmem *g = open_cfg(GMEM_BACKEND_MEMFD, 2 * TH_MIB, 0), *r = (struct gmem *)&r;
	struct gmem_snapshot_opts o = { .level = 1000 };
	struct gmem_snapshot_info in;

	TH_EQ(gmem_snapshot_save(NULL, path, 0), -EINVAL);
	TH_EQ(gmem_snapshot_save(g, NULL, 0), -EINVAL);
	TH_EQ(gmem_snapshot_save(g, "", 0), -EINVAL);
	TH_EQ(gmem_snapshot_save(g, path, 1u << 7), -EINVAL);
	TH_EQ(gmem_snapshot_save_ex(g, path, &o), -EINVAL);
	o = (struct gmem_snapshot_opts){ .reserved[0] = 1 };
	TH_EQ(gmem_snapshot_save_ex(g, path, &o), -EINVAL);
	TH_EQ(gmem_snapshot_restore(NULL, NULL, &r), -EINVAL);
	TH_EQ(gmem_snapshot_restore(path, NULL, NULL), -EINVAL);
	TH_EQ(gmem_snapshot_restore(path, NULL, &r), -ENOENT);
	cr_assert(strstr(gmem_last_error(), path), "message '%s' names no file",
		  gmem_last_error());
	cr_assert_eq(r, (struct gmem *)&r, "*out written on failure");
	TH_EQ(gmem_snapshot_inspect(path, 1u << 5, NULL, &in), -EINVAL);
	TH_EQ(gmem_snapshot_inspect(path, 0, NULL, NULL), -EINVAL);
	gmem_close(g);
	snap_rmdir(dir);
}

/* A snapshot larger than the target memory: -EFBIG, nothing opened. */
TH_TEST(snapshot, larger_than_target)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "a.snap", 0);
	struct gmem *g = open_cfg(backend, 8 * TH_MIB, 0), *r = (struct gmem *)&r;
	struct gmem_config cfg = { .size = 4 * TH_MIB, .backend = backend, .vm_fd = -1 };
	unsigned fds, maps;

	snap_randomize(g, 9, 10);
	cr_assert_eq(gmem_snapshot_save(g, path, 0), 0);
	fds = snap_open_fds();
	maps = snap_maps();
	TH_EQ(gmem_snapshot_restore(path, &cfg, &r), -EFBIG);
	cr_assert(strstr(gmem_last_error(), "target"), "message: '%s'", gmem_last_error());
	cr_assert_eq(r, (struct gmem *)&r, "*out written on failure");
	TH_EQ(snap_open_fds(), fds);
	if (SNAP_MAPS_EXACT)
		TH_EQ(snap_maps(), maps);
	gmem_close(g);
	snap_rmdir(dir);
}

struct progress_seen {
	uint64_t calls, last_done, total;
	bool backwards;
};

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct progress_seen *p = ctx;

	p->backwards |= done < p->last_done || done > total;
	p->calls++;
	p->last_done = done;
	p->total = total;
}

/* Progress goes forward and ends at its total, for save and restore. */
Test(snapshot, progress)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "a.snap", 0);
	struct gmem *g = open_cfg(GMEM_BACKEND_MEMFD, 64 * TH_MIB, 0), *r;
	struct progress_seen ps = { 0 }, pr = { 0 };
	struct gmem_snapshot_opts o = { .progress = on_progress, .progress_ctx = &ps };
	uint64_t filled = snap_randomize(g, 11, 50);

	cr_assert_eq(gmem_snapshot_save_ex(g, path, &o), 0, "save: %s", gmem_last_error());
	cr_assert(!ps.backwards && ps.calls >= 2, "save progress: %llu calls, backwards %d",
		  (unsigned long long)ps.calls, ps.backwards);
	TH_EQ(ps.total, filled * TH_PAGE);
	TH_EQ(ps.last_done, ps.total);
	o.progress_ctx = &pr;
	cr_assert_eq(gmem_snapshot_restore_ex(path, NULL, &o, &r), 0, "restore: %s",
		     gmem_last_error());
	cr_assert(!pr.backwards && pr.calls >= 2, "restore progress: %llu calls",
		  (unsigned long long)pr.calls);
	snap_expect_same(g, r);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

static uint64_t snap_file_size(const char *path)
{
	struct stat sb;

	cr_assert_eq(stat(path, &sb), 0, "%s", path);
	return (uint64_t)sb.st_size;
}

/* A verifying inspect reports progress the same way, forward to its total;
 * options it cannot take are refused as save and restore refuse them. */
Test(snapshot, inspect_verify_progress)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "a.snap", 0);
	struct gmem *g = open_cfg(GMEM_BACKEND_MEMFD, 64 * TH_MIB, 0);
	struct progress_seen pv = { 0 };
	struct gmem_snapshot_opts o = { .progress = on_progress, .progress_ctx = &pv };
	struct gmem_snapshot_opts bad = { .level = 1000 };
	struct gmem_snapshot_info info;
	uint64_t filled = snap_randomize(g, 12, 40);

	cr_assert_eq(gmem_snapshot_save(g, path, 0), 0, "save: %s", gmem_last_error());
	cr_assert_eq(gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, &o, &info), 0, "%s",
		     gmem_last_error());
	TH_EQ(info.verified, 1);
	cr_assert(!pv.backwards && pv.calls >= 2, "verify progress: %llu calls, backwards %d",
		  (unsigned long long)pv.calls, pv.backwards);
	/* Verify counts the file's bytes it reads: at least the data saved raw,
	 * at most the file. */
	cr_assert(pv.total >= filled * TH_PAGE && pv.total <= snap_file_size(path),
		  "verify total %llu, data %llu, file %llu", (unsigned long long)pv.total,
		  (unsigned long long)(filled * TH_PAGE), (unsigned long long)snap_file_size(path));
	TH_EQ(pv.last_done, pv.total);
	TH_EQ(gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, &bad, &info), -EINVAL);
	cr_assert(strstr(gmem_last_error(), "zstd level 1000"), "%s", gmem_last_error());
	gmem_close(g);
	snap_rmdir(dir);
}

// SPDX-License-Identifier: MIT
/*
 * bench_snapshot.c - snapshot save and restore against a plain sequential
 * write and read of the same bytes to the same filesystem.
 *
 *   snapshot   memories of 1 GiB and 8 GiB (best backend), 1 %, 25 % and
 *              100 % populated in 64 KiB blocks at random, contents half
 *              random and half pattern (zstd gets about 2:1, like much real
 *              memory). For each:
 *                save      gmem_snapshot_save, raw and compressed, each
 *                          against write(2) of the populated byte count from
 *                          an 8 MiB buffer + fsync (what any snapshot file
 *                          costs to make durable);
 *                restore   gmem_snapshot_restore into a fresh memory (open
 *                          included), raw and compressed, against read(2) of
 *                          the baseline file into fresh anonymous memory of
 *                          its size (a restore must fault in and fill its
 *                          pages too; into a reused buffer the baseline
 *                          would measure the disk alone).
 *              Target: library throughput >= 0.8x the baseline's.
 *
 * Files go to $GMEM_BENCH_DIR (default /var/tmp) and are deleted;
 * $GMEM_BENCH_SNAP_MAX_GIB (default 8) drops the larger memories: on a
 * disk writing 250 MB/s the 8 GiB cases alone take minutes. As root
 * the page cache is dropped before every timed read, so both sides read
 * from the disk; otherwise both may read from the cache (said so in a
 * note). One measurement per case, library and baseline alternating: these
 * are seconds of disk I/O each, and the whole benchmark stays near three
 * minutes.
 *
 * CPUs: the benchmark process is pinned to one CPU; this benchmark lifts
 * the pin for its duration (library and baseline alike), since a save
 * compresses on worker threads while it writes, and puts it back after.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "bench.h"

#define BLOCK   (64 * KiB)
#define IOBUF   (8 * MiB)

struct snap_bench {
	char dir[256];
	char raw[300], zst[300], plain[300];
	bool drop;              /* can drop the page cache (root)               */
	uint8_t *buf;           /* the baseline's 8 MiB                          */
};

static void drop_caches(struct snap_bench *b)
{
	int fd;

	if (!b->drop)
		return;
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, "1", 1) != 1)
		b->drop = false;
	if (fd >= 0)
		close(fd);
}

/* Half random, half pattern per page. */
static void fill_page(uint8_t *p, uint64_t *rng, uint64_t page)
{
	uint64_t *w = (uint64_t *)p;

	for (unsigned i = 0; i < 4096 / 16; i++)
		w[i] = rng_next(rng);
	for (unsigned i = 4096 / 16; i < 4096 / 8; i++)
		w[i] = page * 0x100000001ull + i;
}

/* Populate @pct percent of @g's 64 KiB blocks; returns the bytes. */
static uint64_t populate(struct gmem *g, uint64_t size, unsigned pct, uint64_t seed)
{
	uint8_t *kv = gmem_kvm_view(g);
	uint64_t rng = seed, bytes = 0;

	for (uint64_t off = 0; off < size; off += BLOCK) {
		if (pct < 100 && rng_next(&rng) % 100 >= pct)
			continue;
		for (uint64_t p = off; p < off + BLOCK; p += 4096)
			fill_page(kv + p, &rng, p >> 12);
		bytes += BLOCK;
	}
	/* Some state: every other 2 MiB region shared, like a busy guest. */
	for (uint64_t off = 0; off < size; off += 4 * MiB)
		gmem_convert(g, off, 2 * MiB, GMEM_SHARED, NULL);
	return bytes;
}

static int plain_write(struct snap_bench *b, uint64_t bytes, uint64_t *ns)
{
	uint64_t t0 = now_ns(), left = bytes;
	int fd = open(b->plain, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), ret = 0;

	if (fd < 0)
		return -errno;
	while (left && !ret) {
		size_t n = left < IOBUF ? (size_t)left : IOBUF;

		if (write(fd, b->buf, n) != (ssize_t)n)
			ret = -errno ? -errno : -EIO;
		left -= n;
	}
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	*ns = now_ns() - t0;
	return ret;
}

static int plain_read(struct snap_bench *b, uint64_t bytes, uint64_t *ns)
{
	uint64_t t0 = now_ns(), got = 0;
	int fd = open(b->plain, O_RDONLY | O_CLOEXEC), ret = 0;
	uint8_t *dst;
	ssize_t n;

	if (fd < 0)
		return -errno;
	dst = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (dst == MAP_FAILED) {
		close(fd);
		return -errno;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	while (got < bytes && (n = read(fd, dst + got, bytes - got < IOBUF ? bytes - got
									  : IOBUF)) > 0)
		got += (uint64_t)n;
	if (got < bytes)
		ret = -EIO;
	close(fd);
	*ns = now_ns() - t0;
	munmap(dst, bytes);
	return ret;
}

static int lib_save(struct gmem *g, const char *path, unsigned flags, uint64_t *ns)
{
	uint64_t t0 = now_ns();
	int ret = gmem_snapshot_save(g, path, flags);

	*ns = now_ns() - t0;
	if (ret)
		out_fail("gmem_snapshot_save: %s (%s)", gmem_strerror(ret), gmem_last_error());
	return ret;
}

static int lib_restore(const char *path, uint64_t *ns)
{
	struct gmem *r;
	uint64_t t0 = now_ns();
	int ret = gmem_snapshot_restore(path, NULL, &r);

	*ns = now_ns() - t0;
	if (ret) {
		out_fail("gmem_snapshot_restore: %s (%s)", gmem_strerror(ret), gmem_last_error());
		return ret;
	}
	gmem_close(r);
	return 0;
}

/* One library-vs-baseline row set: MiB/s both sides, and their ratio. */
static void report(const char *what, uint64_t bytes, uint64_t lib_ns, uint64_t base_ns,
		   const char *info)
{
	double mib = (double)bytes / (double)MiB, lib = mib / ((double)lib_ns / 1e9);
	double base = mib / ((double)base_ns / 1e9);
	char m[96];

	snprintf(m, sizeof(m), "%s: library", what);
	out_row(m, lib, "MiB/s", info);
	snprintf(m, sizeof(m), "%s: baseline", what);
	out_row(m, base, "MiB/s", "");
	snprintf(m, sizeof(m), "%s: throughput ratio", what);
	out_target(m, lib / base, "x", CMP_GE, 0.8, "library / baseline");
}

static long file_size(const char *path)
{
	FILE *f = fopen(path, "re");
	long n;

	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fclose(f);
	return n;
}

/* Save raw and compressed, and the baseline write, alternating order. */
static int case_save(struct snap_bench *b, struct gmem *g, uint64_t bytes, bool flip)
{
	uint64_t t_raw, t_zst, t_w = 0;
	char info[96];
	int ret;

	if (flip && (ret = plain_write(b, bytes, &t_w)))
		return ret;
	ret = lib_save(g, b->raw, 0, &t_raw);
	if (!ret && !flip)
		ret = plain_write(b, bytes, &t_w);
	if (!ret)
		ret = lib_save(g, b->zst, GMEM_SNAP_COMPRESS, &t_zst);
	if (ret)
		return ret;
	report("save raw", bytes, t_raw, t_w, "write + fsync");
	snprintf(info, sizeof(info), "file %.1f MiB for %.1f MiB of pages",
		 (double)file_size(b->zst) / (double)MiB, (double)bytes / (double)MiB);
	report("save zstd", bytes, t_zst, t_w, info);
	return 0;
}

static int case_restore(struct snap_bench *b, uint64_t bytes, bool flip)
{
	uint64_t t_raw, t_zst, t_r = 0;
	int ret = 0;

	drop_caches(b);
	if (flip && (ret = plain_read(b, bytes, &t_r)))
		return ret;
	drop_caches(b);
	ret = lib_restore(b->raw, &t_raw);
	drop_caches(b);
	if (!ret && !flip)
		ret = plain_read(b, bytes, &t_r);
	drop_caches(b);
	if (!ret)
		ret = lib_restore(b->zst, &t_zst);
	if (ret)
		return ret;
	report("restore raw", bytes, t_raw, t_r, b->drop ? "cold cache" : "cache not dropped");
	report("restore zstd", bytes, t_zst, t_r, b->drop ? "cold cache" : "cache not dropped");
	return 0;
}

static int one_case(struct snap_bench *b, uint64_t size, unsigned pct, unsigned n)
{
	struct gmem *g;
	uint64_t bytes;
	char sz[32];
	int ret;

	out_section("%s, %u %% populated", fmt_size(size, sz, sizeof(sz)), pct);
	ret = open_mem(GMEM_BACKEND_AUTO, size, 0, &g);
	if (ret)
		return ret;
	bytes = populate(g, size, pct, 0x9e3779b97f4a7c15ull + n);
	ret = case_save(b, g, bytes, n & 1);
	/* The source memory goes before restoring: RAM for one copy only. */
	gmem_close(g);
	if (!ret)
		ret = case_restore(b, bytes, n & 1);
	unlink(b->raw);
	unlink(b->zst);
	unlink(b->plain);
	return ret;
}

static int setup(struct snap_bench *b)
{
	const char *base = getenv("GMEM_BENCH_DIR");

	snprintf(b->dir, sizeof(b->dir), "%s/gmem-bench-snap-XXXXXX", base ? base : "/var/tmp");
	if (!mkdtemp(b->dir))
		return -errno;
	snprintf(b->raw, sizeof(b->raw), "%s/raw.snap", b->dir);
	snprintf(b->zst, sizeof(b->zst), "%s/zstd.snap", b->dir);
	snprintf(b->plain, sizeof(b->plain), "%s/plain.bin", b->dir);
	b->buf = malloc(IOBUF);
	if (!b->buf)
		return -ENOMEM;
	for (uint64_t i = 0, rng = 1; i < IOBUF; i += 4096)
		fill_page(b->buf + i, &rng, i >> 12);
	b->drop = geteuid() == 0;
	drop_caches(b);
	return 0;
}

int bench_snapshot(void)
{
	static const struct { uint64_t size; unsigned pct; } cases[] = {
		{ 1 * GiB, 1 }, { 1 * GiB, 25 }, { 1 * GiB, 100 },
		{ 8 * GiB, 1 }, { 8 * GiB, 25 }, { 8 * GiB, 100 },
	};
	const char *max_env = getenv("GMEM_BENCH_SNAP_MAX_GIB");
	uint64_t max = max_env ? strtoull(max_env, NULL, 0) * GiB : 8 * GiB;
	struct snap_bench b = { 0 };
	struct statvfs vfs;
	cpu_set_t pinned, all;
	bool unpinned = false;
	uint64_t avail;
	int ret;

	if (!sched_getaffinity(0, sizeof(pinned), &pinned)) {
		CPU_ZERO(&all);
		for (long i = 0, n = sysconf(_SC_NPROCESSORS_ONLN); i < n && i < CPU_SETSIZE; i++)
			CPU_SET((int)i, &all);
		unpinned = !sched_setaffinity(0, sizeof(all), &all);
	}
	ret = setup(&b);

	if (ret) {
		out_fail("setting up in %s: %s", b.dir, strerror(-ret));
		if (unpinned)
			sched_setaffinity(0, sizeof(pinned), &pinned);
		return 0;
	}
	out_note("%s", unpinned ? "CPU pin lifted for this benchmark: library and baseline may "
				  "use every CPU" : "still pinned to one CPU");
	avail = statvfs(b.dir, &vfs) ? 0 : (uint64_t)vfs.f_bavail * vfs.f_frsize;
	out_note("files in %s (%.0f GiB free); page cache %s before each timed read", b.dir,
		 (double)avail / (double)GiB, b.drop ? "dropped" : "NOT dropped (not root)");
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].size > max) {
			out_skip("%llu GiB: above GMEM_BENCH_SNAP_MAX_GIB",
				 (unsigned long long)(cases[i].size / GiB));
			continue;
		}
		/* Three copies at most: raw, compressed and the baseline file. */
		if (cases[i].size * cases[i].pct / 100 * 3 + GiB > avail) {
			out_skip("%llu GiB at %u %%: not enough free disk",
				 (unsigned long long)(cases[i].size / GiB), cases[i].pct);
			continue;
		}
		if (one_case(&b, cases[i].size, cases[i].pct, i))
			break;
	}
	out_note("baseline: one write(2)/read(2) stream of the populated byte count; "
		 "one measurement per case (seconds of disk I/O each)");
	free(b.buf);
	rmdir(b.dir);
	if (unpinned)
		sched_setaffinity(0, sizeof(pinned), &pinned);
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * bench_snapshot.c - snapshot save and restore against a plain sequential
 * write and read of the same bytes to the same filesystem.
 *
 *   snapshot   memories of 1 GiB and 8 GiB (best backend), 1 %, 25 % and
 *              100 % populated in 64 KiB blocks at random, contents half
 *              random and half pattern (zstd gets about 2:1, like much real
 *              memory). For each:
 *                save      gmem_snapshot_save raw, GMEM_SNAP_COMPRESS
 *                          (adaptive) and GMEM_SNAP_COMPRESS_ALL (all with
 *                          direct I/O where the file system has it), and raw
 *                          with GMEM_SNAP_BUFFERED (through the page cache,
 *                          as the baseline), each against write(2) of the
 *                          populated byte count from an 8 MiB buffer + fsync
 *                          (what any snapshot file costs to make durable);
 *                restore   gmem_snapshot_restore of each file into a fresh
 *                          memory (open included) against read(2) of the
 *                          baseline file into fresh anonymous memory of its
 *                          size (a restore must fault in and fill its pages
 *                          too; into a reused buffer the baseline would
 *                          measure the disk alone).
 *              Target: library throughput >= 0.8x the baseline's, for raw
 *              and GMEM_SNAP_COMPRESS. GMEM_SNAP_COMPRESS_ALL is reported
 *              beside them, not as a target: it trades time for size by
 *              definition; so is the buffered save, which shows what
 *              direct I/O is worth here.
 *
 * Files go to $GMEM_BENCH_DIR (default /var/tmp) and are deleted;
 * $GMEM_BENCH_SNAP_MAX_GIB (default 8) drops the larger memories: on a
 * disk writing 250 MB/s the 8 GiB cases alone take minutes. As root
 * the page cache is dropped before every timed read, so both sides read
 * from the disk; otherwise both may read from the cache (said so in a
 * note). The disk here is a virtio device whose speed swings 2-5x from one
 * second to the next, so each case runs in rounds (library and baseline
 * in one round, their order rotated from round to round) and the median of
 * the per-round ratios is reported: 4 rounds up to 1 GiB, 3 above
 * ($GMEM_BENCH_SNAP_ROUNDS sets it); the whole benchmark takes 11-13 minutes.
 *
 * Deleting: before each timed write (library or baseline) the file it is
 * about to write is removed and the filesystem synced, untimed. The root
 * filesystem here is ext4 mounted with online discard: freeing a 1 GiB
 * file issues a 1 GiB discard to the virtio disk, which took up to seconds
 * and landed in whichever write replaced the file (the rename of an atomic
 * save, the O_TRUNC of the baseline) or came next, and made one
 * measurement 200 MiB/s and the next 1400. Writes to fresh files measure
 * the write; what replacing a file costs depends on the filesystem.
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

/* What one case measures, in the order of its rows. */
enum {
	M_SAVE_RAW, M_SAVE_ZSTD, M_SAVE_ALL, M_SAVE_BUF,
	M_REST_RAW, M_REST_ZSTD, M_REST_ALL, M_N
};
#define SAVES 4         /* library saves per round, M_SAVE_RAW.. */
#define ROUNDS_MAX 16

struct snap_round {
	double lib[M_N];        /* MiB/s                                        */
	double base_w, base_r;  /* MiB/s of the baseline write and read          */
};

struct snap_bench {
	char dir[256];
	char raw[300], zst[300], all[300], cached[300], plain[300];
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

static double mibps(uint64_t bytes, uint64_t ns)
{
	return (double)bytes / (double)MiB / ((double)ns / 1e9);
}

/* The @n measurements of a round, baseline (0) and the files, in an order
 * rotated by @round: a position in a round is not neutral on this disk (a
 * burst allowance drained by the one before), so each measurement takes
 * every position in turn. */
static unsigned round_op(unsigned round, unsigned k, unsigned n)
{
	return (k + round) % n;
}

/* One round of saves: the baseline write and the library raw, adaptive
 * zstd, zstd on every chunk and raw through the page cache. */
static int round_save(struct snap_bench *b, struct gmem *g, uint64_t bytes, unsigned round,
		      struct snap_round *r)
{
	static const unsigned flags[SAVES] = { 0, GMEM_SNAP_COMPRESS, GMEM_SNAP_COMPRESS_ALL,
					       GMEM_SNAP_BUFFERED };
	const char *path[SAVES] = { b->raw, b->zst, b->all, b->cached };
	uint64_t ns = 0;
	int ret;

	for (unsigned k = 0; k < SAVES + 1; k++) {
		unsigned op = round_op(round, k, SAVES + 1);

		/* Every save writes a new file: see "Deleting" above. */
		unlink(op ? path[op - 1] : b->plain);
		sync();
		if (!op) {
			ret = plain_write(b, bytes, &ns);
			r->base_w = mibps(bytes, ns);
		} else {
			ret = lib_save(g, path[op - 1], flags[op - 1], &ns);
			r->lib[M_SAVE_RAW + op - 1] = mibps(bytes, ns);
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* One round of restores, each from a cold cache: the baseline read and
 * the three files. */
static int round_restore(struct snap_bench *b, uint64_t bytes, unsigned round,
			 struct snap_round *r)
{
	const char *path[] = { b->raw, b->zst, b->all };
	uint64_t ns = 0;
	int ret;

	for (unsigned k = 0; k < 4; k++) {
		unsigned op = round_op(round, k, 4);

		drop_caches(b);
		if (!op) {
			ret = plain_read(b, bytes, &ns);
			r->base_r = mibps(bytes, ns);
		} else {
			ret = lib_restore(path[op - 1], &ns);
			r->lib[M_REST_RAW + op - 1] = mibps(bytes, ns);
		}
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * One untimed write of the case's size first. This machine is itself a VM
 * whose host backs its memory on first touch: the first measurement of a
 * large case put its page cache in never-touched memory and ran at half
 * the speed of the same write a moment later (8 GiB: 240-480 MiB/s against
 * 850-1400), whichever side it was.
 */
static int warm_up(struct snap_bench *b, uint64_t bytes)
{
	uint64_t ns;
	int ret = plain_write(b, bytes, &ns);

	unlink(b->plain);
	sync();
	return ret;
}

/* Medians over @n rounds of measurement @m: library, baseline, ratio. */
static void report(const struct snap_round *r, unsigned n, unsigned m, const char *info)
{
	static const char *const name[M_N] = {
		"save raw", "save zstd", "save zstd-all", "save raw buffered",
		"restore raw", "restore zstd", "restore zstd-all",
	};
	double lib[ROUNDS_MAX], base[ROUNDS_MAX], ratio[ROUNDS_MAX];
	bool save = m < M_REST_RAW;
	bool target = m != M_SAVE_ALL && m != M_SAVE_BUF && m != M_REST_ALL;
	char what[96];

	for (unsigned i = 0; i < n; i++) {
		lib[i] = r[i].lib[m];
		base[i] = save ? r[i].base_w : r[i].base_r;
		ratio[i] = lib[i] / base[i];
	}
	snprintf(what, sizeof(what), "%s: library", name[m]);
	out_row(what, median(lib, n), "MiB/s", info);
	snprintf(what, sizeof(what), "%s: baseline", name[m]);
	out_row(what, median(base, n), "MiB/s", save ? "write + fsync" : "read, cold cache");
	snprintf(what, sizeof(what), "%s: throughput ratio", name[m]);
	if (target)
		out_target(what, median(ratio, n), "x", CMP_GE, 0.8,
			   "library / baseline, median of rounds");
	else
		out_row(what, median(ratio, n), "x", m == M_SAVE_BUF ?
			"not a target: shows what direct I/O is worth" :
			"not a target: compresses whatever it costs");
}

static int one_case(struct snap_bench *b, uint64_t size, unsigned pct, unsigned n,
		    unsigned rounds)
{
	struct snap_round r[ROUNDS_MAX];
	struct gmem *g;
	uint64_t bytes;
	char sz[32], info[2][96];
	int ret = 0;

	out_section("%s, %u %% populated, %u round%s", fmt_size(size, sz, sizeof(sz)), pct,
		    rounds, rounds > 1 ? "s" : "");
	ret = open_mem(GMEM_BACKEND_AUTO, size, 0, &g);
	if (ret)
		return ret;
	bytes = populate(g, size, pct, 0x9e3779b97f4a7c15ull + n);
	ret = warm_up(b, bytes);
	for (unsigned i = 0; i < rounds && !ret; i++)
		ret = round_save(b, g, bytes, n + i, &r[i]);
	/* The source memory goes before restoring: RAM for one copy only. */
	gmem_close(g);
	for (unsigned i = 0; i < rounds && !ret; i++)
		ret = round_restore(b, bytes, n + i, &r[i]);
	if (!ret) {
		snprintf(info[0], sizeof(info[0]), "file %.1f MiB for %.1f MiB of pages",
			 (double)file_size(b->zst) / (double)MiB, (double)bytes / (double)MiB);
		snprintf(info[1], sizeof(info[1]), "file %.1f MiB",
			 (double)file_size(b->all) / (double)MiB);
		for (unsigned m = 0; m < M_N; m++)
			report(r, rounds, m, m == M_SAVE_ZSTD ? info[0] :
					     m == M_SAVE_ALL ? info[1] : "");
	}
	unlink(b->raw);
	unlink(b->zst);
	unlink(b->all);
	unlink(b->cached);
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
	snprintf(b->all, sizeof(b->all), "%s/zstd-all.snap", b->dir);
	snprintf(b->cached, sizeof(b->cached), "%s/buffered.snap", b->dir);
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
	const char *rounds_env = getenv("GMEM_BENCH_SNAP_ROUNDS");
	const char *only = getenv("GMEM_BENCH_SNAP_ONLY");
	bool only_incr = only && !strcmp(only, "incr");
	bool only_live = only && !strcmp(only, "live");
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
	/* GMEM_BENCH_SNAP_ONLY=incr|live: that case alone. */
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]) && !only; i++) {
		if (cases[i].size > max) {
			out_skip("%llu GiB: above GMEM_BENCH_SNAP_MAX_GIB",
				 (unsigned long long)(cases[i].size / GiB));
			continue;
		}
		/* Five copies at most: raw, buffered, two compressed and the
		 * baseline file. */
		if (cases[i].size * cases[i].pct / 100 * 5 + GiB > avail) {
			out_skip("%llu GiB at %u %%: not enough free disk",
				 (unsigned long long)(cases[i].size / GiB), cases[i].pct);
			continue;
		}
		unsigned rounds = cases[i].size > GiB ? 3 : 4;

		if (rounds_env)
			rounds = (unsigned)strtoul(rounds_env, NULL, 0);
		rounds = rounds < 1 ? 1 : rounds > ROUNDS_MAX ? ROUNDS_MAX : rounds;
		if (one_case(&b, cases[i].size, cases[i].pct, i, rounds))
			break;
	}
	out_note("baseline: one write(2)/read(2) stream of the populated byte count; "
		 "ratios are medians of per-round ratios");
	if (!only_live)
		bench_snapshot_incr(b.dir, GiB);
	if (!only_incr)
		bench_snapshot_live(b.dir);
	if (!only)
		bench_snapshot_seal();  /* with a key vs without, same CPUs */
	free(b.buf);
	rmdir(b.dir);
	if (unpinned)
		sched_setaffinity(0, sizeof(pinned), &pinned);
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * bench_snapshot_incr.c - incremental snapshots (part of gmem-bench
 * snapshot): a tracked memory fully populated, 1 % of its pages written at
 * random, then a full save against a save of only the changed pages, and a
 * restore of the two-file chain against a plain read(2) of those two files.
 *
 * Targets (issue 15): the incremental file at most 3 % of the full one,
 * its save at most 10 % of the full save's time, and the chain's restore
 * at least 0.8x the plain read's throughput. Medians over rounds of
 * per-round ratios; each round does both sides back to back, the page
 * cache dropped before each timed read (root).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

#define INCR_ROUNDS 4
#define INCR_IOBUF  (8 * MiB)

struct incr {
	char full[300], diff[300];
	bool drop;
};

static void incr_drop(struct incr *x)
{
	int fd = x->drop ? open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC) : -1;

	if (fd >= 0 && write(fd, "1", 1) != 1)
		x->drop = false;
	if (fd >= 0)
		close(fd);
}

/* Read @path whole with read(2) into fresh anonymous memory at @dst. */
static int incr_read_file(const char *path, uint8_t *dst, uint64_t *got)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	while ((n = read(fd, dst + *got, INCR_IOBUF)) > 0)
		*got += (uint64_t)n;
	close(fd);
	return n < 0 ? -errno : 0;
}

/* The baseline: the chain's two files read plainly, the same bytes a
 * restore reads, into fresh memory as a restore fills a fresh memory. */
static int incr_plain_read(struct incr *x, uint64_t bytes, uint64_t *ns)
{
	uint64_t t0 = now_ns(), got = 0;
	uint8_t *dst = mmap(NULL, bytes + INCR_IOBUF, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret;

	if (dst == MAP_FAILED)
		return -ENOMEM;
	ret = incr_read_file(x->full, dst, &got);
	if (!ret)
		ret = incr_read_file(x->diff, dst, &got);
	*ns = now_ns() - t0;
	munmap(dst, bytes + INCR_IOBUF);
	return ret ? ret : got == bytes ? 0 : -EIO;
}

static int incr_save(struct gmem *g, const char *path, const char *parent, uint64_t *ns)
{
	struct gmem_snapshot_opts o = { .parent = parent };
	uint64_t t0 = now_ns();
	int ret = gmem_snapshot_save_ex(g, path, &o);

	*ns = now_ns() - t0;
	if (ret)
		out_fail("gmem_snapshot_save_ex: %s (%s)", gmem_strerror(ret), gmem_last_error());
	return ret;
}

/* Write 1 % of the pages, at random. */
static void incr_touch(struct gmem *g, uint64_t size, uint64_t *rng)
{
	uint8_t *kv = gmem_kvm_view(g);
	uint64_t pages = size / 4096;

	for (uint64_t i = 0; i < pages / 100; i++) {
		uint64_t p = rng_next(rng) % pages;

		*(uint64_t *)(kv + p * 4096 + (rng_next(rng) % 512) * 8) = rng_next(rng);
	}
}

struct incr_round {
	double size_ratio, time_ratio, read_ratio;
	double full_ms, diff_ms, chain_mibps, plain_mibps;
};

static int incr_round(struct incr *x, struct gmem *g, uint64_t size, uint64_t *rng,
		      unsigned round, struct incr_round *r)
{
	uint64_t full_ns, diff_ns, rest_ns = 0, read_ns = 0, bytes;
	long fs, ds;
	struct gmem *m;
	int ret;

	ret = incr_save(g, x->full, NULL, &full_ns);
	if (ret)
		return ret;
	incr_touch(g, size, rng);
	ret = incr_save(g, x->diff, x->full, &diff_ns);
	if (ret)
		return ret;
	fs = file_size(x->full);
	ds = file_size(x->diff);
	bytes = (uint64_t)(fs + ds);
	/* Which goes first alternates by round: the first read of a round
	 * gets this disk's burst allowance (see bench_snapshot.c). */
	for (unsigned k = 0; k < 2; k++) {
		incr_drop(x);
		if ((k + round) % 2) {
			ret = incr_plain_read(x, bytes, &read_ns);
			if (ret)
				return ret;
			continue;
		}
		uint64_t t0 = now_ns();

		ret = gmem_snapshot_restore(x->diff, NULL, &m);
		rest_ns = now_ns() - t0;
		if (ret) {
			out_fail("gmem_snapshot_restore: %s (%s)", gmem_strerror(ret),
				 gmem_last_error());
			return ret;
		}
		gmem_close(m);
	}
	r->size_ratio = (double)ds / (double)fs;
	r->time_ratio = (double)diff_ns / (double)full_ns;
	r->full_ms = (double)full_ns / 1e6;
	r->diff_ms = (double)diff_ns / 1e6;
	r->chain_mibps = (double)bytes / (double)MiB / ((double)rest_ns / 1e9);
	r->plain_mibps = (double)bytes / (double)MiB / ((double)read_ns / 1e9);
	r->read_ratio = r->chain_mibps / r->plain_mibps;
	return 0;
}

#define INCR_MEDIAN(r, n, field)                                                \
	({                                                                      \
		double v_[INCR_ROUNDS];                                         \
		for (unsigned i_ = 0; i_ < (n); i_++)                           \
			v_[i_] = (r)[i_].field;                                 \
		median(v_, (n));                                                \
	})

int bench_snapshot_incr(const char *dir, uint64_t size)
{
	struct gmem_config cfg = { .size = size, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1,
				   .flags = GMEM_F_TRACK_WRITES };
	struct incr_round r[INCR_ROUNDS];
	struct incr x = { .drop = geteuid() == 0 };
	struct gmem_info in;
	uint64_t rng = 0x2545f4914f6cdd1dull;
	struct gmem *g;
	char info[128], sz[32];
	int ret;

	out_section("incremental: %s fully populated, 1 %% of pages written between saves",
		    fmt_size(size, sz, sizeof(sz)));
	ret = gmem_open(&cfg, &g);
	if (ret) {
		out_skip("a tracked memfd memory: %s", gmem_strerror(ret));
		return 0;
	}
	gmem_info(g, &in);
	if (in.track != GMEM_TRACK_PAGEMAP) {
		out_skip("write tracking is not available here (gmem_info().track %d)", in.track);
		gmem_close(g);
		return 0;
	}
	snprintf(x.full, sizeof(x.full), "%s/incr-full.snap", dir);
	snprintf(x.diff, sizeof(x.diff), "%s/incr-diff.snap", dir);
	{
		uint8_t *kv = gmem_kvm_view(g);

		for (uint64_t off = 0; off < size; off += 8)
			*(uint64_t *)(kv + off) = rng_next(&rng);
	}
	for (unsigned i = 0; i < INCR_ROUNDS && !ret; i++)
		ret = incr_round(&x, g, size, &rng, i, &r[i]);
	gmem_close(g);
	if (!ret) {
		snprintf(info, sizeof(info), "full save %.0f ms, incremental %.1f ms",
			 INCR_MEDIAN(r, INCR_ROUNDS, full_ms), INCR_MEDIAN(r, INCR_ROUNDS, diff_ms));
		out_target("incremental file / full file", INCR_MEDIAN(r, INCR_ROUNDS, size_ratio),
			   "x", CMP_LE, 0.03, "");
		out_target("incremental save / full save time",
			   INCR_MEDIAN(r, INCR_ROUNDS, time_ratio), "x", CMP_LE, 0.10, info);
		snprintf(info, sizeof(info), "chain %.0f MiB/s, plain read %.0f MiB/s%s",
			 INCR_MEDIAN(r, INCR_ROUNDS, chain_mibps),
			 INCR_MEDIAN(r, INCR_ROUNDS, plain_mibps),
			 x.drop ? "" : " (page cache NOT dropped)");
		out_target("restore of the 2-file chain / plain read",
			   INCR_MEDIAN(r, INCR_ROUNDS, read_ratio), "x", CMP_GE, 0.8, info);
	}
	unlink(x.full);
	unlink(x.diff);
	return ret;
}

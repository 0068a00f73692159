// SPDX-License-Identifier: MIT
/*
 * bench_snapshot_seal.c - sealed snapshots (gmem_snapshot_opts.key) against
 * the same saves and restores without a key, side by side in one run.
 *
 *   1 GiB (best backend), 100 % populated (contents as bench_snapshot.c:
 *   half random, half pattern), raw and GMEM_SNAP_COMPRESS: for each, save
 *   and restore with a key and without, in rounds whose order alternates
 *   (A B, B A, ...); the medians of the per-round ratios sealed/unsealed
 *   (throughput) are reported. Target: >= 0.8x for save and restore.
 *   Run by `gmem-bench snapshot` after its own cases, or alone as
 *   `gmem-bench snapshot-seal`. $GMEM_BENCH_DIR, $GMEM_BENCH_SNAP_ROUNDS
 *   as for bench_snapshot.c; the page cache is dropped before each restore
 *   when run as root.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define SEAL_ROUNDS_MAX 16

static void seal_drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);

	if (fd >= 0) {
		if (write(fd, "1", 1) != 1)
			(void)0;
		close(fd);
	}
}

static void seal_fill(struct gmem *g, uint64_t size)
{
	uint64_t *w = gmem_kvm_view(g), rng = 0x9e3779b97f4a7c15ull;

	for (uint64_t p = 0; p < size / 4096; p++) {
		uint64_t *q = w + p * 512;

		for (unsigned i = 0; i < 256; i++)
			q[i] = rng_next(&rng);
		for (unsigned i = 256; i < 512; i++)
			q[i] = p * 0x100000001ull + i;
	}
	for (uint64_t off = 0; off < size; off += 4 * MiB)
		gmem_convert(g, off, 2 * MiB, GMEM_SHARED, NULL);
}

static int seal_save(struct gmem *g, const char *path, unsigned flags, const uint8_t *key,
		     double *s)
{
	struct gmem_snapshot_opts o = { .flags = flags, .key = key };
	uint64_t t0;
	int ret;

	unlink(path);
	sync();
	t0 = now_ns();
	ret = gmem_snapshot_save_ex(g, path, &o);
	*s = (double)(now_ns() - t0) / 1e9;
	if (ret)
		out_fail("save %s: %s (%s)", path, gmem_strerror(ret), gmem_last_error());
	return ret;
}

static int seal_restore(const char *path, const uint8_t *key, double *s)
{
	struct gmem_snapshot_opts o = { .key = key };
	struct gmem *r;
	uint64_t t0;
	int ret;

	seal_drop_caches();
	t0 = now_ns();
	ret = gmem_snapshot_restore_ex(path, NULL, &o, &r);
	*s = (double)(now_ns() - t0) / 1e9;
	if (ret) {
		out_fail("restore %s: %s (%s)", path, gmem_strerror(ret), gmem_last_error());
		return ret;
	}
	gmem_close(r);
	return 0;
}

static void seal_report(const char *what, double *sealed, double *plain, unsigned n,
			uint64_t bytes)
{
	double ratio[SEAL_ROUNDS_MAX], ms_s, ms_p;
	char m[96], info[96];

	for (unsigned i = 0; i < n; i++)
		ratio[i] = plain[i] / sealed[i];        /* throughput sealed / plain */
	ms_s = median(sealed, n) * 1e3;
	ms_p = median(plain, n) * 1e3;
	snprintf(m, sizeof(m), "%s: with key", what);
	snprintf(info, sizeof(info), "%.0f MiB/s", (double)bytes / MiB / (ms_s / 1e3));
	out_row(m, ms_s, "ms", info);
	snprintf(m, sizeof(m), "%s: without key", what);
	snprintf(info, sizeof(info), "%.0f MiB/s", (double)bytes / MiB / (ms_p / 1e3));
	out_row(m, ms_p, "ms", info);
	snprintf(m, sizeof(m), "%s: throughput ratio", what);
	out_target(m, median(ratio, n), "x", CMP_GE, 0.8,
		   "with key / without, median of rounds");
}

static int seal_case(struct gmem *g, uint64_t size, const char *dir, unsigned flags,
		     const char *name, unsigned rounds)
{
	static const uint8_t key[GMEM_SNAP_KEY_BYTES] = { 0x42, 0x17, 0x99 };
	double ss[SEAL_ROUNDS_MAX], sp[SEAL_ROUNDS_MAX], rs[SEAL_ROUNDS_MAX], rp[SEAL_ROUNDS_MAX];
	char sealed[300], plain[300], what[64];
	int ret = 0;

	snprintf(sealed, sizeof(sealed), "%s/sealed.snap", dir);
	snprintf(plain, sizeof(plain), "%s/plain.snap", dir);
	for (unsigned i = 0; i < rounds && !ret; i++) {
		if (i & 1) {
			ret = seal_save(g, sealed, flags, key, &ss[i]);
			ret = ret ? ret : seal_save(g, plain, flags, NULL, &sp[i]);
			ret = ret ? ret : seal_restore(sealed, key, &rs[i]);
			ret = ret ? ret : seal_restore(plain, NULL, &rp[i]);
		} else {
			ret = seal_save(g, plain, flags, NULL, &sp[i]);
			ret = ret ? ret : seal_save(g, sealed, flags, key, &ss[i]);
			ret = ret ? ret : seal_restore(plain, NULL, &rp[i]);
			ret = ret ? ret : seal_restore(sealed, key, &rs[i]);
		}
	}
	if (!ret) {
		snprintf(what, sizeof(what), "save %s", name);
		seal_report(what, ss, sp, rounds, size);
		snprintf(what, sizeof(what), "restore %s", name);
		seal_report(what, rs, rp, rounds, size);
	}
	unlink(sealed);
	unlink(plain);
	return ret;
}

int bench_snapshot_seal(void)
{
	const char *base = getenv("GMEM_BENCH_DIR"), *rounds_env = getenv("GMEM_BENCH_SNAP_ROUNDS");
	unsigned rounds = rounds_env ? (unsigned)strtoul(rounds_env, NULL, 0) : 4;
	uint64_t size = 1 * GiB;
	char dir[256];
	cpu_set_t pinned, all;
	bool unpinned = false;
	struct gmem *g;
	int ret;

	/* As bench_snapshot: saves and restores use worker threads. */
	if (!sched_getaffinity(0, sizeof(pinned), &pinned)) {
		CPU_ZERO(&all);
		for (long i = 0, n = sysconf(_SC_NPROCESSORS_ONLN); i < n && i < CPU_SETSIZE; i++)
			CPU_SET((int)i, &all);
		unpinned = !sched_setaffinity(0, sizeof(all), &all);
	}
	rounds = rounds < 1 ? 1 : rounds > SEAL_ROUNDS_MAX ? SEAL_ROUNDS_MAX : rounds;
	snprintf(dir, sizeof(dir), "%s/gmem-bench-seal-XXXXXX", base ? base : "/var/tmp");
	if (!mkdtemp(dir)) {
		out_fail("mkdtemp %s: %s", dir, strerror(errno));
		goto out;
	}
	out_section("sealed vs unsealed, 1 GiB 100 %% populated, %u rounds", rounds);
	ret = open_mem(GMEM_BACKEND_AUTO, size, 0, &g);
	if (ret) {
		out_fail("open: %s", gmem_strerror(ret));
		rmdir(dir);
		goto out;
	}
	seal_fill(g, size);
	ret = seal_case(g, size, dir, 0, "raw", rounds);
	if (!ret)
		seal_case(g, size, dir, GMEM_SNAP_COMPRESS, "zstd", rounds);
	out_note("sealed: %s; page cache %s before each restore",
		 "AES-256-GCM where the CPU has AES-NI, else XChaCha20-Poly1305",
		 geteuid() ? "NOT dropped (not root)" : "dropped");
	gmem_close(g);
	rmdir(dir);
out:
	if (unpinned)
		sched_setaffinity(0, sizeof(pinned), &pinned);
	return 0;
}

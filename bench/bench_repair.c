// SPDX-License-Identifier: MIT
/*
 * bench_repair.c - host-view repair after a workload, THP backing.
 *
 * 256 MiB of memfd memory with shmem THP, shared and touched (every region
 * PMD-mapped), then a workload of I/O-like fragments (4 KiB to 64 KiB) made
 * private and shared again at random, which splits the regions it touches.
 * At the end every region is uniform again; the figure is the share of
 * uniformly shared regions mapped huge in the host view, read from
 * /proc/self/smaps (ShmemPmdMapped), against what the same workload leaves
 * when nothing repairs (the mappings as the kernel left them). Target:
 * >= 99 % repaired.
 *
 * Needs shmem THP: as root the benchmark sets shmem_enabled to "advise" for
 * its run and puts the old value back; otherwise it says why it cannot run.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench.h"

#define RP_SIZE   (256 * MiB)
#define RP_OPS    4000
#define RP_SHMEM  "/sys/kernel/mm/transparent_hugepage/shmem_enabled"

/* kB of shmem mapped by PMDs in [addr, addr + len). */
static long rp_pmd_kb(const void *addr, uint64_t len)
{
	uintptr_t s = (uintptr_t)addr, e = s + len;
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	unsigned long lo, hi;
	long kb = 0, v;
	bool in = false;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = lo < e && hi > s;
			continue;
		}
		if (in && sscanf(line, "ShmemPmdMapped: %ld", &v) == 1)
			kb += v;
	}
	fclose(f);
	return kb;
}

/* The bracketed word of shmem_enabled into @old; set @mode. 0 or -errno. */
static int rp_shmem_set(const char *mode, char *old, size_t n)
{
	char buf[128], *l, *r;
	int fd = open(RP_SHMEM, O_RDWR | O_CLOEXEC);
	ssize_t len;

	if (fd < 0)
		return -errno;
	len = read(fd, buf, sizeof(buf) - 1);
	buf[len > 0 ? len : 0] = 0;
	l = strchr(buf, '[');
	r = l ? strchr(l, ']') : NULL;
	if (old && l && r)
		snprintf(old, n, "%.*s", (int)(r - l - 1), l + 1);
	if (pwrite(fd, mode, strlen(mode), 0) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	close(fd);
	return 0;
}

/* A page 1 MiB away in the same region: outside any fragment (<= 64 KiB). */
static uint64_t rp_neighbour(uint64_t gpa)
{
	uint64_t base = gpa & ~(2 * MiB - 1);

	return base + ((gpa - base + MiB) % (2 * MiB));
}

/* One fragment of a region made private, a neighbouring buffer of the same
 * region used meanwhile (so the mixed region is mapped by small pages), and
 * the fragment shared again. With @g the library converts; without, the
 * bare mmaps of a view that never repairs (the baseline). 0 or -errno. */
static int rp_fragment(struct gmem *g, uint8_t *bare, int fd, uint64_t gpa, uint64_t len)
{
	uint64_t nb = rp_neighbour(gpa);

	if (g) {
		int ret = gmem_convert(g, gpa, len, GMEM_PRIVATE, NULL);

		if (ret)
			return ret;
		((volatile uint8_t *)gmem_host(g, nb))[0]++;
		return gmem_convert(g, gpa, len, GMEM_SHARED, NULL);
	}
	if (mmap(bare + gpa, len, PROT_NONE, PLACEHOLDER_FLAGS, -1, 0) == MAP_FAILED)
		return -errno;
	bare[nb]++;
	if (mmap(bare + gpa, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
		 (off_t)gpa) == MAP_FAILED || madvise(bare + gpa, len, MADV_HUGEPAGE))
		return -errno;
	return 0;
}

static int rp_workload(struct gmem *g, uint8_t *bare, int fd)
{
	uint64_t seed = 0x5eed5eedull;

	for (unsigned i = 0; i < RP_OPS; i++) {
		uint64_t len = (1 + rng_next(&seed) % 16) * 4 * KiB;
		uint64_t gpa = (rng_next(&seed) % ((RP_SIZE - len) / (4 * KiB))) * 4 * KiB;
		int ret = rp_fragment(g, bare, fd, gpa, len);

		if (ret)
			return ret;
	}
	return 0;
}

static int rp_run(void)
{
	struct gmem *g;
	struct gmem_info info;
	struct gmem_stats st;
	uint8_t *h, *bare;
	uint64_t t0, t1;
	long lib_kb, bare_kb, before_kb;
	int ret;

	ret = open_mem(GMEM_BACKEND_MEMFD, RP_SIZE, GMEM_F_HUGE, &g);
	if (ret)
		return ret;
	gmem_info(g, &info);
	h = gmem_host(g, 0);
	ret = gmem_convert(g, 0, RP_SIZE, GMEM_SHARED, NULL);
	if (ret)
		goto out;
	memset(h, 1, RP_SIZE);
	before_kb = rp_pmd_kb(h, RP_SIZE);

	/* Baseline: a second view of the same file changed with bare mmaps. */
	bare = reserve(RP_SIZE);
	if (!bare || mmap(bare, RP_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
			  info.fd, 0) == MAP_FAILED || madvise(bare, RP_SIZE, MADV_HUGEPAGE)) {
		ret = -errno;
		goto out;
	}
	for (uint64_t off = 0; off < RP_SIZE; off += 4 * KiB)
		(void)((volatile uint8_t *)bare)[off];
	ret = rp_workload(NULL, bare, info.fd);
	if (ret)
		goto out_bare;
	bare_kb = rp_pmd_kb(bare, RP_SIZE);

	t0 = now_ns();
	ret = rp_workload(g, NULL, -1);
	t1 = now_ns();
	if (ret)
		goto out_bare;
	lib_kb = rp_pmd_kb(h, RP_SIZE);
	gmem_stats(g, &st);

	out_section("memfd + shmem THP, %llu MiB shared, %d fragments of 4-64 KiB made "
		    "private and shared again", (unsigned long long)(RP_SIZE / MiB), RP_OPS);
	out_row("regions PMD-mapped before the workload", (double)before_kb / 2048, "",
		"of 128");
	out_row("regions split / repaired by the library",
		(double)st.regions_split, "", "");
	out_row("collapse failures", (double)st.collapse_failures, "", "MADV_COLLAPSE refused");
	out_row("no repair (bare mmaps): huge regions", 100.0 * (double)bare_kb / (RP_SIZE / KiB),
		"%", "of uniform shared regions");
	out_target("library: huge regions after the workload",
		   100.0 * (double)lib_kb / (RP_SIZE / KiB), "%", CMP_GE, 99.0,
		   "of uniform shared regions");
	out_row("library: per fragment (2 conversions + repair)",
		(double)(t1 - t0) / RP_OPS / 1e3, "us", "");
out_bare:
	unreserve(bare, RP_SIZE);
out:
	gmem_close(g);
	if (ret)
		out_fail("repair: %s", strerror(-ret));
	return ret;
}

int bench_repair(void)
{
	char old[32] = "";
	bool changed = false;
	int ret;

	if (geteuid() != 0) {
		char mode[32] = "";

		rp_shmem_set("", mode, sizeof(mode)); /* read only: write fails */
		if (strcmp(mode, "advise") && strcmp(mode, "always") && strcmp(mode, "within_size")) {
			out_skip("repair: needs shmem THP (shmem_enabled is '%s'; root may set it)",
				 mode);
			return 0;
		}
	} else {
		ret = rp_shmem_set("advise", old, sizeof(old));
		if (ret) {
			out_skip("repair: cannot set %s: %s", RP_SHMEM, strerror(-ret));
			return 0;
		}
		changed = true;
	}
	ret = rp_run();
	if (changed)
		rp_shmem_set(old, NULL, 0);
	return ret;
}

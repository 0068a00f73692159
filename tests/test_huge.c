// SPDX-License-Identifier: MIT
/*
 * test_huge.c - suite "huge": 2 MiB regions split when they become mixed and
 * are repaired when uniform again; 2 MiB backing from shmem THP or hugetlb.
 *
 * split_repair runs on 4 KiB backing (both backends) and only reads the
 * counters. Every other test changes global kernel settings (shmem_enabled,
 * nr_hugepages): th_sysfs_set() restores them when the test's process exits,
 * and sysfs_lock() serialises these tests against one another, since
 * Criterion runs tests in parallel and has no per-suite serialisation. The
 * lock is held until process exit, i.e. until after the restore. Other
 * suites never open GMEM_F_HUGE memory, and the library reads these
 * settings only when opening it, so they do not care.
 *
 * Whether a 2 MiB range of the host view is PMD-mapped is read from
 * /proc/self/smaps ("ShmemPmdMapped:" for memfd THP on this kernel), which
 * sums whole VMAs: every region looked at here has private (placeholder)
 * neighbours, so that its mapping is a VMA of its own.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "helpers.h"
#include "sys.h"

#define SZ  (8 * TH_MIB)
#define PG  TH_PAGE
#define RG  GMEM_REGION_SIZE
#define RKB (RG >> 10)

#define THP_TOP   "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
#define THP_2M    "/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/shmem_enabled"
#define NR_HUGE   "/proc/sys/vm/nr_hugepages"
#define FREE_HUGE "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
#define PMD_FIELD "ShmemPmdMapped:"

TestSuite(huge, .disabled = false, .timeout = 60);


/* Regions holding both states, counted from gmem_state(). */
static uint64_t mixed_regions(const struct gmem *g, uint64_t size)
{
	uint64_t n = 0;

	for (uint64_t r = 0; r < size; r += RG) {
		unsigned shared = 0;

		for (uint64_t a = r; a < r + RG; a += PG)
			shared += gmem_state(g, a) == GMEM_SHARED;
		n += shared && shared < RG / PG;
	}
	return n;
}

static void expect_counts(const struct gmem *g, const char *step, uint64_t split,
			  uint64_t repaired, uint64_t mixed)
{
	struct gmem_stats s = th_stats(g);

	cr_assert_eq(s.regions_split, split, "%s: regions_split %llu, want %llu", step,
		     (unsigned long long)s.regions_split, (unsigned long long)split);
	cr_assert_eq(s.regions_repaired, repaired, "%s: regions_repaired %llu, want %llu", step,
		     (unsigned long long)s.regions_repaired, (unsigned long long)repaired);
	cr_assert_eq(s.regions_mixed, mixed, "%s: regions_mixed %llu, want %llu", step,
		     (unsigned long long)s.regions_mixed, (unsigned long long)mixed);
	cr_assert_eq(s.regions_mixed, mixed_regions(g, s.size),
		     "%s: regions_mixed %llu, but %llu regions hold both states", step,
		     (unsigned long long)s.regions_mixed,
		     (unsigned long long)mixed_regions(g, s.size));
}

static void convert_ok(struct gmem *g, uint64_t gpa, uint64_t len, int to)
{
	int ret = gmem_convert(g, gpa, len, to, NULL);

	cr_assert_eq(ret, 0, "convert [%#llx, +%#llx) to %d = %d (%s): %s",
		     (unsigned long long)gpa, (unsigned long long)len, to, ret,
		     gmem_strerror(ret), gmem_last_error());
}

/* ---- 4 KiB backing: the counters ---------------------------------------- */

TH_TEST(huge, split_repair)
{
	struct gmem *g = th_open(backend, SZ, 0);

	expect_counts(g, "open", 0, 0, 0);
	convert_ok(g, RG + 5 * PG, PG, GMEM_SHARED);
	expect_counts(g, "one page of region 1 shared", 1, 0, 1);
	convert_ok(g, RG + 5 * PG, PG, GMEM_SHARED);
	expect_counts(g, "the same again", 1, 0, 1);
	convert_ok(g, 2 * RG - PG, 2 * PG, GMEM_SHARED);
	expect_counts(g, "across regions 1 and 2", 2, 0, 2);
	convert_ok(g, RG, RG, GMEM_SHARED);
	expect_counts(g, "all of region 1 shared", 2, 1, 1);
	convert_ok(g, 2 * RG, PG, GMEM_PRIVATE);
	expect_counts(g, "region 2 private again", 2, 2, 0);
	convert_ok(g, RG + 100 * PG, 3 * PG, GMEM_PRIVATE);
	expect_counts(g, "fragment of shared region 1 unshared", 3, 2, 1);
	convert_ok(g, RG + 100 * PG, 3 * PG, GMEM_SHARED);
	expect_counts(g, "and shared again", 3, 3, 0);
	/* Uniform to uniform is neither a split nor a repair. */
	convert_ok(g, 0, SZ, GMEM_SHARED);
	expect_counts(g, "everything shared", 3, 3, 0);
	convert_ok(g, 0, SZ, GMEM_PRIVATE);
	expect_counts(g, "everything private", 3, 3, 0);
	/* One call splitting every region, one repairing them all. */
	for (uint64_t r = 0; r < SZ; r += RG)
		TH_EQ(gmem_convert(g, r + 7 * PG, PG, GMEM_SHARED, NULL), 0);
	expect_counts(g, "a page in each region", 7, 3, 4);
	convert_ok(g, 0, SZ, GMEM_PRIVATE);
	expect_counts(g, "all private in one call", 7, 7, 0);
	/* 4 KiB backing: nothing to collapse. */
	TH_EQ(th_stats(g).collapse_failures, 0);
	gmem_close(g);
}

/* ---- changing kernel settings ------------------------------------------ */

/* Serialise the tests that change kernel settings (see the header). */
static void sysfs_lock(void)
{
	int fd = open("/tmp/gmem-tests-sysfs.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0)
		cr_skip_test("cannot create the settings lock: %s", strerror(errno));
	cr_assert_eq(flock(fd, LOCK_EX), 0, "flock: %s", strerror(errno));
	/* Left open: released at exit, after the settings are restored. */
}

static void read_setting(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, size - 1);

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
}

/* Set a choice file (shmem_enabled) and check the kernel took it. */
static void set_choice(const char *path, const char *value)
{
	char buf[160], want[40];
	const char *why;

	if (access(path, F_OK))
		return; /* per-size file absent: the top-level one decides */
	if (!th_sysfs_set(path, value, &why))
		cr_skip_test("cannot set %s to %s: %s", path, value, why);
	read_setting(path, buf, sizeof(buf));
	snprintf(want, sizeof(want), "[%s]", value);
	cr_assert(strstr(buf, want), "%s is \"%s\" after writing %s", path, buf, value);
}

/* shmem THP for memfds: @mode at the top, "inherit" for 2 MiB folios. */
static void set_shmem_thp(const char *mode)
{
	set_choice(THP_TOP, mode);
	set_choice(THP_2M, "inherit");
}

/* Reserve @n hugetlb pages; skip if the kernel could not find them. */
static void set_hugepages(long n)
{
	char val[24], buf[32];
	const char *why;

	snprintf(val, sizeof(val), "%ld", n);
	if (!th_sysfs_set(NR_HUGE, val, &why))
		cr_skip_test("cannot set vm.nr_hugepages: %s", why);
	read_setting(FREE_HUGE, buf, sizeof(buf));
	if (strtol(buf, NULL, 10) < n)
		cr_skip_test("only %ld of %ld hugetlb pages could be reserved",
			     strtol(buf, NULL, 10), n);
}

static struct gmem *open_huge(enum gmem_backend b, uint64_t size, unsigned flags,
			      enum gmem_huge want)
{
	struct gmem_config cfg = { .size = size, .backend = b, .vm_fd = -1,
				   .flags = flags | GMEM_F_HUGE };
	struct gmem_info info;
	struct gmem *g = NULL;
	int ret = gmem_open(&cfg, &g);

	cr_assert_eq(ret, 0, "gmem_open(huge) = %d (%s): %s", ret, gmem_strerror(ret),
		     gmem_last_error());
	TH_EQ(gmem_info(g, &info), 0);
	cr_assert_eq(info.huge, want, "backing %s, want %s", gmem_huge_name(info.huge),
		     gmem_huge_name(want));
	return g;
}

/* kB of region @r of the host view mapped by PMDs. */
static long pmd_kb(struct gmem *g, uint64_t r)
{
	return th_smaps_kb(gmem_host(g, r), RG, PMD_FIELD);
}

static void expect_pmd(struct gmem *g, uint64_t r, long kb, const char *step)
{
	long got = pmd_kb(g, r);

	cr_assert_eq(got, kb, "%s: region at %#llx has %ld kB PMD-mapped, want %ld", step,
		     (unsigned long long)r, got, kb);
}

/* Write one byte per page through the host view (faults it in). */
static void touch(struct gmem *g, uint64_t gpa, uint64_t len)
{
	for (uint64_t a = gpa; a < gpa + len; a += PG)
		((volatile uint8_t *)gmem_host(g, a))[1] ^= 0;
}

/*
 * Regions 1 and 3 are the ones looked at; 0 and 2 stay private so each
 * shared region is a VMA of its own. Data is written through the KVM view,
 * as a guest would (it is a full, huge-capable mapping).
 */
static void thp_split_and_repair(const char *mode)
{
	struct gmem *g;
	uint8_t *kv;

	sysfs_lock();
	set_shmem_thp(mode);
	g = open_huge(GMEM_BACKEND_MEMFD, SZ, 0, GMEM_HUGE_THP);
	kv = gmem_kvm_view(g);
	memset(kv + RG, 0x11, RG);
	memset(kv + 3 * RG, 0x33, RG);

	/* A whole region shared: one PMD. */
	convert_ok(g, RG, RG, GMEM_SHARED);
	touch(g, RG, RG);
	expect_pmd(g, RG, RKB, "region 1 shared whole");
	TH_EQ(th_stats(g).regions_split, 0);

	/* A fragment unshared: split, and no longer PMD-mapped. */
	convert_ok(g, RG + 9 * PG, PG, GMEM_PRIVATE);
	touch(g, RG, 9 * PG);
	expect_pmd(g, RG, 0, "page 9 of region 1 unshared");
	TH_EQ(th_stats(g).regions_split, 1);
	TH_EQ(th_read_faults(gmem_host(g, RG + 9 * PG)), 1);

	/* Uniform again: repaired, huge again. */
	convert_ok(g, RG + 9 * PG, PG, GMEM_SHARED);
	touch(g, RG, RG);
	TH_EQ(th_stats(g).regions_repaired, 1);
	TH_EQ(th_stats(g).collapse_failures, 0);
	expect_pmd(g, RG, RKB, "region 1 repaired");

	/* A fragment shared inside a private region: that page only. */
	convert_ok(g, 3 * RG + 100 * PG, PG, GMEM_SHARED);
	touch(g, 3 * RG + 100 * PG, PG);
	expect_pmd(g, 3 * RG, 0, "one page of region 3 shared");
	TH_EQ(th_stats(g).regions_split, 2);
	convert_ok(g, 3 * RG, RG, GMEM_SHARED);
	touch(g, 3 * RG, RG);
	TH_EQ(th_stats(g).regions_repaired, 2);
	expect_pmd(g, 3 * RG, RKB, "region 3 shared whole after a fragment");

	/* The data went through all of it. */
	for (uint64_t i = 0; i < RG; i += 4093) {
		TH_EQ(((uint8_t *)gmem_host(g, RG))[i], 0x11);
		TH_EQ(((uint8_t *)gmem_host(g, 3 * RG))[i], 0x33);
	}
	gmem_close(g);
}

Test(huge, thp_advise)
{
	thp_split_and_repair("advise");
}

Test(huge, thp_within_size)
{
	thp_split_and_repair("within_size");
}

/*
 * A region written only through temporary mappings (the hypervisor's own
 * accesses, or a restore) and then shared whole is uniform: the design
 * wants it mapped huge where the backing allows (the >= 99 % repair
 * target), as the same region written through the KVM view is.
 */
Test(huge, thp_kmap_written_region_shared)
{
	struct gmem *g;

	sysfs_lock();
	set_shmem_thp("advise");
	g = open_huge(GMEM_BACKEND_MEMFD, SZ, 0, GMEM_HUGE_THP);
	th_fill(g, RG, RG, 5);
	convert_ok(g, RG, RG, GMEM_SHARED);
	touch(g, RG, RG);
	cr_assert(th_check(g, RG, RG, 5), "contents");
	expect_pmd(g, RG, RKB, "region written through gmem_kmap, then shared whole");
	gmem_close(g);
}

/* The repair's MADV_COLLAPSE may fail: counted, the conversion stands. */
Test(huge, thp_collapse_fails)
{
	struct gmem *g;
	uint64_t n0;
	int ret;

	sysfs_lock();
	set_shmem_thp("advise");
	g = open_huge(GMEM_BACKEND_MEMFD, SZ, 0, GMEM_HUGE_THP);
	th_fill(g, RG, RG, 6);
	convert_ok(g, RG, RG, GMEM_SHARED);
	convert_ok(g, RG + 4 * PG, PG, GMEM_PRIVATE);
	/* Re-sharing is mmap, MADV_DONTFORK, MADV_HUGEPAGE, MADV_COLLAPSE:
	 * fail the last. */
	n0 = gm_sys_count(GM_SYS_MADVISE);
	gm_sys_inject(GM_SYS_MADVISE, 2, EAGAIN);
	ret = gmem_convert(g, RG + 4 * PG, PG, GMEM_SHARED, NULL);
	gm_sys_inject_clear();
	TH_EQ(ret, 0);
	TH_EQ(gm_sys_count(GM_SYS_MADVISE) - n0, 3);
	TH_EQ(th_stats(g).collapse_failures, 1);
	TH_EQ(th_stats(g).regions_repaired, 1);
	TH_EQ(gmem_state(g, RG + 4 * PG), GMEM_SHARED);
	cr_assert(th_check(g, RG, RG, 6), "contents");
	TH_EQ(th_read_faults(gmem_host(g, RG + 4 * PG)), 0);
	gmem_close(g);
}

/*
 * On THP memory in advise mode every shared run is mmap + MADV_HUGEPAGE.
 * A failing madvise (first, middle, last run) undoes the conversion.
 */
Test(huge, thp_inject_madvise)
{
	static const unsigned long skips[] = { 0, 2, 4 };   /* of 5 runs */
	struct gmem *g;

	sysfs_lock();
	set_shmem_thp("advise");
	for (unsigned i = 0; i < 3; i++) {
		unsigned long n0;
		int ret;

		g = open_huge(GMEM_BACKEND_MEMFD, SZ, 0, GMEM_HUGE_THP);
		/* Private pages 0, 100, .. 400 in a shared [0, 500): 5 runs
		 * too far apart for the library to map in one go. */
		convert_ok(g, 0, 500 * PG, GMEM_SHARED);
		for (uint64_t p = 0; p < 500; p += 100)
			convert_ok(g, p * PG, PG, GMEM_PRIVATE);
		th_fill(g, 0, 500 * PG, 40 + i);
		n0 = gm_sys_count(GM_SYS_MADVISE);
		gm_sys_inject(GM_SYS_MADVISE, skips[i], ENOMEM);
		ret = gmem_convert(g, 0, 500 * PG, GMEM_SHARED, NULL);
		gm_sys_inject_clear();
		cr_assert_eq(ret, -ENOMEM, "madvise %lu fails: convert = %d",
			     skips[i] + 1, ret);
		cr_assert_gt(gm_sys_count(GM_SYS_MADVISE) - n0, skips[i]);
		for (uint64_t p = 0; p < 501; p++) {
			int want = p < 500 && p % 100;

			cr_assert_eq(gmem_state(g, p * PG), want, "madvise %lu: page %llu state",
				     skips[i] + 1, (unsigned long long)p);
			cr_assert_eq(th_read_faults(gmem_host(g, p * PG)), !want,
				     "madvise %lu: page %llu (state %d) reachability",
				     skips[i] + 1, (unsigned long long)p, want);
		}
		TH_EQ(th_stats(g).shared_pages, 495);
		TH_EQ(th_stats(g).view_mappings, th_vmas_in(gmem_host(g, 0), SZ));
		cr_assert(th_check(g, 0, 500 * PG, 40 + i), "madvise %lu: contents",
			  skips[i] + 1);
		convert_ok(g, 0, 500 * PG, GMEM_SHARED);
		gmem_close(g);
	}
}

/* hugetlb: the mapping granule is 2 MiB. */
Test(huge, hugetlb)
{
	struct gmem_info info;
	struct gmem *g;
	uint64_t busy;

	sysfs_lock();
	set_shmem_thp("never");
	set_hugepages(SZ / RG + 2);
	g = open_huge(GMEM_BACKEND_MEMFD, SZ, 0, GMEM_HUGE_HUGETLB);
	TH_EQ(gmem_info(g, &info), 0);
	TH_EQ(info.granule, RG);
	/* 4 KiB is not a unit any more. */
	TH_EQ(gmem_convert(g, RG, PG, GMEM_SHARED, NULL), -EINVAL);
	TH_EQ(gmem_convert(g, RG, RG + PG, GMEM_SHARED, NULL), -EINVAL);
	TH_EQ(gmem_convert(g, RG + PG, RG, GMEM_SHARED, NULL), -EINVAL);
	TH_EQ(gmem_discard(g, RG, PG), -EINVAL);
	TH_EQ(th_stats(g).shared_pages, 0);
	/* 2 MiB is, with contents kept both ways. */
	th_fill(g, RG, RG, 8);
	convert_ok(g, RG, RG, GMEM_SHARED);
	TH_EQ(th_stats(g).shared_pages, RG / PG);
	TH_EQ(gmem_state(g, RG), GMEM_SHARED);
	TH_EQ(gmem_state(g, 2 * RG - PG), GMEM_SHARED);
	TH_EQ(gmem_state(g, 2 * RG), GMEM_PRIVATE);
	TH_EQ(th_read_faults(gmem_host(g, RG + 12345)), 0);
	TH_EQ(th_read_faults(gmem_host(g, 2 * RG - 1)), 0);
	TH_EQ(th_read_faults(gmem_host(g, 0)), 1);
	TH_EQ(th_read_faults(gmem_host(g, 2 * RG)), 1);
	/* Pins stay per page inside a shared region. */
	TH_EQ(gmem_pin(g, RG + 3 * PG, PG), 0);
	TH_EQ(gmem_convert(g, RG, RG, GMEM_PRIVATE, &busy), -EAGAIN);
	TH_EQ(busy, RG + 3 * PG);
	TH_EQ(gmem_unpin(g, RG + 3 * PG, PG), 0);
	convert_ok(g, RG, RG, GMEM_PRIVATE);
	TH_EQ(th_read_faults(gmem_host(g, RG)), 1);
	cr_assert(th_check(g, RG, RG, 8), "contents after the round trip");
	/* Discard a whole region: zero, state kept. */
	TH_EQ(gmem_discard(g, RG, RG), 0);
	TH_EQ(gmem_state(g, RG), GMEM_PRIVATE);
	TH_EQ(((uint8_t *)gmem_kvm_view(g))[RG + 64], 0);
	gmem_close(g);
}

/* Too few hugetlb pages for the size: refused, naming the setting. */
Test(huge, hugetlb_too_few)
{
	struct gmem_config cfg = { .size = 4 * SZ, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1,
				   .flags = GMEM_F_HUGE };
	struct gmem *g = NULL;
	int ret;

	sysfs_lock();
	set_shmem_thp("never");
	set_hugepages(2);
	ret = gmem_open(&cfg, &g);
	TH_EQ(ret, -EOPNOTSUPP);
	cr_assert(strstr(gmem_last_error(), "nr_hugepages"),
		  "last error \"%s\" does not name vm.nr_hugepages", gmem_last_error());
}

/* Neither THP nor hugetlb pages: GMEM_F_HUGE fails, never downgrades. */
Test(huge, none_available)
{
	static const enum gmem_backend backends[] = { GMEM_BACKEND_MEMFD, GMEM_BACKEND_AUTO };
	struct gmem *g = NULL;

	sysfs_lock();
	set_shmem_thp("never");
	{
		const char *why;

		if (!th_sysfs_set(NR_HUGE, "0", &why))
			cr_skip_test("cannot set vm.nr_hugepages: %s", why);
	}
	for (unsigned i = 0; i < 2; i++) {
		struct gmem_config cfg = { .size = SZ, .backend = backends[i], .vm_fd = -1,
					   .flags = GMEM_F_HUGE };
		const char *e;
		int ret = gmem_open(&cfg, &g);

		cr_assert_eq(ret, -EOPNOTSUPP, "%s: gmem_open(huge) = %d (%s), want -EOPNOTSUPP",
			     gmem_backend_name(backends[i]), ret, gmem_strerror(ret));
		e = gmem_last_error();
		cr_assert(strstr(e, "shmem_enabled"), "last error \"%s\" does not name "
			  "shmem_enabled", e);
		cr_assert(strstr(e, "nr_hugepages"), "last error \"%s\" does not name "
			  "nr_hugepages", e);
	}
}

/* guest_memfd has no 2 MiB folios here: asking for them is refused. */
Test(huge, kvm_refuses_huge)
{
	struct gmem_config cfg = { .size = SZ, .backend = GMEM_BACKEND_KVM, .vm_fd = -1,
				   .flags = GMEM_F_HUGE };
	struct gmem *g = (struct gmem *)&cfg;
	const char *why = th_kvm_unavailable();
	int ret;

	if (why)
		cr_skip_test("kvm backend: %s", why);
	ret = gmem_open(&cfg, &g);
	TH_EQ(ret, -EOPNOTSUPP);
	cr_assert_eq(g, (struct gmem *)&cfg, "*out written on failure");
	cr_assert_neq(gmem_last_error()[0], 0, "no reason given");
}

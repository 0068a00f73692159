// SPDX-License-Identifier: MIT
/*
 * test_inject.c - suite "inject": a syscall that fails in the middle of an
 * operation leaves the memory exactly as it was.
 *
 * The library reaches the kernel only through src/lib/sys.h, whose
 * gm_sys_inject(call, skip, err) makes the (skip + 1)th next call of a kind
 * fail. A conversion of a range holding runs of both states needs several
 * mmaps; failing the first, a middle and the last of them must leave every
 * page's state, contents and host-view mapping (what faults, what reads,
 * how many VMAs) and the counters as before. The same for fallocate
 * (discard), for the mmaps of gmem_kmap/gmem_kunmap and for every syscall
 * of gmem_open. madvise is only used on THP-backed memory: see test_huge.c.
 * Last, the -ENOMEM path of the mapping limit (vm.max_map_count).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"
#include "kvm_uapi.h"
#include "sys.h"

#define SZ     (8 * TH_MIB)
#define PG     TH_PAGE
/*
 * Pages [0, SPAN): every STRIDE-th page private, the rest shared. Making it
 * all shared needs NBLK separate mmaps: the library merges runs whose gap
 * is cheap to map again, and a gap of STRIDE - 1 shared pages is more than
 * it merges. Making it all private takes as many mmaps as the library
 * chooses (the gaps are placeholders already): counted, not assumed.
 */
#define STRIDE 100u
#define NBLK   8u
#define SPAN   (STRIDE * NBLK)
#define NPIC   (SPAN + 2)        /* the pages a picture covers */


static void fini_inject(void)
{
	gm_sys_inject_clear();
}

TestSuite(inject, .fini = fini_inject, .timeout = 60);

/* What a failed call must leave untouched. */
struct picture {
	int state[NPIC];
	int faults[NPIC];
	unsigned vmas;
	struct gmem_stats st;
};

/* Reads only: no syscall through sys.h, so an armed injection stays armed. */
static void picture_take(struct gmem *g, struct picture *p)
{
	for (unsigned i = 0; i < NPIC; i++) {
		p->state[i] = gmem_state(g, i * PG);
		p->faults[i] = th_read_faults(gmem_host(g, i * PG));
	}
	p->vmas = th_vmas_in(gmem_host(g, 0), SZ);
	p->st = th_stats(g);
}

/* Host view of shared page @gpa reads the guest's data. */
static void expect_host_is_guest(struct gmem *g, uint64_t gpa)
{
	const uint8_t *k = gmem_kmap(g, gpa), *h = gmem_host(g, gpa);

	cr_assert_not_null(k, "gmem_kmap(%#llx): %s", (unsigned long long)gpa, strerror(errno));
	cr_assert(!memcmp(h, k, PG), "host view of shared gpa %#llx is not the guest's data",
		  (unsigned long long)gpa);
	gmem_kunmap(g, (void *)k);
}

static void picture_expect(struct gmem *g, const struct picture *a, const char *what,
			   uint32_t seed)
{
	struct picture b;

	picture_take(g, &b);
	for (unsigned i = 0; i < NPIC; i++) {
		cr_assert_eq(b.state[i], a->state[i], "%s: page %u state %d, was %d", what, i,
			     b.state[i], a->state[i]);
		cr_assert_eq(b.faults[i], a->faults[i], "%s: page %u (state %d) %s, it %s", what,
			     i, a->state[i], b.faults[i] ? "faults" : "reads",
			     a->faults[i] ? "faulted" : "read");
		/* The view must match the state, not only its old self. */
		cr_assert_eq(b.faults[i], b.state[i] == GMEM_PRIVATE,
			     "%s: page %u state %d but host reads %s", what, i, b.state[i],
			     b.faults[i] ? "fault" : "work");
	}
	cr_assert_eq(b.vmas, a->vmas, "%s: host view has %u VMAs, had %u", what, b.vmas,
		     a->vmas);
	cr_assert_eq(b.st.shared_pages, a->st.shared_pages, "%s: shared_pages %llu, was %llu",
		     what, (unsigned long long)b.st.shared_pages,
		     (unsigned long long)a->st.shared_pages);
	cr_assert_eq(b.st.view_mappings, a->st.view_mappings, "%s: view_mappings %llu, was %llu",
		     what, (unsigned long long)b.st.view_mappings,
		     (unsigned long long)a->st.view_mappings);
	cr_assert_eq(b.st.view_mappings, b.vmas, "%s: view_mappings %llu, VMAs %u", what,
		     (unsigned long long)b.st.view_mappings, b.vmas);
	cr_assert_eq(b.st.conversions, a->st.conversions, "%s: conversions %llu, was %llu",
		     what, (unsigned long long)b.st.conversions,
		     (unsigned long long)a->st.conversions);
	cr_assert_eq(b.st.regions_mixed, a->st.regions_mixed, "%s: regions_mixed %llu, was %llu",
		     what, (unsigned long long)b.st.regions_mixed,
		     (unsigned long long)a->st.regions_mixed);
	cr_assert(th_check(g, 0, SPAN * PG, seed), "%s: contents changed", what);
	for (unsigned i = 0; i < SPAN; i++)
		if (b.state[i] == GMEM_SHARED)
			expect_host_is_guest(g, i * PG);
}

/* The pattern above, [0, SPAN) filled from @seed. */
static struct gmem *open_pattern(enum gmem_backend backend, uint32_t seed)
{
	struct gmem *g = th_open(backend, SZ, 0);

	TH_EQ(gmem_convert(g, 0, SPAN * PG, GMEM_SHARED, NULL), 0);
	for (unsigned i = 0; i < SPAN; i += STRIDE)
		TH_EQ(gmem_convert(g, i * PG, PG, GMEM_PRIVATE, NULL), 0);
	th_fill(g, 0, SPAN * PG, seed);
	return g;
}

/* mmaps a conversion of [0, SPAN) to @to takes, on a twin memory. */
static unsigned long mmaps_needed(enum gmem_backend backend, int to)
{
	struct gmem *g = open_pattern(backend, 1);
	unsigned long n0 = gm_sys_count(GM_SYS_MMAP), n;

	TH_EQ(gmem_convert(g, 0, SPAN * PG, to, NULL), 0);
	n = gm_sys_count(GM_SYS_MMAP) - n0;
	gmem_close(g);
	cr_assert_geq(n, 1, "a conversion changing pages made no mmap");
	if (to == GMEM_SHARED)
		cr_assert_eq(n, NBLK, "to shared took %lu mmaps, want one per run (%u)", n, NBLK);
	return n;
}

enum which { FIRST, MIDDLE, LAST };

/*
 * Convert [0, SPAN) to @to with its first, a middle or its last mmap
 * failing: -ENOMEM and the same picture. Then the same conversion works.
 */
static void convert_fails_at_mmap(enum gmem_backend backend, int to, enum which which)
{
	unsigned long n = mmaps_needed(backend, to);
	unsigned long skip = which == FIRST ? 0 : which == MIDDLE ? n / 2 : n - 1;
	uint32_t seed = 30 + (uint32_t)which;
	struct gmem *g = open_pattern(backend, seed);
	char what[64];
	struct picture before;
	unsigned long n0;
	int ret;

	snprintf(what, sizeof(what), "to %s, mmap %lu of %lu fails",
		 to ? "shared" : "private", skip + 1, n);
	picture_take(g, &before);
	n0 = gm_sys_count(GM_SYS_MMAP);
	gm_sys_inject(GM_SYS_MMAP, skip, ENOMEM);
	ret = gmem_convert(g, 0, SPAN * PG, to, NULL);
	gm_sys_inject_clear();
	cr_assert_eq(ret, -ENOMEM, "%s: convert = %d (%s), want -ENOMEM", what, ret,
		     gmem_strerror(ret));
	cr_assert_gt(gm_sys_count(GM_SYS_MMAP) - n0, skip, "%s: only %lu mmaps", what,
		     gm_sys_count(GM_SYS_MMAP) - n0);
	picture_expect(g, &before, what, seed);

	/* Not broken: the same conversion now works. */
	ret = gmem_convert(g, 0, SPAN * PG, to, NULL);
	cr_assert_eq(ret, 0, "%s: retry = %d (%s)", what, ret, gmem_strerror(ret));
	cr_assert(th_check(g, 0, SPAN * PG, seed), "%s: contents after retry", what);
	for (unsigned i = 0; i < SPAN; i++)
		cr_assert_eq(th_read_faults(gmem_host(g, i * PG)), to == GMEM_PRIVATE,
			     "%s: page %u after retry", what, i);
	gmem_close(g);
}

TH_TEST(inject, to_private_first_mmap)
{
	convert_fails_at_mmap(backend, GMEM_PRIVATE, FIRST);
}

TH_TEST(inject, to_private_middle_mmap)
{
	convert_fails_at_mmap(backend, GMEM_PRIVATE, MIDDLE);
}

TH_TEST(inject, to_private_last_mmap)
{
	convert_fails_at_mmap(backend, GMEM_PRIVATE, LAST);
}

TH_TEST(inject, to_shared_first_mmap)
{
	convert_fails_at_mmap(backend, GMEM_SHARED, FIRST);
}

TH_TEST(inject, to_shared_middle_mmap)
{
	convert_fails_at_mmap(backend, GMEM_SHARED, MIDDLE);
}

TH_TEST(inject, to_shared_last_mmap)
{
	convert_fails_at_mmap(backend, GMEM_SHARED, LAST);
}

/* Discard is one fallocate(PUNCH_HOLE): failing it frees nothing. */
TH_TEST(inject, discard_fallocate)
{
	struct gmem *g = open_pattern(backend, 50);
	struct picture before;
	unsigned long n0;
	int ret;

	picture_take(g, &before);
	n0 = gm_sys_count(GM_SYS_FALLOCATE);
	gm_sys_inject(GM_SYS_FALLOCATE, 0, EIO);
	ret = gmem_discard(g, 0, SPAN * PG);
	gm_sys_inject_clear();
	TH_EQ(ret, -EIO);
	TH_EQ(gm_sys_count(GM_SYS_FALLOCATE) - n0, 1);
	picture_expect(g, &before, "discard, fallocate fails", 50);
	TH_EQ(th_stats(g).discards, before.st.discards);
	TH_EQ(gmem_discard(g, 0, SPAN * PG), 0);
	TH_EQ(th_stats(g).discards, before.st.discards + 1);
	gmem_close(g);
}

/* A window that cannot be mapped is not taken: the page is not busy. */
TH_TEST(inject, kmap_mmap)
{
	struct gmem *g = open_pattern(backend, 60);
	struct gmem_stats s0 = th_stats(g);
	void *w;

	gm_sys_inject(GM_SYS_MMAP, 0, ENOMEM);
	w = gmem_kmap(g, 2 * PG);
	gm_sys_inject_clear();
	cr_assert_null(w, "gmem_kmap succeeded through a failed mmap: %p", w);
	TH_EQ(errno, ENOMEM);
	TH_EQ(th_stats(g).kmapped_pages, s0.kmapped_pages);
	TH_EQ(th_stats(g).kmaps, s0.kmaps);
	TH_EQ(gmem_convert(g, 2 * PG, PG, GMEM_PRIVATE, NULL), 0);
	/* Every slot is still usable: the pool is not short of one. */
	w = gmem_kmap(g, 2 * PG);
	cr_assert_not_null(w, "gmem_kmap after a failure: %s", strerror(errno));
	gmem_kunmap(g, w);
	gmem_close(g);
}

/* A window that cannot be unmapped stays: the page stays busy (safe),
 * and a later kunmap releases it. */
TH_TEST(inject, kunmap_mmap)
{
	struct gmem *g = open_pattern(backend, 61);
	uint64_t busy = 0;
	void *w = gmem_kmap(g, 4 * PG);

	cr_assert_not_null(w);
	gm_sys_inject(GM_SYS_MMAP, 0, ENOMEM);
	gmem_kunmap(g, w);
	gm_sys_inject_clear();
	TH_EQ(th_stats(g).kmapped_pages, 1);
	TH_EQ(gmem_convert(g, 4 * PG, PG, GMEM_PRIVATE, &busy), -EAGAIN);
	TH_EQ(busy, 4 * PG);
	gmem_kunmap(g, w);
	TH_EQ(th_stats(g).kmapped_pages, 0);
	TH_EQ(gmem_convert(g, 4 * PG, PG, GMEM_PRIVATE, NULL), 0);
	cr_assert(th_check(g, 0, SPAN * PG, 61));
	gmem_close(g);
}

/* ---- open: every failing syscall is cleaned up -------------------------- */

static unsigned count_fds(void)
{
	return th_dir_entries("/proc/self/fd");
}

/* Mappings of the kinds gmem makes: guest memory file mappings and
 * PROT_NONE placeholders. The rest of the process (malloc, and under ASan
 * its allocator, which keeps freed memory mapped) is not counted. */
static unsigned count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512], perms[8];
	unsigned n = 0;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%*s %7s", perms) == 1 &&
		    (!strcmp(perms, "---p") || strstr(line, "gmem")))
			n++;
	fclose(f);
	return n;
}

/* A failed call (@what, the @nth injection) left no descriptor and no
 * mapping behind: as many as @fds and @maps before it. Under ASan the
 * allocator itself carves new PROT_NONE regions as it grows; the plain
 * build checks the mappings. */
static void expect_nothing_left(const char *what, unsigned long nth, unsigned fds,
				unsigned maps)
{
	cr_assert_eq(count_fds(), fds, "%s #%lu: fds %u after the failure, were %u", what, nth,
		     count_fds(), fds);
#ifndef __SANITIZE_ADDRESS__
	cr_assert_eq(count_maps(), maps, "%s #%lu: mappings %u after the failure, were %u",
		     what, nth, count_maps(), maps);
#else
	(void)maps;
#endif
}

/*
 * Fail the 1st, 2nd, ... call of kind @call made by gmem_open until open
 * makes no more of them: every failed open returns -errno, writes nothing to
 * *out and leaks no fd and no mapping. Returns how many calls were failed.
 */
static unsigned open_fails_cleanly(enum gmem_backend backend, unsigned flags,
				   enum gm_sys_call call, const char *name)
{
	struct gmem_config cfg = { .size = SZ, .backend = backend, .vm_fd = -1, .flags = flags };
	unsigned long skip;

	if (backend == GMEM_BACKEND_KVM && th_kvm_unavailable())
		cr_skip_test("kvm backend: %s", th_kvm_unavailable());
	for (skip = 0; skip < 64; skip++) {
		struct gmem *g = (struct gmem *)&cfg;
		unsigned fds = count_fds(), maps = count_maps();
		unsigned long n0 = gm_sys_count(call), made;
		int ret;

		gm_sys_inject(call, skip, ENOMEM);
		ret = gmem_open(&cfg, &g);
		gm_sys_inject_clear();
		made = gm_sys_count(call) - n0;
		if (ret == 0) {
			gmem_close(g);
			if (made <= skip)      /* no call left to fail */
				break;
			continue;               /* a call that open may do without */
		}
		cr_assert_lt(ret, 0, "%s #%lu: gmem_open = %d", name, skip + 1, ret);
		cr_assert_gt(made, skip, "%s #%lu: open failed (%d) before the injection", name,
			     skip + 1, ret);
		cr_assert_eq(g, (struct gmem *)&cfg, "%s #%lu: *out written on failure", name,
			     skip + 1);
		expect_nothing_left(name, skip + 1, fds, maps);
	}
	cr_assert_lt(skip, 64, "%s: gmem_open still failing after 64 injections", name);
	return (unsigned)skip;
}

TH_TEST(inject, open_mmap)
{
	/* Host view, KVM view, windows: reserve and map, at least 4. */
	cr_assert_geq(open_fails_cleanly(backend, 0, GM_SYS_MMAP, "mmap"), 4);
	cr_assert_geq(open_fails_cleanly(backend, GMEM_F_INIT_SHARED, GM_SYS_MMAP, "mmap"), 5);
}

TH_TEST(inject, open_ioctl)
{
	unsigned n = open_fails_cleanly(backend, 0, GM_SYS_IOCTL, "ioctl");

	if (backend == GMEM_BACKEND_KVM)
		cr_assert_geq(n, 2, "kvm open made %u ioctls (CREATE_VM, CREATE_GUEST_MEMFD)", n);
}

TH_TEST(inject, open_files)
{
	unsigned n = open_fails_cleanly(backend, 0, GM_SYS_OPEN, "open");

	n += open_fails_cleanly(backend, 0, GM_SYS_MEMFD, "memfd_create");
	n += open_fails_cleanly(backend, 0, GM_SYS_FTRUNCATE, "ftruncate");
	cr_assert_geq(n, 1, "%s open made no open/memfd_create/ftruncate at all",
		      gmem_backend_name(backend));
}

/* ---- the mapping limit ---------------------------------------------------- */

/*
 * The host view needs one mapping per run of equal pages; a conversion that
 * would leave more runs than the limit is refused with -ENOMEM before any
 * syscall, and one that adds no run still works.
 */
TH_TEST(inject, map_limit)
{
	struct gmem *g = th_open(backend, SZ, 0);
	struct gmem_info info;
	struct picture before;
	unsigned long n0;

	TH_EQ(gmem_info(g, &info), 0);
	if (info.inplace)
		cr_skip_test("kernel converts in place: the host view is one mapping");
	th_fill(g, 0, SPAN * PG, 70);
	/* Pages 2 and 4 shared: P P S P S P... = 5 runs. */
	TH_EQ(gmem_convert(g, 2 * PG, PG, GMEM_SHARED, NULL), 0);
	TH_EQ(gmem_convert(g, 4 * PG, PG, GMEM_SHARED, NULL), 0);
	TH_EQ(th_stats(g).view_mappings, 5);
	gm_set_map_limit(g, 5);

	picture_take(g, &before);
	n0 = gm_sys_count(GM_SYS_MMAP);
	TH_EQ(gmem_convert(g, 8 * PG, PG, GMEM_SHARED, NULL), -ENOMEM);   /* 7 runs */
	TH_EQ(gmem_convert(g, 0, PG, GMEM_SHARED, NULL), -ENOMEM);        /* 6 runs */
	TH_EQ(gm_sys_count(GM_SYS_MMAP) - n0, 0);
	cr_assert(strstr(gmem_last_error(), "max_map_count"),
		  "last error \"%s\" does not name vm.max_map_count", gmem_last_error());
	picture_expect(g, &before, "over the mapping limit", 70);
	TH_EQ(th_stats(g).refused, before.st.refused + 2);

	/* Same number of runs (page 5 extends run 4), then fewer (page 3
	 * joins 2 and 4): both allowed. */
	TH_EQ(gmem_convert(g, 5 * PG, PG, GMEM_SHARED, NULL), 0);
	TH_EQ(th_stats(g).view_mappings, 5);
	TH_EQ(gmem_convert(g, 3 * PG, PG, GMEM_SHARED, NULL), 0);
	TH_EQ(th_stats(g).view_mappings, 3);
	TH_EQ(th_stats(g).view_mappings, th_vmas_in(gmem_host(g, 0), SZ));
	/* Now there is room for one more shared run. */
	TH_EQ(gmem_convert(g, 8 * PG, PG, GMEM_SHARED, NULL), 0);
	TH_EQ(th_stats(g).view_mappings, 5);
	cr_assert(th_check(g, 0, SPAN * PG, 70));
	gmem_close(g);
}

/* The limit counts the whole memory, so unsharing can be refused too. */
TH_TEST(inject, map_limit_to_private)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	struct gmem_info info;

	TH_EQ(gmem_info(g, &info), 0);
	if (info.inplace)
		cr_skip_test("kernel converts in place: the host view is one mapping");
	gm_set_map_limit(g, 3);
	TH_EQ(gmem_convert(g, 10 * PG, PG, GMEM_PRIVATE, NULL), 0);        /* 3 runs */
	TH_EQ(gmem_convert(g, 20 * PG, PG, GMEM_PRIVATE, NULL), -ENOMEM);  /* 5 runs */
	TH_EQ(gmem_state(g, 20 * PG), GMEM_SHARED);
	TH_EQ(th_read_faults(gmem_host(g, 20 * PG)), 0);
	TH_EQ(gmem_convert(g, 0, PG, GMEM_PRIVATE, NULL), -ENOMEM);        /* 4 runs */
	TH_EQ(gmem_convert(g, 0, 10 * PG, GMEM_PRIVATE, NULL), 0);         /* 2 runs */
	TH_EQ(th_stats(g).view_mappings, 2);
	TH_EQ(th_vmas_in(gmem_host(g, 0), SZ), 2);
	gmem_close(g);
}

/*
 * vm.max_map_count is per process, so open memories share one budget of
 * runs; a memory that the kernel converts in place (cap 249, stood in for
 * by an ioctl hook as in test_inplace.c) holds one mapping whatever its
 * states, and must give back exactly what it took when it closes.
 */
static bool inplace_hook(int fd, unsigned long req, void *arg, int *ret)
{
	(void)fd;
	if (req == KVM_CHECK_EXTENSION &&
	    (long)(uintptr_t)arg == KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES) {
		*ret = 1;
		return true;
	}
	if (req == GM_KVM_SET_MEMORY_ATTRIBUTES2) {
		*ret = 0;
		return true;
	}
	return false;
}

Test(inject, runs_budget_inplace_close)
{
	struct gmem *a, *b;
	struct gmem_info info;
	uint64_t limit0, limit1;

	a = th_open(GMEM_BACKEND_MEMFD, SZ, 0);
	limit0 = th_stats(a).view_mapping_limit;
	gm_sys_set_ioctl_hook(inplace_hook);
	b = th_open(GMEM_BACKEND_KVM, SZ, 0);
	TH_EQ(gmem_info(b, &info), 0);
	if (!info.inplace) {
		gm_sys_set_ioctl_hook(NULL);
		cr_skip_test("the ioctl hook did not make the kvm backend convert in place");
	}
	/* Private, shared, private: three runs of states, one mapping. */
	TH_EQ(gmem_convert(b, 10 * PG, PG, GMEM_SHARED, NULL), 0);
	TH_EQ(th_stats(b).view_mappings, 1);
	gmem_close(b);
	gm_sys_set_ioctl_hook(NULL);
	limit1 = th_stats(a).view_mapping_limit;
	cr_assert_eq(limit1, limit0, "view_mapping_limit of another memory %llu after an in-place "
		     "memory closed, was %llu", (unsigned long long)limit1,
		     (unsigned long long)limit0);
	gmem_close(a);
}

/* ---- restore ----------------------------------------------------------- */

/*
 * Fail the 1st, 2nd, ... call of kind @call made by a restore of @path
 * (with @flags: 0, or GMEM_SNAP_LAZY) until it makes no more: every failed
 * restore returns -errno, leaves *out alone, and leaks no descriptor, no
 * mapping and no thread; the one that succeeds has the saved contents.
 * Returns how many calls were failed.
 */
static unsigned restore_fails_cleanly(const char *path, unsigned flags, enum gm_sys_call call,
				      const char *name)
{
	const struct gmem_snapshot_opts o = { .flags = flags };
	unsigned long skip;

	for (skip = 0; skip < 64; skip++) {
		struct gmem *r = (struct gmem *)&o;
		unsigned fds = count_fds(), maps = count_maps();
		unsigned long n0 = gm_sys_count(call), made;
		int ret;

		gm_sys_inject(call, skip, ENOMEM);
		ret = gmem_snapshot_restore_ex(path, NULL, &o, &r);
		gm_sys_inject_clear();
		made = gm_sys_count(call) - n0;
		if (ret == 0) {
			uint8_t *w = gmem_kmap(r, 5 * PG);

			cr_assert_not_null(w);
			TH_EQ(w[7], 0xa7);
			gmem_kunmap(r, w);
			TH_EQ(gmem_state(r, 64 * PG), GMEM_SHARED);
			gmem_close(r);
			if (made <= skip)
				break;
			continue;       /* a call the restore may do without */
		}
		cr_assert_lt(ret, 0, "%s #%lu: restore = %d", name, skip + 1, ret);
		cr_assert_gt(made, skip, "%s #%lu: restore failed (%d) before the injection", name,
			     skip + 1, ret);
		cr_assert_eq(r, (struct gmem *)&o, "%s #%lu: *out written on failure", name,
			     skip + 1);
		expect_nothing_left(name, skip + 1, fds, maps);
	}
	cr_assert_lt(skip, 64, "%s: restore still failing after 64 injections", name);
	return (unsigned)skip;
}

Test(inject, restore_every_syscall_fails_cleanly)
{
	static const struct { enum gm_sys_call call; const char *name; } calls[] = {
		{ GM_SYS_MMAP, "mmap" }, { GM_SYS_MADVISE, "madvise" },
		{ GM_SYS_FALLOCATE, "fallocate" }, { GM_SYS_IOCTL, "ioctl" },
		{ GM_SYS_FTRUNCATE, "ftruncate" }, { GM_SYS_MEMFD, "memfd_create" },
		{ GM_SYS_OPEN, "open" },
	};
	char path[] = "/tmp/gmem-inject-snap-XXXXXX";
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, SZ, 0);
	unsigned failed[2] = { 0, 0 };
	uint8_t *w = gmem_kmap(g, 5 * PG);
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_not_null(w);
	w[7] = 0xa7;
	gmem_kunmap(g, w);
	cr_assert_eq(gmem_convert(g, 64 * PG, 8 * PG, GMEM_SHARED, NULL), 0);
	cr_assert_eq(gmem_snapshot_save(g, path, 0), 0, "%s", gmem_last_error());
	gmem_close(g);
	/* Warm up: glibc keeps the stacks of ended threads (guard pages
	 * included) for the next ones; let the restore's threads make them. */
	for (unsigned lazy = 0; lazy < 2; lazy++) {
		const struct gmem_snapshot_opts o = { .flags = lazy ? GMEM_SNAP_LAZY : 0 };
		struct gmem *r;

		cr_assert_eq(gmem_snapshot_restore_ex(path, NULL, &o, &r), 0);
		gmem_close(r);
	}
	for (unsigned lazy = 0; lazy < 2; lazy++)
		for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
			failed[lazy] += restore_fails_cleanly(path, lazy ? GMEM_SNAP_LAZY : 0,
							      calls[i].call, calls[i].name);
	cr_log_info("restore: %u calls failed one by one, lazy restore: %u", failed[0],
		    failed[1]);
	/* Both make mmaps, an ioctl or more (lazy: userfaultfd's) and a memfd. */
	cr_assert_geq(failed[0], 3);
	cr_assert_geq(failed[1], failed[0]);
	unlink(path);
}

/* ---- save -------------------------------------------------------------- */

static uint8_t *inj_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	cr_assert_not_null(f, "%s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	cr_assert_not_null(buf);
	TH_EQ(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void inj_write_file(const char *path, const uint8_t *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f, "%s", path);
	TH_EQ(fwrite(buf, 1, len, f), len);
	fclose(f);
}

static unsigned dir_entries(const char *dir)
{
	char cmd[256];
	unsigned n = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "ls -A %s", dir);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (fgets(cmd, sizeof(cmd), p))
		n++;
	pclose(p);
	return n;
}

/*
 * Fail the 1st, 2nd, ... call of kind @call made by a save of @g over the
 * snapshot at @path: every failed save returns -errno and leaves the old
 * file byte for byte, no temporary beside it, no descriptor, no mapping.
 */
static unsigned save_fails_cleanly(struct gmem *g, const char *dir, const char *path,
				   enum gm_sys_call call, const char *name)
{
	size_t len0, len;
	uint8_t *before = inj_read_file(path, &len0), *after;
	unsigned entries = dir_entries(dir);
	unsigned long skip;

	for (skip = 0; skip < 256; skip++) {
		unsigned fds = count_fds(), maps = count_maps();
		unsigned long n0 = gm_sys_count(call), made;
		int ret;

		gm_sys_inject(call, skip, EIO);
		ret = gmem_snapshot_save(g, path, GMEM_SNAP_COMPRESS);
		gm_sys_inject_clear();
		made = gm_sys_count(call) - n0;
		if (ret == 0) {
			if (made <= skip)
				break;
			/* It went through without that call: put the old file back. */
			inj_write_file(path, before, len0);
			continue;
		}
		cr_assert_lt(ret, 0, "%s #%lu: save = %d", name, skip + 1, ret);
		after = inj_read_file(path, &len);
		cr_assert(len == len0 && !memcmp(after, before, len),
			  "%s #%lu: the old snapshot changed (%zu bytes, were %zu)", name, skip + 1,
			  len, len0);
		free(after);
		TH_EQ(dir_entries(dir), entries);
		expect_nothing_left(name, skip + 1, fds, maps);
	}
	cr_assert_lt(skip, 256, "%s: save still failing after 256 injections", name);
	free(before);
	return (unsigned)skip;
}

Test(inject, save_every_syscall_fails_cleanly)
{
	static const struct { enum gm_sys_call call; const char *name; } calls[] = {
		{ GM_SYS_MMAP, "mmap" }, { GM_SYS_MADVISE, "madvise" },
		{ GM_SYS_WRITE, "write" }, { GM_SYS_OPEN, "open" },
		{ GM_SYS_FTRUNCATE, "ftruncate" }, { GM_SYS_FALLOCATE, "fallocate" },
		{ GM_SYS_IOCTL, "ioctl" },
	};
	char dir[] = "/tmp/gmem-inject-save-XXXXXX", path[64];
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, SZ, 0);
	unsigned failed = 0;
	uint8_t *w = gmem_kmap(g, 5 * PG);

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/snap", dir);
	cr_assert_not_null(w);
	w[7] = 0xa7;
	gmem_kunmap(g, w);
	cr_assert_eq(gmem_snapshot_save(g, path, 0), 0, "%s", gmem_last_error());
	/* The memory changes; each failed save must leave the old file. */
	w = gmem_kmap(g, 9 * PG);
	w[0] = 0x5c;
	gmem_kunmap(g, w);
	cr_assert_eq(gmem_convert(g, 64 * PG, 8 * PG, GMEM_SHARED, NULL), 0);
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++)
		failed += save_fails_cleanly(g, dir, path, calls[i].call, calls[i].name);
	cr_log_info("save: %u calls failed one by one", failed);
	cr_assert_geq(failed, 3);
	gmem_close(g);
	unlink(path);
	rmdir(dir);
}

/* ---- I/O contexts ------------------------------------------------------- */

/* Every syscall of gmem_io_create (its pool and the memory's I/O state)
 * failed one by one, and one in the middle of its calibration: -errno,
 * *out untouched, no mapping left, the memory's counters as before. */
Test(inject, io_create_every_syscall_fails_cleanly)
{
	static const enum gm_sys_call calls[] = { GM_SYS_MMAP, GM_SYS_MADVISE, GM_SYS_FALLOCATE,
						  GM_SYS_IOCTL };
	const struct gmem_io_config nocal = { .flags = GMEM_IO_CTX_NO_CALIBRATE };
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, SZ, 0);
	unsigned failed = 0;

	for (size_t c = 0; c < sizeof(calls) / sizeof(calls[0]); c++) {
		unsigned long skip;

		for (skip = 0; skip <= 64; skip++) {
			struct gmem_io *io = (struct gmem_io *)g;
			unsigned maps = count_maps(), fds = count_fds();
			struct gmem_stats before = th_stats(g), after;
			unsigned long n0 = gm_sys_count(calls[c]), made;
			int ret;

			/* The last round fails a call of the calibration instead. */
			gm_sys_inject(calls[c], skip == 64 ? 40 : skip, ENOMEM);
			ret = gmem_io_create(g, skip == 64 ? NULL : &nocal, &io);
			gm_sys_inject_clear();
			made = gm_sys_count(calls[c]) - n0;
			if (ret == 0) {
				TH_EQ(gmem_io_destroy(io), 0);
				if (skip < 64 && made <= skip)
					skip = 63;      /* no call left: on to calibration */
				continue;
			}
			failed++;
			cr_assert_lt(ret, 0);
			cr_assert_eq(io, (struct gmem_io *)g, "call %zu #%lu: *out written", c,
				     skip + 1);
			after = th_stats(g);
			TH_EQ(after.shared_pages, before.shared_pages);
			TH_EQ(after.pinned_pages, before.pinned_pages);
			TH_EQ(after.kmapped_pages, before.kmapped_pages);
			expect_nothing_left("gmem_io_create", skip + 1, fds, maps);
		}
	}
	cr_log_info("gmem_io_create: %u calls failed one by one", failed);
	cr_assert_geq(failed, 1);
	gmem_close(g);
}

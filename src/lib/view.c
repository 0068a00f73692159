// SPDX-License-Identifier: MIT
/*
 * view.c - the host view and the KVM view.
 *
 * The host view is one reserved range of the guest's size. Each maximal run
 * of shared pages is a MAP_SHARED mapping of the same range of the file; each
 * run of private pages is an anonymous PROT_NONE placeholder. mprotect() is
 * not enough: /proc/self/mem reads through PROT_NONE file mappings, while a
 * placeholder holds no guest data at all. The kernel merges adjacent
 * mappings of the same kind, so the view holds one VMA per run, and a run is
 * changed with one mmap(MAP_FIXED): a conversion costs one syscall per run
 * of pages whose state it changes (fewer when runs are merged, below), never
 * one per page.
 *
 * A region that becomes mixed has its huge mapping split by the kernel; when
 * it is uniformly shared again it is repaired with MADV_COLLAPSE (THP
 * backing). VMAs are bounded by vm.max_map_count, per process, so every open
 * memory reserves a budget of runs at open (below) and a conversion that
 * would overdraw its own budget is refused before any syscall.
 *
 * The KVM view is a second, full MAP_SHARED mapping given to KVM as the
 * memslot's userspace address; device code never sees it. It holds private
 * pages too, so it is the one mapping of private data that exists at
 * GMEM_PRIVACY_VIEW: like every file mapping made here it is excluded from
 * core dumps and from children (gm_sys_guard). Where the kernel converts in
 * place (GMEM_PRIVACY_KERNEL), private pages fault in every user mapping and
 * the KVM view is the host view itself.
 */
#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "track.h"
#include "sys.h"

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

/* Shared pages a to-shared mmap may map again to save a syscall. */
#define GM_COALESCE_GAP 64

#define GM_PLACEHOLDER_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED)

/* Reserve @size bytes of address space aligned to @align, as a placeholder. */
int gm_reserve(uint64_t size, uint64_t align, uint8_t **out)
{
	uint8_t *raw, *p;
	uint64_t head, tail;

	raw = gm_sys_mmap(NULL, size + align, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (raw == MAP_FAILED)
		return -errno;
	p = (uint8_t *)(((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1));
	head = (uint64_t)(p - raw);
	tail = align - head;
	if (head)
		gm_sys_munmap(raw, head);
	if (tail)
		gm_sys_munmap(p + size, tail);
	*out = p;
	return 0;
}

/*
 * Map file pages [first, first + n) at @base + their offset, shared, and
 * never into a child: a child forked while a page is shared would keep
 * reading it after it became private. A mapping that can hold private pages
 * (@private: the KVM view, or the one view where the kernel converts in
 * place) is kept out of core dumps too; a host-view run at view level holds
 * shared pages only, which the host may see by definition, so a conversion
 * pays one madvise for fork safety and not two.
 */
static int gm_map_file(struct gmem *g, uint8_t *base, uint64_t off, uint64_t len,
		       bool private)
{
	void *p = gm_sys_mmap(base + off, len, PROT_READ | PROT_WRITE,
			      MAP_SHARED | MAP_FIXED, g->b.fd, (off_t)off);
	int ret;

	g->n.view_syscalls++;
	if (p == MAP_FAILED)
		return -errno;
	if (private) {
		g->n.view_syscalls += 2;
		ret = gm_sys_guard(base + off, len, false);
	} else {
		g->n.view_syscalls++;
		ret = gm_sys_madvise(base + off, len, MADV_DONTFORK) ? -errno : 0;
	}
	if (ret)
		return ret;
	if (g->b.thp_advise) {
		g->n.view_syscalls++;
		if (gm_sys_madvise(base + off, len, MADV_HUGEPAGE))
			return -errno;
	}
	/* A fresh mapping is not write-protected: a tracker protects it. */
	if (base == g->view && g->view != g->kvm_view)
		gm_track_mapped(g, off, len);
	return 0;
}

static int gm_map_placeholder(struct gmem *g, uint8_t *base, uint64_t off, uint64_t len)
{
	void *p = gm_sys_mmap(base + off, len, PROT_NONE, GM_PLACEHOLDER_FLAGS, -1, 0);

	g->n.view_syscalls++;
	return p == MAP_FAILED ? -errno : 0;
}

static int gm_map_state(struct gmem *g, uint64_t first, uint64_t n, int to)
{
	uint64_t off = first << GM_PAGE_SHIFT, len = n << GM_PAGE_SHIFT;

	return to ? gm_map_file(g, g->view, off, len, false)
		  : gm_map_placeholder(g, g->view, off, len);
}

/* Map pages [first, first + n) as their state bits say, one mmap per run.
 * Used to undo a failed change: the bits are still the old states. */
static int gm_view_sync(struct gmem *g, uint64_t first, uint64_t n)
{
	uint64_t pos = first, end = first + n, s, len;

	while (pos < end) {
		int cur = gm_state_get(&g->st, pos);
		bool found = gm_state_next_run(&g->st, pos, end - pos, cur, &s, &len);
		int ret;

		assert(found && s == pos);
		ret = gm_map_state(g, s, len, cur);
		if (ret)
			return ret;
		pos = s + len;
	}
	return 0;
}

/* May the pages [from, to_page) between two runs be mapped again with them?
 * Private gaps are placeholders: always. Shared gaps lose their page-table
 * entries: only when short, and never over a pinned or mapped page, whose
 * mapping a VMM may have set up (mlock, madvise) and must keep. */
static bool gm_view_gap_mergeable(const struct gmem *g, uint64_t from, uint64_t to_page,
				  int to)
{
	uint64_t busy;

	if (!to)
		return true;
	return to_page - from <= GM_COALESCE_GAP &&
	       !gm_state_first_busy(&g->st, from, to_page - from, &busy);
}

/*
 * Change the mappings of [first, first + n) to state @to, before the state
 * bits change. Runs of pages to change are merged into one mmap when the gap
 * between them is cheap to map again: always for @to private (the gap is
 * placeholders already), up to GM_COALESCE_GAP pages for @to shared when
 * no page of the gap is busy (the gap's mapped pages only lose their
 * page-table entries). On failure the
 * mappings are put back as the bits say and -errno is returned.
 */
int gm_view_apply_locked(struct gmem *g, uint64_t first, uint64_t n, int to)
{
	uint64_t pos = first, end = first + n, s, len, span_s = 0, span_e = 0;
	int ret;

	/* New file mappings are not under a lazy restore's userfaultfd. */
	if (to && (ret = gm_loader_ensure(g, first, n)))
		return ret;
	while (pos < end && gm_state_next_run(&g->st, pos, end - pos, !to, &s, &len)) {
		if (span_e && gm_view_gap_mergeable(g, span_e, s, to)) {
			span_e = s + len;
		} else {
			if (span_e && (ret = gm_map_state(g, span_s, span_e - span_s, to)))
				goto rollback;
			span_s = s;
			span_e = s + len;
		}
		pos = s + len;
	}
	if (span_e && (ret = gm_map_state(g, span_s, span_e - span_s, to)))
		goto rollback;
	return 0;

rollback:
	if (gm_view_sync(g, first, span_e - first)) {
		g->broken = true;
		gm_set_error("host view: rollback failed; memory marked broken");
	}
	return ret;
}

static bool gm_small_test_clear(struct gmem *g, uint64_t r)
{
	uint64_t bit = 1ull << (r & 63), *w = &g->maybe_small[r >> 6];
	bool was = *w & bit;

	*w &= ~bit;
	return was;
}

void gm_view_mark_small(struct gmem *g, uint64_t first, uint64_t n)
{
	if (!g->maybe_small)
		return;
	for (uint64_t r = first / GM_REGION_PAGES; r <= (first + n - 1) / GM_REGION_PAGES; r++)
		g->maybe_small[r >> 6] |= 1ull << (r & 63);
}

/*
 * A region mapped by small pages (it was mixed, or a kmap window or partial
 * discard put small folios in it) stays so when it is uniform again: the
 * kernel only maps a PMD on a fault into an empty PMD. MADV_COLLAPSE makes
 * the folio huge and maps it with one PMD. Untouched regions are left alone,
 * so sharing 1 GiB costs no madvise at all.
 */
void gm_view_repair_locked(struct gmem *g, uint64_t region)
{
	uint8_t *addr = g->view + (region << GM_REGION_SHIFT);

	if (!g->maybe_small || !gm_small_test_clear(g, region))
		return;
	/* A collapse fills the file's holes: load the region first. */
	if (gm_loader_ensure(g, region * GM_REGION_PAGES, GM_REGION_PAGES)) {
		g->n.collapse_failures++;
		return;
	}
	g->n.view_syscalls++;
	if (gm_sys_madvise(addr, GMEM_REGION_SIZE, MADV_COLLAPSE))
		g->n.collapse_failures++;
}

/*
 * Mapping budgets. vm.max_map_count is per process, so each memory reserves
 * its own share of it when it opens, and a conversion is checked against
 * that share only: one guest's fragmentation can never refuse another
 * guest's conversion. What is free at an open is vm.max_map_count less what
 * the process maps now, less a margin for the rest of the process (kmap
 * windows, libraries, threads), less what earlier memories reserved and do
 * not use yet. A memory takes what the caller asks (gmem_config
 * .max_mappings) or, by default, what it could ever need (one run per page)
 * up to half of what is free, so the next memory still finds some.
 */
static pthread_mutex_t gm_budget_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t gm_budget_reserved;     /* sum of open memories' budgets    */
static atomic_uint_fast64_t gm_runs_used; /* sum of their runs now          */

#define GM_BUDGET_MARGIN (8 * GM_KMAP_SLOTS + 1024)

static uint64_t gm_maps_now(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	uint64_t n = 0;
	int c;

	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* Mappings a new memory could reserve now. Caller holds gm_budget_lock. */
static uint64_t gm_budget_free_locked(void)
{
	long max = gm_sysfs_long("/proc/sys/vm/max_map_count");
	uint64_t used = atomic_load(&gm_runs_used), maps = gm_maps_now() + GM_BUDGET_MARGIN;
	uint64_t unused = gm_budget_reserved > used ? gm_budget_reserved - used : 0;

	if (max <= 0)
		max = 65530;
	return (uint64_t)max > maps + unused ? (uint64_t)max - maps - unused : 0;
}

static int gm_budget_take(struct gmem *g, uint64_t want)
{
	uint64_t free_now, need = g->b.inplace ? 1 : g->st.npages;
	int ret = 0;

	pthread_mutex_lock(&gm_budget_lock);
	free_now = gm_budget_free_locked();
	if (!want)
		want = need < free_now / 2 ? need : free_now / 2;
	if (want < 1 || want > free_now) {
		gm_set_error("host view needs %llu mappings; %llu are free in this process "
			     "(vm.max_map_count)", (unsigned long long)(want ? want : 1),
			     (unsigned long long)free_now);
		ret = -ENOMEM;
	} else {
		g->runs_budget = want;
		gm_budget_reserved += want;
	}
	pthread_mutex_unlock(&gm_budget_lock);
	return ret;
}

static void gm_budget_give(struct gmem *g)
{
	pthread_mutex_lock(&gm_budget_lock);
	gm_budget_reserved -= g->runs_budget;
	pthread_mutex_unlock(&gm_budget_lock);
	g->runs_budget = 0;
}

int gm_view_runs_charge(struct gmem *g, uint64_t now, uint64_t after)
{
	uint64_t grow = after > now ? after - now : 0;

	assert(now == g->runs_charged);
	if (!grow)
		return 0;
	if (after > gm_view_runs_limit(g)) {
		gm_set_error("conversion would leave %llu mappings in the host view; this "
			     "memory's budget is %llu (vm.max_map_count)",
			     (unsigned long long)after,
			     (unsigned long long)gm_view_runs_limit(g));
		return -ENOMEM;
	}
	atomic_fetch_add(&gm_runs_used, grow);
	g->runs_charged = after;
	return 0;
}

void gm_view_runs_settle(struct gmem *g, uint64_t runs)
{
	if (runs < g->runs_charged) {
		atomic_fetch_sub(&gm_runs_used, g->runs_charged - runs);
		g->runs_charged = runs;
	}
}

/* Most runs this view may hold: its budget, or the test cap. Caller holds
 * g->lock. */
uint64_t gm_view_runs_limit(const struct gmem *g)
{
	return g->runs_budget < g->map_limit ? g->runs_budget : g->map_limit;
}

static void gm_view_unmap_kvm(struct gmem *g)
{
	if (g->kvm_view && g->kvm_view != g->view)
		gm_sys_munmap(g->kvm_view, g->size);
}

int gm_view_open(struct gmem *g, uint64_t max_mappings)
{
	int ret;

	if (g->b.huge == GMEM_HUGE_THP && !g->b.inplace) {
		g->maybe_small = calloc(g->st.nregions / 64 + 1, sizeof(uint64_t));
		if (!g->maybe_small) {
			ret = -ENOMEM;
			goto err;
		}
	}
	ret = gm_reserve(g->size, GMEM_REGION_SIZE, &g->view);
	if (ret)
		goto err_small;
	/* Kernel conversion: one mapping; the kernel hides private pages. */
	if (g->b.inplace || (g->flags & GMEM_F_INIT_SHARED)) {
		ret = gm_map_file(g, g->view, 0, g->size, g->b.inplace);
		if (ret)
			goto err_view;
	}
	if (g->b.inplace) {
		/* Private pages fault in every mapping: KVM uses this one. */
		g->kvm_view = g->view;
	} else {
		ret = gm_reserve(g->size, GMEM_REGION_SIZE, &g->kvm_view);
		if (ret)
			goto err_view;
		ret = gm_map_file(g, g->kvm_view, 0, g->size, true);
		if (ret)
			goto err_kvm;
	}
	g->map_limit = UINT64_MAX;
	ret = gm_budget_take(g, max_mappings);
	if (ret)
		goto err_kvm_quiet;
	/* One run now (and for ever where the kernel converts in place). */
	g->runs_charged = 1;
	atomic_fetch_add(&gm_runs_used, g->runs_charged);
	return 0;

err_kvm_quiet:
	gm_view_unmap_kvm(g);
	gm_sys_munmap(g->view, g->size);
	free(g->maybe_small);
	return ret;
err_kvm:
	gm_view_unmap_kvm(g);
err_view:
	gm_sys_munmap(g->view, g->size);
err_small:
	free(g->maybe_small);
err:
	gm_set_error("reserving %llu bytes of host and KVM views: %s",
		     (unsigned long long)g->size, strerror(-ret));
	return ret;
}

void gm_view_close(struct gmem *g)
{
	atomic_fetch_sub(&gm_runs_used, g->runs_charged);
	gm_budget_give(g);
	free(g->maybe_small);
	gm_view_unmap_kvm(g);
	gm_sys_munmap(g->view, g->size);
}

void gm_set_map_limit(struct gmem *g, uint64_t runs)
{
	pthread_mutex_lock(&g->lock);
	g->map_limit = runs;
	pthread_mutex_unlock(&g->lock);
}

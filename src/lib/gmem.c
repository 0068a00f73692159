// SPDX-License-Identifier: MIT
/*
 * gmem.c - public entry points of libgmem.
 *
 * Model: guest memory is one file (backend.h) of npages 4 KiB pages, each
 * private or shared (state.h). The host view (view.c) maps exactly the shared
 * pages; private pages are anonymous placeholders, so neither the host's
 * ordinary code nor /proc/self/mem reaches them. A page that is pinned or
 * temporarily mapped is busy and cannot become private. KVM gets a separate
 * full view (GMEM_PRIVACY_VIEW). Where the kernel converts in place (found
 * by behaviour, backend_kvm.c) it hides private pages itself, the host view
 * is one mapping and KVM uses it too (GMEM_PRIVACY_KERNEL).
 *
 * Every entry point validates its arguments, takes g->lock and calls a
 * *_locked worker; a worker either completes or leaves everything as it was
 * (states, mappings, contents, counts). gmem_state() and gmem_host() take no
 * lock.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "track.h"
#include "sys.h"

/* Check a range: page- (or granule-) aligned, non-empty, inside, no overflow. */
static int gm_range_ok(const struct gmem *g, uint64_t gpa, uint64_t len, uint64_t align)
{
	if (!len || (gpa | len) & (align - 1))
		return -EINVAL;
	if (gpa >= g->size || len > g->size - gpa)
		return -EINVAL;
	return 0;
}

/* The common start of every range call: clear the last error, check @g and
 * the range. 0 or -EINVAL. */
static int gm_enter(const struct gmem *g, uint64_t gpa, uint64_t len, uint64_t align)
{
	gm_clear_error();
	return g ? gm_range_ok(g, gpa, len, align) : -EINVAL;
}

static const struct gm_backend_ops *gm_pick_backend(const struct gmem_config *cfg)
{
	switch (cfg->backend) {
	case GMEM_BACKEND_KVM:
		return &gm_backend_kvm;
	case GMEM_BACKEND_MEMFD:
		return &gm_backend_memfd;
	case GMEM_BACKEND_AUTO:
		/* guest_memfd has no 2 MiB folios yet: huge memory is a memfd. */
		if (!(cfg->flags & GMEM_F_HUGE) && gm_kvm_guest_memfd_usable())
			return &gm_backend_kvm;
		return &gm_backend_memfd;
	}
	return NULL;
}

static int gm_config_ok(const struct gmem_config *cfg)
{
	if (!cfg->size || cfg->size % GMEM_REGION_SIZE) {
		gm_set_error("size %llu is not a non-zero multiple of 2 MiB",
			     (unsigned long long)cfg->size);
		return -EINVAL;
	}
	if (cfg->flags & ~GMEM_F_ALL) {
		gm_set_error("unknown flags %#x", cfg->flags & ~GMEM_F_ALL);
		return -EINVAL;
	}
	if ((unsigned)cfg->backend > GMEM_BACKEND_MEMFD) {
		gm_set_error("unknown backend %d", (int)cfg->backend);
		return -EINVAL;
	}
	return 0;
}

int gmem_open(const struct gmem_config *cfg, struct gmem **out)
{
	struct gmem *g;
	bool huge_model;
	int ret;

	gm_clear_error();
	if (!cfg || !out)
		return -EINVAL;
	ret = gm_config_ok(cfg);
	if (ret)
		return ret;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->size = cfg->size;
	g->flags = cfg->flags;
	g->b.fd = g->b.vm_fd = g->b.own_vm_fd = -1;
	g->ops = gm_pick_backend(cfg);
	g->b.kind = g->ops == &gm_backend_kvm ? GMEM_BACKEND_KVM : GMEM_BACKEND_MEMFD;
	ret = g->ops->open(&g->b, cfg);
	if (ret)
		goto err_free;
	ret = gm_state_init(&g->st, g->size >> GM_PAGE_SHIFT, cfg->flags & GMEM_F_INIT_SHARED);
	if (ret)
		goto err_backing;
	huge_model = g->b.huge != GMEM_HUGE_NONE;
	ret = gm_dmap_init(&g->dmap, g->st.npages, huge_model, cfg->flags & GMEM_F_INIT_SHARED);
	if (ret)
		goto err_state;
	ret = gm_view_open(g, cfg->max_mappings);
	if (ret)
		goto err_dmap;
	ret = gm_kmap_open(g);
	if (ret)
		goto err_view;
	ret = gm_track_open(g);
	if (ret)
		goto err_kmap;
	pthread_mutex_init(&g->lock, NULL);
	*out = g;
	return 0;

err_kmap:
	gm_kmap_close(g);
err_view:
	gm_view_close(g);
err_dmap:
	gm_dmap_fini(&g->dmap);
err_state:
	gm_state_fini(&g->st);
err_backing:
	g->ops->close(&g->b);
err_free:
	free(g);
	return ret;
}

void gmem_close(struct gmem *g)
{
	if (!g)
		return;
	/* I/O contexts still open are detached first (io/shares.c). */
	if (g->io_hooks)
		g->io_hooks->close(g);
	if (g->loader)
		g->loader->stop(g->loader);
	gm_track_close(g);
	gm_kmap_close(g);
	gm_view_close(g);
	gm_dmap_fini(&g->dmap);
	gm_state_fini(&g->st);
	g->ops->close(&g->b);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* gm_state_set() callback: count splits and repairs, feed the model. */
static void gm_on_region(void *ctx, uint64_t r, unsigned old_n, unsigned new_n)
{
	struct gmem *g = ctx;
	bool was_mixed = old_n && old_n < GM_REGION_PAGES;
	bool mixed = new_n && new_n < GM_REGION_PAGES;

	if (!was_mixed && mixed) {
		g->n.regions_split++;
		gm_view_mark_small(g, r * GM_REGION_PAGES, 1);
	}
	if (was_mixed && !mixed)
		g->n.regions_repaired++;
	if (new_n == GM_REGION_PAGES)
		gm_view_repair_locked(g, r);
	if (g->dmap.huge)
		gm_dmap_region(&g->dmap, r, old_n, new_n);
}

/* Make the kernel or the host view agree with the new states. */
static int gm_convert_apply_locked(struct gmem *g, uint64_t first, uint64_t n, int to,
				   uint64_t *busy_gpa)
{
	uint64_t busy_off = 0, runs, now;
	int ret;

	if (g->b.inplace) {
		ret = g->ops->set_private(&g->b, first << GM_PAGE_SHIFT, n << GM_PAGE_SHIFT,
					  !to, &busy_off);
		g->n.view_syscalls++;
		if (ret == -EAGAIN && busy_gpa)
			*busy_gpa = busy_off;
		return ret;
	}
	now = g->st.edges + 1;
	runs = gm_state_runs_after(&g->st, first, n, to);
	ret = gm_view_runs_charge(g, now, runs);
	if (ret)
		return ret;
	ret = gm_view_apply_locked(g, first, n, to);
	/* Keep only what the view now holds charged. */
	gm_view_runs_settle(g, ret ? now : runs);
	return ret;
}

int gm_convert_locked(struct gmem *g, uint64_t first, uint64_t n, int to,
		      uint64_t *busy_gpa)
{
	uint64_t busy, changed;
	int ret;

	/* Any busy page refuses, even one already private: the kernel's own
	 * conversion checks every folio of the range the same way. */
	if (!to && gm_state_first_busy(&g->st, first, n, &busy)) {
		if (busy_gpa)
			*busy_gpa = busy << GM_PAGE_SHIFT;
		g->n.refused++;
		return -EAGAIN;
	}
	if (!gm_state_count_other(&g->st, first, n, to)) {
		g->n.conversions++;
		return 0;
	}
	ret = gm_convert_apply_locked(g, first, n, to, busy_gpa);
	if (ret) {
		g->n.refused += ret == -EAGAIN || ret == -ENOMEM;
		return ret;
	}
	gm_track_changed(g, first, n);
	changed = gm_state_set(&g->st, first, n, to, gm_on_region, g);
	if (!g->dmap.huge)
		gm_dmap_pages(&g->dmap, first, n, to, changed);
	gm_dmap_call_end(&g->dmap);
	g->n.conversions++;
	g->n.pages_converted += changed;
	return 0;
}

int gmem_convert(struct gmem *g, uint64_t gpa, uint64_t len, enum gmem_state to,
		 uint64_t *busy_gpa)
{
	int ret = gm_enter(g, gpa, len, g ? g->b.granule : GMEM_PAGE_SIZE);

	if (ret)
		return ret;
	if (to != GMEM_PRIVATE && to != GMEM_SHARED)
		return -EINVAL;
	pthread_mutex_lock(&g->lock);
	ret = g->broken ? -EIO
			: gm_convert_locked(g, gm_page(gpa), gm_page(len), to == GMEM_SHARED,
					    busy_gpa);
	/* What the VMM asks last is what in-place I/O leaves behind. */
	if (!ret && g->io_hooks)
		g->io_hooks->converted(g->shares, gm_page(gpa), gm_page(len), to == GMEM_SHARED);
	pthread_mutex_unlock(&g->lock);
	return ret;
}

void gm_notify_locked(struct gmem *g, uint64_t first, uint64_t n, int to)
{
	if (g->notify_fn)
		g->notify_fn(g->notify_ctx, first << GM_PAGE_SHIFT, n << GM_PAGE_SHIFT,
			     to ? GMEM_SHARED : GMEM_PRIVATE);
}

int gmem_convert_notify(struct gmem *g, gmem_convert_fn fn, void *ctx)
{
	if (!g)
		return -EINVAL;
	pthread_mutex_lock(&g->lock);
	g->notify_fn = fn;
	g->notify_ctx = fn ? ctx : NULL;
	pthread_mutex_unlock(&g->lock);
	return 0;
}

int gmem_state(const struct gmem *g, uint64_t gpa)
{
	if (!g || gpa >= g->size)
		return -EINVAL;
	return gm_state_get(&g->st, gm_page(gpa));
}

void *gmem_host(const struct gmem *g, uint64_t gpa)
{
	if (!g || gpa >= g->size) {
		errno = EINVAL;
		return NULL;
	}
	return g->view + gpa;
}

void *gmem_kvm_view(const struct gmem *g)
{
	if (!g) {
		errno = EINVAL;
		return NULL;
	}
	return g->kvm_view;
}

int gm_pin_locked(struct gmem *g, uint64_t first, uint64_t n)
{
	int ret;

	if (g->flags & GMEM_F_NO_PIN)
		return -EPERM;
	if (gm_state_count_other(&g->st, first, n, 1))
		return -EPERM;
	ret = gm_state_pin(&g->st, first, n);
	if (!ret)
		g->n.pins++;
	return ret;
}

int gmem_pin(struct gmem *g, uint64_t gpa, uint64_t len)
{
	int ret = gm_enter(g, gpa, len, GMEM_PAGE_SIZE);

	if (ret)
		return ret;
	pthread_mutex_lock(&g->lock);
	ret = g->broken ? -EIO : gm_pin_locked(g, gm_page(gpa), gm_page(len));
	pthread_mutex_unlock(&g->lock);
	return ret;
}

int gmem_unpin(struct gmem *g, uint64_t gpa, uint64_t len)
{
	uint64_t first, n;
	int ret = gm_enter(g, gpa, len, GMEM_PAGE_SIZE);

	if (ret)
		return ret;
	first = gm_page(gpa);
	n = gm_page(len);
	pthread_mutex_lock(&g->lock);
	ret = gm_unpin_locked(g, first, n);
	pthread_mutex_unlock(&g->lock);
	return ret;
}

int gm_unpin_locked(struct gmem *g, uint64_t first, uint64_t n)
{
	uint64_t p;

	if (gm_state_first_unpinned(&g->st, first, n, &p))
		return -EINVAL;
	gm_state_unpin(&g->st, first, n);
	gm_unbusy_locked(g, first, n);
	return 0;
}

static int gm_discard_locked(struct gmem *g, uint64_t first, uint64_t n)
{
	uint64_t busy;
	int ret;

	/* Freeing memory under a pin or a window would pull data from under
	 * in-flight I/O: refuse, as for conversions. */
	if (gm_state_first_busy(&g->st, first, n, &busy))
		return -EBUSY;
	/* A page still to be loaded would be loaded over the hole. */
	ret = gm_loader_ensure(g, first, n);
	if (ret)
		return ret;
	gm_track_will_write(g, first, n);
	ret = gm_backing_discard(&g->b, first << GM_PAGE_SHIFT, n << GM_PAGE_SHIFT);
	if (ret)
		return ret;
	/* A hole punched in part of a huge folio splits it. */
	if (first % GM_REGION_PAGES)
		gm_view_mark_small(g, first, 1);
	if ((first + n) % GM_REGION_PAGES)
		gm_view_mark_small(g, first + n - 1, 1);
	g->n.discards++;
	return 0;
}

int gmem_discard(struct gmem *g, uint64_t gpa, uint64_t len)
{
	int ret = gm_enter(g, gpa, len, g ? g->b.granule : GMEM_PAGE_SIZE);

	if (ret)
		return ret;
	pthread_mutex_lock(&g->lock);
	ret = g->broken ? -EIO : gm_discard_locked(g, gm_page(gpa), gm_page(len));
	pthread_mutex_unlock(&g->lock);
	return ret;
}

int gmem_stats(const struct gmem *g, struct gmem_stats *s)
{
	struct gmem *m = (struct gmem *)g; /* the lock is not part of the value */

	if (!g || !s)
		return -EINVAL;
	memset(s, 0, sizeof(*s));
	pthread_mutex_lock(&m->lock);
	s->size = g->size;
	s->shared_pages = g->st.nshared;
	s->private_pages = g->st.npages - g->st.nshared;
	s->pinned_pages = g->st.npinned;
	s->kmapped_pages = g->st.nkmapped;
	s->conversions = g->n.conversions;
	s->pages_converted = g->n.pages_converted;
	s->refused = g->n.refused;
	s->pins = g->n.pins;
	s->kmaps = g->n.kmaps;
	s->discards = g->n.discards;
	s->view_syscalls = g->n.view_syscalls;
	s->view_mappings = g->b.inplace ? 1 : g->st.edges + 1;
	s->view_mapping_limit = g->b.inplace ? 1 : gm_view_runs_limit(g);
	s->regions = g->st.nregions;
	s->regions_mixed = g->st.nmixed;
	s->regions_split = g->n.regions_split;
	s->regions_repaired = g->n.regions_repaired;
	s->collapse_failures = g->n.collapse_failures;
	s->metadata_bytes = gm_state_bytes(&g->st) + gm_dmap_bytes(&g->dmap, g->st.npages);
	s->dmap_real = g->b.dmap_real;
	s->dmap = g->dmap.c;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

int gmem_info(const struct gmem *g, struct gmem_info *info)
{
	if (!g || !info)
		return -EINVAL;
	memset(info, 0, sizeof(*info));
	info->backend = g->b.kind;
	info->huge = g->b.huge;
	info->flags = g->flags;
	info->size = g->size;
	info->fd = g->b.fd;
	info->vm_fd = g->b.vm_fd;
	info->gmem_flags = g->b.gmem_flags;
	info->inplace = g->b.inplace;
	info->dmap_removal = g->b.dmap_real;
	info->granule = g->b.granule;
	info->privacy = g->b.inplace ? GMEM_PRIVACY_KERNEL : GMEM_PRIVACY_VIEW;
	info->view_mapping_budget = g->runs_budget;
	if (g->trk && g->trk->dirty) {
		pthread_mutex_lock(&((struct gmem *)g)->lock);
		info->track = g->trk->how;
		info->track_based = g->trk->based;
		pthread_mutex_unlock(&((struct gmem *)g)->lock);
	}
	return 0;
}

const char *gmem_dmap_assumptions(void)
{
	return gm_dmap_assumptions;
}

const char *gmem_strerror(int err)
{
	/* Any int comes in: -INT_MIN does not exist. */
	if (err == INT_MIN || err > 0)
		return "unknown error";
	switch (-err) {
	case 0:
		return "success";
	case EINVAL:
		return "invalid argument: range unaligned, empty, outside the memory or "
		       "overflowing, or unknown flag";
	case EAGAIN:
		return "a page of the range is pinned or temporarily mapped";
	case EPERM:
		return "page is private, or memory opened without pinning";
	case ENOMEM:
		return "out of memory, or the host view would exceed vm.max_map_count";
	case EBUSY:
		return "pages are in use (pinned or temporarily mapped), or no window is free";
	case EOPNOTSUPP:
		return "not supported by this host (see gmem_last_error)";
	case EIO:
		return "memory is broken: a failed change could not be rolled back";
	default:
		return strerror(-err);
	}
}

const char *gmem_backend_name(enum gmem_backend b)
{
	switch (b) {
	case GMEM_BACKEND_AUTO:
		return "auto";
	case GMEM_BACKEND_KVM:
		return "kvm";
	case GMEM_BACKEND_MEMFD:
		return "memfd";
	}
	return "unknown";
}

const char *gmem_huge_name(enum gmem_huge h)
{
	switch (h) {
	case GMEM_HUGE_NONE:
		return "4k";
	case GMEM_HUGE_THP:
		return "thp";
	case GMEM_HUGE_HUGETLB:
		return "hugetlb";
	}
	return "unknown";
}

// SPDX-License-Identifier: MIT
/*
 * kmap.c - temporary mappings of single pages, the kernel's kmap idea.
 *
 * A pool of GM_KMAP_SLOTS windows, each one mapping granule wide, is
 * reserved at open. gmem_kmap() takes a free window, counts the page as
 * temporarily mapped (so it cannot become private under the caller) and maps
 * that page of the file there; gmem_kunmap() puts the placeholder back. A
 * window maps one page whatever its state: this is how the hypervisor reaches
 * a private page without sharing it. Windows are short-lived and meant to be
 * released by the thread that took them. A mapped window is excluded from
 * core dumps and children before its address is handed out.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "track.h"
#include "sys.h"

int gm_kmap_open(struct gmem *g)
{
	int ret = gm_reserve(GM_KMAP_SLOTS * g->b.granule, g->b.granule, &g->kmap.base);

	if (ret) {
		gm_set_error("reserving the temporary-mapping windows: %s", strerror(-ret));
		return ret;
	}
	memset(g->kmap.free, 0xff, sizeof(g->kmap.free));
	return 0;
}

void gm_kmap_close(struct gmem *g)
{
	gm_sys_munmap(g->kmap.base, GM_KMAP_SLOTS * g->b.granule);
}

static int gm_kmap_slot_get(struct gm_kmap_pool *k)
{
	for (unsigned i = 0; i < GM_KMAP_SLOTS / 64; i++) {
		if (k->free[i]) {
			unsigned bit = (unsigned)__builtin_ctzll(k->free[i]);

			k->free[i] &= ~(1ull << bit);
			return (int)(i * 64 + bit);
		}
	}
	return -EBUSY;
}

static void gm_kmap_slot_put(struct gm_kmap_pool *k, unsigned slot)
{
	k->free[slot / 64] |= 1ull << (slot % 64);
}

static bool gm_kmap_slot_busy(const struct gm_kmap_pool *k, unsigned slot)
{
	return !(k->free[slot / 64] & (1ull << (slot % 64)));
}

/* Put the placeholder back over a window: 0 or -errno. */
static int gm_kmap_window_clear(uint8_t *win, uint64_t gran)
{
	return gm_sys_mmap(win, gran, PROT_NONE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1,
			   0) == MAP_FAILED ? -errno : 0;
}

static void *gm_kmap_locked(struct gmem *g, uint64_t gpa, int *err)
{
	uint64_t gran = g->b.granule, page = gm_page(gpa);
	uint8_t *win;
	int slot, ret;

	if (g->b.inplace && !gm_state_get(&g->st, page)) {
		/* The kernel itself refuses host access to private pages. */
		gm_set_error("kernel converts in place: private pages cannot be mapped");
		*err = -EOPNOTSUPP;
		return NULL;
	}
	/* The window is not under a lazy restore's userfaultfd. */
	ret = gm_loader_ensure(g, gm_page(gpa & ~(gran - 1)), gm_page(gran));
	if (ret) {
		*err = ret;
		return NULL;
	}
	slot = gm_kmap_slot_get(&g->kmap);
	if (slot < 0) {
		*err = slot;
		return NULL;
	}
	/* The window is not write-protected: the page counts as written from
	 * now, and a live save copies it first. */
	gm_track_will_write(g, page, 1);
	ret = gm_state_kmap_get(&g->st, page);
	if (ret)
		goto err_slot;
	win = g->kmap.base + (uint64_t)slot * gran;
	if (gm_sys_mmap(win, gran, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, g->b.fd,
			(off_t)(gpa & ~(gran - 1))) == MAP_FAILED) {
		ret = -errno;
		goto err_count;
	}
	ret = gm_sys_guard(win, gran, false);
	if (ret)
		goto err_unmap;
	g->kmap.page[slot] = page;
	g->n.kmaps++;
	/* A 4 KiB window faults in a 4 KiB folio where there was none. */
	gm_view_mark_small(g, page, 1);
	return win + (gpa & (gran - 1));

err_unmap:
	/* The page must not stay reachable through an unguarded window; if
	 * even the placeholder fails, the slot and the count stay taken. */
	if (gm_kmap_window_clear(win, gran)) {
		*err = ret;
		return NULL;
	}
err_count:
	gm_state_kmap_put(&g->st, page);
err_slot:
	gm_kmap_slot_put(&g->kmap, (unsigned)slot);
	*err = ret;
	return NULL;
}

void *gmem_kmap(struct gmem *g, uint64_t gpa)
{
	void *p;
	int err = 0;

	gm_clear_error();
	if (!g || gpa >= g->size) {
		errno = EINVAL;
		return NULL;
	}
	pthread_mutex_lock(&g->lock);
	if (g->broken)
		err = -EIO;
	p = err ? NULL : gm_kmap_locked(g, gpa, &err);
	pthread_mutex_unlock(&g->lock);
	if (!p)
		errno = -err;
	return p;
}

void gmem_kunmap(struct gmem *g, void *addr)
{
	uint8_t *a = addr;
	uint64_t gran, slot;

	if (!g || !a)
		return;
	gran = g->b.granule;
	if (a < g->kmap.base || a >= g->kmap.base + GM_KMAP_SLOTS * gran)
		return;
	slot = (uint64_t)(a - g->kmap.base) / gran;
	pthread_mutex_lock(&g->lock);
	if (gm_kmap_slot_busy(&g->kmap, (unsigned)slot)) {
		uint8_t *win = g->kmap.base + slot * gran;

		/* Placeholder first: the page must be unreachable before it may
		 * become private again. A failure here would leave the window
		 * mapped, so the slot is not reused and the page stays busy. */
		if (!gm_kmap_window_clear(win, gran)) {
			/* Written until now, for a save since the window opened. */
			gm_track_changed(g, g->kmap.page[slot], 1);
			gm_state_kmap_put(&g->st, g->kmap.page[slot]);
			gm_kmap_slot_put(&g->kmap, (unsigned)slot);
			gm_unbusy_locked(g, g->kmap.page[slot], 1);
		}
	}
	pthread_mutex_unlock(&g->lock);
}

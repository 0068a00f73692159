// SPDX-License-Identifier: MIT
/*
 * track.c - which pages changed since the last snapshot saved from a memory
 * (GMEM_F_TRACK_WRITES), so that a save against that snapshot holds only
 * those pages.
 *
 * Model: a bitmap, a bit per page, of pages changed since the baseline (the
 * last file saved), fed from two sides:
 *  - writes through the library's own views, which are the only mappings
 *    KVM (a plain memslot on the KVM view) and the host (the host view, and
 *    through it in-place and bounce I/O) write guest memory through. Both
 *    views are registered with a userfaultfd in write-protect mode:
 *      GMEM_TRACK_PAGEMAP   asynchronous (UFFD_FEATURE_WP_ASYNC): the kernel
 *                           lifts the protection itself on the first write
 *                           and PAGEMAP_SCAN reports and re-protects the
 *                           written pages in one call per view, at a save;
 *      GMEM_TRACK_UFFD_SYNC synchronous: a thread serves each first write
 *                           (a live save, which must copy the page first,
 *                           and every save after one on this memory: one
 *                           userfaultfd serves both, so no write is unseen
 *                           while one mechanism hands over to another);
 *  - everything else the library does to pages itself: conversions,
 *    discards, temporary mappings (their windows are not registered: the
 *    pages count as written when mapped and when unmapped), loads.
 * KVM's dirty log cannot help: KVM refuses it on guest_memfd memslots, and
 * the memslots are the VMM's, not the library's. On guest_memfd nothing the
 * library can see observes guest writes: GMEM_TRACK_NONE, and every save
 * is a full one. Mappings the library did not make (a VMM's own alias of
 * the KVM view, the user accelerator's guest-physical window) are not seen
 * either: see gmem_snapshot_save(3).
 *
 * Baseline: none at open; each save that commits sets it to the new file's
 * identity. Anything that may have lost a change (a registration that
 * failed, a scan refused) drops it: the next save is a full one, never a
 * wrong diff.
 *
 * Lock rules: the bitmap's words are set with atomic ORs (the fault thread
 * sets bits without g->lock); everything else happens under g->lock. t->mu
 * guards the before-hook against the fault thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/userfaultfd.h>

#include "sys.h"
#include "track.h"

#include "uffd_uapi.h"

#define GM_TRACK_FEATURES (UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_WP_UNPOPULATED)
/* Regions a PAGEMAP_SCAN call returns at most. */
#define GM_TRACK_VEC 512

static void gm_track_set(uint64_t *bits, uint64_t first, uint64_t n)
{
	for (uint64_t p = first; p < first + n;) {
		uint64_t w = p / 64, b = p % 64, take = 64 - b < first + n - p ? 64 - b
									   : first + n - p;
		uint64_t mask = take == 64 ? ~0ull : ((1ull << take) - 1) << b;

		__atomic_fetch_or(&bits[w], mask, __ATOMIC_RELAXED);
		p += take;
	}
}

static int gm_track_uffd_new(bool async)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = GM_TRACK_FEATURES | (async ? UFFD_FEATURE_WP_ASYNC : 0),
	};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return -errno;
	if (gm_sys_ioctl(fd, UFFDIO_API, &api)) {
		int ret = -errno;

		close(fd);
		return ret == -EINVAL ? -EOPNOTSUPP : ret;
	}
	return fd;
}

/* A new userfaultfd as t->uffd: 0, or -errno and t->uffd stays -1. */
static int gm_track_uffd_open(struct gm_track *t, bool async)
{
	int fd = gm_track_uffd_new(async);

	if (fd < 0)
		return fd;
	t->uffd = fd;
	return 0;
}

int gm_track_open(struct gmem *g)
{
	struct gm_track *t;
	uint64_t words = (g->st.npages + 63) / 64;

	if (!(g->flags & GMEM_F_TRACK_WRITES))
		return 0;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->dirty = malloc(words * sizeof(*t->dirty));
	if (!t->dirty) {
		free(t);
		return -ENOMEM;
	}
	memset(t->dirty, 0xff, words * sizeof(*t->dirty));
	t->words = words;
	t->uffd = t->pagemap = t->stop_fd = -1;
	pthread_mutex_init(&t->mu, NULL);
	/* Only the memfd backend's KVM view is where KVM writes. */
	t->how = g->b.kind == GMEM_BACKEND_MEMFD && g->kvm_view != g->view &&
		 gm_track_host_supports() ? GMEM_TRACK_PAGEMAP : GMEM_TRACK_NONE;
	g->trk = t;
	return 0;
}

static void gm_track_thread_stop(struct gm_track *t)
{
	uint64_t one = 1;

	if (!t->thread_started)
		return;
	if (write(t->stop_fd, &one, sizeof(one)) != sizeof(one))
		abort();        /* an eventfd write cannot fail here */
	pthread_join(t->thread, NULL);
	t->thread_started = false;
}

/* Close the userfaultfd: the kernel drops every registration with it. */
static void gm_track_disarm(struct gm_track *t)
{
	gm_track_thread_stop(t);
	if (t->uffd >= 0)
		close(t->uffd);
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	t->uffd = t->stop_fd = -1;
	t->armed = false;
}

static void gm_track_free(struct gm_track *t, bool unregister);

void gm_track_close(struct gmem *g)
{
	struct gm_track *t = g->trk;

	if (!t)
		return;
	g->trk = NULL;
	gm_track_free(t, false);        /* the views go with the memory */
}

/* Baseline lost: the next save is full. */
static void gm_track_lose(struct gm_track *t)
{
	t->lost = true;
	t->based = false;
}

static int gm_track_protect(struct gm_track *t, uint8_t *addr, uint64_t len, bool wp)
{
	struct uffdio_writeprotect w = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return gm_sys_ioctl(t->uffd, UFFDIO_WRITEPROTECT, &w) ? -errno : 0;
}

static int gm_track_register(struct gm_track *t, uint8_t *addr, uint64_t len)
{
	struct uffdio_register r = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	if (gm_sys_ioctl(t->uffd, UFFDIO_REGISTER, &r))
		return -errno;
	return gm_track_protect(t, addr, len, true);
}

/* What a tracker does to one stretch of a view: @base the view, bytes
 * [off, off + len) of it. */
typedef int (*gm_track_view_fn)(struct gmem *g, uint8_t *base, uint64_t off, uint64_t len);

/* @fn on the whole KVM view, then on each shared run of the host view (its
 * private runs are inaccessible placeholders): the mappings guest memory
 * is written through. Stops at the first error. Caller holds g->lock. */
static int gm_track_each_view(struct gmem *g, gm_track_view_fn fn)
{
	uint64_t pos = 0, s, len;
	int ret = fn(g, g->kvm_view, 0, g->size);

	while (!ret && pos < g->st.npages &&
	       gm_state_next_run(&g->st, pos, g->st.npages - pos, 1, &s, &len)) {
		ret = fn(g, g->view, s << GM_PAGE_SHIFT, len << GM_PAGE_SHIFT);
		pos = s + len;
	}
	return ret;
}

static int gm_track_register_one(struct gmem *g, uint8_t *base, uint64_t off, uint64_t len)
{
	return gm_track_register(g->trk, base + off, len);
}

static int gm_track_protect_one(struct gmem *g, uint8_t *base, uint64_t off, uint64_t len)
{
	return gm_track_protect(g->trk, base + off, len, true);
}

/* Register and write-protect both views. Caller holds g->lock. */
static int gm_track_register_views(struct gmem *g)
{
	return gm_track_each_view(g, gm_track_register_one);
}

/* Write-protect both views again (synchronous mode, a new interval). */
static int gm_track_protect_views(struct gmem *g)
{
	return gm_track_each_view(g, gm_track_protect_one);
}

/* Arm asynchronous tracking. Caller holds g->lock. */
static int gm_track_arm(struct gmem *g)
{
	struct gm_track *t = g->trk;
	int ret;

	if (t->pagemap < 0) {
		t->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
		if (t->pagemap < 0)
			return -errno;
	}
	ret = gm_track_uffd_open(t, true);
	if (ret)
		return ret;
	ret = gm_track_register_views(g);
	if (ret) {
		gm_track_disarm(t);
		return ret;
	}
	t->armed = true;
	return 0;
}

/* Collect the pages written in [addr, addr + len) and protect them again. */
static int gm_track_scan(struct gmem *g, uint8_t *base, uint64_t off, uint64_t len)
{
	struct gm_track *t = g->trk;
	struct page_region v[GM_TRACK_VEC];
	uint64_t at = (uintptr_t)(base + off), end = at + len;

	while (at < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = at, .end = end,
			.vec = (uintptr_t)v, .vec_len = GM_TRACK_VEC,
			.category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(t->pagemap, PAGEMAP_SCAN, &a);

		if (n < 0)
			return -errno;
		for (long i = 0; i < n; i++)
			gm_track_set(t->dirty, (v[i].start - (uintptr_t)base) >> GM_PAGE_SHIFT,
				     (v[i].end - v[i].start) >> GM_PAGE_SHIFT);
		if (a.walk_end <= at)
			return -EIO;    /* no progress: never loop */
		at = a.walk_end;
	}
	return 0;
}

/* Asynchronous mode: fold what the views saw into the bitmap. Caller holds
 * g->lock. */
static int gm_track_harvest(struct gmem *g)
{
	return gm_track_each_view(g, gm_track_scan);
}

void gm_track_changed(struct gmem *g, uint64_t first, uint64_t n)
{
	if (g->trk && g->trk->dirty)
		gm_track_set(g->trk->dirty, first, n);
}

void gm_track_changed_bits(struct gmem *g, const uint64_t *bits)
{
	struct gm_track *t = g->trk;

	if (!t || !t->dirty)
		return;
	/* @bits may be set meanwhile (a live save's fault thread): a page
	 * set later gets its bit from the fault itself. */
	for (uint64_t w = 0; w < t->words; w++) {
		uint64_t b = __atomic_load_n(&bits[w], __ATOMIC_RELAXED);

		if (b)
			__atomic_fetch_or(&t->dirty[w], b, __ATOMIC_RELAXED);
	}
}

void gm_track_will_write(struct gmem *g, uint64_t first, uint64_t n)
{
	struct gm_track *t = g->trk;

	if (!t)
		return;
	pthread_mutex_lock(&t->mu);
	if (t->before)
		for (uint64_t p = first; p < first + n; p++)
			t->before(t->before_ctx, p);
	pthread_mutex_unlock(&t->mu);
	if (t->dirty)
		gm_track_set(t->dirty, first, n);
}

void gm_track_mapped(struct gmem *g, uint64_t off, uint64_t len)
{
	struct gm_track *t = g->trk;

	if (!t || !t->armed)
		return;
	if (gm_track_register(t, g->view + off, len)) {
		gm_track_lose(t);
		t->missed = true;       /* a live save cannot vouch for its file */
	}
}

static void gm_track_free_chg(uint64_t *chg)
{
	free(chg);
}

int gm_track_parent_check(struct gmem *g, const uint8_t *parent_id)
{
	struct gm_track *t = g->trk;

	if (parent_id && t && t->dirty && t->based &&
	    memcmp(parent_id, t->base_id, GM_TRACK_ID_BYTES)) {
		gm_set_error("snapshot: the parent is not the last snapshot saved from this "
			     "memory");
		return -ESTALE;
	}
	return 0;
}

int gm_track_save_begin(struct gmem *g, const uint8_t *parent_id, uint64_t **chg,
			bool *incremental)
{
	struct gm_track *t = g->trk;
	bool was_lost, resync, ok = true;
	uint64_t *cur;

	*chg = NULL;
	*incremental = false;
	if (!t || !t->dirty)
		return 0;
	if (gm_track_parent_check(g, parent_id))
		return -ESTALE;
	cur = malloc(t->words * sizeof(*cur));
	if (!cur)
		return -ENOMEM;
	was_lost = t->lost;
	if (t->armed && t->how == GMEM_TRACK_PAGEMAP)
		ok = !gm_track_harvest(g);
	/* Synchronous: protect what the thread let go, after the bits are
	 * taken (a page written in between is in this file, whose contents
	 * are read later, and, faulting again, in the next), and with the
	 * fault thread held off: a fault that set its bit before the exchange
	 * must not lift the protection after it. Not needed when a live
	 * save's start has just protected everything (fresh). */
	resync = t->armed && t->how == GMEM_TRACK_UFFD_SYNC && !t->fresh;
	if (resync)
		pthread_mutex_lock(&t->mu);
	/* Take the bits and start the next interval with none. The fault
	 * thread may set bits meanwhile: exchange word by word. */
	for (uint64_t w = 0; w < t->words; w++)
		cur[w] = __atomic_exchange_n(&t->dirty[w], 0, __ATOMIC_RELAXED);
	if (resync) {
		ok = !gm_track_protect_views(g);
		pthread_mutex_unlock(&t->mu);
	}
	t->fresh = false;
	*incremental = parent_id && t->based && !was_lost && ok && t->how != GMEM_TRACK_NONE;
	if (!t->armed && t->how == GMEM_TRACK_PAGEMAP)
		ok = !gm_track_arm(g);
	/* Whether the interval starting now sees every write: the next save
	 * may be incremental only if so. */
	t->lost = !ok || !t->armed;
	if (t->lost)
		t->based = false;
	*chg = cur;
	return 0;
}

void gm_track_save_end(struct gmem *g, uint64_t *chg, const uint8_t *id)
{
	struct gm_track *t = g->trk;

	if (!t || !t->dirty) {
		gm_track_free_chg(chg);
		return;
	}
	pthread_mutex_lock(&g->lock);
	if (!id) {
		for (uint64_t w = 0; w < t->words; w++)
			__atomic_fetch_or(&t->dirty[w], chg[w], __ATOMIC_RELAXED);
	} else if (t->how != GMEM_TRACK_NONE && t->armed && !t->lost) {
		memcpy(t->base_id, id, GM_TRACK_ID_BYTES);
		t->based = true;
	}
	pthread_mutex_unlock(&g->lock);
	gm_track_free_chg(chg);
}

/* ---- synchronous mode ---------------------------------------------------- */

void (*gm_track_test_serving)(uint64_t page);

/* Serve one write-protect fault at @addr: the before-hook, the bit, then
 * lift the protection of that page in that view (which wakes the writer). */
static void gm_track_serve(struct gm_track *t, uint64_t addr)
{
	const struct gmem *g = t->g;
	uint8_t *a = (uint8_t *)(uintptr_t)(addr & ~(GMEM_PAGE_SIZE - 1));
	uint8_t *base = a >= g->kvm_view && a < g->kvm_view + g->size ? g->kvm_view : g->view;
	uint64_t page = (uint64_t)(a - base) >> GM_PAGE_SHIFT;

	/* t->mu is held until the page is unprotected: a hook change
	 * (gm_track_hook_set) waits for a fault being served under the old
	 * hook to be over, protection lifted included. */
	pthread_mutex_lock(&t->mu);
	if (t->before)
		t->before(t->before_ctx, page);
	if (t->dirty)
		gm_track_set(t->dirty, page, 1);
	{
		void (*seam)(uint64_t) = __atomic_load_n(&gm_track_test_serving, __ATOMIC_ACQUIRE);

		if (seam)
			seam(page);
	}
	/* Lifting the protection wakes the writer. It fails only if the view
	 * changed meanwhile (remapped by a conversion): wake the writer
	 * anyway, and it faults again on whatever is there now. */
	if (gm_track_protect(t, a, GMEM_PAGE_SIZE, false)) {
		struct uffdio_range r = { .start = (uintptr_t)a, .len = GMEM_PAGE_SIZE };

		gm_sys_ioctl(t->uffd, UFFDIO_WAKE, &r);
	}
	pthread_mutex_unlock(&t->mu);
}

/* The fault thread. It knows the tracker, not g->trk: a tracker being
 * released (gm_track_release) is no longer the memory's. */
static void *gm_track_main(void *arg)
{
	struct gm_track *t = arg;
	struct pollfd p[2] = { { .fd = t->uffd, .events = POLLIN },
			       { .fd = t->stop_fd, .events = POLLIN } };
	struct uffd_msg msg[16];

	for (;;) {
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		n = read(t->uffd, msg, sizeof(msg));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n / (ssize_t)sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT &&
			    msg[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
				gm_track_serve(t, msg[i].arg.pagefault.address);
	}
	gm_sys_stack_wipe();      /* the before-hook copies page data */
	return NULL;
}

void gm_track_hook_set(struct gmem *g, gm_track_before_fn before, void *ctx)
{
	struct gm_track *t = g->trk;

	pthread_mutex_lock(&t->mu);
	t->before = before;
	t->before_ctx = ctx;
	pthread_mutex_unlock(&t->mu);
}

void gm_track_hook_hold(struct gmem *g, bool hold)
{
	if (hold)
		pthread_mutex_lock(&g->trk->mu);
	else
		pthread_mutex_unlock(&g->trk->mu);
}

static int gm_track_register_only(struct gmem *g, uint8_t *base, uint64_t off, uint64_t len)
{
	struct uffdio_register r = {
		.range = { .start = (uintptr_t)(base + off), .len = len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	return gm_sys_ioctl(g->trk->uffd, UFFDIO_REGISTER, &r) ? -errno : 0;
}

/* Move to a synchronous userfaultfd with its fault thread, the views
 * registered but not yet protected. Caller holds g->lock. */
static int gm_track_go_sync(struct gmem *g, gm_track_before_fn before, void *ctx)
{
	struct gm_track *t = g->trk;
	int ret;

	/* Asynchronous until now: what it saw goes into the bitmap; then the
	 * views move to the new userfaultfd (a range takes one at a time). A
	 * write between the two is unseen: the baseline goes, and this save
	 * is a full one. */
	if (t->armed) {
		gm_track_harvest(g);
		gm_track_lose(t);
	}
	gm_track_disarm(t);
	gm_track_hook_set(g, before, ctx);
	t->stop_fd = eventfd(0, EFD_CLOEXEC);
	if (t->stop_fd < 0)
		return -errno;
	ret = gm_track_uffd_open(t, false);
	if (ret)
		return ret;
	t->g = g;
	if (pthread_create(&t->thread, NULL, gm_track_main, t))
		return -EAGAIN;
	t->thread_started = true;
	ret = gm_track_each_view(g, gm_track_register_only);
	if (ret)
		return ret;
	/* From here on fresh host-view mappings are registered and protected
	 * as they are made (gm_track_mapped). */
	t->armed = true;
	if (t->dirty)
		t->how = GMEM_TRACK_UFFD_SYNC;
	return 0;
}

/* Note a shared run of the host view for gm_track_sync_protect(). */
static int gm_track_pending_add(struct gmem *g, uint8_t *base, uint64_t off, uint64_t len)
{
	struct gm_track *t = g->trk;

	if (base != g->view)
		return 0;       /* the KVM view is protected whole */
	if (t->npending == t->pending_cap) {
		uint32_t cap = t->pending_cap ? 2 * t->pending_cap : 64;
		struct gm_track_run *n = realloc(t->pending, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		t->pending = n;
		t->pending_cap = cap;
	}
	t->pending[t->npending++] = (struct gm_track_run){ .off = off, .len = len };
	return 0;
}

static void gm_track_pending_free(struct gm_track *t)
{
	free(t->pending);
	t->pending = NULL;
	t->npending = t->pending_cap = 0;
}

int gm_track_sync_arm(struct gmem *g, gm_track_before_fn before, void *ctx)
{
	struct gm_track *t = g->trk;
	bool fresh = !t;
	int ret;

	if (g->b.kind != GMEM_BACKEND_MEMFD || g->kvm_view == g->view) {
		gm_set_error("snapshot: a live save needs the memfd backend's views "
			     "(guest_memfd writes cannot be intercepted)");
		return -EOPNOTSUPP;
	}
	if (fresh) {
		t = calloc(1, sizeof(*t));
		if (!t)
			return -ENOMEM;
		t->uffd = t->pagemap = t->stop_fd = -1;
		t->how = GMEM_TRACK_UFFD_SYNC;
		pthread_mutex_init(&t->mu, NULL);
		g->trk = t;
	}
	t->fresh = false;
	t->missed = false;
	if (t->how == GMEM_TRACK_UFFD_SYNC && t->thread_started) {
		gm_track_hook_set(g, before, ctx);      /* registered already */
		ret = 0;
	} else {
		ret = gm_track_go_sync(g, before, ctx);
	}
	gm_track_pending_free(t);
	if (!ret)
		ret = gm_track_each_view(g, gm_track_pending_add);
	if (!ret)
		return 0;
	gm_set_error("snapshot: write-protecting the memory for a live save: %s",
		     strerror(-ret));
	gm_track_release(gm_track_sync_stop(g));
	if (!fresh) {
		/* Back to the asynchronous mechanism, re-armed by the next save. */
		gm_track_disarm(t);
		gm_track_lose(t);
		t->how = GMEM_TRACK_PAGEMAP;
	}
	return ret;
}

/* Protect [addr, addr + len) a piece at a time: the kernel holds the
 * process's mmap lock for each call, and any mmap() in the process (a
 * conversion, a temporary mapping) waits for it. */
#define GM_TRACK_PIECE (256ull << 20)

static int gm_track_protect_pieces(struct gm_track *t, uint8_t *addr, uint64_t len)
{
	for (uint64_t off = 0; off < len; off += GM_TRACK_PIECE) {
		int ret = gm_track_protect(t, addr + off,
					   len - off < GM_TRACK_PIECE ? len - off : GM_TRACK_PIECE,
					   true);

		if (ret)
			return ret;
	}
	return 0;
}

int gm_track_sync_protect(struct gmem *g)
{
	struct gm_track *t = g->trk;
	int ret = gm_track_protect_pieces(t, g->kvm_view, g->size);

	for (uint32_t i = 0; !ret && i < t->npending; i++) {
		struct gm_track_run *r = &t->pending[i];

		ret = gm_track_protect_pieces(t, g->view + r->off, r->len);
		/* Remapped by a conversion meanwhile: gm_track_mapped()
		 * protected what is mapped there now, but the call may have
		 * stopped at the hole. gm_track_sync_settle() goes again. */
		r->redo = ret == -ENOENT;
		if (r->redo)
			ret = 0;
	}
	return ret;
}

/* Protect the host view's shared runs in [first, first + n) pages. Caller
 * holds g->lock. */
static int gm_track_protect_shared(struct gmem *g, uint64_t first, uint64_t n)
{
	struct gm_track *t = g->trk;
	uint64_t pos = first, s, len;
	int ret = 0;

	while (!ret && pos < first + n &&
	       gm_state_next_run(&g->st, pos, first + n - pos, 1, &s, &len)) {
		ret = gm_track_protect(t, g->view + (s << GM_PAGE_SHIFT), len << GM_PAGE_SHIFT,
				       true);
		pos = s + len;
	}
	return ret;
}

int gm_track_sync_settle(struct gmem *g, void (*late)(void *ctx, uint64_t first, uint64_t n),
			 void *ctx)
{
	struct gm_track *t = g->trk;
	int ret = 0;

	for (uint32_t i = 0; !ret && i < t->npending; i++) {
		uint64_t first = t->pending[i].off >> GM_PAGE_SHIFT, n = t->pending[i].len >> GM_PAGE_SHIFT;

		if (!t->pending[i].redo)
			continue;
		ret = gm_track_protect_shared(g, first, n);
		late(ctx, first, n);
	}
	gm_track_pending_free(t);
	if (!ret)
		t->fresh = true;
	return ret;
}

bool gm_track_missed(const struct gmem *g)
{
	return g->trk && g->trk->missed;
}

int gm_track_protect_pages(struct gmem *g, uint64_t first, uint64_t n, bool locked)
{
	struct gm_track *t = g->trk;
	uint64_t off = first << GM_PAGE_SHIFT, len = n << GM_PAGE_SHIFT;
	int ret = gm_track_protect(t, g->kvm_view + off, len, true);

	if (ret)
		return ret;
	if (locked)
		return gm_track_protect_shared(g, first, n);
	/* Without the lock the states may change: a page at a time, and a
	 * placeholder (a private page, not registered) has nothing to protect. */
	for (uint64_t p = first; p < first + n; p++) {
		ret = gm_track_protect(t, g->view + (p << GM_PAGE_SHIFT), GMEM_PAGE_SIZE, true);
		if (ret && ret != -ENOENT)
			return ret;
	}
	return 0;
}

struct gm_track *gm_track_sync_stop(struct gmem *g)
{
	struct gm_track *t = g->trk;

	if (!t)
		return NULL;
	pthread_mutex_lock(&t->mu);
	t->before = NULL;
	t->before_ctx = NULL;
	pthread_mutex_unlock(&t->mu);
	t->fresh = false;       /* a failed live start protected nothing lasting */
	if (t->dirty)
		return NULL;    /* it goes on tracking, synchronously */
	g->trk = NULL;
	return t;
}

static void gm_track_unregister_pieces(struct gm_track *t, uint8_t *addr, uint64_t len)
{
	for (uint64_t off = 0; off < len; off += GM_TRACK_PIECE) {
		struct uffdio_range r = {
			.start = (uintptr_t)(addr + off),
			.len = len - off < GM_TRACK_PIECE ? len - off : GM_TRACK_PIECE,
		};

		/* A failure leaves the range to the close below. */
		gm_sys_ioctl(t->uffd, UFFDIO_UNREGISTER, &r);
	}
}

/* Stop the fault thread and free @t; @unregister: the views stay, so
 * unregister them first, a piece at a time. */
static void gm_track_free(struct gm_track *t, bool unregister)
{
	/* Closing the userfaultfd would clear every page's write-protection
	 * in one call, holding the process's mmap lock for all of it (vCPU
	 * faults and every mmap() wait): a piece at a time instead. */
	if (unregister && t->uffd >= 0) {
		gm_track_unregister_pieces(t, t->g->kvm_view, t->g->size);
		gm_track_unregister_pieces(t, t->g->view, t->g->size);
	}
	gm_track_disarm(t);
	if (t->pagemap >= 0)
		close(t->pagemap);
	pthread_mutex_destroy(&t->mu);
	free(t->pending);
	free(t->dirty);
	free(t);
}

void gm_track_release(struct gm_track *t)
{
	if (t)
		gm_track_free(t, t->g != NULL);
}

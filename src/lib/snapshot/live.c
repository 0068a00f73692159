// SPDX-License-Identifier: MIT
/*
 * live.c - live saves (GMEM_SNAP_LIVE): the file holds every page as it was
 * when the save started, while the guest, device I/O and the library's own
 * calls go on changing the memory during the write.
 *
 * Model: the save starts in three steps (gm_live_arm, _prepare, _fix). Both
 * views move to a synchronous userfaultfd (track.c) whose hook at first
 * only notes which pages are written ("early"). Without g->lock, every
 * page is write-protected (a walk of all page tables: ~30 ms per GiB
 * here), the populated pages listed ("data": one lseek pair per extent),
 * and the early pages protected again, a few passes while the guest goes
 * on. Then, under g->lock, between the caller's live_pause(1) and (0)
 * (its vCPUs stopped): the pages written since data was listed ("moved")
 * are asked again, the hook becomes the copying one (gm_live_before), the
 * last early pages are protected again, and, once the tracker's changed
 * pages are known (gm_live_set_changed), the pages a pin or a temporary
 * window may write without a fault are copied. The memory now is the
 * start image. Such pages, and those written during the prepare (a pin's
 * DMA or a window can fill a hole unseen, and a host-view run a
 * conversion remapped is protected late), are marked "moved". The library calls gm_live_before() too before it
 * discards a page or maps it in a temporary window (gm_track_will_write).
 * gm_live_before() decides a page once ("touched"): unless it is saved
 * already ("done"), was a hole, or is not part of this file (an
 * incremental save's unchanged pages), it copies it. The lock then goes
 * and the data is written as in any save, except that:
 *  - the cutter takes the pages in "data" (and changed), not a new scan;
 *  - a filler reads a chunk's pages from the copies where there are any,
 *    from the KVM view otherwise, and marks them done, with the chunk's
 *    stripe locks held, so no first write can slip between its check and
 *    its read (gm_live_read_begin / _end).
 * Every page in a chunk that was touched has a copy: it is in "data" and
 * in the file, and was not done when its hook ran.
 *
 * Copies are bounded (gm_live_copy_max): a hook that finds no room waits,
 * without any lock, until the save has written its page (then no copy is
 * needed) or a copy is freed. The fault thread is the only writer-facing
 * thread that waits; the saving thread and the fillers never wait for it,
 * so the wait always ends.
 *
 * What a live save cannot see: writes through mappings the library did not
 * make (a VMM's own alias of guest memory) and DMA through pins taken before
 * the start; the latter is why pinned pages are copied at the start.
 *
 * Lock rules: l->stripe[] serialize a page's hook with the chunk that reads
 * it (a page's stripe: (page / GM_LIVE_STRIPE_PAGES) % GM_LIVE_STRIPES; a
 * chunk takes its one or two stripes in index order). l->mu guards the copy
 * pool and `ending`. Never both at once. Bitmaps are read and set with
 * atomics: the cutter reads them without a lock.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "live.h"
#include "sys.h"
#include "track.h"

#define GM_LIVE_STRIPE_PAGES (GM_SNAP_CHUNK_MAX / GMEM_PAGE_SIZE)
#define GM_LIVE_STRIPES      64
#define GM_LIVE_BLOCK_PAGES  512u            /* copies are mapped 2 MiB at a time */
#define GM_LIVE_COPY_MIN     (64ull << 20)

uint64_t gm_live_copy_max;
struct gm_live_stats gm_live_last;
/* Saves of different memories may end at once. */
static pthread_mutex_t gm_live_last_lock = PTHREAD_MUTEX_INITIALIZER;
void (*gm_live_test_protected)(struct gmem *g);
void (*gm_live_test_fixed)(struct gmem *g);

struct gm_live {
	struct gmem *g;
	uint64_t npages;
	const uint64_t *chg;    /* incremental: the pages in the file; or NULL */
	uint64_t *touched, *data, *done;
	uint64_t *early;        /* written before the start: protect again     */
	uint64_t *moved;        /* written or discarded since data was listed  */
	uint64_t populated;     /* pages in data                               */
	uint32_t *slot_of;      /* page -> its copy's slot + 1, 0: none       */
	pthread_mutex_t stripe[GM_LIVE_STRIPES];
	/* The copy pool: slots of GMEM_PAGE_SIZE in blocks mapped on demand. */
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* a slot freed, a page done, the end          */
	uint8_t **block;
	uint32_t nslots, used, nfree;   /* slots allowed, handed out, on free[] */
	uint32_t cap;                   /* slots block[] and free[] have room for */
	uint32_t *free;
	uint32_t waiters;
	bool ending;
	int failed;             /* -ENOMEM: a copy could not be made          */
	struct gm_live_stats st;
};

static bool gm_live_test(const uint64_t *bits, uint64_t page)
{
	return __atomic_load_n(&bits[page / 64], __ATOMIC_ACQUIRE) >> (page % 64) & 1;
}

static void gm_live_mark(uint64_t *bits, uint64_t page)
{
	__atomic_fetch_or(&bits[page / 64], 1ull << (page % 64), __ATOMIC_RELEASE);
}

static pthread_mutex_t *gm_live_stripe(struct gm_live *l, uint64_t page)
{
	return &l->stripe[(page / GM_LIVE_STRIPE_PAGES) % GM_LIVE_STRIPES];
}

static uint8_t *gm_live_copy(const struct gm_live *l, uint32_t slot)
{
	uint32_t i = slot - 1;

	return l->block[i / GM_LIVE_BLOCK_PAGES] + (uint64_t)(i % GM_LIVE_BLOCK_PAGES) *
						     GMEM_PAGE_SIZE;
}

/* ---- the copy pool --------------------------------------------------------- */

/* A fresh slot, mapping its block if it is the block's first. Caller holds
 * l->mu and has checked used < nslots. 0 if the block cannot be mapped. */
static uint32_t gm_live_slot_new(struct gm_live *l)
{
	uint32_t i = l->used, b = i / GM_LIVE_BLOCK_PAGES;

	if (i == l->cap) {
		/* Past the budget (a copy at the start): room for a block more. */
		uint32_t cap = l->cap + GM_LIVE_BLOCK_PAGES, nb = cap / GM_LIVE_BLOCK_PAGES;
		uint8_t **block = realloc(l->block, nb * sizeof(*block));
		uint32_t *fr;

		if (!block)
			return 0;
		l->block = block;
		l->block[nb - 1] = NULL;
		fr = realloc(l->free, cap * sizeof(*fr));
		if (!fr)
			return 0;
		l->free = fr;
		l->cap = cap;
	}
	if (!l->block[b]) {
		size_t len = (size_t)GM_LIVE_BLOCK_PAGES * GMEM_PAGE_SIZE;
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			       -1, 0);

		if (p == MAP_FAILED)
			return 0;
		/* Guest pages, private ones too: no core dump, no child. */
		if (gm_sys_guard(p, len, true)) {
			munmap(p, len);
			return 0;
		}
		l->block[b] = p;
	}
	l->used++;
	return i + 1;
}

/* A slot for a copy of @page; 0 if none is needed any more (the page was
 * saved meanwhile, or the save ends) or none can be had. May wait, unless
 * @force: a copy made at the start, before any filler can free one, goes
 * past the budget instead. */
static uint32_t gm_live_slot_get(struct gm_live *l, uint64_t page, bool force)
{
	uint32_t slot = 0;

	pthread_mutex_lock(&l->mu);
	for (;;) {
		if (l->ending || gm_live_test(l->done, page))
			break;
		if (l->nfree) {
			slot = l->free[--l->nfree];
			break;
		}
		if (l->used < l->nslots || force) {
			slot = gm_live_slot_new(l);
			break;
		}
		l->st.waits++;
		l->waiters++;
		pthread_cond_wait(&l->cv, &l->mu);
		l->waiters--;
	}
	if (slot) {
		uint64_t held = (uint64_t)(l->used - l->nfree) * GMEM_PAGE_SIZE;

		if (held > l->st.copy_peak)
			l->st.copy_peak = held;
	}
	pthread_mutex_unlock(&l->mu);
	return slot;
}

static void gm_live_slots_put(struct gm_live *l, const uint32_t *slot, unsigned n, bool done)
{
	pthread_mutex_lock(&l->mu);
	for (unsigned i = 0; i < n; i++)
		l->free[l->nfree++] = slot[i];
	/* A waiter wants a slot or its page done. */
	if (l->waiters && (n || done))
		pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

/* ---- the hook ---------------------------------------------------------------- */

/* Does the file want @page's start contents, as far as is known before
 * its stripe is taken? */
static bool gm_live_wanted(const struct gm_live *l, uint64_t page)
{
	const uint64_t *chg = __atomic_load_n(&l->chg, __ATOMIC_ACQUIRE);

	return gm_live_test(l->data, page) && !gm_live_test(l->done, page) &&
	       (!chg || gm_live_test(chg, page));
}

/* gm_track_before_fn before the start: @page was written while the views
 * were being protected; it is protected again by gm_live_fix(). */
static void gm_live_before_early(void *ctx, uint64_t page)
{
	struct gm_live *l = ctx;

	if (page < l->npages) {
		gm_live_mark(l->moved, page);
		gm_live_mark(l->early, page);
	}
}

/* Decide @page: copy it if the file still needs it as it is now. */
static void gm_live_decide(struct gm_live *l, uint64_t page, bool force)
{
	pthread_mutex_t *m;
	uint32_t slot = 0;

	if (page >= l->npages || gm_live_test(l->touched, page))
		return;
	if (gm_live_wanted(l, page))
		slot = gm_live_slot_get(l, page, force);
	m = gm_live_stripe(l, page);
	pthread_mutex_lock(m);
	if (!gm_live_test(l->touched, page)) {
		__atomic_fetch_add(&l->st.touched, 1, __ATOMIC_RELAXED);
		if (gm_live_wanted(l, page)) {
			if (slot) {
				memcpy(gm_live_copy(l, slot),
				       l->g->kvm_view + (page << GM_PAGE_SHIFT), GMEM_PAGE_SIZE);
				l->slot_of[page] = slot;
				slot = 0;
				__atomic_fetch_add(&l->st.copied, 1, __ATOMIC_RELAXED);
			} else if (!l->ending) {
				/* No room could be mapped: the save must fail. */
				__atomic_store_n(&l->failed, -ENOMEM, __ATOMIC_RELEASE);
			}
		}
		/* After the copy: the cutter and the fillers go by this bit. */
		gm_live_mark(l->touched, page);
	}
	pthread_mutex_unlock(m);
	if (slot)
		gm_live_slots_put(l, &slot, 1, false);
}

/* gm_track_before_fn: @page is about to be written or discarded for the
 * first time since the start. */
static void gm_live_before(void *ctx, uint64_t page)
{
	gm_live_decide(ctx, page, false);
}

/* ---- start and end ------------------------------------------------------------ */

static void gm_live_free(struct gm_live *l)
{
	if (l->block) {
		for (uint32_t b = 0; b * GM_LIVE_BLOCK_PAGES < l->cap; b++)
			if (l->block[b])
				munmap(l->block[b], (size_t)GM_LIVE_BLOCK_PAGES * GMEM_PAGE_SIZE);
	}
	for (unsigned i = 0; i < GM_LIVE_STRIPES; i++)
		pthread_mutex_destroy(&l->stripe[i]);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	free(l->block);
	free(l->free);
	free(l->slot_of);
	free(l->touched);
	free(l->early);
	free(l->moved);
	free(l->data);
	free(l->done);
	free(l);
}

static uint32_t gm_live_nslots(const struct gmem *g)
{
	uint64_t max = gm_live_copy_max ? gm_live_copy_max : g->size / 16;

	if (!gm_live_copy_max && max < GM_LIVE_COPY_MIN)
		max = GM_LIVE_COPY_MIN;
	if (max > g->size)
		max = g->size;
	max /= GMEM_PAGE_SIZE;
	return (uint32_t)(max ? (max < UINT32_MAX - 1 ? max : UINT32_MAX - 1) : 1);
}

static struct gm_live *gm_live_alloc(struct gmem *g)
{
	struct gm_live *l = calloc(1, sizeof(*l));
	uint64_t words = (g->st.npages + 63) / 64;

	if (!l)
		return NULL;
	l->g = g;
	l->npages = g->st.npages;
	l->nslots = gm_live_nslots(g);
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	for (unsigned i = 0; i < GM_LIVE_STRIPES; i++)
		pthread_mutex_init(&l->stripe[i], NULL);
	l->touched = calloc(words, sizeof(uint64_t));
	l->early = calloc(words, sizeof(uint64_t));
	l->moved = calloc(words, sizeof(uint64_t));
	l->data = calloc(words, sizeof(uint64_t));
	l->done = calloc(words, sizeof(uint64_t));
	l->slot_of = calloc(l->npages, sizeof(uint32_t));
	l->cap = (l->nslots + GM_LIVE_BLOCK_PAGES - 1) / GM_LIVE_BLOCK_PAGES *
		 GM_LIVE_BLOCK_PAGES;
	l->free = calloc(l->cap, sizeof(uint32_t));
	l->block = calloc(l->cap / GM_LIVE_BLOCK_PAGES, sizeof(*l->block));
	if (!l->touched || !l->early || !l->moved || !l->data || !l->done || !l->slot_of || !l->free || !l->block) {
		gm_live_free(l);
		return NULL;
	}
	return l;
}

/* Pins (DMA may write them without a fault) and temporary windows (not
 * write-protected) that exist at the start: copy their pages now. Caller
 * holds g->lock. */
static void gm_live_copy_busy(struct gm_live *l)
{
	uint64_t pos = 0, p;

	while (pos < l->npages && gm_state_first_busy(&l->g->st, pos, l->npages - pos, &p)) {
		gm_live_decide(l, p, true);
		pos = p + 1;
	}
}

/* Pages a pin or a temporary window may fill without a fault while the
 * start is prepared: their populated state is asked again at the fix.
 * Caller holds g->lock. */
static void gm_live_mark_busy_moved(struct gm_live *l)
{
	uint64_t pos = 0, p;

	while (pos < l->npages && gm_state_first_busy(&l->g->st, pos, l->npages - pos, &p)) {
		gm_live_mark(l->moved, p);
		pos = p + 1;
	}
}

/* gm_track_sync_settle: a host-view run that was protected late. */
static void gm_live_mark_run_moved(void *ctx, uint64_t first, uint64_t n)
{
	struct gm_live *l = ctx;

	for (uint64_t p = first; p < first + n && p < l->npages; p++)
		gm_live_mark(l->moved, p);
}

/* Which pages hold data now: the page tables are protected, so a page
 * whose answer changes later is marked moved first. */
static int gm_live_list_data(struct gm_live *l)
{
	struct gm_scan sc;
	uint64_t start, len;
	int ret;

	gm_scan_init(&sc, l->g);
	while ((ret = gm_scan_next(&sc, &start, &len)) > 0) {
		uint64_t p = start >> GM_PAGE_SHIFT, e = (start + len) >> GM_PAGE_SHIFT;

		for (; p < e && p % 64; p++)
			l->data[p / 64] |= 1ull << (p % 64);
		for (; p + 64 <= e; p += 64)
			l->data[p / 64] = ~0ull;
		for (; p < e; p++)
			l->data[p / 64] |= 1ull << (p % 64);
	}
	return ret;
}

int gm_live_arm(struct gmem *g, struct gm_live **out)
{
	struct gm_live *l;
	int ret;

	*out = NULL;
	if (g->b.kind != GMEM_BACKEND_MEMFD || g->b.huge == GMEM_HUGE_HUGETLB) {
		gm_set_error("snapshot: a live save needs memfd backing without hugetlb pages "
			     "(guest_memfd and hugetlb writes cannot be intercepted per page)");
		return -EOPNOTSUPP;
	}
	l = gm_live_alloc(g);
	if (!l)
		return -ENOMEM;
	ret = gm_track_sync_arm(g, gm_live_before_early, l);
	if (ret) {
		gm_live_free(l);
		return ret;
	}
	gm_live_mark_busy_moved(l);
	*out = l;
	return 0;
}

static int gm_live_pass_marks(struct gm_live *l, bool locked, uint64_t *n)
{
	uint64_t words = (l->npages + 63) / 64;

	*n = 0;
	for (uint64_t w = 0; w < words; w++) {
		uint64_t bits = __atomic_exchange_n(&l->early[w], 0, __ATOMIC_ACQ_REL);

		while (bits) {
			uint64_t b = (uint64_t)__builtin_ctzll(bits), run = 0;
			int ret;

			/* A run of set bits from b. */
			while (b + run < 64 && bits >> (b + run) & 1)
				run++;
			bits &= run == 64 ? 0 : ~(((1ull << run) - 1) << b);
			ret = gm_track_protect_pages(l->g, w * 64 + b, run, locked);
			if (ret)
				return ret;
			*n += run;
			l->st.reprotected += run;
		}
	}
	return 0;
}

/* Protect again the pages written since the last pass; how many there
 * were. @locked: caller holds g->lock, and the copying hook is in place
 * (gm_track_hook_set waited for every fault the early hook was serving).
 * Otherwise the early hook is, and a fault it serves marks its page before
 * the fault thread lifts the protection: the pass holds the fault thread
 * off, or it could take the mark, protect a page still protected, and
 * leave it to be unprotected for good. */
static int gm_live_pass(struct gm_live *l, bool locked, uint64_t *n)
{
	int ret;

	if (!locked)
		gm_track_hook_hold(l->g, true);
	ret = gm_live_pass_marks(l, locked, n);
	if (!locked)
		gm_track_hook_hold(l->g, false);
	return ret;
}

/* Passes of gm_live_pass() while the guest writes enough to matter: what
 * is left for the locked start is what the last pass saw. */
#define GM_LIVE_PASSES     4
#define GM_LIVE_PASS_SMALL 256

int gm_live_prepare(struct gm_live *l)
{
	uint64_t n;
	int ret = gm_track_sync_protect(l->g);

	if (!ret)
		ret = gm_live_list_data(l);
	if (!ret && gm_live_test_protected)
		gm_live_test_protected(l->g);
	for (unsigned i = 0; !ret && i < GM_LIVE_PASSES; i++) {
		ret = gm_live_pass(l, false, &n);
		if (n < GM_LIVE_PASS_SMALL)
			break;
	}
	if (ret)
		gm_set_error("snapshot: write-protecting the memory for a live save: %s",
			     strerror(-ret));
	return ret;
}

/* Set data for pages [p, e) to what the backing holds now. SEEK_DATA from
 * a page with data returns at once and from a hole skips to the next data;
 * SEEK_HOLE is not used: from a page in a large populated extent it walks
 * to the extent's end (50 ms for 8 GiB), once per run. */
static void gm_live_relist(struct gm_live *l, uint64_t p, uint64_t e)
{
	while (p < e) {
		off_t d = lseek(l->g->b.fd, (off_t)(p << GM_PAGE_SHIFT), SEEK_DATA);
		uint64_t dp;

		if (d < 0 && errno != ENXIO)
			dp = p;         /* unknown: data, a page too many */
		else
			dp = d < 0 ? e : (uint64_t)d >> GM_PAGE_SHIFT;
		for (; p < e && p < dp; p++)
			l->data[p / 64] &= ~(1ull << (p % 64));
		if (p < e) {
			l->data[p / 64] |= 1ull << (p % 64);
			p++;
		}
	}
}

/* Pages marked moved hold data now or not: ask again, a run at a time.
 * Caller holds g->lock. */
static void gm_live_recheck(struct gm_live *l)
{
	uint64_t words = (l->npages + 63) / 64;

	for (uint64_t w = 0; w < words; w++) {
		uint64_t bits = __atomic_exchange_n(&l->moved[w], 0, __ATOMIC_ACQ_REL);

		while (bits) {
			uint64_t b = (uint64_t)__builtin_ctzll(bits), run = 0;

			while (b + run < 64 && bits >> (b + run) & 1)
				run++;
			bits &= run == 64 ? 0 : ~(((1ull << run) - 1) << b);
			gm_live_relist(l, w * 64 + b, w * 64 + b + run);
		}
	}
	l->populated = 0;
	for (uint64_t w = 0; w < words; w++)
		l->populated += (uint64_t)__builtin_popcountll(l->data[w]);
}

int gm_live_fix(struct gm_live *l)
{
	uint64_t n;
	int ret = gm_track_sync_settle(l->g, gm_live_mark_run_moved, l);

	if (ret) {
		gm_set_error("snapshot: fixing the start of a live save: %s", strerror(-ret));
		return ret;
	}
	/* Until the hook changes, a write only marks its page. */
	gm_live_recheck(l);
	/* Returns once no fault is served by the early hook any more. */
	gm_track_hook_set(l->g, gm_live_before, l);
	if (gm_live_test_fixed)
		gm_live_test_fixed(l->g);
	ret = gm_live_pass(l, true, &n);
	if (ret) {
		gm_set_error("snapshot: write-protecting the memory for a live save: %s",
			     strerror(-ret));
		return ret;
	}
	return 0;
}

void gm_live_set_changed(struct gm_live *l, const uint64_t *chg)
{
	__atomic_store_n(&l->chg, chg, __ATOMIC_RELEASE);
	gm_live_copy_busy(l);
	/* The tracker's bits were just taken for this file: pages written
	 * since the hook changed (copied, then unprotected) belong to the
	 * next save's interval, as do the pinned and mapped ones. */
	gm_track_changed_bits(l->g, l->touched);
}

void gm_live_end(struct gm_live *l)
{
	struct gmem *g = l->g;

	pthread_mutex_lock(&l->mu);
	l->ending = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	struct gm_track *t;

	/* Waits for a hook in progress: it holds the tracker's mutex. */
	pthread_mutex_lock(&g->lock);
	t = gm_track_sync_stop(g);
	pthread_mutex_unlock(&g->lock);
	gm_track_release(t);    /* the page tables are walked unlocked */
	pthread_mutex_lock(&gm_live_last_lock);
	gm_live_stats(l, &gm_live_last);
	pthread_mutex_unlock(&gm_live_last_lock);
	gm_live_free(l);
}

void gm_live_stats(const struct gm_live *l, struct gm_live_stats *st)
{
	st->touched = __atomic_load_n(&l->st.touched, __ATOMIC_RELAXED);
	st->copied = __atomic_load_n(&l->st.copied, __ATOMIC_RELAXED);
	st->waits = l->st.waits;
	st->copy_peak = l->st.copy_peak;
	st->reprotected = l->st.reprotected;
}

/* ---- the cutter --------------------------------------------------------------- */

/* 64 pages' worth of "in the file" from word @w: held data at the start
 * (and, incremental, changed since the parent). */
static uint64_t gm_live_word(const struct gm_live *l, uint64_t w)
{
	const uint64_t *chg = __atomic_load_n(&l->chg, __ATOMIC_ACQUIRE);

	return chg ? l->data[w] & chg[w] : l->data[w];
}

/* First page at or after @pos, below @end, whose bit is not @v. */
static uint64_t gm_live_run_end(const struct gm_live *l, uint64_t pos, uint64_t end, int v)
{
	while (pos < end) {
		uint64_t w = gm_live_word(l, pos / 64) ^ (v ? ~0ull : 0);

		w >>= pos % 64;
		if (w) {
			pos += (uint64_t)__builtin_ctzll(w);
			return pos < end ? pos : end;
		}
		pos += 64 - pos % 64;
	}
	return end;
}

uint64_t gm_live_populated(const struct gm_live *l)
{
	return l->populated;
}

int gm_live_cut_next(struct gm_live *l, uint64_t *pos, uint64_t *start, uint64_t *len)
{
	uint64_t a = gm_live_run_end(l, *pos, l->npages, 0);
	uint64_t b = gm_live_run_end(l, a, l->npages, 1);

	*pos = b;
	if (b == a)
		return 0;
	*start = a << GM_PAGE_SHIFT;
	*len = (b - a) << GM_PAGE_SHIFT;
	return 1;
}

/* ---- the fillers ---------------------------------------------------------------- */

static void gm_live_lock_range(struct gm_live *l, uint64_t first, uint64_t n, bool lock)
{
	pthread_mutex_t *a = gm_live_stripe(l, first), *b = gm_live_stripe(l, first + n - 1);

	/* A chunk spans at most two stripes: in index order. */
	if (b < a) {
		pthread_mutex_t *t = a;

		a = b;
		b = t;
	}
	if (lock) {
		pthread_mutex_lock(a);
		if (b != a)
			pthread_mutex_lock(b);
	} else {
		if (b != a)
			pthread_mutex_unlock(b);
		pthread_mutex_unlock(a);
	}
}

const uint8_t *gm_live_read_begin(struct gm_live *l, uint64_t gpa, uint32_t len,
				  uint8_t *bounce, int *err)
{
	uint64_t first = gpa >> GM_PAGE_SHIFT, n = len >> GM_PAGE_SHIFT;
	const uint8_t *view = l->g->kvm_view + gpa;
	bool copies = false;

	assert(n && n <= GM_LIVE_STRIPE_PAGES);
	gm_live_lock_range(l, first, n, true);
	for (uint64_t i = 0; i < n && !copies; i++)
		copies = gm_live_test(l->touched, first + i);
	if (!copies)
		return view;    /* nothing written since the start */
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = first + i;
		const uint8_t *src = view + (i << GM_PAGE_SHIFT);

		if (gm_live_test(l->touched, p)) {
			if (!l->slot_of[p]) {
				/* In the file, touched, no copy: only if a copy could
				 * not be mapped (see the model). */
				int why = __atomic_load_n(&l->failed, __ATOMIC_ACQUIRE);

				gm_live_lock_range(l, first, n, false);
				gm_set_error("snapshot: live save: no copy of page %llu as it "
					     "was at the start%s", (unsigned long long)p,
					     why ? " (out of memory)" : "");
				*err = why ? why : -EIO;
				return NULL;
			}
			src = gm_live_copy(l, l->slot_of[p]);
		}
		memcpy(bounce + (i << GM_PAGE_SHIFT), src, GMEM_PAGE_SIZE);
	}
	return bounce;
}

void gm_live_read_end(struct gm_live *l, uint64_t gpa, uint32_t len)
{
	uint64_t first = gpa >> GM_PAGE_SHIFT, n = len >> GM_PAGE_SHIFT;
	uint32_t freed[GM_LIVE_STRIPE_PAGES];
	unsigned nfreed = 0;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = first + i;

		gm_live_mark(l->done, p);
		if (l->slot_of[p]) {
			freed[nfreed++] = l->slot_of[p];
			l->slot_of[p] = 0;
		}
	}
	gm_live_lock_range(l, first, n, false);
	gm_live_slots_put(l, freed, nfreed, true);
}

// SPDX-License-Identifier: MIT
/*
 * shares.c - reference-counted sharing of conversion granules for in-place
 * I/O.
 *
 * Model: per memory (not per context: two contexts on one memory must not
 * undo each other either) a hash table maps a granule to the number of
 * in-place requests using it and whether the VMM wants it private once
 * they are done ("owed"). The first reference notes the granule's state;
 * the last one makes it private again only if it is owed, so a page the VMM
 * had shared itself stays shared. Only granules in use are in the table:
 * its size follows the I/O in flight, not the guest's size.
 *
 * The rule, for any interleaving: once every request, pin and temporary
 * mapping on a granule has gone, the granule is in the state of the last
 * successful gmem_convert() on it. Three things make it hold:
 *  - the table lives under g->lock, the lock every state change takes, so
 *    noting the state, sharing and pinning are one step (no conversion by
 *    the VMM can come between them);
 *  - a gmem_convert() by the VMM over a granule in the table rewrites what
 *    is owed (core calls gm_io_on_convert under g->lock): to shared, the
 *    granule stays shared after the I/O; to private, it is private already;
 *  - a granule whose last request left while someone else still held it
 *    (a pin, a temporary mapping) stays "deferred" and is made private by
 *    the unpin or kunmap that frees it (gm_io_on_unbusy), not by a retry
 *    loop: nothing here ever sleeps or spins.
 * Every conversion made here is reported to the VMM (gmem_convert_notify).
 *
 * Lock rule: every function here runs with g->lock held ("_locked") or
 * takes it; there is no lock of its own, so there is no lock order.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "../internal.h"
#include "io.h"

struct gm_io_unit {
	uint64_t key;           /* granule + 1; 0 = empty slot                  */
	uint32_t refs;
	bool owed;              /* make private when the last user has gone     */
	bool deferred;          /* refs == 0 and owed: waiting for a page to    */
				/* stop being busy                              */
};

struct gm_io_shares {
	struct gmem *g;
	uint64_t gran, gran_pages;
	struct gmem_io *ctxs;   /* contexts on this memory (io.c links them)    */
	unsigned users;
	struct gm_io_unit *tab;
	uint64_t cap, count;    /* cap: power of two                            */
	uint64_t held;          /* units with refs > 0                          */
	uint64_t ndeferred;
	uint64_t retries;       /* deferred restores made by an unpin/kunmap    */
};

/* ---- the table: linear probing, backward-shift deletion -------------- */

static uint64_t gm_io_hash(uint64_t key, uint64_t cap)
{
	return (key * 0x9e3779b97f4a7c15ull) >> (64 - __builtin_ctzll(cap));
}

static struct gm_io_unit *gm_io_find(struct gm_io_shares *s, uint64_t unit)
{
	uint64_t key = unit + 1, mask = s->cap - 1;

	for (uint64_t i = gm_io_hash(key, s->cap);; i = (i + 1) & mask) {
		if (s->tab[i].key == key)
			return &s->tab[i];
		if (!s->tab[i].key)
			return NULL;
	}
}

static struct gm_io_unit *gm_io_insert_slot(struct gm_io_unit *tab, uint64_t cap,
					    uint64_t key)
{
	uint64_t mask = cap - 1, i = gm_io_hash(key, cap);

	while (tab[i].key && tab[i].key != key)
		i = (i + 1) & mask;
	return &tab[i];
}

static int gm_io_grow(struct gm_io_shares *s)
{
	uint64_t cap = s->cap * 2;
	struct gm_io_unit *tab = calloc(cap, sizeof(*tab));

	if (!tab)
		return -ENOMEM;
	for (uint64_t i = 0; i < s->cap; i++)
		if (s->tab[i].key)
			*gm_io_insert_slot(tab, cap, s->tab[i].key) = s->tab[i];
	free(s->tab);
	s->tab = tab;
	s->cap = cap;
	return 0;
}

/* The entry of @unit, created (refs 0) if absent. */
static int gm_io_lookup(struct gm_io_shares *s, uint64_t unit, struct gm_io_unit **out)
{
	struct gm_io_unit *e;
	int ret;

	if ((s->count + 1) * 2 > s->cap) {
		ret = gm_io_grow(s);
		if (ret)
			return ret;
	}
	e = gm_io_insert_slot(s->tab, s->cap, unit + 1);
	if (!e->key) {
		*e = (struct gm_io_unit){ .key = unit + 1 };
		s->count++;
	}
	*out = e;
	return 0;
}

static void gm_io_remove(struct gm_io_shares *s, struct gm_io_unit *e)
{
	uint64_t mask = s->cap - 1, hole = (uint64_t)(e - s->tab), i = hole;

	/* Move back every later entry of the cluster whose home slot is not
	 * between the hole and itself, so lookups never stop at the hole. */
	for (;;) {
		uint64_t home;

		i = (i + 1) & mask;
		if (!s->tab[i].key)
			break;
		home = gm_io_hash(s->tab[i].key, s->cap);
		if (((i - home) & mask) >= ((i - hole) & mask)) {
			s->tab[hole] = s->tab[i];
			hole = i;
		}
	}
	s->tab[hole].key = 0;
	s->count--;
}

/* ---- conversions (g->lock held) ------------------------------------- */

static int gm_io_convert_locked(struct gm_io_shares *s, uint64_t u, uint64_t n, int to,
				uint64_t *busy, uint64_t *conversions)
{
	int ret = gm_convert_locked(s->g, u * s->gran_pages, n * s->gran_pages, to, busy);

	if (conversions)
		(*conversions)++;
	if (!ret)
		gm_notify_locked(s->g, u * s->gran_pages, n * s->gran_pages, to);
	return ret;
}

static void gm_io_undefer(struct gm_io_shares *s, struct gm_io_unit *e)
{
	if (e->deferred) {
		e->deferred = false;
		s->ndeferred--;
	}
}

/* Make the deferred units of [first, first + n) private, a run at a time;
 * a run the core refuses (a page busy) is split at the busy page, which
 * stays deferred. -EBUSY when any unit stayed, else 0 or the core's error. */
static int gm_io_restore_locked(struct gm_io_shares *s, uint64_t first, uint64_t n,
				uint64_t *conversions)
{
	uint64_t u = first, end = first + n;
	int result = 0;

	while (u < end) {
		struct gm_io_unit *e;
		uint64_t run = 0, busy;
		int ret;

		while (u + run < end && (e = gm_io_find(s, u + run)) && e->deferred)
			run++;
		if (!run) {
			u++;
			continue;
		}
		ret = gm_io_convert_locked(s, u, run, GMEM_PRIVATE, &busy, conversions);
		if (ret == -EAGAIN && busy / s->gran > u) {
			run = busy / s->gran - u;
			ret = gm_io_convert_locked(s, u, run, GMEM_PRIVATE, &busy, conversions);
		}
		if (ret) {
			/* Busy: its unpin or kunmap will restore it. */
			result = ret == -EAGAIN ? -EBUSY : ret;
			u++;
			continue;
		}
		for (uint64_t i = u; i < u + run; i++) {
			e = gm_io_find(s, i);
			gm_io_undefer(s, e);
			gm_io_remove(s, e);
		}
		u += run;
	}
	return result;
}

/* Every deferred unit, whatever its range. */
static int gm_io_restore_all_locked(struct gm_io_shares *s, uint64_t *conversions)
{
	int result = 0;

	for (uint64_t i = 0; i < s->cap && s->ndeferred; i++) {
		struct gm_io_unit *e = &s->tab[i];
		int ret;

		if (!e->key || !e->deferred)
			continue;
		ret = gm_io_restore_locked(s, e->key - 1, 1, conversions);
		if (ret)
			result = ret;
		else
			i--;    /* backward shift may have moved an entry here */
	}
	return result;
}

/* Drop one reference on each of [first, first + n); units nobody uses any
 * more go deferred if owed, else leave the table. How many went deferred. */
static uint64_t gm_io_unref_locked(struct gm_io_shares *s, uint64_t first, uint64_t n)
{
	uint64_t pending = 0;

	for (uint64_t u = first; u < first + n; u++) {
		struct gm_io_unit *e = gm_io_find(s, u);

		assert(e && e->refs);
		if (--e->refs)
			continue;
		s->held--;
		if (e->owed) {
			e->deferred = true;
			s->ndeferred++;
			pending++;
		} else {
			gm_io_remove(s, e);
		}
	}
	return pending;
}

/* Take the references: a first reference notes whether the VMM wants the
 * granule private afterwards. *taken: units referenced. */
static int gm_io_ref_locked(struct gm_io_shares *s, uint64_t first, uint64_t n,
			    uint64_t *taken)
{
	for (*taken = 0; *taken < n; (*taken)++) {
		uint64_t u = first + *taken;
		struct gm_io_unit *e;
		int ret = gm_io_lookup(s, u, &e);

		if (ret)
			return ret;
		if (!e->refs++) {
			s->held++;
			if (e->deferred)
				gm_io_undefer(s, e);    /* still owed */
			else
				e->owed = !gm_state_get(&s->g->st, u * s->gran_pages);
		}
	}
	return 0;
}

int gm_io_shares_acquire(struct gm_io_shares *s, uint64_t first, uint64_t n,
			 uint64_t *conversions)
{
	struct gmem *g = s->g;
	uint64_t taken;
	int ret;

	pthread_mutex_lock(&g->lock);
	ret = g->broken ? -EIO : gm_io_ref_locked(s, first, n, &taken);
	if (ret)
		goto err_ref;
	ret = gm_io_convert_locked(s, first, n, GMEM_SHARED, NULL, conversions);
	if (ret)
		goto err_ref;
	ret = gm_pin_locked(g, first * s->gran_pages, n * s->gran_pages);
	if (ret)
		goto err_ref;
	pthread_mutex_unlock(&g->lock);
	return 0;

err_ref:
	if (!g->broken && gm_io_unref_locked(s, first, taken))
		gm_io_restore_locked(s, first, taken, conversions);
	pthread_mutex_unlock(&g->lock);
	return ret;
}

int gm_io_shares_release(struct gm_io_shares *s, uint64_t first, uint64_t n,
			 uint64_t *conversions)
{
	struct gmem *g = s->g;
	int ret = 0;

	pthread_mutex_lock(&g->lock);
	gm_unpin_locked(g, first * s->gran_pages, n * s->gran_pages);
	if (gm_io_unref_locked(s, first, n))
		ret = gm_io_restore_locked(s, first, n, conversions);
	pthread_mutex_unlock(&g->lock);
	return ret;
}

int gm_io_shares_flush(struct gm_io_shares *s)
{
	uint64_t conversions = 0;
	int ret;

	pthread_mutex_lock(&s->g->lock);
	ret = gm_io_restore_all_locked(s, &conversions);
	pthread_mutex_unlock(&s->g->lock);
	return ret;
}

void gm_io_shares_counts(struct gm_io_shares *s, uint64_t *held, uint64_t *deferred,
			 uint64_t *retries)
{
	pthread_mutex_lock(&s->g->lock);
	*held = s->held;
	*deferred = s->ndeferred;
	*retries = s->retries;
	pthread_mutex_unlock(&s->g->lock);
}

/* ---- what the core tells the table (g->lock held) ---------------------- */

/* The VMM converted pages [first, first + n) to @to (granule-aligned). */
static void gm_io_on_convert(struct gm_io_shares *s, uint64_t first, uint64_t n, int to)
{
	uint64_t u0 = first / s->gran_pages, u1 = (first + n) / s->gran_pages;

	if (!s->count)
		return;
	for (uint64_t i = 0; i < s->cap; i++) {
		struct gm_io_unit *e = &s->tab[i];
		uint64_t u = e->key - 1;

		if (!e->key || u < u0 || u >= u1)
			continue;
		e->owed = !to;
		if (!e->refs) {
			/* Deferred, and now where the VMM wants it. */
			gm_io_undefer(s, e);
			gm_io_remove(s, e);
			i--;
		}
	}
}

/* Pages [first, first + n) lost a pin or a temporary mapping. */
static void gm_io_on_unbusy(struct gm_io_shares *s, uint64_t first, uint64_t n)
{
	uint64_t u0 = first / s->gran_pages, u1 = (first + n - 1) / s->gran_pages + 1;

	if (!s->ndeferred)
		return;
	s->retries++;
	gm_io_restore_locked(s, u0, u1 - u0, NULL);
}

static void gm_io_on_close(struct gmem *g);

static const struct gm_io_hooks gm_io_shares_hooks = {
	.converted = gm_io_on_convert,
	.unbusy = gm_io_on_unbusy,
	.close = gm_io_on_close,
};

/* @io NULL: a table user that is no context (calibration). */
static void gm_io_link_locked(struct gm_io_shares *s, struct gmem_io *io)
{
	if (!io)
		return;
	io->next_ctx = s->ctxs;
	s->ctxs = io;
}

static void gm_io_unlink_locked(struct gm_io_shares *s, struct gmem_io *io)
{
	struct gmem_io **pp = &s->ctxs;

	if (!io)
		return;
	while (*pp && *pp != io)
		pp = &(*pp)->next_ctx;
	assert(*pp);
	*pp = io->next_ctx;
}

/* ---- per memory --------------------------------------------------------- */

int gm_io_shares_get(struct gmem *g, struct gmem_io *io, struct gm_io_shares **out)
{
	struct gm_io_shares *s;
	int ret = 0;

	pthread_mutex_lock(&g->lock);
	s = g->shares;
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (s)
			s->tab = calloc(64, sizeof(*s->tab));
		if (!s || !s->tab) {
			free(s);
			s = NULL;
			ret = -ENOMEM;
			goto out;
		}
		s->cap = 64;
		s->g = g;
		s->gran = g->b.granule;
		s->gran_pages = g->b.granule >> GM_PAGE_SHIFT;
		g->shares = s;
		g->io_hooks = &gm_io_shares_hooks;
	}
	s->users++;
	gm_io_link_locked(s, io);
out:
	pthread_mutex_unlock(&g->lock);
	*out = s;
	return ret;
}

void gm_io_shares_put(struct gm_io_shares *s, struct gmem_io *io)
{
	struct gmem *g = s->g;

	pthread_mutex_lock(&g->lock);
	gm_io_unlink_locked(s, io);
	if (--s->users || s->count) {
		/* Still used, or pages are still deferred: the table stays until
		 * the memory closes, so their restore is not lost. */
		pthread_mutex_unlock(&g->lock);
		return;
	}
	g->shares = NULL;
	g->io_hooks = NULL;
	pthread_mutex_unlock(&g->lock);
	free(s->tab);
	free(s);
}

/*
 * gmem_close() with contexts still open: what each would have left behind
 * at destroy is done now (deferred restores), their pools are freed (they
 * may hold copies of guest data) and they are detached: every later call
 * on them fails with -ENODEV and gmem_io_destroy() only frees them.
 * Called without g->lock, after every other call on @g has returned.
 */
static void gm_io_on_close(struct gmem *g)
{
	struct gm_io_shares *s = g->shares;
	struct gmem_io *io, *next;

	pthread_mutex_lock(&g->lock);
	gm_io_restore_all_locked(s, NULL);
	io = s->ctxs;
	s->ctxs = NULL;
	g->shares = NULL;
	g->io_hooks = NULL;
	pthread_mutex_unlock(&g->lock);
	for (; io; io = next) {
		next = io->next_ctx;
		io->next_ctx = NULL;
		gm_io_pool_fini(&io->pool);
		io->mem.g = NULL;
		io->mem.shares = NULL;
		io->mem.kvm = NULL;
	}
	free(s->tab);
	free(s);
}

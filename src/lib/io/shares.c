// SPDX-License-Identifier: MIT
/*
 * shares.c - reference-counted sharing of conversion granules for in-place
 * I/O.
 *
 * Model: per memory (not per context: two contexts on one memory must not
 * undo each other either) a hash table maps a granule to the number of
 * in-place requests using it and whether it was private when the first of
 * them came. The first reference shares the granule; the last one makes it
 * private again only if it was private before, so a page the VMM had shared
 * itself stays shared. Only granules in use are in the table: its size
 * follows the I/O in flight, not the guest's size.
 *
 * A granule whose last user left but which cannot go back to private yet
 * (a page of it is busy: a temporary mapping, gone in microseconds, or a
 * pin someone else took) is retried with back-off for a while, then kept
 * as "deferred" and retried on every later release and at context destroy.
 *
 * Lock rule: s->lock serialises the table and every conversion made for
 * it; gmem_* calls take g->lock inside it (order: s->lock, g->lock). The
 * registry lock only guards the list of tables.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "io.h"

struct gm_io_unit {
	uint64_t key;           /* granule + 1; 0 = empty slot                  */
	uint32_t refs;
	bool was_private;
	bool deferred;          /* refs == 0, waiting to become private again   */
};

struct gm_io_shares {
	pthread_mutex_t lock;
	struct gmem *g;
	uint64_t gran;
	unsigned users;         /* contexts on this memory (registry lock)      */
	struct gm_io_unit *tab;
	uint64_t cap, count;    /* cap: power of two                            */
	uint64_t held;          /* units with refs > 0                          */
	uint64_t ndeferred;
	uint64_t retries;
	struct gm_io_shares *next;
};

static pthread_mutex_t gm_io_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gm_io_shares *gm_io_registry;

/* Retry a busy restore for about this long before deferring it. */
#define GM_IO_RESTORE_TRIES 200

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

/* ---- registry ---------------------------------------------------------- */

int gm_io_shares_get(struct gmem *g, struct gm_io_shares **out)
{
	struct gmem_info info;
	struct gm_io_shares *s;
	int ret = 0;

	pthread_mutex_lock(&gm_io_registry_lock);
	for (s = gm_io_registry; s && s->g != g; s = s->next)
		;
	if (s) {
		s->users++;
		goto out;
	}
	ret = gmem_info(g, &info);
	if (ret)
		goto out;
	s = calloc(1, sizeof(*s));
	if (!s) {
		ret = -ENOMEM;
		goto out;
	}
	s->cap = 64;
	s->tab = calloc(s->cap, sizeof(*s->tab));
	if (!s->tab) {
		free(s);
		s = NULL;
		ret = -ENOMEM;
		goto out;
	}
	pthread_mutex_init(&s->lock, NULL);
	s->g = g;
	s->gran = info.granule;
	s->users = 1;
	s->next = gm_io_registry;
	gm_io_registry = s;
out:
	pthread_mutex_unlock(&gm_io_registry_lock);
	*out = s;
	return ret;
}

void gm_io_shares_put(struct gm_io_shares *s)
{
	struct gm_io_shares **pp;

	pthread_mutex_lock(&gm_io_registry_lock);
	if (--s->users) {
		pthread_mutex_unlock(&gm_io_registry_lock);
		return;
	}
	for (pp = &gm_io_registry; *pp != s; pp = &(*pp)->next)
		;
	*pp = s->next;
	pthread_mutex_unlock(&gm_io_registry_lock);
	pthread_mutex_destroy(&s->lock);
	free(s->tab);
	free(s);
}

/* ---- conversions --------------------------------------------------------- */

static int gm_io_convert(struct gm_io_shares *s, uint64_t first, uint64_t n, int to,
			 uint64_t *busy, uint64_t *conversions)
{
	(*conversions)++;
	return gmem_convert(s->g, first * s->gran, n * s->gran, to, busy);
}

/* Drop one reference on each of [first, first + n) (caller holds s->lock).
 * Returns how many units reached zero while they were private before,
 * which are now marked deferred: the caller restores them. */
static uint64_t gm_io_unref_locked(struct gm_io_shares *s, uint64_t first, uint64_t n)
{
	uint64_t pending = 0;

	for (uint64_t u = first; u < first + n; u++) {
		struct gm_io_unit *e = gm_io_find(s, u);

		if (--e->refs)
			continue;
		s->held--;
		if (e->was_private) {
			e->deferred = true;
			s->ndeferred++;
			pending++;
		} else {
			gm_io_remove(s, e);
		}
	}
	return pending;
}

static void gm_io_backoff(unsigned try)
{
	struct timespec ts = { 0, 1000L << (try < 10 ? try / 2 : 5) };

	if (try < 4)
		sched_yield();
	else
		nanosleep(&ts, NULL);
}

/* Make deferred units [first, first + n) private, a run at a time; a busy
 * page is waited for with back-off (@max_tries attempts) and left deferred
 * after that. Caller holds s->lock. */
static int gm_io_restore_locked(struct gm_io_shares *s, uint64_t first, uint64_t n,
				unsigned max_tries, uint64_t *conversions)
{
	uint64_t u = first, end = first + n;
	unsigned tries = 0;
	int result = 0;

	while (u < end) {
		struct gm_io_unit *e = gm_io_find(s, u);
		uint64_t run = 0, busy;
		int ret;

		while (u + run < end && (e = gm_io_find(s, u + run)) && e->deferred)
			run++;
		if (!run) {
			u++;
			continue;
		}
		ret = gm_io_convert(s, u, run, GMEM_PRIVATE, &busy, conversions);
		if (ret == -EAGAIN && busy / s->gran > u) {
			/* Everything before the busy page can go now. */
			run = busy / s->gran - u;
			ret = gm_io_convert(s, u, run, GMEM_PRIVATE, &busy, conversions);
		}
		if (!ret) {
			for (uint64_t i = u; i < u + run; i++)
				gm_io_remove(s, gm_io_find(s, i));
			s->ndeferred -= run;
			u += run;
			tries = 0;
			continue;
		}
		if (ret == -EAGAIN && ++tries < max_tries) {
			s->retries++;
			gm_io_backoff(tries);
			continue;
		}
		/* Still busy, or the memory refused: leave it deferred. */
		result = ret == -EAGAIN ? -EBUSY : ret;
		u++;
		tries = 0;
	}
	return result;
}

/* Retry every deferred unit (caller holds s->lock). */
static int gm_io_restore_all_locked(struct gm_io_shares *s, uint64_t *conversions)
{
	int result = 0;

	for (uint64_t i = 0; i < s->cap && s->ndeferred; i++) {
		struct gm_io_unit *e = &s->tab[i];
		uint64_t unit;
		int ret;

		if (!e->key || !e->deferred)
			continue;
		unit = e->key - 1;
		ret = gm_io_restore_locked(s, unit, 1, 1, conversions);
		if (ret)
			result = ret;
		else
			i--;    /* backward shift may have moved an entry here */
	}
	return result;
}

/* ---- acquire / release -------------------------------------------------- */

/* Take the references: note the previous state on a first reference.
 * *taken: units referenced, all of them unless an error is returned. */
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
			if (e->deferred) {
				/* Still private-before: it never went back. */
				e->deferred = false;
				s->ndeferred--;
			} else {
				e->was_private = gmem_state(s->g, u * s->gran) == GMEM_PRIVATE;
			}
		}
	}
	return 0;
}

int gm_io_shares_acquire(struct gm_io_shares *s, uint64_t first, uint64_t n,
			 uint64_t *conversions)
{
	uint64_t taken;
	int ret;

	pthread_mutex_lock(&s->lock);
	ret = gm_io_ref_locked(s, first, n, &taken);
	if (ret)
		goto err_ref;
	ret = gm_io_convert(s, first, n, GMEM_SHARED, NULL, conversions);
	if (ret)
		goto err_ref;
	/* The VMM may have made a page private between the two calls: then
	 * the pin fails with -EPERM and this request gives up. */
	ret = gmem_pin(s->g, first * s->gran, n * s->gran);
	if (ret)
		goto err_ref;
	pthread_mutex_unlock(&s->lock);
	return 0;

err_ref:
	if (gm_io_unref_locked(s, first, taken))
		gm_io_restore_locked(s, first, taken, GM_IO_RESTORE_TRIES, conversions);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int gm_io_shares_release(struct gm_io_shares *s, uint64_t first, uint64_t n,
			 uint64_t *conversions)
{
	int ret, unpin = gmem_unpin(s->g, first * s->gran, n * s->gran);

	pthread_mutex_lock(&s->lock);
	ret = 0;
	if (gm_io_unref_locked(s, first, n))
		ret = gm_io_restore_locked(s, first, n, GM_IO_RESTORE_TRIES, conversions);
	if (s->ndeferred)
		gm_io_restore_all_locked(s, conversions);
	pthread_mutex_unlock(&s->lock);
	return unpin ? unpin : ret;
}

int gm_io_shares_flush(struct gm_io_shares *s)
{
	uint64_t conversions = 0;
	int ret;

	pthread_mutex_lock(&s->lock);
	ret = gm_io_restore_all_locked(s, &conversions);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void gm_io_shares_counts(struct gm_io_shares *s, uint64_t *held, uint64_t *deferred,
			 uint64_t *retries)
{
	pthread_mutex_lock(&s->lock);
	*held = s->held;
	*deferred = s->ndeferred;
	*retries = s->retries;
	pthread_mutex_unlock(&s->lock);
}

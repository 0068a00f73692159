/* SPDX-License-Identifier: MIT */
/*
 * internal.h - struct gmem and the helpers shared by gmem.c, view.c, kmap.c.
 *
 * Lock rule: g->lock serialises every change to the state machine, the host
 * view, the kmap pool and the counters. gmem_state() and gmem_host() take no
 * lock (see state.h for why that is safe). Functions named *_locked expect
 * the caller to hold g->lock.
 */
#ifndef GM_INTERNAL_H
#define GM_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "dmap.h"
#include "gmem.h"
#include "state.h"

#define GM_KMAP_SLOTS 256u

struct gm_kmap_pool {
	uint8_t *base;                  /* GM_KMAP_SLOTS windows of one granule   */
	uint64_t free[GM_KMAP_SLOTS / 64];  /* bit set = slot free                */
	uint64_t page[GM_KMAP_SLOTS];   /* page a busy slot maps                  */
};

/*
 * A lazy restore still loading this memory (snapshot/lazy.c). Pages not yet
 * loaded are faulted in through userfaultfd in the KVM view and in the host
 * view's mappings that existed at restore time; mappings made later (host-view
 * runs, kmap windows), a collapse and a discard would bypass it, so they call
 * gm_loader_ensure() for their pages first.
 */
struct gm_loader {
	/* Load [first, first + n) now, or wait for their load: 0, or -errno when
	 * a page of it cannot be loaded. Called with g->lock held; never takes it. */
	int  (*ensure)(struct gm_loader *l, uint64_t first, uint64_t n);
	/* Stop loading and free @l: gmem_close(), before the views go. */
	void (*stop)(struct gm_loader *l);
};

/*
 * What the core tells in-place I/O's sharing table (io/shares.c), with
 * g->lock held: the VMM converted pages (so what I/O owes back changes),
 * pages lost a pin or a temporary mapping (a deferred restore may go now),
 * and the memory closes with contexts still open (called without the lock).
 * Set by the I/O layer, so the core calls it without depending on it.
 */
struct gm_io_shares;
struct gm_io_hooks {
	void (*converted)(struct gm_io_shares *s, uint64_t first, uint64_t n, int to);
	void (*unbusy)(struct gm_io_shares *s, uint64_t first, uint64_t n);
	void (*close)(struct gmem *g);
};

struct gm_counters {
	uint64_t conversions, pages_converted, refused, pins, kmaps, discards;
	uint64_t view_syscalls, regions_split, regions_repaired, collapse_failures;
};

struct gmem {
	pthread_mutex_t lock;
	const struct gm_backend_ops *ops;
	struct gm_backing b;
	uint64_t size;
	unsigned flags;
	uint8_t *view;                  /* host view, 2 MiB aligned               */
	uint8_t *kvm_view;              /* full mapping for the KVM memslot       */
	struct gm_kmap_pool kmap;
	struct gm_state st;
	struct gm_dmap dmap;
	uint64_t map_limit;             /* most runs this view may hold (tests)   */
	uint64_t runs_budget;           /* runs reserved at open (view.c)         */
	uint64_t runs_charged;          /* runs of the budget in use              */
	uint64_t *maybe_small;          /* THP: bit per region that may hold small */
	                                /* folios or small mappings; NULL if not THP */
	bool broken;                    /* a rollback failed: every call -EIO     */
	struct gm_loader *loader;       /* lazy restore, or NULL; set before the  */
	                                /* memory is handed out, freed at close   */
	struct gm_counters n;
	struct gm_io_shares *shares;    /* in-place I/O's table, or NULL          */
	const struct gm_io_hooks *io_hooks;  /* set with shares                   */
	gmem_convert_fn notify_fn;      /* gmem_convert_notify                    */
	struct gm_track *trk;           /* GMEM_F_TRACK_WRITES or a live save,    */
	                                /* or NULL (track.c)                      */
	bool saving_live;               /* a GMEM_SNAP_LIVE save is writing: no   */
	                                /* other save meanwhile (snapshot/save.c) */
	void *notify_ctx;
};

static inline uint64_t gm_page(uint64_t gpa)
{
	return gpa >> GM_PAGE_SHIFT;
}

static inline int gm_loader_ensure(struct gmem *g, uint64_t first, uint64_t n)
{
	return g->loader ? g->loader->ensure(g->loader, first, n) : 0;
}

/* view.c */
int  gm_reserve(uint64_t size, uint64_t align, uint8_t **out);
/* @max_mappings: gmem_config.max_mappings (0: the default budget). */
int  gm_view_open(struct gmem *g, uint64_t max_mappings);
void gm_view_close(struct gmem *g);
int  gm_view_apply_locked(struct gmem *g, uint64_t first, uint64_t n, int to);
/* A region became uniformly shared: make it one huge mapping if it may
 * hold small folios or mappings. Caller holds g->lock. */
void gm_view_repair_locked(struct gmem *g, uint64_t region);
/* Note that [first, first + n) may now hold small folios or mappings. */
void gm_view_mark_small(struct gmem *g, uint64_t first, uint64_t n);
/* Charge the growth from @now to @after runs to the memory's own budget
 * before changing the view (-ENOMEM when over it or over g->map_limit). */
int  gm_view_runs_charge(struct gmem *g, uint64_t now, uint64_t after);
/* After the change: settle the charge at @runs (gives back what a failed or
 * shrinking change no longer needs). */
void gm_view_runs_settle(struct gmem *g, uint64_t runs);
uint64_t gm_view_runs_limit(const struct gmem *g);

/* Pages lost a pin or a window: the I/O layer may owe them a return to
 * private now. Caller holds g->lock. Inline, so that kmap.c below gmem.c
 * need not call up into it. */
static inline void gm_unbusy_locked(struct gmem *g, uint64_t first, uint64_t n)
{
	if (g->io_hooks)
		g->io_hooks->unbusy(g->shares, first, n);
}

/* gmem.c: the workers behind gmem_convert/pin/unpin (caller holds g->lock;
 * the I/O layer's sharing table uses them to note, share and pin in one
 * step). gm_notify_locked:
 * report a conversion the library made on its own. */
int  gm_convert_locked(struct gmem *g, uint64_t first, uint64_t n, int to, uint64_t *busy_gpa);
int  gm_pin_locked(struct gmem *g, uint64_t first, uint64_t n);
int  gm_unpin_locked(struct gmem *g, uint64_t first, uint64_t n);
void gm_notify_locked(struct gmem *g, uint64_t first, uint64_t n, int to);

/* kmap.c */
int  gm_kmap_open(struct gmem *g);
void gm_kmap_close(struct gmem *g);

/* For tests: cap the number of runs the host view may hold. */
void gm_set_map_limit(struct gmem *g, uint64_t runs);
/* For tests: hold (or release) a lazy restore's background loader, so that
 * only faults and accesses load pages (snapshot/lazy.c); @g NULL: the hold
 * lazy restores start with from now on. */
void gm_lazy_hold(struct gmem *g, bool hold);

#endif /* GM_INTERNAL_H */

/* SPDX-License-Identifier: MIT */
/*
 * track.h - which pages changed since the last snapshot saved from a
 * memory (GMEM_F_TRACK_WRITES); track.c.
 */
#ifndef GM_TRACK_H
#define GM_TRACK_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

#define GM_TRACK_ID_BYTES 16

/* Called from the fault thread of a synchronous tracker before the first
 * write to page @page after gm_track_sync_arm(), with the page still as
 * it was: a live save copies it here. Also called, under g->lock, before
 * the library itself writes or discards a page (gm_track_will_write). */
typedef void (*gm_track_before_fn)(void *ctx, uint64_t page);

struct gm_track {
	struct gmem *g;         /* the memory, for the fault thread (set when
				 * the thread starts)                           */
	enum gmem_track how;
	int uffd;               /* -1 until armed                              */
	int pagemap;            /* /proc/self/pagemap, for PAGEMAP_SCAN         */
	bool armed;             /* views registered and write-protected        */
	bool fresh;             /* sync mode protected every view just now     */
	bool missed;            /* a fresh mapping could not be protected since
				 * gm_track_sync_arm(): a write may be unseen  */
	/* Host-view runs a live save's start protects without g->lock. */
	struct gm_track_run { uint64_t off, len; bool redo; } *pending;
	uint32_t npending, pending_cap;
	bool lost;              /* a change may have gone unseen: no baseline  */
	bool based;             /* base_id names the last file saved from it   */
	uint8_t base_id[GM_TRACK_ID_BYTES];
	uint64_t *dirty;        /* bit per page: changed since the baseline    */
	uint64_t words;
	/* Synchronous mode (a live save, and tracking after one). */
	pthread_t thread;
	bool thread_started;
	int stop_fd;            /* eventfd: the fault thread leaves            */
	pthread_mutex_t mu;     /* before/ctx, against the fault thread         */
	gm_track_before_fn before;
	void *before_ctx;
};

/* At open and close. The tracker starts with every page changed and no
 * baseline; it is armed by the first save. */
int  gm_track_open(struct gmem *g);
void gm_track_close(struct gmem *g);
/* Can a tracker on this host see writes through a memfd mapping? (host.c,
 * for the probe and for gm_track_open) */
bool gm_track_host_supports(void);

/* Pages [first, first + n) changed, or are about to: by a conversion, a
 * discard, a temporary mapping or a load. Calls the synchronous tracker's
 * before-hook first for each page. Caller holds g->lock. */
void gm_track_will_write(struct gmem *g, uint64_t first, uint64_t n);
/* Pages [first, first + n) changed state: bits only, no hook (their
 * contents did not change). Caller holds g->lock. */
void gm_track_changed(struct gmem *g, uint64_t first, uint64_t n);
/* The same for every page set in @bits (a bit per page). */
void gm_track_changed_bits(struct gmem *g, const uint64_t *bits);
/* The host view mapped file bytes [off, off + len) afresh: write-protect
 * them too, or the tracker loses its baseline. Caller holds g->lock. */
void gm_track_mapped(struct gmem *g, uint64_t off, uint64_t len);

/*
 * A save starts: collect what changed since the baseline into a bitmap
 * the caller owns (*@chg, npages bits) and start the next interval (every
 * page write-protected again). @parent_id is the identity of the parent
 * the caller was asked to save against, or NULL. *@incremental says
 * whether the file may hold only the changed pages: the memory has a
 * baseline, its mechanism sees guest writes, and the parent is it. A
 * parent that is not the baseline: -ESTALE. Caller holds g->lock.
 */
int  gm_track_save_begin(struct gmem *g, const uint8_t *parent_id, uint64_t **chg,
			 bool *incremental);
/* The parent check of gm_track_save_begin alone (-ESTALE), for a save that
 * must refuse before it changes anything. Caller holds g->lock. */
int  gm_track_parent_check(struct gmem *g, const uint8_t *parent_id);
/* The save ended: @id the identity of the file now at its path, or NULL if
 * it failed (what @chg held counts as changed again). Frees @chg. Takes
 * g->lock. */
void gm_track_save_end(struct gmem *g, uint64_t *chg, const uint8_t *id);

/*
 * Synchronous write-protection (a live save), in three steps, so that the
 * walk over every page table happens without g->lock:
 *  gm_track_sync_arm()     caller holds g->lock: the views move to a
 *                          synchronous userfaultfd served by a thread that
 *                          calls @before(ctx, page) before the first write
 *                          to each protected page; registered, and fresh
 *                          mappings protected from now on, but not yet
 *                          the existing ones;
 *  gm_track_sync_protect() without g->lock: protect them;
 *  gm_track_sync_settle()  caller holds g->lock: protect again what a
 *                          conversion remapped during the walk, telling
 *                          @late(ctx, first, n) which pages those were
 *                          (written unseen until now).
 * A memory that tracks writes keeps this mechanism afterwards
 * (GMEM_TRACK_UFFD_SYNC): there is no moment between two mechanisms when a
 * write goes unseen. On failure the hook is gone and -errno returned.
 */
int  gm_track_sync_arm(struct gmem *g, gm_track_before_fn before, void *ctx);
int  gm_track_sync_protect(struct gmem *g);
int  gm_track_sync_settle(struct gmem *g, void (*late)(void *ctx, uint64_t first, uint64_t n),
			  void *ctx);
/* Since gm_track_sync_arm(), did a fresh host-view mapping fail to be
 * protected? Caller holds g->lock. */
bool gm_track_missed(const struct gmem *g);
/* Replace the hook. Returns once no fault is being served under the old
 * one (its page unprotected included). */
void gm_track_hook_set(struct gmem *g, gm_track_before_fn before, void *ctx);
/* Hold off the fault thread (and gm_track_will_write) while @hold: a
 * caller that takes the hook's marks and protects their pages again must
 * not take a mark whose fault has not yet lifted the protection. The hook
 * must not wait meanwhile. */
void gm_track_hook_hold(struct gmem *g, bool hold);
/* Write-protect pages [first, first + n) again in both views (a page the
 * hook let go before the start). @locked: caller holds g->lock. */
int  gm_track_protect_pages(struct gmem *g, uint64_t first, uint64_t n, bool locked);
/* Remove the hook; the userfaultfd stays if the memory tracks writes.
 * Otherwise the tracker is detached from @g and returned, to be passed to
 * gm_track_release() without g->lock (or NULL). Caller holds g->lock. */
struct gm_track *gm_track_sync_stop(struct gmem *g);
/* Unregister the views a piece at a time, stop the fault thread, free. */
void gm_track_release(struct gm_track *t);

/* Called, if set, by the fault thread after the hook and before it lifts
 * the protection of @page. For tests (set and read atomically). */
extern void (*gm_track_test_serving)(uint64_t page);

static inline bool gm_track_test(const uint64_t *bits, uint64_t page)
{
	return bits[page / 64] >> (page % 64) & 1;
}

#endif /* GM_TRACK_H */

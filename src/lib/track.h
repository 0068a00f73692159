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
 * write to page @page after gm_track_sync_start(), with the page still as
 * it was: a live save copies it here. Also called, under g->lock, before
 * the library itself writes or discards a page (gm_track_will_write). */
typedef void (*gm_track_before_fn)(void *ctx, uint64_t page);

struct gm_track {
	enum gmem_track how;
	int uffd;               /* -1 until armed                              */
	int pagemap;            /* /proc/self/pagemap, for PAGEMAP_SCAN         */
	bool armed;             /* views registered and write-protected        */
	bool fresh;             /* sync mode protected every view just now     */
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
/* The save ended: @id the identity of the file now at its path, or NULL if
 * it failed (what @chg held counts as changed again). Frees @chg. Takes
 * g->lock. */
void gm_track_save_end(struct gmem *g, uint64_t *chg, const uint8_t *id);

/*
 * Synchronous write-protection (a live save): from now until
 * gm_track_sync_stop(), @before runs before the first write to each page
 * through the library's views (a fault thread serves them). A memory that
 * tracks writes keeps this mechanism afterwards (GMEM_TRACK_UFFD_SYNC):
 * there is no moment between two mechanisms when a write goes unseen.
 * Caller holds g->lock.
 */
int  gm_track_sync_start(struct gmem *g, gm_track_before_fn before, void *ctx);
/* Remove the hook; the userfaultfd stays if the memory tracks writes.
 * Caller holds g->lock. */
void gm_track_sync_stop(struct gmem *g);

static inline bool gm_track_test(const uint64_t *bits, uint64_t page)
{
	return bits[page / 64] >> (page % 64) & 1;
}

#endif /* GM_TRACK_H */

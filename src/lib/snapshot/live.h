/* SPDX-License-Identifier: MIT */
/*
 * live.h - a live save (GMEM_SNAP_LIVE): the start image of a memory that
 * goes on being written while its file is written; live.c.
 */
#ifndef GM_LIVE_H
#define GM_LIVE_H

#include <stdbool.h>
#include <stdint.h>

#include "snap.h"

struct gm_live;

/* Copies of pages written during a live save, in bytes, at most (0: the
 * default, a sixteenth of the memory, at least 64 MiB). A writer that
 * would need more waits until the save has passed its page. For tests. */
extern uint64_t gm_live_copy_max;
/* Called, if set, once every page is protected and before the passes: a
 * test writes there as a guest would during the start. */
extern void (*gm_live_test_protected)(struct gmem *g);
/* Called, if set, under g->lock once the copying hook is in place, before
 * the tracker's changed pages are taken. For tests. */
extern void (*gm_live_test_fixed)(struct gmem *g);

/*
 * A live save starts in three steps; the page tables are walked in the
 * second, without g->lock:
 *  gm_live_arm()      caller holds g->lock: a synchronous userfaultfd on
 *                     both views, with a hook that only notes writes;
 *  gm_live_prepare()  without g->lock: every page write-protected, and
 *                     the pages written meanwhile again, a few passes;
 *  gm_live_fix()      caller holds g->lock (the start image is the memory
 *                     now): the pages moved since the listing asked
 *                     again, the copying hook in place, the last pages
 *                     written protected again.
 * After a failure in any step, gm_live_end().
 */
int  gm_live_arm(struct gmem *g, struct gm_live **out);
int  gm_live_prepare(struct gm_live *l);
int  gm_live_fix(struct gm_live *l);
/* The tracker's changed pages for an incremental save (NULL: every page
 * counts), known once gm_track_save_begin() ran: pages outside it need no
 * copy. Then the pages a pin or a temporary mapping may write without a
 * fault are copied, and the pages decided so far count as changed for the
 * next save. Caller holds g->lock. */
void gm_live_set_changed(struct gm_live *l, const uint64_t *chg);
/* After the lock is dropped: copies made while it was held, and from now
 * on the cutter and fillers below. */

/* Pages that held data at the start. */
uint64_t gm_live_populated(const struct gm_live *l);
/* The next extent of the start image to save (populated then, and changed
 * since the parent if @l has changed pages), at or after page *@pos: 1 and
 * [*start, *start + *len) in bytes, 0 at the end. Extents ascend; *@pos
 * moves past the one returned. */
int  gm_live_cut_next(struct gm_live *l, uint64_t *pos, uint64_t *start, uint64_t *len);

/* Page data of [gpa, gpa + len) as it was at the start (len at most
 * GM_SNAP_CHUNK_MAX): the KVM view itself, or @bounce (GM_SNAP_CHUNK_MAX
 * bytes) assembled from the view and the copies. Pages of the range are
 * not written meanwhile until gm_live_read_end(), which marks them saved
 * and frees their copies. NULL with -EIO in *@err if a page the start
 * image holds was lost (a bug: asserted in debug builds). */
const uint8_t *gm_live_read_begin(struct gm_live *l, uint64_t gpa, uint32_t len,
				  uint8_t *bounce, int *err);
void gm_live_read_end(struct gm_live *l, uint64_t gpa, uint32_t len);

/* The save ends (written or failed): writers stop waiting, the hook goes,
 * the copies are freed. Caller does not hold g->lock. */
void gm_live_end(struct gm_live *l);

/* What happened during the save, for the benchmark and the tests. */
struct gm_live_stats {
	uint64_t touched;       /* pages first written (or discarded) during it */
	uint64_t copied;        /* of them, copied because not yet saved        */
	uint64_t waits;         /* times a writer waited for room for a copy    */
	uint64_t copy_peak;     /* most copies held at once, bytes              */
	uint64_t reprotected;   /* pages written during the start, protected
				 * again before it was fixed                    */
};
void gm_live_stats(const struct gm_live *l, struct gm_live_stats *st);
/* The last live save's, in this process. */
extern struct gm_live_stats gm_live_last;

#endif /* GM_LIVE_H */

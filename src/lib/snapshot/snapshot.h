/* SPDX-License-Identifier: MIT */
/*
 * snapshot.h - the workers behind the public snapshot calls. Arguments are
 * validated by snapshot.c before any of these runs.
 */
#ifndef GM_SNAPSHOT_H
#define GM_SNAPSHOT_H

#include "gmem.h"

int gm_snap_save(struct gmem *g, const char *path, const struct gmem_snapshot_opts *o);
int gm_snap_restore(const char *path, const struct gmem_config *cfg,
		    const struct gmem_snapshot_opts *o, struct gmem **out);

#endif /* GM_SNAPSHOT_H */

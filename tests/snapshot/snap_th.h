/* SPDX-License-Identifier: MIT */
/*
 * snap_th.h - helpers of the snapshot suites: scratch directories, random
 * memories (states and contents), and comparisons that print both sides.
 */
#ifndef SNAP_TH_H
#define SNAP_TH_H

#include <stdint.h>

#include "helpers.h"

/* A fresh directory under /tmp for this test; removed (with what it holds)
 * by snap_rmdir(). Returns a path valid until then. */
const char *snap_tmpdir(void);
void snap_rmdir(const char *dir);
/* dir/name in a static buffer of its own per slot (0..3). */
const char *snap_file(const char *dir, const char *name, unsigned slot);

/* Give @g random runs of states and random contents in about @fill_pct
 * percent of its pages (some all-zero, some discarded again) from @seed.
 * Returns the pages it populated. */
uint64_t snap_randomize(struct gmem *g, uint64_t seed, unsigned fill_pct);

/* Pages of @g the backing holds (SEEK_DATA on memfd, mincore of the KVM
 * view on guest_memfd), without populating any. */
uint64_t snap_populated_pages(struct gmem *g);

/* @a and @b have the same size (over @a's), states and contents; fails the
 * test naming the first difference and both sides. Reading populates. */
void snap_expect_same(struct gmem *a, struct gmem *b);

/* Number of open file descriptors and mappings of this process. Under
 * ASan and TSan the allocator itself carves new mappings as it grows, so
 * mappings are compared in the plain build only (SNAP_MAPS_EXACT). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SNAP_MAPS_EXACT 0
#else
#define SNAP_MAPS_EXACT 1
#endif
unsigned snap_open_fds(void);
unsigned snap_maps(void);

/* Whole file into a malloc'ed buffer; *len its size. */
uint8_t *snap_slurp(const char *path, size_t *len);
void snap_spit(const char *path, const void *buf, size_t len);

#endif /* SNAP_TH_H */

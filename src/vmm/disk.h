/* SPDX-License-Identifier: MIT */
/*
 * disk.h - a disk image for the block device (virtio/blk.c): its
 * descriptors, its gmem_io target and its capacity, and the one call that
 * moves a request's bytes between guest buffers and the image.
 */
#ifndef GV_DISK_H
#define GV_DISK_H

#include <stdbool.h>
#include <stdint.h>

#include <gmem.h>

#define GV_DISK_SECTOR 512u

struct gv_disk {
	struct gmem_io_target t;
	int fd, dfd;            /* the image's descriptors, or -1 (target given) */
	uint64_t sectors;
};

/* Open @image read-write (and O_DIRECT too where the filesystem takes it),
 * or, with @image NULL, serve @target (copied; @sectors required). @sectors
 * 0: the image's size. -errno with gv_last_error() set; on failure nothing
 * stays open. */
int  gv_disk_open(struct gv_disk *d, const char *image, const struct gmem_io_target *target,
		  uint64_t sectors);
void gv_disk_close(struct gv_disk *d);

/* One gmem_io_rw() of @segs against the image at @sector, on @path. The
 * caller has checked the range against the capacity. Returns the bytes
 * moved (*done: those that did, also on error) or -errno. */
int64_t gv_disk_rw(struct gv_disk *d, struct gmem_io *io, enum gmem_io_path path, bool write,
		   const struct gmem_io_seg *segs, unsigned nsegs, uint64_t sector,
		   uint64_t *done);

#endif /* GV_DISK_H */

/* SPDX-License-Identifier: MIT */
/*
 * virtio_blk.h - virtio-blk (virtio 1.2 section 5.2) over virtio-mmio: a
 * disk image (or any gmem_io target) for a guest that speaks the standard
 * protocol.
 *
 * Model:
 *   - Transport and queue rules: virtio.h. The device offers
 *     VIRTIO_F_VERSION_1, VIRTIO_BLK_F_SIZE_MAX (1 MiB), _SEG_MAX (8),
 *     _BLK_SIZE (512) and _FLUSH; requests IN, OUT, FLUSH and GET_ID;
 *     anything else completes with VIRTIO_BLK_S_UNSUPP.
 *   - A request is a descriptor chain: the 16-byte header (type, sector) in
 *     the first buffer, device-readable; the data buffers; the status byte,
 *     the last byte of the last buffer, device-writable. Header and status
 *     are read and written through the host view, so they lie in memory the
 *     guest shared (with its rings, as a confidential guest's driver puts
 *     them); the data buffers may be private or shared: their bytes move
 *     with one gmem_io_rw() on the device's path, and every page keeps its
 *     state.
 *   - Checked before anything moves: directions (IN data device-writable,
 *     OUT device-readable), at most 8 data buffers of whole sectors summing
 *     to at most 1 MiB, the sector range inside the capacity, no data
 *     buffer touching a ring. A request failing them completes with
 *     VIRTIO_BLK_S_IOERR and moves nothing; one whose status byte cannot be
 *     written breaks the device (DEVICE_NEEDS_RESET).
 *   - Freed by gv_vm_destroy, before the VM's I/O context and memory.
 */
#ifndef GV_VIRTIO_BLK_H
#define GV_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include <gmem.h>

#include "vmm.h"

/* 5.2.3 Feature bits; 5.2.6 request types and status. */
#define GV_VBLK_F_SIZE_MAX   1
#define GV_VBLK_F_SEG_MAX    2
#define GV_VBLK_F_BLK_SIZE   6
#define GV_VBLK_F_FLUSH      9

#define GV_VBLK_T_IN         0
#define GV_VBLK_T_OUT        1
#define GV_VBLK_T_FLUSH      4
#define GV_VBLK_T_GET_ID     8

#define GV_VBLK_S_OK         0
#define GV_VBLK_S_IOERR      1
#define GV_VBLK_S_UNSUPP     2

#define GV_VBLK_SEG_MAX      8u
#define GV_VBLK_SIZE_MAX     (1u << 20)
#define GV_VBLK_ID_BYTES     20u

/* 5.2.4 Device configuration layout (the fields up to blk_size). */
struct gv_vblk_config_space {
	uint64_t capacity;      /* 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	struct { uint16_t cylinders; uint8_t heads, sectors; } geometry;
	uint32_t blk_size;
} __attribute__((packed));

struct gv_vblk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct gv_vblk;

struct gv_vblk_config {
	const char *image;      /* disk image (file or block device), opened      */
	                        /* read-write, and O_DIRECT too where it can be   */
	const struct gmem_io_target *target;  /* with image NULL: any gmem_io     */
	                        /* target (copied; its fd/fn stay the caller's)   */
	uint64_t sectors;       /* capacity in 512-byte sectors; 0: the image's   */
	                        /* size (required with a target)                  */
	enum gmem_io_path io_path;  /* how data moves: GMEM_IO_AUTO calibrates    */
	uint64_t base;          /* MMIO window; 0: GV_VIRTIO_MMIO_BASE            */
};

struct gv_vblk_stats {
	uint64_t sectors;
	bool direct;
	uint32_t status;        /* the device status register                    */
	int broken;             /* why DEVICE_NEEDS_RESET is set, or 0           */
	uint64_t features;      /* negotiated                                     */
	uint32_t queue_num;     /* the queue's size, 0 before set-up              */
	/* Limits (the guest cannot raise them): the queue's most entries, the
	 * longest request and its most data buffers; one notify serves at most
	 * a ring, max_notify the most it served. */
	uint32_t queue_max, size_max, seg_max;
	uint64_t notifies, resets, max_notify;
	uint64_t reads, writes, flushes, get_ids;
	uint64_t bytes_read, bytes_written;
	uint64_t ioerrs, unsupp;
	struct gmem_io_stats io;
};

/* Before gv_vm_start: open the image, claim the MMIO window (-EEXIST if RAM
 * or another device is there), make or reuse the VM's I/O context. */
int  gv_vblk_attach(struct gv_vm *vm, const struct gv_vblk_config *cfg, struct gv_vblk **out);
int  gv_vblk_stats(struct gv_vblk *vb, struct gv_vblk_stats *st);

#endif /* GV_VIRTIO_BLK_H */

/* SPDX-License-Identifier: MIT */
/*
 * vdrv.h - the guests' virtio-blk driver (virtio 1.2 over virtio-mmio, one
 * split virtqueue), written once for two platforms.
 *
 * Model: the driver core (vdrv.c) touches the device and guest memory only
 * through struct gvd_platform. Inside a guest (guests/vblk.c) the platform
 * is volatile 32-bit loads and stores at the device's MMIO window, plain
 * memory for the rings, and the vmcall instruction for
 * KVM_HC_MAP_GPA_RANGE; on the host (tests/vm/test_vm_vdrv.c) it is the
 * micro-VMM's test accelerator, which drives the very exit-dispatch code a
 * KVM exit reaches. So the driver a guest runs is proven on every host,
 * and only the few instructions of the guest platform need KVM.
 *
 * The driver keeps what a confidential guest's driver keeps shared: one
 * page (GVD_RING_BYTES), shared with KVM_HC_MAP_GPA_RANGE before the queue
 * is set up, holding the three rings, the request header, the status byte
 * and the GET_ID answer. Data buffers stay wherever the caller has them,
 * private or shared. One request is in flight at a time; the device serves
 * a notify before the MMIO write returns, and the driver polls used->idx
 * a bounded number of times (no interrupts in these guests).
 *
 * Freestanding: no libc, no allocation, no floating point; errors are
 * negative errno values (numbers spelled out, as the guest has no errno.h).
 */
#ifndef GVD_VDRV_H
#define GVD_VDRV_H

#include <stdint.h>

#define GVD_RING_BYTES  4096u
#define GVD_QUEUE_MAX   8u      /* entries the driver asks for      */
#define GVD_SEGS_MAX    6u      /* data buffers per request          */
#define GVD_SECTOR      512u
#define GVD_ID_BYTES    20u

#define GVD_ENODEV      (-19)   /* not a virtio-blk device, or unusable */
#define GVD_EIO         (-5)    /* the device refused or broke          */
#define GVD_EINVAL      (-22)   /* a request the driver will not post   */
#define GVD_ENOTSUP     (-95)   /* the device does not know the request */
#define GVD_ETIMEDOUT   (-110)  /* no answer to a notify                */

struct gvd_platform {
	/* 32-bit accesses at offset @off of the device's MMIO window. */
	uint32_t (*reg_read)(void *ctx, uint32_t off);
	void (*reg_write)(void *ctx, uint32_t off, uint32_t v);
	/* Guest memory at guest-physical @gpa. */
	void (*mem_read)(void *ctx, uint64_t gpa, void *buf, uint32_t len);
	void (*mem_write)(void *ctx, uint64_t gpa, const void *buf, uint32_t len);
	/* KVM_HC_MAP_GPA_RANGE: @attrs bit 4 set makes the pages private,
	 * clear makes them shared; 0 or a negative errno. */
	long (*map_gpa_range)(void *ctx, uint64_t gpa, uint64_t npages, uint64_t attrs);
	void *ctx;
};

struct gvd {
	const struct gvd_platform *p;
	uint64_t ring;          /* guest-physical, page-aligned, shared     */
	uint32_t num;           /* queue entries                            */
	uint16_t avail_idx;     /* next free slot of the available ring     */
	uint16_t used_seen;     /* used->idx as last seen                   */
	uint64_t features;      /* negotiated                               */
	uint64_t capacity;      /* sectors                                  */
	uint64_t requests;
};

struct gvd_seg {
	uint64_t gpa;
	uint32_t len;           /* a multiple of GVD_SECTOR                 */
};

/* Find, negotiate and set up the device; share @ring_gpa (one page) for
 * the rings. 0 or a negative errno (nothing is left live then). */
int gvd_init(struct gvd *d, const struct gvd_platform *p, uint64_t ring_gpa);
/* Read (@write 0) or write @nsegs buffers at @sector: 0 or -errno. */
int gvd_rw(struct gvd *d, int write, uint64_t sector, const struct gvd_seg *segs,
	   unsigned nsegs);
int gvd_flush(struct gvd *d);
/* The device's serial, NUL-terminated (at most GVD_ID_BYTES bytes). */
int gvd_get_id(struct gvd *d, char id[GVD_ID_BYTES + 1]);
/* A request of type @type with no data (for a type the device lacks). */
int gvd_raw(struct gvd *d, uint32_t type);
/* Reset the device (Status = 0); the ring page stays shared. */
void gvd_reset(struct gvd *d);

#endif /* GVD_VDRV_H */

/* SPDX-License-Identifier: MIT */
/*
 * pvblk.h - the micro-VMM's paravirtual block device: a disk image (or any
 * gmem_io target) served to the guest through a request ring the guest
 * shares, with data buffers the guest keeps private.
 *
 * Model:
 *   - Guest ABI (ports, ring layout, status codes): gv_abi.h, "Paravirtual
 *     block device". The ring is the only guest memory the device reads or
 *     writes through the host view (gv_dev_read/gv_dev_write), so a ring the
 *     guest did not share is refused (-EFAULT in the status register).
 *   - Data moves with the gmem_io API on the VM's I/O context (gv_vm_io):
 *     each request's scatter-gather list becomes a gmem_io_seg list served
 *     against the image by one gmem_io_rw() call, on the path set for the
 *     device (auto, inplace, bounce, kmap). Every page keeps the state it
 *     had; the guest never shares a data buffer.
 *   - Requests are served synchronously on the vCPU thread that kicks, in
 *     ring order, under the device lock (several vCPUs may kick at once).
 *     The ring protocol is the asynchronous one (avail/used counters,
 *     per-request status the guest waits for), so serving from a device
 *     thread would change no guest code; serving in the exit keeps the
 *     VMM's pause contract (no device touches memory while the vCPUs are
 *     parked) and spares a guest that runs at ~1-2 us per instruction from
 *     polling a device thread on a loaded host. docs/vmm.md says more.
 *   - The device and the image's descriptors are freed by gv_vm_destroy
 *     (gv_pio_dev.release), before the I/O context and the memory.
 *
 * Errors are negative errno values with a reason in gv_last_error().
 */
#ifndef GV_PVBLK_H
#define GV_PVBLK_H

#include <stdbool.h>
#include <stdint.h>

#include <gmem.h>

#include "vmm.h"

struct gv_blk;

struct gv_blk_config {
	const char *image;      /* disk image (file or block device), opened      */
	                        /* read-write, and O_DIRECT too where it can be   */
	const struct gmem_io_target *target;  /* with image NULL: any gmem_io     */
	                        /* target (copied; its fd/fn stay the caller's)   */
	uint64_t sectors;       /* capacity in 512-byte sectors; 0: the image's   */
	                        /* size (required with a target)                  */
	enum gmem_io_path io_path;  /* how data moves: GMEM_IO_AUTO calibrates    */
	uint16_t port;          /* first port; 0: GV_PORT_BLK                     */
};

struct gv_blk_stats {
	uint64_t sectors;
	bool direct;            /* the image has an O_DIRECT descriptor too       */
	int status;             /* GV_BLK_REG_STATUS: 0, or why the device stopped */
	uint64_t kicks;
	uint64_t reads, writes; /* requests completed with GV_BLK_S_OK            */
	uint64_t bytes_read, bytes_written;
	uint64_t ioerrs;        /* completed with GV_BLK_S_IOERR                  */
	uint64_t badreqs;       /* completed with GV_BLK_S_BADREQ                 */
	/* Limits (gv_abi.h): the ring the guest set (0: stopped) and its most,
	 * the longest request; one kick serves at most the ring's entries. */
	uint32_t ring_entries, ring_max;
	uint32_t max_request_bytes;
	uint64_t max_kick;      /* most requests posted to one kick               */
	struct gmem_io_stats io;    /* the VM's I/O context                       */
};

/* Before gv_vm_start: open the image (or take the target), make or reuse
 * the VM's I/O context, claim GV_BLK_NPORTS ports. *out stays valid until
 * gv_vm_destroy. -EINVAL on a bad config, -errno from opening the image,
 * -EEXIST when the ports are taken. */
int  gv_blk_attach(struct gv_vm *vm, const struct gv_blk_config *cfg, struct gv_blk **out);
int  gv_blk_stats(struct gv_blk *b, struct gv_blk_stats *st);

#endif /* GV_PVBLK_H */

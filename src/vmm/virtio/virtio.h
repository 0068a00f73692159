/* SPDX-License-Identifier: MIT */
/*
 * virtio.h - the virtio 1.2 transport the micro-VMM offers (virtio-mmio,
 * spec section 4.2) and split virtqueues (section 2.7), for its devices
 * (blk.c). Internal to src/vmm.
 *
 * Model:
 *   - One device per MMIO window of GV_VIRTIO_MMIO_SIZE bytes outside RAM
 *     (gv_vm_add_mmio). Control registers are 32-bit accesses only (4.2.2:
 *     "the driver MUST only use 32 bit wide and aligned reads and writes");
 *     any other width stops the guest with a report naming the device, as
 *     a guest bug. The device's configuration space (from 0x100) takes 1-,
 *     2-, 4- and 8-byte reads.
 *   - No interrupt line: InterruptStatus bit 0 is set when the device adds
 *     to the used ring, and the guest polls used->idx (the micro-VMM's
 *     guests have no interrupt controller).
 *   - One virtqueue (index 0), at most GV_VQ_MAX entries. The rings live in
 *     guest memory the guest has shared and are read and written only
 *     through the host view (gv_dev_read/gv_dev_write): a ring in private
 *     memory is -EFAULT, never a signal.
 *   - Every value the guest controls is copied out of guest memory before
 *     it is checked and used. A malformed ring (an index or descriptor out
 *     of range, a loop, an indirect descriptor, which is not offered, more
 *     available than entries, an unreachable ring) sets
 *     DEVICE_NEEDS_RESET: the device does nothing more until the driver
 *     resets it (Status = 0). A malformed request the device can answer
 *     gets an error status in the request, not a broken device.
 *   - A notify serves what was available when it began, at most one ring's
 *     worth, on the notifying vCPU's thread under the device lock: a guest
 *     topping the ring up from another vCPU cannot keep it there.
 */
#ifndef GV_VIRTIO_H
#define GV_VIRTIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm.h"

/* 4.2.2 MMIO device register layout (version 2, non-legacy). */
#define GV_VIO_MAGIC_VALUE        0x000     /* "virt" */
#define GV_VIO_VERSION            0x004
#define GV_VIO_DEVICE_ID          0x008
#define GV_VIO_VENDOR_ID          0x00c
#define GV_VIO_DEVICE_FEATURES    0x010
#define GV_VIO_DEVICE_FEATURES_SEL 0x014
#define GV_VIO_DRIVER_FEATURES    0x020
#define GV_VIO_DRIVER_FEATURES_SEL 0x024
#define GV_VIO_QUEUE_SEL          0x030
#define GV_VIO_QUEUE_NUM_MAX      0x034
#define GV_VIO_QUEUE_NUM          0x038
#define GV_VIO_QUEUE_READY        0x044
#define GV_VIO_QUEUE_NOTIFY       0x050
#define GV_VIO_INTERRUPT_STATUS   0x060
#define GV_VIO_INTERRUPT_ACK      0x064
#define GV_VIO_STATUS             0x070
#define GV_VIO_QUEUE_DESC_LOW     0x080
#define GV_VIO_QUEUE_DESC_HIGH    0x084
#define GV_VIO_QUEUE_DRIVER_LOW   0x090
#define GV_VIO_QUEUE_DRIVER_HIGH  0x094
#define GV_VIO_QUEUE_DEVICE_LOW   0x0a0
#define GV_VIO_QUEUE_DEVICE_HIGH  0x0a4
#define GV_VIO_CONFIG_GENERATION  0x0fc
#define GV_VIO_CONFIG             0x100

#define GV_VIO_MAGIC              0x74726976u
#define GV_VIO_VENDOR             0x554d4551u  /* any value: 4.2.2 */

/* 2.1 Device status field. */
#define GV_VIO_S_ACKNOWLEDGE      1u
#define GV_VIO_S_DRIVER           2u
#define GV_VIO_S_DRIVER_OK        4u
#define GV_VIO_S_FEATURES_OK      8u
#define GV_VIO_S_NEEDS_RESET      64u
#define GV_VIO_S_FAILED           128u

/* 6 Reserved feature bits. */
#define GV_VIO_F_INDIRECT_DESC    28
#define GV_VIO_F_EVENT_IDX        29
#define GV_VIO_F_VERSION_1        32

/* 2.7.5 The virtqueue descriptor table. */
#define GV_VQ_DESC_F_NEXT         1u
#define GV_VQ_DESC_F_WRITE        2u
#define GV_VQ_DESC_F_INDIRECT     4u

struct gv_vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

#define GV_VQ_MAX        256u   /* QueueNumMax                              */
#define GV_VQ_CHAIN_MAX  16u    /* buffers of one request the device keeps   */

struct gv_vq {
	uint32_t num;           /* QueueNum: a power of two, 1..GV_VQ_MAX      */
	bool ready;
	uint64_t desc, avail, used;     /* guest-physical ring addresses       */
	uint16_t last_avail;    /* next available entry to serve              */
	uint16_t used_idx;      /* our copy of used->idx                       */
};

struct gv_vq_buf {
	uint64_t gpa;
	uint32_t len;
	bool writable;          /* VIRTQ_DESC_F_WRITE: the device writes it    */
};

/* One request: the first GV_VQ_CHAIN_MAX buffers of its descriptor chain,
 * and always the last one (where a device puts its status). */
struct gv_vq_chain {
	uint16_t head;
	unsigned n;             /* buffers in the chain (may exceed the array) */
	struct gv_vq_buf buf[GV_VQ_CHAIN_MAX];
	struct gv_vq_buf last;
};

/* queue.c. Each returns 0 or a negative errno that breaks the device. */
int  gv_vq_enable(struct gv_vm *vm, struct gv_vq *vq);  /* QueueReady = 1 checks */
/* The queue's size and rings are valid: what gv_vq_enable() checks. */
bool gv_vq_fits(struct gv_vm *vm, const struct gv_vq *vq);
int  gv_vq_avail_idx(struct gv_vm *vm, const struct gv_vq *vq, uint16_t *idx);
int  gv_vq_pop(struct gv_vm *vm, struct gv_vq *vq, struct gv_vq_chain *c);
int  gv_vq_push(struct gv_vm *vm, struct gv_vq *vq, uint16_t head, uint32_t len);
/* Does [gpa, gpa + len) touch one of the queue's rings? */
bool gv_vq_overlaps(const struct gv_vq *vq, uint64_t gpa, uint64_t len);

/* ---- transport (mmio.c) ---- */

struct gv_virtio;

struct gv_virtio_ops {
	const char *name;
	uint32_t device_id;     /* 5 Device Types: 2 = block                   */
	uint64_t features;      /* offered; VERSION_1 is added                 */
	/* The notified queue has work: serve it (under the device lock). */
	void (*notify)(struct gv_virtio *vd, void *ctx);
	/* The driver reset the device (Status = 0). */
	void (*reset)(void *ctx);
	void (*release)(void *ctx);
};

struct gv_virtio {
	struct gv_vm *vm;
	const struct gv_virtio_ops *ops;
	void *ctx;
	const void *config;     /* the device's configuration space          */
	uint32_t config_len;

	pthread_mutex_t lock;   /* everything below; notify runs under it     */
	uint32_t status;
	uint32_t dev_features_sel, drv_features_sel, queue_sel;
	uint64_t driver_features;
	uint32_t isr;
	struct gv_vq vq;
	int broken;             /* why NEEDS_RESET was set (-errno), or 0     */
	uint64_t notifies, resets, max_notify;
};

/* Add @vd (filled by the device: ops, ctx, config) as an MMIO device at
 * @base, GV_VIRTIO_MMIO_SIZE bytes. */
int  gv_virtio_add(struct gv_vm *vm, struct gv_virtio *vd, uint64_t base);
/* gv_mmio_dev.save/load for VM snapshots: the transport's state and the
 * queue's; load() checks each field against what the registers could have
 * produced, and the configuration against the device it is loaded into. */
#define GV_VIRTIO_STATE_SIZE 80u
int  gv_virtio_save(void *ctx, void *buf, size_t cap);
int  gv_virtio_load(void *ctx, const void *buf, size_t len);
/* Inside notify: mark the device broken (DEVICE_NEEDS_RESET). */
void gv_virtio_break(struct gv_virtio *vd, int err);
/* Inside notify: the driver accepted feature @bit. */
bool gv_virtio_has(const struct gv_virtio *vd, unsigned bit);

#endif /* GV_VIRTIO_H */

// SPDX-License-Identifier: MIT
/*
 * queue.c - split virtqueues (virtio 1.2 section 2.7), read and written in
 * guest memory through the host view only (see virtio.h).
 *
 * Layout for a queue of N entries: the descriptor table (16 N bytes,
 * 16-aligned), the driver area or available ring (flags, idx, ring[N],
 * used_event: 6 + 2 N bytes, 2-aligned) and the device area or used ring
 * (flags, idx, {id, len}[N], avail_event: 6 + 8 N bytes, 4-aligned).
 *
 * Every index read from the guest is checked before it is used: a head or
 * next index past N, a chain longer than N (a loop), an indirect descriptor
 * (not offered), a buffer outside RAM, or more entries available than N
 * are errors that break the device. The caller holds the device lock.
 */
#include <errno.h>
#include <stddef.h>

#include "virtio.h"
#include "../vmm_internal.h"

static uint64_t gv_vq_desc_bytes(uint32_t num)
{
	return 16ull * num;
}

static uint64_t gv_vq_avail_bytes(uint32_t num)
{
	return 6 + 2ull * num;
}

static uint64_t gv_vq_used_bytes(uint32_t num)
{
	return 6 + 8ull * num;
}

static bool gv_vq_in_ram(struct gv_vm *vm, uint64_t gpa, uint64_t len)
{
	uint64_t mem = gv_vm_mem_size(vm);

	return gpa < mem && len <= mem - gpa;
}

bool gv_vq_fits(struct gv_vm *vm, const struct gv_vq *vq)
{
	if (!vq->num || vq->num > GV_VQ_MAX || (vq->num & (vq->num - 1)))
		return false;
	if (vq->desc % 16 || vq->avail % 2 || vq->used % 4)
		return false;
	if (!gv_vq_in_ram(vm, vq->desc, gv_vq_desc_bytes(vq->num)) ||
	    !gv_vq_in_ram(vm, vq->avail, gv_vq_avail_bytes(vq->num)) ||
	    !gv_vq_in_ram(vm, vq->used, gv_vq_used_bytes(vq->num)))
		return false;
	return true;
}

int gv_vq_enable(struct gv_vm *vm, struct gv_vq *vq)
{
	if (!gv_vq_fits(vm, vq))
		return -EINVAL;
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->ready = true;
	return 0;
}

int gv_vq_avail_idx(struct gv_vm *vm, const struct gv_vq *vq, uint16_t *idx)
{
	int ret = gv_dev_read(vm, vq->avail + 2, idx, sizeof(*idx));

	if (ret)
		return ret;
	/* The driver never makes more available than the queue holds. */
	if ((uint16_t)(*idx - vq->last_avail) > vq->num)
		return -EPROTO;
	return 0;
}

static int gv_vq_read_desc(struct gv_vm *vm, const struct gv_vq *vq, uint16_t i,
			   struct gv_vq_desc *d)
{
	int ret = gv_dev_read(vm, vq->desc + 16ull * i, d, sizeof(*d));

	if (ret)
		return ret;
	if (d->flags & GV_VQ_DESC_F_INDIRECT)
		return -EPROTO;         /* VIRTIO_F_INDIRECT_DESC is not offered */
	if (!gv_vq_in_ram(vm, d->addr, d->len))
		return -EFAULT;
	return 0;
}

int gv_vq_pop(struct gv_vm *vm, struct gv_vq *vq, struct gv_vq_chain *c)
{
	uint64_t slot = vq->avail + 4 + 2ull * (vq->last_avail & (vq->num - 1));
	struct gv_vq_desc d;
	uint16_t i;
	int ret;

	ret = gv_dev_read(vm, slot, &c->head, sizeof(c->head));
	if (ret)
		return ret;
	if (c->head >= vq->num)
		return -EPROTO;
	c->n = 0;
	for (i = c->head;; i = d.next) {
		/* More buffers than entries: the chain loops. */
		if (c->n == vq->num)
			return -ELOOP;
		ret = gv_vq_read_desc(vm, vq, i, &d);
		if (ret)
			return ret;
		c->last = (struct gv_vq_buf){ .gpa = d.addr, .len = d.len,
					      .writable = d.flags & GV_VQ_DESC_F_WRITE };
		if (c->n < GV_VQ_CHAIN_MAX)
			c->buf[c->n] = c->last;
		c->n++;
		if (!(d.flags & GV_VQ_DESC_F_NEXT))
			break;
		if (d.next >= vq->num)
			return -EPROTO;
	}
	vq->last_avail++;
	return 0;
}

int gv_vq_push(struct gv_vm *vm, struct gv_vq *vq, uint16_t head, uint32_t len)
{
	uint32_t elem[2] = { head, len };
	uint64_t slot = vq->used + 4 + 8ull * (vq->used_idx & (vq->num - 1));
	int ret;

	/* The element first, then the index the driver polls. */
	ret = gv_dev_write(vm, slot, elem, sizeof(elem));
	if (ret)
		return ret;
	vq->used_idx++;
	return gv_dev_write(vm, vq->used + 2, &vq->used_idx, sizeof(vq->used_idx));
}

static bool gv_vq_touch(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

bool gv_vq_overlaps(const struct gv_vq *vq, uint64_t gpa, uint64_t len)
{
	return gv_vq_touch(gpa, len, vq->desc, gv_vq_desc_bytes(vq->num)) ||
	       gv_vq_touch(gpa, len, vq->avail, gv_vq_avail_bytes(vq->num)) ||
	       gv_vq_touch(gpa, len, vq->used, gv_vq_used_bytes(vq->num));
}

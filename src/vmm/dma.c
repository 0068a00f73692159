// SPDX-License-Identifier: MIT
/*
 * dma.c - the stand-in DMA engine behind GV_HC_IO_PIN / GV_HC_IO_UNPIN: the
 * guest asks for a range to be pinned as a device would pin it for DMA.
 *
 * Model: the pins a guest takes are the guest's, recorded per VM in a
 * fixed table of GV_DMA_RANGES ranges, each with the number of times it
 * was pinned. gmem's pin counts have no owner, so without the table a
 * guest could drop a pin some device holds for in-flight I/O (an in-place
 * block request) and then unshare the page under that I/O. With it, UNPIN
 * releases only a range the table holds, exactly as it was pinned; the
 * table's size and the longest range bound what a guest can hold pinned
 * (gv_abi.h), whatever the RAM size.
 *
 * Lock rule: d->lock is taken before the memory's lock (inside gmem_pin and
 * gmem_unpin) and never the other way round; nothing under the memory's
 * lock calls back here.
 */
#include <errno.h>

#include "vmm_internal.h"

void gv_dma_init(struct gv_dma *d)
{
	pthread_mutex_init(&d->lock, NULL);
}

void gv_dma_fini(struct gv_dma *d)
{
	pthread_mutex_destroy(&d->lock);
}

/* Caller holds d->lock. */
static struct gv_dma_range *gv_dma_find(struct gv_dma *d, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < GV_DMA_RANGES; i++)
		if (d->r[i].len == len && d->r[i].gpa == gpa)
			return &d->r[i];
	return NULL;
}

int gv_dma_pin(struct gv_vm *vm, uint64_t gpa, uint64_t len)
{
	struct gv_dma *d = &vm->dma;
	struct gv_dma_range *r;
	int ret;

	/* gmem_pin checks the range itself (unaligned, outside RAM, private);
	 * the length is the table's rule. */
	if (!len)
		return -EINVAL;
	pthread_mutex_lock(&d->lock);
	if (len > GV_DMA_MAX_BYTES) {
		d->refused++;
		ret = -E2BIG;
		goto out;
	}
	r = gv_dma_find(d, gpa, len);
	if (!r) {
		r = gv_dma_find(d, 0, 0);       /* a free slot */
		if (!r) {
			d->refused++;
			ret = -ENOSPC;
			goto out;
		}
	}
	if (r->count == GV_DMA_PINS_MAX) {
		d->refused++;
		ret = -EOVERFLOW;
		goto out;
	}
	ret = gmem_pin(vm->g, gpa, len);
	if (ret)
		goto out;
	if (!r->count++) {
		r->gpa = gpa;
		r->len = len;
		if (++d->held > d->peak)
			d->peak = d->held;
	}
out:
	pthread_mutex_unlock(&d->lock);
	return ret;
}

int gv_dma_unpin(struct gv_vm *vm, uint64_t gpa, uint64_t len)
{
	struct gv_dma *d = &vm->dma;
	struct gv_dma_range *r;
	int ret = -EINVAL;

	pthread_mutex_lock(&d->lock);
	r = len ? gv_dma_find(d, gpa, len) : NULL;
	if (!r)
		goto out;
	ret = gmem_unpin(vm->g, gpa, len);
	/* The guest's own pins are on the range: the library cannot refuse. */
	if (ret) {
		gv_set_error("gmem_unpin of a guest-held range: %d", ret);
		goto out;
	}
	if (!--r->count) {
		r->gpa = r->len = 0;
		d->held--;
	}
out:
	pthread_mutex_unlock(&d->lock);
	return ret;
}

void gv_dma_release(struct gv_vm *vm)
{
	struct gv_dma *d = &vm->dma;

	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < GV_DMA_RANGES; i++) {
		struct gv_dma_range *r = &d->r[i];

		for (; r->count; r->count--)
			gmem_unpin(vm->g, r->gpa, r->len);
		r->gpa = r->len = 0;
	}
	d->held = 0;
	pthread_mutex_unlock(&d->lock);
}

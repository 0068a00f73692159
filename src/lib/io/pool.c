// SPDX-License-Identifier: MIT
/*
 * pool.c - the bounce pool: fixed-size slots of always-shared memory.
 *
 * Model: the pool is plain anonymous host memory, not a region of the
 * guest's memory kept shared. In a confidential VM the swiotlb must live in
 * guest memory because the guest does the copying; here the host copies
 * (through the KVM view), so the device side only needs memory it can always
 * reach and pin. Anonymous memory gives that without taking guest-physical
 * space from the guest, without a state to keep right and without mappings
 * drawn from the host view's vm.max_map_count budget; it is prefaulted and
 * THP-advised so a copy never waits on a fault, excluded from core dumps
 * (MADV_DONTDUMP: guest data passes through it) and wiped in a child after
 * fork (MADV_WIPEONFORK).
 *
 * Deadlock freedom: a request holds at most one slot and takes it before
 * anything else it could wait for, so exhaustion can delay a request but
 * never close a cycle. Waiters sleep on a condition variable; with
 * GMEM_IO_NOWAIT a request is refused with -ENOBUFS instead. Slots come
 * from a stack, so the most recently used (cache-warm) slot goes out first.
 *
 * Lock rule: p->lock guards the free stack and the counters; no other lock
 * is taken under it.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "io.h"

int gm_io_pool_init(struct gm_io_pool *p, uint64_t size, uint32_t slot_size)
{
	int ret;

	p->size = size;
	p->slot_size = slot_size;
	p->nslots = (uint32_t)(size / slot_size);
	p->stack = calloc(p->nslots, sizeof(*p->stack));
	if (!p->stack)
		return -ENOMEM;
	p->base = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p->base == MAP_FAILED) {
		ret = -errno;
		goto err_stack;
	}
	/* Advice only: a kernel without one of them still has a working pool. */
	madvise(p->base, size, MADV_HUGEPAGE);
	madvise(p->base, size, MADV_DONTDUMP);
	madvise(p->base, size, MADV_WIPEONFORK);
	for (uint32_t i = 0; i < p->nslots; i++)
		p->stack[i] = p->nslots - 1 - i;
	p->nfree = p->nslots;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->freed, NULL);
	return 0;

err_stack:
	free(p->stack);
	return ret;
}

void gm_io_pool_fini(struct gm_io_pool *p)
{
	pthread_cond_destroy(&p->freed);
	pthread_mutex_destroy(&p->lock);
	munmap(p->base, p->size);
	free(p->stack);
}

void *gm_io_pool_get(struct gm_io_pool *p, bool nowait, int *err)
{
	void *slot;

	pthread_mutex_lock(&p->lock);
	if (!p->nfree) {
		if (nowait) {
			p->nobufs++;
			pthread_mutex_unlock(&p->lock);
			*err = -ENOBUFS;
			return NULL;
		}
		p->waits++;
		while (!p->nfree)
			pthread_cond_wait(&p->freed, &p->lock);
	}
	slot = p->base + (uint64_t)p->stack[--p->nfree] * p->slot_size;
	pthread_mutex_unlock(&p->lock);
	return slot;
}

void gm_io_pool_put(struct gm_io_pool *p, void *slot)
{
	uint32_t i = (uint32_t)(((uint8_t *)slot - p->base) / p->slot_size);

	pthread_mutex_lock(&p->lock);
	p->stack[p->nfree++] = i;
	pthread_mutex_unlock(&p->lock);
	pthread_cond_signal(&p->freed);
}

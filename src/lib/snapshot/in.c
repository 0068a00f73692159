// SPDX-License-Identifier: MIT
/*
 * in.c - a snapshot file read front to back with direct I/O, into a ring.
 *
 * Model: an eager restore reads the whole file once, in order. Reading it
 * through the page cache puts every byte in fresh page-cache pages first,
 * to be copied out once and never used again. Read with direct I/O, the
 * file lands in a ring of GM_IN_RING bytes instead, in GM_IN_BLOCK reads
 * by a thread of its own that stays as far ahead as the ring allows; the
 * parser takes chunk headers from the ring and the loaders copy or
 * decompress payloads straight out of it. The ring is followed by a spill
 * area that repeats its first GM_IN_SPILL bytes (the reader of the block
 * there copies it), so any request, a chunk header or payload, is
 * contiguous in memory whatever the wrap, and a chunk is used where it
 * lies.
 *
 * The ring is anonymous memory in transparent huge pages where the system
 * allows them. It was a memfd mapped twice in a row, which needs no copy
 * at the wrap, but its 4096 small shmem pages were faulted in and freed
 * on every restore (shmem gets no huge pages here). With eight huge pages
 * instead, restoring 8 GiB at 1 % (an 85 MiB file) walked the file in
 * 55-58 ms against 73-75, and freed the ring in 0.4 ms against 4; the
 * spill costs a copy of 1 MiB per 16 MiB read.
 *
 * On this machine (ext4 on virtio-blk), a 2 GiB snapshot read cold came at
 * 0.7-1.4 GB/s through the page cache in 8 MiB reads and at 1.0-2.5 GB/s
 * in 1 MiB direct reads (docs/snapshot-perf.md).
 *
 * Room: the ring holds file bytes [lo, lo + GM_IN_RING), lo being the
 * lower of what the parser and the loaders still need (walk_lo, jobs_lo).
 * The reading thread waits for room, the parser for bytes; neither waits
 * for the other while holding anything the other needs, since the loaders
 * never wait on the ring.
 *
 * Wake-ups are counted: a loader finishing a 64 KiB chunk moves jobs_lo,
 * and waking every reader for each (thousands a second) cost a restore of
 * 256 MiB a third of its time. A waiter is woken only when what it waits
 * for has come: a whole block of room, or bytes or an error.
 *
 * Lock rule: in->mu guards everything below thread[]. Callers may
 * hold their own locks when calling gm_in_jobs_need (restore.c holds its
 * loaders' lock) but never take them while holding in->mu.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sys.h"
#include "in.h"
#include "out.h"

uint64_t gm_in_min_file = GM_IN_MIN_FILE;
unsigned long gm_in_opened;

static uint64_t gm_in_lo(const struct gm_in *in)
{
	return in->walk_lo < in->jobs_lo ? in->walk_lo : in->jobs_lo;
}

/* Is there room in the ring for the next block to be read? Nobody needs
 * what its slot holds, and the read that filled the slot has finished
 * (hi is past it): a consumer that jumps ahead moves lo past reads still
 * in flight, and two preads into one slot would mix their bytes. */
static bool gm_in_room(const struct gm_in *in)
{
	uint64_t lo = gm_in_lo(in) < in->hi ? gm_in_lo(in) : in->hi;

	return in->next + GM_IN_BLOCK <= lo + GM_IN_RING;
}

/* Set *@which (walk_lo or jobs_lo) to @to, and wake a reader waiting for
 * room if that made room for the next block. Called with in->mu held. */
static void gm_in_move_lo(struct gm_in *in, uint64_t *which, uint64_t to)
{
	*which = to;
	if (in->room_waiting && gm_in_room(in))
		pthread_cond_signal(&in->room);
}

/* Repeat what a read of @n bytes at file offset @at put at the ring's
 * start in the spill area after it, where a request that wraps finds it.
 * It stays as long as the original does: both go when the ring's start is
 * read again. */
static void gm_in_spill(struct gm_in *in, uint64_t at, ssize_t n)
{
	size_t s = at % GM_IN_RING;

	if (n > 0 && s < GM_IN_SPILL)
		memcpy(in->ring + GM_IN_RING + s, in->ring + s,
		       (size_t)n < GM_IN_SPILL - s ? (size_t)n : GM_IN_SPILL - s);
}

/* Read the next block; called with in->mu held, dropped meanwhile. Blocks
 * may complete out of order: hi only covers the unbroken run from 0. */
static int gm_in_read_block(struct gm_in *in)
{
	uint64_t at = in->next, want = in->size - at < GM_IN_BLOCK ? in->size - at : GM_IN_BLOCK;
	ssize_t n;

	in->next += GM_IN_BLOCK;
	/* Room for one more: another reader may start it. */
	if (in->room_waiting && gm_in_room(in))
		pthread_cond_signal(&in->room);
	pthread_mutex_unlock(&in->mu);
	do
		n = pread(in->fd, in->ring + at % GM_IN_RING, GM_IN_BLOCK, (off_t)at);
	while (n < 0 && errno == EINTR);
	gm_in_spill(in, at, n);
	pthread_mutex_lock(&in->mu);
	if (n < 0)
		return -errno;
	/* A short read is a file that changed under the restore. */
	if ((uint64_t)n < want)
		return -EIO;
	if (in->data_waiting)
		pthread_cond_signal(&in->data);
	in->slot_done[at / GM_IN_BLOCK % GM_IN_SLOTS] = 1 + at / GM_IN_BLOCK;
	while (in->hi < in->size &&
	       in->slot_done[in->hi / GM_IN_BLOCK % GM_IN_SLOTS] == 1 + in->hi / GM_IN_BLOCK) {
		uint64_t left = in->size - in->hi;

		in->hi += left < GM_IN_BLOCK ? left : GM_IN_BLOCK;
	}
	/* hi bounds the room too (gm_in_room). */
	if (in->room_waiting && gm_in_room(in))
		pthread_cond_signal(&in->room);
	return 0;
}

static void *gm_in_main(void *arg)
{
	struct gm_in *in = arg;

	pthread_mutex_lock(&in->mu);
	while (!in->stop && !in->err && in->next < in->size) {
		int ret;

		if (!gm_in_room(in)) {
			in->room_waiting++;
			pthread_cond_wait(&in->room, &in->mu);
			in->room_waiting--;
			continue;
		}
		ret = gm_in_read_block(in);
		if (ret && !in->err) {
			in->err = ret;
			pthread_cond_signal(&in->data);
		}
	}
	pthread_mutex_unlock(&in->mu);
	gm_sys_stack_wipe();      /* page data passed through this stack */
	return NULL;
}

/* The ring and its spill area, the ring aligned for huge pages. */
static int gm_in_map(struct gm_in *in)
{
	const size_t huge = 2u << 20;
	uintptr_t at;

	in->map_len = GM_IN_RING + GM_IN_SPILL + huge;
	in->map = mmap(NULL, in->map_len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (in->map == MAP_FAILED) {
		in->map = NULL;
		return -errno;
	}
	/* The ring holds the file's page data: no core dump, no child. */
	if (gm_sys_guard(in->map, in->map_len, true)) {
		int err = -errno;

		munmap(in->map, in->map_len);
		in->map = NULL;
		return err;
	}
	at = ((uintptr_t)in->map + huge - 1) & ~(uintptr_t)(huge - 1);
	in->ring = (uint8_t *)at;
	/* Advisory: without huge pages the ring works, at more faults. */
	madvise(in->ring, GM_IN_RING, MADV_HUGEPAGE);
	return 0;
}

/* A second descriptor of the file @fd is open on, for direct I/O (a file
 * description's O_DIRECT is shared by all its users, and the reader's own
 * reads stay buffered). Through /proc/self/fd, not the path: the file
 * there may have been replaced since it was checked. */
static int gm_in_reopen(int fd)
{
	struct stat a, b;
	char proc[32];
	int dfd;

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	dfd = open(proc, O_RDONLY | O_DIRECT | O_CLOEXEC | O_NONBLOCK);
	if (dfd < 0)
		return -EOPNOTSUPP;
	if (fstat(fd, &a) || fstat(dfd, &b) || a.st_dev != b.st_dev || a.st_ino != b.st_ino) {
		close(dfd);
		return -EOPNOTSUPP;
	}
	return dfd;
}

int gm_in_open(struct gm_in *in, int fd, uint64_t size)
{
	int ret;

	*in = (struct gm_in){ .fd = -1, .size = size, .jobs_lo = UINT64_MAX };
	pthread_mutex_init(&in->mu, NULL);
	pthread_cond_init(&in->room, NULL);
	pthread_cond_init(&in->data, NULL);
	in->fd = gm_in_reopen(fd);
	if (in->fd < 0 || !gm_out_direct_ok(in->fd)) {
		ret = -EOPNOTSUPP;
		goto fail;
	}
	ret = gm_in_map(in);
	if (ret)
		goto fail;
	/* One small read here: a file system that takes O_DIRECT but fails
	 * the reads says so now, and the restore reads buffered instead. */
	if (pread(in->fd, in->ring, 4096, 0) < 0) {
		ret = -errno;
		goto fail;
	}
	for (unsigned i = 0; i < GM_IN_THREADS; i++) {
		ret = -pthread_create(&in->thread[i], NULL, gm_in_main, in);
		if (ret && !in->nthreads)
			goto fail;
		if (ret)
			break;  /* fewer reads in flight: slower, not wrong */
		in->nthreads++;
	}
	__atomic_fetch_add(&gm_in_opened, 1, __ATOMIC_RELAXED);
	return 0;

fail:
	gm_in_close(in);
	return ret;
}

void gm_in_close(struct gm_in *in)
{
	if (in->nthreads) {
		pthread_mutex_lock(&in->mu);
		in->stop = true;
		pthread_cond_broadcast(&in->room);
		pthread_mutex_unlock(&in->mu);
		for (unsigned i = 0; i < in->nthreads; i++)
			pthread_join(in->thread[i], NULL);
		in->nthreads = 0;
	}
	if (in->map)
		munmap(in->map, in->map_len);
	if (in->fd >= 0)
		close(in->fd);
	in->map = in->ring = NULL;
	in->fd = -1;
	pthread_cond_destroy(&in->room);
	pthread_cond_destroy(&in->data);
	pthread_mutex_destroy(&in->mu);
}

const uint8_t *gm_in_get(struct gm_in *in, uint64_t off, size_t n, int *err)
{
	const uint8_t *p = NULL;

	assert(n <= GM_IN_SPILL);
	pthread_mutex_lock(&in->mu);
	if (off > in->walk_lo)
		gm_in_move_lo(in, &in->walk_lo, off);
	in->data_waiting = true;
	while (in->hi < off + n && in->hi < in->size && !in->err)
		pthread_cond_wait(&in->data, &in->mu);
	in->data_waiting = false;
	if (in->hi >= off + n)
		p = in->ring + off % GM_IN_RING;
	else
		*err = in->err ? in->err : -EIO;
	pthread_mutex_unlock(&in->mu);
	return p;
}

void gm_in_jobs_need(struct gm_in *in, uint64_t lo)
{
	pthread_mutex_lock(&in->mu);
	if (lo != in->jobs_lo)
		gm_in_move_lo(in, &in->jobs_lo, lo);
	pthread_mutex_unlock(&in->mu);
}

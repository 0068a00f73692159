// SPDX-License-Identifier: MIT
/*
 * test_stress_io.c - the bounce pool under contention.
 *
 * Six device threads share a pool of three slots (so most slot requests
 * find every per-CPU free list empty), half of them with GMEM_IO_NOWAIT,
 * while a seventh thread recalibrates and reads the statistics. Each
 * device thread owns a 64 KiB stretch of private guest memory and, per
 * round, device-reads a pattern of its own into a random piece of it
 * (target -> guest) and device-writes the piece back out (guest ->
 * target), through the bounce path or auto, from a callback target that
 * yields mid-copy (so slots are held across a reschedule) or a memory one.
 *
 * Checked: every byte written back is the thread's pattern for that round
 * (a slot handed to two requests at once would mix patterns); a request
 * returns its length, or -ENOBUFS only with GMEM_IO_NOWAIT; at the end
 * the pool has every slot free, and its refusal count is the number of
 * -ENOBUFS the threads saw.
 *
 * Must be clean under ThreadSanitizer (it runs in gmem-stress too).
 *
 * Suite: stress_io.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "helpers.h"

#define SI_THREADS 6
#define SI_ROUNDS  300
#define SI_STRETCH (64u << 10)
#define SI_SLOT    (16u << 10)

struct si_dev {
	uint8_t fill;           /* the byte a device read delivers             */
	uint8_t out[SI_STRETCH];        /* what a device write delivered       */
};

struct si_worker {
	struct gmem_io *io;
	unsigned id;
	bool nowait;
	struct si_dev dev;
	long nobufs;
	char fail[160];         /* first failure, "" if none                   */
};

static atomic_bool si_stop;

/* A device: reads fill the guest with dev->fill, writes land in dev->out.
 * It yields between segments so the slot is held across a reschedule. */
static int64_t si_device(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			 int iovcnt, uint64_t off)
{
	struct si_dev *d = opaque;
	int64_t moved = 0;

	for (int i = 0; i < iovcnt; i++) {
		if (dir == GMEM_IO_READ)
			memset(iov[i].iov_base, d->fill, iov[i].iov_len);
		else
			memcpy(d->out + off + (uint64_t)moved, iov[i].iov_base, iov[i].iov_len);
		moved += (int64_t)iov[i].iov_len;
		sched_yield();
	}
	return moved;
}

static uint64_t si_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* One request; false (and w->fail set) on an outcome the API forbids. */
static bool si_rw(struct si_worker *w, struct gmem_io_req *q, uint64_t len, bool *refused)
{
	int64_t got = gmem_io_rw(w->io, q);

	*refused = false;
	if (got == -ENOBUFS && w->nowait) {
		w->nobufs++;
		*refused = true;
		return true;
	}
	if (got == (int64_t)len)
		return true;
	snprintf(w->fail, sizeof(w->fail), "thread %u: %s of %llu bytes returned %lld", w->id,
		 q->dir == GMEM_IO_READ ? "read" : "write", (unsigned long long)len,
		 (long long)got);
	return false;
}

static bool si_round(struct si_worker *w, uint64_t *rng, unsigned round)
{
	uint64_t off = si_rand(rng) % (SI_STRETCH / 2), len = 1 + si_rand(rng) % (SI_STRETCH / 2);
	struct gmem_io_seg seg = { .gpa = (uint64_t)w->id * SI_STRETCH + off, .len = len };
	struct gmem_io_target cb = { .kind = GMEM_IO_CALLBACK, .fn = si_device,
				     .opaque = &w->dev };
	struct gmem_io_target mem = { .kind = GMEM_IO_MEMORY, .mem = w->dev.out,
				      .mem_len = SI_STRETCH };
	struct gmem_io_req q = {
		.path = round % 3 ? GMEM_IO_BOUNCE : GMEM_IO_AUTO,
		.flags = w->nowait ? GMEM_IO_NOWAIT : 0,
		.nsegs = 1, .segs = &seg, .target = &cb,
	};
	bool refused;

	w->dev.fill = (uint8_t)(w->id * 40 + round % 40 + 1);
	q.dir = GMEM_IO_READ;
	do {
		if (!si_rw(w, &q, len, &refused))
			return false;
	} while (refused);
	memset(w->dev.out, 0, len);
	q.dir = GMEM_IO_WRITE;
	q.target = round & 1 ? &mem : &cb;
	do {
		if (!si_rw(w, &q, len, &refused))
			return false;
	} while (refused);
	for (uint64_t i = 0; i < len; i++)
		if (w->dev.out[i] != w->dev.fill) {
			snprintf(w->fail, sizeof(w->fail), "thread %u round %u: byte %llu of %llu "
				 "written back is %#x, want %#x", w->id, round,
				 (unsigned long long)i, (unsigned long long)len, w->dev.out[i],
				 w->dev.fill);
			return false;
		}
	return true;
}

static void *si_worker_main(void *arg)
{
	struct si_worker *w = arg;
	uint64_t rng = 0x9e3779b97f4a7c15ull * (w->id + 1);

	for (unsigned r = 0; r < SI_ROUNDS && si_round(w, &rng, r); r++)
		;
	return NULL;
}

/* Recalibrate and read the counters while the devices run. */
static void *si_meddler_main(void *arg)
{
	struct gmem_io *io = arg;
	struct gmem_io_stats st;

	while (!atomic_load(&si_stop)) {
		gmem_io_calibrate(io);
		gmem_io_stats(io, &st);
	}
	return NULL;
}

TH_TEST(stress_io, pool_contention, .timeout = 120)
{
	struct gmem_io_config cfg = { .pool_size = 3 * SI_SLOT, .slot_size = SI_SLOT };
	static struct si_worker w[SI_THREADS];
	struct gmem *g = th_open(backend, 2 * TH_MIB, 0);
	pthread_t t[SI_THREADS], meddler;
	struct gmem_io_stats st;
	struct gmem_io *io;
	long nobufs = 0;
	int ret;

	ret = gmem_io_create(g, &cfg, &io);
	cr_assert_eq(ret, 0, "gmem_io_create: %d (%s)", ret, gmem_last_error());
	atomic_store(&si_stop, false);
	for (unsigned i = 0; i < SI_THREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i] = (struct si_worker){ .io = io, .id = i, .nowait = i & 1 };
		cr_assert_eq(pthread_create(&t[i], NULL, si_worker_main, &w[i]), 0);
	}
	cr_assert_eq(pthread_create(&meddler, NULL, si_meddler_main, io), 0);
	for (unsigned i = 0; i < SI_THREADS; i++)
		pthread_join(t[i], NULL);
	atomic_store(&si_stop, true);
	pthread_join(meddler, NULL);
	for (unsigned i = 0; i < SI_THREADS; i++) {
		cr_assert(!w[i].fail[0], "%s", w[i].fail);
		nobufs += w[i].nobufs;
	}
	cr_assert_eq(gmem_io_stats(io, &st), 0);
	TH_EQ(st.pool_free, st.pool_slots);
	TH_EQ(st.pool_slots, 3);
	TH_EQ(st.pool_nobufs, (uint64_t)nobufs);
	TH_EQ(th_stats(g).pinned_pages, 0);
	gmem_io_destroy(io);
	gmem_close(g);
}

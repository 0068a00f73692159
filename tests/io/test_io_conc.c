// SPDX-License-Identifier: MIT
/*
 * test_io_conc.c - suite "io": many requests at once.
 *
 * Pool exhaustion: a pool of two slots, eight threads of bounce requests
 * against a slow device (each call sleeps while it holds its slot). Waiting
 * requests all complete with the right bytes; with GMEM_IO_NOWAIT some are
 * refused with -ENOBUFS before moving a byte, the others complete, and the
 * pool is whole afterwards. Overlap: threads run in-place requests over
 * overlapping pages (from one context and from two on the same memory); the
 * device checks, in the middle of every request, that all of its whole
 * pages are shared - a request that undid another's sharing would show up
 * as a private page there. Afterwards every page is as before, the VMM's
 * shared pages included. Last, a page the VMM keeps mapped when the last
 * request leaves: its restore is deferred, never forgotten.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io_helpers.h"

#define NTHREADS 8
#define NREQ     40

static void nap_us(long us)
{
	struct timespec ts = { 0, us * 1000 };

	nanosleep(&ts, NULL);
}

/* A memory device that sleeps in every call. */
struct slow_dev {
	uint8_t *mem;
	uint64_t len;
	long nap_us;
};

static int64_t slow_fn(void *opaque, enum gmem_io_dir dir, const struct iovec *iov, int cnt,
		       uint64_t off)
{
	struct slow_dev *d = opaque;
	int64_t n = 0;

	nap_us(d->nap_us);
	for (int i = 0; i < cnt; i++) {
		if (dir == GMEM_IO_READ)
			memcpy(iov[i].iov_base, d->mem + off, iov[i].iov_len);
		else
			memcpy(d->mem + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
		n += (int64_t)iov[i].iov_len;
	}
	return n;
}

struct worker {
	struct gmem *g;
	struct gmem_io *io;
	unsigned id, flags;
	unsigned ok, nobufs, bad;
	int other;
};

#define WLEN 10000u

static void *pool_worker(void *arg)
{
	struct worker *w = arg;
	uint8_t dev[WLEN], back[WLEN];
	struct slow_dev d = { dev, WLEN, 300 };
	struct gmem_io_target t = { .kind = GMEM_IO_CALLBACK, .fn = slow_fn, .opaque = &d };
	struct gmem_io_seg s = { (uint64_t)w->id * 64 * TH_PAGE + 123, WLEN };

	for (unsigned r = 0; r < NREQ; r++) {
		struct gmem_io_req q = { .dir = GMEM_IO_READ, .path = GMEM_IO_BOUNCE,
					 .flags = w->flags, .nsegs = 1, .segs = &s,
					 .target = &t };
		int64_t ret;

		io_rand_bytes(dev, WLEN, w->id * 1000 + r);
		ret = gmem_io_rw(w->io, &q);
		if (ret == -ENOBUFS && q.done == 0) {
			w->nobufs++;
			continue;
		}
		if (ret != WLEN) {
			w->other = (int)ret;
			w->bad++;
			continue;
		}
		io_guest_read(w->g, s.gpa, back, WLEN);
		if (memcmp(back, dev, WLEN))
			w->bad++;
		else
			w->ok++;
	}
	return NULL;
}

static void pool_exhaustion(enum gmem_backend backend, unsigned flags)
{
	struct gmem *g = th_open(backend, IO_MEM, 0);
	struct gmem_io *io = io_ctx(g, 2 * 4096, 4096, 0);
	struct io_picture before = io_picture(g);
	struct worker w[NTHREADS];
	pthread_t th[NTHREADS];
	unsigned ok = 0, nobufs = 0;
	struct gmem_io_stats st;

	for (unsigned i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .g = g, .io = io, .id = i, .flags = flags };
		pthread_create(&th[i], NULL, pool_worker, &w[i]);
	}
	for (unsigned i = 0; i < NTHREADS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].bad, 0, "thread %u: %u bad requests (last error %d)", i,
			     w[i].bad, w[i].other);
		ok += w[i].ok;
		nobufs += w[i].nobufs;
	}
	TH_EQ(gmem_io_stats(io, &st), 0);
	TH_EQ(st.pool_free, st.pool_slots);
	TH_EQ(st.pool_nobufs, nobufs);
	if (flags & GMEM_IO_NOWAIT) {
		cr_assert_gt(nobufs, 0, "no request was refused with 2 slots for %d threads",
			     NTHREADS);
		cr_assert_gt(ok, 0);
	} else {
		TH_EQ(ok, NTHREADS * NREQ);
		cr_assert_gt(st.pool_waits, 0, "no request waited for a slot");
	}
	io_expect_picture("after the exhaustion run", &before, g);
	io_picture_free(&before);
	gmem_io_destroy(io);
	gmem_close(g);
}

TH_TEST(io, pool_exhaustion_wait, .timeout = 60) { pool_exhaustion(backend, 0); }
TH_TEST(io, pool_exhaustion_nowait, .timeout = 60) { pool_exhaustion(backend, GMEM_IO_NOWAIT); }

/* ---- overlapping in-place requests --------------------------------------- */

struct watch_dev {
	struct gmem *g;
	const struct gmem_io_seg *seg;
	unsigned unshared;      /* whole pages found private during the I/O */
	uint8_t buf[64 * 4096];
};

static int64_t watch_fn(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			int cnt, uint64_t off)
{
	struct watch_dev *d = opaque;
	uint64_t lo = (d->seg->gpa + TH_PAGE - 1) & ~(TH_PAGE - 1);
	uint64_t hi = (d->seg->gpa + d->seg->len) & ~(TH_PAGE - 1);
	int64_t n = 0;

	(void)off;
	for (uint64_t a = lo; a < hi; a += TH_PAGE)
		d->unshared += gmem_state(d->g, a) != GMEM_SHARED;
	sched_yield();
	for (int i = 0; i < cnt; i++) {
		if (dir == GMEM_IO_READ)
			memset(iov[i].iov_base, 0x11, iov[i].iov_len);
		else
			memcpy(d->buf, iov[i].iov_base, iov[i].iov_len);
		n += (int64_t)iov[i].iov_len;
	}
	for (uint64_t a = lo; a < hi; a += TH_PAGE)
		d->unshared += gmem_state(d->g, a) != GMEM_SHARED;
	return n;
}

struct overlap_worker {
	struct gmem *g;
	struct gmem_io *io;
	unsigned id;
	unsigned unshared, failed;
};

static void *overlap_worker(void *arg)
{
	struct overlap_worker *w = arg;
	struct watch_dev *d = calloc(1, sizeof(*d));
	struct gmem_io_seg s;
	struct gmem_io_target t = { .kind = GMEM_IO_CALLBACK, .fn = watch_fn, .opaque = d };
	uint64_t x = w->id + 1;

	d->g = w->g;
	d->seg = &s;
	for (unsigned r = 0; r < 300; r++) {
		struct gmem_io_req q = { .dir = r & 1, .path = GMEM_IO_INPLACE, .nsegs = 1,
					 .segs = &s, .target = &t };

		x = x * 6364136223846793005ull + 1442695040888963407ull;
		/* 1..40 pages somewhere in the first 48: overlaps are the rule. */
		s.gpa = ((x >> 33) % 48) * TH_PAGE + ((x >> 20) & 1 ? 100 : 0);
		s.len = (1 + (x >> 40) % 40) * TH_PAGE;
		if (gmem_io_rw(w->io, &q) != (int64_t)s.len)
			w->failed++;
	}
	w->unshared = d->unshared;
	free(d);
	return NULL;
}

static void overlap(enum gmem_backend backend, unsigned nctx)
{
	struct gmem *g = th_open(backend, IO_MEM, 0);
	struct gmem_io *io[2];
	struct overlap_worker w[4];
	pthread_t th[4];
	struct io_picture before;
	struct gmem_io_stats st;

	/* The VMM's own shared pages in the middle of the busy area. */
	TH_EQ(gmem_convert(g, 20 * TH_PAGE, 3 * TH_PAGE, GMEM_SHARED, NULL), 0);
	before = io_picture(g);
	for (unsigned i = 0; i < nctx; i++)
		io[i] = io_ctx(g, 0, 0, 0);
	for (unsigned i = 0; i < 4; i++) {
		w[i] = (struct overlap_worker){ .g = g, .io = io[i % nctx], .id = i };
		pthread_create(&th[i], NULL, overlap_worker, &w[i]);
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].unshared, 0,
			     "thread %u: %u times a page of its in-flight request was private",
			     i, w[i].unshared);
		TH_EQ(w[i].failed, 0);
	}
	TH_EQ(gmem_io_stats(io[0], &st), 0);
	TH_EQ(st.shared_now, 0);
	TH_EQ(st.deferred, 0);
	io_expect_picture("after overlapping in-place requests", &before, g);
	io_picture_free(&before);
	for (unsigned i = 0; i < nctx; i++)
		gmem_io_destroy(io[i]);
	gmem_close(g);
}

TH_TEST(io, inplace_overlap_one_context, .timeout = 60) { overlap(backend, 1); }
TH_TEST(io, inplace_overlap_two_contexts, .timeout = 60) { overlap(backend, 2); }

/* ---- a restore that has to wait ------------------------------------------ */

struct keep_dev {
	struct gmem *g;
	uint64_t gpa;
	void *win;
};

static int64_t keep_fn(void *opaque, enum gmem_io_dir dir, const struct iovec *iov, int cnt,
		       uint64_t off)
{
	struct keep_dev *d = opaque;
	int64_t n = 0;

	(void)dir, (void)off;
	if (!d->win)
		d->win = gmem_kmap(d->g, d->gpa);
	for (int i = 0; i < cnt; i++)
		n += (int64_t)iov[i].iov_len;
	return n;
}

TH_TEST(io, restore_deferred_while_mapped)
{
	struct gmem *g = th_open(backend, IO_MEM, 0);
	struct gmem_io *io = io_ctx(g, 0, 0, 0);
	struct io_picture before = io_picture(g);
	struct keep_dev d = { .g = g, .gpa = 3 * TH_PAGE };
	struct gmem_io_target t = { .kind = GMEM_IO_CALLBACK, .fn = keep_fn, .opaque = &d };
	struct gmem_io_seg s = { 0, 8 * TH_PAGE };
	struct gmem_io_req q = { .path = GMEM_IO_INPLACE, .nsegs = 1, .segs = &s, .target = &t };
	struct gmem_io_stats st;

	TH_EQ(gmem_io_rw(io, &q), 8 * TH_PAGE);
	cr_assert_not_null(d.win);
	TH_EQ(gmem_io_stats(io, &st), 0);
	TH_EQ(st.deferred, 1);
	TH_EQ(st.restore_retries, 0);
	TH_EQ(gmem_state(g, d.gpa), GMEM_SHARED);
	TH_EQ(gmem_state(g, d.gpa + TH_PAGE), GMEM_PRIVATE);
	/* The kunmap that frees the page finishes the job, at once. */
	gmem_kunmap(g, d.win);
	TH_EQ(gmem_io_stats(io, &st), 0);
	TH_EQ(st.deferred, 0);
	TH_EQ(st.restore_retries, 1);
	io_expect_picture("after the deferred restore", &before, g);
	io_picture_free(&before);
	gmem_io_destroy(io);
	gmem_close(g);
}

/* ---- auto ----------------------------------------------------------------- */

TH_TEST(io, auto_calibrated, .timeout = 60)
{
	struct gmem *g = th_open(backend, IO_MEM, 0);
	struct gmem_io *io;
	struct gmem_io_stats st;
	uint8_t buf[65536];
	struct gmem_io_target t = { .kind = GMEM_IO_MEMORY, .mem = buf, .mem_len = sizeof(buf) };
	struct gmem_io_seg s = { 0, sizeof(buf) };
	struct gmem_io_req q = { .nsegs = 1, .segs = &s, .target = &t };
	int p;

	TH_EQ(gmem_io_create(g, NULL, &io), 0);
	TH_EQ(gmem_io_stats(io, &st), 0);
	TH_EQ(st.calibrations, 1);
	cr_log_info("calibration took %.1f ms", st.calib_ns / 1e6);
	p = gmem_io_choose(io, &q);
	cr_assert(p == GMEM_IO_INPLACE || p == GMEM_IO_BOUNCE || p == GMEM_IO_KMAP,
		  "choose = %d", p);
	/* All shared already: zero-copy with no conversion. */
	TH_EQ(gmem_convert(g, 0, sizeof(buf), GMEM_SHARED, NULL), 0);
	TH_EQ(gmem_io_choose(io, &q), GMEM_IO_INPLACE);
	TH_EQ(gmem_io_rw(io, &q), sizeof(buf));
	TH_EQ(q.used, GMEM_IO_INPLACE);
	TH_EQ(gmem_state(g, 0), GMEM_SHARED);
	TH_EQ(gmem_io_calibrate(io), 0);
	TH_EQ(gmem_io_stats(io, &st), 0);
	TH_EQ(st.calibrations, 2);
	TH_EQ(st.requests[GMEM_IO_INPLACE], 1);
	gmem_io_destroy(io);
	gmem_close(g);
}

/* Segments of one request shape: @n segments of @len bytes starting at
 * @first, @stride apart. */
static unsigned choose_shape(struct gmem_io_seg *s, unsigned n, uint64_t first, uint64_t len,
			     uint64_t stride)
{
	for (unsigned i = 0; i < n; i++)
		s[i] = (struct gmem_io_seg){ first + i * stride, len };
	return n;
}

/* Every size class up to @max (past the decision table's last: 64 MiB),
 * alignment and fragmentation gets @want, or any fixed path when 0. */
static void choose_all(struct gmem_io *io, int want, uint64_t max)
{
	static struct gmem_io_seg s[256];
	struct gmem_io_target t = { .kind = GMEM_IO_MEMORY, .mem = s, .mem_len = 1 };
	struct gmem_io_req q = { .dir = GMEM_IO_WRITE, .segs = s, .target = &t };
	uint64_t pg = GMEM_PAGE_SIZE;

	for (uint64_t len = 1; len <= max; len += len / 3 + 1) {
		for (unsigned shape = 0; shape < 4; shape++) {
			int p;

			if (shape == 0)
				q.nsegs = choose_shape(s, 1, 0, len, 0);
			else if (shape == 1)
				q.nsegs = choose_shape(s, 1, 100, len, 0);
			else if (len <= 256 * pg)
				q.nsegs = choose_shape(s, (unsigned)((len + pg - 1) / pg), 0,
						       pg, shape == 2 ? 2 * pg : pg);
			else
				q.nsegs = choose_shape(s, 2, 0, len / 2, len / 2 + 3 * pg);
			p = gmem_io_choose(io, &q);
			if (want)
				cr_assert(p == want, "len %llu shape %u: %d, want %d",
					  (unsigned long long)len, shape, p, want);
			else
				cr_assert(p == GMEM_IO_INPLACE || p == GMEM_IO_BOUNCE ||
					  p == GMEM_IO_KMAP, "len %llu shape %u: %d",
					  (unsigned long long)len, shape, p);
		}
	}
}

/* Bounce everywhere from the default table, a fixed path from a measured
 * one, and in place once all the pages are shared (auto looks at the first
 * 16 MiB of pages for that). */
TH_TEST(io, auto_every_shape, .timeout = 60)
{
	struct gmem *g = th_open(backend, 256 * TH_MIB, 0);
	struct gmem_io *plain = io_ctx(g, 0, 0, GMEM_IO_CTX_NO_CALIBRATE), *io;
	struct gmem_info info;

	TH_EQ(gmem_info(g, &info), 0);
	TH_EQ(gmem_io_create(g, NULL, &io), 0);
	TH_EQ(gmem_convert(g, 0, 256 * TH_MIB, GMEM_PRIVATE, NULL), 0);
	/* Where the kernel converts in place, only in place can reach them. */
	choose_all(plain, info.inplace ? GMEM_IO_INPLACE : GMEM_IO_BOUNCE, 96 * TH_MIB);
	choose_all(io, 0, 96 * TH_MIB);
	TH_EQ(gmem_convert(g, 0, 256 * TH_MIB, GMEM_SHARED, NULL), 0);
	choose_all(plain, GMEM_IO_INPLACE, 15 * TH_MIB);
	choose_all(io, GMEM_IO_INPLACE, 15 * TH_MIB);
	gmem_io_destroy(plain);
	gmem_io_destroy(io);
	gmem_close(g);
}

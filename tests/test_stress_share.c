// SPDX-License-Identifier: MIT
/*
 * test_stress_share.c - in-place I/O racing the VMM's own conversions.
 *
 * The rule under test (io/shares.c): once all I/O on a range has finished,
 * every page is in the state of the last successful gmem_convert() on it,
 * whatever the interleaving. Two device threads run in-place requests over
 * random pieces of a 16-page range, from a callback target that yields
 * mid-request, while a VMM thread converts random granules of the same
 * range to random states and records the state of every conversion that
 * succeeded (a refused one, -EAGAIN over a page the I/O holds, changes
 * nothing). After the devices stop, each page must be in its recorded
 * state, with no pin left and nothing deferred.
 *
 * Before shares.c moved under g->lock, the state noted at the first
 * reference was read apart from the conversion that followed it, and a
 * VMM conversion in between was undone by the return to private (or a
 * page the VMM made private stayed shared for good).
 *
 * Must be clean under ThreadSanitizer (it runs in gmem-stress too).
 *
 * Suite: stress_share.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "helpers.h"

#define SS_PAGES   16u
#define SS_DEVICES 2u
#define SS_CONVERTS 6000u

struct ss_dev {
	struct gmem_io *io;
	uint64_t rng;
	long requests;
	char fail[160];
};

static atomic_bool ss_stop;

static uint64_t ss_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* A device write: reads every byte of the guest buffer, yielding between
 * segments so the request holds its pages across a reschedule. (Device
 * reads would have two devices store into the same guest bytes at once, a
 * race of the test's own, not the library's.) */
static int64_t ss_device(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			 int iovcnt, uint64_t off)
{
	volatile uint8_t sum = 0;
	int64_t n = 0;

	(void)opaque, (void)off, (void)dir;
	for (int i = 0; i < iovcnt; i++) {
		for (size_t k = 0; k < iov[i].iov_len; k += 512)
			sum += ((const uint8_t *)iov[i].iov_base)[k];
		n += (int64_t)iov[i].iov_len;
		sched_yield();
	}
	return n;
}

static void *ss_device_main(void *arg)
{
	struct ss_dev *d = arg;
	struct gmem_io_target t = { .kind = GMEM_IO_CALLBACK, .fn = ss_device };

	while (!atomic_load(&ss_stop) && !d->fail[0]) {
		uint64_t first = ss_rand(&d->rng) % SS_PAGES;
		uint64_t n = 1 + ss_rand(&d->rng) % (SS_PAGES - first);
		struct gmem_io_seg s = { first * TH_PAGE, n * TH_PAGE };
		struct gmem_io_req q = { .dir = GMEM_IO_WRITE,
					 .path = GMEM_IO_INPLACE, .nsegs = 1, .segs = &s,
					 .target = &t };
		int64_t ret = gmem_io_rw(d->io, &q);

		/* The VMM may make a page private between share and pin: the
		 * request then gives up with -EPERM, as documented. */
		if (ret != (int64_t)s.len && ret != -EPERM)
			snprintf(d->fail, sizeof(d->fail), "in-place request [%llu, +%llu): %lld",
				 (unsigned long long)first, (unsigned long long)n, (long long)ret);
		d->requests++;
	}
	return NULL;
}

TH_TEST(stress_share, last_convert_wins, .timeout = 300)
{
	static struct ss_dev dev[SS_DEVICES];
	struct gmem *g = th_open(backend, 2 * TH_MIB, 0);
	enum gmem_state want[SS_PAGES];
	pthread_t t[SS_DEVICES];
	struct gmem_io_stats st;
	struct gmem_io *io;
	uint64_t rng = 0x243f6a8885a308d3ull;
	unsigned ok = 0, refused = 0;
	int ret;

	ret = gmem_io_create(g, &(struct gmem_io_config){ .flags = GMEM_IO_CTX_NO_CALIBRATE },
			     &io);
	cr_assert_eq(ret, 0, "gmem_io_create: %d", ret);
	for (unsigned p = 0; p < SS_PAGES; p++)
		want[p] = GMEM_PRIVATE;
	atomic_store(&ss_stop, false);
	for (unsigned i = 0; i < SS_DEVICES; i++) {
		dev[i] = (struct ss_dev){ .io = io, .rng = 0x9e3779b97f4a7c15ull * (i + 1) };
		cr_assert_eq(pthread_create(&t[i], NULL, ss_device_main, &dev[i]), 0);
	}
	for (unsigned c = 0; c < SS_CONVERTS; c++) {
		uint64_t first = ss_rand(&rng) % SS_PAGES;
		uint64_t n = 1 + ss_rand(&rng) % 2;
		enum gmem_state to = (enum gmem_state)(ss_rand(&rng) & 1);

		if (first + n > SS_PAGES)
			n = SS_PAGES - first;
		ret = gmem_convert(g, first * TH_PAGE, n * TH_PAGE, to, NULL);
		if (ret == -EAGAIN) {
			refused++;
			continue;
		}
		cr_assert_eq(ret, 0, "gmem_convert: %d", ret);
		ok++;
		for (uint64_t p = first; p < first + n; p++)
			want[p] = to;
		if (!(c & 7))
			sched_yield();
	}
	atomic_store(&ss_stop, true);
	for (unsigned i = 0; i < SS_DEVICES; i++) {
		pthread_join(t[i], NULL);
		cr_assert(!dev[i].fail[0], "device %u: %s", i, dev[i].fail);
	}
	cr_assert_eq(gmem_io_stats(io, &st), 0);
	for (unsigned p = 0; p < SS_PAGES; p++)
		cr_assert_eq(gmem_state(g, p * TH_PAGE), (int)want[p],
			     "page %u is %s after the I/O ended; the last successful "
			     "gmem_convert made it %s (%u conversions, %u refused, %ld+%ld "
			     "requests)", p, gmem_state(g, p * TH_PAGE) ? "shared" : "private",
			     want[p] ? "shared" : "private", ok, refused, dev[0].requests,
			     dev[1].requests);
	TH_EQ(st.deferred, 0);
	TH_EQ(st.shared_now, 0);
	TH_EQ(th_stats(g).pinned_pages, 0);
	TH_EQ(gmem_io_destroy(io), 0);
	gmem_close(g);
}

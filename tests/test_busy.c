// SPDX-License-Identifier: MIT
/*
 * test_busy.c - suite "busy": a pinned or temporarily mapped page cannot
 * become private. The conversion is refused with -EAGAIN, *busy_gpa names
 * the first busy page of the range (as the kernel's in-place conversion
 * reports the first unexpected reference), and nothing changes: states,
 * contents, the host view, the shared count. Once the page is released the
 * same conversion goes through.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define SZ     (8 * TH_MIB)
#define PG     TH_PAGE
#define NPAGES (SZ / PG)


static void states_of(const struct gmem *g, uint8_t *st)
{
	for (uint64_t p = 0; p < NPAGES; p++)
		st[p] = (uint8_t)gmem_state(g, p * PG);
}

static void expect_states_same(const struct gmem *g, const uint8_t *before)
{
	for (uint64_t p = 0; p < NPAGES; p++) {
		int s = gmem_state(g, p * PG);

		cr_assert_eq(s, before[p], "page %llu: state %d after a refused conversion, was %d",
			     (unsigned long long)p, s, before[p]);
	}
}

/*
 * Convert [gpa, gpa + len) to private expecting a refusal naming @busy;
 * check that nothing changed, including what the host view reaches.
 */
static void expect_refused(struct gmem *g, uint64_t gpa, uint64_t len, uint64_t busy)
{
	static uint8_t before[NPAGES];
	struct gmem_stats s0 = th_stats(g), s1;
	uint64_t got = UINT64_MAX;
	int ret;

	states_of(g, before);
	ret = gmem_convert(g, gpa, len, GMEM_PRIVATE, &got);
	cr_assert_eq(ret, -EAGAIN, "convert [%#llx, +%#llx) to private = %d (%s), want -EAGAIN",
		     (unsigned long long)gpa, (unsigned long long)len, ret, gmem_strerror(ret));
	cr_assert_eq(got, busy, "busy_gpa = %#llx, want the first busy page %#llx",
		     (unsigned long long)got, (unsigned long long)busy);
	s1 = th_stats(g);
	expect_states_same(g, before);
	TH_EQ(s1.shared_pages, s0.shared_pages);
	TH_EQ(s1.conversions, s0.conversions);
	TH_EQ(s1.pages_converted, s0.pages_converted);
	TH_EQ(s1.view_mappings, s0.view_mappings);
	TH_EQ(s1.refused, s0.refused + 1);
	for (uint64_t a = gpa; a < gpa + len; a += PG)
		cr_assert_eq(th_read_faults(gmem_host(g, a)), before[a / PG] == GMEM_PRIVATE,
			     "gpa %#llx (state %d): host view reachability changed",
			     (unsigned long long)a, before[a / PG]);
}

static void expect_converted(struct gmem *g, uint64_t gpa, uint64_t len)
{
	int ret = gmem_convert(g, gpa, len, GMEM_PRIVATE, NULL);

	cr_assert_eq(ret, 0, "convert [%#llx, +%#llx) to private = %d (%s) after release",
		     (unsigned long long)gpa, (unsigned long long)len, ret, gmem_strerror(ret));
	for (uint64_t a = gpa; a < gpa + len; a += PG)
		cr_assert_eq(gmem_state(g, a), GMEM_PRIVATE, "gpa %#llx not private",
			     (unsigned long long)a);
}

TH_TEST(busy, pinned)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	uint64_t base = 16 * PG, len = 32 * PG;

	th_fill(g, base, len, 4);
	/* Pinned out of order: the lowest one is reported, not the first pinned. */
	TH_EQ(gmem_pin(g, base + 20 * PG, PG), 0);
	TH_EQ(gmem_pin(g, base + 5 * PG, 2 * PG), 0);
	TH_EQ(gmem_pin(g, base + 31 * PG, PG), 0);
	expect_refused(g, base, len, base + 5 * PG);
	cr_assert(th_check(g, base, len, 4), "contents changed by a refused conversion");
	/* The range's own start decides which is first. */
	expect_refused(g, base + 6 * PG, len - 6 * PG, base + 6 * PG);
	expect_refused(g, base + 7 * PG, len - 7 * PG, base + 20 * PG);
	/* Release them one by one: the next busy page is reported. */
	TH_EQ(gmem_unpin(g, base + 5 * PG, 2 * PG), 0);
	expect_refused(g, base, len, base + 20 * PG);
	TH_EQ(gmem_unpin(g, base + 20 * PG, PG), 0);
	expect_refused(g, base, len, base + 31 * PG); /* the very last page */
	TH_EQ(gmem_unpin(g, base + 31 * PG, PG), 0);
	expect_converted(g, base, len);
	cr_assert(th_check(g, base, len, 4), "contents changed by the conversion");
	gmem_close(g);
}

TH_TEST(busy, kmapped)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	uint64_t base = 2 * TH_MIB - 8 * PG, len = 16 * PG; /* across a region edge */
	void *w1, *w2;

	th_fill(g, base, len, 8);
	w2 = gmem_kmap(g, base + 12 * PG);
	w1 = gmem_kmap(g, base + 3 * PG);
	cr_assert(w1 && w2, "gmem_kmap: %s", strerror(errno));
	expect_refused(g, base, len, base + 3 * PG);
	cr_assert(th_check(g, base, len, 8), "contents changed by a refused conversion");
	gmem_kunmap(g, w1);
	expect_refused(g, base, len, base + 12 * PG);
	gmem_kunmap(g, w2);
	expect_converted(g, base, len);
	cr_assert(th_check(g, base, len, 8), "contents changed by the conversion");
	gmem_close(g);
}

/* Only pages of the range count; a busy neighbour does not block it. */
TH_TEST(busy, outside_range)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	void *w = gmem_kmap(g, 9 * PG);

	cr_assert_not_null(w);
	TH_EQ(gmem_pin(g, 3 * PG, PG), 0);
	expect_converted(g, 4 * PG, 5 * PG);
	expect_converted(g, 10 * PG, 5 * PG);
	gmem_kunmap(g, w);
	gmem_close(g);
}

/* The first busy page is found whichever region it sits in. */
TH_TEST(busy, far_region)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	uint64_t busy = 3 * TH_MIB + 17 * PG; /* region 1 */

	TH_EQ(gmem_pin(g, busy, PG), 0);
	TH_EQ(gmem_pin(g, 6 * TH_MIB, PG), 0); /* region 3, later */
	expect_refused(g, 0, SZ, busy);
	expect_refused(g, 2 * TH_MIB, 4 * TH_MIB, busy);
	/* A range ending just before it is free to go. */
	expect_converted(g, 0, busy);
	gmem_close(g);
}

/* Private pages in the range do not change the answer, and stay private. */
TH_TEST(busy, mixed_range)
{
	struct gmem *g = th_open(backend, SZ, 0);

	for (uint64_t p = 0; p < 16; p += 2)
		TH_EQ(gmem_convert(g, p * PG, PG, GMEM_SHARED, NULL), 0);
	TH_EQ(gmem_pin(g, 10 * PG, PG), 0);
	expect_refused(g, 0, 16 * PG, 10 * PG);
	TH_EQ(gmem_unpin(g, 10 * PG, PG), 0);
	expect_converted(g, 0, 16 * PG);
	gmem_close(g);
}

TH_TEST(busy, null_busy_gpa)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	struct gmem_stats s0, s1;

	TH_EQ(gmem_pin(g, 7 * PG, PG), 0);
	s0 = th_stats(g);
	TH_EQ(gmem_convert(g, 0, 16 * PG, GMEM_PRIVATE, NULL), -EAGAIN);
	s1 = th_stats(g);
	TH_EQ(s1.shared_pages, s0.shared_pages);
	TH_EQ(gmem_state(g, 0), GMEM_SHARED);
	TH_EQ(gmem_unpin(g, 7 * PG, PG), 0);
	expect_converted(g, 0, 16 * PG);
	gmem_close(g);
}

/* Being busy blocks only the way to private. */
TH_TEST(busy, to_shared_allowed)
{
	struct gmem *g = th_open(backend, SZ, 0);
	void *w;

	TH_EQ(gmem_convert(g, 4 * PG, PG, GMEM_SHARED, NULL), 0);
	TH_EQ(gmem_pin(g, 4 * PG, PG), 0);
	w = gmem_kmap(g, 6 * PG); /* private and mapped */
	cr_assert_not_null(w);
	TH_EQ(gmem_convert(g, 0, 16 * PG, GMEM_SHARED, NULL), 0);
	TH_EQ(th_stats(g).shared_pages, 16);
	TH_EQ(th_stats(g).pinned_pages, 1);
	expect_refused(g, 0, 16 * PG, 4 * PG);
	TH_EQ(gmem_unpin(g, 4 * PG, PG), 0);
	expect_refused(g, 0, 16 * PG, 6 * PG);
	gmem_kunmap(g, w);
	expect_converted(g, 0, 16 * PG);
	gmem_close(g);
}

/* Pins nest: each pin needs its unpin. */
TH_TEST(busy, pins_nest)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);

	TH_EQ(gmem_pin(g, 8 * PG, PG), 0);
	TH_EQ(gmem_pin(g, 8 * PG, PG), 0);
	TH_EQ(gmem_unpin(g, 8 * PG, PG), 0);
	TH_EQ(th_stats(g).pinned_pages, 1);
	expect_refused(g, 8 * PG, PG, 8 * PG);
	TH_EQ(gmem_unpin(g, 8 * PG, PG), 0);
	TH_EQ(th_stats(g).pinned_pages, 0);
	TH_EQ(gmem_unpin(g, 8 * PG, PG), -EINVAL);
	expect_converted(g, 8 * PG, PG);
	gmem_close(g);
}

/* A page both pinned and mapped is busy until both are released. */
TH_TEST(busy, pin_and_kmap)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	void *w;

	TH_EQ(gmem_pin(g, 2 * PG, PG), 0);
	w = gmem_kmap(g, 2 * PG);
	cr_assert_not_null(w);
	TH_EQ(gmem_unpin(g, 2 * PG, PG), 0);
	expect_refused(g, 0, 4 * PG, 2 * PG);
	TH_EQ(gmem_pin(g, 2 * PG, PG), 0);
	gmem_kunmap(g, w);
	expect_refused(g, 0, 4 * PG, 2 * PG);
	TH_EQ(gmem_unpin(g, 2 * PG, PG), 0);
	expect_converted(g, 0, 4 * PG);
	gmem_close(g);
}

/* Two windows on one page: busy until the last one goes. */
TH_TEST(busy, kmaps_nest)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	void *w1 = gmem_kmap(g, 5 * PG), *w2 = gmem_kmap(g, 5 * PG);

	cr_assert(w1 && w2 && w1 != w2, "two windows: %p %p", w1, w2);
	TH_EQ(th_stats(g).kmapped_pages, 1);
	gmem_kunmap(g, w1);
	expect_refused(g, 5 * PG, PG, 5 * PG);
	gmem_kunmap(g, w2);
	expect_converted(g, 5 * PG, PG);
	gmem_close(g);
}

/* Is the page at @addr mapped in this process right now (pagemap bit 63)? */
static bool page_present(const void *addr)
{
	uint64_t entry = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	cr_assert_geq(fd, 0);
	n = pread(fd, &entry, sizeof(entry), (off_t)((uintptr_t)addr / PG * sizeof(entry)));
	close(fd);
	cr_assert_eq(n, (ssize_t)sizeof(entry));
	return entry >> 63;
}

/* Sharing the runs on both sides of a pinned page must not map the pinned
 * page again (run merging stops at busy pages): its mapping, and whatever
 * the VMM set up on it, stays as it was. */
TH_TEST(busy, share_around_pin_keeps_its_mapping)
{
	struct gmem *g = th_open(backend, SZ, 0);
	volatile uint8_t *h = gmem_host(g, PG);

	TH_EQ(gmem_convert(g, PG, PG, GMEM_SHARED, NULL), 0);
	h[0] = 1;
	TH_EQ(gmem_pin(g, PG, PG), 0);
	cr_assert(page_present((const void *)h), "pinned page not mapped after touch");
	TH_EQ(gmem_convert(g, 0, 3 * PG, GMEM_SHARED, NULL), 0);
	cr_assert(page_present((const void *)h), "sharing around a pinned page remapped it");
	TH_EQ(gmem_unpin(g, PG, PG), 0);
	gmem_close(g);
}

/*
 * Attack: a guest looping on its pin hypercall. Pins of one page stop at
 * GMEM_PIN_MAX with -EOVERFLOW, and a range with one page at the limit pins
 * nothing (its neighbour's count is unchanged); unpinning then works.
 */
TH_TEST(busy, pin_limit)
{
	struct gmem *g = th_open(backend, SZ, 0);

	TH_EQ(gmem_convert(g, 0, 2 * PG, GMEM_SHARED, NULL), 0);
	for (uint32_t i = 0; i < GMEM_PIN_MAX; i++)
		if (gmem_pin(g, PG, PG))
			cr_assert_fail("pin %u of %u refused", i, GMEM_PIN_MAX);
	TH_EQ(gmem_pin(g, PG, PG), -EOVERFLOW);
	TH_EQ(gmem_pin(g, 0, 2 * PG), -EOVERFLOW);
	TH_EQ(th_stats(g).pinned_pages, 1);
	TH_EQ(gmem_unpin(g, 0, PG), -EINVAL);
	TH_EQ(gmem_unpin(g, PG, PG), 0);
	TH_EQ(gmem_pin(g, PG, PG), 0);
	gmem_close(g);
}

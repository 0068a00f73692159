// SPDX-License-Identifier: MIT
/*
 * test_ranges.c - suite "ranges": every range-taking call refuses a bad
 * range with -EINVAL and changes nothing.
 *
 * Each test sets up a memory in which the in-bounds part of any bad range
 * *would* change if the call went ahead (pages of the other state for
 * convert, shared pages for pin, pinned pages for unpin, filled pages for
 * discard), so a missing check shows as a changed state, counter or byte,
 * not only as a wrong return value.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

#define SZ     (8 * TH_MIB)
#define PG     TH_PAGE
#define NPAGES (SZ / PG)

struct bad_range {
	const char *name;
	uint64_t gpa, len;
};

static const struct bad_range bad_ranges[] = {
	{ "gpa unaligned by 1",             1,               PG },
	{ "gpa unaligned by 2048",          2048,            PG },
	{ "gpa unaligned by 4095",          4095,            PG },
	{ "len unaligned (1)",              0,               1 },
	{ "len unaligned (4097)",           0,               PG + 1 },
	{ "len unaligned (4095), last page", SZ - PG,        PG - 1 },
	{ "zero length",                    0,               0 },
	{ "zero length at the end",         SZ,              0 },
	{ "zero length, mid",               4 * PG,          0 },
	{ "just past the end",              SZ,              PG },
	{ "far past the end",               2 * SZ,          PG },
	{ "straddling the end",             SZ - PG,         2 * PG },
	{ "whole memory plus one page",     0,               SZ + PG },
	{ "gpa + len overflows to inside",  SZ - PG,         UINT64_MAX - (PG - 1) },
	{ "gpa + len overflows to 0",       PG,              UINT64_MAX - (PG - 1) },
	{ "len = -8 KiB (wraps backwards)", SZ - PG,         (uint64_t)0 - 2 * PG },
	{ "huge len",                       0,               UINT64_MAX & ~(PG - 1) },
	{ "huge len, unaligned",            0,               UINT64_MAX },
	{ "huge gpa",                       UINT64_MAX & ~(PG - 1), PG },
	{ "gpa 2^63",                       1ull << 63,      PG },
	{ "gpa 2^63, len 2^63",             1ull << 63,      1ull << 63 },
	{ "gpa = size, len = -size",        SZ,              (uint64_t)0 - SZ },
};

#define NCASES (sizeof(bad_ranges) / sizeof(bad_ranges[0]))

/* Everything a bad call must leave as it was. */
struct snap {
	uint8_t state[NPAGES];
	struct gmem_stats st;
};

static void snap_take(const struct gmem *g, struct snap *s)
{
	int ret = gmem_stats(g, &s->st);

	cr_assert_eq(ret, 0, "gmem_stats = %d", ret);
	for (uint64_t p = 0; p < NPAGES; p++)
		s->state[p] = (uint8_t)gmem_state(g, p * PG);
}

#define SNAP_FIELD_EQ(c, op, a, b, f)                                          \
	cr_assert_eq((a)->st.f, (b)->st.f, "%s: %s: stats." #f " = %llu, was %llu", \
		     (c)->name, op, (unsigned long long)(b)->st.f,              \
		     (unsigned long long)(a)->st.f)

static void snap_expect_same(const struct bad_range *c, const char *op,
			     const struct snap *a, const struct snap *b)
{
	for (uint64_t p = 0; p < NPAGES; p++)
		cr_assert_eq(a->state[p], b->state[p],
			     "%s: %s: page %llu state %d, was %d", c->name, op,
			     (unsigned long long)p, b->state[p], a->state[p]);
	SNAP_FIELD_EQ(c, op, a, b, shared_pages);
	SNAP_FIELD_EQ(c, op, a, b, private_pages);
	SNAP_FIELD_EQ(c, op, a, b, pinned_pages);
	SNAP_FIELD_EQ(c, op, a, b, kmapped_pages);
	SNAP_FIELD_EQ(c, op, a, b, conversions);
	SNAP_FIELD_EQ(c, op, a, b, pages_converted);
	SNAP_FIELD_EQ(c, op, a, b, refused);
	SNAP_FIELD_EQ(c, op, a, b, pins);
	SNAP_FIELD_EQ(c, op, a, b, discards);
	SNAP_FIELD_EQ(c, op, a, b, view_syscalls);
	SNAP_FIELD_EQ(c, op, a, b, view_mappings);
	SNAP_FIELD_EQ(c, op, a, b, regions_mixed);
	SNAP_FIELD_EQ(c, op, a, b, regions_split);
	SNAP_FIELD_EQ(c, op, a, b, regions_repaired);
}

typedef int (*range_op)(struct gmem *g, uint64_t gpa, uint64_t len);

static int op_share(struct gmem *g, uint64_t gpa, uint64_t len)
{
	return gmem_convert(g, gpa, len, GMEM_SHARED, NULL);
}

static int op_unshare(struct gmem *g, uint64_t gpa, uint64_t len)
{
	uint64_t busy = 0xdeadbeef;
	int ret = gmem_convert(g, gpa, len, GMEM_PRIVATE, &busy);

	/* An argument error reports no busy page. */
	cr_assert_eq(busy, 0xdeadbeef, "convert(%#llx, %#llx) wrote busy_gpa %#llx",
		     (unsigned long long)gpa, (unsigned long long)len,
		     (unsigned long long)busy);
	return ret;
}

/* Apply @op to every bad range; each must be -EINVAL and change nothing. */
static void run_table(struct gmem *g, const char *opname, range_op op)
{
	struct snap *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));

	cr_assert(a && b);
	for (unsigned i = 0; i < NCASES; i++) {
		const struct bad_range *c = &bad_ranges[i];
		int ret;

		snap_take(g, a);
		ret = op(g, c->gpa, c->len);
		cr_assert_eq(ret, -EINVAL, "%s: %s(gpa %#llx, len %#llx) = %d (%s), want -EINVAL",
			     c->name, opname, (unsigned long long)c->gpa,
			     (unsigned long long)c->len, ret, gmem_strerror(ret));
		snap_take(g, b);
		snap_expect_same(c, opname, a, b);
	}
	free(a);
	free(b);
}

/* The range check comes first: a valid range next to each bad one works. */
static void expect_valid_works(struct gmem *g, const char *opname, range_op op,
			       uint64_t gpa, uint64_t len)
{
	int ret = op(g, gpa, len);

	cr_assert_eq(ret, 0, "%s(gpa %#llx, len %#llx) = %d (%s), want 0", opname,
		     (unsigned long long)gpa, (unsigned long long)len, ret, gmem_strerror(ret));
}

TH_TEST(ranges, convert_to_shared)
{
	struct gmem *g = th_open(backend, SZ, 0);

	run_table(g, "convert(shared)", op_share);
	expect_valid_works(g, "convert(shared)", op_share, SZ - PG, PG);
	cr_assert_eq(gmem_state(g, SZ - PG), GMEM_SHARED);
	gmem_close(g);
}

TH_TEST(ranges, convert_to_private)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);

	run_table(g, "convert(private)", op_unshare);
	expect_valid_works(g, "convert(private)", op_unshare, SZ - PG, PG);
	cr_assert_eq(gmem_state(g, SZ - PG), GMEM_PRIVATE);
	gmem_close(g);
}

TH_TEST(ranges, pin)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);

	run_table(g, "pin", gmem_pin);
	expect_valid_works(g, "pin", gmem_pin, SZ - PG, PG);
	cr_assert_eq(gmem_unpin(g, SZ - PG, PG), 0);
	gmem_close(g);
}

TH_TEST(ranges, unpin)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	int ret = gmem_pin(g, 0, SZ);

	cr_assert_eq(ret, 0, "pin all = %d", ret);
	run_table(g, "unpin", gmem_unpin);
	expect_valid_works(g, "unpin", gmem_unpin, SZ - PG, PG);
	cr_assert_eq(gmem_unpin(g, SZ - PG, PG), -EINVAL);
	gmem_close(g);
}

static void expect_zero_page(struct gmem *g, uint64_t gpa)
{
	const uint8_t *k = gmem_kmap(g, gpa);

	cr_assert_not_null(k, "gmem_kmap(%#llx): %s", (unsigned long long)gpa, strerror(errno));
	for (uint64_t i = 0; i < PG; i++)
		cr_assert_eq(k[i], 0, "gpa %#llx+%llu = %#x after a valid discard, want 0",
			     (unsigned long long)gpa, (unsigned long long)i, k[i]);
	gmem_kunmap(g, (void *)k);
}

/* Bad discards free nothing: the edge pages keep their contents. */
static void discard_table(struct gmem *g)
{
	th_fill(g, 0, 4 * PG, 1);
	th_fill(g, SZ - 4 * PG, 4 * PG, 2);
	run_table(g, "discard", gmem_discard);
	cr_assert(th_check(g, 0, 4 * PG, 1), "discard with a bad range freed the first pages");
	cr_assert(th_check(g, SZ - 4 * PG, 4 * PG, 2),
		  "discard with a bad range freed the last pages");
	expect_valid_works(g, "discard", gmem_discard, SZ - PG, PG);
	expect_zero_page(g, SZ - PG);
}

TH_TEST(ranges, discard_private)
{
	struct gmem *g = th_open(backend, SZ, 0);

	discard_table(g);
	gmem_close(g);
}

TH_TEST(ranges, discard_shared)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);

	discard_table(g);
	gmem_close(g);
}

/* Point calls outside the memory. */
TH_TEST(ranges, points_outside)
{
	static const uint64_t gpas[] = { SZ, SZ + 1, SZ + PG, 2 * SZ, 1ull << 63,
					 UINT64_MAX & ~(PG - 1), UINT64_MAX };
	struct gmem *g = th_open(backend, SZ, 0);

	for (unsigned i = 0; i < sizeof(gpas) / sizeof(gpas[0]); i++) {
		unsigned long long a = gpas[i];
		int s = gmem_state(g, gpas[i]);
		void *k;

		cr_assert_eq(s, -EINVAL, "gmem_state(%#llx) = %d, want -EINVAL", a, s);
		errno = 0;
		cr_assert_null(gmem_host(g, gpas[i]), "gmem_host(%#llx) = %p", a,
			       gmem_host(g, gpas[i]));
		cr_assert_eq(errno, EINVAL, "gmem_host(%#llx): errno %d, want EINVAL", a, errno);
		errno = 0;
		k = gmem_kmap(g, gpas[i]);
		cr_assert_null(k, "gmem_kmap(%#llx) = %p", a, k);
		cr_assert_eq(errno, EINVAL, "gmem_kmap(%#llx): errno %d, want EINVAL", a, errno);
	}
	gmem_close(g);
}

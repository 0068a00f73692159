// SPDX-License-Identifier: MIT
/*
 * test_privacy.c - suite "privacy": a private page cannot be reached through
 * the host view, neither by loads and stores (they fault) nor through
 * /proc/self/mem (which ignores PROT_NONE: the reason the library replaces
 * file mappings by anonymous placeholders instead of mprotecting them).
 * Contents survive private -> shared -> private, and the KVM view keeps
 * seeing them throughout.
 */
#include <errno.h>
#include <string.h>

#include "helpers.h"

#define SZ (8 * TH_MIB)
#define PG TH_PAGE


/* Copy of page @gpa as the guest sees it (through a temporary mapping). */
static void guest_copy(struct gmem *g, uint64_t gpa, uint8_t *out)
{
	const uint8_t *k = gmem_kmap(g, gpa);

	cr_assert_not_null(k, "gmem_kmap(%#llx): %s", (unsigned long long)gpa,
			   strerror(errno));
	memcpy(out, k, PG);
	gmem_kunmap(g, (void *)k);
}

/* Fill @gpa with a pattern of non-zero bytes (so that a read of a zero page
 * or of a placeholder can never pass for it) and return a copy. */
static void fill_secret(struct gmem *g, uint64_t gpa, uint8_t *copy)
{
	uint8_t *k = gmem_kmap(g, gpa);

	cr_assert_not_null(k, "gmem_kmap(%#llx): %s", (unsigned long long)gpa,
			   strerror(errno));
	for (uint64_t i = 0; i < PG; i++)
		k[i] = (uint8_t)(0x80 | ((gpa >> 12) + i * 7));
	memcpy(copy, k, PG);
	gmem_kunmap(g, k);
}

static void expect_guest_has(struct gmem *g, uint64_t gpa, const uint8_t *want)
{
	uint8_t got[PG];

	guest_copy(g, gpa, got);
	for (uint64_t i = 0; i < PG; i++)
		cr_assert_eq(got[i], want[i], "gpa %#llx+%llu: guest has %#x, want %#x",
			     (unsigned long long)gpa, (unsigned long long)i, got[i], want[i]);
}

static void expect_kvm_view_has(struct gmem *g, uint64_t gpa, const uint8_t *want)
{
	const uint8_t *kv = (const uint8_t *)gmem_kvm_view(g) + gpa;

	for (uint64_t i = 0; i < PG; i++)
		cr_assert_eq(kv[i], want[i], "gpa %#llx+%llu: KVM view has %#x, want %#x",
			     (unsigned long long)gpa, (unsigned long long)i, kv[i], want[i]);
}

/* Loads and stores through the host view fault; the data is untouched. */
static void expect_unreachable(struct gmem *g, uint64_t gpa, const uint8_t *secret)
{
	uint8_t *h = gmem_host(g, gpa);

	cr_assert_eq(gmem_state(g, gpa), GMEM_PRIVATE);
	cr_assert_eq(th_read_faults(h), 1, "reading private gpa %#llx did not fault",
		     (unsigned long long)gpa);
	cr_assert_eq(th_read_faults(h + PG - 1), 1, "reading the last byte of private gpa "
		     "%#llx did not fault", (unsigned long long)gpa);
	cr_assert_eq(th_write_faults(h + 100), 1, "writing private gpa %#llx did not fault",
		     (unsigned long long)gpa);
	expect_guest_has(g, gpa, secret);
}

/* /proc/self/mem must fail or return something other than the data. */
static void expect_procmem_hidden(struct gmem *g, uint64_t gpa, const uint8_t *secret)
{
	uint8_t buf[PG];
	long n = th_procmem_read(gmem_host(g, gpa), buf, PG);

	if (n < 0)
		return;
	cr_assert(n != (long)PG || memcmp(buf, secret, PG),
		  "/proc/self/mem returned the private data of gpa %#llx (%ld bytes)",
		  (unsigned long long)gpa, n);
	/* Not even a prefix of it. */
	if (n > 0)
		cr_assert(memcmp(buf, secret, (size_t)n < 64 ? (size_t)n : 64),
			  "/proc/self/mem returned the first bytes of private gpa %#llx",
			  (unsigned long long)gpa);
}

TH_TEST(privacy, private_faults)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint8_t secret[PG];

	fill_secret(g, 5 * PG, secret);
	expect_unreachable(g, 5 * PG, secret);
	/* Next to a shared page, too: only the shared one is reachable. */
	TH_EQ(gmem_convert(g, 6 * PG, PG, GMEM_SHARED, NULL), 0);
	TH_EQ(th_write_faults(gmem_host(g, 6 * PG)), 0);
	expect_unreachable(g, 5 * PG, secret);
	gmem_close(g);
}

/* A page that was shared (and mapped, and touched) becomes unreachable. */
TH_TEST(privacy, unshared_faults)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	uint64_t gpa = 2 * TH_MIB + 3 * PG;
	uint8_t secret[PG];

	fill_secret(g, gpa, secret);
	TH_EQ(((volatile uint8_t *)gmem_host(g, gpa))[0], secret[0]); /* map it */
	TH_EQ(gmem_convert(g, gpa, PG, GMEM_PRIVATE, NULL), 0);
	expect_unreachable(g, gpa, secret);
	expect_procmem_hidden(g, gpa, secret);
	/* Its neighbours stay shared and reachable. */
	TH_EQ(th_read_faults(gmem_host(g, gpa - PG)), 0);
	TH_EQ(th_read_faults(gmem_host(g, gpa + PG)), 0);
	gmem_close(g);
}

TH_TEST(privacy, procmem)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint8_t secret[PG], buf[PG];
	long n;

	fill_secret(g, 9 * PG, secret);
	expect_procmem_hidden(g, 9 * PG, secret);
	/* A page in a region never touched by the host view. */
	fill_secret(g, 4 * TH_MIB, secret);
	expect_procmem_hidden(g, 4 * TH_MIB, secret);
	/* Control: the same read of a shared page does return the data,
	 * so the check above can tell the difference. */
	TH_EQ(gmem_convert(g, 9 * PG, PG, GMEM_SHARED, NULL), 0);
	guest_copy(g, 9 * PG, secret);
	n = th_procmem_read(gmem_host(g, 9 * PG), buf, PG);
	TH_EQ(n, PG);
	cr_assert(!memcmp(buf, secret, PG), "/proc/self/mem of a shared page is not its data");
	gmem_close(g);
}

TH_TEST(privacy, round_trip)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint64_t gpa = 6 * TH_MIB - PG; /* last page of region 2 */
	uint8_t secret[PG];
	volatile uint8_t *h = gmem_host(g, gpa);

	fill_secret(g, gpa, secret);
	expect_kvm_view_has(g, gpa, secret);
	TH_EQ(gmem_convert(g, gpa, 2 * PG, GMEM_SHARED, NULL), 0);
	for (uint64_t i = 0; i < PG; i += 97)
		cr_assert_eq(h[i], secret[i], "shared: host byte %llu = %#x, want %#x",
			     (unsigned long long)i, h[i], secret[i]);
	expect_kvm_view_has(g, gpa, secret);
	TH_EQ(gmem_convert(g, gpa, 2 * PG, GMEM_PRIVATE, NULL), 0);
	expect_unreachable(g, gpa, secret);
	expect_procmem_hidden(g, gpa, secret);
	expect_kvm_view_has(g, gpa, secret);
	gmem_close(g);
}

/*
 * The KVM view, at GMEM_PRIVACY_VIEW, is the one mapping of private data in
 * the process: KVM needs it, so it is not a leak to assert but a door to
 * bound. What it writes is the guest's; it exists only where the level says
 * so, it is the memslot's mapping and nothing else's, and it is kept from
 * children and dumps (test_threat.c attacks it from every other side).
 */
TH_TEST(privacy, kvm_view_only_where_the_level_needs_it)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint8_t *kv = gmem_kvm_view(g);
	struct gmem_info info;
	uint8_t secret[PG];

	TH_EQ(gmem_info(g, &info), 0);
	fill_secret(g, 12 * PG, secret);
	if (info.privacy == GMEM_PRIVACY_KERNEL) {
		/* One mapping; the kernel faults private pages in it. */
		cr_assert_eq((void *)kv, gmem_host(g, 0));
		expect_unreachable(g, 12 * PG, secret);
		gmem_close(g);
		return;
	}
	TH_EQ(info.privacy, GMEM_PRIVACY_VIEW);
	cr_assert(kv < (uint8_t *)gmem_host(g, 0) || kv >= (uint8_t *)gmem_host(g, 0) + SZ,
		  "the KVM view overlaps the host view");
	expect_kvm_view_has(g, 12 * PG, secret);
	kv[12 * PG + 1] = 0x11;
	secret[1] = 0x11;
	expect_guest_has(g, 12 * PG, secret);
	expect_unreachable(g, 12 * PG, secret);
	expect_procmem_hidden(g, 12 * PG, secret);
	gmem_close(g);
}

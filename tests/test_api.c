// SPDX-License-Identifier: MIT
/*
 * test_api.c - suite "api": one test per behaviour of the public API
 * (DESIGN.md, "Public API"), each on both backends (TH_TEST).
 *
 * Memories are small (8 MiB = 4 regions) and 4 KiB-backed: nothing here
 * depends on shmem_enabled or hugetlb pages (see test_huge.c for those).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "helpers.h"

#define SZ     (8 * TH_MIB)
#define PG     TH_PAGE
#define NPAGES (SZ / PG)


/* Every page of [gpa, gpa + len) is in state @want. */
static void expect_states(const struct gmem *g, uint64_t gpa, uint64_t len, int want)
{
	for (uint64_t a = gpa; a < gpa + len; a += PG) {
		int s = gmem_state(g, a);

		cr_assert_eq(s, want, "gmem_state(%#llx) = %d, want %d",
			     (unsigned long long)a, s, want);
	}
}

/* The host view of shared page @gpa holds exactly what the guest sees. */
static void expect_host_is_guest(struct gmem *g, uint64_t gpa)
{
	const uint8_t *h = gmem_host(g, gpa);
	uint8_t *k = gmem_kmap(g, gpa);

	cr_assert_not_null(k, "gmem_kmap(%#llx): %s", (unsigned long long)gpa,
			   strerror(errno));
	for (uint64_t i = 0; i < PG; i++)
		cr_assert_eq(h[i], k[i], "gpa %#llx+%llu: host view %#x, guest %#x",
			     (unsigned long long)gpa, (unsigned long long)i, h[i], k[i]);
	gmem_kunmap(g, k);
}

/* Page @gpa reads as zeroes through a temporary mapping. */
static void expect_zero(struct gmem *g, uint64_t gpa)
{
	const uint8_t *k = gmem_kmap(g, gpa);

	cr_assert_not_null(k, "gmem_kmap(%#llx): %s", (unsigned long long)gpa,
			   strerror(errno));
	for (uint64_t i = 0; i < PG; i++)
		cr_assert_eq(k[i], 0, "gpa %#llx+%llu = %#x after discard, want 0",
			     (unsigned long long)gpa, (unsigned long long)i, k[i]);
	gmem_kunmap(g, (void *)k);
}

static void expect_pattern(struct gmem *g, uint64_t gpa, uint64_t len, uint32_t seed)
{
	cr_assert(th_check(g, gpa, len, seed), "contents of [%#llx, +%#llx) seed %u changed",
		  (unsigned long long)gpa, (unsigned long long)len, seed);
}

static int open_cfg(enum gmem_backend b, uint64_t size, unsigned flags, struct gmem **g)
{
	struct gmem_config cfg = { .size = size, .backend = b, .vm_fd = -1, .flags = flags };

	return gmem_open(&cfg, g);
}

/* ---- open / close ---------------------------------------------------- */

TH_TEST(api, open_bad_config)
{
	static const struct { uint64_t size; int backend; unsigned flags; const char *what; }
	bad[] = {
		{ 0, -1, 0, "size 0" },
		{ 4096, -1, 0, "size 4 KiB" },
		{ 3 * TH_MIB, -1, 0, "size 3 MiB" },
		{ SZ + 4096, -1, 0, "size 8 MiB + 4 KiB" },
		{ SZ, -1, 1u << 4, "flag bit 4" },
		{ SZ, -1, 1u << 31, "flag bit 31" },
		{ SZ, 3, 0, "backend 3" },
		{ SZ, -2, 0, "backend -2 (as int)" },
	};

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct gmem *g = (struct gmem *)&g; /* must not be overwritten */
		struct gmem_config cfg = {
			.size = bad[i].size, .vm_fd = -1, .flags = bad[i].flags,
			.backend = bad[i].backend == -1 ? backend
							: (enum gmem_backend)bad[i].backend,
		};
		int ret = gmem_open(&cfg, &g);

		cr_assert_eq(ret, -EINVAL, "%s: gmem_open = %d (%s), want -EINVAL", bad[i].what,
			     ret, gmem_strerror(ret));
		cr_assert_eq(g, (struct gmem *)&g, "%s: *out written on failure (%p)",
			     bad[i].what, (void *)g);
		cr_assert_neq(gmem_last_error()[0], 0, "%s: gmem_last_error is empty",
			      bad[i].what);
	}
	TH_EQ(gmem_open(NULL, NULL), -EINVAL);
}

TH_TEST(api, open_default_private)
{
	struct gmem *g = th_open(backend, SZ, 0);
	struct gmem_stats s = th_stats(g);

	expect_states(g, 0, SZ, GMEM_PRIVATE);
	TH_EQ(s.size, SZ);
	TH_EQ(s.private_pages, NPAGES);
	TH_EQ(s.shared_pages, 0);
	TH_EQ(s.pinned_pages, 0);
	TH_EQ(s.regions, SZ / GMEM_REGION_SIZE);
	TH_EQ(s.regions_mixed, 0);
	TH_EQ(th_read_faults(gmem_host(g, 0)), 1);
	TH_EQ(th_read_faults(gmem_host(g, SZ - PG)), 1);
	gmem_close(g);
}

TH_TEST(api, open_init_shared)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	struct gmem_stats s = th_stats(g);

	expect_states(g, 0, SZ, GMEM_SHARED);
	TH_EQ(s.shared_pages, NPAGES);
	TH_EQ(s.private_pages, 0);
	TH_EQ(s.regions_mixed, 0);
	/* Shared from the start means the host reads and writes it. */
	TH_EQ(th_write_faults(gmem_host(g, 0)), 0);
	TH_EQ(th_write_faults(gmem_host(g, SZ - PG)), 0);
	expect_host_is_guest(g, 0);
	expect_host_is_guest(g, SZ - PG);
	gmem_close(g);
}

/* A caller's VM is used, not closed. */
Test(api, open_caller_vm_kvm)
{
	struct gmem_config cfg = { .size = SZ, .backend = GMEM_BACKEND_KVM, .flags = 0 };
	struct gmem_info info;
	struct gmem *g = NULL;
	const char *why = th_kvm_unavailable();
	int kvm, vm, ret;

	if (why)
		cr_skip_test("kvm backend: %s", why);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	cr_assert_geq(kvm, 0, "open /dev/kvm: %s", strerror(errno));
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	cr_assert_geq(vm, 0, "KVM_CREATE_VM: %s", strerror(errno));
	cfg.vm_fd = vm;
	ret = gmem_open(&cfg, &g);
	cr_assert_eq(ret, 0, "gmem_open on vm fd %d = %d: %s", vm, ret, gmem_last_error());
	TH_EQ(gmem_info(g, &info), 0);
	TH_EQ(info.vm_fd, vm);
	gmem_close(g);
	cr_assert_geq(fcntl(vm, F_GETFD), 0, "caller's vm fd %d closed by gmem_close", vm);
	close(vm);
	close(kvm);
}

/* ---- gmem_state / gmem_host ------------------------------------------- */

TH_TEST(api, state_outside)
{
	struct gmem *g = th_open(backend, SZ, 0);

	TH_EQ(gmem_state(g, SZ), -EINVAL);
	TH_EQ(gmem_state(g, SZ + PG), -EINVAL);
	TH_EQ(gmem_state(g, UINT64_MAX), -EINVAL);
	TH_EQ(gmem_state(g, UINT64_MAX & ~(PG - 1)), -EINVAL);
	TH_EQ(gmem_state(NULL, 0), -EINVAL);
	/* The last byte is inside. */
	TH_EQ(gmem_state(g, SZ - 1), GMEM_PRIVATE);
	gmem_close(g);
}

TH_TEST(api, host_address)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint8_t *base = gmem_host(g, 0);

	cr_assert_not_null(base);
	TH_EQ((uintptr_t)gmem_host(g, 5 * PG + 17), (uintptr_t)base + 5 * PG + 17);
	TH_EQ((uintptr_t)gmem_host(g, SZ - 1), (uintptr_t)base + SZ - 1);
	errno = 0;
	cr_assert_null(gmem_host(g, SZ), "gmem_host(size) = %p", gmem_host(g, SZ));
	TH_EQ(errno, EINVAL);
	cr_assert_null(gmem_host(g, UINT64_MAX));
	/* The address does not move with conversions. */
	TH_EQ(gmem_convert(g, 5 * PG, PG, GMEM_SHARED, NULL), 0);
	TH_EQ((uintptr_t)gmem_host(g, 5 * PG), (uintptr_t)base + 5 * PG);
	gmem_close(g);
}

/* ---- gmem_convert ----------------------------------------------------- */

TH_TEST(api, convert_idempotent)
{
	struct gmem *g = th_open(backend, SZ, 0);
	struct gmem_stats s0, s1;

	TH_EQ(gmem_convert(g, 0, SZ, GMEM_PRIVATE, NULL), 0);
	TH_EQ(gmem_convert(g, PG, 4 * PG, GMEM_SHARED, NULL), 0);
	s0 = th_stats(g);
	TH_EQ(gmem_convert(g, PG, 4 * PG, GMEM_SHARED, NULL), 0);
	TH_EQ(gmem_convert(g, 8 * PG, 4 * PG, GMEM_PRIVATE, NULL), 0);
	s1 = th_stats(g);
	expect_states(g, PG, 4 * PG, GMEM_SHARED);
	expect_states(g, 8 * PG, 4 * PG, GMEM_PRIVATE);
	TH_EQ(s1.shared_pages, s0.shared_pages);
	TH_EQ(s1.pages_converted, s0.pages_converted);
	TH_EQ(s1.conversions, s0.conversions + 2);
	/* Nothing to change: no syscall either. */
	TH_EQ(s1.view_syscalls, s0.view_syscalls);
	gmem_close(g);
}

TH_TEST(api, convert_contents)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint64_t gpa = 3 * TH_MIB - 4 * PG, len = 8 * PG; /* crosses a region edge */

	th_fill(g, gpa, len, 11);
	TH_EQ(gmem_convert(g, gpa, len, GMEM_SHARED, NULL), 0);
	expect_states(g, gpa, len, GMEM_SHARED);
	expect_pattern(g, gpa, len, 11);
	for (uint64_t a = gpa; a < gpa + len; a += PG)
		expect_host_is_guest(g, a);
	TH_EQ(gmem_convert(g, gpa, len, GMEM_PRIVATE, NULL), 0);
	expect_states(g, gpa, len, GMEM_PRIVATE);
	expect_pattern(g, gpa, len, 11);
	gmem_close(g);
}

/* What the host writes into a shared page is the guest's after unsharing. */
TH_TEST(api, convert_host_writes_kept)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint8_t *h = gmem_host(g, 7 * PG);
	const uint8_t *k;

	TH_EQ(gmem_convert(g, 7 * PG, PG, GMEM_SHARED, NULL), 0);
	memset(h, 0x5a, PG);
	TH_EQ(gmem_convert(g, 7 * PG, PG, GMEM_PRIVATE, NULL), 0);
	k = gmem_kmap(g, 7 * PG);
	cr_assert_not_null(k, "gmem_kmap: %s", strerror(errno));
	for (uint64_t i = 0; i < PG; i++)
		cr_assert_eq(k[i], 0x5a, "byte %llu = %#x, want 0x5a", (unsigned long long)i,
			     k[i]);
	gmem_kunmap(g, (void *)k);
	gmem_close(g);
}

TH_TEST(api, convert_bad_state)
{
	struct gmem *g = th_open(backend, SZ, 0);
	struct gmem_stats s0 = th_stats(g), s1;

	TH_EQ(gmem_convert(g, 0, PG, (enum gmem_state)2, NULL), -EINVAL);
	TH_EQ(gmem_convert(g, 0, PG, (enum gmem_state)-1, NULL), -EINVAL);
	TH_EQ(gmem_convert(NULL, 0, PG, GMEM_SHARED, NULL), -EINVAL);
	s1 = th_stats(g);
	TH_EQ(s1.shared_pages, s0.shared_pages);
	TH_EQ(s1.conversions, s0.conversions);
	expect_states(g, 0, PG, GMEM_PRIVATE);
	gmem_close(g);
}

/* ---- gmem_pin / gmem_unpin -------------------------------------------- */

TH_TEST(api, pin_private)
{
	struct gmem *g = th_open(backend, SZ, 0);

	TH_EQ(gmem_pin(g, 0, PG), -EPERM);
	/* Shared, shared, private: all or nothing. */
	TH_EQ(gmem_convert(g, 10 * PG, 2 * PG, GMEM_SHARED, NULL), 0);
	TH_EQ(gmem_pin(g, 10 * PG, 3 * PG), -EPERM);
	TH_EQ(gmem_pin(g, 9 * PG, 3 * PG), -EPERM);
	TH_EQ(th_stats(g).pinned_pages, 0);
	TH_EQ(th_stats(g).pins, 0);
	/* Nothing pinned: unpin refuses, and the pages can become private. */
	TH_EQ(gmem_unpin(g, 10 * PG, PG), -EINVAL);
	TH_EQ(gmem_convert(g, 10 * PG, 2 * PG, GMEM_PRIVATE, NULL), 0);
	gmem_close(g);
}

TH_TEST(api, pin_no_pin)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED | GMEM_F_NO_PIN);

	TH_EQ(gmem_pin(g, 0, PG), -EPERM);
	TH_EQ(gmem_pin(g, 0, SZ), -EPERM);
	TH_EQ(th_stats(g).pinned_pages, 0);
	/* Shared pages are still mapped and convertible. */
	TH_EQ(th_write_faults(gmem_host(g, 0)), 0);
	TH_EQ(gmem_convert(g, 0, PG, GMEM_PRIVATE, NULL), 0);
	gmem_close(g);
}

TH_TEST(api, pin_unpin_counts)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	struct gmem_stats s;

	TH_EQ(gmem_pin(g, 4 * PG, 4 * PG), 0);
	s = th_stats(g);
	TH_EQ(s.pinned_pages, 4);
	TH_EQ(s.pins, 1);
	/* Overlapping pin: pages counted once. */
	TH_EQ(gmem_pin(g, 6 * PG, 4 * PG), 0);
	s = th_stats(g);
	TH_EQ(s.pinned_pages, 6);
	TH_EQ(s.pins, 2);
	TH_EQ(gmem_unpin(g, 4 * PG, 4 * PG), 0);
	TH_EQ(th_stats(g).pinned_pages, 4);
	TH_EQ(gmem_unpin(g, 6 * PG, 4 * PG), 0);
	TH_EQ(th_stats(g).pinned_pages, 0);
	/* Pinning leaves the state shared and the view usable. */
	expect_states(g, 4 * PG, 6 * PG, GMEM_SHARED);
	TH_EQ(th_write_faults(gmem_host(g, 4 * PG)), 0);
	gmem_close(g);
}

TH_TEST(api, unpin_not_pinned)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);

	TH_EQ(gmem_unpin(g, 0, PG), -EINVAL);
	/* Pinned, unpinned: the pinned page stays pinned. */
	TH_EQ(gmem_pin(g, 20 * PG, PG), 0);
	TH_EQ(gmem_unpin(g, 20 * PG, 2 * PG), -EINVAL);
	TH_EQ(th_stats(g).pinned_pages, 1);
	/* Unpinned, pinned (the unpinned page comes first). */
	TH_EQ(gmem_unpin(g, 19 * PG, 2 * PG), -EINVAL);
	TH_EQ(th_stats(g).pinned_pages, 1);
	/* Still pinned, so it cannot become private. */
	TH_EQ(gmem_convert(g, 20 * PG, PG, GMEM_PRIVATE, NULL), -EAGAIN);
	TH_EQ(gmem_unpin(g, 20 * PG, PG), 0);
	TH_EQ(gmem_unpin(g, 20 * PG, PG), -EINVAL);
	TH_EQ(th_stats(g).pinned_pages, 0);
	gmem_close(g);
}

/* A temporary mapping is not a pin: unpin refuses it. */
TH_TEST(api, unpin_kmapped)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	void *k = gmem_kmap(g, 3 * PG);

	cr_assert_not_null(k, "gmem_kmap: %s", strerror(errno));
	TH_EQ(gmem_unpin(g, 3 * PG, PG), -EINVAL);
	TH_EQ(th_stats(g).kmapped_pages, 1);
	gmem_kunmap(g, k);
	TH_EQ(th_stats(g).kmapped_pages, 0);
	gmem_close(g);
}

/* ---- gmem_kmap / gmem_kunmap ------------------------------------------ */

TH_TEST(api, kmap_private)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint8_t *k;
	struct gmem_stats s;

	th_fill(g, 9 * PG, PG, 3);
	k = gmem_kmap(g, 9 * PG);
	cr_assert_not_null(k, "gmem_kmap(private): %s", strerror(errno));
	s = th_stats(g);
	TH_EQ(s.kmapped_pages, 1);
	TH_EQ(gmem_state(g, 9 * PG), GMEM_PRIVATE);
	/* Mapping it does not reach the host view. */
	TH_EQ(th_read_faults(gmem_host(g, 9 * PG)), 1);
	gmem_kunmap(g, k);
	TH_EQ(th_stats(g).kmapped_pages, 0);
	expect_pattern(g, 9 * PG, PG, 3);
	/* The guest's data, written privately, is what sharing reveals. */
	TH_EQ(gmem_convert(g, 9 * PG, PG, GMEM_SHARED, NULL), 0);
	expect_host_is_guest(g, 9 * PG);
	expect_pattern(g, 9 * PG, PG, 3);
	gmem_close(g);
}

TH_TEST(api, kmap_shared)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	uint8_t *h = gmem_host(g, 2 * PG), *k;

	memset(h, 0x3c, PG);
	k = gmem_kmap(g, 2 * PG);
	cr_assert_not_null(k, "gmem_kmap(shared): %s", strerror(errno));
	cr_assert_neq((uintptr_t)k, (uintptr_t)h, "kmap returned the host view address");
	TH_EQ(k[0], 0x3c);
	TH_EQ(k[PG - 1], 0x3c);
	/* Writes through the window are the host view's too. */
	k[100] = 0xc3;
	TH_EQ(h[100], 0xc3);
	gmem_kunmap(g, k);
	TH_EQ(h[100], 0xc3);
	gmem_close(g);
}

TH_TEST(api, kmap_unaligned)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint8_t *k;

	th_fill(g, 4 * PG, PG, 21);
	k = gmem_kmap(g, 4 * PG + 64);
	cr_assert_not_null(k, "gmem_kmap(gpa + 64): %s", strerror(errno));
	k[0] = 0x77;
	gmem_kunmap(g, k); /* an address inside the window releases it */
	TH_EQ(th_stats(g).kmapped_pages, 0);
	k = gmem_kmap(g, 4 * PG);
	cr_assert_not_null(k);
	TH_EQ(k[64], 0x77);
	gmem_kunmap(g, k);
	gmem_close(g);
}

TH_TEST(api, kmap_bad)
{
	struct gmem *g = th_open(backend, SZ, 0);
	int x;

	errno = 0;
	cr_assert_null(gmem_kmap(g, SZ));
	TH_EQ(errno, EINVAL);
	errno = 0;
	cr_assert_null(gmem_kmap(g, UINT64_MAX));
	TH_EQ(errno, EINVAL);
	/* Addresses that are no window are ignored. */
	gmem_kunmap(g, NULL);
	gmem_kunmap(g, &x);
	gmem_kunmap(g, gmem_host(g, 0));
	TH_EQ(th_stats(g).kmapped_pages, 0);
	TH_EQ(th_stats(g).kmaps, 0);
	gmem_close(g);
}

/* Windows are a finite pool: exhaustion is an error, not a hang or crash. */
TH_TEST(api, kmap_exhausted)
{
	struct gmem *g = th_open(backend, SZ, 0);
	void *w[1024];
	unsigned n = 0;

	for (; n < 1024; n++) {
		w[n] = gmem_kmap(g, (uint64_t)n * PG);
		if (!w[n])
			break;
	}
	cr_assert_lt(n, 1024, "1024 simultaneous windows: no limit at all?");
	cr_assert_gt(n, 0, "not even one window");
	TH_EQ(errno, EBUSY);
	TH_EQ(th_stats(g).kmapped_pages, n);
	gmem_kunmap(g, w[0]);
	w[0] = gmem_kmap(g, SZ - PG);
	cr_assert_not_null(w[0], "kmap after a kunmap: %s", strerror(errno));
	for (unsigned i = 0; i < n; i++)
		gmem_kunmap(g, w[i]);
	TH_EQ(th_stats(g).kmapped_pages, 0);
	gmem_close(g);
}

/* ---- gmem_discard ----------------------------------------------------- */

TH_TEST(api, discard)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint64_t a = 2 * TH_MIB - 2 * PG; /* pages a .. a+5, across a region edge */
	struct gmem_stats s0, s1;

	th_fill(g, a, 6 * PG, 7);
	TH_EQ(gmem_convert(g, a + 2 * PG, PG, GMEM_SHARED, NULL), 0);
	s0 = th_stats(g);
	/* Discard pages 1..4: private, shared, private, private. */
	TH_EQ(gmem_discard(g, a + PG, 4 * PG), 0);
	s1 = th_stats(g);
	for (uint64_t p = 1; p < 5; p++)
		expect_zero(g, a + p * PG);
	expect_pattern(g, a, PG, 7);
	expect_pattern(g, a + 5 * PG, PG, 7);
	/* Each page keeps its state. */
	expect_states(g, a, 2 * PG, GMEM_PRIVATE);
	TH_EQ(gmem_state(g, a + 2 * PG), GMEM_SHARED);
	expect_states(g, a + 3 * PG, 3 * PG, GMEM_PRIVATE);
	TH_EQ(s1.shared_pages, s0.shared_pages);
	TH_EQ(s1.discards, s0.discards + 1);
	/* The shared one reads zero in the host view, and stays usable. */
	TH_EQ(((volatile uint8_t *)gmem_host(g, a + 2 * PG))[0], 0);
	TH_EQ(th_write_faults(gmem_host(g, a + 2 * PG)), 0);
	TH_EQ(th_read_faults(gmem_host(g, a + PG)), 1);
	gmem_close(g);
}

TH_TEST(api, discard_pinned)
{
	struct gmem *g = th_open(backend, SZ, GMEM_F_INIT_SHARED);
	struct gmem_stats s0, s1;

	th_fill(g, 0, 8 * PG, 5);
	TH_EQ(gmem_pin(g, 6 * PG, PG), 0);
	s0 = th_stats(g);
	TH_EQ(gmem_discard(g, 0, 8 * PG), -EBUSY);
	s1 = th_stats(g);
	expect_pattern(g, 0, 8 * PG, 5);
	TH_EQ(s1.discards, s0.discards);
	/* Not the pinned page: allowed. */
	TH_EQ(gmem_unpin(g, 6 * PG, PG), 0);
	TH_EQ(gmem_pin(g, 7 * PG, PG), 0);
	TH_EQ(gmem_discard(g, 0, 7 * PG), 0);
	expect_zero(g, 6 * PG);
	expect_pattern(g, 7 * PG, PG, 5);
	gmem_close(g);
}

/* ---- gmem_stats ------------------------------------------------------- */

TH_TEST(api, stats_counters)
{
	struct gmem *g = th_open(backend, SZ, 0);
	struct gmem_stats s0 = th_stats(g), s;

	TH_EQ(s0.conversions, 0);
	TH_EQ(s0.pages_converted, 0);
	TH_EQ(s0.regions_split, 0);
	TH_EQ(s0.regions_repaired, 0);
	cr_assert_gt(s0.metadata_bytes, 0);
	/* One page of region 1 shared: region 1 split. */
	TH_EQ(gmem_convert(g, 2 * TH_MIB + 5 * PG, PG, GMEM_SHARED, NULL), 0);
	s = th_stats(g);
	TH_EQ(s.conversions, 1);
	TH_EQ(s.pages_converted, 1);
	TH_EQ(s.shared_pages, 1);
	TH_EQ(s.private_pages, NPAGES - 1);
	TH_EQ(s.regions_split, 1);
	TH_EQ(s.regions_mixed, 1);
	cr_assert_gt(s.view_syscalls, s0.view_syscalls, "view_syscalls %llu, was %llu",
		     (unsigned long long)s.view_syscalls,
		     (unsigned long long)s0.view_syscalls);
	/* The whole of region 1 shared: repaired, 511 more pages converted. */
	TH_EQ(gmem_convert(g, 2 * TH_MIB, 2 * TH_MIB, GMEM_SHARED, NULL), 0);
	s = th_stats(g);
	TH_EQ(s.conversions, 2);
	TH_EQ(s.pages_converted, 512);
	TH_EQ(s.shared_pages, 512);
	TH_EQ(s.regions_repaired, 1);
	TH_EQ(s.regions_mixed, 0);
	/* Pins and refusals. */
	TH_EQ(gmem_pin(g, 2 * TH_MIB, PG), 0);
	TH_EQ(gmem_convert(g, 2 * TH_MIB, PG, GMEM_PRIVATE, NULL), -EAGAIN);
	s = th_stats(g);
	TH_EQ(s.pinned_pages, 1);
	TH_EQ(s.pins, 1);
	TH_EQ(s.refused, 1);
	TH_EQ(s.conversions, 2);
	gmem_close(g);
}

/* view_mappings is the real number of mappings of the host view. */
TH_TEST(api, stats_view_mappings)
{
	struct gmem *g = th_open(backend, SZ, 0);
	uint8_t *v = gmem_host(g, 0);
	static const struct { uint64_t gpa, len; int to; } steps[] = {
		{ 5 * PG, PG, GMEM_SHARED },             /* middle of region 0 */
		{ 0, PG, GMEM_SHARED },                  /* first page */
		{ SZ - PG, PG, GMEM_SHARED },            /* last page */
		{ 2 * TH_MIB - PG, 2 * PG, GMEM_SHARED },/* across regions 0, 1 */
		{ 5 * PG, PG, GMEM_PRIVATE },
		{ 0, SZ, GMEM_SHARED },
		{ 4 * TH_MIB, 2 * TH_MIB, GMEM_PRIVATE },
		{ 0, SZ, GMEM_PRIVATE },
	};
	struct gmem_stats s;

	TH_EQ(th_stats(g).view_mappings, th_vmas_in(v, SZ));
	for (unsigned i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		TH_EQ(gmem_convert(g, steps[i].gpa, steps[i].len, steps[i].to, NULL), 0);
		s = th_stats(g);
		cr_assert_eq(s.view_mappings, th_vmas_in(v, SZ),
			     "step %u: view_mappings %llu, VMAs in the host view %u", i,
			     (unsigned long long)s.view_mappings, th_vmas_in(v, SZ));
	}
	/* Pages 0, 2, .. 30 shared: 16 shared runs, 16 private ones (the
	 * last reaching the end). One mapping per run. */
	for (uint64_t p = 0; p < 32; p += 2)
		TH_EQ(gmem_convert(g, p * PG, PG, GMEM_SHARED, NULL), 0);
	s = th_stats(g);
	TH_EQ(s.view_mappings, 32);
	TH_EQ(s.view_mappings, th_vmas_in(v, SZ));
	cr_assert_gt(s.view_mapping_limit, 32);
	gmem_close(g);
}

/* ---- KVM view, info, errors, probe ------------------------------------ */

TH_TEST(api, kvm_view)
{
	struct gmem *g = th_open(backend, SZ, 0);
	const uint8_t *kv = gmem_kvm_view(g);
	const uint8_t *k;

	cr_assert_not_null(kv);
	cr_assert_neq((uintptr_t)kv, (uintptr_t)gmem_host(g, 0));
	th_fill(g, 3 * TH_MIB, 2 * PG, 9);
	k = gmem_kmap(g, 3 * TH_MIB + PG);
	cr_assert_not_null(k);
	/* Private data is readable through the KVM view. */
	cr_assert(!memcmp(kv + 3 * TH_MIB + PG, k, PG), "KVM view differs from the guest page");
	gmem_kunmap(g, (void *)k);
	TH_EQ(th_read_faults(kv + SZ - 1), 0);
	errno = 0;
	cr_assert_null(gmem_kvm_view(NULL));
	TH_EQ(errno, EINVAL);
	gmem_close(g);
}

TH_TEST(api, info)
{
	unsigned flags = GMEM_F_INIT_SHARED | GMEM_F_NO_PIN;
	struct gmem *g = th_open(backend, SZ, flags);
	struct gmem_info i;

	TH_EQ(gmem_info(g, &i), 0);
	TH_EQ(i.backend, backend);
	TH_EQ(i.huge, GMEM_HUGE_NONE);
	TH_EQ(i.flags, flags);
	TH_EQ(i.size, SZ);
	TH_EQ(i.granule, PG);
	cr_assert_geq(i.fd, 0, "fd %d", i.fd);
	cr_assert_geq(fcntl(i.fd, F_GETFD), 0, "info.fd %d is not open", i.fd);
	if (backend == GMEM_BACKEND_KVM) {
		cr_assert_geq(i.vm_fd, 0, "vm_fd %d", i.vm_fd);
		TH_EQ(i.gmem_flags & 1, 1); /* GUEST_MEMFD_FLAG_MMAP */
	} else {
		TH_EQ(i.vm_fd, -1);
		TH_EQ(i.gmem_flags, 0);
		TH_EQ(i.inplace, 0);
	}
	TH_EQ(gmem_info(g, NULL), -EINVAL);
	TH_EQ(gmem_info(NULL, &i), -EINVAL);
	gmem_close(g);
}

Test(api, strerror)
{
	static const int errs[] = { 0, -EINVAL, -EAGAIN, -EPERM, -ENOMEM, -EBUSY,
				    -EOPNOTSUPP, -EIO, -ENOSPC, -12345, 7 };

	for (unsigned i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		const char *m = gmem_strerror(errs[i]);

		cr_assert_not_null(m, "gmem_strerror(%d) is NULL", errs[i]);
		cr_assert_neq(m[0], 0, "gmem_strerror(%d) is empty", errs[i]);
	}
	cr_assert_str_neq(gmem_strerror(-EINVAL), gmem_strerror(-EAGAIN));
}

TH_TEST(api, last_error)
{
	struct gmem *g = (struct gmem *)&g;
	int ret = open_cfg(backend, 3 * TH_MIB, 0, &g);

	TH_EQ(ret, -EINVAL);
	cr_assert_not_null(gmem_last_error());
	cr_assert(strstr(gmem_last_error(), "size"), "last error \"%s\" does not name the size",
		  gmem_last_error());
	ret = open_cfg(backend, SZ, 1u << 9, &g);
	TH_EQ(ret, -EINVAL);
	cr_assert(strstr(gmem_last_error(), "flag"), "last error \"%s\" does not name flags",
		  gmem_last_error());
}

Test(api, probe)
{
	struct gmem_probe p;

	TH_EQ(gmem_probe(&p), 0);
	TH_EQ(gmem_probe(NULL), -EINVAL);
	cr_assert(p.kvm == 0 || p.kvm == 1, "kvm %d", p.kvm);
	if (p.kvm) {
		TH_EQ(p.kvm_api_version, KVM_API_VERSION);
		TH_EQ(p.gmem_mmap, !!(p.guest_memfd_flags & 1));
		TH_EQ(p.gmem_init_shared, !!(p.guest_memfd_flags & 2));
		TH_EQ(p.gmem_no_direct_map, !!(p.guest_memfd_flags & 4));
	}
	TH_EQ(p.auto_backend, th_kvm_unavailable() ? GMEM_BACKEND_MEMFD : GMEM_BACKEND_KVM);
	cr_assert(p.auto_huge <= GMEM_HUGE_HUGETLB, "auto_huge %d", p.auto_huge);
	cr_assert_gt(p.max_map_count, 0, "max_map_count %ld", p.max_map_count);
	cr_assert_geq(p.hugepages_total, 0, "hugepages_total %ld", p.hugepages_total);
	cr_assert_geq(p.hugepages_free, 0, "hugepages_free %ld", p.hugepages_free);
	cr_assert_neq(p.shmem_thp[0], 0, "shmem_thp mode unknown");
	cr_assert_lt(strlen(p.shmem_thp), sizeof(p.shmem_thp));
}

/* AUTO picks what probe says it picks. */
Test(api, open_auto)
{
	struct gmem_probe p;
	struct gmem_info i;
	struct gmem *g = NULL;
	int ret;

	TH_EQ(gmem_probe(&p), 0);
	ret = open_cfg(GMEM_BACKEND_AUTO, SZ, 0, &g);
	cr_assert_eq(ret, 0, "gmem_open(auto) = %d: %s", ret, gmem_last_error());
	TH_EQ(gmem_info(g, &i), 0);
	TH_EQ(i.backend, p.auto_backend);
	gmem_close(g);
	gmem_close(NULL); /* allowed */
}

/* The names the man pages give, and "unknown" outside the enums. */
Test(api, backend_huge_and_path_names)
{
	cr_assert_str_eq(gmem_backend_name(GMEM_BACKEND_AUTO), "auto");
	cr_assert_str_eq(gmem_backend_name(GMEM_BACKEND_KVM), "kvm");
	cr_assert_str_eq(gmem_backend_name(GMEM_BACKEND_MEMFD), "memfd");
	cr_assert_str_eq(gmem_backend_name((enum gmem_backend)99), "unknown");
	cr_assert_str_eq(gmem_huge_name(GMEM_HUGE_NONE), "4k");
	cr_assert_str_eq(gmem_huge_name(GMEM_HUGE_THP), "thp");
	cr_assert_str_eq(gmem_huge_name(GMEM_HUGE_HUGETLB), "hugetlb");
	cr_assert_str_eq(gmem_huge_name((enum gmem_huge)-1), "unknown");
	for (unsigned p = 0; p < GMEM_IO_NPATHS; p++) {
		const char *n = gmem_io_path_name((enum gmem_io_path)p);

		cr_assert(n && n[0] && strcmp(n, "unknown"), "path %u has no name", p);
		for (unsigned q = 0; q < p; q++)
			cr_assert_str_neq(n, gmem_io_path_name((enum gmem_io_path)q));
	}
	cr_assert_str_eq(gmem_io_path_name((enum gmem_io_path)GMEM_IO_NPATHS), "unknown");
}

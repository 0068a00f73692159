// SPDX-License-Identifier: MIT
/*
 * test_vm_accel.c - the micro-VMM on the test accelerator, on every host:
 * a driver posts what a guest would do (port I/O, the gv_abi.h hypercalls,
 * KVM_HC_MAP_GPA_RANGE, memory faults, MMIO, HLT, its own memory accesses)
 * and each exit is handled by the dispatch code KVM exits go through. The
 * hostile cases are a guest breaking every rule of the ABI: each gets an
 * error or a stopped guest, the VMM survives, and nothing changes that the
 * guest did not legitimately ask for.
 */
#include <errno.h>
#include <inttypes.h>
#include <linux/kvm_para.h>
#include <pthread.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmsnap.h"
#include "vt.h"

#define VT_ENC (1ull << 4)      /* KVM_MAP_GPA_RANGE_ENCRYPTED */

static struct gv_vm *vt_tvm_policy(unsigned ncpus, enum gv_fault_policy policy, bool start)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = ncpus, .policy = policy,
				 .accel = GV_ACCEL_TEST };
	struct gv_vm *vm;
	int ret = gv_vm_create(&cfg, &vm);

	cr_assert_eq(ret, 0, "gv_vm_create(test) = %d: %s", ret, gv_last_error());
	cr_assert_str_eq(gv_accel_name(vm), "test");
	if (start) {
		ret = gv_vm_start(vm);
		cr_assert_eq(ret, 0, "gv_vm_start = %d: %s", ret, gv_last_error());
	}
	return vm;
}

static struct gv_vm *vt_tvm(unsigned ncpus)
{
	return vt_tvm_policy(ncpus, GV_POLICY_CONVERT, true);
}

static int64_t vt_hc(struct gv_vm *vm, uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2)
{
	int64_t res = 0x7777;
	int ret = gv_test_hypercall(vm, 0, nr, a0, a1, a2, &res);

	cr_assert_eq(ret, 0, "hypercall %" PRIu64 "(%#" PRIx64 ", %#" PRIx64 ", %#" PRIx64
		     ") stopped the guest: %d (%s)", nr, a0, a1, a2, ret, gv_last_error());
	return res;
}

static int64_t vt_map(struct gv_vm *vm, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	uint64_t args[6] = { gpa, npages, attrs };
	int64_t res = 0x7777;
	int ret = gv_test_vmcall(vm, 0, KVM_HC_MAP_GPA_RANGE, args, &res);

	cr_assert_eq(ret, 0, "MAP_GPA_RANGE stopped the guest: %d (%s)", ret, gv_last_error());
	return res;
}

static struct gv_result vt_wait(struct gv_vm *vm)
{
	struct gv_result res;

	cr_assert_eq(gv_vm_wait(vm, &res), 0);
	return res;
}

Test(accel, refuses_a_vm_that_is_not_on_it)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1, .accel = 7 };
	struct gv_vm *vm;
	uint32_t v;

	cr_assert_eq(gv_vm_create(&cfg, &vm), -EINVAL, "unknown accelerator accepted");
	vm = vt_tvm_policy(1, GV_POLICY_CONVERT, false);
	/* Not started: no vCPU thread takes exits. */
	TH_EQ(gv_test_out(vm, 0, GV_PORT_CONSOLE, 1, 'x'), -ESRCH);
	cr_assert_eq(gv_vm_start(vm), 0);
	TH_EQ(gv_test_out(vm, 1, GV_PORT_CONSOLE, 1, 'x'), -EINVAL);   /* no vCPU 1 */
	TH_EQ(gv_test_out(vm, 0, GV_PORT_CONSOLE, 3, 'x'), -EINVAL);   /* no 3-byte OUT */
	TH_EQ(gv_test_in(vm, 0, GV_PORT_CONSOLE, 1, NULL), -EINVAL);
	TH_EQ(gv_test_mmio(vm, 0, 0, true, &v, 9), -EINVAL);
	TH_EQ(gv_test_mem_write(vm, VT_MEM - 1, "ab", 2), -EINVAL);
	gv_vm_destroy(vm);
}

Test(accel, console_and_exit_port)
{
	struct gv_vm *vm = vt_tvm(1);
	const char *msg = "hello from nobody\n";
	struct gv_result res;

	TH_EQ(gv_test_outs(vm, 0, GV_PORT_CONSOLE, 1, msg, (uint32_t)strlen(msg)), 0);
	TH_EQ(gv_test_out(vm, 0, GV_PORT_CONSOLE, 1, 'Z'), 0);
	TH_EQ(gv_test_out(vm, 0, GV_PORT_EXIT, 4, 7), 0);
	res = vt_wait(vm);
	vt_expect_exit(vm, &res, 7);
	vt_console_has(vm, "hello from nobody\nZ");
	/* The guest is gone: nothing more runs. */
	TH_EQ(gv_test_out(vm, 0, GV_PORT_CONSOLE, 1, 'x'), -ESRCH);
	gv_vm_destroy(vm);
}

Test(accel, port_without_a_device_stops_the_guest)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gv_result res;
	uint32_t v;

	TH_EQ(gv_test_in(vm, 0, 0x3f8, 1, &v), -ENODEV);
	res = vt_wait(vm);
	TH_EQ(res.why, GV_STOP_FAULT);
	TH_EQ(res.err, -ENODEV);
	cr_assert(strstr(res.report, "port read from 0x3f8"), "report: %s", res.report);
	gv_vm_destroy(vm);
}

Test(accel, mmio_outside_ram_stops_the_guest_with_registers)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gv_result res;
	uint64_t v = 0x1122;

	TH_EQ(gv_test_mmio(vm, 0, 0xfee00000ull, true, &v, 4), -EFAULT);
	res = vt_wait(vm);
	TH_EQ(res.why, GV_STOP_FAULT);
	cr_assert(strstr(res.report, "MMIO write of 4 bytes at gpa 0xfee00000"),
		  "report: %s", res.report);
	cr_assert(strstr(res.report, "registers"), "no registers in: %s", res.report);
	gv_vm_destroy(vm);
}

Test(accel, share_hypercalls_and_what_device_code_sees)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gmem *g = gv_vm_gmem(vm);
	uint8_t buf[64];
	uint64_t sum = 0;

	memset(buf, 3, sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		sum += buf[i];
	/* The guest writes a private page: device code cannot see it. */
	TH_EQ(gv_test_mem_write(vm, 0x200000, buf, sizeof(buf)), 0);
	TH_EQ(vt_hc(vm, GV_HC_STATE, 0x200000, 0, 0), GMEM_PRIVATE);
	TH_EQ(vt_hc(vm, GV_HC_HOST_READ, 0x200000, sizeof(buf), 0), -EFAULT);
	/* Shared, it can: same bytes, converted in place. */
	TH_EQ(vt_hc(vm, GV_HC_SHARE, 0x200000, TH_PAGE, 0), 0);
	TH_EQ(gmem_state(g, 0x200000), GMEM_SHARED);
	TH_EQ(vt_hc(vm, GV_HC_HOST_READ, 0x200000, sizeof(buf), 0), sum);
	TH_EQ(vt_hc(vm, GV_HC_UNSHARE, 0x200000, TH_PAGE, 0), 0);
	TH_EQ(vt_hc(vm, GV_HC_HOST_READ, 0x200000, sizeof(buf), 0), -EFAULT);
	TH_EQ(th_stats(g).conversions, 2);
	TH_EQ(th_stats(g).shared_pages, 0);
	gv_vm_destroy(vm);
}

Test(accel, hostile_hypercall_arguments_change_nothing)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gmem *g = gv_vm_gmem(vm);
	static const struct { uint64_t nr, a0, a1, a2; int64_t want; } bad[] = {
		{ GV_HC_SHARE, VT_MEM, TH_PAGE, 0, -EINVAL },           /* past RAM     */
		{ GV_HC_SHARE, VT_MEM - TH_PAGE, 2 * TH_PAGE, 0, -EINVAL }, /* runs past */
		{ GV_HC_SHARE, TH_PAGE, UINT64_MAX - TH_PAGE + 1, 0, -EINVAL }, /* wraps */
		{ GV_HC_SHARE, 0x201, TH_PAGE, 0, -EINVAL },            /* unaligned    */
		{ GV_HC_SHARE, 0, 0, 0, -EINVAL },                      /* empty        */
		{ GV_HC_UNSHARE, UINT64_MAX & ~0xfffull, TH_PAGE, 0, -EINVAL },
		{ GV_HC_STATE, VT_MEM, 0, 0, -EINVAL },
		{ GV_HC_IO_PIN, 0, TH_PAGE, 0, -EPERM },                /* private page */
		{ GV_HC_IO_PIN, VT_MEM, TH_PAGE, 0, -EINVAL },
		{ GV_HC_IO_UNPIN, 0, TH_PAGE, 0, -EINVAL },             /* not pinned   */
		{ GV_HC_HOSTIO, 0x200000, 16, 99, -EINVAL },            /* unknown op   */
		{ GV_HC_HOSTIO, 0x200000, GV_HOSTIO_MAX + 1, GV_HOSTIO_UPPER, -EINVAL },
		{ GV_HC_HOSTIO, VT_MEM - 8, 16, GV_HOSTIO_UPPER, -EINVAL },
		{ GV_HC_HOST_READ, 0x200000, 0, 0, -EINVAL },
		{ GV_HC_HOST_READ, 0x200000, GV_HOST_READ_MAX + 1, 0, -EINVAL },
		{ GV_HC_HOST_READ, VT_MEM - 8, 16, 0, -EINVAL },
		{ 0, 0, 0, 0, -ENOSYS },
		{ 0xffffffffffffull, 0, 0, 0, -ENOSYS },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t got = vt_hc(vm, bad[i].nr, bad[i].a0, bad[i].a1, bad[i].a2);

		cr_assert_eq(got, bad[i].want, "case %zu: hypercall %" PRIu64 " = %" PRId64
			     ", want %" PRId64, i, bad[i].nr, got, bad[i].want);
	}
	TH_EQ(th_stats(g).conversions, 0);
	TH_EQ(th_stats(g).shared_pages, 0);
	TH_EQ(th_stats(g).pinned_pages, 0);
	/* And the guest goes on. */
	TH_EQ(vt_hc(vm, GV_HC_SHARE, 0, TH_PAGE, 0), 0);
	gv_vm_destroy(vm);
}

Test(accel, pin_loop_then_unshare_is_refused_until_unpinned)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gmem *g = gv_vm_gmem(vm);
	const unsigned loops = 3000;

	TH_EQ(vt_hc(vm, GV_HC_SHARE, 0x300000, 2 * TH_PAGE, 0), 0);
	for (unsigned i = 0; i < loops; i++)
		TH_EQ(vt_hc(vm, GV_HC_IO_PIN, 0x300000, TH_PAGE, 0), 0);
	TH_EQ(th_stats(g).pinned_pages, 1);
	/* A DMA is in flight: the guest cannot take the page back. */
	TH_EQ(vt_hc(vm, GV_HC_UNSHARE, 0x300000, 2 * TH_PAGE, 0), -EAGAIN);
	TH_EQ(gmem_state(g, 0x301000), GMEM_SHARED);   /* all or nothing */
	for (unsigned i = 0; i < loops; i++)
		TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, 0x300000, TH_PAGE, 0), 0);
	TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, 0x300000, TH_PAGE, 0), -EINVAL);
	TH_EQ(vt_hc(vm, GV_HC_UNSHARE, 0x300000, 2 * TH_PAGE, 0), 0);
	TH_EQ(th_stats(g).pinned_pages, 0);
	TH_EQ(th_stats(g).shared_pages, 0);
	gv_vm_destroy(vm);
}

/* The guest releases only the pins it took. A device's pin (here the host's
 * own gmem_pin, as an in-place block request holds one) is not the guest's
 * to drop: if it could, it would unshare the page under the device's I/O. */
Test(accel, guest_cannot_release_a_pin_it_did_not_take)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gmem *g = gv_vm_gmem(vm);

	TH_EQ(vt_hc(vm, GV_HC_SHARE, 0x300000, 2 * TH_PAGE, 0), 0);
	TH_EQ(gmem_pin(g, 0x300000, TH_PAGE), 0);              /* the device's DMA */
	TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, 0x300000, TH_PAGE, 0), -EINVAL);
	TH_EQ(th_stats(g).pinned_pages, 1);
	TH_EQ(vt_hc(vm, GV_HC_UNSHARE, 0x300000, TH_PAGE, 0), -EAGAIN);
	TH_EQ(gmem_state(g, 0x300000), GMEM_SHARED);

	/* Its own pin it may drop, once; the device's stays. */
	TH_EQ(vt_hc(vm, GV_HC_IO_PIN, 0x300000, TH_PAGE, 0), 0);
	TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, 0x300000, TH_PAGE, 0), 0);
	TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, 0x300000, TH_PAGE, 0), -EINVAL);
	TH_EQ(th_stats(g).pinned_pages, 1);

	/* A pin is released as it was taken, not piecewise. */
	TH_EQ(vt_hc(vm, GV_HC_IO_PIN, 0x300000, 2 * TH_PAGE, 0), 0);
	TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, 0x301000, TH_PAGE, 0), -EINVAL);
	TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, 0x300000, TH_PAGE, 0), -EINVAL);
	TH_EQ(th_stats(g).pinned_pages, 2);
	TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, 0x300000, 2 * TH_PAGE, 0), 0);
	TH_EQ(th_stats(g).pinned_pages, 1);

	TH_EQ(gmem_unpin(g, 0x300000, TH_PAGE), 0);
	TH_EQ(vt_hc(vm, GV_HC_UNSHARE, 0x300000, 2 * TH_PAGE, 0), 0);
	gv_vm_destroy(vm);
}

/* The guest's DMA table is bounded, whatever the RAM size: at most
 * GV_DMA_RANGES ranges held at once, each at most GV_DMA_MAX_BYTES; past
 * either the pin is refused and nothing is pinned. Pinning a held range
 * again only counts up. */
Test(accel, guest_pins_are_limited_per_vm)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gmem *g = gv_vm_gmem(vm);
	const uint64_t base = 0x100000;
	struct gv_limits lim;

	TH_EQ(vt_hc(vm, GV_HC_SHARE, base, GV_DMA_MAX_BYTES + TH_PAGE, 0), 0);
	TH_EQ(vt_hc(vm, GV_HC_IO_PIN, base, GV_DMA_MAX_BYTES + TH_PAGE, 0), -E2BIG);
	TH_EQ(th_stats(g).pinned_pages, 0);
	for (uint64_t i = 0; i < GV_DMA_RANGES; i++)
		TH_EQ(vt_hc(vm, GV_HC_IO_PIN, base + i * TH_PAGE, TH_PAGE, 0), 0);
	TH_EQ(vt_hc(vm, GV_HC_IO_PIN, base + GV_DMA_RANGES * TH_PAGE, TH_PAGE, 0), -ENOSPC);
	TH_EQ(th_stats(g).pinned_pages, GV_DMA_RANGES);
	TH_EQ(vt_hc(vm, GV_HC_IO_PIN, base, TH_PAGE, 0), 0);        /* held: counts up */
	gv_vm_limits(vm, &lim);
	TH_EQ(lim.dma_ranges, GV_DMA_RANGES);
	TH_EQ(lim.dma_ranges_held, GV_DMA_RANGES);
	TH_EQ(lim.dma_ranges_peak, GV_DMA_RANGES);
	TH_EQ(lim.dma_refused, 2);

	TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, base, TH_PAGE, 0), 0);
	TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, base, TH_PAGE, 0), 0);
	TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, base, TH_PAGE, 0), -EINVAL);
	TH_EQ(vt_hc(vm, GV_HC_IO_PIN, base + GV_DMA_RANGES * TH_PAGE, TH_PAGE, 0), 0);
	gv_vm_limits(vm, &lim);
	TH_EQ(lim.dma_ranges_held, GV_DMA_RANGES);

	/* One range pinned again and again: up to GV_DMA_PINS_MAX. */
	for (unsigned i = 1; i < GV_DMA_PINS_MAX; i++)
		TH_EQ(vt_hc(vm, GV_HC_IO_PIN, base + TH_PAGE, TH_PAGE, 0), 0);
	TH_EQ(vt_hc(vm, GV_HC_IO_PIN, base + TH_PAGE, TH_PAGE, 0), -EOVERFLOW);
	gv_vm_limits(vm, &lim);
	TH_EQ(lim.dma_refused, 3);
	TH_EQ(lim.dma_pins_max, GV_DMA_PINS_MAX);
	/* Whatever the guest still holds is released with the VM. */
	gv_vm_destroy(vm);
}

Test(accel, hostio_transforms_private_memory_and_leaves_it_private)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gmem *g = gv_vm_gmem(vm);
	char text[] = "a secret the device may transform";
	char got[sizeof(text)];
	uint64_t gpa = 0x200ff0;        /* spans two pages */

	TH_EQ(gv_test_mem_write(vm, gpa, text, sizeof(text)), 0);
	TH_EQ(vt_hc(vm, GV_HC_SHARE, 0x201000, TH_PAGE, 0), 0);  /* second page shared */
	TH_EQ(vt_hc(vm, GV_HC_HOSTIO, gpa, sizeof(text) - 1, GV_HOSTIO_UPPER), 0);
	TH_EQ(gv_test_mem_read(vm, gpa, got, sizeof(got)), 0);
	cr_assert_str_eq(got, "A SECRET THE DEVICE MAY TRANSFORM");
	/* Each page in the state it had. */
	TH_EQ(gmem_state(g, 0x200000), GMEM_PRIVATE);
	TH_EQ(gmem_state(g, 0x201000), GMEM_SHARED);
	TH_EQ(th_stats(g).pinned_pages, 0);
	gv_vm_destroy(vm);
}

Test(accel, map_gpa_range_converts_like_a_linux_guest)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gmem *g = gv_vm_gmem(vm);
	struct gv_vcpu_state st;
	struct gv_paths p;

	TH_EQ(vt_map(vm, 0x100000, 16, 0), 0);                  /* decrypted: shared */
	for (uint64_t a = 0x100000; a < 0x110000; a += TH_PAGE)
		TH_EQ(gmem_state(g, a), GMEM_SHARED);
	TH_EQ(gmem_state(g, 0x110000), GMEM_PRIVATE);
	TH_EQ(vt_map(vm, 0x104000, 4, VT_ENC), 0);              /* encrypted: private */
	TH_EQ(gmem_state(g, 0x104000), GMEM_PRIVATE);
	TH_EQ(gmem_state(g, 0x108000), GMEM_SHARED);
	TH_EQ(vt_map(vm, 0x200000, 1, 1 /* 2M size hint */), 0);
	TH_EQ(gmem_state(g, 0x200000), GMEM_SHARED);
	/* The value reaches the guest's rax, as KVM completes the call. */
	TH_EQ(vt_map(vm, 0x100001, 1, 0), -EINVAL);
	cr_assert_eq(gv_vm_pause(vm), 0);
	cr_assert_eq(gv_vcpu_get_state(vm, 0, &st), 0);
	TH_EQ((int64_t)st.regs.rax, -EINVAL);
	cr_assert_eq(gv_vm_resume(vm), 0);
	gv_vm_paths(vm, &p);
	cr_assert(p.map_gpa_range);
	TH_EQ(p.map_gpa_ranges, 3);
	gv_vm_destroy(vm);
}

Test(accel, map_gpa_range_hostile_arguments)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gmem *g = gv_vm_gmem(vm);
	uint64_t pages = VT_MEM / TH_PAGE;
	static uint64_t args[6];
	int64_t res;

	TH_EQ(vt_map(vm, 0x100800, 1, 0), -EINVAL);             /* unaligned       */
	TH_EQ(vt_map(vm, 0x100000, 0, 0), -EINVAL);             /* no pages        */
	TH_EQ(vt_map(vm, 0, pages + 1, 0), -EINVAL);            /* past RAM        */
	TH_EQ(vt_map(vm, TH_PAGE, pages, 0), -EINVAL);
	TH_EQ(vt_map(vm, TH_PAGE, UINT64_MAX, 0), -EINVAL);     /* pages * 4K wraps */
	TH_EQ(vt_map(vm, UINT64_MAX & ~0xfffull, 1, 0), -EINVAL);
	TH_EQ(vt_map(vm, 0, 1, 1ull << 5), -EINVAL);            /* unknown bit     */
	TH_EQ(vt_map(vm, 0, 1, 3), -EINVAL);                    /* no such size    */
	TH_EQ(gv_test_vmcall(vm, 0, 9999, args, &res), 0);
	TH_EQ(res, -KVM_ENOSYS);
	TH_EQ(th_stats(g).conversions, 0);
	/* A pinned page cannot be taken private: -EAGAIN, nothing converted. */
	TH_EQ(vt_map(vm, 0x100000, 2, 0), 0);
	TH_EQ(vt_hc(vm, GV_HC_IO_PIN, 0x101000, TH_PAGE, 0), 0);
	TH_EQ(vt_map(vm, 0x100000, 2, VT_ENC), -EAGAIN);
	TH_EQ(gmem_state(g, 0x100000), GMEM_SHARED);
	TH_EQ(vt_hc(vm, GV_HC_IO_UNPIN, 0x101000, TH_PAGE, 0), 0);
	TH_EQ(vt_map(vm, 0x100000, 2, VT_ENC), 0);
	gv_vm_destroy(vm);
}

Test(accel, memory_fault_exits_convert_under_the_convert_policy)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gmem *g = gv_vm_gmem(vm);
	struct gv_result res;

	/* A shared access to private memory: converted, the guest resumes. */
	TH_EQ(gv_test_memory_fault(vm, 0, 0x180010, 0x2000, false), 0);
	TH_EQ(gmem_state(g, 0x180000), GMEM_SHARED);
	TH_EQ(gmem_state(g, 0x181000), GMEM_SHARED);
	TH_EQ(gmem_state(g, 0x182000), GMEM_SHARED);  /* the range's last byte is here */
	TH_EQ(gmem_state(g, 0x183000), GMEM_PRIVATE);
	TH_EQ(gv_test_memory_fault(vm, 0, 0x181000, TH_PAGE, true), 0);
	TH_EQ(gmem_state(g, 0x181000), GMEM_PRIVATE);
	/* A fault outside RAM is the guest's bug: it stops. */
	TH_EQ(gv_test_memory_fault(vm, 0, VT_MEM, TH_PAGE, false), -EFAULT);
	res = vt_wait(vm);
	TH_EQ(res.why, GV_STOP_FAULT);
	cr_assert(strstr(res.report, "outside guest RAM"), "report: %s", res.report);
	gv_vm_destroy(vm);
}

Test(accel, memory_fault_exit_under_the_stop_policy)
{
	struct gv_vm *vm = vt_tvm_policy(1, GV_POLICY_STOP, true);
	struct gv_result res;

	TH_EQ(gv_test_memory_fault(vm, 0, 0x180000, TH_PAGE, false), -EFAULT);
	res = vt_wait(vm);
	TH_EQ(res.why, GV_STOP_FAULT);
	cr_assert(strstr(res.report, "memory-fault policy: stop"), "report: %s", res.report);
	TH_EQ(gmem_state(gv_vm_gmem(vm), 0x180000), GMEM_PRIVATE);
	gv_vm_destroy(vm);
}

Test(accel, every_vcpu_halting_ends_the_guest)
{
	struct gv_vm *vm = vt_tvm(2);
	struct gv_result res;

	TH_EQ(gv_test_halt(vm, 1), 1);
	TH_EQ(gv_test_halt(vm, 1), -ESRCH);     /* a halted vCPU takes nothing */
	TH_EQ(gv_test_out(vm, 0, GV_PORT_CONSOLE, 1, 'k'), 0);
	TH_EQ(gv_test_halt(vm, 0), 1);
	res = vt_wait(vm);
	TH_EQ(res.why, GV_STOP_HALT);
	gv_vm_destroy(vm);
}

Test(accel, pause_holds_exits_and_state_survives)
{
	struct gv_vm *vm = vt_tvm(1);
	struct gv_vcpu_state st;

	cr_assert_eq(gv_vm_pause(vm), 0);
	cr_assert_eq(gv_vcpu_get_state(vm, 0, &st), 0);
	st.regs.rbx = 0xfeedface;
	st.sregs.cr3 = 0x2000;
	cr_assert_eq(gv_vcpu_set_state(vm, 0, &st), 0);
	cr_assert_eq(gv_vm_resume(vm), 0);
	TH_EQ(vt_hc(vm, GV_HC_STATE, 0, 0, 0), GMEM_PRIVATE);
	cr_assert_eq(gv_vm_pause(vm), 0);
	cr_assert_eq(gv_vcpu_get_state(vm, 0, &st), 0);
	TH_EQ(st.regs.rbx, 0xfeedface);
	TH_EQ(st.sregs.cr3, 0x2000);
	TH_EQ(st.regs.rax, GMEM_PRIVATE);       /* the IN completed into eax */
	TH_EQ(st.regs.rdx, GV_PORT_HCALL);
	cr_assert_eq(gv_vm_resume(vm), 0);
	/* Running again (it has taken an exit since): not for reading. */
	TH_EQ(vt_hc(vm, GV_HC_STATE, 0, 0, 0), GMEM_PRIVATE);
	TH_EQ(gv_vcpu_get_state(vm, 0, &st), -EBUSY);
	gv_vm_destroy(vm);
}

struct vt_racer {
	struct gv_vm *vm;
	unsigned cpu;
	unsigned rounds;
	int failures;
};

static void *vt_racer_run(void *arg)
{
	struct vt_racer *r = arg;
	uint64_t gpa = 0x200000 + (uint64_t)r->cpu * 0x10000;

	for (unsigned i = 0; i < r->rounds; i++) {
		int64_t a = -1, b = -1;

		if (gv_test_hypercall(r->vm, r->cpu, GV_HC_SHARE, gpa, 4 * TH_PAGE, 0, &a) ||
		    gv_test_hypercall(r->vm, r->cpu, GV_HC_UNSHARE, gpa, 4 * TH_PAGE, 0, &b) ||
		    a || b)
			r->failures++;
	}
	return NULL;
}

Test(accel, vcpus_convert_concurrently)
{
	struct gv_vm *vm = vt_tvm(2);
	struct vt_racer r[2] = { { vm, 0, 300, 0 }, { vm, 1, 300, 0 } };
	pthread_t t[2];

	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, vt_racer_run, &r[i]), 0);
	/* Pause and resume under the load: exits wait, none are lost. */
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(gv_vm_pause(vm), 0);
		cr_assert_eq(gv_vm_resume(vm), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	TH_EQ(r[0].failures, 0);
	TH_EQ(r[1].failures, 0);
	TH_EQ(th_stats(gv_vm_gmem(vm)).conversions, 4 * 300);
	TH_EQ(th_stats(gv_vm_gmem(vm)).shared_pages, 0);
	gv_vm_destroy(vm);
}

Test(accel, snapshot_in_the_middle_restores_memory_states_and_vcpus)
{
	char path[64] = "/tmp/gmem-accel-snap-XXXXXX";
	struct gv_config cfg = { .policy = GV_POLICY_CONVERT, .accel = GV_ACCEL_TEST };
	struct gv_vm *vm = vt_tvm(2), *vm2;
	const char *secret = "private words survive the snapshot";
	char got[64] = { 0 };
	struct gv_vcpu_state st;
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	TH_EQ(gv_test_mem_write(vm, 0x250000, secret, strlen(secret)), 0);
	TH_EQ(vt_map(vm, 0x300000, 3, 0), 0);
	TH_EQ(gv_test_mem_write(vm, 0x301000, "shared", 6), 0);
	TH_EQ(vt_hc(vm, GV_HC_STATE, 0x301000, 0, 0), GMEM_SHARED);     /* rax = 1 */
	cr_assert_eq(gv_vm_snapshot_save(vm, path, NULL), 0, "save: %s", gv_last_error());
	/* The guest goes on after the save, and the snapshot does not see it. */
	TH_EQ(vt_map(vm, 0x300000, 3, VT_ENC), 0);
	gv_vm_destroy(vm);

	cr_assert_eq(gv_vm_snapshot_restore(&cfg, path, NULL, &vm2), 0, "restore: %s",
		     gv_last_error());
	TH_EQ(gv_vm_ncpus(vm2), 2);
	cr_assert_eq(gv_vcpu_get_state(vm2, 0, &st), 0);
	TH_EQ(st.regs.rax, GMEM_SHARED);
	TH_EQ(st.regs.rdx, GV_PORT_HCALL);
	cr_assert_eq(gv_vm_start(vm2), 0);
	TH_EQ(gv_test_mem_read(vm2, 0x250000, got, strlen(secret)), 0);
	cr_assert_str_eq(got, secret);
	TH_EQ(gmem_state(gv_vm_gmem(vm2), 0x250000), GMEM_PRIVATE);
	for (uint64_t a = 0x300000; a < 0x303000; a += TH_PAGE)
		TH_EQ(gmem_state(gv_vm_gmem(vm2), a), GMEM_SHARED);
	cr_assert_eq(memcmp(gmem_host(gv_vm_gmem(vm2), 0x301000), "shared", 6), 0);
	/* ... and runs on. */
	TH_EQ(vt_hc(vm2, GV_HC_UNSHARE, 0x300000, 3 * TH_PAGE, 0), 0);
	TH_EQ(th_stats(gv_vm_gmem(vm2)).shared_pages, 0);
	gv_vm_destroy(vm2);
	unlink(path);
	strcat(path, GV_SNAP_VM_SUFFIX);
	unlink(path);
}

/* Loading needs no execution: the image, the boot structures and each
 * vCPU's start state are the VMM's work, checked here on every host. */
static int vt_quiet_in(struct gv_vcpu *vcpu, uint16_t port, void *data, unsigned size,
		       void *ctx)
{
	(void)vcpu, (void)port, (void)ctx;
	memset(data, 0, size);
	return 0;
}

/* Port devices have no saved state: a VM with one beyond the built-in
 * ports is not saved (naming the device, nothing written), and runs on. */
Test(accel, a_port_device_without_saved_state_refuses_the_save)
{
	struct gv_pio_dev dev = { .name = "stateless", .base = 0x520, .len = 8,
				  .in = vt_quiet_in };
	struct gv_vm *vm = vt_tvm_policy(1, GV_POLICY_CONVERT, false);
	char dir[] = "/tmp/gmem-accel-nosave-XXXXXX", never[64];
	uint32_t v = 1;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(never, sizeof(never), "%s/snap", dir);
	TH_EQ(gv_vm_add_pio(vm, &dev), 0);
	cr_assert_eq(gv_vm_start(vm), 0);
	TH_EQ(gv_vm_snapshot_save(vm, never, NULL), -EOPNOTSUPP);
	cr_assert(strstr(gv_last_error(), "stateless"), "message: %s", gv_last_error());
	TH_EQ(access(never, F_OK), -1);
	cr_assert(!gv_vm_stopped(vm), "the guest did not go on");
	TH_EQ(gv_test_in(vm, 0, 0x520, 4, &v), 0);
	TH_EQ(v, 0);
	gv_vm_destroy(vm);
	TH_EQ(rmdir(dir), 0);                   /* empty: nothing was written */
}

Test(accel, loads_a_guest_program_and_boots_its_vcpus)
{
	struct gv_vm *vm = vt_tvm_policy(2, GV_POLICY_CONVERT, false);
	struct gmem *g = gv_vm_gmem(vm);
	struct gv_elf_image img;
	struct gv_vcpu_state st;
	uint64_t pml4 = 0, pde = 0, gdt[3] = { 0 };
	uint8_t *elf, *seg;
	size_t len;

	elf = vt_read(vt_guest_path("hello"), &len);
	cr_assert_eq(gv_elf_parse(elf, len, VT_MEM, 2, &img), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vm_load_elf(vm, elf, len), 0, "%s", gv_last_error());
	TH_EQ(gv_vm_load_elf(vm, elf, len), -EBUSY);            /* once per VM */
	/* The image went into private memory, byte for byte. */
	seg = malloc(img.seg[0].filesz);
	cr_assert_not_null(seg);
	TH_EQ(gmem_state(g, img.seg[0].gpa), GMEM_PRIVATE);
	TH_EQ(gv_test_mem_read(vm, img.seg[0].gpa, seg, img.seg[0].filesz), 0);
	cr_assert_eq(memcmp(seg, elf + img.seg[0].offset, img.seg[0].filesz), 0);
	/* Identity paging with 2 MiB pages, a flat GDT. */
	TH_EQ(gv_hv_read(vm, 0x2000, &pml4, 8), 0);
	TH_EQ(pml4, 0x3000 | 3);
	TH_EQ(gv_hv_read(vm, 0x4000 + 8 * 3, &pde, 8), 0);
	TH_EQ(pde, 3 * GMEM_REGION_SIZE | 0x83);
	TH_EQ(gv_hv_read(vm, 0x1000, gdt, sizeof(gdt)), 0);
	TH_EQ(gdt[1], 0x00af9b000000ffffull);
	for (unsigned cpu = 0; cpu < 2; cpu++) {
		cr_assert_eq(gv_vcpu_get_state(vm, cpu, &st), 0);
		TH_EQ(st.regs.rip, img.entry);
		TH_EQ(st.regs.rdi, cpu);
		TH_EQ(st.regs.rsi, 2);
		TH_EQ(st.regs.rdx, VT_MEM);
		TH_EQ(st.regs.rsp, VT_MEM - cpu * GV_STACK_SIZE);
		TH_EQ(st.sregs.cr3, 0x2000);
		TH_EQ(st.sregs.cs.selector, 0x08);
		TH_EQ(st.sregs.cs.l, 1);
		cr_assert(st.sregs.efer & (1u << 10), "long mode not active: efer %#llx",
			  (unsigned long long)st.sregs.efer);
	}
	free(seg);
	free(elf);
	gv_vm_destroy(vm);
}

Test(accel, load_errors_leave_the_vm_usable)
{
	struct gv_vm *vm = vt_tvm_policy(1, GV_POLICY_CONVERT, false);
	uint8_t junk[256] = { 0x7f, 'E', 'L', 'F' };

	TH_EQ(gv_vm_load_file(vm, "/nonexistent/guest.elf"), -ENOENT);
	cr_assert(strstr(gv_last_error(), "/nonexistent/guest.elf"), "%s", gv_last_error());
	TH_EQ(gv_vm_load_elf(vm, junk, sizeof(junk)), -ENOEXEC);
	TH_EQ(gv_vm_load_file(vm, "/dev/null"), -ENOEXEC);
	cr_assert_eq(gv_vm_load_file(vm, vt_guest_path("hello")), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vm_start(vm), 0);
	TH_EQ(gv_vm_start(vm), -EBUSY);
	TH_EQ(gv_test_out(vm, 0, GV_PORT_EXIT, 4, 0), 0);
	gv_vm_destroy(vm);
}

/* ---- gmem vm --accel test --script ---------------------------------------- */

/* Run the CLI on a script; its exit status, its stdout+stderr in @out. */
static int vt_cli_script_opts(const char *script, const char *opts, char *out, size_t size,
			      unsigned cpus)
{
	char cmd[1024];
	FILE *p;
	size_t n;
	int st;

	snprintf(cmd, sizeof(cmd), "%s vm --accel test --cpus %u %s --script %s/%s 2>&1",
		 GMEM_CLI, cpus, opts, GMEM_VM_SCRIPTS, script);
	p = popen(cmd, "r");
	cr_assert_not_null(p, "popen %s", cmd);
	n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	st = pclose(p);
	cr_assert(WIFEXITED(st), "%s: did not exit (%#x)", cmd, st);
	return WEXITSTATUS(st);
}

static int vt_cli_script(const char *script, char *out, size_t size, unsigned cpus)
{
	return vt_cli_script_opts(script, "", out, size, cpus);
}

/* The VM report names every per-VM limit and what the guest held of it. */
Test(accel, cli_report_shows_the_guest_limits)
{
	char out[16384];

	TH_EQ(vt_cli_script_opts("dma-limits.gvs", "--verbose", out, sizeof(out), 1), 0);
	cr_assert(strstr(out, "vm: limits: DMA pins 64 ranges of at most 1024 KiB, 4096 pins "
			      "each (held 1, peak 2, refused 1)"), "output:\n%s", out);
	cr_assert(strstr(out, "vm: limits: host-view mappings "), "output:\n%s", out);
	cr_assert(strstr(out, "HOSTIO at most 1024 KiB, HOST_READ 4096 B"), "output:\n%s", out);
	cr_assert_null(strstr(out, "virtio queue"), "no disk, yet:\n%s", out);
}

/* The virtio disk's limits: the queue the guest set up and its most, the
 * longest request (GV_VBLK_SIZE_MAX) and its segments, one ring a notify. */
Test(accel, cli_report_shows_the_virtio_limits)
{
	char out[16384], opts[128], image[] = "/tmp/gmem-accel-cli-XXXXXX";
	int fd = mkstemp(image);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(opts, sizeof(opts), "--verbose --virtio-disk %s", image);
	TH_EQ(vt_cli_script_opts("virtio-limits.gvs", opts, out, sizeof(out), 1), 0);
	unlink(image);
	cr_assert(strstr(out, "vm: limits: virtio queue 8 of at most 256 entries, requests of "
			      "at most 1024 KiB in at most 8 segments, one ring per notify (most "
			      "served by one notify: 0)"), "output:\n%s", out);
}

Test(accel, cli_script_runs_a_session_to_the_guest_exit)
{
	char out[8192];

	TH_EQ(vt_cli_script("session.gvs", out, sizeof(out), 2), 3);
	cr_assert(strstr(out, "session.gvs:6: host_read = 532"), "output:\n%s", out);
	cr_assert(strstr(out, "map = -22 (Invalid argument)"), "output:\n%s", out);
	cr_assert(strstr(out, "OK\n"), "console missing:\n%s", out);
	cr_assert_null(strstr(out, "session.gvs:36"), "ran past the exit:\n%s", out);
}

Test(accel, cli_script_failed_expect_is_one_line_and_status_1)
{
	char out[4096];

	TH_EQ(vt_cli_script("bad-expect.gvs", out, sizeof(out), 1), 1);
	cr_assert(strstr(out, "bad-expect.gvs:2: got 0, want 1"), "output:\n%s", out);
	TH_EQ(vt_cli_script("no-such-file.gvs", out, sizeof(out), 1), 1);
	cr_assert(strstr(out, "No such file"), "output:\n%s", out);
}

Test(accel, cli_virtio_disk_is_found_and_reported)
{
	char out[16384], opts[128], image[] = "/tmp/gmem-accel-cli-XXXXXX";
	int fd = mkstemp(image);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(opts, sizeof(opts), "--verbose --virtio-disk %s --io-path bounce", image);
	TH_EQ(vt_cli_script_opts("virtio-probe.gvs", opts, out, sizeof(out), 1), 0);
	cr_assert(strstr(out, "2048 sectors at MMIO 0xfeb00000, I/O path bounce"), "output:\n%s",
		  out);
	cr_assert(strstr(out, "vm: virtio disk: 0 reads"), "output:\n%s", out);
	cr_assert(strstr(out, "features 0x100000000"), "output:\n%s", out);
	/* The image must exist: a one-line error and status 1. */
	TH_EQ(vt_cli_script_opts("virtio-probe.gvs", "--virtio-disk /nonexistent/gmem.img", out,
				 sizeof(out), 1), 1);
	cr_assert(strstr(out, "vm: virtio disk /nonexistent/gmem.img: "), "output:\n%s", out);
	unlink(image);
}

/* The paravirtual --disk is gone; --io-path is the virtio disk's. */
Test(accel, cli_io_path_needs_a_virtio_disk_and_disk_is_unknown)
{
	char out[4096];

	TH_EQ(vt_cli_script_opts("virtio-probe.gvs", "--io-path bounce", out, sizeof(out), 1), 2);
	cr_assert(strstr(out, "--io-path needs --virtio-disk"), "output:\n%s", out);
	TH_EQ(vt_cli_script_opts("virtio-probe.gvs", "--disk /dev/null", out, sizeof(out), 1), 2);
	cr_assert(strstr(out, "unknown option '--disk'"), "output:\n%s", out);
}

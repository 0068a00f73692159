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
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm_para.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pvblk.h"
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

/* ---- the block device, driven as the blk guest drives it ---------------- */

#define VT_RING   0x100000ull           /* shared: ring + 8 slots           */
#define VT_BUF    0x240000ull           /* private data buffers             */
#define VT_SECTS  2048u                 /* a 1 MiB image                    */

struct vt_blk {
	struct gv_vm *vm;
	struct gv_blk *blk;
	char image[64];
	uint32_t avail;
};

static uint32_t vt_blk_reg(struct vt_blk *t, unsigned reg)
{
	uint32_t v = 0;

	TH_EQ(gv_test_in(t->vm, 0, GV_PORT_BLK + reg, 4, &v), 0);
	return v;
}

static void vt_blk_setup(struct vt_blk *t, enum gmem_io_path path)
{
	struct gv_blk_config bc = { .io_path = path };
	static uint8_t zero[4096];
	int fd;

	snprintf(t->image, sizeof(t->image), "/tmp/gmem-accel-blk-XXXXXX");
	fd = mkstemp(t->image);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, VT_SECTS * 512ull), 0);
	close(fd);
	bc.image = t->image;
	t->vm = vt_tvm_policy(1, GV_POLICY_CONVERT, false);
	cr_assert_eq(gv_blk_attach(t->vm, &bc, &t->blk), 0, "attach: %s", gv_last_error());
	cr_assert_eq(gv_vm_start(t->vm), 0);
	/* Feature discovery, then the ring: shared, zeroed, registered. */
	TH_EQ(vt_blk_reg(t, GV_BLK_REG_SECT_LO), VT_SECTS);
	TH_EQ(vt_blk_reg(t, GV_BLK_REG_SECT_HI), 0);
	TH_EQ(vt_hc(t->vm, GV_HC_SHARE, VT_RING, 2 * TH_PAGE, 0), 0);
	TH_EQ(gv_test_mem_write(t->vm, VT_RING, zero, sizeof(zero)), 0);
	TH_EQ(gv_test_out(t->vm, 0, GV_PORT_BLK + GV_BLK_REG_RING, 4, (uint32_t)VT_RING), 0);
	TH_EQ(gv_test_out(t->vm, 0, GV_PORT_BLK + GV_BLK_REG_ENTRIES, 4, 8), 0);
	TH_EQ(vt_blk_reg(t, GV_BLK_REG_STATUS), 0);
	TH_EQ(vt_blk_reg(t, GV_BLK_REG_ENTRIES), 8);
	t->avail = 0;
}

static void vt_blk_teardown(struct vt_blk *t)
{
	gv_vm_destroy(t->vm);
	unlink(t->image);
}

/* Post @q in the next slot, kick, and return its completion. */
static struct gv_blk_req vt_blk_submit(struct vt_blk *t, struct gv_blk_req q)
{
	uint64_t slot = VT_RING + offsetof(struct gv_blk_ring, slot) +
			(uint64_t)(t->avail % 8) * sizeof(q);
	struct gv_blk_req done;
	uint32_t used;

	q.status = GV_BLK_S_PENDING;
	TH_EQ(gv_test_mem_write(t->vm, slot, &q, sizeof(q)), 0);
	t->avail++;
	TH_EQ(gv_test_mem_write(t->vm, VT_RING, &t->avail, sizeof(t->avail)), 0);
	TH_EQ(gv_test_out(t->vm, 0, GV_PORT_BLK + GV_BLK_REG_KICK, 4, 1), 0);
	TH_EQ(gv_test_mem_read(t->vm, VT_RING + offsetof(struct gv_blk_ring, used), &used,
			       sizeof(used)), 0);
	TH_EQ(used, t->avail);
	TH_EQ(gv_test_mem_read(t->vm, slot, &done, sizeof(done)), 0);
	return done;
}

static struct gv_blk_req vt_rq(uint32_t op, uint64_t sector, uint64_t gpa, uint32_t len)
{
	struct gv_blk_req q = { .sector = sector, .op = op, .nsegs = 1 };

	q.seg[0] = (struct gv_blk_seg){ .gpa = gpa, .len = len };
	return q;
}

static void vt_blk_session(enum gmem_io_path path)
{
	struct vt_blk t;
	struct gv_blk_req q, d;
	uint8_t out[3 * 4096], in[3 * 4096], img[3 * 4096];
	struct gmem *g;
	int fd;

	vt_blk_setup(&t, path);
	g = gv_vm_gmem(t.vm);
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 131 + 7);
	/* Write 12 KiB from private memory in two segments, at sector 16. */
	TH_EQ(gv_test_mem_write(t.vm, VT_BUF, out, sizeof(out)), 0);
	q = vt_rq(GV_BLK_OP_WRITE, 16, VT_BUF, 4096);
	q.nsegs = 2;
	q.seg[1] = (struct gv_blk_seg){ .gpa = VT_BUF + 4096, .len = 8192 };
	d = vt_blk_submit(&t, q);
	cr_assert_eq(d.status, GV_BLK_S_OK, "write: status %u error %d", d.status, d.error);
	TH_EQ(d.bytes, sizeof(out));
	fd = open(t.image, O_RDONLY);
	cr_assert_eq(pread(fd, img, sizeof(img), 16 * 512), (ssize_t)sizeof(img));
	close(fd);
	cr_assert_eq(memcmp(img, out, sizeof(out)), 0, "image differs from what was written");
	/* Read it back into another private buffer, unaligned in its page. */
	d = vt_blk_submit(&t, vt_rq(GV_BLK_OP_READ, 16, VT_BUF + 0x10000 + 512, sizeof(in)));
	cr_assert_eq(d.status, GV_BLK_S_OK, "read: status %u error %d", d.status, d.error);
	TH_EQ(gv_test_mem_read(t.vm, VT_BUF + 0x10000 + 512, in, sizeof(in)), 0);
	cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "read back differs");
	/* Every data page kept private; only the ring is shared. */
	for (uint64_t a = VT_BUF; a < VT_BUF + 0x14000; a += TH_PAGE)
		TH_EQ(gmem_state(g, a), GMEM_PRIVATE);
	TH_EQ(th_stats(g).shared_pages, 2);
	TH_EQ(th_stats(g).pinned_pages, 0);
	TH_EQ(th_stats(g).kmapped_pages, 0);
	vt_blk_teardown(&t);
}

Test(accel, blk_session_bounce) { vt_blk_session(GMEM_IO_BOUNCE); }
Test(accel, blk_session_inplace) { vt_blk_session(GMEM_IO_INPLACE); }
Test(accel, blk_session_kmap) { vt_blk_session(GMEM_IO_KMAP); }

Test(accel, blk_hostile_descriptors_are_refused_and_change_nothing)
{
	struct vt_blk t;
	struct gv_blk_req d;
	struct gv_blk_stats bs;
	uint8_t img[8192], zero[8192] = { 0 };
	int fd;

	vt_blk_setup(&t, GMEM_IO_BOUNCE);
	struct { const char *what; struct gv_blk_req q; } bad[] = {
		{ "unknown op", vt_rq(7, 0, VT_BUF, 512) },
		{ "no segments", vt_rq(GV_BLK_OP_WRITE, 0, VT_BUF, 512) },
		{ "too many segments", vt_rq(GV_BLK_OP_WRITE, 0, VT_BUF, 512) },
		{ "empty segment", vt_rq(GV_BLK_OP_WRITE, 0, VT_BUF, 0) },
		{ "segment past RAM", vt_rq(GV_BLK_OP_WRITE, 0, VT_MEM - 256, 512) },
		{ "segment wraps", vt_rq(GV_BLK_OP_WRITE, 0, UINT64_MAX - 100, 512) },
		{ "not whole sectors", vt_rq(GV_BLK_OP_WRITE, 0, VT_BUF, 700) },
		{ "past the disk", vt_rq(GV_BLK_OP_WRITE, VT_SECTS - 1, VT_BUF, 1024) },
		{ "sector wraps", vt_rq(GV_BLK_OP_WRITE, UINT64_MAX, VT_BUF, 512) },
		{ "read into the ring", vt_rq(GV_BLK_OP_READ, 0, VT_RING + 64, 512) },
		{ "longer than a request", vt_rq(GV_BLK_OP_WRITE, 0, VT_BUF, GV_BLK_MAX_BYTES + 512) },
	};
	bad[1].q.nsegs = 0;
	bad[2].q.nsegs = GV_BLK_SEGS + 1;

	TH_EQ(gv_test_mem_write(t.vm, VT_BUF, "\xff\xff\xff\xff", 4), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		d = vt_blk_submit(&t, bad[i].q);
		cr_assert_eq(d.status, GV_BLK_S_BADREQ, "%s: status %u", bad[i].what, d.status);
		cr_assert_eq(d.error, -EINVAL, "%s: error %d", bad[i].what, d.error);
		TH_EQ(d.bytes, 0);
	}
	fd = open(t.image, O_RDONLY);
	cr_assert_eq(pread(fd, img, sizeof(img), 0), (ssize_t)sizeof(img));
	close(fd);
	cr_assert_eq(memcmp(img, zero, sizeof(img)), 0, "a refused request wrote the disk");
	TH_EQ(vt_blk_reg(&t, GV_BLK_REG_STATUS), 0);    /* still serving */
	d = vt_blk_submit(&t, vt_rq(GV_BLK_OP_WRITE, 0, VT_BUF, 512));
	TH_EQ(d.status, GV_BLK_S_OK);
	/* More posted than the ring holds: the device stops, the VMM does not. */
	t.avail += 9;
	TH_EQ(gv_test_mem_write(t.vm, VT_RING, &t.avail, sizeof(t.avail)), 0);
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_KICK, 4, 1), 0);
	TH_EQ((int32_t)vt_blk_reg(&t, GV_BLK_REG_STATUS), -EPROTO);
	TH_EQ(vt_blk_reg(&t, GV_BLK_REG_ENTRIES), 0);
	cr_assert_eq(gv_blk_stats(t.blk, &bs), 0);
	TH_EQ(bs.badreqs, sizeof(bad) / sizeof(bad[0]));
	TH_EQ(bs.writes, 1);
	TH_EQ(th_stats(gv_vm_gmem(t.vm)).pinned_pages, 0);
	vt_blk_teardown(&t);
}

Test(accel, blk_ring_rules)
{
	struct vt_blk t;
	struct gv_result res;

	vt_blk_setup(&t, GMEM_IO_BOUNCE);
	/* Not a power of two, unaligned, past RAM, private: refused. */
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_ENTRIES, 4, 3), 0);
	TH_EQ((int32_t)vt_blk_reg(&t, GV_BLK_REG_STATUS), -EINVAL);
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_RING, 4, VT_RING + 8), 0);
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_ENTRIES, 4, 8), 0);
	TH_EQ((int32_t)vt_blk_reg(&t, GV_BLK_REG_STATUS), -EINVAL);
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_RING, 4, VT_MEM - 64), 0);
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_ENTRIES, 4, 8), 0);
	TH_EQ((int32_t)vt_blk_reg(&t, GV_BLK_REG_STATUS), -EINVAL);
	/* A ring in private memory is unreachable to the device. */
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_RING, 4, 0x180000), 0);
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_ENTRIES, 4, 8), 0);
	TH_EQ((int32_t)vt_blk_reg(&t, GV_BLK_REG_STATUS), -EFAULT);
	/* Unsharing the live ring: the next kick stops the device. */
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_RING, 4, (uint32_t)VT_RING), 0);
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_ENTRIES, 4, 8), 0);
	TH_EQ(vt_blk_reg(&t, GV_BLK_REG_STATUS), 0);
	TH_EQ(vt_hc(t.vm, GV_HC_UNSHARE, VT_RING, 2 * TH_PAGE, 0), 0);
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_KICK, 4, 1), 0);
	TH_EQ((int32_t)vt_blk_reg(&t, GV_BLK_REG_STATUS), -EFAULT);
	/* A VM with a device's state not in the snapshot is not saved. */
	TH_EQ(gv_vm_snapshot_save(t.vm, "/tmp/gmem-accel-never", NULL), -EOPNOTSUPP);
	/* A 1-byte access to a dword register stops the guest, not the VMM. */
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_KICK, 1, 1), -EINVAL);
	res = vt_wait(t.vm);
	TH_EQ(res.why, GV_STOP_ERROR);
	cr_assert(strstr(res.report, "device"), "report: %s", res.report);
	vt_blk_teardown(&t);
}

/* A hostile guest: vCPU 1 flips a data buffer's state as fast as it can
 * while vCPU 0 does in-place block I/O on it. Every request completes, the
 * VMM survives, and once the I/O is over the page is in the state of the
 * guest's last successful conversion (the rule of gmem_convert(3)). */
struct vt_flipper {
	struct gv_vm *vm;
	atomic_bool stop;      /* set by the driver; the flipper reads it */
	bool steal;             /* first try to drop the request's pin      */
	int last;               /* state of the last successful conversion */
	unsigned ok, busy, other, stolen;
};

static void *vt_flip_run(void *arg)
{
	struct vt_flipper *f = arg;

	for (unsigned i = 0; !atomic_load(&f->stop); i++) {
		int to = i & 1 ? GMEM_PRIVATE : GMEM_SHARED;
		int64_t res = 0;

		if (f->steal && to == GMEM_PRIVATE) {
			if (gv_test_hypercall(f->vm, 1, GV_HC_IO_UNPIN, VT_BUF, TH_PAGE, 0, &res)) {
				f->other++;
				break;
			}
			f->stolen += res == 0;
		}
		if (gv_test_hypercall(f->vm, 1, to == GMEM_SHARED ? GV_HC_SHARE : GV_HC_UNSHARE,
				      VT_BUF, TH_PAGE, 0, &res)) {
			f->other++;
			break;
		}
		if (res == 0) {
			f->last = to;
			f->ok++;
		} else if (res == -EAGAIN) {
			f->busy++;      /* a request had it pinned: refused whole */
		} else {
			f->other++;
		}
	}
	return NULL;
}

static void vt_blk_race(enum gmem_io_path path, bool steal)
{
	struct gv_blk_config bc = { .io_path = path };
	struct vt_flipper f = { .last = GMEM_PRIVATE, .steal = steal };
	struct vt_blk t = { 0 };
	struct gv_blk_stats bs;
	unsigned done = 0, good = 0;
	pthread_t th;
	int fd;

	snprintf(t.image, sizeof(t.image), "/tmp/gmem-accel-race-XXXXXX");
	fd = mkstemp(t.image);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, VT_SECTS * 512ull), 0);
	close(fd);
	bc.image = t.image;
	{
		struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 2,
					 .policy = GV_POLICY_CONVERT, .accel = GV_ACCEL_TEST };
		static uint8_t zero[4096];

		cr_assert_eq(gv_vm_create(&cfg, &t.vm), 0, "%s", gv_last_error());
		cr_assert_eq(gv_blk_attach(t.vm, &bc, &t.blk), 0, "%s", gv_last_error());
		cr_assert_eq(gv_vm_start(t.vm), 0);
		TH_EQ(vt_hc(t.vm, GV_HC_SHARE, VT_RING, 2 * TH_PAGE, 0), 0);
		TH_EQ(gv_test_mem_write(t.vm, VT_RING, zero, sizeof(zero)), 0);
		TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_RING, 4, (uint32_t)VT_RING),
		      0);
		TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_ENTRIES, 4, 8), 0);
	}
	f.vm = t.vm;
	cr_assert_eq(pthread_create(&th, NULL, vt_flip_run, &f), 0);
	for (unsigned i = 0; i < 400; i++) {
		uint32_t op = i & 1 ? GV_BLK_OP_READ : GV_BLK_OP_WRITE;
		struct gv_blk_req d = vt_blk_submit(&t, vt_rq(op, i % 64, VT_BUF, 4096));

		done++;
		good += d.status == GV_BLK_S_OK;
		cr_assert(d.status == GV_BLK_S_OK || d.status == GV_BLK_S_IOERR,
			  "request %u: status %u error %d", i, d.status, d.error);
	}
	atomic_store(&f.stop, true);
	pthread_join(th, NULL);
	TH_EQ(f.other, 0);
	TH_EQ(f.stolen, 0);
	cr_assert_gt(f.ok, 0, "the guest never converted");
	TH_EQ(done, 400);
	TH_EQ(vt_blk_reg(&t, GV_BLK_REG_STATUS), 0);
	cr_assert_eq(gv_blk_stats(t.blk, &bs), 0);
	TH_EQ(bs.io.shared_now, 0);
	TH_EQ(bs.io.deferred, 0);
	TH_EQ(th_stats(gv_vm_gmem(t.vm)).pinned_pages, 0);
	TH_EQ(gmem_state(gv_vm_gmem(t.vm), VT_BUF), f.last);
	cr_log_info("%s: %u of 400 requests OK; guest conversions: %u done, %u refused busy",
		    gmem_io_path_name(path), good, f.ok, f.busy);
	vt_blk_teardown(&t);
}

Test(accel, blk_inplace_io_racing_guest_unshare)
{
	vt_blk_race(GMEM_IO_INPLACE, false);
}

/* The same guest also tries to drop the pin an in-place request holds
 * before each unshare, to take the page back under the device's copy. */
Test(accel, blk_inplace_io_racing_guest_unpin_and_unshare)
{
	vt_blk_race(GMEM_IO_INPLACE, true);
}

Test(accel, blk_bounce_io_racing_guest_unshare)
{
	vt_blk_race(GMEM_IO_BOUNCE, false);
}

/* A guest that keeps the ring topped up from another vCPU while one kick
 * runs must not keep that kick (its vCPU, and a gv_vm_stop waiting for it)
 * busy for ever: a kick serves what was posted when it began, at most one
 * ring's worth. */
struct vt_kicker {
	struct vt_blk *t;
	atomic_bool done;
};

static void *vt_kick_run(void *arg)
{
	struct vt_kicker *k = arg;

	gv_test_out(k->t->vm, 0, GV_PORT_BLK + GV_BLK_REG_KICK, 4, 1);
	atomic_store(&k->done, true);
	return NULL;
}

static void vt_blk_post(struct vt_blk *t, struct gv_blk_req q)
{
	uint64_t slot = VT_RING + offsetof(struct gv_blk_ring, slot) +
			(uint64_t)(t->avail % 8) * sizeof(q);

	q.status = GV_BLK_S_PENDING;
	TH_EQ(gv_test_mem_write(t->vm, slot, &q, sizeof(q)), 0);
	t->avail++;
	TH_EQ(gv_test_mem_write(t->vm, VT_RING, &t->avail, sizeof(t->avail)), 0);
}

Test(accel, blk_one_kick_serves_at_most_a_ring)
{
	struct vt_kicker k = { 0 };
	struct gv_blk_stats bs;
	struct vt_blk t;
	unsigned posted = 0;
	pthread_t th;

	vt_blk_setup(&t, GMEM_IO_BOUNCE);
	k.t = &t;
	for (; posted < 8; posted++)
		vt_blk_post(&t, vt_rq(GV_BLK_OP_READ, posted, VT_BUF, 512));
	cr_assert_eq(pthread_create(&th, NULL, vt_kick_run, &k), 0);
	/* Top the ring up as the device frees slots, until the kick returns
	 * (or 20000 requests, which a kick with no bound would all serve). */
	while (!atomic_load(&k.done) && posted < 20000) {
		uint32_t used;

		TH_EQ(gv_test_mem_read(t.vm, VT_RING + offsetof(struct gv_blk_ring, used), &used,
				       sizeof(used)), 0);
		if (t.avail - used < 8) {
			vt_blk_post(&t, vt_rq(GV_BLK_OP_READ, posted % 64, VT_BUF, 512));
			posted++;
		}
	}
	pthread_join(th, NULL);
	cr_assert_eq(gv_blk_stats(t.blk, &bs), 0);
	cr_log_info("one kick served %llu of %u requests posted while it ran",
		    (unsigned long long)bs.reads, posted);
	TH_EQ(bs.kicks, 1);
	cr_assert_leq(bs.reads, 8, "one kick served %llu requests, more than a ring (8)",
		      (unsigned long long)bs.reads);
	TH_EQ(bs.reads, 8);
	TH_EQ(bs.max_kick, 8);
	TH_EQ(bs.ring_entries, 8);
	TH_EQ(bs.ring_max, GV_BLK_RING_MAX);
	TH_EQ(vt_blk_reg(&t, GV_BLK_REG_STATUS), 0);
	/* The rest is served by the next kicks, as the protocol says. */
	TH_EQ(gv_test_out(t.vm, 0, GV_PORT_BLK + GV_BLK_REG_KICK, 4, 1), 0);
	cr_assert_eq(gv_blk_stats(t.blk, &bs), 0);
	TH_EQ(bs.reads, t.avail);
	vt_blk_teardown(&t);
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
	cr_assert_null(strstr(out, "block ring"), "no disk, yet:\n%s", out);
	cr_assert_null(strstr(out, "virtio queue"), "no disk, yet:\n%s", out);
}

Test(accel, cli_report_shows_the_block_limits)
{
	char out[16384], opts[128], image[] = "/tmp/gmem-accel-cli-XXXXXX";
	int fd = mkstemp(image);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	snprintf(opts, sizeof(opts), "--verbose --disk %s", image);
	TH_EQ(vt_cli_script_opts("blk-limits.gvs", opts, out, sizeof(out), 1), 0);
	unlink(image);
	cr_assert(strstr(out, "vm: limits: block ring 8 of at most 256 entries, requests of at "
			      "most 1024 KiB, one ring per kick"), "output:\n%s", out);
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

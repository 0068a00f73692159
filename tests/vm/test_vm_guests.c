// SPDX-License-Identifier: MIT
/*
 * test_vm_guests.c - each guest program of guests/ run by the micro-VMM in
 * this process (RAM a guest_memfd, or a memfd where KVM has none): its exit
 * status, its console, and what the host-side gmem counters say happened
 * to guest memory.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <linux/kvm.h>

#include "vt.h"

static double vt_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* No check may leave a page pinned or (after the guest undid its sharing)
 * shared, and a pinned page is always shared: with nothing shared, nothing
 * may be pinned. */
static void vt_expect_all_private(const struct gmem_stats *st)
{
	TH_EQ(st->shared_pages, 0);
	TH_EQ(st->private_pages, VT_MEM / TH_PAGE);
	TH_EQ(st->pinned_pages, 0);
	TH_EQ(st->kmapped_pages, 0);
}

Test(vm, hello_prints_and_exits_zero)
{
	struct gv_result res;
	struct gv_vm *vm;
	struct gmem_stats st;
	double t0 = vt_now();

	vm = vt_run("hello", 1, &res);
	cr_log_info("hello ran in %.3f s", vt_now() - t0);
	vt_expect_exit(vm, &res, 0);
	cr_assert_str_eq(gv_vm_console(vm, NULL),
			 "hello from a private guest: vCPU 0 of 1, 4 MiB of RAM\n");
	st = th_stats(gv_vm_gmem(vm));
	/* Loaded through temporary mappings, run, and nothing was shared. */
	TH_EQ(st.conversions, 0);
	TH_EQ(st.pins, 0);
	cr_assert_gt(st.kmaps, 0, "the image was written without temporary mappings?");
	vt_expect_all_private(&st);
	gv_vm_destroy(vm);
}

struct vt_sink {
	char text[4096];
	size_t len;
	unsigned calls;
};

static void vt_sink(void *ctx, const char *text, size_t len)
{
	struct vt_sink *s = ctx;

	if (s->len + len < sizeof(s->text)) {
		memcpy(s->text + s->len, text, len);
		s->len += len;
	}
	s->calls++;
}

Test(vm, console_sink_gets_whole_lines)
{
	struct vt_sink sink = { .len = 0 };
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1, .console = vt_sink,
				 .console_ctx = &sink };
	struct gv_result res;
	struct gv_vm *vm;

	vt_need_kvm();
	cr_assert_eq(gv_vm_create(&cfg, &vm), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vm_load_file(vm, vt_guest_path("convert")), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vm_run(vm, &res), 0);
	vt_expect_exit(vm, &res, 0);
	sink.text[sink.len] = '\0';
	cr_assert_str_eq(sink.text, gv_vm_console(vm, NULL), "sink got:\n%s", sink.text);
	cr_assert_gt(sink.calls, 1, "one call per line expected, got %u", sink.calls);
	gv_vm_destroy(vm);
}

Test(vm, convert_guest_shares_and_unshares)
{
	struct gv_result res;
	struct gv_vm *vm;
	struct gmem_stats st;
	double t0 = vt_now();

	vm = vt_run("convert", 1, &res);
	cr_log_info("convert ran in %.3f s", vt_now() - t0);
	vt_expect_exit(vm, &res, 0);
	cr_assert_null(strstr(gv_vm_console(vm, NULL), "FAIL"), "console:\n%s",
		       gv_vm_console(vm, NULL));
	vt_console_has(vm, "ok   unshare a pinned page = -11\n");
	vt_console_has(vm, "ok   pin a private page = -1\n");
	vt_console_has(vm, "convert: 0 failure(s)\n");
	st = th_stats(gv_vm_gmem(vm));
	/* share 2, unshare 2, share dma, unshare dma, unshare all (no-op),
	 * share 1, unshare 1: 7 successful calls; the pinned unshare refused. */
	TH_EQ(st.conversions, 7);
	TH_EQ(st.pages_converted, 8);
	TH_EQ(st.refused, 1);
	TH_EQ(st.pins, 1);
	vt_expect_all_private(&st);
	gv_vm_destroy(vm);
}

Test(vm, hostio_host_converts_and_transforms)
{
	struct gv_result res;
	struct gv_vm *vm;
	struct gmem_stats st;
	unsigned long long secret;
	const char *line;
	char buf[16];
	double t0 = vt_now();

	vm = vt_run("hostio", 1, &res);
	cr_log_info("hostio ran in %.3f s", vt_now() - t0);
	vt_expect_exit(vm, &res, 0);
	vt_console_has(vm, "message: PRIVATE DATA, TRANSFORMED BY THE HOST IN PLACE\n");
	vt_console_has(vm, "ok   host-view read of the private page = -14\n");
	st = th_stats(gv_vm_gmem(vm));
	/* The device: share + unshare of the message page; the guest: share
	 * + unshare of the page it lets the device read. */
	TH_EQ(st.conversions, 4);
	TH_EQ(st.pins, 1);
	vt_expect_all_private(&st);

	/* The page the guest kept private: the host view faults, device
	 * reads fail, only the hypervisor path sees the secret. */
	line = strstr(gv_vm_console(vm, NULL), "secret page at ");
	cr_assert_not_null(line);
	cr_assert_eq(sscanf(line, "secret page at %llx", &secret), 1);
	TH_EQ(gmem_state(gv_vm_gmem(vm), secret), GMEM_PRIVATE);
	cr_assert_eq(th_read_faults(gmem_host(gv_vm_gmem(vm), secret)), 1,
		     "the host view read the guest's private page at %#llx", secret);
	TH_EQ(gv_dev_read(vm, secret, buf, sizeof(buf)), -EFAULT);
	TH_EQ(gv_hv_read(vm, secret, buf, 13), 0);
	cr_assert_str_eq(buf, "guest secret");
	gv_vm_destroy(vm);
}

static void vt_smp(unsigned ncpus)
{
	struct gv_result res;
	struct gv_vm *vm;
	struct gmem_stats st;
	char want[64];
	unsigned busy = ncpus < 8 ? ncpus : 8;
	double t0 = vt_now();

	vm = vt_run("smp", ncpus, &res);
	cr_log_info("smp on %u vCPUs ran in %.3f s", ncpus, vt_now() - t0);
	vt_expect_exit(vm, &res, 0);
	snprintf(want, sizeof(want), "smp: %u vCPUs x 8 rounds, 0 failure(s)\n", busy);
	vt_console_has(vm, want);
	st = th_stats(gv_vm_gmem(vm));
	/* Each vCPU: 8 rounds of share + unshare of its 4 pages. */
	TH_EQ(st.conversions, 2 * 8 * busy);
	TH_EQ(st.pages_converted, 2 * 8 * 4 * busy);
	TH_EQ(st.refused, 0);
	vt_expect_all_private(&st);
	gv_vm_destroy(vm);
}

Test(vm, smp_two_vcpus_convert_concurrently)
{
	vt_smp(2);
}

Test(vm, smp_four_vcpus_on_two_cores)
{
	vt_smp(4);
}

Test(vm, faulting_guest_is_reported_with_registers)
{
	struct gv_result res;
	struct gv_vm *vm;

	vm = vt_run("fault", 1, &res);
	cr_assert_eq(res.why, GV_STOP_FAULT, "stopped by %s, want fault\n%s",
		     gv_stop_name(res.why), res.report);
	TH_EQ(res.exit_reason, KVM_EXIT_SHUTDOWN);
	TH_EQ(res.cpu, 0);
	vt_console_has(vm, "about to fault\n");
	cr_assert_not_null(strstr(res.report, "triple fault"), "report:\n%s", res.report);
	/* The marker the guest put in rax just before its ud2. */
	cr_assert_not_null(strstr(res.report, "rax 0000006661756c74"), "report:\n%s",
			   res.report);
	cr_assert_not_null(strstr(res.report, "cr3 0000000000002000"), "report:\n%s",
			   res.report);
	gv_vm_destroy(vm);
}

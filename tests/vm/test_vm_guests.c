// SPDX-License-Identifier: MIT
/*
 * test_vm_guests.c - each guest program of guests/ run by the micro-VMM in
 * this process (RAM a guest_memfd, or a memfd where KVM has none): its exit
 * status, its console, and what the host-side gmem counters say happened
 * to guest memory.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <linux/kvm.h>

#include "vmm_internal.h"
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
	pthread_mutex_t lock;
	char text[16384];
	size_t len;
	unsigned calls;
	unsigned partial;       /* calls whose text did not end a line */
};

static void vt_sink(void *ctx, const char *text, size_t len)
{
	struct vt_sink *s = ctx;

	pthread_mutex_lock(&s->lock);
	if (s->len + len < sizeof(s->text)) {
		memcpy(s->text + s->len, text, len);
		s->len += len;
	}
	s->calls++;
	s->partial += !len || text[len - 1] != '\n';
	pthread_mutex_unlock(&s->lock);
}

#define VT_LINES 40

struct vt_printer {
	struct gv_vm *vm;
	unsigned cpu;
	int ret;
};

/* What the guest runtime's printf does: each line leaves the guest as one
 * REP OUTSB, so one exit carries the whole line. */
static void *vt_print_lines(void *arg)
{
	struct vt_printer *p = arg;
	char line[80];

	for (int i = 0; i < VT_LINES && !p->ret; i++) {
		int n = snprintf(line, sizeof(line), "vCPU %u line %02d %s\n", p->cpu, i,
				 p->cpu ? "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
					: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");

		p->ret = gv_test_outs(p->vm, p->cpu, GV_PORT_CONSOLE, 1, line, (uint32_t)n);
	}
	return NULL;
}

/* Every line of @text is one a printer wrote, and each printer's lines
 * come in its order. */
static void vt_expect_lines_whole(const char *text)
{
	int next[2] = { 0, 0 };
	const char *p = text;

	while (*p) {
		const char *nl = strchr(p, '\n');
		unsigned cpu;
		int i, n = -1;
		char rest[64];

		cr_assert_not_null(nl, "an unfinished line: \"%s\"", p);
		cr_assert(sscanf(p, "vCPU %u line %d %63s%n", &cpu, &i, rest, &n) == 3 &&
			  cpu < 2 && p + n == nl && strlen(rest) == 53 &&
			  strspn(rest, cpu ? "b" : "a") == 53,
			  "a line mixed from two vCPUs: \"%.*s\"", (int)(nl - p), p);
		cr_assert_eq(i, next[cpu], "vCPU %u: line %d after line %d", cpu, i,
			     next[cpu] - 1);
		next[cpu]++;
		p = nl + 1;
	}
	TH_EQ(next[0], VT_LINES);
	TH_EQ(next[1], VT_LINES);
}

/* Two vCPUs print at once: the console and the sink interleave them by
 * line, never by byte, and the sink is handed whole lines, then at the end
 * the unfinished rest. Port I/O needs no instruction: on every host. */
Test(vm, console_sink_gets_whole_lines)
{
	struct vt_sink sink = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 2, .console = vt_sink,
				 .console_ctx = &sink, .accel = GV_ACCEL_TEST };
	struct vt_printer pr[2];
	pthread_t t[2];
	struct gv_result res;
	struct gv_vm *vm;

	cr_assert_eq(gv_vm_create(&cfg, &vm), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
	for (unsigned c = 0; c < 2; c++) {
		pr[c] = (struct vt_printer){ .vm = vm, .cpu = c };
		cr_assert_eq(pthread_create(&t[c], NULL, vt_print_lines, &pr[c]), 0);
	}
	for (unsigned c = 0; c < 2; c++) {
		pthread_join(t[c], NULL);
		cr_assert_eq(pr[c].ret, 0, "vCPU %u: %d: %s", c, pr[c].ret, gv_last_error());
	}
	vt_expect_lines_whole(gv_vm_console(vm, NULL));
	TH_EQ(sink.partial, 0);
	cr_assert_geq(sink.calls, 2 * VT_LINES, "%u calls for %u lines", sink.calls,
		      2 * VT_LINES);

	/* An unfinished line reaches the sink when the guest ends. */
	TH_EQ(gv_test_outs(vm, 1, GV_PORT_CONSOLE, 1, "no newline", 10), 0);
	TH_EQ(sink.partial, 0);
	TH_EQ(gv_test_out(vm, 0, GV_PORT_EXIT, 4, 0), 0);
	cr_assert_eq(gv_vm_wait(vm, &res), 0);
	vt_expect_exit(vm, &res, 0);
	TH_EQ(sink.partial, 1);
	sink.text[sink.len] = '\0';
	cr_assert_str_eq(sink.text, gv_vm_console(vm, NULL), "sink got:\n%s", sink.text);
	gv_vm_destroy(vm);
}

/* A guest printing without end cannot grow the VMM without end: the
 * console keeps its first GV_CONSOLE_MAX bytes, the guest runs on. */
Test(vm, console_of_a_runaway_guest_is_capped)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1, .accel = GV_ACCEL_TEST };
	static char chunk[2048];
	struct gv_result res;
	struct gv_vm *vm;
	size_t len = 0;

	memset(chunk, 'x', sizeof(chunk));
	chunk[sizeof(chunk) - 1] = '\n';
	cr_assert_eq(gv_vm_create(&cfg, &vm), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
	for (size_t sent = 0; sent < 2 * GV_CONSOLE_MAX; sent += sizeof(chunk))
		cr_assert_eq(gv_test_outs(vm, 0, GV_PORT_CONSOLE, 1, chunk, sizeof(chunk)), 0,
			     "the guest was stopped after %zu bytes: %s", sent, gv_last_error());
	gv_vm_console(vm, &len);
	cr_assert(len > GV_CONSOLE_MAX / 2 && len <= GV_CONSOLE_MAX,
		  "console holds %zu bytes, cap %u", len, GV_CONSOLE_MAX);
	TH_EQ(gv_test_out(vm, 0, GV_PORT_EXIT, 4, 3), 0);
	cr_assert_eq(gv_vm_wait(vm, &res), 0);
	vt_expect_exit(vm, &res, 3);
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

// SPDX-License-Identifier: MIT
/*
 * test_vm_vmm.c - the micro-VMM's own machinery: configuration checks, KVM
 * missing, port devices, pause/resume with vCPU state, and the exit
 * handlers for exits this host's KVM never raises (memory faults, MMIO),
 * fed to gv_vcpu_handle_exit() directly.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

#include "kvm_uapi.h"
#include "snapshot/live.h"
#include "vmm_internal.h"
#include "vt.h"

Test(vm, bad_configs_refused)
{
	static const struct { uint64_t mem; unsigned cpus; int policy; } bad[] = {
		{ 0, 1, GV_POLICY_CONVERT },
		{ 3 * TH_MIB, 1, GV_POLICY_CONVERT },
		{ 8ull << 30, 1, GV_POLICY_CONVERT },
		{ VT_MEM, 0, GV_POLICY_CONVERT },
		{ VT_MEM, GV_MAX_CPUS + 1, GV_POLICY_CONVERT },
		{ VT_MEM, 1, 7 },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct gv_config cfg = { .mem_size = bad[i].mem, .ncpus = bad[i].cpus,
					 .policy = (enum gv_fault_policy)bad[i].policy };
		struct gv_vm *vm = NULL;
		int ret = gv_vm_create(&cfg, &vm);

		cr_assert_eq(ret, -EINVAL, "row %zu (mem %llu, %u cpus, policy %d): %d, want "
			     "-EINVAL", i, (unsigned long long)bad[i].mem, bad[i].cpus,
			     bad[i].policy, ret);
		cr_assert_null(vm);
		cr_assert_neq(gv_last_error()[0], '\0', "row %zu: no reason", i);
	}
}

/* An empty /dev in a private mount namespace: KVM is "missing". */
Test(vm, missing_kvm_is_eopnotsupp)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1 };
	struct gv_vm *vm = NULL;
	int ret;

	if (unshare(CLONE_NEWNS) ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
	    mount("tmpfs", "/dev", "tmpfs", 0, "size=64k"))
		cr_skip_test("cannot hide /dev/kvm (needs root and mount namespaces): %s",
			     strerror(errno));
	ret = gv_vm_create(&cfg, &vm);
	TH_EQ(ret, -EOPNOTSUPP);
	cr_assert_null(vm);
	cr_assert_not_null(strstr(gv_last_error(), "/dev/kvm"), "%s", gv_last_error());
	cr_assert_not_null(strstr(gv_last_error(), "not available"), "%s", gv_last_error());
}

/* ---- a port device on GV_PORT_USER, as the spin guest expects --------- */

struct vt_stopper {
	int stop;               /* what the device answers */
	unsigned long polls;
	int pause_ret;          /* gv_vm_pause from the callback */
	unsigned cpu;
};

static int vt_stopper_in(struct gv_vcpu *vcpu, uint16_t port, void *data, unsigned size,
			 void *ctx)
{
	struct vt_stopper *s = ctx;
	uint32_t v = (uint32_t)__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST);

	(void)port;
	__atomic_fetch_add(&s->polls, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&s->polls, __ATOMIC_SEQ_CST) == 1) {
		s->pause_ret = gv_vm_pause(gv_vcpu_vm(vcpu));
		s->cpu = gv_vcpu_id(vcpu);
	}
	memcpy(data, &v, size < 4 ? size : 4);
	return 0;
}

static struct gv_vm *vt_spin_on(struct vt_stopper *s, enum gv_accel accel)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1, .accel = accel };
	struct gv_pio_dev dev = { .name = "stopper", .base = GV_PORT_USER, .len = 1,
				  .in = vt_stopper_in, .ctx = s };
	struct gv_vm *vm;

	cr_assert_eq(gv_vm_create(&cfg, &vm), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vm_add_pio(vm, &dev), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vm_load_file(vm, vt_guest_path("spin")), 0, "%s", gv_last_error());
	return vm;
}

/* The spin guest with the stopper device, executing: under KVM, or on the
 * user accelerator where KVM is missing. */
static struct gv_vm *vt_spin(struct vt_stopper *s)
{
	return vt_spin_on(s, vt_exec_accel());
}

/* ... or on the test accelerator where KVM is missing (nothing runs). */
static struct gv_vm *vt_spin_any(struct vt_stopper *s)
{
	return vt_spin_on(s, th_kvm_device_unavailable() ? GV_ACCEL_TEST : GV_ACCEL_KVM);
}

static void vt_sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static uint64_t vt_counter(struct gv_vm *vm, uint64_t gpa)
{
	uint64_t v = 0;

	cr_assert_eq(gv_hv_read(vm, gpa, &v, sizeof(v)), 0, "%s", gv_last_error());
	return v;
}

/* Wait until the guest printed where its counter is. */
static uint64_t vt_counter_gpa(struct gv_vm *vm)
{
	unsigned long long gpa;

	for (int i = 0; i < 5000; i++) {
		const char *at;

		gv_vm_pause(vm);
		at = strstr(gv_vm_console(vm, NULL), "counter at ");
		/* The guest prints a byte per exit: a pause can fall mid-number,
		 * so only a finished line is read. */
		if (at && strchr(at, '\n') && sscanf(at, "counter at %llx", &gpa) == 1) {
			gv_vm_resume(vm);
			return gpa;
		}
		gv_vm_resume(vm);
		vt_sleep_ms(1);
	}
	cr_assert_fail("the spin guest never printed its counter; console:\n%s",
		       gv_vm_console(vm, NULL));
	return 0;
}

/* A device callback runs on the vCPU's thread and cannot pause the VM it
 * serves (the pause would wait for itself): under KVM the spin guest polls
 * the device; on the test accelerator the driver does its one poll. */
Test(vm, device_callbacks_run_and_cannot_pause)
{
	struct vt_stopper s = { .stop = 1 };
	struct gv_result res;
	struct gv_vm *vm = vt_spin_any(&s);
	uint32_t v = 0;

	if (!strcmp(gv_accel_name(vm), "kvm")) {
		cr_assert_eq(gv_vm_run(vm, &res), 0);
		vt_expect_exit(vm, &res, 0);
		vt_console_has(vm, "spin: stopped after 256\n");
	} else {
		cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
		TH_EQ(gv_test_in(vm, 0, GV_PORT_USER, 4, &v), 0);
		TH_EQ(v, 1);
		/* Not paused: the VM still serves the next exit. */
		TH_EQ(gv_test_out(vm, 0, GV_PORT_EXIT, 4, 0), 0);
		cr_assert_eq(gv_vm_wait(vm, &res), 0);
		vt_expect_exit(vm, &res, 0);
	}
	TH_EQ(s.polls, 1);
	TH_EQ(s.pause_ret, -EDEADLK);
	TH_EQ(s.cpu, 0);
	gv_vm_destroy(vm);
}

Test(vm, device_registration_rules)
{
	struct vt_stopper s = { .stop = 1 };
	struct gv_pio_dev dev = { .name = "t", .base = 0x520, .len = 1, .in = vt_stopper_in,
				  .ctx = &s };
	struct gv_vm *vm = vt_spin_any(&s);
	struct gv_result res;
	unsigned added = 0;
	int ret;

	dev.base = GV_PORT_CONSOLE;
	TH_EQ(gv_vm_add_pio(vm, &dev), -EEXIST);
	dev.base = GV_PORT_USER - 1;
	dev.len = 2;
	TH_EQ(gv_vm_add_pio(vm, &dev), -EEXIST);          /* overlaps the stopper */
	dev.base = 0x520;
	dev.len = 0;
	TH_EQ(gv_vm_add_pio(vm, &dev), -EINVAL);
	dev.base = 0xffff;
	dev.len = 2;
	TH_EQ(gv_vm_add_pio(vm, &dev), -EINVAL);          /* wraps */
	dev.base = 0x520;
	dev.len = 1;
	dev.in = NULL;
	TH_EQ(gv_vm_add_pio(vm, &dev), -EINVAL);          /* no callback */
	dev.in = vt_stopper_in;
	/* 4 devices so far (3 built in + stopper): fill the table. */
	do {
		ret = gv_vm_add_pio(vm, &dev);
		dev.base++;
		added += ret == 0;
	} while (ret == 0);
	TH_EQ(ret, -ENOSPC);
	TH_EQ(added, GV_MAX_PIO - 4);
	vt_finish(vm, &res);
	dev.base = 0x5f0;
	TH_EQ(gv_vm_add_pio(vm, &dev), -EBUSY);            /* after start */
	gv_vm_destroy(vm);
}

Test(vm, pause_freezes_the_guest_and_state_round_trips)
{
	struct vt_stopper s = { .stop = 0 };
	struct gv_vcpu_state st0, st1, again;
	struct gv_result res;
	struct gv_vm *vm = vt_spin(&s);
	uint64_t gpa, c0, c1, c2;
	unsigned long polls;

	cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
	gpa = vt_counter_gpa(vm);

	/* Running (the counter moves): state is not readable. */
	c0 = vt_counter(vm, gpa);
	for (int i = 0; i < 2000 && vt_counter(vm, gpa) == c0; i++)
		vt_sleep_ms(1);
	TH_EQ(gv_vcpu_get_state(vm, 0, &st0), -EBUSY);

	TH_EQ(gv_vm_pause(vm), 0);
	TH_EQ(gv_vm_pause(vm), 0);                          /* no-op */
	TH_EQ(gv_vcpu_get_state(vm, 0, &st0), 0);
	TH_EQ(gv_vcpu_get_state(vm, 1, &st0), -EINVAL);
	cr_assert(st0.regs.rip >= GV_LOAD_MIN && st0.regs.rip < GV_LOAD_MIN + 0x1000,
		  "paused rip %#llx outside the guest's text", st0.regs.rip);
	TH_EQ(st0.sregs.cr3, GV_PML4_GPA);
	TH_EQ(st0.sregs.cs.l, 1);
	/* Frozen: neither memory nor the device sees the guest move. */
	c0 = vt_counter(vm, gpa);
	polls = s.polls;
	vt_sleep_ms(50);
	TH_EQ(vt_counter(vm, gpa), c0);
	TH_EQ(s.polls, polls);

	/* It moves again once resumed. */
	TH_EQ(gv_vm_resume(vm), 0);
	for (int i = 0; i < 2000 && (c1 = vt_counter(vm, gpa)) == c0; i++)
		vt_sleep_ms(1);
	cr_assert_gt(c1, c0, "the counter stayed at %llu after resume",
		     (unsigned long long)c0);

	/* Restore the first snapshot's registers into a later pause. */
	TH_EQ(gv_vm_pause(vm), 0);
	TH_EQ(gv_vcpu_get_state(vm, 0, &st1), 0);
	TH_EQ(gv_vcpu_set_state(vm, 0, &st0), 0);
	TH_EQ(gv_vcpu_get_state(vm, 0, &again), 0);
	TH_EQ(again.regs.rip, st0.regs.rip);
	TH_EQ(again.regs.rsp, st0.regs.rsp);
	TH_EQ(again.regs.rax, st0.regs.rax);
	TH_EQ(again.sregs.cr3, st0.sregs.cr3);
	TH_EQ(again.sregs.efer, st0.sregs.efer);
	TH_EQ(memcmp(&again.fpu.fpr, &st0.fpu.fpr, sizeof(st0.fpu.fpr)), 0);
	TH_EQ(gv_vcpu_set_state(vm, 0, &st1), 0);
	c2 = vt_counter(vm, gpa);

	/* Tell it to stop and let it finish from where it was. */
	__atomic_store_n(&s.stop, 1, __ATOMIC_SEQ_CST);
	TH_EQ(gv_vm_resume(vm), 0);
	cr_assert_eq(gv_vm_wait(vm, &res), 0);
	vt_expect_exit(vm, &res, 0);
	cr_assert_geq(vt_counter(vm, gpa), c2);
	vt_console_has(vm, "spin: stopped after ");
	/* Stopped: state readable again. */
	TH_EQ(gv_vcpu_get_state(vm, 0, &st1), 0);
	gv_vm_destroy(vm);
}

Test(vm, stop_request_ends_a_running_guest)
{
	struct vt_stopper s = { .stop = 0 };
	struct gv_result res;
	struct gv_vm *vm = vt_spin(&s);

	cr_assert_eq(gv_vm_start(vm), 0);
	vt_counter_gpa(vm);
	gv_vm_stop(vm);
	cr_assert_eq(gv_vm_wait(vm, &res), 0);
	cr_assert_eq(res.why, GV_STOP_REQUESTED, "stopped by %s: %s", gv_stop_name(res.why),
		     res.report);
	gv_vm_destroy(vm);
}

Test(vm, destroy_stops_a_running_guest)
{
	struct vt_stopper s = { .stop = 0 };
	struct gv_vm *vm = vt_spin(&s);

	cr_assert_eq(gv_vm_start(vm), 0);
	vt_counter_gpa(vm);
	gv_vm_destroy(vm);      /* must not hang or leak the vCPU thread */
}

/* ---- exits fed to the handler directly --------------------------------- */

static void vt_memory_fault(struct gv_vcpu *vcpu, uint64_t flags, uint64_t gpa,
			    uint64_t size)
{
	uint64_t mf[3] = { flags, gpa, size };

	vcpu->run->exit_reason = KVM_EXIT_MEMORY_FAULT;
	memcpy(&vcpu->run->hw, mf, sizeof(mf));
}

#define VT_PRIVATE_FLAG (1ull << 3)

Test(vm, memory_fault_convert_policy_converts_and_resumes)
{
	struct gv_vm *vm = vt_vm_any(NULL, 1, GV_POLICY_CONVERT);
	struct gmem *g = gv_vm_gmem(vm);
	struct gv_vcpu *v = &vm->cpu[0];

	/* A shared access straddling two pages: both become shared. */
	vt_memory_fault(v, 0, 0x200010, 0x1000);
	TH_EQ(gv_vcpu_handle_exit(v), 0);
	TH_EQ(gmem_state(g, 0x200000), GMEM_SHARED);
	TH_EQ(gmem_state(g, 0x201000), GMEM_SHARED);
	TH_EQ(gmem_state(g, 0x202000), GMEM_PRIVATE);
	/* A private access takes them back. */
	vt_memory_fault(v, VT_PRIVATE_FLAG, 0x200000, 0x2000);
	TH_EQ(gv_vcpu_handle_exit(v), 0);
	TH_EQ(gmem_state(g, 0x201000), GMEM_PRIVATE);
	TH_EQ(th_stats(g).conversions, 2);
	TH_EQ(vm->result.why, GV_STOP_NONE);
	gv_vm_destroy(vm);
}

Test(vm, memory_fault_stop_policy_reports)
{
	struct gv_vm *vm = vt_vm_any(NULL, 1, GV_POLICY_STOP);
	struct gv_vcpu *v = &vm->cpu[0];

	vt_memory_fault(v, 0, 0x300000, 0x1000);
	cr_assert_lt(gv_vcpu_handle_exit(v), 0);
	TH_EQ(gmem_state(gv_vm_gmem(vm), 0x300000), GMEM_PRIVATE);
	TH_EQ(vm->result.why, GV_STOP_FAULT);
	TH_EQ(vm->result.exit_reason, KVM_EXIT_MEMORY_FAULT);
	cr_assert_not_null(strstr(vm->result.report, "policy: stop"), "%s", vm->result.report);
	cr_assert_not_null(strstr(vm->result.report, "rip "), "no registers:\n%s",
			   vm->result.report);
	TH_EQ(th_stats(gv_vm_gmem(vm)).conversions, 0);
	gv_vm_destroy(vm);
}

Test(vm, memory_fault_refused_conversion_stops)
{
	struct gv_vm *vm = vt_vm_any(NULL, 1, GV_POLICY_CONVERT);
	struct gmem *g = gv_vm_gmem(vm);
	struct gv_vcpu *v = &vm->cpu[0];

	/* A page pinned for DMA cannot be taken private by a fault either. */
	cr_assert_eq(gv_vm_convert(vm, 0x300000, TH_PAGE, GMEM_SHARED, NULL), 0);
	cr_assert_eq(gmem_pin(g, 0x300000, TH_PAGE), 0);
	vt_memory_fault(v, VT_PRIVATE_FLAG, 0x300000, 8);
	TH_EQ(gv_vcpu_handle_exit(v), -EAGAIN);
	TH_EQ(gmem_state(g, 0x300000), GMEM_SHARED);
	TH_EQ(vm->result.why, GV_STOP_FAULT);
	cr_assert_not_null(strstr(vm->result.report, "failed"), "%s", vm->result.report);
	gmem_unpin(g, 0x300000, TH_PAGE);
	gv_vm_destroy(vm);
}

Test(vm, memory_fault_outside_ram_stops)
{
	struct gv_vm *vm = vt_vm_any(NULL, 1, GV_POLICY_CONVERT);
	struct gv_vcpu *v = &vm->cpu[0];

	vt_memory_fault(v, 0, VT_MEM, 0x1000);
	cr_assert_lt(gv_vcpu_handle_exit(v), 0);
	TH_EQ(vm->result.why, GV_STOP_FAULT);
	cr_assert_not_null(strstr(vm->result.report, "outside guest RAM"), "%s",
			   vm->result.report);
	gv_vm_destroy(vm);
}

Test(vm, mmio_and_unknown_exits_stop_with_a_report)
{
	struct gv_vm *vm = vt_vm_any(NULL, 1, GV_POLICY_CONVERT);
	struct gv_vcpu *v = &vm->cpu[0];

	v->run->exit_reason = KVM_EXIT_MMIO;
	v->run->mmio.phys_addr = 0xfee00000;
	v->run->mmio.len = 4;
	v->run->mmio.is_write = 1;
	cr_assert_lt(gv_vcpu_handle_exit(v), 0);
	TH_EQ(vm->result.why, GV_STOP_FAULT);
	TH_EQ(vm->result.exit_reason, KVM_EXIT_MMIO);
	cr_assert_not_null(strstr(vm->result.report, "MMIO write of 4 bytes at gpa 0xfee00000"),
			   "%s", vm->result.report);
	gv_vm_destroy(vm);

	vm = vt_vm_any(NULL, 1, GV_POLICY_CONVERT);
	v = &vm->cpu[0];
	v->run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
	v->run->internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
	v->run->internal.ndata = 0;
	cr_assert_lt(gv_vcpu_handle_exit(v), 0);
	cr_assert_not_null(strstr(vm->result.report, "internal error"), "%s",
			   vm->result.report);
	cr_assert_not_null(strstr(vm->result.report, "emulation failed"), "%s",
			   vm->result.report);
	gv_vm_destroy(vm);
}

Test(vm, device_and_hypervisor_reads_of_private_memory)
{
	struct gv_vm *vm = vt_vm_any(NULL, 1, GV_POLICY_CONVERT);
	struct gv_paths p;
	char buf[8] = { 0 };

	TH_EQ(gv_hv_write(vm, 0x200ffc, "abcdefg", 8), 0);   /* across two pages */
	TH_EQ(gv_dev_read(vm, 0x200ffc, buf, 8), -EFAULT);
	TH_EQ(gv_hv_read(vm, 0x200ffc, buf, 8), 0);
	cr_assert_str_eq(buf, "abcdefg");
	TH_EQ(gv_vm_convert(vm, 0x200000, 2 * TH_PAGE, GMEM_SHARED, NULL), 0);
	memset(buf, 0, sizeof(buf));
	TH_EQ(gv_dev_read(vm, 0x200ffc, buf, 8), 0);
	cr_assert_str_eq(buf, "abcdefg");
	TH_EQ(gv_dev_write(vm, 0x200ffc, "ABCDEFG", 8), 0);
	TH_EQ(gv_vm_convert(vm, 0x201000, TH_PAGE, GMEM_PRIVATE, NULL), 0);
	TH_EQ(gv_dev_read(vm, 0x200ffc, buf, 8), -EFAULT);  /* half private */
	TH_EQ(gv_dev_read(vm, VT_MEM - 4, buf, 8), -EINVAL);
	TH_EQ(gv_hv_read(vm, 0x200ffc, buf, 8), 0);
	cr_assert_str_eq(buf, "ABCDEFG");
	gv_vm_paths(vm, &p);
	cr_assert_not_null(p.conversion);
	cr_log_info("conversion path: %s", p.conversion);
	gv_vm_destroy(vm);
}

/* Every fatal exit stops the guest with a report naming it, and the
 * registers after it; the exit and stop names are what the report uses. */
Test(vm, fatal_exits_name_themselves_and_show_the_registers)
{
	static const struct { uint32_t reason; const char *says, *name; } ex[] = {
		{ KVM_EXIT_SHUTDOWN, "triple fault", "SHUTDOWN (triple fault)" },
		{ KVM_EXIT_FAIL_ENTRY, "VM entry failed, hardware reason 0x7", "FAIL_ENTRY" },
		{ KVM_EXIT_DEBUG, "unexpected KVM exit 4 (DEBUG)", "DEBUG" },
		{ KVM_EXIT_EXCEPTION, "unexpected KVM exit 1 (EXCEPTION)", "EXCEPTION" },
		{ KVM_EXIT_SYSTEM_EVENT, "(SYSTEM_EVENT)", "SYSTEM_EVENT" },
		{ 4242, "unexpected KVM exit 4242 (other)", "other" },
	};
	static const struct { enum gv_stop why; const char *name; } stops[] = {
		{ GV_STOP_NONE, "none" }, { GV_STOP_EXIT, "exit" }, { GV_STOP_HALT, "halt" },
		{ GV_STOP_FAULT, "fault" }, { GV_STOP_ERROR, "error" },
		{ GV_STOP_REQUESTED, "stopped" }, { (enum gv_stop)77, "?" },
	};

	for (size_t i = 0; i < sizeof(ex) / sizeof(ex[0]); i++) {
		struct gv_vm *vm = vt_vm_any(NULL, 1, GV_POLICY_CONVERT);
		struct gv_vcpu *v = &vm->cpu[0];

		v->run->exit_reason = ex[i].reason;
		v->run->fail_entry.hardware_entry_failure_reason = 7;
		cr_assert_lt(gv_vcpu_handle_exit(v), 0);
		TH_EQ(vm->result.why, GV_STOP_FAULT);
		TH_EQ(vm->result.exit_reason, ex[i].reason);
		cr_assert(strstr(vm->result.report, ex[i].says), "exit %u: %s", ex[i].reason,
			  vm->result.report);
		cr_assert(strstr(vm->result.report, "vCPU 0 registers:") &&
			  strstr(vm->result.report, "rip "), "exit %u: no registers: %s",
			  ex[i].reason, vm->result.report);
		cr_assert_str_eq(gv_exit_name(ex[i].reason), ex[i].name);
		gv_vm_destroy(vm);
	}
	for (uint32_t r = 0; r <= KVM_EXIT_MEMORY_FAULT; r++)
		cr_assert(gv_exit_name(r)[0], "exit %u has no name", r);
	for (size_t i = 0; i < sizeof(stops) / sizeof(stops[0]); i++)
		cr_assert_str_eq(gv_stop_name(stops[i].why), stops[i].name);
}

/* ---- a live save under a running KVM guest -------------------------------- */

struct vt_live {
	struct gv_vm *vm;
	uint64_t gpa, at_start;
};

/* live_pause: the vCPU stops, and the counter is what the file must hold. */
static int vt_live_pause(void *ctx, int pause)
{
	struct vt_live *l = ctx;

	if (pause) {
		TH_EQ(gv_vm_pause(l->vm), 0);
		l->at_start = vt_counter(l->vm, l->gpa);
	} else {
		TH_EQ(gv_vm_resume(l->vm), 0);
	}
	return 0;
}

/* progress 0: the start is fixed; the file is not written before the
 * guest has written its counter again (a loaded host may not run it). */
static void vt_live_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct vt_live *l = ctx;

	(void)total;
	for (int i = 0; !done && i < 5000 && vt_counter(l->vm, l->gpa) == l->at_start; i++)
		vt_sleep_ms(1);
}

/* The guest's stores go through KVM's memslot on the KVM view: a live
 * save must see them (the fault thread copies the counter's page before
 * KVM may write it) while the guest spins on during the write. */
Test(vm, live_save_sees_a_kvm_guest_write)
{
	char path[] = "/tmp/gmem-vm-live-XXXXXX";
	struct vt_stopper s = { 0 };
	struct vt_live l = { 0 };
	struct gmem_snapshot_opts o = { .flags = GMEM_SNAP_LIVE, .live_pause = vt_live_pause,
					.progress = vt_live_progress, .progress_ctx = &l };
	struct gv_result res;
	struct gmem *r;
	uint64_t in_file = 0, after;
	int fd = mkstemp(path);

	if (th_kvm_device_unavailable())
		cr_skip_test("a guest that writes needs /dev/kvm: %s", th_kvm_device_unavailable());
	cr_assert_geq(fd, 0);
	close(fd);
	l.vm = vt_spin_on(&s, GV_ACCEL_KVM);
	cr_assert_eq(gv_vm_start(l.vm), 0, "%s", gv_last_error());
	l.gpa = vt_counter_gpa(l.vm);
	TH_EQ(gmem_snapshot_save_ex(gv_vm_gmem(l.vm), path, &o), 0);
	after = vt_counter(l.vm, l.gpa);
	__atomic_store_n(&s.stop, 1, __ATOMIC_SEQ_CST);
	cr_assert_eq(gv_vm_wait(l.vm, &res), 0);
	/* The guest wrote during the save, through KVM, and was seen. */
	cr_assert_gt(after, l.at_start, "the guest did not run during the save");
	cr_assert_gt(gm_live_last.copied, 0, "no guest write reached the live save (touched %llu)",
		     (unsigned long long)gm_live_last.touched);
	TH_EQ(gmem_snapshot_restore(path, NULL, &r), 0);
	memcpy(&in_file, (uint8_t *)gmem_kvm_view(r) + l.gpa, sizeof(in_file));
	TH_EQ(in_file, l.at_start);
	gmem_close(r);
	gv_vm_destroy(l.vm);
	unlink(path);
}

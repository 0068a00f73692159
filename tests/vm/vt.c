// SPDX-License-Identifier: MIT
/*
 * vt.c - see vt.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vt.h"

void vt_need_kvm(void)
{
	const char *why = th_kvm_device_unavailable();

	if (why)
		cr_skip_test("kvm: the guest's instructions must execute: %s", why);
}

void vt_need_kvm_for(const char *behaviour)
{
	const char *why = th_kvm_device_unavailable();

	if (why)
		cr_skip_test("kvm: needs %s: %s", behaviour, why);
}

void vt_need_guest_memfd(void)
{
	const char *why = th_kvm_unavailable();

	if (why)
		cr_skip_test("kvm: needs guest_memfd RAM: %s", why);
}

const char *vt_guest_path(const char *name)
{
	static char path[4096];

	snprintf(path, sizeof(path), "%s/%s.elf", GMEM_GUEST_DIR, name);
	return path;
}

static struct gv_vm *vt_vm_on(const char *name, unsigned ncpus, enum gv_fault_policy policy,
			       enum gv_accel accel)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = ncpus, .policy = policy,
				 .accel = accel };
	struct gv_vm *vm;
	int ret;

	ret = gv_vm_create(&cfg, &vm);
	cr_assert_eq(ret, 0, "gv_vm_create(%u vCPUs) = %d (%s): %s", ncpus, ret,
		     strerror(-ret), gv_last_error());
	if (name) {
		ret = gv_vm_load_file(vm, vt_guest_path(name));
		cr_assert_eq(ret, 0, "loading %s = %d: %s", vt_guest_path(name), ret,
			     gv_last_error());
	}
	return vm;
}

enum gv_accel vt_exec_accel(void)
{
	return th_kvm_device_unavailable() ? GV_ACCEL_USER : GV_ACCEL_KVM;
}

struct gv_vm *vt_vm(const char *name, unsigned ncpus, enum gv_fault_policy policy)
{
	return vt_vm_on(name, ncpus, policy, vt_exec_accel());
}

struct gv_vm *vt_vm_any(const char *name, unsigned ncpus, enum gv_fault_policy policy)
{
	enum gv_accel a = th_kvm_device_unavailable() ? GV_ACCEL_TEST : GV_ACCEL_KVM;

	return vt_vm_on(name, ncpus, policy, a);
}

void vt_finish(struct gv_vm *vm, struct gv_result *res)
{
	if (!strcmp(gv_accel_name(vm), "kvm")) {
		cr_assert_eq(gv_vm_run(vm, res), 0, "%s", gv_last_error());
		vt_expect_exit(vm, res, 0);
		return;
	}
	/* Nothing executes: start the vCPU threads, stop them, and see the
	 * VM report the stop it was asked for. */
	cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
	gv_vm_stop(vm);
	cr_assert_eq(gv_vm_wait(vm, res), 0);
	TH_EQ(res->why, GV_STOP_REQUESTED);
}

struct gv_vm *vt_run(const char *name, unsigned ncpus, struct gv_result *res)
{
	struct gv_vm *vm = vt_vm(name, ncpus, GV_POLICY_CONVERT);
	int ret = gv_vm_run(vm, res);

	cr_assert_eq(ret, 0, "gv_vm_run(%s) = %d: %s", name, ret, gv_last_error());
	return vm;
}

uint8_t *vt_read(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	cr_assert_gt(n, 0, "%s is empty", path);
	rewind(f);
	buf = malloc((size_t)n);
	cr_assert_not_null(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n, "short read of %s", path);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

void vt_console_has(struct gv_vm *vm, const char *needle)
{
	const char *con = gv_vm_console(vm, NULL);

	cr_assert_not_null(strstr(con, needle), "console lacks \"%s\"; console was:\n%s",
			   needle, con);
}

void vt_expect_exit(struct gv_vm *vm, const struct gv_result *res, int status)
{
	cr_assert(res->why == GV_STOP_EXIT && res->status == status,
		  "guest stopped by %s (status %d, exit %s), want exit %d\nreport: %s\n"
		  "console:\n%s", gv_stop_name(res->why), res->status,
		  gv_exit_name(res->exit_reason), status, res->report, gv_vm_console(vm, NULL));
}

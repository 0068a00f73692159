// SPDX-License-Identifier: MIT
/*
 * stop.c - stopping the guest with a reason, and what a device may ask of
 * a vCPU (its id, its VM, its registers). Any layer may stop the guest: a
 * device that finds a guest bug, the exit dispatch, the VMM; so this sits
 * below all of them and calls only the accelerator and report.c.
 *
 * Lock rule: the stop record (vm->result) and stop_req are written under
 * vm->lock; the first reason given wins.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kvm_uapi.h"
#include "accel/accel.h"

struct gv_vcpu *gv_vm_vcpu(struct gv_vm *vm, unsigned id)
{
	return id < vm->ncpus ? &vm->cpu[id] : NULL;
}

struct gv_vm *gv_vcpu_vm(const struct gv_vcpu *vcpu)
{
	return vcpu->vm;
}

unsigned gv_vcpu_id(const struct gv_vcpu *vcpu)
{
	return vcpu->id;
}

int gv_vcpu_get_regs(struct gv_vcpu *vcpu, struct kvm_regs *regs)
{
	return vcpu->vm->accel->get_regs(vcpu, regs);
}

/* Make every running vCPU leave KVM_RUN soon. Caller holds vm->lock. */
void gv_kick_all_locked(struct gv_vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct gv_vcpu *c = &vm->cpu[i];

		if (c->phase == GV_VCPU_RUNNING)
			vm->accel->kick(c);
	}
}

/* The registers of @vcpu (if any) after the one-line reason in the report. */
static void gv_report_regs(struct gv_result *res, struct gv_vcpu *vcpu)
{
	struct gv_vcpu_state st;
	bool have;
	size_t used = strlen(res->report);

	if (!vcpu || used + 2 >= sizeof(res->report))
		return;
	have = !vcpu->vm->accel->get_state(vcpu, &st);
	snprintf(res->report + used, sizeof(res->report) - used, "\nvCPU %u registers:\n",
		 vcpu->id);
	gv_format_regs(res->report, sizeof(res->report), have ? &st.regs : NULL,
		       have ? &st.sregs : NULL);
}

void gv_vm_stop_with(struct gv_vm *vm, struct gv_vcpu *vcpu, enum gv_stop why, int err,
		     int status, const char *fmt, ...)
{
	struct gv_result *res = &vm->result;
	va_list ap;

	pthread_mutex_lock(&vm->lock);
	if (res->why == GV_STOP_NONE) {
		res->why = why;
		res->err = err;
		res->status = status;
		res->cpu = vcpu ? (int)vcpu->id : -1;
		res->exit_reason = vcpu ? vcpu->run->exit_reason : 0;
		va_start(ap, fmt);
		vsnprintf(res->report, sizeof(res->report), fmt, ap);
		va_end(ap);
		if (why == GV_STOP_FAULT)
			gv_report_regs(res, vcpu);
	}
	vm->stop_req = true;
	gv_kick_all_locked(vm);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void gv_vm_stop(struct gv_vm *vm)
{
	gv_vm_stop_with(vm, NULL, GV_STOP_REQUESTED, 0, 0, "stop requested by the VMM");
}

bool gv_vm_stopped(struct gv_vm *vm)
{
	bool stopped;

	pthread_mutex_lock(&vm->lock);
	stopped = vm->stop_req;
	pthread_mutex_unlock(&vm->lock);
	return stopped;
}

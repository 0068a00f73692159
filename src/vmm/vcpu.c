// SPDX-License-Identifier: MIT
/*
 * vcpu.c - vCPU threads: the run loop over an accelerator (accel/accel.h),
 * the exit dispatch (to the buses, hypercalls and memory faults), pause and
 * resume, and vCPU state. Layer: above the buses and devices (it calls
 * them), below vm.c; stopping the guest is stop.c's, below the devices.
 *
 * Model: one thread per vCPU, as in kvmtool. A thread leaves the
 * accelerator's run() with an exit it handles here, or because another
 * thread kicked it. Between two run()s each thread passes
 * gv_vcpu_checkpoint(), where it stops or parks. A parked vCPU first has the
 * accelerator complete what its last exit left pending: only then is its
 * state consistent (KVM API, "immediate_exit").
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "kvm_uapi.h"
#include "accel/accel.h"

static __thread struct gv_vcpu *gv_self;    /* the vCPU this thread runs */

int gv_vcpu_create(struct gv_vm *vm, unsigned id)
{
	struct gv_vcpu *vcpu = &vm->cpu[id];

	vcpu->vm = vm;
	vcpu->id = id;
	vcpu->phase = GV_VCPU_IDLE;
	return vm->accel->vcpu_init(vcpu);
}

void gv_vcpu_destroy(struct gv_vcpu *vcpu)
{
	if (vcpu->vm)
		vcpu->vm->accel->vcpu_fini(vcpu);
}

static int gv_exit_memory_fault(struct gv_vcpu *vcpu)
{
	struct gv_vm *vm = vcpu->vm;
	struct gm_kvm_memory_fault mf;
	enum gmem_state want;
	uint64_t gpa, end;
	int ret;

	memcpy(&mf, &vcpu->run->hw, sizeof(mf));   /* first member of the exit union */
	want = (mf.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) ? GMEM_PRIVATE : GMEM_SHARED;
	gpa = mf.gpa & ~(GMEM_PAGE_SIZE - 1);
	end = mf.size > UINT64_MAX - mf.gpa ? UINT64_MAX : mf.gpa + mf.size;
	if (vm->cfg.policy == GV_POLICY_STOP) {
		gv_vm_stop_with(vm, vcpu, GV_STOP_FAULT, -EFAULT, 0,
				"guest accessed [%#llx, +%#llx) as %s memory, which it is not "
				"(memory-fault policy: stop)", (unsigned long long)mf.gpa,
				(unsigned long long)mf.size,
				want == GMEM_PRIVATE ? "private" : "shared");
		return -EFAULT;
	}
	if (!mf.size || end > vm->cfg.mem_size) {
		gv_vm_stop_with(vm, vcpu, GV_STOP_FAULT, -EFAULT, 0,
				"memory fault at [%#llx, +%#llx) outside guest RAM",
				(unsigned long long)mf.gpa, (unsigned long long)mf.size);
		return -EFAULT;
	}
	end = (end + GMEM_PAGE_SIZE - 1) & ~(GMEM_PAGE_SIZE - 1);
	ret = gv_vm_convert(vm, gpa, end - gpa, want, NULL);
	if (ret) {
		gv_vm_stop_with(vm, vcpu, GV_STOP_FAULT, ret, 0,
				"memory fault at [%#llx, +%#llx): converting to %s failed: %s",
				(unsigned long long)mf.gpa, (unsigned long long)mf.size,
				want == GMEM_PRIVATE ? "private" : "shared", gmem_strerror(ret));
		return ret;
	}
	return 0;
}

static int gv_exit_fatal(struct gv_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct gv_vm *vm = vcpu->vm;

	switch (run->exit_reason) {
	case KVM_EXIT_SHUTDOWN:
		gv_vm_stop_with(vm, vcpu, GV_STOP_FAULT, -EFAULT, 0,
				"vCPU %u: guest triple fault (KVM_EXIT_SHUTDOWN): an exception "
				"with no IDT to handle it", vcpu->id);
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		gv_vm_stop_with(vm, vcpu, GV_STOP_FAULT, -EFAULT, 0,
				"vCPU %u: KVM internal error, suberror %u (%s), %u data words, "
				"first %#llx", vcpu->id, run->internal.suberror,
				run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
					? "instruction emulation failed" : "see KVM docs",
				run->internal.ndata,
				run->internal.ndata ? (unsigned long long)run->internal.data[0]
						    : 0ull);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		gv_vm_stop_with(vm, vcpu, GV_STOP_FAULT, -EFAULT, 0,
				"vCPU %u: VM entry failed, hardware reason %#llx", vcpu->id,
				(unsigned long long)
				run->fail_entry.hardware_entry_failure_reason);
		break;
	default:
		gv_vm_stop_with(vm, vcpu, GV_STOP_FAULT, -EFAULT, 0,
				"vCPU %u: unexpected KVM exit %u (%s)", vcpu->id,
				run->exit_reason, gv_exit_name(run->exit_reason));
		break;
	}
	return -EFAULT;
}

int gv_vcpu_handle_exit(struct gv_vcpu *vcpu)
{
	vcpu->exits++;
	switch (vcpu->run->exit_reason) {
	case KVM_EXIT_IO:
		return gv_pio_dispatch(vcpu);
	case KVM_EXIT_MMIO:
		return gv_mmio_dispatch(vcpu);
	case KVM_EXIT_HLT:
		return 1;
	case KVM_EXIT_INTR:
		return 0;
	case KVM_EXIT_MEMORY_FAULT:
		return gv_exit_memory_fault(vcpu);
	case KVM_EXIT_HYPERCALL:
		return gv_hcall_exit(vcpu);
	default:
		return gv_exit_fatal(vcpu);
	}
}

/* Between two KVM_RUNs: park while a pause is requested, and tell the
 * caller whether to stop. */
static bool gv_vcpu_checkpoint(struct gv_vcpu *vcpu)
{
	struct gv_vm *vm = vcpu->vm;
	bool stop;

	pthread_mutex_lock(&vm->lock);
	if (vm->pause_req && !vm->stop_req) {
		/* Complete pending I/O before anyone reads our state. */
		pthread_mutex_unlock(&vm->lock);
		vm->accel->complete(vcpu);
		pthread_mutex_lock(&vm->lock);
		vcpu->phase = GV_VCPU_PAUSED;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_req && !vm->stop_req)
			pthread_cond_wait(&vm->cond, &vm->lock);
		vcpu->phase = GV_VCPU_RUNNING;
	}
	stop = vm->stop_req;
	if (!stop)
		vm->accel->rearm(vcpu);
	pthread_mutex_unlock(&vm->lock);
	return stop;
}

static void *gv_vcpu_thread(void *arg)
{
	struct gv_vcpu *vcpu = arg;
	struct gv_vm *vm = vcpu->vm;

	gv_self = vcpu;
	while (!gv_vcpu_checkpoint(vcpu)) {
		int ret = vm->accel->run(vcpu);

		if (ret == -EINTR)
			continue;
		if (ret < 0) {
			gv_vm_stop_with(vm, vcpu, GV_STOP_ERROR, ret, 0, "vCPU %u: %s run: %s",
					vcpu->id, vm->accel->name, strerror(-ret));
			break;
		}
		ret = gv_vcpu_handle_exit(vcpu);
		if (vm->accel->exit_done)
			vm->accel->exit_done(vcpu, ret);
		if (ret)
			break;
	}
	pthread_mutex_lock(&vm->lock);
	vcpu->phase = GV_VCPU_DONE;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	if (vm->accel->thread_end)
		vm->accel->thread_end(vcpu);
	gv_console_flush(vm);
	return NULL;
}

int gv_vm_start(struct gv_vm *vm)
{
	const struct gv_snap_dev *rec;
	sigset_t all, old;
	unsigned i;
	int ret = 0;

	/* Under the test accelerator nothing executes: no program needed. */
	if (!vm->loaded && vm->accel != &gv_accel_test) {
		gv_set_error("no guest loaded");
		return -EINVAL;
	}
	if (!vm->started && gv_mmio_unclaimed(vm, &rec)) {
		gv_set_error("the snapshot holds the state of %s at %#llx: add the device first",
			     rec->name, (unsigned long long)rec->base);
		return -ENODEV;
	}
	pthread_mutex_lock(&vm->lock);
	if (vm->started) {
		pthread_mutex_unlock(&vm->lock);
		gv_set_error("the guest has already been started");
		return -EBUSY;
	}
	if (vm->accel->pre_start)
		vm->accel->pre_start(vm);
	/* vCPU threads take the kick; block other signals there so the
	 * application's handlers keep running on its own threads. */
	sigfillset(&all);
	sigdelset(&all, SIGUSR1);      /* accel/kvm.c's kick */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (i = 0; i < vm->ncpus; i++) {
		vm->cpu[i].phase = GV_VCPU_RUNNING;
		ret = -pthread_create(&vm->cpu[i].thread, NULL, gv_vcpu_thread, &vm->cpu[i]);
		if (ret) {
			vm->cpu[i].phase = GV_VCPU_IDLE;
			break;
		}
		vm->cpu[i].spawned = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	vm->started = true;
	pthread_mutex_unlock(&vm->lock);
	if (ret) {
		gv_vm_stop_with(vm, NULL, GV_STOP_ERROR, ret, 0, "starting vCPU %u: %s", i,
				strerror(-ret));
		gv_set_error("starting vCPU %u: %s", i, strerror(-ret));
	}
	return ret;
}

int gv_vm_wait(struct gv_vm *vm, struct gv_result *res)
{
	if (!vm->started) {
		gv_set_error("the guest was not started");
		return -EINVAL;
	}
	if (!vm->joined) {
		for (unsigned i = 0; i < vm->ncpus; i++)
			if (vm->cpu[i].spawned)
				pthread_join(vm->cpu[i].thread, NULL);
		vm->joined = true;
		gv_console_flush(vm);
	}
	pthread_mutex_lock(&vm->lock);
	/* Every vCPU halted and nobody wrote the exit port. */
	if (vm->result.why == GV_STOP_NONE) {
		vm->result.why = GV_STOP_HALT;
		snprintf(vm->result.report, sizeof(vm->result.report),
			 "every vCPU halted without an exit status");
	}
	if (res)
		*res = vm->result;
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int gv_vm_run(struct gv_vm *vm, struct gv_result *res)
{
	int ret = gv_vm_start(vm);

	if (ret && !vm->started)
		return ret;
	return gv_vm_wait(vm, res);
}

static bool gv_all_parked_locked(const struct gv_vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->cpu[i].phase == GV_VCPU_RUNNING)
			return false;
	return true;
}

int gv_vm_pause(struct gv_vm *vm)
{
	if (gv_self && gv_self->vm == vm) {
		gv_set_error("gv_vm_pause from a vCPU thread would wait for itself");
		return -EDEADLK;
	}
	pthread_mutex_lock(&vm->lock);
	vm->pause_req = true;
	gv_kick_all_locked(vm);
	while (!gv_all_parked_locked(vm))
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int gv_vm_resume(struct gv_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	vm->pause_req = false;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

/* The vCPU is outside KVM_RUN and stays there while vm->lock is held. */
static int gv_vcpu_quiet_locked(struct gv_vm *vm, unsigned cpu)
{
	if (cpu >= vm->ncpus) {
		gv_set_error("no vCPU %u (the VM has %u)", cpu, vm->ncpus);
		return -EINVAL;
	}
	if (vm->cpu[cpu].phase == GV_VCPU_RUNNING) {
		gv_set_error("vCPU %u is running: pause the VM first", cpu);
		return -EBUSY;
	}
	return 0;
}

int gv_vcpu_get_state(struct gv_vm *vm, unsigned cpu, struct gv_vcpu_state *st)
{
	struct gv_vcpu *v;
	int ret;

	pthread_mutex_lock(&vm->lock);
	ret = gv_vcpu_quiet_locked(vm, cpu);
	if (ret)
		goto out;
	v = &vm->cpu[cpu];
	memset(st, 0, sizeof(*st));
	ret = vm->accel->get_state(v, st);
	if (ret)
		gv_set_error("reading vCPU %u state: %s", cpu, strerror(-ret));
out:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int gv_vcpu_set_state(struct gv_vm *vm, unsigned cpu, const struct gv_vcpu_state *st)
{
	struct gv_vcpu *v;
	int ret;

	pthread_mutex_lock(&vm->lock);
	ret = gv_vcpu_quiet_locked(vm, cpu);
	if (ret)
		goto out;
	v = &vm->cpu[cpu];
	ret = vm->accel->set_state(v, st);
	if (ret)
		gv_set_error("writing vCPU %u state: %s", cpu, strerror(-ret));
out:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

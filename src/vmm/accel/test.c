// SPDX-License-Identifier: MIT
/*
 * accel/test.c - the test accelerator: vCPU threads that execute nothing
 * and handle the exits a driver posts (after QEMU's qtest).
 *
 * Model: each vCPU has a kvm_run record of its own (GV_TEST_RUN_SIZE bytes,
 * port data at GV_TEST_DATA_OFF as KVM puts it) and its state in memory.
 * A driver fills the record (gv_test_post), the vCPU thread's run() takes
 * it, vcpu.c handles it with the code KVM exits go through, and exit_done()
 * completes it as KVM's next KVM_RUN would (an IN's value lands in rax),
 * then wakes the driver. One exit per vCPU is in flight at a time. A kick
 * makes run() return -EINTR, leaving a posted exit for after the pause.
 *
 * Lock rule: tv->lock protects every field of struct gv_test_vcpu and the
 * exit record while an exit is posted; it nests inside vm->lock (kick and
 * rearm are called with vm->lock held) and is never held while calling
 * into vcpu.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

struct gv_test_vcpu {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_mutex_t driver;         /* one driver exit per vCPU at a time */
	struct gv_vcpu_state st;
	bool kicked;
	bool posted;                    /* an exit waits for the vCPU thread  */
	bool done;                      /* ... and has been handled           */
	bool alive;                     /* the vCPU thread runs               */
	int result;
	void (*done_fn)(const struct kvm_run *run, void *ctx);
	void *done_ctx;
};

static struct gv_test_vcpu *gv_tv(const struct gv_vcpu *vcpu)
{
	return vcpu->accel;
}

static int gv_test_vm_init(struct gv_vm *vm)
{
	vm->kvm_fd = vm->vm_fd = -1;
	vm->run_size = GV_TEST_RUN_SIZE;
	vm->exit_hypercall = true;
	return 0;
}

/* The guest sees RAM through the KVM view, which the driver's guest-memory
 * accesses use (gv_test_mem_read/write): nothing to bind. */
static int gv_test_ram_bind(struct gv_vm *vm)
{
	(void)vm;
	return 0;
}

static void gv_test_vm_fini(struct gv_vm *vm)
{
	(void)vm;
}



static int gv_test_vcpu_init(struct gv_vcpu *vcpu)
{
	struct gv_test_vcpu *tv = calloc(1, sizeof(*tv));

	if (!tv) {
		gv_set_error("vCPU %u: out of memory", vcpu->id);
		return -ENOMEM;
	}
	vcpu->run = aligned_alloc(4096, GV_TEST_RUN_SIZE);
	if (!vcpu->run) {
		free(tv);
		gv_set_error("vCPU %u: out of memory", vcpu->id);
		return -ENOMEM;
	}
	memset(vcpu->run, 0, GV_TEST_RUN_SIZE);
	pthread_mutex_init(&tv->lock, NULL);
	pthread_cond_init(&tv->cond, NULL);
	pthread_mutex_init(&tv->driver, NULL);
	/* What KVM_CREATE_VCPU gives: a runnable vCPU, flags bit 1 set. */
	tv->st.regs.rflags = 2;
	tv->st.mp.mp_state = KVM_MP_STATE_RUNNABLE;
	vcpu->accel = tv;
	return 0;
}

static void gv_test_vcpu_fini(struct gv_vcpu *vcpu)
{
	struct gv_test_vcpu *tv = gv_tv(vcpu);

	if (tv) {
		pthread_mutex_destroy(&tv->driver);
		pthread_cond_destroy(&tv->cond);
		pthread_mutex_destroy(&tv->lock);
		free(tv);
	}
	free(vcpu->run);
	vcpu->run = NULL;
	vcpu->accel = NULL;
}

static int gv_test_vcpu_cpuid(struct gv_vcpu *vcpu)
{
	(void)vcpu;
	return 0;
}

static void gv_test_pre_start(struct gv_vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct gv_test_vcpu *tv = gv_tv(&vm->cpu[i]);

		pthread_mutex_lock(&tv->lock);
		tv->alive = true;
		pthread_mutex_unlock(&tv->lock);
	}
}

static int gv_test_run(struct gv_vcpu *vcpu)
{
	struct gv_test_vcpu *tv = gv_tv(vcpu);
	int ret;

	pthread_mutex_lock(&tv->lock);
	while (!tv->posted && !tv->kicked)
		pthread_cond_wait(&tv->cond, &tv->lock);
	if (tv->kicked) {
		ret = -EINTR;
	} else {
		tv->posted = false;
		ret = 0;
	}
	pthread_mutex_unlock(&tv->lock);
	return ret;
}

/* What KVM does on the next KVM_RUN after an IN: the value read goes into
 * the low bytes of rax (a 32-bit IN clears the upper half, as mov does);
 * after a hypercall exit, its ret goes into rax. */
static void gv_test_complete_in(struct gv_vcpu *vcpu, struct kvm_regs *regs)
{
	const struct kvm_run *run = vcpu->run;
	uint64_t v = 0;

	if (run->exit_reason == KVM_EXIT_HYPERCALL) {
		regs->rax = run->hypercall.ret;
		return;
	}
	if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_IN ||
	    run->io.count != 1)
		return;
	memcpy(&v, (const uint8_t *)run + run->io.data_offset, run->io.size);
	gv_accel_load_reg(&regs->rax, v, run->io.size);
}

static void gv_test_exit_done(struct gv_vcpu *vcpu, int ret)
{
	struct gv_test_vcpu *tv = gv_tv(vcpu);

	pthread_mutex_lock(&tv->lock);
	gv_test_complete_in(vcpu, &tv->st.regs);
	if (tv->done_fn)
		tv->done_fn(vcpu->run, tv->done_ctx);
	tv->result = ret;
	tv->done = true;
	pthread_cond_broadcast(&tv->cond);
	pthread_mutex_unlock(&tv->lock);
}

static void gv_test_thread_end(struct gv_vcpu *vcpu)
{
	struct gv_test_vcpu *tv = gv_tv(vcpu);

	pthread_mutex_lock(&tv->lock);
	tv->alive = false;
	pthread_cond_broadcast(&tv->cond);
	pthread_mutex_unlock(&tv->lock);
}

static void gv_test_kick(struct gv_vcpu *vcpu)
{
	struct gv_test_vcpu *tv = gv_tv(vcpu);

	pthread_mutex_lock(&tv->lock);
	tv->kicked = true;
	pthread_cond_broadcast(&tv->cond);
	pthread_mutex_unlock(&tv->lock);
}

static void gv_test_rearm(struct gv_vcpu *vcpu)
{
	struct gv_test_vcpu *tv = gv_tv(vcpu);

	pthread_mutex_lock(&tv->lock);
	tv->kicked = false;
	pthread_mutex_unlock(&tv->lock);
}

/* exit_done already completed the last exit: nothing is pending. */
static void gv_test_complete(struct gv_vcpu *vcpu)
{
	(void)vcpu;
}

static int gv_test_get_regs(struct gv_vcpu *vcpu, struct kvm_regs *regs)
{
	struct gv_test_vcpu *tv = gv_tv(vcpu);

	pthread_mutex_lock(&tv->lock);
	*regs = tv->st.regs;
	pthread_mutex_unlock(&tv->lock);
	return 0;
}

static int gv_test_get_state(struct gv_vcpu *vcpu, struct gv_vcpu_state *st)
{
	struct gv_test_vcpu *tv = gv_tv(vcpu);

	pthread_mutex_lock(&tv->lock);
	*st = tv->st;
	pthread_mutex_unlock(&tv->lock);
	return 0;
}

static int gv_test_set_state(struct gv_vcpu *vcpu, const struct gv_vcpu_state *st)
{
	struct gv_test_vcpu *tv = gv_tv(vcpu);

	pthread_mutex_lock(&tv->lock);
	tv->st = *st;
	pthread_mutex_unlock(&tv->lock);
	return 0;
}

int gv_test_post(struct gv_vcpu *vcpu,
		 void (*fill)(struct kvm_run *run, struct kvm_regs *regs, void *ctx),
		 void (*done)(const struct kvm_run *run, void *ctx), void *ctx)
{
	struct gv_test_vcpu *tv = gv_tv(vcpu);
	int ret;

	if (vcpu->vm->accel != &gv_accel_test) {
		gv_set_error("the VM does not run on the test accelerator");
		return -EOPNOTSUPP;
	}
	pthread_mutex_lock(&tv->driver);
	pthread_mutex_lock(&tv->lock);
	if (!tv->alive) {
		ret = -ESRCH;
		gv_set_error("vCPU %u is not running (not started, halted or stopped)",
			     vcpu->id);
		goto out;
	}
	memset(vcpu->run, 0, sizeof(*vcpu->run));
	fill(vcpu->run, &tv->st.regs, ctx);
	tv->done_fn = done;
	tv->done_ctx = ctx;
	tv->done = false;
	tv->posted = true;
	pthread_cond_broadcast(&tv->cond);
	while (!tv->done && tv->alive)
		pthread_cond_wait(&tv->cond, &tv->lock);
	if (tv->done) {
		ret = tv->result;
	} else {
		/* The VM stopped before the vCPU took the exit. */
		tv->posted = false;
		ret = -ESRCH;
		gv_set_error("vCPU %u stopped before handling the exit", vcpu->id);
	}
	tv->done_fn = NULL;
	tv->done_ctx = NULL;
out:
	pthread_mutex_unlock(&tv->lock);
	pthread_mutex_unlock(&tv->driver);
	return ret;
}

const struct gv_accel_ops gv_accel_test = {
	.name = "test",
	.vm_init = gv_test_vm_init,
	.ram_bind = gv_test_ram_bind,
	.vm_fini = gv_test_vm_fini,
	.vcpu_init = gv_test_vcpu_init,
	.vcpu_fini = gv_test_vcpu_fini,
	.vcpu_cpuid = gv_test_vcpu_cpuid,
	.run = gv_test_run,
	.exit_done = gv_test_exit_done,
	.kick = gv_test_kick,
	.rearm = gv_test_rearm,
	.complete = gv_test_complete,
	.pre_start = gv_test_pre_start,
	.thread_end = gv_test_thread_end,
	.get_regs = gv_test_get_regs,
	.get_state = gv_test_get_state,
	.set_state = gv_test_set_state,
};

/* SPDX-License-Identifier: MIT */
/*
 * accel.h - what runs a vCPU: the accelerator interface below vcpu.c.
 *
 * Model: an accelerator owns the VM's and the vCPUs' kernel objects (or
 * their stand-ins) and produces exits. Every exit, whoever produced it, is
 * a struct kvm_run record in vcpu->run, handled by the one exit-dispatch
 * path (gv_vcpu_handle_exit): port I/O, memory faults, MMIO, halts. So the
 * devices and hypercalls a test drives through the test accelerator run
 * exactly the code a guest under KVM reaches.
 *
 *   kvm  (accel/kvm.c)  /dev/kvm: KVM_RUN produces the exits.
 *   test (accel/test.c) no instruction executes: a driver (testdrv.c, a test
 *                       or `gmem vm --accel=test --script`) posts each exit
 *                       a guest would have caused and waits for its result,
 *                       as QEMU's qtest does. vCPU state is kept in memory.
 *   user (accel/user.c) the guest's instructions execute in user mode on a
 *                       vCPU thread; what user mode may not execute traps
 *                       and becomes the exit KVM would give. No isolation:
 *                       for the project's own guest programs, on hosts
 *                       without KVM.
 *
 * The run loop (vcpu.c):  checkpoint (rearm) -> run() -> handle exit -> exit_done()
 * run() returns 0 with an exit in vcpu->run, -EINTR when kicked, or another
 * negative errno (the VM stops with it). kick() makes a run() in progress or
 * about to start return -EINTR soon; it may be called with vm->lock held
 * and from any thread. complete() (before a pause parks the vCPU) finishes
 * what the last exit left pending, so that the state read next is true.
 */
#ifndef GV_ACCEL_H
#define GV_ACCEL_H

#include "vmm_internal.h"

struct gv_accel_ops {
	const char *name;
	/* The VM: kernel objects, then the RAM bound where the guest sees it. */
	int  (*vm_init)(struct gv_vm *vm);
	int  (*ram_bind)(struct gv_vm *vm);
	void (*vm_fini)(struct gv_vm *vm);
	int  (*vcpu_init)(struct gv_vcpu *vcpu);
	void (*vcpu_fini)(struct gv_vcpu *vcpu);
	/* CPUID for a vCPU about to boot or be restored (test: nothing). */
	int  (*vcpu_cpuid)(struct gv_vcpu *vcpu);
	int  (*run)(struct gv_vcpu *vcpu);
	void (*exit_done)(struct gv_vcpu *vcpu, int ret);   /* may be NULL */
	void (*kick)(struct gv_vcpu *vcpu);
	/* Undo a kick before the next run(). Caller holds vm->lock (so a kick
	 * cannot fall between the checkpoint's decision and this). */
	void (*rearm)(struct gv_vcpu *vcpu);
	void (*complete)(struct gv_vcpu *vcpu);
	/* Before the vCPU threads start, on the starting thread (may be NULL). */
	void (*pre_start)(struct gv_vm *vm);
	/* The vCPU's thread is about to end (may be NULL). */
	void (*thread_end)(struct gv_vcpu *vcpu);
	int  (*get_regs)(struct gv_vcpu *vcpu, struct kvm_regs *regs);
	int  (*get_state)(struct gv_vcpu *vcpu, struct gv_vcpu_state *st);
	int  (*set_state)(struct gv_vcpu *vcpu, const struct gv_vcpu_state *st);
};

/* What a load of @size bytes (an IN, an MMIO read) leaves in its register,
 * as the CPU does: 4 and 8 bytes replace it (a 32-bit write clears the
 * upper half), 1 and 2 replace only the low bytes. */
static inline void gv_accel_load_reg(__u64 *reg, __u64 v, unsigned size)
{
	*reg = size >= 4 ? v : (*reg & ~((1ull << (8 * size)) - 1)) | v;
}

extern const struct gv_accel_ops gv_accel_kvm;
extern const struct gv_accel_ops gv_accel_test;
extern const struct gv_accel_ops gv_accel_user;

#endif /* GV_ACCEL_H */

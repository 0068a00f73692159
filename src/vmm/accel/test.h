/* SPDX-License-Identifier: MIT */
/*
 * accel/test.h - the test accelerator's side of the driver (testdrv.c).
 */
#ifndef GV_ACCEL_TEST_H
#define GV_ACCEL_TEST_H

#include "accel.h"

/* Where a posted port exit keeps its data, as KVM does: past the record. */
#define GV_TEST_RUN_SIZE   8192u
#define GV_TEST_DATA_OFF   4096u

/* Fill @vcpu's exit record with @fill(run, ctx) and hand it to the vCPU
 * thread; wait until the exit is handled and return what the handler
 * returned (0 resumed, 1 halted, < 0 the VM stopped). -ESRCH: the vCPU's
 * thread is not running (VM not started, stopped, or the vCPU halted).
 * While the VM is paused the exit waits, as a real vCPU's would. After the
 * handler, @done(run, regs, ctx) (may be NULL) runs under the accelerator's
 * lock with the exit record and the registers, before the next exit. */
int  gv_test_post(struct gv_vcpu *vcpu,
                  void (*fill)(struct kvm_run *run, struct kvm_regs *regs, void *ctx),
                  void (*done)(const struct kvm_run *run, void *ctx), void *ctx);

#endif /* GV_ACCEL_TEST_H */

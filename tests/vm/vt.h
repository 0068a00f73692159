/* SPDX-License-Identifier: MIT */
/*
 * vt.h - helpers of the vm suites: run a guest of guests/ on the micro-VMM
 * in this process, read guest ELF files, find text in the console.
 */
#ifndef VT_H
#define VT_H

#include "helpers.h"
#include "vmm.h"

#define VT_MEM (4 * TH_MIB)

/* Skip the test, with the reason, when KVM cannot run guests here. The
 * guest's RAM is a guest_memfd where KVM has one, else a memfd bound as a
 * plain slot. */
void vt_need_kvm(void);

/* The same, naming the instruction-level behaviour the test proves (what
 * no driver on the test accelerator can stand in for), for the skip line. */
void vt_need_kvm_for(const char *behaviour);

/* Skip the test, with the reason, unless the RAM is a guest_memfd: KVM
 * then knows the private pages (memory attributes, memory fault exits). */
void vt_need_guest_memfd(void);

/* GMEM_GUEST_DIR/<name>.elf */
const char *vt_guest_path(const char *name);

/* What executes a guest program's instructions here: KVM where it is,
 * else the user accelerator (accel/user.c: in this process, privileged
 * instructions trapped into exits). */
enum gv_accel vt_exec_accel(void);

/* A VM with @ncpus vCPUs and VT_MEM of RAM, @name loaded, on vt_exec_accel(). */
struct gv_vm *vt_vm(const char *name, unsigned ncpus, enum gv_fault_policy policy);

/* For tests that execute no guest instruction (they feed exits to the
 * dispatcher or call the VMM directly): on KVM where it is, else on the
 * test accelerator, so they run on every host. */
struct gv_vm *vt_vm_any(const char *name, unsigned ncpus, enum gv_fault_policy policy);

/* Under KVM, run the loaded guest and expect exit 0; on the test
 * accelerator (nothing executes), start the VM and stop it. For tests whose
 * checks need no instruction and which end by showing the VM still works. */
void vt_finish(struct gv_vm *vm, struct gv_result *res);

/* Create, load and run @name to the end. */
struct gv_vm *vt_run(const char *name, unsigned ncpus, struct gv_result *res);

/* The whole file in a malloc'd buffer of exactly its size. */
uint8_t *vt_read(const char *path, size_t *len);

/* The guest's console; fails the test (printing it) when @needle is absent. */
void vt_console_has(struct gv_vm *vm, const char *needle);

/* Fail, printing the report and the console, unless the guest exited
 * with @status. */
void vt_expect_exit(struct gv_vm *vm, const struct gv_result *res, int status);

#endif /* VT_H */

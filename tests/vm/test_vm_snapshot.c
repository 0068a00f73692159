// SPDX-License-Identifier: MIT
/*
 * test_vm_snapshot.c - suite "vm_snapshot": snapshots of a running guest.
 *
 * The snapvm guest fills 64 KiB of private memory from a TSC seed and
 * verifies it pass after pass. The test saves it between two passes (pause,
 * save, resume), lets the original finish, then restores the snapshot into
 * a new VM, eagerly (guest_memfd) and lazily (memfd + userfaultfd, loader
 * held so that only the guest's own touches load pages): the guest carries
 * on from where it was and verifies its memory. A damaged or mismatched
 * PATH.vm is refused before any VM is made. Where KVM is missing the same
 * session runs on the test accelerator, a driver standing in for snapvm
 * (below), so the VM snapshot and its lazy restore are proven everywhere.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal.h"
#include "vmsnap.h"
#include "vt.h"

struct vs_dir {
	char dir[64], mem[96], vm[100];
};

static void vs_dir_make(struct vs_dir *d)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/gmem-vmsnap-XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir));
	snprintf(d->mem, sizeof(d->mem), "%s/guest.snap", d->dir);
	snprintf(d->vm, sizeof(d->vm), "%s.vm", d->mem);
}

static void vs_dir_remove(struct vs_dir *d)
{
	unlink(d->vm);
	unlink(d->mem);
	rmdir(d->dir);
}

/* ---- the session on the test accelerator ------------------------------
 *
 * Where KVM is missing a driver does what snapvm does, through the same
 * exits and the memslot's mapping: fills VS_WORDS words of private memory
 * from a seed, keeps the seed and the next pass in the vCPU's registers
 * (rbx, r12) as the guest keeps them in its own, verifies pass after pass
 * and prints the same lines. The snapshot then has to bring back memory,
 * states and registers for the restored session to verify anything; with
 * a lazy restore the driver's reads are the guest's touches.
 */
#define VS_WORDS    8192        /* as SNAPVM_WORDS */
#define VS_PASSES   12
#define VS_PATTERN  0x200000ull

static bool vs_on_kvm(void)
{
	return !th_kvm_device_unavailable();
}

static uint64_t vs_word(uint64_t seed, uint64_t i)
{
	uint64_t x = seed ^ (i * 0x9e3779b97f4a7c15ull);

	return x ^ (x >> 29);
}

/* A seed no earlier run or fresh VM holds, as snapvm draws from the TSC. */
static uint64_t vs_seed(void)
{
	uint64_t seed = 0;

	cr_assert_eq(getrandom(&seed, sizeof(seed), 0), (ssize_t)sizeof(seed));
	return seed | 1;
}

static void vs_print(struct gv_vm *vm, const char *fmt, ...)
{
	char line[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	TH_EQ(gv_test_outs(vm, 0, GV_PORT_CONSOLE, 1, line, (uint32_t)n), 0);
}

/* rbx = seed, r12 = the next pass, set while the vCPU is out of the run. */
static void vs_keep_in_registers(struct gv_vm *vm, uint64_t seed, uint64_t next, bool running)
{
	struct gv_vcpu_state st;

	if (running)
		TH_EQ(gv_vm_pause(vm), 0);
	TH_EQ(gv_vcpu_get_state(vm, 0, &st), 0);
	st.regs.rbx = seed;
	st.regs.r12 = next;
	TH_EQ(gv_vcpu_set_state(vm, 0, &st), 0);
	if (running)
		TH_EQ(gv_vm_resume(vm), 0);
}

/* Passes @from..VS_PASSES over the pattern, then the exit. */
static void vs_drive_passes(struct gv_vm *vm, uint64_t seed, int from, const char *save_at)
{
	static uint64_t got[VS_WORDS];

	for (int pass = from; pass <= VS_PASSES; pass++) {
		uint64_t bad = 0;

		TH_EQ(gv_test_mem_read(vm, VS_PATTERN, got, sizeof(got)), 0);
		for (uint64_t i = 0; i < VS_WORDS; i++)
			bad += got[i] != vs_word(seed, i);
		if (bad) {
			vs_print(vm, "snapvm: pass %d: %llu words differ\n", pass,
				 (unsigned long long)bad);
			TH_EQ(gv_test_out(vm, 0, GV_PORT_EXIT, 4, 1), 0);
			return;
		}
		vs_print(vm, "snapvm: pass %d ok\n", pass);
		vs_keep_in_registers(vm, seed, (uint64_t)pass + 1, true);
		if (pass == 1 && save_at) {
			int ret = gv_vm_snapshot_save(vm, save_at, NULL);

			cr_assert_eq(ret, 0, "save: %d: %s", ret, gv_last_error());
		}
	}
	vs_print(vm, "snapvm: verified %d passes\n", VS_PASSES);
	TH_EQ(gv_test_out(vm, 0, GV_PORT_EXIT, 4, 0), 0);
}

static void vs_drive_save(const char *path)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1, .policy = GV_POLICY_CONVERT,
				 .accel = GV_ACCEL_TEST };
	static uint64_t pattern[VS_WORDS];
	uint64_t seed = vs_seed();
	struct gv_result res;
	struct gv_vm *vm;

	cr_assert_eq(gv_vm_create(&cfg, &vm), 0, "%s", gv_last_error());
	vs_keep_in_registers(vm, seed, 1, false);
	cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
	for (uint64_t i = 0; i < VS_WORDS; i++)
		pattern[i] = vs_word(seed, i);
	TH_EQ(gv_test_mem_write(vm, VS_PATTERN, pattern, sizeof(pattern)), 0);
	TH_EQ(gmem_state(gv_vm_gmem(vm), VS_PATTERN), GMEM_PRIVATE);
	vs_print(vm, "snapvm: filled %zu KiB at %#llx\n", sizeof(pattern) >> 10, VS_PATTERN);
	vs_drive_passes(vm, seed, 1, path);
	cr_assert_eq(gv_vm_wait(vm, &res), 0);
	vt_expect_exit(vm, &res, 0);
	vt_console_has(vm, "snapvm: verified 12 passes\n");
	gv_vm_destroy(vm);
}

/* The restored session: what it knows comes from the snapshot's registers. */
static void vs_drive_restored(struct gv_vm *vm)
{
	struct gv_vcpu_state st;

	TH_EQ(gv_vcpu_get_state(vm, 0, &st), 0);
	cr_assert(st.regs.r12 == 2 && (st.regs.rbx & 1),
		  "registers after restore: rbx %#llx r12 %llu, want an odd seed and pass 2",
		  (unsigned long long)st.regs.rbx, (unsigned long long)st.regs.r12);
	cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
	vs_drive_passes(vm, st.regs.rbx, (int)st.regs.r12, NULL);
}

/* ---- the session under KVM, or driven ------------------------------------ */

/* Run snapvm, save it once its first pass is printed, let it finish. */
static void vs_save_running(const char *path)
{
	struct gv_vm *vm;
	struct gv_result res;
	int ret = -1;

	if (!vs_on_kvm()) {
		vs_drive_save(path);
		return;
	}
	vm = vt_vm("snapvm", 1, GV_POLICY_CONVERT);
	cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
	for (int i = 0; i < 20000 && ret; i++) {
		bool seen;

		gv_vm_pause(vm);
		seen = strstr(gv_vm_console(vm, NULL), "snapvm: pass 1 ok\n");
		gv_vm_resume(vm);
		if (seen) {
			ret = gv_vm_snapshot_save(vm, path, NULL);
			cr_assert_eq(ret, 0, "save: %d: %s", ret, gv_last_error());
		} else {
			usleep(1000);
		}
	}
	cr_assert_eq(ret, 0, "the guest never finished pass 1; console:\n%s",
		     gv_vm_console(vm, NULL));
	cr_assert_eq(gv_vm_wait(vm, &res), 0);
	vt_expect_exit(vm, &res, 0);
	vt_console_has(vm, "snapvm: verified 12 passes\n");
	gv_vm_destroy(vm);
}

static struct gv_config vs_restore_cfg(void)
{
	return (struct gv_config){ .policy = GV_POLICY_CONVERT,
				   .accel = vs_on_kvm() ? GV_ACCEL_KVM : GV_ACCEL_TEST };
}

static struct gv_vm *vs_restore(const char *path, unsigned flags)
{
	struct gv_config cfg = vs_restore_cfg();
	struct gmem_snapshot_opts o = { .flags = flags };
	struct gv_vm *vm = NULL;
	int ret = gv_vm_snapshot_restore(&cfg, path, &o, &vm);

	cr_assert_eq(ret, 0, "restore %s: %d: %s", path, ret, gv_last_error());
	return vm;
}

/* The restored guest finishes its passes and never starts over. */
static void vs_expect_carried_on(struct gv_vm *vm)
{
	struct gv_result res;

	if (vs_on_kvm()) {
		cr_assert_eq(gv_vm_run(vm, &res), 0, "%s", gv_last_error());
	} else {
		vs_drive_restored(vm);
		cr_assert_eq(gv_vm_wait(vm, &res), 0);
	}
	vt_expect_exit(vm, &res, 0);
	vt_console_has(vm, "snapvm: verified 12 passes\n");
	vt_console_has(vm, "snapvm: pass 12 ok\n");
	cr_assert_null(strstr(gv_vm_console(vm, NULL), "pass 1 ok"),
		       "the restored guest did pass 1 again; console:\n%s",
		       gv_vm_console(vm, NULL));
	cr_assert_null(strstr(gv_vm_console(vm, NULL), "filled"),
		       "the restored guest started over; console:\n%s", gv_vm_console(vm, NULL));
}

Test(vm_snapshot, guest_runs_on_in_a_new_vm)
{
	struct vs_dir d;
	struct gmem_info in;
	struct gmem_probe host;
	struct gv_vm *vm;

	vs_dir_make(&d);
	vs_save_running(d.mem);
	vm = vs_restore(d.mem, 0);
	gmem_info(gv_vm_gmem(vm), &in);
	gmem_probe(&host);
	TH_EQ(in.backend, host.auto_backend);   /* a guest_memfd where KVM has one */
	TH_EQ(gv_vm_ncpus(vm), 1);
	TH_EQ(gv_vm_mem_size(vm), VT_MEM);
	vs_expect_carried_on(vm);
	gv_vm_destroy(vm);
	/* The same snapshot restores again: nothing in it was consumed. */
	vm = vs_restore(d.mem, 0);
	vs_expect_carried_on(vm);
	gv_vm_destroy(vm);
	vs_dir_remove(&d);
}

Test(vm_snapshot, lazy_restore_loads_what_the_guest_touches)
{
	struct gmem_snapshot_lazy_stats st;
	struct vs_dir d;
	struct gv_vm *vm;

	vs_dir_make(&d);
	vs_save_running(d.mem);
	gm_lazy_hold(NULL, true);       /* only the guest's touches load */
	vm = vs_restore(d.mem, GMEM_SNAP_LAZY);
	gm_lazy_hold(NULL, false);
	vs_expect_carried_on(vm);
	cr_assert_eq(gmem_snapshot_lazy_stats(gv_vm_gmem(vm), &st), 0);
	cr_assert_gt(st.by_fault, 0, "faults %llu, chunks %llu/%llu",
		     (unsigned long long)st.faults, (unsigned long long)st.chunks_loaded,
		     (unsigned long long)st.chunks);
	/* Held, the loader loaded nothing: the guest ran on what it touched. */
	TH_EQ(st.by_loader, 0);
	gm_lazy_hold(gv_vm_gmem(vm), false);
	TH_EQ(gmem_snapshot_lazy_wait(gv_vm_gmem(vm)), 0);
	cr_assert_eq(gmem_snapshot_lazy_stats(gv_vm_gmem(vm), &st), 0);
	TH_EQ(st.chunks_loaded, st.chunks);
	gv_vm_destroy(vm);
	vs_dir_remove(&d);
}

Test(vm_snapshot, damaged_or_mismatched_vm_side_refused)
{
	struct gv_config cfg = vs_restore_cfg();
	struct vs_dir d;
	struct gv_vm *vm = NULL;
	char other[128];
	uint8_t byte;
	int fd;

	vs_dir_make(&d);
	vs_save_running(d.mem);
	/* One byte of a register flipped. */
	fd = open(d.vm, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &byte, 1, 64 + 128), 1);
	byte ^= 0x40;
	cr_assert_eq(pwrite(fd, &byte, 1, 64 + 128), 1);
	TH_EQ(gv_vm_snapshot_restore(&cfg, d.mem, NULL, &vm), -EINVAL);
	cr_assert(strstr(gv_last_error(), "checksum mismatch"), "message: %s", gv_last_error());
	byte ^= 0x40;
	cr_assert_eq(pwrite(fd, &byte, 1, 64 + 128), 1);
	close(fd);
	/* PATH.vm of another save of PATH. */
	snprintf(other, sizeof(other), "%s.keep", d.vm);
	cr_assert_eq(rename(d.vm, other), 0);
	vs_save_running(d.mem);
	cr_assert_eq(rename(other, d.vm), 0);
	TH_EQ(gv_vm_snapshot_restore(&cfg, d.mem, NULL, &vm), -EINVAL);
	cr_assert(strstr(gv_last_error(), "does not belong"), "message: %s", gv_last_error());
	/* No PATH.vm at all. */
	unlink(d.vm);
	TH_EQ(gv_vm_snapshot_restore(&cfg, d.mem, NULL, &vm), -ENOENT);
	cr_assert_null(vm);
	vs_dir_remove(&d);
}

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
 * PATH.vm is refused before any VM is made.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Run snapvm, save it once its first pass is printed, let it finish. */
static void vs_save_running(const char *path)
{
	struct gv_vm *vm = vt_vm("snapvm", 1, GV_POLICY_CONVERT);
	struct gv_result res;
	int ret = -1;

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

static struct gv_vm *vs_restore(const char *path, unsigned flags)
{
	struct gv_config cfg = { .policy = GV_POLICY_CONVERT };
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

	cr_assert_eq(gv_vm_run(vm, &res), 0, "%s", gv_last_error());
	vt_expect_exit(vm, &res, 0);
	vt_console_has(vm, "snapvm: verified 12 passes\n");
	vt_console_has(vm, "snapvm: pass 12 ok\n");
	cr_assert_null(strstr(gv_vm_console(vm, NULL), "filled"),
		       "the restored guest started over; console:\n%s", gv_vm_console(vm, NULL));
}

Test(vm_snapshot, guest_runs_on_in_a_new_vm)
{
	struct vs_dir d;
	struct gmem_info in;
	struct gmem_probe host;
	struct gv_vm *vm;

	vt_need_kvm();
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

	vt_need_kvm();
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
	struct gv_config cfg = { .policy = GV_POLICY_CONVERT };
	struct vs_dir d;
	struct gv_vm *vm = NULL;
	char other[128];
	uint8_t byte;
	int fd;

	vt_need_kvm();
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

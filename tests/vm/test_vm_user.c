// SPDX-License-Identifier: MIT
/*
 * test_vm_user.c - suite "user": the user accelerator (accel/user.c) on
 * every host. The guest programs run on it wherever KVM is missing (the vm
 * suites); here are its own rules: one VM per process, a window it will
 * not take from the process, what it maps and how (executable, out of
 * dumps and children), no lazy restore, traps that are not a guest's go
 * where they went before, and the exits it makes from trapped instructions.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "vmsnap.h"
#include "vt.h"

static struct gv_vm *vu_vm(const char *name, unsigned ncpus)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = ncpus,
				 .policy = GV_POLICY_CONVERT, .accel = GV_ACCEL_USER };
	struct gv_vm *vm;
	int ret = gv_vm_create(&cfg, &vm);

	cr_assert_eq(ret, 0, "gv_vm_create(user) = %d: %s", ret, gv_last_error());
	cr_assert_str_eq(gv_accel_name(vm), "user");
	if (name) {
		ret = gv_vm_load_file(vm, vt_guest_path(name));
		cr_assert_eq(ret, 0, "loading %s: %d: %s", name, ret, gv_last_error());
	}
	return vm;
}

/* The VmFlags line of the mapping that starts at @addr. */
static bool vu_smaps_flags(uintptr_t addr, char *flags, size_t size)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false, found = false;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = lo == addr;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			snprintf(flags, size, "%.200s", line + 8);
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

Test(user, the_guest_runs_natively_from_a_window_out_of_dumps_and_children)
{
	struct gv_vm *vm = vu_vm("hello", 1);
	struct gv_result res;
	char flags[256];

	cr_assert(vu_smaps_flags(GV_LOAD_MIN, flags, sizeof(flags)),
		  "no mapping at %#llx", (unsigned long long)GV_LOAD_MIN);
	cr_assert(strstr(flags, " dd") && strstr(flags, " dc") && strstr(flags, " ex"),
		  "window at 1 MiB: VmFlags%s (want dd, dc, ex)", flags);
	/* Guest-physical == host-virtual: the loaded image is there. */
	cr_assert_eq(memcmp((void *)(uintptr_t)GV_LOAD_MIN,
			    (uint8_t *)gmem_kvm_view(gv_vm_gmem(vm)) + GV_LOAD_MIN, 4096), 0);
	cr_assert_eq(gv_vm_run(vm, &res), 0, "%s", gv_last_error());
	vt_expect_exit(vm, &res, 0);
	vt_console_has(vm, "hello from a private guest: vCPU 0 of 1, 4 MiB of RAM\n");
	gv_vm_destroy(vm);
	/* Destroyed: the window is the process's again. */
	cr_assert(!vu_smaps_flags(GV_LOAD_MIN, flags, sizeof(flags)),
		  "the window outlived its VM");
}

Test(user, one_vm_per_process_and_the_window_is_never_taken)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1, .accel = GV_ACCEL_USER };
	struct gv_vm *vm = vu_vm(NULL, 1), *other = NULL;
	void *mine;

	TH_EQ(gv_vm_create(&cfg, &other), -EBUSY);
	cr_assert_null(other);
	cr_assert(strstr(gv_last_error(), "one VM per process"), "%s", gv_last_error());
	gv_vm_destroy(vm);

	/* Something of the process's own at 2 MiB: refused, left alone. */
	mine = mmap((void *)0x200000, 4096, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	cr_assert_eq(mine, (void *)0x200000, "cannot place the obstacle: %s", strerror(errno));
	strcpy(mine, "the process's own");
	TH_EQ(gv_vm_create(&cfg, &other), -EADDRINUSE);
	cr_assert_null(other);
	cr_assert(strstr(gv_last_error(), "in use"), "%s", gv_last_error());
	cr_assert_str_eq(mine, "the process's own");
	munmap(mine, 4096);
	/* Nothing was left claimed by the refusal. */
	vm = vu_vm("hello", 1);
	gv_vm_destroy(vm);
}

/* Restored eagerly, the guest starts on the user accelerator; lazily it
 * cannot (userfaultfd serves the KVM view only), and says so first. */
Test(user, snapshot_restores_eagerly_and_refuses_lazy)
{
	char path[64] = "/tmp/gmem-user-snap-XXXXXX";
	struct gv_config cfg = { .policy = GV_POLICY_CONVERT, .accel = GV_ACCEL_USER };
	struct gmem_snapshot_opts lazy = { .flags = GMEM_SNAP_LAZY };
	struct gv_vm *vm = vu_vm("snapvm", 1), *vm2 = NULL;
	struct gv_result res;
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(gv_vm_snapshot_save(vm, path, NULL), 0, "save: %s", gv_last_error());
	gv_vm_destroy(vm);
	TH_EQ(gv_vm_snapshot_restore(&cfg, path, &lazy, &vm2), -EOPNOTSUPP);
	cr_assert_null(vm2);
	cr_assert(strstr(gv_last_error(), "restore eagerly"), "%s", gv_last_error());
	cr_assert_eq(gv_vm_snapshot_restore(&cfg, path, NULL, &vm2), 0, "restore: %s",
		     gv_last_error());
	cr_assert_eq(gv_vm_run(vm2, &res), 0, "%s", gv_last_error());
	vt_expect_exit(vm2, &res, 0);
	vt_console_has(vm2, "snapvm: verified 12 passes\n");
	gv_vm_destroy(vm2);
	unlink(path);
	strcat(path, GV_SNAP_VM_SUFFIX);
	unlink(path);
}

/* A fault of the VMM's own code, not the guest's, must still kill the
 * process as it would without the accelerator's handlers. */
Test(user, a_host_fault_is_not_taken_for_the_guests)
{
	pid_t pid = fork();
	int st;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1,
					 .accel = GV_ACCEL_USER };
		struct gv_vm *vm;

		if (gv_vm_create(&cfg, &vm))
			_exit(3);
		/* The accelerator's handlers are in place: a NULL store. */
		volatile int *volatile nowhere = NULL;

		*nowhere = 1;
		_exit(4);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	/* Killed by SIGSEGV, or (under ASan, whose handler was there first)
	 * reported and exited with its error code: never carried on. */
	cr_assert((WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV) ||
		  (WIFEXITED(st) && WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 3 &&
		   WEXITSTATUS(st) != 4),
		  "child status %#x: the fault was swallowed or the VM not made", st);
}

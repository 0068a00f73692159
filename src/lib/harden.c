// SPDX-License-Identifier: MIT
/*
 * harden.c - keeping other processes out of a VMM's memory.
 *
 * At GMEM_PRIVACY_VIEW the KVM view maps every page, private ones
 * included, in this process. The library keeps it out of core dumps and
 * children (gm_sys_guard); what it cannot do per mapping is stop another
 * process of the same user from reading this one through /proc/PID/mem,
 * process_vm_readv or ptrace. A non-dumpable process passes the kernel's
 * ptrace access check only for CAP_SYS_PTRACE in its user namespace, so
 * clearing the dumpable flag closes all three at once (ssh-agent and
 * gpg-agent do the same for their keys). It also disables core dumps.
 */
#include <errno.h>
#include <sys/prctl.h>

#include "backend.h"
#include "gmem.h"

int gmem_harden_process(unsigned flags)
{
	gm_clear_error();
	if (flags)
		return -EINVAL;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) {
		int err = -errno;

		gm_set_error("prctl(PR_SET_DUMPABLE, 0) failed");
		return err;
	}
	return 0;
}

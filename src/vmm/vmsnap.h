/* SPDX-License-Identifier: MIT */
/*
 * vmsnap.h - snapshots of a running micro-VMM guest (vmsnap.c).
 *
 * A VM snapshot is two files: PATH, the guest memory and every page's state
 * (gmem_snapshot_save_ex), and PATH.vm, the VM side: vCPU count, memory
 * size and each vCPU's state, bound to PATH. Format: docs/snapshot-format.md.
 */
#ifndef GV_VMSNAP_H
#define GV_VMSNAP_H

#include "vmm.h"

#define GV_SNAP_VM_SUFFIX ".vm"

/* Pause the vCPUs, save memory to @path and the vCPU state to @path.vm
 * (each atomically), resume. @opts as for gmem_snapshot_save_ex (may be
 * NULL); with opts->key, PATH.vm is sealed with it as PATH is. A guest that has stopped already: -ESRCH. A VM with devices
 * beyond the built-in console, exit and hypercall ports is refused
 * (-EOPNOTSUPP): their state is not saved. From a vCPU thread: -EDEADLK.
 * With GMEM_SNAP_LIVE in @opts the vCPUs are paused only while the memory's
 * start image is fixed (the vCPU and device records are read then) and run
 * on while the file is written; opts->live_pause must be NULL (the VM pauses
 * itself), and the user accelerator is refused (-EOPNOTSUPP: it writes
 * guest memory through a window of its own). A guest that has stopped by
 * the pause ends the save before anything is written (-ESRCH).
 * 0 or -errno, gv_last_error() set. */
int gv_vm_snapshot_save(struct gv_vm *vm, const char *path,
			const struct gmem_snapshot_opts *opts);

/* A new VM holding the snapshot at @path: its memory size and vCPU count
 * come from the snapshot (@cfg gives the rest: console, policy), its RAM is
 * the memory restored on it, its vCPUs hold the saved state. gv_vm_start()
 * then runs the guest on from where it was saved. @opts as for
 * gmem_snapshot_restore_ex: with GMEM_SNAP_LAZY the RAM is a memfd served
 * through userfaultfd (pages the guest touches first are loaded first).
 * opts->key opens a sealed PATH.vm (and PATH): a wrong key or any changed
 * byte of PATH.vm is -EBADMSG, a sealed one without a key -ENOKEY, a key
 * for an unsealed one -EINVAL; each before any VM is made. */
int gv_vm_snapshot_restore(const struct gv_config *cfg, const char *path,
			   const struct gmem_snapshot_opts *opts, struct gv_vm **out);

#endif /* GV_VMSNAP_H */

/* SPDX-License-Identifier: MIT */
/*
 * vm_script.h - gmem vm --script (vm_script.c).
 */
#ifndef GMEM_CLI_VM_SCRIPT_H
#define GMEM_CLI_VM_SCRIPT_H

#include <stdbool.h>

#include "vmm.h"

/* Run @path's commands against @vm (started, on the test accelerator).
 * Returns 0 when every line ran and every expect held, else the exit status
 * after one line on stderr. *stopped: the guest stopped on a command (the
 * rest of the file was not run; gv_vm_wait tells why). */
int vm_script_run(struct gv_vm *vm, const char *path, bool *stopped);

#endif /* GMEM_CLI_VM_SCRIPT_H */

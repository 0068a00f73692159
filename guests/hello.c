// SPDX-License-Identifier: MIT
/*
 * hello.c - the smallest guest: one line on the console, exit status 0.
 * Its code, data and stack are private memory the host never shared.
 */
#include "rt.h"

int guest_main(const struct gv_boot *b)
{
	gv_printf("hello from a private guest: vCPU %u of %u, %lu MiB of RAM\n", b->cpu,
		  b->ncpus, (unsigned long)(b->mem_size >> 20));
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * fault.c - a guest that faults on purpose: an undefined instruction with no
 * IDT to handle it becomes a triple fault, which the VMM must report with
 * the registers (rip at the ud2, rax holding a marker) and a failure.
 */
#include "rt.h"

int guest_main(const struct gv_boot *b)
{
	(void)b;
	gv_printf("about to fault\n");
	__asm__ volatile("movabs $0x6661756c74, %%rax\n\tud2" : : : "rax", "memory");
	return 0;
}

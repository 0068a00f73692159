// SPDX-License-Identifier: MIT
/*
 * spin.c - for the pause/resume and device tests, not for the command
 * line: counts in memory until the device the test adds on GV_PORT_USER
 * answers nonzero, then exits 0. Under `gmem vm` (no such device) the first
 * poll stops the guest with a "no device" report.
 */
#include "rt.h"

static volatile uint64_t counter;

static inline uint32_t gv_inl(uint16_t port)
{
	uint32_t v;

	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

int guest_main(const struct gv_boot *b)
{
	(void)b;
	gv_printf("spin: counter at %p\n", (void *)&counter);
	for (;;) {
		for (int i = 0; i < 256; i++)
			counter++;
		if (gv_inl(GV_PORT_USER))
			break;
	}
	gv_printf("spin: stopped after %lu\n", (unsigned long)counter);
	return 0;
}

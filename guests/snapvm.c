// SPDX-License-Identifier: MIT
/*
 * snapvm.c - the guest of VM snapshots (gmem vm --save-at / --restore).
 *
 * Fills 64 KiB of its private memory with a pattern drawn from the TSC at
 * start (so no other run, and no fresh VM, could hold it), then verifies the
 * whole pattern SNAPVM_PASSES times, one console line per pass, and exits 0
 * when every pass found every word intact. A snapshot taken between two
 * lines and restored into a new VM finishes the remaining passes there: the
 * seed lives only in the guest's registers and memory, so the new VM's
 * "verified" line proves both came back exactly.
 */
#include "rt.h"

#define SNAPVM_WORDS  8192      /* 64 KiB: 16 pages */
#define SNAPVM_PASSES 12

static uint64_t pattern[SNAPVM_WORDS] GV_ALIGNED_PAGE;

static inline uint64_t snapvm_rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static inline uint64_t snapvm_word(uint64_t seed, uint64_t i)
{
	uint64_t x = seed ^ (i * 0x9e3779b97f4a7c15ull);

	return x ^ (x >> 29);
}

int guest_main(const struct gv_boot *b)
{
	uint64_t seed = snapvm_rdtsc() | 1;

	(void)b;
	for (uint64_t i = 0; i < SNAPVM_WORDS; i++)
		pattern[i] = snapvm_word(seed, i);
	gv_printf("snapvm: filled %lu KiB at %p\n", (unsigned long)(sizeof(pattern) >> 10),
		  (void *)pattern);
	for (int pass = 1; pass <= SNAPVM_PASSES; pass++) {
		uint64_t bad = 0, first = 0;

		for (uint64_t i = 0; i < SNAPVM_WORDS; i++) {
			if (pattern[i] != snapvm_word(seed, i)) {
				first = bad ? first : i;
				bad++;
			}
		}
		if (bad) {
			gv_printf("snapvm: pass %d: %lu words differ, first at %p\n", pass,
				  (unsigned long)bad, (void *)&pattern[first]);
			return 1;
		}
		gv_printf("snapvm: pass %d ok\n", pass);
	}
	gv_printf("snapvm: verified %d passes\n", SNAPVM_PASSES);
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * smp.c - every vCPU converts its own range at the same time as the others:
 * fill, share, check, rewrite, unshare, check, ROUNDS times over disjoint
 * page ranges, so the VMM serves concurrent hypercalls from several vCPU
 * threads into one gmem memory. vCPU 0 waits for all and exits with the
 * total number of failed checks.
 *
 * Host-side counts the test expects: 2 * ROUNDS conversions per vCPU.
 */
#include "rt.h"

#define ROUNDS   8
#define PER_CPU  4            /* pages each vCPU converts */
#define MAX_CPUS 8

static uint8_t area[MAX_CPUS * PER_CPU * GV_PAGE] GV_ALIGNED_PAGE;
static volatile int done_cpus;
static volatile int fails;
static volatile int started;

static int fill_check(uint8_t *p, uint8_t seed, int write)
{
	int bad = 0;

	for (unsigned long i = 0; i < PER_CPU * GV_PAGE; i += 512) {
		if (write)
			p[i] = (uint8_t)(seed + i / 512);
		else if (p[i] != (uint8_t)(seed + i / 512))
			bad++;
	}
	return bad;
}

static void work(unsigned cpu, int n)
{
	uint8_t *mine = area + (unsigned long)cpu * PER_CPU * GV_PAGE;
	unsigned long len = PER_CPU * GV_PAGE;
	int bad = 0;

	/* Start together so the conversions overlap in time. */
	__atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
	while (started < n)
		gv_pause();
	for (int r = 0; r < ROUNDS; r++) {
		uint8_t seed = (uint8_t)(cpu * 16 + r);

		fill_check(mine, seed, 1);
		if (gv_share(mine, len))
			bad++;
		bad += fill_check(mine, seed, 0);
		fill_check(mine, seed + 1, 1);
		if (gv_unshare(mine, len))
			bad++;
		bad += fill_check(mine, seed + 1, 0);
	}
	if (bad)
		gv_printf("vCPU %u: %d failure(s)\n", cpu, bad);
	__atomic_fetch_add(&fails, bad, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&done_cpus, 1, __ATOMIC_SEQ_CST);
}

void guest_secondary(const struct gv_boot *b)
{
	if (b->cpu < MAX_CPUS)
		work(b->cpu, b->ncpus < MAX_CPUS ? (int)b->ncpus : MAX_CPUS);
}

int guest_main(const struct gv_boot *b)
{
	unsigned n = b->ncpus < MAX_CPUS ? b->ncpus : MAX_CPUS;

	work(0, (int)n);
	while (done_cpus < (int)n)
		gv_pause();
	gv_printf("smp: %u vCPUs x %d rounds, %d failure(s)\n", n, ROUNDS, fails);
	return fails;
}

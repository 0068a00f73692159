/* SPDX-License-Identifier: MIT */
/*
 * clock.h - one clock reading in nanoseconds, for the parts that time
 * themselves (I/O calibration, adaptive snapshot compression).
 */
#ifndef GM_CLOCK_H
#define GM_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Clock @id (CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID, ...) in ns. */
static inline uint64_t gm_clock_ns(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

#endif /* GM_CLOCK_H */

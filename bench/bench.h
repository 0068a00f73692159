/* SPDX-License-Identifier: MIT */
/*
 * bench.h - common machinery of gmem-bench.
 *
 * Every benchmark measures the library and a baseline side by side in one
 * run: rounds alternate between the two (A B, B A, A B, ...) so that the
 * drift of a noisy machine hits both alike, and medians over rounds are
 * reported, with the median of the per-round ratios. Results go to a
 * readable table (stdout) and, with --json, to a JSON document (stdout; the
 * table then goes to stderr).
 */
#ifndef GMEM_BENCH_H
#define GMEM_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <gmem.h>

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define TiB (1ull << 40)

#define PLACEHOLDER_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED)

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: cheap enough to sit inside a 20 ns loop. */
static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* One side of a paired measurement. run() performs @iters iterations and
 * returns the nanoseconds to count (usually the whole call; a side with
 * untimed set-up inside an iteration times only the part that matters).
 * It sets *err (negative errno) and returns early when it cannot go on. */
struct side {
	const char *name;
	uint64_t (*run)(void *ctx, uint64_t iters, int *err);
	void *ctx;
};

struct pair_opts {
	uint64_t round_ns;      /* each side's round lasts at least this      */
	uint64_t total_ns;      /* each side's rounds add up to at least this */
	unsigned min_rounds, max_rounds;
};

struct pair_result {
	double a_ns, b_ns;      /* median ns per iteration                    */
	double ratio;           /* median of per-round a/b                    */
	double ratio_p25, ratio_p75;
	double a_total_ms, b_total_ms;
	uint64_t a_iters, b_iters;      /* iterations per round               */
	unsigned rounds;
	int err;                /* first error of either side, 0 if none      */
	const char *err_side;
};

extern const struct pair_opts pair_defaults;

/* Measure @a against @b; 0, or the negative errno a side reported. */
int run_pair(const struct side *a, const struct side *b, const struct pair_opts *o,
	     struct pair_result *r);

double median(double *v, unsigned n);
double percentile(double *v, unsigned n, double p);

/* Output. Rows belong to the benchmark running now. */
enum cmp { CMP_NONE, CMP_LE, CMP_LT, CMP_GE };

void out_section(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void out_row(const char *metric, double value, const char *unit, const char *info);
/* A row with a target: prints PASS or MISS; returns true on PASS. */
bool out_target(const char *metric, double value, const char *unit, enum cmp op,
		double target, const char *info);
void out_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The benchmark could not run (part of it): printed, and the exit code says so. */
void out_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void out_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Rows for a pair: both medians in @unit (scaled from ns by @scale), the
 * ratio, and the ratio target when @op is not CMP_NONE. */
bool out_pair(const char *what, const struct pair_result *r, double scale,
	      const char *unit, enum cmp op, double target);

/* Helpers for the benchmarks. */
bool kvm_usable(void);          /* a kvm-backend gmem opens here             */
int  open_mem(enum gmem_backend be, uint64_t size, unsigned flags, struct gmem **g);
/* Address space of @size, 2 MiB aligned, as an anonymous PROT_NONE placeholder. */
void *reserve(uint64_t size);
void  unreserve(void *p, uint64_t size);
const char *fmt_size(uint64_t bytes, char *buf, unsigned n);
/* Bytes in the file at @path, or -1. */
long file_size(const char *path);

/* The benchmarks. */
int bench_convert4k(void);
int bench_share1g(void);
int bench_convert_scatter(void);
int bench_query(void);
int bench_meta(void);
int bench_repair(void);
int bench_snapshot(void);
/* Part of bench_snapshot: incremental saves of a @size memory, files in @dir. */
int bench_snapshot_incr(const char *dir, uint64_t size);
/* Part of bench_snapshot: live saves (GMEM_BENCH_LIVE_GIB, 0: none). */
int bench_snapshot_live(const char *dir);
int bench_snapshot_seal(void);   /* bench_snapshot_seal.c, also run by snapshot */

#endif /* GMEM_BENCH_H */

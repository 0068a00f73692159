// SPDX-License-Identifier: MIT
/*
 * bench_main.c - gmem-bench: the benchmark table, the paired runner and the
 * output (table and JSON).
 *
 *   gmem-bench [--json] [--list] [name...]     (all benchmarks when no name)
 *
 * The process pins itself to one CPU before anything runs. Exit status: 0
 * when every selected benchmark ran (PASS or MISS alike), 1 when one could
 * not run at all, 2 on bad usage.
 */
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench.h"

struct bench {
	const char *name;
	int (*fn)(void);
	const char *what;
};

static const struct bench benches[] = {
	{ "convert4k", bench_convert4k,
	  "4 KiB share+unshare at random addresses: gmem_convert vs the bare mmaps (<= 1.25x)" },
	{ "share1g", bench_share1g,
	  "1 GiB share+unshare of untouched memory (<= 100 us)" },
	{ "query", bench_query,
	  "gmem_state on random pages (>= 50 M/s), pin+unpin of 4 KiB (>= 10 M/s)" },
	{ "meta", bench_meta,
	  "metadata bits/page (<= 4 + constant/region), 1 TiB open (< 50 ms)" },
	{ "repair", bench_repair,
	  "THP host view after a split/unsplit workload: uniform regions mapped huge (>= 99 %)" },
	{ "convert_scatter", bench_convert_scatter,
	  "scattered 4/64 KiB fragments: per-fragment cost, syscalls per conversion" },
	{ "snapshot", bench_snapshot,
	  "snapshot save/restore of 1 and 8 GiB vs plain write/read (>= 0.8x)" },
	{ "snapshot-seal", bench_snapshot_seal,
	  "sealed (key) vs unsealed snapshot save/restore of 1 GiB (>= 0.8x)" },
};
#define NBENCH (sizeof(benches) / sizeof(benches[0]))

/* ---- output ------------------------------------------------------------ */

static bool json;
static FILE *tab;               /* the human table: stdout, or stderr with --json */
static const char *cur_bench = "";
static char cur_section[96];
static int npass, nmiss, nskip, nfail;

struct rec {
	char *bench, *section, *metric, *unit, *info, *kind;
	double value, target;
	enum cmp op;
	int status;             /* -1 none, 0 miss, 1 pass */
};
static struct rec *recs;
static unsigned nrecs, caprecs;

static char *xstrdup(const char *s)
{
	char *d = strdup(s ? s : "");

	if (!d) {
		perror("strdup");
		exit(1);
	}
	return d;
}

static void rec_add(const char *kind, const char *metric, double value, const char *unit,
		    const char *info, enum cmp op, double target, int status)
{
	struct rec *r;

	if (!json)
		return;
	if (nrecs == caprecs) {
		caprecs = caprecs ? 2 * caprecs : 64;
		recs = realloc(recs, caprecs * sizeof(*recs));
		if (!recs) {
			perror("realloc");
			exit(1);
		}
	}
	r = &recs[nrecs++];
	r->bench = xstrdup(cur_bench);
	r->section = xstrdup(cur_section);
	r->kind = xstrdup(kind);
	r->metric = xstrdup(metric);
	r->unit = xstrdup(unit);
	r->info = xstrdup(info);
	r->value = value;
	r->op = op;
	r->target = target;
	r->status = status;
}

static const char *cmp_str(enum cmp op)
{
	switch (op) {
	case CMP_LE: return "<=";
	case CMP_LT: return "<";
	case CMP_GE: return ">=";
	default:     return "";
	}
}

static void fmt_value(double v, char *buf, unsigned n)
{
	double a = fabs(v);

	if (a >= 1e5)
		snprintf(buf, n, "%.0f", v);
	else if (a >= 100)
		snprintf(buf, n, "%.1f", v);
	else if (a >= 1)
		snprintf(buf, n, "%.3f", v);
	else
		snprintf(buf, n, "%.4f", v);
}

void out_section(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cur_section, sizeof(cur_section), fmt, ap);
	va_end(ap);
	fprintf(tab, "  -- %s\n", cur_section);
}

void out_row(const char *metric, double value, const char *unit, const char *info)
{
	char v[32];

	fmt_value(value, v, sizeof(v));
	fprintf(tab, "    %-46s %12s %-5s %-16s %s\n", metric, v, unit, "", info ? info : "");
	rec_add("row", metric, value, unit, info, CMP_NONE, 0, -1);
}

bool out_target(const char *metric, double value, const char *unit, enum cmp op,
		double target, const char *info)
{
	char v[32], t[48], tv[32];
	bool ok;

	switch (op) {
	case CMP_LE: ok = value <= target; break;
	case CMP_LT: ok = value < target; break;
	case CMP_GE: ok = value >= target; break;
	default:     ok = true; break;
	}
	fmt_value(value, v, sizeof(v));
	fmt_value(target, tv, sizeof(tv));
	snprintf(t, sizeof(t), "%s %s %s", cmp_str(op), tv, ok ? "PASS" : "MISS");
	fprintf(tab, "    %-46s %12s %-5s %-16s %s\n", metric, v, unit, t, info ? info : "");
	rec_add("target", metric, value, unit, info, op, target, ok);
	if (ok)
		npass++;
	else
		nmiss++;
	return ok;
}

static void out_msg(const char *kind, const char *prefix, const char *fmt, va_list ap)
{
	char buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	fprintf(tab, "    %s%s\n", prefix, buf);
	rec_add(kind, "", 0, "", buf, CMP_NONE, 0, -1);
}

void out_note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	out_msg("note", "note: ", fmt, ap);
	va_end(ap);
}

void out_skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	out_msg("skip", "SKIP: ", fmt, ap);
	va_end(ap);
	nskip++;
}

void out_fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	out_msg("fail", "CANNOT RUN: ", fmt, ap);
	va_end(ap);
	nfail++;
}

bool out_pair(const char *what, const struct pair_result *r, double scale,
	      const char *unit, enum cmp op, double target)
{
	char m[96], info[96];

	snprintf(m, sizeof(m), "%s: library", what);
	snprintf(info, sizeof(info), "%u rounds x %llu it, %.0f ms total", r->rounds,
		 (unsigned long long)r->a_iters, r->a_total_ms);
	out_row(m, r->a_ns * scale, unit, info);
	snprintf(m, sizeof(m), "%s: baseline", what);
	snprintf(info, sizeof(info), "%u rounds x %llu it, %.0f ms total", r->rounds,
		 (unsigned long long)r->b_iters, r->b_total_ms);
	out_row(m, r->b_ns * scale, unit, info);
	snprintf(m, sizeof(m), "%s: ratio", what);
	snprintf(info, sizeof(info), "median of rounds, p25..p75 %.3f..%.3f", r->ratio_p25,
		 r->ratio_p75);
	if (op == CMP_NONE) {
		out_row(m, r->ratio, "x", info);
		return true;
	}
	return out_target(m, r->ratio, "x", op, target, info);
}

static void json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void json_num(double v)
{
	if (isfinite(v))
		printf("%.6g", v);
	else
		printf("null");
}

static void json_dump(const char *machine_kernel, int cpu)
{
	printf("{\n  \"tool\": \"gmem-bench\",\n  \"kernel\": ");
	json_str(machine_kernel);
	printf(",\n  \"cpu\": %d,\n  \"pass\": %d, \"miss\": %d, \"skip\": %d, \"fail\": %d,\n",
	       cpu, npass, nmiss, nskip, nfail);
	printf("  \"results\": [\n");
	for (unsigned i = 0; i < nrecs; i++) {
		const struct rec *r = &recs[i];

		printf("    {\"bench\": ");
		json_str(r->bench);
		printf(", \"section\": ");
		json_str(r->section);
		printf(", \"kind\": ");
		json_str(r->kind);
		if (!strcmp(r->kind, "row") || !strcmp(r->kind, "target")) {
			printf(", \"metric\": ");
			json_str(r->metric);
			printf(", \"value\": ");
			json_num(r->value);
			printf(", \"unit\": ");
			json_str(r->unit);
		}
		if (r->status >= 0) {
			printf(", \"target\": {\"op\": ");
			json_str(cmp_str(r->op));
			printf(", \"value\": ");
			json_num(r->target);
			printf("}, \"status\": \"%s\"", r->status ? "PASS" : "MISS");
		}
		printf(", \"info\": ");
		json_str(r->info);
		printf("}%s\n", i + 1 < nrecs ? "," : "");
	}
	printf("  ]\n}\n");
}

/* ---- statistics and the paired runner ---------------------------------- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double percentile(double *v, unsigned n, double p)
{
	double *c, pos, r;
	unsigned lo;

	if (!n)
		return NAN;
	c = malloc(n * sizeof(*c));
	if (!c)
		return NAN;
	memcpy(c, v, n * sizeof(*c));
	qsort(c, n, sizeof(*c), cmp_double);
	pos = p * (n - 1);
	lo = (unsigned)pos;
	r = lo + 1 < n ? c[lo] + (pos - lo) * (c[lo + 1] - c[lo]) : c[lo];
	free(c);
	return r;
}

double median(double *v, unsigned n)
{
	return percentile(v, n, 0.5);
}

const struct pair_opts pair_defaults = {
	.round_ns = 5000000,            /* 5 ms   */
	.total_ns = 150000000,          /* 150 ms */
	.min_rounds = 15,
	.max_rounds = 301,
};

/* Iterations per round so that one round of @s lasts >= @round_ns. */
static uint64_t calibrate(const struct side *s, uint64_t round_ns, int *err)
{
	uint64_t it = 1, t;

	s->run(s->ctx, 1, err);         /* warm up */
	while (!*err) {
		t = s->run(s->ctx, it, err);
		if (t >= round_ns || it >= (1ull << 40))
			break;
		if (t < round_ns / 16)
			it *= 8;
		else
			it = (uint64_t)((double)it * 1.2 * (double)round_ns / (double)(t ? t : 1)) + 1;
	}
	return it;
}

int run_pair(const struct side *a, const struct side *b, const struct pair_opts *o,
	     struct pair_result *r)
{
	unsigned cap = o->max_rounds, n = 0;
	double *ta = calloc(cap, sizeof(double)), *tb = calloc(cap, sizeof(double));
	double *rat = calloc(cap, sizeof(double));
	uint64_t suma = 0, sumb = 0;
	int err = 0;

	memset(r, 0, sizeof(*r));
	if (!ta || !tb || !rat) {
		r->err = -ENOMEM;
		goto out;
	}
	r->a_iters = calibrate(a, o->round_ns, &err);
	if (err) {
		r->err_side = a->name;
		goto fail;
	}
	r->b_iters = calibrate(b, o->round_ns, &err);
	if (err) {
		r->err_side = b->name;
		goto fail;
	}
	while (n < cap && (n < o->min_rounds || suma < o->total_ns || sumb < o->total_ns)) {
		uint64_t da, db;

		if (n & 1) {
			db = b->run(b->ctx, r->b_iters, &err);
			if (err) {
				r->err_side = b->name;
				goto fail;
			}
			da = a->run(a->ctx, r->a_iters, &err);
			if (err) {
				r->err_side = a->name;
				goto fail;
			}
		} else {
			da = a->run(a->ctx, r->a_iters, &err);
			if (err) {
				r->err_side = a->name;
				goto fail;
			}
			db = b->run(b->ctx, r->b_iters, &err);
			if (err) {
				r->err_side = b->name;
				goto fail;
			}
		}
		suma += da;
		sumb += db;
		ta[n] = (double)da / (double)r->a_iters;
		tb[n] = (double)db / (double)r->b_iters;
		rat[n] = ta[n] / tb[n];
		n++;
	}
	r->rounds = n;
	r->a_ns = median(ta, n);
	r->b_ns = median(tb, n);
	r->ratio = median(rat, n);
	r->ratio_p25 = percentile(rat, n, 0.25);
	r->ratio_p75 = percentile(rat, n, 0.75);
	r->a_total_ms = (double)suma / 1e6;
	r->b_total_ms = (double)sumb / 1e6;
	goto out;
fail:
	r->err = err;
out:
	free(ta);
	free(tb);
	free(rat);
	return r->err;
}

/* ---- helpers ----------------------------------------------------------- */

bool kvm_usable(void)
{
	static int known = -1;
	struct gmem *g;

	if (known < 0) {
		known = gmem_open(&(struct gmem_config){ .size = 2 * MiB,
							 .backend = GMEM_BACKEND_KVM,
							 .vm_fd = -1 }, &g) == 0;
		if (known)
			gmem_close(g);
	}
	return known;
}

int open_mem(enum gmem_backend be, uint64_t size, unsigned flags, struct gmem **g)
{
	struct gmem_config cfg = { .size = size, .backend = be, .vm_fd = -1, .flags = flags };
	char sz[32];
	int ret = gmem_open(&cfg, g);

	if (ret)
		out_fail("gmem_open(%s, %s): %s (%s)", gmem_backend_name(be),
			 fmt_size(size, sz, sizeof(sz)), gmem_strerror(ret), gmem_last_error());
	return ret;
}

void *reserve(uint64_t size)
{
	uint8_t *raw = mmap(NULL, size + 2 * MiB, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *p;

	if (raw == MAP_FAILED)
		return NULL;
	p = (uint8_t *)(((uintptr_t)raw + 2 * MiB - 1) & ~(uintptr_t)(2 * MiB - 1));
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	munmap(p + size, (size_t)(raw + 2 * MiB - p));
	return p;
}

void unreserve(void *p, uint64_t size)
{
	if (p)
		munmap(p, size);
}

long file_size(const char *path)
{
	FILE *f = fopen(path, "re");
	long n;

	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fclose(f);
	return n;
}

const char *fmt_size(uint64_t b, char *buf, unsigned n)
{
	if (b >= TiB && b % TiB == 0)
		snprintf(buf, n, "%llu TiB", (unsigned long long)(b / TiB));
	else if (b >= GiB && b % GiB == 0)
		snprintf(buf, n, "%llu GiB", (unsigned long long)(b / GiB));
	else if (b >= MiB && b % MiB == 0)
		snprintf(buf, n, "%llu MiB", (unsigned long long)(b / MiB));
	else if (b >= KiB && b % KiB == 0)
		snprintf(buf, n, "%llu KiB", (unsigned long long)(b / KiB));
	else
		snprintf(buf, n, "%llu B", (unsigned long long)b);
	return buf;
}

/* Pin the process to the last CPU it may run on; returns the CPU or -1. */
static int pin_cpu(void)
{
	cpu_set_t set;
	int cpu = -1;

	if (sched_getaffinity(0, sizeof(set), &set))
		return -1;
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &set))
			cpu = i;
	if (cpu < 0)
		return -1;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? -1 : cpu;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: gmem-bench [--json] [--list] [name...]\nbenchmarks:\n");
	for (unsigned i = 0; i < NBENCH; i++)
		fprintf(f, "  %-16s %s\n", benches[i].name, benches[i].what);
}

int main(int argc, char **argv)
{
	bool sel[NBENCH] = { false }, any = false;
	struct gmem_probe pr;
	struct utsname un;
	char kernel[160];
	uint64_t t0;
	int cpu, rc = 0;

	tab = stdout;
	for (int i = 1; i < argc; i++) {
		unsigned j;

		if (!strcmp(argv[i], "--json")) {
			json = true;
			continue;
		}
		if (!strcmp(argv[i], "--list") || !strcmp(argv[i], "-h") ||
		    !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		}
		for (j = 0; j < NBENCH; j++)
			if (!strcmp(argv[i], benches[j].name))
				break;
		if (j == NBENCH) {
			fprintf(stderr, "gmem-bench: unknown benchmark '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
		sel[j] = any = true;
	}
	if (json)
		tab = stderr;
	setvbuf(tab, NULL, _IOLBF, 0);

	cpu = pin_cpu();
	if (uname(&un) == 0)
		snprintf(kernel, sizeof(kernel), "%s %s", un.release, un.machine);
	else
		snprintf(kernel, sizeof(kernel), "unknown");
	fprintf(tab, "gmem-bench: kernel %s, %ld CPUs online, pinned to CPU %d\n", kernel,
		sysconf(_SC_NPROCESSORS_ONLN), cpu);
	if (gmem_probe(&pr) == 0)
		fprintf(tab, "host: kvm %s, guest_memfd flags %#llx, in-place conversion %s, "
			"direct-map removal %s, shmem THP '%s', max_map_count %ld\n",
			kvm_usable() ? "usable" : "unusable",
			(unsigned long long)pr.guest_memfd_flags,
			pr.inplace_conversion > 0 ? "yes" : "no",
			pr.gmem_no_direct_map > 0 ? "yes" : "no", pr.shmem_thp, pr.max_map_count);
	fprintf(tab, "method: library and baseline alternate round by round (ABBA...), "
		"medians over rounds; ratio = median of per-round ratios\n");

	t0 = now_ns();
	for (unsigned i = 0; i < NBENCH; i++) {
		int fails = nfail, ret;

		if (any && !sel[i])
			continue;
		cur_bench = benches[i].name;
		cur_section[0] = 0;
		fprintf(tab, "\n== %s: %s\n", benches[i].name, benches[i].what);
		ret = benches[i].fn();
		if (ret || nfail > fails) {
			if (ret && nfail == fails)
				out_fail("%s", gmem_strerror(ret));
			rc = 1;
		}
	}
	cur_bench = "";
	fprintf(tab, "\nsummary: %d PASS, %d MISS, %d skipped, %d could not run; %.1f s\n",
		npass, nmiss, nskip, nfail, (double)(now_ns() - t0) / 1e9);
	if (json)
		json_dump(kernel, cpu);
	return rc;
}

// SPDX-License-Identifier: MIT
/*
 * bench_meta.c - metadata per page, and the cost of opening huge sparse
 * memories.
 *
 * For each configuration (backend x size x initial state) the memory is
 * opened and closed several times, configurations interleaved, and we
 * report
 *   - gmem_stats().metadata_bytes * 8 / pages against 4 bits/page plus a
 *     constant per region (we allow 32 bytes per 2 MiB region, i.e. 0.5
 *     bit/page: target <= 4.5 bits/page), cross-checked against what malloc
 *     actually handed out during gmem_open (mallinfo2) and the resident
 *     memory the open added;
 *   - the median gmem_open and gmem_close times (target: 1 TiB opens in
 *     < 50 ms).
 */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define REPS 7
#define REGION_ALLOWANCE 32.0   /* bytes per 2 MiB region */

struct meta_cfg {
	enum gmem_backend be;
	uint64_t size;
	unsigned flags;
	/* results */
	bool skip, failed;
	int err;
	char why[320];
	double open_ms[REPS], close_ms[REPS];
	unsigned n;
	uint64_t meta_bytes, heap_bytes;
	int64_t rss_bytes;
};

static uint64_t heap_now(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

static int64_t rss_now(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "re");

	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = 0;
	fclose(f);
	return (int64_t)rss * sysconf(_SC_PAGESIZE);
}

static void meta_once(struct meta_cfg *c, bool first)
{
	struct gmem_config cfg = { .size = c->size, .backend = c->be, .vm_fd = -1,
				   .flags = c->flags };
	uint64_t h0 = 0, t0, t1, t2;
	int64_t r0 = 0;
	struct gmem *g;
	int ret;

	if (first) {
		h0 = heap_now();
		r0 = rss_now();
	}
	t0 = now_ns();
	ret = gmem_open(&cfg, &g);
	t1 = now_ns();
	if (ret) {
		c->failed = true;
		c->err = ret;
		snprintf(c->why, sizeof(c->why), "%s: %s", gmem_strerror(ret), gmem_last_error());
		return;
	}
	if (first) {
		struct gmem_stats st;

		c->heap_bytes = heap_now() - h0;
		c->rss_bytes = rss_now() - r0;
		gmem_stats(g, &st);
		c->meta_bytes = st.metadata_bytes;
	}
	t2 = now_ns();
	gmem_close(g);
	c->close_ms[c->n] = (double)(now_ns() - t2) / 1e6;
	c->open_ms[c->n] = (double)(t1 - t0) / 1e6;
	c->n++;
}

int bench_meta(void)
{
	struct meta_cfg cfgs[] = {
		{ .be = GMEM_BACKEND_MEMFD, .size = 1 * GiB, .flags = 0 },
		{ .be = GMEM_BACKEND_MEMFD, .size = 1 * TiB, .flags = 0 },
		{ .be = GMEM_BACKEND_MEMFD, .size = 1 * TiB, .flags = GMEM_F_INIT_SHARED },
		{ .be = GMEM_BACKEND_KVM, .size = 1 * GiB, .flags = 0 },
		{ .be = GMEM_BACKEND_KVM, .size = 1 * TiB, .flags = 0 },
		{ .be = GMEM_BACKEND_KVM, .size = 1 * TiB, .flags = GMEM_F_INIT_SHARED },
	};
	const unsigned ncfg = sizeof(cfgs) / sizeof(cfgs[0]);
	bool kvm = kvm_usable();

	for (unsigned i = 0; i < ncfg; i++)
		cfgs[i].skip = cfgs[i].be == GMEM_BACKEND_KVM && !kvm;
	for (unsigned rep = 0; rep < REPS; rep++)
		for (unsigned i = 0; i < ncfg; i++)
			if (!cfgs[i].skip && !cfgs[i].failed)
				meta_once(&cfgs[i], rep == 0);

	for (unsigned i = 0; i < ncfg; i++) {
		struct meta_cfg *c = &cfgs[i];
		double pages = (double)(c->size >> 12), bits, heap_bits;
		double limit = 4.0 + REGION_ALLOWANCE * 8.0 / 512.0;
		char sz[32], info[160], m[96];

		out_section("backend %s, %s, %s", gmem_backend_name(c->be),
			    fmt_size(c->size, sz, sizeof(sz)),
			    c->flags & GMEM_F_INIT_SHARED ? "INIT_SHARED" : "private");
		if (c->skip) {
			out_skip("kvm backend unusable here");
			continue;
		}
		if (c->failed && !c->n) {
			out_fail("gmem_open failed: %s", c->why);
			continue;
		}
		if (c->failed)
			out_note("a later open failed: %s", c->why);
		bits = (double)c->meta_bytes * 8.0 / pages;
		heap_bits = (double)c->heap_bytes * 8.0 / pages;
		snprintf(info, sizeof(info), "%llu bytes; allows %.0f B/region",
			 (unsigned long long)c->meta_bytes, REGION_ALLOWANCE);
		out_target("metadata bits/page (gmem_stats)", bits, "bit", CMP_LE, limit, info);
		snprintf(info, sizeof(info), "%llu bytes malloc'd by gmem_open (mallinfo2)",
			 (unsigned long long)c->heap_bytes);
		out_row("heap bits/page actually allocated", heap_bits, "bit", info);
		out_row("resident memory added by gmem_open", (double)c->rss_bytes / (double)MiB,
			"MiB", "sparse: should be ~0");
		snprintf(m, sizeof(m), "gmem_open time (median of %u)", c->n);
		snprintf(info, sizeof(info), "min %.3f, max %.3f ms",
			 percentile(c->open_ms, c->n, 0), percentile(c->open_ms, c->n, 1));
		if (c->size >= TiB)
			out_target(m, median(c->open_ms, c->n), "ms", CMP_LT, 50, info);
		else
			out_row(m, median(c->open_ms, c->n), "ms", info);
		snprintf(m, sizeof(m), "gmem_close time (median of %u)", c->n);
		snprintf(info, sizeof(info), "min %.3f, max %.3f ms",
			 percentile(c->close_ms, c->n, 0), percentile(c->close_ms, c->n, 1));
		out_row(m, median(c->close_ms, c->n), "ms", info);
	}
	return 0;
}

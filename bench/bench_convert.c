// SPDX-License-Identifier: MIT
/*
 * bench_convert.c - conversions against the bare mapping syscalls they need.
 *
 *   convert4k        share then unshare one 4 KiB page of a large private
 *                    memory at random addresses: gmem_convert vs mmap of the
 *                    file page over a placeholder + madvise(MADV_DONTFORK) +
 *                    mmap of the placeholder back, on a reservation of our
 *                    own over the same file (the syscalls a view safe across
 *                    fork needs); then against the two mmaps alone, which
 *                    shows what fork safety costs.
 *   share1g          gmem_convert(0, 1 GiB, SHARED) then PRIVATE on untouched
 *                    memory vs the same two mmaps over 1 GiB.
 *   convert_scatter  N scattered 4 KiB / 64 KiB fragments: per-fragment share
 *                    + unshare vs bare; then one gmem_convert(PRIVATE) over a
 *                    window holding N shared fragments vs one placeholder mmap
 *                    over that window, with view_syscalls per conversion.
 *
 * Both sides run on every usable backend (kvm when /dev/kvm gives a
 * guest_memfd, memfd always). Pages are never touched: this is the cost of
 * the mapping changes and the library's bookkeeping around them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"

#define NOFFS 4096u             /* random offsets cycled through */

struct conv_ctx {
	struct gmem *g;         /* library side */
	uint8_t *base;          /* baseline side: our reservation */
	int fd;
	uint64_t *offs;         /* byte offsets (page or fragment aligned) */
	unsigned noffs, cur;
	uint64_t len;           /* bytes per conversion */
	bool fork_safe;         /* baseline: + madvise(MADV_DONTFORK) per share */
};

static uint64_t lib_share_unshare(void *c, uint64_t iters, int *err)
{
	struct conv_ctx *x = c;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		uint64_t off = x->offs[x->cur++ % x->noffs];
		int r = gmem_convert(x->g, off, x->len, GMEM_SHARED, NULL);

		if (!r)
			r = gmem_convert(x->g, off, x->len, GMEM_PRIVATE, NULL);
		if (r) {
			*err = r;
			break;
		}
	}
	return now_ns() - t0;
}

/* A shared run of a host view that is safe across fork() is a file mapping
 * plus MADV_DONTFORK (a child forked while the page was shared would keep
 * it after it became private): those are the syscalls the library needs. */
static int bare_share(const struct conv_ctx *x, uint64_t off, uint64_t len)
{
	if (mmap(x->base + off, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, x->fd,
		 (off_t)off) == MAP_FAILED)
		return -errno;
	if (x->fork_safe && madvise(x->base + off, len, MADV_DONTFORK))
		return -errno;
	return 0;
}

static int bare_unshare(const struct conv_ctx *x, uint64_t off, uint64_t len)
{
	if (mmap(x->base + off, len, PROT_NONE, PLACEHOLDER_FLAGS, -1, 0) == MAP_FAILED)
		return -errno;
	return 0;
}

static uint64_t bare_share_unshare(void *c, uint64_t iters, int *err)
{
	struct conv_ctx *x = c;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters; i++) {
		uint64_t off = x->offs[x->cur++ % x->noffs];
		int r = bare_share(x, off, x->len);

		if (!r)
			r = bare_unshare(x, off, x->len);
		if (r) {
			*err = r;
			break;
		}
	}
	return now_ns() - t0;
}

static void report_err(const struct pair_result *r)
{
	out_fail("%s side failed: %s (%s)", r->err_side ? r->err_side : "?",
		 gmem_strerror(r->err), gmem_last_error());
}

static double syscalls_per_conversion(const struct gmem_stats *a, const struct gmem_stats *b)
{
	uint64_t conv = b->conversions - a->conversions;

	return conv ? (double)(b->view_syscalls - a->view_syscalls) / (double)conv : 0;
}

static const enum gmem_backend backends[] = { GMEM_BACKEND_KVM, GMEM_BACKEND_MEMFD };

/* Opens @size of memory on @be and a reservation of the same size; false
 * (reported) when that cannot be done. */
static bool conv_setup(enum gmem_backend be, uint64_t size, struct conv_ctx *lib,
		       struct conv_ctx *bare)
{
	struct gmem_info info;

	memset(lib, 0, sizeof(*lib));
	memset(bare, 0, sizeof(*bare));
	if (open_mem(be, size, 0, &lib->g))
		return false;
	gmem_info(lib->g, &info);
	if (info.inplace)
		out_note("kernel converts in place (cap 249): the library's conversion is "
			 "an ioctl, the baseline still the two mmaps");
	bare->fd = info.fd;
	bare->base = reserve(size);
	if (!bare->base) {
		out_fail("reserving %llu bytes: %s", (unsigned long long)size, strerror(errno));
		gmem_close(lib->g);
		return false;
	}
	return true;
}

static void conv_teardown(struct conv_ctx *lib, struct conv_ctx *bare, uint64_t size)
{
	gmem_close(lib->g);
	unreserve(bare->base, size);
}

int bench_convert4k(void)
{
	const uint64_t size = 8 * GiB;
	uint64_t *offs = malloc(NOFFS * sizeof(*offs)), seed = 0x9e3779b97f4a7c15ull;
	char sz[32];

	if (!offs)
		return -ENOMEM;
	for (unsigned i = 0; i < NOFFS; i++)
		offs[i] = (rng_next(&seed) % (size / 4096)) * 4096;
	for (unsigned b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
		struct conv_ctx lib, bare;
		struct gmem_stats s0, s1;
		struct pair_result r;

		out_section("backend %s, %s private memory, %u random pages",
			    gmem_backend_name(backends[b]), fmt_size(size, sz, sizeof(sz)), NOFFS);
		if (backends[b] == GMEM_BACKEND_KVM && !kvm_usable()) {
			out_skip("kvm backend unusable here (%s)", gmem_last_error());
			continue;
		}
		if (!conv_setup(backends[b], size, &lib, &bare))
			continue;
		lib.offs = bare.offs = offs;
		lib.noffs = bare.noffs = NOFFS;
		lib.len = bare.len = 4096;
		bare.fork_safe = true;
		gmem_stats(lib.g, &s0);
		run_pair(&(struct side){ "library", lib_share_unshare, &lib },
			 &(struct side){ "baseline", bare_share_unshare, &bare },
			 &pair_defaults, &r);
		gmem_stats(lib.g, &s1);
		if (r.err) {
			report_err(&r);
		} else {
			out_pair("share+unshare 4 KiB (base: mmap+DONTFORK, mmap)", &r, 1e-3, "us",
				 CMP_LE, 1.25);
			out_row("library view syscalls per conversion",
				syscalls_per_conversion(&s0, &s1), "", "baseline: 1.5");
		}
		/* What fork safety costs: the library against the mmaps alone. */
		bare.fork_safe = false;
		run_pair(&(struct side){ "library", lib_share_unshare, &lib },
			 &(struct side){ "baseline", bare_share_unshare, &bare },
			 &pair_defaults, &r);
		if (r.err)
			report_err(&r);
		else
			out_pair("share+unshare 4 KiB (base: the two mmaps alone)", &r, 1e-3, "us",
				 CMP_NONE, 0);
		conv_teardown(&lib, &bare, size);
	}
	free(offs);
	return 0;
}

static void share_scaling(void);

int bench_share1g(void)
{
	const uint64_t size = 1 * GiB;
	uint64_t off0 = 0;

	for (unsigned b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
		struct conv_ctx lib, bare;
		struct gmem_stats s0, s1;
		struct pair_result r;

		out_section("backend %s, 1 GiB untouched private memory",
			    gmem_backend_name(backends[b]));
		if (backends[b] == GMEM_BACKEND_KVM && !kvm_usable()) {
			out_skip("kvm backend unusable here (%s)", gmem_last_error());
			continue;
		}
		if (!conv_setup(backends[b], size, &lib, &bare))
			continue;
		lib.offs = bare.offs = &off0;
		lib.noffs = bare.noffs = 1;
		lib.len = bare.len = size;
		bare.fork_safe = true;
		gmem_stats(lib.g, &s0);
		run_pair(&(struct side){ "library", lib_share_unshare, &lib },
			 &(struct side){ "baseline", bare_share_unshare, &bare },
			 &pair_defaults, &r);
		gmem_stats(lib.g, &s1);
		if (r.err) {
			report_err(&r);
		} else {
			out_target("library share+unshare 1 GiB", r.a_ns / 1e3, "us", CMP_LE, 100,
				   "never walk pages one by one");
			out_pair("share+unshare 1 GiB (base: mmap+DONTFORK, mmap)", &r, 1e-3, "us",
				 CMP_NONE, 0);
			out_row("library view syscalls per conversion",
				syscalls_per_conversion(&s0, &s1), "", "baseline: 1.5");
		}
		conv_teardown(&lib, &bare, size);
	}
	share_scaling();
	return 0;
}

/* Does the cost of a whole-memory share+unshare grow with the size? It
 * should not (regions are summarised; the mmaps do not walk pages). */
static void share_scaling(void)
{
	static const uint64_t sizes[] = { 1 * GiB, 16 * GiB, 64 * GiB };
	double us[3][9];
	struct gmem *g[3] = { NULL, NULL, NULL };
	char sz[32], m[96], info[96];

	out_section("scaling: whole-memory share+unshare, memfd, median of 9, sizes interleaved");
	for (unsigned i = 0; i < 3; i++)
		if (open_mem(GMEM_BACKEND_MEMFD, sizes[i], 0, &g[i]))
			goto out;
	for (unsigned rep = 0; rep < 9; rep++) {
		for (unsigned i = 0; i < 3; i++) {
			uint64_t t0 = now_ns();
			int r = gmem_convert(g[i], 0, sizes[i], GMEM_SHARED, NULL);

			if (!r)
				r = gmem_convert(g[i], 0, sizes[i], GMEM_PRIVATE, NULL);
			if (r) {
				out_fail("converting %s: %s", fmt_size(sizes[i], sz, sizeof(sz)),
					 gmem_strerror(r));
				goto out;
			}
			us[i][rep] = (double)(now_ns() - t0) / 1e3;
		}
	}
	for (unsigned i = 0; i < 3; i++) {
		double med = median(us[i], 9);

		snprintf(m, sizeof(m), "share+unshare %s", fmt_size(sizes[i], sz, sizeof(sz)));
		snprintf(info, sizeof(info), "%.2f us per GiB", med / (double)(sizes[i] / GiB));
		out_row(m, med, "us", info);
	}
out:
	for (unsigned i = 0; i < 3; i++)
		gmem_close(g[i]);
}

/* ---- convert_scatter --------------------------------------------------- */

struct scat_ctx {
	struct conv_ctx c;
	unsigned n;             /* fragments */
	uint64_t window;        /* bytes covering all fragments, from offset 0 */
	enum gmem_state to;     /* bulk: the window's target state */
};

/* One iteration: share every fragment, then unshare every fragment. */
static uint64_t lib_scatter_each(void *p, uint64_t iters, int *err)
{
	struct scat_ctx *x = p;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters && !*err; i++) {
		for (unsigned k = 0; k < x->n && !*err; k++)
			*err = gmem_convert(x->c.g, x->c.offs[k], x->c.len, GMEM_SHARED, NULL);
		for (unsigned k = 0; k < x->n && !*err; k++)
			*err = gmem_convert(x->c.g, x->c.offs[k], x->c.len, GMEM_PRIVATE, NULL);
	}
	return now_ns() - t0;
}

static uint64_t bare_scatter_each(void *p, uint64_t iters, int *err)
{
	struct scat_ctx *x = p;
	uint64_t t0 = now_ns();

	for (uint64_t i = 0; i < iters && !*err; i++) {
		for (unsigned k = 0; k < x->n && !*err; k++)
			*err = bare_share(&x->c, x->c.offs[k], x->c.len);
		for (unsigned k = 0; k < x->n && !*err; k++)
			*err = bare_unshare(&x->c, x->c.offs[k], x->c.len);
	}
	return now_ns() - t0;
}

/* One iteration: flip every fragment away from x->to (not timed), then
 * convert the whole window to x->to in one call (timed). */
static uint64_t lib_scatter_bulk(void *p, uint64_t iters, int *err)
{
	struct scat_ctx *x = p;
	enum gmem_state from = x->to == GMEM_SHARED ? GMEM_PRIVATE : GMEM_SHARED;
	uint64_t t = 0, t0;

	for (uint64_t i = 0; i < iters && !*err; i++) {
		for (unsigned k = 0; k < x->n && !*err; k++)
			*err = gmem_convert(x->c.g, x->c.offs[k], x->c.len, from, NULL);
		if (*err)
			break;
		t0 = now_ns();
		*err = gmem_convert(x->c.g, 0, x->window, x->to, NULL);
		t += now_ns() - t0;
	}
	return t;
}

static int bare_to(const struct conv_ctx *x, uint64_t off, uint64_t len, enum gmem_state to)
{
	return to == GMEM_SHARED ? bare_share(x, off, len) : bare_unshare(x, off, len);
}

/* The same with the fewest syscalls: one mmap over the whole window. */
static uint64_t bare_scatter_bulk(void *p, uint64_t iters, int *err)
{
	struct scat_ctx *x = p;
	enum gmem_state from = x->to == GMEM_SHARED ? GMEM_PRIVATE : GMEM_SHARED;
	uint64_t t = 0, t0;

	for (uint64_t i = 0; i < iters && !*err; i++) {
		for (unsigned k = 0; k < x->n && !*err; k++)
			*err = bare_to(&x->c, x->c.offs[k], x->c.len, from);
		if (*err)
			break;
		t0 = now_ns();
		*err = bare_to(&x->c, 0, x->window, x->to);
		t += now_ns() - t0;
	}
	return t;
}

/* Bulk conversion of the window to @to with the fragments in the other
 * state: library vs one mmap, and the library's syscalls for it. */
static void scatter_bulk(struct scat_ctx *lib, struct scat_ctx *bare, enum gmem_state to,
			 const struct pair_opts *o)
{
	enum gmem_state from = to == GMEM_SHARED ? GMEM_PRIVATE : GMEM_SHARED;
	struct gmem_stats s0, s1;
	struct pair_result r;
	char m[96];
	int e = 0;

	lib->to = bare->to = to;
	/* Start from the whole window in state @to on both sides. */
	e = gmem_convert(lib->c.g, 0, lib->window, to, NULL);
	if (!e)
		e = bare_to(&bare->c, 0, bare->window, to);
	if (e) {
		out_fail("preparing the window: %s (%s)", gmem_strerror(e), gmem_last_error());
		return;
	}
	run_pair(&(struct side){ "library", lib_scatter_bulk, lib },
		 &(struct side){ "baseline", bare_scatter_bulk, bare }, o, &r);
	if (r.err) {
		report_err(&r);
		return;
	}
	snprintf(m, sizeof(m), "%s %llu MiB holding %u %s", to ? "share" : "unshare",
		 (unsigned long long)(lib->window / MiB), lib->n, to ? "private" : "shared");
	out_pair(m, &r, 1e-3, "us", CMP_NONE, 0);
	/* Count the syscalls of one such conversion. */
	for (unsigned k = 0; k < lib->n && !e; k++)
		e = gmem_convert(lib->c.g, lib->c.offs[k], lib->c.len, from, NULL);
	gmem_stats(lib->c.g, &s0);
	if (!e)
		e = gmem_convert(lib->c.g, 0, lib->window, to, NULL);
	gmem_stats(lib->c.g, &s1);
	if (!e)
		out_row("library view syscalls for that conversion",
			(double)(s1.view_syscalls - s0.view_syscalls), "",
			to ? "baseline: 1 (one file mmap over the window)"
			   : "baseline: 1 (one placeholder mmap over the window)");
	/* Leave the window private for what follows. */
	if (!e)
		e = gmem_convert(lib->c.g, 0, lib->window, GMEM_PRIVATE, NULL);
	if (!e)
		e = bare_unshare(&bare->c, 0, bare->window);
	if (e)
		out_fail("restoring the window: %s", gmem_strerror(e));
}

int bench_convert_scatter(void)
{
	const uint64_t size = 1 * GiB;
	static const uint64_t frag_sizes[] = { 4 * KiB, 64 * KiB };
	const unsigned n = 256;
	const uint64_t window = 256 * MiB, slot = window / n;
	struct pair_opts o = pair_defaults;
	uint64_t offs[256], seed = 0x2545f4914f6cdd1dull;
	char fs[32];

	o.total_ns = 100000000;
	for (unsigned b = 0; b < sizeof(backends) / sizeof(backends[0]); b++) {
		if (backends[b] == GMEM_BACKEND_KVM && !kvm_usable()) {
			out_section("backend kvm");
			out_skip("kvm backend unusable here (%s)", gmem_last_error());
			continue;
		}
		for (unsigned f = 0; f < 2; f++) {
			uint64_t len = frag_sizes[f];
			struct scat_ctx lib, bare;
			struct gmem_stats s0, s1;
			struct pair_result r;
			char m[96];

			out_section("backend %s, %u fragments of %s scattered over %llu MiB",
				    gmem_backend_name(backends[b]), n, fmt_size(len, fs, sizeof(fs)),
				    (unsigned long long)(window / MiB));
			/* One fragment per slot, never touching the next one. */
			for (unsigned k = 0; k < n; k++)
				offs[k] = k * slot + (rng_next(&seed) % ((slot - len) / 4096 - 1)) *
						     4096;
			memset(&lib, 0, sizeof(lib));
			memset(&bare, 0, sizeof(bare));
			if (!conv_setup(backends[b], size, &lib.c, &bare.c))
				continue;
			lib.c.offs = bare.c.offs = offs;
			lib.c.noffs = bare.c.noffs = n;
			lib.c.len = bare.c.len = len;
			lib.n = bare.n = n;
			lib.window = bare.window = window;

			gmem_stats(lib.c.g, &s0);
			run_pair(&(struct side){ "library", lib_scatter_each, &lib },
				 &(struct side){ "baseline", bare_scatter_each, &bare }, &o, &r);
			gmem_stats(lib.c.g, &s1);
			if (r.err) {
				report_err(&r);
				conv_teardown(&lib.c, &bare.c, size);
				continue;
			}
			snprintf(m, sizeof(m), "per fragment share+unshare, %u live", n);
			out_pair(m, &r, 1e-3 / n, "us", CMP_LE, 1.25);
			out_row("library view syscalls per conversion",
				syscalls_per_conversion(&s0, &s1), "", "baseline: 1");

			scatter_bulk(&lib, &bare, GMEM_PRIVATE, &o);
			scatter_bulk(&lib, &bare, GMEM_SHARED, &o);
			conv_teardown(&lib.c, &bare.c, size);
		}
	}
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * test_stress.c - concurrent stress test of the public API.
 *
 * Four worker threads and one checker thread hammer one memory for about two
 * seconds (GMEM_STRESS_SECONDS overrides). The memory is partitioned:
 *
 *   owned regions      one per worker; only that worker converts, maps or
 *                      pins there, so it keeps an exact model of their
 *                      states and contents and can check that a private page
 *                      faults through the host view (and /proc/self/mem
 *                      does not return its data) without racing anyone;
 *   contended regions  every thread converts random ranges both ways, pins,
 *                      maps and queries there at once.
 *
 * Invariants checked while racing:
 *   - a pinned page is shared for as long as the pin is held: gmem_state()
 *     says so, its host-view address reads, and a conversion to private over
 *     it is refused with -EAGAIN and busy_gpa at the first pinned page;
 *   - a temporarily mapped page cannot become private either;
 *   - (checker) a host-view read that succeeds was of a shared page: the
 *     read is bracketed by two reads of the conversion counters and two
 *     state queries; when no conversion completed in between, the outcome
 *     of the read must match the state (every view change is counted);
 *   - (checker) a page it pinned reads through the host view;
 *   - return codes are only the documented ones.
 * At the end every pin and window is released and the counters, per-page
 * pin counts and the owned regions' states and contents are compared.
 *
 * Faults are caught with one process-wide SIGSEGV/SIGBUS handler that
 * siglongjmps to a thread-local buffer. Failures in threads are recorded
 * (first one wins) and asserted by the main thread after the join.
 *
 * Must be clean under ThreadSanitizer (meson -Db_sanitize=thread).
 *
 * Suite: stress.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"

#define S_PAGE          ((uint64_t)TH_PAGE)
#define S_WORKERS       4
#define S_OWNED         S_WORKERS               /* regions 0..3: one per worker */
#define S_NREG          (2 * S_WORKERS)         /* regions 4..7: contended      */
#define S_SIZE          ((uint64_t)S_NREG * GMEM_REGION_SIZE)
#define S_RPAGES        ((uint64_t)GMEM_REGION_SIZE / S_PAGE)
#define S_NPAGES        (S_SIZE / S_PAGE)
#define S_SHARED_FIRST  (S_OWNED * S_RPAGES)    /* first contended page          */
#define S_SHARED_PAGES  (S_NPAGES - S_SHARED_FIRST)
#define S_MAX_HELD      4                       /* pins a worker keeps a while   */
#define S_DEFAULT_MS    2000

/* Checks performed, so a run that checked nothing cannot pass. */
enum s_check {
	CK_PIN_SHARED,          /* pinned page read as shared and readable      */
	CK_PIN_REFUSES,         /* to-private over own pin refused              */
	CK_KMAP_REFUSES,        /* to-private over own window refused           */
	CK_OWNED_FAULT,         /* owned private page faulted                   */
	CK_OWNED_READ,          /* owned shared page read its contents          */
	CK_SEQ_READ,            /* checker: unpinned read matched the state     */
	CK_SEQ_FAULT,           /* checker: unpinned fault matched the state    */
	CK_CONVERT_OK,
	CK_CONVERT_BUSY,
	CK_NR
};

static const char *const s_check_name[CK_NR] = {
	"pin_shared", "pin_refuses", "kmap_refuses", "owned_fault", "owned_read",
	"seq_read", "seq_fault", "convert_ok", "convert_busy",
};

struct s_ctx {
	struct gmem *g;
	struct timespec deadline;
	atomic_bool stop;
	atomic_bool failed;
	pthread_mutex_t msg_lock;
	char msg[512];
	atomic_ulong checks[CK_NR];
	atomic_ulong ops;
};

struct s_pin {
	uint64_t gpa, len;
};

struct s_worker {
	struct s_ctx *c;
	unsigned id;
	uint64_t rng;
	int memfd;                      /* /proc/self/mem                      */
	uint64_t own_first;             /* first page of the owned region      */
	uint8_t state[S_RPAGES];        /* owned region: exact model           */
	uint64_t content[S_RPAGES];
	struct s_pin held[S_MAX_HELD];
	unsigned nheld;
};

/* ---------------------------------------------------------------------------
 * Fault catching: one handler for the process, one jump buffer per thread.
 */

static __thread sigjmp_buf s_jmp;
static __thread volatile sig_atomic_t s_armed;

static void s_on_fault(int sig)
{
	if (s_armed) {
		s_armed = 0;
		siglongjmp(s_jmp, sig);
	}
	/* Not ours: die of it as if nobody caught it. */
	signal(sig, SIG_DFL);
}

static void s_install_handler(void)
{
	struct sigaction sa = { .sa_handler = s_on_fault, .sa_flags = SA_NODEFER };

	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGSEGV, &sa, NULL), 0);
	cr_assert_eq(sigaction(SIGBUS, &sa, NULL), 0);
}

/* Read 8 bytes at @p: 0 and *out, or the signal that stopped the read.
 * The mask is saved and restored: SA_NODEFER alone is not enough under
 * ThreadSanitizer, whose wrapper leaves the signal blocked after the jump
 * (the next fault would then kill the process). */
static int s_read(const volatile void *p, uint64_t *out)
{
	int sig = sigsetjmp(s_jmp, 1);

	if (sig)
		return sig;
	s_armed = 1;
	*out = *(const volatile uint64_t *)p;
	s_armed = 0;
	return 0;
}

/* The same, for a read that races a conversion on purpose (the checker's
 * unpinned reads): ThreadSanitizer counts mmap() as a write to the range,
 * and this race is the point of the check, so the read is not instrumented.
 * Every other read stays instrumented: a pinned page must not be remapped. */
__attribute__((no_sanitize("thread")))
static int s_read_racy(const volatile void *p, uint64_t *out)
{
	int sig = sigsetjmp(s_jmp, 1);

	if (sig)
		return sig;
	s_armed = 1;
	*out = *(const volatile uint64_t *)p;
	s_armed = 0;
	return 0;
}

/* ---------------------------------------------------------------------------
 * Helpers
 */

static void s_fail(struct s_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void s_fail(struct s_ctx *c, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&c->msg_lock);
	if (!atomic_load(&c->failed)) {
		va_start(ap, fmt);
		vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
		va_end(ap);
		atomic_store(&c->failed, true);
	}
	pthread_mutex_unlock(&c->msg_lock);
	atomic_store(&c->stop, true);
}

static void s_count(struct s_ctx *c, enum s_check k)
{
	atomic_fetch_add_explicit(&c->checks[k], 1, memory_order_relaxed);
}

static uint64_t s_rand(uint64_t *rng)
{
	uint64_t z = (*rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t s_below(uint64_t *rng, uint64_t n)
{
	return s_rand(rng) % n;
}

static bool s_time_up(struct s_ctx *c)
{
	struct timespec now;

	if (atomic_load_explicit(&c->stop, memory_order_relaxed))
		return true;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec > c->deadline.tv_sec ||
	    (now.tv_sec == c->deadline.tv_sec && now.tv_nsec >= c->deadline.tv_nsec)) {
		atomic_store(&c->stop, true);
		return true;
	}
	return false;
}

/* A range of contended pages: mostly I/O-sized, some region-sized. */
static void s_shared_range(uint64_t *rng, uint64_t *gpa, uint64_t *len)
{
	uint64_t first, n, r = s_below(rng, 100);

	if (r < 70) {
		first = S_SHARED_FIRST + s_below(rng, S_SHARED_PAGES);
		n = 1 + s_below(rng, 8);
	} else if (r < 85) {
		first = S_SHARED_FIRST + s_below(rng, S_NREG - S_OWNED) * S_RPAGES;
		n = S_RPAGES;
	} else {
		first = S_SHARED_FIRST + s_below(rng, S_SHARED_PAGES);
		n = 1 + s_below(rng, 1024);
	}
	if (first + n > S_NPAGES)
		n = S_NPAGES - first;
	*gpa = first * S_PAGE;
	*len = n * S_PAGE;
}

/* ---------------------------------------------------------------------------
 * Worker: contended regions
 */

static bool s_overlaps_held(const struct s_worker *w, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < w->nheld; i++)
		if (gpa < w->held[i].gpa + w->held[i].len && w->held[i].gpa < gpa + len)
			return true;
	return false;
}

static void s_contended_convert(struct s_worker *w)
{
	struct s_ctx *c = w->c;
	uint64_t gpa, len, busy = ~0ull;
	int to = (int)s_below(&w->rng, 2), ret;
	bool mine;

	s_shared_range(&w->rng, &gpa, &len);
	mine = s_overlaps_held(w, gpa, len);
	ret = gmem_convert(c->g, gpa, len, (enum gmem_state)to, &busy);
	if (ret == 0) {
		/* Our pinned pages are shared: making them private is a bug. */
		if (mine && to == GMEM_PRIVATE)
			s_fail(c, "worker %u: to-private over [%#" PRIx64 ", +%#" PRIx64
			       ") succeeded while this thread holds a pin in it", w->id, gpa, len);
		s_count(c, CK_CONVERT_OK);
		return;
	}
	if (ret == -EAGAIN && to == GMEM_PRIVATE) {
		if (busy < gpa || busy >= gpa + len || busy % S_PAGE)
			s_fail(c, "worker %u: -EAGAIN on [%#" PRIx64 ", +%#" PRIx64
			       ") with busy_gpa %#" PRIx64 " outside it", w->id, gpa, len, busy);
		s_count(c, CK_CONVERT_BUSY);
		return;
	}
	s_fail(c, "worker %u: gmem_convert([%#" PRIx64 ", +%#" PRIx64 "), %d) = %d (%s)", w->id,
	       gpa, len, to, ret, gmem_strerror(ret));
}

/* Everything a pin promises, over one pinned range. */
static void s_check_pinned(struct s_worker *w, uint64_t gpa, uint64_t len)
{
	struct s_ctx *c = w->c;
	uint64_t v, busy = ~0ull;
	int ret;

	for (uint64_t a = gpa; a < gpa + len; a += S_PAGE) {
		int st = gmem_state(c->g, a), sig = s_read(gmem_host(c->g, a), &v);

		if (st != GMEM_SHARED)
			s_fail(c, "worker %u: pinned page %#" PRIx64 " has state %d, want shared",
			       w->id, a, st);
		if (sig)
			s_fail(c, "worker %u: pinned page %#" PRIx64 " faults (signal %d) "
			       "through the host view", w->id, a, sig);
	}
	/* Every page of the range is pinned: busy_gpa is its first page. */
	ret = gmem_convert(c->g, gpa, len, GMEM_PRIVATE, &busy);
	if (ret != -EAGAIN || busy != gpa)
		s_fail(c, "worker %u: to-private over own pin [%#" PRIx64 ", +%#" PRIx64
		       ") = %d (%s), busy_gpa %#" PRIx64 "; want -EAGAIN at %#" PRIx64,
		       w->id, gpa, len, ret, gmem_strerror(ret), busy, gpa);
	s_count(c, CK_PIN_SHARED);
	s_count(c, CK_PIN_REFUSES);
}

static void s_unpin(struct s_worker *w, unsigned i)
{
	struct s_pin p = w->held[i];
	int ret;

	s_check_pinned(w, p.gpa, p.len);
	ret = gmem_unpin(w->c->g, p.gpa, p.len);
	if (ret)
		s_fail(w->c, "worker %u: gmem_unpin([%#" PRIx64 ", +%#" PRIx64 ")) = %d (%s)",
		       w->id, p.gpa, p.len, ret, gmem_strerror(ret));
	w->held[i] = w->held[--w->nheld];
}

static void s_contended_pin(struct s_worker *w)
{
	struct s_ctx *c = w->c;
	uint64_t gpa = (S_SHARED_FIRST + s_below(&w->rng, S_SHARED_PAGES)) * S_PAGE;
	uint64_t len = (1 + s_below(&w->rng, 8)) * S_PAGE;
	int ret;

	if (w->nheld == S_MAX_HELD) {
		s_unpin(w, (unsigned)s_below(&w->rng, w->nheld));
		return;
	}
	if (gpa + len > S_SIZE)
		len = S_SIZE - gpa;
	ret = gmem_pin(c->g, gpa, len);
	if (ret == -EPERM)
		return; /* some page was private */
	if (ret) {
		s_fail(c, "worker %u: gmem_pin([%#" PRIx64 ", +%#" PRIx64 ")) = %d (%s)", w->id,
		       gpa, len, ret, gmem_strerror(ret));
		return;
	}
	w->held[w->nheld++] = (struct s_pin){ gpa, len };
	s_check_pinned(w, gpa, len);
	/* Keep it across a few operations half the time. */
	if (s_below(&w->rng, 2))
		s_unpin(w, w->nheld - 1);
}

static void s_contended_kmap(struct s_worker *w)
{
	struct s_ctx *c = w->c;
	uint64_t gpa = (S_SHARED_FIRST + s_below(&w->rng, S_SHARED_PAGES)) * S_PAGE;
	uint64_t busy = ~0ull, v;
	uint8_t *p = gmem_kmap(c->g, gpa);
	int ret;

	if (!p) {
		s_fail(c, "worker %u: gmem_kmap(%#" PRIx64 "): %s", w->id, gpa, strerror(errno));
		return;
	}
	if (s_read(p, &v))
		s_fail(c, "worker %u: window of %#" PRIx64 " faults", w->id, gpa);
	/* Scratch bytes past the first 8: nobody checks contended contents. */
	p[8 + w->id] = (uint8_t)w->id;
	/* 0: the page was private already (nothing to change); else refused. */
	ret = gmem_convert(c->g, gpa, S_PAGE, GMEM_PRIVATE, &busy);
	if (ret == -EAGAIN && busy == gpa)
		s_count(c, CK_KMAP_REFUSES);
	else if (ret != 0)
		s_fail(c, "worker %u: to-private of mapped page %#" PRIx64 " = %d (%s), busy_gpa %#"
		       PRIx64, w->id, gpa, ret, gmem_strerror(ret), busy);
	gmem_kunmap(c->g, p);
}

static void s_query(struct s_worker *w)
{
	struct s_ctx *c = w->c;
	uint64_t gpa = s_below(&w->rng, S_NPAGES) * S_PAGE + s_below(&w->rng, S_PAGE);
	int st = gmem_state(c->g, gpa);

	if (st != GMEM_PRIVATE && st != GMEM_SHARED)
		s_fail(c, "worker %u: gmem_state(%#" PRIx64 ") = %d", w->id, gpa, st);
	if (s_below(&w->rng, 16) == 0) {
		struct gmem_stats s;

		if (gmem_stats(c->g, &s) || s.shared_pages + s.private_pages != S_NPAGES ||
		    s.pinned_pages > s.shared_pages)
			s_fail(c, "worker %u: stats shared %" PRIu64 " + private %" PRIu64
			       " != %" PRIu64 " pages, or pinned %" PRIu64 " > shared", w->id,
			       s.shared_pages, s.private_pages, (uint64_t)S_NPAGES, s.pinned_pages);
	}
}

/* ---------------------------------------------------------------------------
 * Worker: its owned region (nobody else changes it)
 */

static void s_owned_convert(struct s_worker *w)
{
	struct s_ctx *c = w->c;
	uint64_t off = s_below(&w->rng, S_RPAGES), n, busy = ~0ull;
	int to = (int)s_below(&w->rng, 2), ret;

	n = s_below(&w->rng, 8) ? 1 + s_below(&w->rng, 16) : S_RPAGES - off;
	if (off + n > S_RPAGES)
		n = S_RPAGES - off;
	ret = gmem_convert(c->g, (w->own_first + off) * S_PAGE, n * S_PAGE,
			   (enum gmem_state)to, &busy);
	if (ret) {
		s_fail(c, "worker %u: owned convert [%#" PRIx64 ", +%#" PRIx64 ") to %d = %d (%s)"
		       ", busy_gpa %#" PRIx64 ": nobody else uses the region", w->id,
		       (w->own_first + off) * S_PAGE, n * S_PAGE, to, ret, gmem_strerror(ret),
		       busy);
		return;
	}
	memset(&w->state[off], to, n);
}

static void s_owned_write(struct s_worker *w)
{
	struct s_ctx *c = w->c;
	uint64_t off = s_below(&w->rng, S_RPAGES), gpa = (w->own_first + off) * S_PAGE;
	uint64_t v = s_rand(&w->rng) | 1;
	uint8_t *p;

	if (w->state[off] && s_below(&w->rng, 2)) {
		*(volatile uint64_t *)gmem_host(c->g, gpa) = v;
	} else {
		p = gmem_kmap(c->g, gpa);
		if (!p) {
			s_fail(c, "worker %u: gmem_kmap(%#" PRIx64 "): %s", w->id, gpa,
			       strerror(errno));
			return;
		}
		*(volatile uint64_t *)p = v;
		gmem_kunmap(c->g, p);
	}
	w->content[off] = v;
}

/* The privacy check proper: exact, because nobody else converts here. */
static void s_owned_check(struct s_worker *w)
{
	struct s_ctx *c = w->c;
	uint64_t off = s_below(&w->rng, S_RPAGES), gpa = (w->own_first + off) * S_PAGE, v = 0;
	const void *host = gmem_host(c->g, gpa);
	int st = gmem_state(c->g, gpa), sig;

	if (st != w->state[off]) {
		s_fail(c, "worker %u: owned page %#" PRIx64 ": state %d, model %d", w->id, gpa, st,
		       w->state[off]);
		return;
	}
	sig = s_read(host, &v);
	if (st == GMEM_SHARED) {
		if (sig || v != w->content[off])
			s_fail(c, "worker %u: shared owned page %#" PRIx64 ": signal %d, read %#"
			       PRIx64 ", model %#" PRIx64, w->id, gpa, sig, v, w->content[off]);
		s_count(c, CK_OWNED_READ);
		return;
	}
	if (!sig)
		s_fail(c, "worker %u: private page %#" PRIx64 " read %#" PRIx64
		       " through the host view", w->id, gpa, v);
	/* Nor may /proc/self/mem hand out its data. */
	if (w->content[off] && pread(w->memfd, &v, sizeof(v), (off_t)(uintptr_t)host) ==
	    (ssize_t)sizeof(v) && v == w->content[off])
		s_fail(c, "worker %u: private page %#" PRIx64 " read its data %#" PRIx64
		       " through /proc/self/mem", w->id, gpa, v);
	s_count(c, CK_OWNED_FAULT);
}

static void *s_worker_main(void *arg)
{
	struct s_worker *w = arg;
	struct s_ctx *c = w->c;

	while (!s_time_up(c)) {
		for (int k = 0; k < 64; k++) {
			uint64_t r = s_below(&w->rng, 100);

			if (r < 15)
				s_owned_convert(w);
			else if (r < 25)
				s_owned_check(w);
			else if (r < 30)
				s_owned_write(w);
			else if (r < 55)
				s_contended_convert(w);
			else if (r < 70)
				s_contended_pin(w);
			else if (r < 78)
				s_contended_kmap(w);
			else
				s_query(w);
		}
		atomic_fetch_add_explicit(&c->ops, 64, memory_order_relaxed);
	}
	while (w->nheld)
		s_unpin(w, 0);
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Checker: host-view reads of contended pages, pinned and unpinned.
 */

/* Completed view changes so far: every change of the host view is one
 * successful or refused conversion, counted under the lock. */
static uint64_t s_view_epoch(struct s_ctx *c)
{
	struct gmem_stats s;

	if (gmem_stats(c->g, &s))
		s_fail(c, "checker: gmem_stats failed");
	return s.conversions + s.refused;
}

static void s_checker_pinned(struct s_ctx *c, uint64_t *rng)
{
	uint64_t gpa = (S_SHARED_FIRST + s_below(rng, S_SHARED_PAGES)) * S_PAGE, v;
	int ret = gmem_pin(c->g, gpa, S_PAGE), st, sig;

	if (ret == -EPERM)
		return;
	if (ret) {
		s_fail(c, "checker: gmem_pin(%#" PRIx64 ") = %d (%s)", gpa, ret, gmem_strerror(ret));
		return;
	}
	st = gmem_state(c->g, gpa);
	sig = s_read(gmem_host(c->g, gpa), &v);
	if (st != GMEM_SHARED || sig)
		s_fail(c, "checker: pinned page %#" PRIx64 ": state %d, read signal %d", gpa, st,
		       sig);
	s_count(c, CK_PIN_SHARED);
	ret = gmem_unpin(c->g, gpa, S_PAGE);
	if (ret)
		s_fail(c, "checker: gmem_unpin(%#" PRIx64 ") = %d (%s)", gpa, ret,
		       gmem_strerror(ret));
}

static void s_checker_unpinned(struct s_ctx *c, uint64_t *rng)
{
	uint64_t gpa = (S_SHARED_FIRST + s_below(rng, S_SHARED_PAGES)) * S_PAGE, v;
	uint64_t e0 = s_view_epoch(c), e1;
	int st0 = gmem_state(c->g, gpa), sig = s_read_racy(gmem_host(c->g, gpa), &v);
	int st1 = gmem_state(c->g, gpa);

	e1 = s_view_epoch(c);
	if (e0 != e1)
		return; /* raced a conversion: no verdict */
	if (st0 != st1 || (sig != 0) != (st0 == GMEM_PRIVATE))
		s_fail(c, "checker: page %#" PRIx64 " with no conversion in between: state %d/%d, "
		       "host-view read %s", gpa, st0, st1, sig ? "faulted" : "succeeded");
	s_count(c, sig ? CK_SEQ_FAULT : CK_SEQ_READ);
}

struct s_checker {
	struct s_ctx *c;
	uint64_t rng;
};

static void *s_checker_main(void *arg)
{
	struct s_checker *k = arg;

	while (!s_time_up(k->c)) {
		for (int i = 0; i < 64; i++) {
			if (s_below(&k->rng, 2))
				s_checker_pinned(k->c, &k->rng);
			else
				s_checker_unpinned(k->c, &k->rng);
		}
	}
	return NULL;
}

/* ---------------------------------------------------------------------------
 * Driver
 */

static void s_final_checks(struct s_ctx *c, struct s_worker *ws)
{
	struct gmem_stats s;

	cr_assert_eq(gmem_stats(c->g, &s), 0);
	cr_assert_eq(s.pinned_pages, 0, "pinned_pages %" PRIu64 " after every unpin",
		     s.pinned_pages);
	cr_assert_eq(s.kmapped_pages, 0, "kmapped_pages %" PRIu64 " after every kunmap",
		     s.kmapped_pages);
	cr_assert_eq(s.shared_pages + s.private_pages, S_NPAGES, "shared %" PRIu64
		     " + private %" PRIu64 " != %" PRIu64, s.shared_pages, s.private_pages,
		     (uint64_t)S_NPAGES);
	for (uint64_t p = 0; p < S_NPAGES; p++)
		cr_assert_eq(gm_state_pins(&c->g->st, p), 0, "page %#" PRIx64 " pins %u at the end",
			     p * S_PAGE, gm_state_pins(&c->g->st, p));
	/* The owned regions are exactly as their owners modelled them. */
	for (unsigned i = 0; i < S_WORKERS; i++) {
		struct s_worker *w = &ws[i];

		for (uint64_t off = 0; off < S_RPAGES; off++) {
			uint64_t gpa = (w->own_first + off) * S_PAGE, v;
			int st = gmem_state(c->g, gpa);
			uint8_t *p;

			cr_assert_eq(st, w->state[off], "owned page %#" PRIx64 ": state %d, model %d",
				     gpa, st, w->state[off]);
			p = gmem_kmap(c->g, gpa);
			cr_assert_not_null(p, "gmem_kmap(%#" PRIx64 "): %s", gpa, strerror(errno));
			v = *(volatile uint64_t *)p;
			gmem_kunmap(c->g, p);
			cr_assert_eq(v, w->content[off], "owned page %#" PRIx64 ": contents %#" PRIx64
				     ", model %#" PRIx64, gpa, v, w->content[off]);
		}
	}
}

static uint64_t s_env_ms(void)
{
	const char *s = getenv("GMEM_STRESS_SECONDS");

	return s && *s ? (uint64_t)(strtod(s, NULL) * 1000) : S_DEFAULT_MS;
}

static void s_run(enum gmem_backend backend, unsigned flags)
{
	static struct s_worker ws[S_WORKERS];
	static struct s_ctx ctx;
	struct s_ctx *c = &ctx;
	struct s_checker chk = { .c = c, .rng = 0xc4ec };
	pthread_t tid[S_WORKERS], ctid;
	uint64_t ms = s_env_ms();
	char buf[256];
	int len = 0;

	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->msg_lock, NULL);
	c->g = th_open(backend, S_SIZE, flags);
	s_install_handler();
	clock_gettime(CLOCK_MONOTONIC, &c->deadline);
	c->deadline.tv_sec += (time_t)(ms / 1000);
	c->deadline.tv_nsec += (long)(ms % 1000) * 1000000;
	if (c->deadline.tv_nsec >= 1000000000) {
		c->deadline.tv_sec++;
		c->deadline.tv_nsec -= 1000000000;
	}
	for (unsigned i = 0; i < S_WORKERS; i++) {
		struct s_worker *w = &ws[i];

		memset(w, 0, sizeof(*w));
		w->c = c;
		w->id = i;
		w->rng = 0x57e55ull * (i + 1) + backend;
		w->own_first = (uint64_t)i * S_RPAGES;
		memset(w->state, flags & GMEM_F_INIT_SHARED ? 1 : 0, sizeof(w->state));
		w->memfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
		cr_assert_geq(w->memfd, 0, "open /proc/self/mem: %s", strerror(errno));
		cr_assert_eq(pthread_create(&tid[i], NULL, s_worker_main, w), 0);
	}
	cr_assert_eq(pthread_create(&ctid, NULL, s_checker_main, &chk), 0);
	for (unsigned i = 0; i < S_WORKERS; i++)
		pthread_join(tid[i], NULL);
	pthread_join(ctid, NULL);
	for (unsigned i = 0; i < S_WORKERS; i++)
		close(ws[i].memfd);

	for (int k = 0; k < CK_NR; k++)
		len += snprintf(buf + len, sizeof(buf) - (size_t)len, " %s %lu", s_check_name[k],
				atomic_load(&c->checks[k]));
	cr_log_info("stress %s: %lu worker ops in %.1f s; checks:%s", gmem_backend_name(backend),
		    atomic_load(&c->ops), (double)ms / 1000, buf);
	cr_assert_not(atomic_load(&c->failed), "%s", c->msg);
	/* A run that checked nothing proves nothing. */
	for (int k = 0; k < CK_NR; k++)
		cr_assert_gt(atomic_load(&c->checks[k]), 0, "no %s check ran", s_check_name[k]);
	s_final_checks(c, ws);
	gmem_close(c->g);
	pthread_mutex_destroy(&c->msg_lock);
}

TH_TEST(stress, private_start, .timeout = 120)
{
	s_run(backend, 0);
}

TH_TEST(stress, shared_start, .timeout = 120)
{
	s_run(backend, GMEM_F_INIT_SHARED);
}

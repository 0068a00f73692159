// SPDX-License-Identifier: MIT
/*
 * test_model.c - model-based test of the public API.
 *
 * A plain per-page reference model (state, pin count, kmap count, content
 * seed) predicts the result of every call of a long random sequence:
 * conversions of random ranges (biased to small I/O-sized ranges, region-
 * aligned ones and ranges straddling word and region boundaries), pins,
 * unpins, temporary mappings held across operations or taken for one write,
 * writes through the host view, state queries, discards, and calls with
 * invalid arguments. Every return code (and busy_gpa on -EAGAIN) is compared
 * as it happens; every VERIFY_EVERY operations and at the end each page's
 * state, pin and kmap counts, the counters of gmem_stats() and each page's
 * contents (first 8 bytes: a seed written by the model, zero after discard)
 * are compared in full.
 *
 * The memory is small (8 MiB, 4 regions) so that ranges collide a lot.
 * Seed: fixed, printed, overridable with GMEM_MODEL_SEED; op count per test
 * overridable with GMEM_MODEL_OPS. Four tests (2 backends x initial state)
 * of 250 000 operations each make one million per run.
 *
 * Suite: model.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"
#include "internal.h"

#define M_PAGE          ((uint64_t)TH_PAGE)
#define M_SIZE          ((uint64_t)8 * TH_MIB)
#define M_NPAGES        (M_SIZE / M_PAGE)
#define M_NREG          (M_SIZE / (uint64_t)GMEM_REGION_SIZE)
#define M_RPAGES        ((uint64_t)GMEM_REGION_SIZE / M_PAGE)
#define M_MAX_HELD      3       /* kmaps held across operations             */
#define M_MAX_PINS      4       /* pinned ranges remembered for unpinning   */
#define M_RING          24      /* recent operations printed on divergence  */
#define VERIFY_EVERY    25000
#define M_DEFAULT_OPS   250000
#define M_DEFAULT_SEED  0x676d656d6f64656cull

enum m_op {
	OP_QUERY, OP_CONVERT, OP_PIN, OP_UNPIN, OP_HOST_WRITE, OP_HELD_WRITE, OP_KMAP_HOLD,
	OP_KUNMAP, OP_KMAP_WRITE, OP_KMAP_READ, OP_DISCARD, OP_INVALID, OP_STATS, OP_NR
};

static const char *const m_op_name[OP_NR] = {
	"query", "convert", "pin", "unpin", "host_write", "held_write", "kmap_hold",
	"kunmap", "kmap_write", "kmap_read", "discard", "invalid", "stats",
};

struct m_rec {
	uint64_t idx;
	enum m_op op;
	uint64_t gpa, len;
	int64_t arg, ret;
};

struct m_held {
	uint64_t page;
	uint8_t *win;           /* window base (page aligned) */
};

struct m_pinrec {
	uint64_t first, n;
};

/* Counters gmem_stats() must report. */
struct m_counts {
	uint64_t conversions, pages_converted, refused, pins, kmaps, discards;
	uint64_t regions_split, regions_repaired;
};

struct model {
	struct gmem *g;
	enum gmem_backend backend;
	unsigned flags;
	uint64_t seed, rng, op;
	uint8_t state[M_NPAGES];
	uint32_t pins[M_NPAGES];
	uint32_t kmaps[M_NPAGES];
	uint64_t content[M_NPAGES];
	struct m_held held[M_MAX_HELD];
	unsigned nheld;
	struct m_pinrec pinned[M_MAX_PINS];
	unsigned npinrec;
	struct m_counts c;
	uint64_t shared_sum, nverify;           /* mean shared fraction, for the log */
	struct m_rec ring[M_RING];
	struct m_rec *cur;
	uint64_t ok[OP_NR], failed[OP_NR];      /* outcomes, for the log */
};

static uint64_t m_rand(struct model *m)
{
	uint64_t z = (m->rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t m_below(struct model *m, uint64_t n)
{
	return m_rand(m) % n;
}

/* Recent operations, oldest first: the context of a divergence. */
static void m_dump(const struct model *m)
{
	cr_log_error("model: backend %s flags %#x seed %#" PRIx64 " (GMEM_MODEL_SEED to replay)",
		     gmem_backend_name(m->backend), m->flags, m->seed);
	for (uint64_t k = m->op >= M_RING ? m->op - M_RING + 1 : 0; k <= m->op; k++) {
		const struct m_rec *r = &m->ring[k % M_RING];

		if (r->idx != k)
			continue;
		cr_log_error("  op %" PRIu64 ": %s gpa %#" PRIx64 " len %#" PRIx64 " arg %" PRId64
			     " -> %" PRId64, r->idx, m_op_name[r->op], r->gpa, r->len, r->arg,
			     r->ret);
	}
}

/* Any divergence fails the test with both sides, the seed and the op. */
#define M_CHECK(m, cond, fmt, ...)                                                 \
	do {                                                                       \
		if (!(cond)) {                                                     \
			m_dump(m);                                                 \
			cr_assert_fail("seed %#" PRIx64 " op %" PRIu64 " (%s): " fmt,   \
				       (m)->seed, (m)->op, m_op_name[(m)->cur->op], \
				       ##__VA_ARGS__);                             \
		}                                                                  \
	} while (0)

#define M_CHECK_RET(m, got, want)                                                  \
	M_CHECK(m, (got) == (want), "library returned %d (%s), model expects %d (%s)", \
		(int)(got), gmem_strerror((int)(got)), (int)(want), gmem_strerror((int)(want)))

static void m_record(struct model *m, enum m_op op, uint64_t gpa, uint64_t len, int64_t arg)
{
	struct m_rec *r = &m->ring[m->op % M_RING];

	*r = (struct m_rec){ .idx = m->op, .op = op, .gpa = gpa, .len = len, .arg = arg };
	m->cur = r;
}

/* ---------------------------------------------------------------------------
 * Model predictions
 */

static bool m_busy(const struct model *m, uint64_t p)
{
	return m->pins[p] || m->kmaps[p];
}

static bool m_range_valid(uint64_t gpa, uint64_t len)
{
	return len && !((gpa | len) & (M_PAGE - 1)) && gpa < M_SIZE && len <= M_SIZE - gpa;
}

static unsigned m_region_shared(const struct model *m, uint64_t r)
{
	unsigned n = 0;

	for (uint64_t p = r * M_RPAGES; p < (r + 1) * M_RPAGES; p++)
		n += m->state[p];
	return n;
}

static bool m_mixed(unsigned nshared)
{
	return nshared && nshared < M_RPAGES;
}

static uint64_t m_runs(const struct model *m)
{
	uint64_t runs = 1;

	for (uint64_t p = 1; p < M_NPAGES; p++)
		runs += m->state[p] != m->state[p - 1];
	return runs;
}

/* Range generators: mostly small I/O-sized ranges, then region-aligned ones
 * and ones straddling word and region boundaries, where the bit tricks and
 * the region summaries have their edge cases. */
static void m_range(struct model *m, uint64_t *first, uint64_t *n)
{
	uint64_t r = m_below(m, 100);

	if (r < 50) {
		*first = m_below(m, M_NPAGES);
		*n = 1 + m_below(m, r < 35 ? 4 : 32);
	} else if (r < 65) {
		*first = m_below(m, M_NREG) * M_RPAGES;
		*n = M_RPAGES * (1 + m_below(m, 2));
	} else if (r < 75) {
		*first = (1 + m_below(m, M_NREG - 1)) * M_RPAGES - 1 - m_below(m, 8);
		*n = 2 + m_below(m, 16);
	} else if (r < 82) {
		*first = m_below(m, M_NPAGES / 64) * 64 + 60;
		*n = 1 + m_below(m, 8);
	} else if (r < 97) {
		*first = m_below(m, M_NPAGES);
		*n = 1 + m_below(m, M_NPAGES - *first);
	} else {
		*first = 0;
		*n = M_NPAGES;
	}
	if (*first >= M_NPAGES)
		*first = M_NPAGES - 1;
	if (*n > M_NPAGES - *first)
		*n = M_NPAGES - *first;
}

/* An invalid range: unaligned, empty, outside, or overflowing. */
static void m_bad_range(struct model *m, uint64_t *gpa, uint64_t *len)
{
	switch (m_below(m, 7)) {
	case 0:
		*gpa = m_below(m, M_NPAGES) * M_PAGE + 1 + m_below(m, M_PAGE - 1);
		*len = M_PAGE;
		break;
	case 1:
		*gpa = 0;
		*len = M_PAGE + 1 + m_below(m, M_PAGE - 1);
		break;
	case 2:
		*gpa = m_below(m, M_NPAGES) * M_PAGE;
		*len = 0;
		break;
	case 3:
		*gpa = M_SIZE + m_below(m, 4) * M_PAGE;
		*len = M_PAGE;
		break;
	case 4:
		*gpa = M_SIZE - M_PAGE * (1 + m_below(m, 4));
		*len = M_PAGE * 5;
		break;
	case 5: /* gpa + len wraps to a small value */
		*gpa = M_SIZE - M_PAGE;
		*len = 0ull - M_PAGE * (1 + m_below(m, 4));
		break;
	default:
		*gpa = ~0ull & ~(M_PAGE - 1);
		*len = M_PAGE;
		break;
	}
}

/* Account the region transitions of setting [first, first + n) to @to. */
static void m_set_state(struct model *m, uint64_t first, uint64_t n, int to)
{
	uint64_t r0 = first / M_RPAGES, r1 = (first + n - 1) / M_RPAGES;
	unsigned before[M_NREG];

	for (uint64_t r = r0; r <= r1; r++)
		before[r] = m_region_shared(m, r);
	for (uint64_t p = first; p < first + n; p++) {
		m->c.pages_converted += m->state[p] != to;
		m->state[p] = (uint8_t)to;
	}
	for (uint64_t r = r0; r <= r1; r++) {
		unsigned after = m_region_shared(m, r);

		m->c.regions_split += !m_mixed(before[r]) && m_mixed(after);
		m->c.regions_repaired += m_mixed(before[r]) && !m_mixed(after);
	}
}

/* ---------------------------------------------------------------------------
 * Contents: 8 bytes at the start of each page.
 */

static uint64_t m_new_content(struct model *m)
{
	return m_rand(m) | 1; /* never zero: zero means "discarded / fresh" */
}

static volatile uint64_t *m_host(const struct model *m, uint64_t p)
{
	return gmem_host(m->g, p * M_PAGE);
}

static struct m_held *m_held_of(struct model *m, uint64_t p)
{
	for (unsigned i = 0; i < m->nheld; i++)
		if (m->held[i].page == p)
			return &m->held[i];
	return NULL;
}

/* Read page @p's first 8 bytes the way its state allows. */
static uint64_t m_read_content(struct model *m, uint64_t p)
{
	struct m_held *h;
	uint64_t v;
	uint8_t *w;

	if (m->state[p])
		return *m_host(m, p);
	h = m_held_of(m, p);
	if (h)
		return *(volatile uint64_t *)h->win;
	w = gmem_kmap(m->g, p * M_PAGE);
	M_CHECK(m, w != NULL, "gmem_kmap(%#" PRIx64 ") of private page failed: %s",
		p * M_PAGE, strerror(errno));
	v = *(volatile uint64_t *)w;
	gmem_kunmap(m->g, w);
	m->c.kmaps++;
	return v;
}

static void m_check_content(struct model *m, uint64_t p)
{
	uint64_t got = m_read_content(m, p);

	M_CHECK(m, got == m->content[p],
		"page %#" PRIx64 " (%s, pins %u, kmaps %u): contents %#" PRIx64
		", model %#" PRIx64, p * M_PAGE, m->state[p] ? "shared" : "private", m->pins[p],
		m->kmaps[p], got, m->content[p]);
}

/* ---------------------------------------------------------------------------
 * Operations
 */

static void op_query(struct model *m)
{
	uint64_t p = m_below(m, M_NPAGES), off = m_below(m, 4) ? 0 : m_below(m, M_PAGE);
	int ret;

	m_record(m, OP_QUERY, p * M_PAGE + off, 0, 0);
	if (m_below(m, 50) == 0) { /* past the end */
		ret = gmem_state(m->g, M_SIZE + off * M_PAGE);
		m->cur->ret = ret;
		M_CHECK_RET(m, ret, -EINVAL);
		return;
	}
	ret = gmem_state(m->g, p * M_PAGE + off);
	m->cur->ret = ret;
	M_CHECK(m, ret == m->state[p], "gmem_state(%#" PRIx64 ") = %d, model %d",
		p * M_PAGE + off, ret, m->state[p]);
	/* A shared page reads its contents through the host view: no syscall. */
	if (ret == GMEM_SHARED)
		m_check_content(m, p);
	/* Now and then, a private one must fault there (two sigactions). */
	else if (ret == GMEM_PRIVATE && !m->g->b.inplace && m_below(m, 8) == 0)
		M_CHECK(m, th_read_faults(m_host(m, p)),
			"private page %#" PRIx64 " reads through the host view", p * M_PAGE);
}

/* Convert [first, first + n) to @to; returns the first busy page on a
 * predicted -EAGAIN, else ~0. */
static uint64_t m_convert(struct model *m, uint64_t first, uint64_t n, int to)
{
	uint64_t busy_gpa = 0xdeadbeefull, changed = 0, busy = ~0ull;
	int want, ret;

	m_record(m, OP_CONVERT, first * M_PAGE, n * M_PAGE, to);
	for (uint64_t p = first; p < first + n; p++) {
		changed += m->state[p] != to;
		if (busy == ~0ull && m_busy(m, p))
			busy = p;
	}
	/* DESIGN: to private, any pinned or temporarily mapped page of the
	 * range refuses the call, even one that is private already. */
	want = to == GMEM_PRIVATE && busy != ~0ull ? -EAGAIN : 0;
	(void)changed;
	ret = gmem_convert(m->g, first * M_PAGE, n * M_PAGE, (enum gmem_state)to, &busy_gpa);
	m->cur->ret = ret;
	M_CHECK_RET(m, ret, want);
	if (want == -EAGAIN) {
		M_CHECK(m, busy_gpa == busy * M_PAGE,
			"busy_gpa %#" PRIx64 ", model's first busy page %#" PRIx64 " (pins %u kmaps %u)",
			busy_gpa, busy * M_PAGE, m->pins[busy], m->kmaps[busy]);
		m->c.refused++;
		return busy;
	}
	m->c.conversions++;
	m_set_state(m, first, n, to);
	return ~0ull;
}

static void op_convert(struct model *m)
{
	uint64_t first, n, busy;
	int to;

	m_range(m, &first, &n);
	/* Large ranges lean private: a single pin refuses a large conversion
	 * to private, never one to shared, and memory would drift shared. */
	to = (int)(m_below(m, 100) < (n > 64 ? 35 : 50));
	busy = m_convert(m, first, n, to);
	/* Half the time, do what a VMM does with busy_gpa: convert the part
	 * before it (its outcome is predicted like any other call). */
	if (busy != ~0ull && busy > first && m_below(m, 2)) {
		m_convert(m, first, busy - first, to);
	}
}

/* A range of shared pages, when the random page is shared: pins succeed. */
static void m_shared_range(struct model *m, uint64_t *first, uint64_t *n)
{
	uint64_t p = m_below(m, M_NPAGES), len = 1 + m_below(m, 8), k = 0;

	while (k < len && p + k < M_NPAGES && m->state[p + k])
		k++;
	*first = p;
	*n = k ? k : 1;
}

static void m_unpin_one(struct model *m, uint64_t first, uint64_t n)
{
	bool all = true;
	int ret, want;

	m_record(m, OP_UNPIN, first * M_PAGE, n * M_PAGE, 0);
	for (uint64_t p = first; p < first + n; p++)
		all &= m->pins[p] != 0;
	want = all ? 0 : -EINVAL;
	ret = gmem_unpin(m->g, first * M_PAGE, n * M_PAGE);
	m->cur->ret = ret;
	M_CHECK_RET(m, ret, want);
	if (!ret)
		for (uint64_t p = first; p < first + n; p++)
			m->pins[p]--;
}

static void m_forget_pin(struct model *m, unsigned i)
{
	m->pinned[i] = m->pinned[--m->npinrec];
}

static void op_unpin(struct model *m)
{
	uint64_t first, n;

	/* Now and then drop every pin, so conversions to private succeed again. */
	if (m_below(m, 100) < 10) {
		while (m->npinrec) {
			m_unpin_one(m, m->pinned[0].first, m->pinned[0].n);
			m_forget_pin(m, 0);
		}
		return;
	}
	if (m->npinrec && m_below(m, 10) < 8) {
		unsigned i = (unsigned)m_below(m, m->npinrec);

		m_unpin_one(m, m->pinned[i].first, m->pinned[i].n);
		m_forget_pin(m, i);
		return;
	}
	/* Random range: mostly -EINVAL (some page not pinned), nothing unpinned. */
	m_range(m, &first, &n);
	if (n > 8)
		n = 1 + m_below(m, 8);
	m_unpin_one(m, first, n);
}

static void op_pin(struct model *m)
{
	uint64_t first, n;
	bool priv = false;
	int ret, want;

	if (m->npinrec == M_MAX_PINS) {
		op_unpin(m);
		return;
	}
	if (m_below(m, 2)) {
		m_shared_range(m, &first, &n);
	} else {
		m_range(m, &first, &n);
		/* Mostly I/O-sized: long pins block every conversion to private. */
		if (n > 16 && m_below(m, 50))
			n = 1 + m_below(m, 16);
	}
	m_record(m, OP_PIN, first * M_PAGE, n * M_PAGE, 0);
	for (uint64_t p = first; p < first + n; p++)
		priv |= !m->state[p];
	want = (priv || (m->flags & GMEM_F_NO_PIN)) ? -EPERM : 0;
	ret = gmem_pin(m->g, first * M_PAGE, n * M_PAGE);
	m->cur->ret = ret;
	M_CHECK_RET(m, ret, want);
	if (ret)
		return;
	m->c.pins++;
	for (uint64_t p = first; p < first + n; p++)
		m->pins[p]++;
	m->pinned[m->npinrec++] = (struct m_pinrec){ first, n };
}

static void op_host_write(struct model *m)
{
	uint64_t p = m_below(m, M_NPAGES), v;

	/* Look for a shared page nearby; private ones are the privacy suite's. */
	for (unsigned k = 0; k < 64 && !m->state[p]; k++)
		p = (p + 1) % M_NPAGES;
	m_record(m, OP_HOST_WRITE, p * M_PAGE, 8, m->state[p]);
	if (!m->state[p])
		return;
	v = m_new_content(m);
	*m_host(m, p) = v;
	m->content[p] = v;
}

static void op_held_write(struct model *m)
{
	struct m_held *h;
	uint64_t v;

	if (!m->nheld) {
		m_record(m, OP_HELD_WRITE, 0, 0, -1);
		return;
	}
	h = &m->held[m_below(m, m->nheld)];
	m_record(m, OP_HELD_WRITE, h->page * M_PAGE, 8, 0);
	v = m_new_content(m);
	*(volatile uint64_t *)h->win = v;
	m->content[h->page] = v;
	/* Whatever the state, the page's own view agrees with the window. */
	if (m->state[h->page])
		M_CHECK(m, *m_host(m, h->page) == v,
			"host view of %#" PRIx64 " reads %#" PRIx64 " after window write %#" PRIx64,
			h->page * M_PAGE, *m_host(m, h->page), v);
}

static void op_kmap_hold(struct model *m)
{
	uint64_t p = m_below(m, M_NPAGES), off = m_below(m, 3) ? 0 : m_below(m, M_PAGE);
	uint8_t *w;

	m_record(m, OP_KMAP_HOLD, p * M_PAGE + off, 0, 0);
	w = gmem_kmap(m->g, p * M_PAGE + off);
	m->cur->ret = w ? 0 : -errno;
	M_CHECK(m, w != NULL, "gmem_kmap(%#" PRIx64 ") failed: %s", p * M_PAGE + off,
		strerror(errno));
	M_CHECK(m, ((uintptr_t)w & (M_PAGE - 1)) == off,
		"gmem_kmap(%#" PRIx64 ") = %p: offset in page %#" PRIxPTR ", want %#" PRIx64,
		p * M_PAGE + off, (void *)w, (uintptr_t)w & (M_PAGE - 1), off);
	m->held[m->nheld++] = (struct m_held){ .page = p, .win = w - off };
	m->kmaps[p]++;
	m->c.kmaps++;
	M_CHECK(m, *(volatile uint64_t *)(w - off) == m->content[p],
		"window of %#" PRIx64 " reads %#" PRIx64 ", model %#" PRIx64, p * M_PAGE,
		*(volatile uint64_t *)(w - off), m->content[p]);
}

static void op_kunmap(struct model *m)
{
	unsigned i = (unsigned)m_below(m, m->nheld);
	struct m_held h = m->held[i];

	m_record(m, OP_KUNMAP, h.page * M_PAGE, 0, 0);
	/* Any address inside the window names it. */
	gmem_kunmap(m->g, h.win + (m_below(m, 2) ? 0 : m_below(m, M_PAGE)));
	m->held[i] = m->held[--m->nheld];
	m->kmaps[h.page]--;
}

static void op_kmap_toggle(struct model *m)
{
	if (m->nheld < M_MAX_HELD && (!m->nheld || m_below(m, 2)))
		op_kmap_hold(m);
	else
		op_kunmap(m);
}

static void op_kmap_write(struct model *m)
{
	uint64_t p = m_below(m, M_NPAGES), v = m_new_content(m);
	uint8_t *w;

	m_record(m, OP_KMAP_WRITE, p * M_PAGE, 8, m->state[p]);
	w = gmem_kmap(m->g, p * M_PAGE);
	m->cur->ret = w ? 0 : -errno;
	M_CHECK(m, w != NULL, "gmem_kmap(%#" PRIx64 ") failed: %s", p * M_PAGE, strerror(errno));
	*(volatile uint64_t *)w = v;
	gmem_kunmap(m->g, w);
	m->c.kmaps++;
	m->content[p] = v;
}

static void op_kmap_read(struct model *m)
{
	uint64_t p = m_below(m, M_NPAGES);

	m_record(m, OP_KMAP_READ, p * M_PAGE, 8, m->state[p]);
	m_check_content(m, p);
}

static void op_discard(struct model *m)
{
	uint64_t first, n;
	bool busy = false;
	int ret, want;

	m_range(m, &first, &n);
	if (n > 32 && m_below(m, 4))
		n = 1 + m_below(m, 32);
	m_record(m, OP_DISCARD, first * M_PAGE, n * M_PAGE, 0);
	for (uint64_t p = first; p < first + n; p++)
		busy |= m_busy(m, p);
	want = busy ? -EBUSY : 0;
	ret = gmem_discard(m->g, first * M_PAGE, n * M_PAGE);
	m->cur->ret = ret;
	M_CHECK_RET(m, ret, want);
	if (ret)
		return;
	m->c.discards++;
	memset(&m->content[first], 0, n * sizeof(m->content[0]));
}

/* Calls that must fail with -EINVAL and change nothing. */
static void op_invalid(struct model *m)
{
	uint64_t gpa, len, busy_gpa = 0xdeadbeefull;
	unsigned which = (unsigned)m_below(m, 6);
	int ret;

	m_bad_range(m, &gpa, &len);
	m_record(m, OP_INVALID, gpa, len, which);
	/* The generator itself must never produce a valid range. */
	M_CHECK(m, !m_range_valid(gpa, len), "test bug: generated a valid range");
	switch (which) {
	case 0:
		ret = gmem_convert(m->g, gpa, len, (enum gmem_state)m_below(m, 2), &busy_gpa);
		break;
	case 1: /* a valid range with an invalid target state */
		ret = gmem_convert(m->g, 0, M_PAGE, (enum gmem_state)(2 + m_below(m, 3)),
				   &busy_gpa);
		break;
	case 2:
		ret = gmem_pin(m->g, gpa, len);
		break;
	case 3:
		ret = gmem_unpin(m->g, gpa, len);
		break;
	case 4:
		ret = gmem_discard(m->g, gpa, len);
		break;
	default: {
		void *w = gmem_kmap(m->g, M_SIZE + gpa % M_SIZE);

		ret = w ? 0 : -errno;
		if (w)
			gmem_kunmap(m->g, w);
		/* Not a window: ignored. */
		gmem_kunmap(m->g, gmem_host(m->g, 0));
		break;
	}
	}
	m->cur->ret = ret;
	M_CHECK_RET(m, ret, -EINVAL);
	M_CHECK(m, busy_gpa == 0xdeadbeefull, "busy_gpa written (%#" PRIx64 ") on -EINVAL",
		busy_gpa);
}

/* ---------------------------------------------------------------------------
 * Full comparison
 */

static void m_check_stats(struct model *m)
{
	struct gmem_stats s;
	uint64_t nshared = 0, npinned = 0, nkmapped = 0, nmixed = 0;
	int ret = gmem_stats(m->g, &s);

	M_CHECK_RET(m, ret, 0);
	for (uint64_t p = 0; p < M_NPAGES; p++) {
		nshared += m->state[p];
		npinned += m->pins[p] != 0;
		nkmapped += m->kmaps[p] != 0;
	}
	for (uint64_t r = 0; r < M_NREG; r++)
		nmixed += m_mixed(m_region_shared(m, r));
#define M_STAT(field, want)                                                        \
	M_CHECK(m, s.field == (want), "gmem_stats." #field " = %" PRIu64 ", model %" PRIu64, \
		(uint64_t)s.field, (uint64_t)(want))
	M_STAT(size, M_SIZE);
	M_STAT(shared_pages, nshared);
	M_STAT(private_pages, M_NPAGES - nshared);
	M_STAT(pinned_pages, npinned);
	M_STAT(kmapped_pages, nkmapped);
	M_STAT(conversions, m->c.conversions);
	M_STAT(pages_converted, m->c.pages_converted);
	M_STAT(refused, m->c.refused);
	M_STAT(pins, m->c.pins);
	M_STAT(kmaps, m->c.kmaps);
	M_STAT(discards, m->c.discards);
	M_STAT(regions, M_NREG);
	M_STAT(regions_mixed, nmixed);
	M_STAT(regions_split, m->c.regions_split);
	M_STAT(regions_repaired, m->c.regions_repaired);
	if (!m->g->b.inplace)
		M_STAT(view_mappings, m_runs(m));
#undef M_STAT
}

static void m_verify(struct model *m)
{
	m_record(m, OP_STATS, 0, M_SIZE, 1);
	m_check_stats(m);
	m->nverify++;
	for (uint64_t p = 0; p < M_NPAGES; p++)
		m->shared_sum += m->state[p];
	for (uint64_t p = 0; p < M_NPAGES; p++) {
		const struct gm_pin_entry *e;
		int st = gmem_state(m->g, p * M_PAGE);
		uint32_t pins = gm_state_pins(&m->g->st, p), kmaps;

		M_CHECK(m, st == m->state[p], "page %#" PRIx64 ": gmem_state %d, model %d",
			p * M_PAGE, st, m->state[p]);
		M_CHECK(m, pins == m->pins[p], "page %#" PRIx64 ": gm_state_pins %u, model %u",
			p * M_PAGE, pins, m->pins[p]);
		e = gm_pintab_get(&m->g->st.counts, p, 0);
		kmaps = e ? e->kmaps : 0;
		M_CHECK(m, kmaps == m->kmaps[p], "page %#" PRIx64 ": kmaps %u, model %u",
			p * M_PAGE, kmaps, m->kmaps[p]);
		m_check_content(m, p);
	}
	/* A sample of private pages must not read through the host view. */
	for (unsigned k = 0; k < 64; k++) {
		uint64_t p = m_below(m, M_NPAGES);

		if (m->state[p] || m->g->b.inplace)
			continue;
		M_CHECK(m, th_read_faults(m_host(m, p)),
			"private page %#" PRIx64 " reads through the host view", p * M_PAGE);
	}
}

/* ---------------------------------------------------------------------------
 * Driver
 */

static uint64_t m_env_u64(const char *name, uint64_t def)
{
	const char *s = getenv(name);

	return s && *s ? strtoull(s, NULL, 0) : def;
}

static void m_dispatch(struct model *m, uint64_t r)
{
	if (r < 250)
		op_query(m);
	else if (r < 470)
		op_convert(m);
	else if (r < 570)
		op_pin(m);
	else if (r < 720)
		op_unpin(m);
	else if (r < 800)
		op_host_write(m);
	else if (r < 840)
		op_held_write(m);
	else if (r < 890)
		op_kmap_toggle(m);
	else if (r < 915)
		op_kmap_write(m);
	else if (r < 930)
		op_kmap_read(m);
	else if (r < 950)
		op_discard(m);
	else if (r < 980)
		op_invalid(m);
	else {
		m_record(m, OP_STATS, 0, 0, 0);
		m_check_stats(m);
	}
}

static void m_step(struct model *m)
{
	uint64_t r = m_below(m, 1000);

	m_dispatch(m, r);
	if (m->cur->ret < 0)
		m->failed[m->cur->op]++;
	else
		m->ok[m->cur->op]++;
}

static void m_log_outcomes(const struct model *m)
{
	char buf[512];
	int len = 0;

	for (int i = 0; i < OP_NR; i++)
		len += snprintf(buf + len, sizeof(buf) - (size_t)len, " %s %" PRIu64 "/%" PRIu64,
				m_op_name[i], m->ok[i], m->failed[i]);
	cr_log_info("outcomes (ok/failed):%s; mean shared %.0f%%", buf,
		    100.0 * (double)m->shared_sum / (double)(m->nverify * M_NPAGES));
}

static void m_run(enum gmem_backend backend, unsigned flags, uint64_t salt, uint64_t div)
{
	static struct model model;
	struct model *m = &model;
	uint64_t nops = m_env_u64("GMEM_MODEL_OPS", M_DEFAULT_OPS) / div;
	struct timespec t0, t1;

	memset(m, 0, sizeof(*m));
	m->backend = backend;
	m->flags = flags;
	m->g = th_open(backend, M_SIZE, flags);
	/* One base seed for the run; each test mixes in its own salt. */
	m->seed = m_env_u64("GMEM_MODEL_SEED", M_DEFAULT_SEED) ^ (salt * 0x9e3779b97f4a7c15ull);
	m->rng = m->seed;
	memset(m->state, flags & GMEM_F_INIT_SHARED ? 1 : 0, sizeof(m->state));
	cr_log_info("model %s flags %#x: seed %#" PRIx64 ", %" PRIu64 " ops",
		    gmem_backend_name(backend), flags, m->seed, nops);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (m->op = 0; m->op < nops; m->op++) {
		m_step(m);
		if (m->op % VERIFY_EVERY == VERIFY_EVERY - 1)
			m_verify(m);
	}
	/* Release what the sequence holds, then compare everything once more. */
	while (m->nheld)
		op_kunmap(m);
	while (m->npinrec) {
		m_unpin_one(m, m->pinned[0].first, m->pinned[0].n);
		m_forget_pin(m, 0);
	}
	m_verify(m);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_log_info("model %s flags %#x: %" PRIu64 " ops in %.2f s, %" PRIu64 " conversions "
		    "(%" PRIu64 " refused), %" PRIu64 " pins, %" PRIu64 " kmaps, %" PRIu64 " discards",
		    gmem_backend_name(backend), flags, nops,
		    (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
		    m->c.conversions, m->c.refused, m->c.pins, m->c.kmaps, m->c.discards);
	m_log_outcomes(m);
	/* The sequence must have exercised every outcome, or it tested little. */
	cr_assert(m->c.conversions && m->c.refused && m->c.discards && m->c.kmaps,
		  "degenerate run: %" PRIu64 " conversions, %" PRIu64 " refused, %" PRIu64
		  " discards, %" PRIu64 " kmaps", m->c.conversions, m->c.refused, m->c.discards,
		  m->c.kmaps);
	cr_assert(m->c.pins || (flags & GMEM_F_NO_PIN), "no pin ever succeeded");
	gmem_close(m->g);
}

TH_TEST(model, random_init_private, .timeout = 300)
{
	m_run(backend, 0, 1 + backend, 1);
}

TH_TEST(model, random_init_shared, .timeout = 300)
{
	m_run(backend, GMEM_F_INIT_SHARED, 11 + backend, 1);
}

/* Pins are refused with -EPERM whatever the state; everything else holds.
 * A fifth of the operations: on top of the million above. */
Test(model, random_no_pin_memfd, .timeout = 300)
{
	m_run(GMEM_BACKEND_MEMFD, GMEM_F_INIT_SHARED | GMEM_F_NO_PIN, 21, 5);
}

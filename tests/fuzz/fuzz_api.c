// SPDX-License-Identifier: MIT
/*
 * fuzz_api.c - sequences of public calls decoded from the input, checked
 * against a per-page reference model after every call.
 *
 * Model: each page of a 4 MiB memfd memory has a state, a pin count, a
 * temporary-mapping count and an 8-byte value at its start. The model
 * predicts every return code (and busy_gpa on -EAGAIN) of gmem_convert,
 * gmem_pin, gmem_unpin, gmem_kmap, gmem_discard and gmem_state, for valid
 * and for hostile arguments (unaligned, empty, outside, wrapping, unknown
 * state); after every call the library's state of every page and its
 * gmem_stats() counts must equal the model's. Reads check the values, and
 * privacy: a private page read through the host view must fail with
 * process_vm_readv (EFAULT), and /proc/self/mem (which reads through
 * PROT_NONE) may give zeros from a placeholder but never the page's data.
 *
 * Input: byte 0 picks GMEM_F_INIT_SHARED / GMEM_F_NO_PIN; then one byte of
 * operation and a few bytes of arguments per call, at most F_MAX_OPS calls.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <gmem.h>

#include "fuzz.h"

#define F_PAGE     GMEM_PAGE_SIZE
#define F_SIZE     (2 * GMEM_REGION_SIZE)
#define F_NPAGES   (F_SIZE / F_PAGE)
#define F_RPAGES   (GMEM_REGION_SIZE / F_PAGE)
#define F_HELD     4u
#define F_MAX_OPS  2000u

enum f_op { F_CONVERT, F_PIN, F_UNPIN, F_KMAP, F_KUNMAP, F_KMAP_WRITE, F_HOST_WRITE,
	    F_CHECK, F_DISCARD, F_INVALID, F_QUERY, F_NOPS };

struct f_held {
	uint64_t page;
	uint64_t *p;            /* the page's first 8 bytes, in the window */
};

struct f_model {
	struct gmem *g;
	unsigned flags;
	uint8_t st[F_NPAGES];
	uint32_t pins[F_NPAGES], kmaps[F_NPAGES];
	uint64_t val[F_NPAGES];
	uint8_t touched[F_NPAGES];
	struct f_held held[F_HELD];
	unsigned nheld;
	uint64_t conversions, refused, npins, nkmaps, discards;
	uint64_t op;
};

/* A range of pages: small, region-aligned, whole memory, or straddling. */
static void f_range(struct gm_fuzz_in *in, uint64_t *first, uint64_t *n)
{
	unsigned kind = (unsigned)gm_fuzz_take(in, 1);
	uint64_t p = gm_fuzz_take(in, 2) % F_NPAGES;

	switch (kind & 3) {
	case 0:
		*n = 1 + (kind >> 2) % 64;
		break;
	case 1:
		p = p / F_RPAGES * F_RPAGES;
		*n = F_RPAGES;
		break;
	case 2:
		p = 0;
		*n = F_NPAGES;
		break;
	default:
		*n = 1 + gm_fuzz_take(in, 2) % (F_NPAGES - p);
		break;
	}
	*first = p;
	if (*n > F_NPAGES - p)
		*n = F_NPAGES - p;
}

static int f_busy(const struct f_model *m, uint64_t first, uint64_t n, uint64_t *page)
{
	for (uint64_t p = first; p < first + n; p++)
		if (m->pins[p] || m->kmaps[p]) {
			*page = p;
			return 1;
		}
	return 0;
}

static void f_convert(struct f_model *m, struct gm_fuzz_in *in)
{
	uint64_t first, n, busy_page, busy_gpa = UINT64_MAX;
	int to = (int)(gm_fuzz_take(in, 1) & 1), ret, want;

	f_range(in, &first, &n);
	want = !to && f_busy(m, first, n, &busy_page) ? -EAGAIN : 0;
	ret = gmem_convert(m->g, first * F_PAGE, n * F_PAGE, to ? GMEM_SHARED : GMEM_PRIVATE,
			   &busy_gpa);
	GM_FUZZ_CHECK(ret == want, "op %llu: convert [%llu, +%llu) to %d: %d, want %d",
		      (unsigned long long)m->op, (unsigned long long)first,
		      (unsigned long long)n, to, ret, want);
	if (ret == -EAGAIN) {
		GM_FUZZ_CHECK(busy_gpa == busy_page * F_PAGE, "busy_gpa %#llx, want %#llx",
			      (unsigned long long)busy_gpa,
			      (unsigned long long)(busy_page * F_PAGE));
		m->refused++;
		return;
	}
	memset(m->st + first, to, n);
	m->conversions++;
}

static void f_pin(struct f_model *m, struct gm_fuzz_in *in, int pin)
{
	uint64_t first, n;
	int ret, want = 0;

	f_range(in, &first, &n);
	for (uint64_t p = first; p < first + n && !want; p++) {
		if (pin && ((m->flags & GMEM_F_NO_PIN) || !m->st[p]))
			want = -EPERM;
		if (!pin && !m->pins[p])
			want = -EINVAL;
	}
	ret = pin ? gmem_pin(m->g, first * F_PAGE, n * F_PAGE)
		  : gmem_unpin(m->g, first * F_PAGE, n * F_PAGE);
	GM_FUZZ_CHECK(ret == want, "op %llu: %s [%llu, +%llu): %d, want %d",
		      (unsigned long long)m->op, pin ? "pin" : "unpin",
		      (unsigned long long)first, (unsigned long long)n, ret, want);
	if (ret)
		return;
	for (uint64_t p = first; p < first + n; p++)
		m->pins[p] += pin ? 1 : -1;
	m->npins += pin;
}

static void f_kmap(struct f_model *m, struct gm_fuzz_in *in)
{
	uint64_t page = gm_fuzz_take(in, 2) % F_NPAGES, off = gm_fuzz_take(in, 2) % F_PAGE;
	uint8_t *p;

	if (m->nheld == F_HELD)
		return;
	p = gmem_kmap(m->g, page * F_PAGE + off);
	GM_FUZZ_CHECK(p, "op %llu: kmap of page %llu failed: %s", (unsigned long long)m->op,
		      (unsigned long long)page, strerror(errno));
	m->held[m->nheld++] = (struct f_held){ .page = page, .p = (uint64_t *)(p - off) };
	m->kmaps[page]++;
	m->nkmaps++;
}

static void f_kunmap(struct f_model *m, struct gm_fuzz_in *in)
{
	unsigned i;

	if (!m->nheld)
		return;
	i = (unsigned)gm_fuzz_take(in, 1) % m->nheld;
	gmem_kunmap(m->g, m->held[i].p);
	m->kmaps[m->held[i].page]--;
	m->held[i] = m->held[--m->nheld];
}

static void f_write(struct f_model *m, struct gm_fuzz_in *in, int through_kmap)
{
	uint64_t v = gm_fuzz_take(in, 8), page;

	if (through_kmap) {
		if (!m->nheld)
			return;
		struct f_held *h = &m->held[gm_fuzz_take(in, 1) % m->nheld];

		page = h->page;
		*h->p = v;
	} else {
		page = gm_fuzz_take(in, 2) % F_NPAGES;
		if (!m->st[page])
			return;         /* would fault: F_CHECK covers private pages */
		*(uint64_t *)gmem_host(m->g, page * F_PAGE) = v;
	}
	m->val[page] = v;
	m->touched[page] = 1;
}

/* Read @page's value through the host view without faulting the process. */
static ssize_t f_host_read(struct f_model *m, uint64_t page, uint64_t *v)
{
	struct iovec local = { .iov_base = v, .iov_len = sizeof(*v) };
	struct iovec remote = { .iov_base = gmem_host(m->g, page * F_PAGE),
				.iov_len = sizeof(*v) };

	return process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
}

/* The same through /proc/self/mem: bytes read, or -1. */
static ssize_t f_procmem_read(struct f_model *m, uint64_t page, uint64_t *v)
{
	int fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	GM_FUZZ_CHECK(fd >= 0, "/proc/self/mem: %s", strerror(errno));
	n = pread(fd, v, sizeof(*v), (off_t)(uintptr_t)gmem_host(m->g, page * F_PAGE));
	close(fd);
	return n;
}

static void f_check_page(struct f_model *m, uint64_t page)
{
	uint64_t v = 0xdeadbeefdeadbeefull, *w;
	ssize_t n = f_host_read(m, page, &v);

	if (m->st[page]) {
		GM_FUZZ_CHECK(n == sizeof(v) && v == m->val[page],
			      "page %llu shared: host view read %zd bytes %#llx, want %#llx",
			      (unsigned long long)page, n, (unsigned long long)v,
			      (unsigned long long)m->val[page]);
	} else {
		GM_FUZZ_CHECK(n < 0 && errno == EFAULT,
			      "page %llu private: the host view gave %zd bytes (%#llx)",
			      (unsigned long long)page, n, (unsigned long long)v);
		v = 0;
		n = f_procmem_read(m, page, &v);
		GM_FUZZ_CHECK(n < 0 || v == 0,
			      "page %llu private: /proc/self/mem gave %zd bytes (%#llx, the "
			      "page holds %#llx)", (unsigned long long)page, n,
			      (unsigned long long)v, (unsigned long long)m->val[page]);
	}
	w = gmem_kmap(m->g, page * F_PAGE);
	GM_FUZZ_CHECK(w, "kmap of page %llu for a check: %s", (unsigned long long)page,
		      strerror(errno));
	m->nkmaps++;
	v = *w;
	gmem_kunmap(m->g, w);
	GM_FUZZ_CHECK(v == m->val[page], "page %llu holds %#llx, want %#llx",
		      (unsigned long long)page, (unsigned long long)v,
		      (unsigned long long)m->val[page]);
}

static void f_discard(struct f_model *m, struct gm_fuzz_in *in)
{
	uint64_t first, n, busy;
	int ret, want;

	f_range(in, &first, &n);
	want = f_busy(m, first, n, &busy) ? -EBUSY : 0;
	ret = gmem_discard(m->g, first * F_PAGE, n * F_PAGE);
	GM_FUZZ_CHECK(ret == want, "op %llu: discard [%llu, +%llu): %d, want %d",
		      (unsigned long long)m->op, (unsigned long long)first,
		      (unsigned long long)n, ret, want);
	if (ret)
		return;
	memset(m->val + first, 0, n * sizeof(m->val[0]));
	m->discards++;
}

/* A hostile argument for one of the range calls: always -EINVAL. */
static void f_invalid(struct f_model *m, struct gm_fuzz_in *in)
{
	unsigned call = (unsigned)gm_fuzz_take(in, 1) % 4, kind = (unsigned)gm_fuzz_take(in, 1) % 5;
	uint64_t gpa = (gm_fuzz_take(in, 2) % F_NPAGES) * F_PAGE, len = F_PAGE;
	int to = GMEM_SHARED, ret;

	switch (kind) {
	case 0: gpa += 1 + gm_fuzz_take(in, 2) % (F_PAGE - 1); break;  /* unaligned   */
	case 1: len = 0; break;                                        /* empty       */
	case 2: gpa = F_SIZE + gm_fuzz_take(in, 4) * F_PAGE; break;    /* outside     */
	case 3: len = UINT64_MAX - F_PAGE + 1; break;                  /* wraps       */
	default: to = 2 + (int)gm_fuzz_take(in, 1); call = 0; break;   /* bad state   */
	}
	switch (call) {
	case 0: ret = gmem_convert(m->g, gpa, len, (enum gmem_state)to, NULL); break;
	case 1: ret = gmem_pin(m->g, gpa, len); break;
	case 2: ret = gmem_unpin(m->g, gpa, len); break;
	default: ret = gmem_discard(m->g, gpa, len); break;
	}
	GM_FUZZ_CHECK(ret == -EINVAL, "op %llu: call %u with bad argument %u (gpa %#llx len "
		      "%#llx to %d): %d, want -EINVAL", (unsigned long long)m->op, call, kind,
		      (unsigned long long)gpa, (unsigned long long)len, to, ret);
}

static void f_query(struct f_model *m, struct gm_fuzz_in *in)
{
	uint64_t gpa = gm_fuzz_take(in, 3) % (F_SIZE + F_PAGE);
	int ret = gmem_state(m->g, gpa), want = gpa < F_SIZE ? m->st[gpa / F_PAGE] : -EINVAL;

	GM_FUZZ_CHECK(ret == want, "op %llu: state(%#llx) = %d, want %d",
		      (unsigned long long)m->op, (unsigned long long)gpa, ret, want);
}

/* After every call: every page's state and the counters. */
static void f_compare(struct f_model *m)
{
	struct gmem_stats s;
	uint64_t shared = 0, pinned = 0, mapped = 0;

	for (uint64_t p = 0; p < F_NPAGES; p++) {
		int st = gmem_state(m->g, p * F_PAGE);

		GM_FUZZ_CHECK(st == m->st[p], "after op %llu: page %llu is %d, want %d",
			      (unsigned long long)m->op, (unsigned long long)p, st, m->st[p]);
		shared += m->st[p];
		pinned += m->pins[p] > 0;
		mapped += m->kmaps[p] > 0;
	}
	GM_FUZZ_CHECK(gmem_stats(m->g, &s) == 0, "gmem_stats failed");
#define F_EQ(field, want)                                                           \
	GM_FUZZ_CHECK(s.field == (want), "after op %llu: " #field " %llu, want %llu",   \
		      (unsigned long long)m->op, (unsigned long long)s.field,           \
		      (unsigned long long)(want))
	F_EQ(shared_pages, shared);
	F_EQ(private_pages, F_NPAGES - shared);
	F_EQ(pinned_pages, pinned);
	F_EQ(kmapped_pages, mapped);
	F_EQ(conversions, m->conversions);
	F_EQ(refused, m->refused);
	F_EQ(pins, m->npins);
	F_EQ(kmaps, m->nkmaps);
	F_EQ(discards, m->discards);
#undef F_EQ
}

static void f_step(struct f_model *m, struct gm_fuzz_in *in)
{
	switch ((enum f_op)(gm_fuzz_take(in, 1) % F_NOPS)) {
	case F_CONVERT:    f_convert(m, in); break;
	case F_PIN:        f_pin(m, in, 1); break;
	case F_UNPIN:      f_pin(m, in, 0); break;
	case F_KMAP:       f_kmap(m, in); break;
	case F_KUNMAP:     f_kunmap(m, in); break;
	case F_KMAP_WRITE: f_write(m, in, 1); break;
	case F_HOST_WRITE: f_write(m, in, 0); break;
	case F_CHECK:      f_check_page(m, gm_fuzz_take(in, 2) % F_NPAGES); break;
	case F_DISCARD:    f_discard(m, in); break;
	case F_INVALID:    f_invalid(m, in); break;
	case F_QUERY:      f_query(m, in); break;
	case F_NOPS:       break;
	}
}

void gm_fuzz_api(const uint8_t *data, size_t size)
{
	static struct f_model m;    /* 20 KiB: not on a fuzzer's stack */
	struct gm_fuzz_in in = { data, size };
	struct gmem_config cfg = { .size = F_SIZE, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1 };
	int ret;

	memset(&m, 0, sizeof(m));
	cfg.flags = (unsigned)gm_fuzz_take(&in, 1) & (GMEM_F_INIT_SHARED | GMEM_F_NO_PIN);
	m.flags = cfg.flags;
	ret = gmem_open(&cfg, &m.g);
	GM_FUZZ_CHECK(ret == 0, "gmem_open: %d (%s)", ret, gmem_last_error());
	memset(m.st, !!(cfg.flags & GMEM_F_INIT_SHARED), sizeof(m.st));
	for (m.op = 0; m.op < F_MAX_OPS && !gm_fuzz_done(&in); m.op++) {
		f_step(&m, &in);
		f_compare(&m);
	}
	for (uint64_t p = 0; p < F_NPAGES; p++)
		if (m.touched[p])
			f_check_page(&m, p);
	while (m.nheld)
		gmem_kunmap(m.g, m.held[--m.nheld].p);
	gmem_close(m.g);
}

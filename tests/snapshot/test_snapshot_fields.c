// SPDX-License-Identifier: MIT
/*
 * test_snapshot_fields.c - suite "snapshot_fields": every field of the
 * format (docs/snapshot-format.md) made wrong in a valid snapshot, with
 * every checksum, the END totals and the footer recomputed (snap_edit.h),
 * so that the check behind the checksum is the one that must refuse it.
 *
 * Each case: verify and restore both refuse with the errno given and a
 * message naming the file and the field; the restore returns no memory
 * and leaves no descriptor open. Controls first: the editor's round trip
 * is byte-identical and accepted, so a refusal below is the edit's doing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "snapshot/snap.h"
#include "snap_edit.h"
#include "snap_th.h"

#define MEM (4 * TH_MIB)
enum { RAW, ZST };              /* the base file: plain, or zstd chunks */

/* Mixed states; a compressible page, three random ones, the last page. */
static struct gmem *base_memory(void)
{
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, MEM, 0);
	uint8_t *kv = gmem_kvm_view(g);
	uint64_t x = 0x2545f4914f6cdd1dull;

	memset(kv + 3 * TH_PAGE, 0x5a, TH_PAGE);
	for (unsigned i = 0; i < 3 * TH_PAGE; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		kv[100 * TH_PAGE + i] = (uint8_t)x;
	}
	memset(kv + MEM - TH_PAGE, 0xc3, TH_PAGE);
	cr_assert_eq(gmem_convert(g, 256 * TH_PAGE, 256 * TH_PAGE, GMEM_SHARED, NULL), 0);
	cr_assert_eq(gmem_convert(g, 700 * TH_PAGE, TH_PAGE, GMEM_SHARED, NULL), 0);
	return g;
}

struct field_env {
	const char *dir, *good, *bad;
	struct gmem *g;
};

static void env_open(struct field_env *v, unsigned base)
{
	v->dir = snap_tmpdir();
	v->good = snap_file(v->dir, "good.snap", 0);
	v->bad = snap_file(v->dir, "bad.snap", 1);
	v->g = base_memory();
	cr_assert_eq(gmem_snapshot_save(v->g, v->good, base == ZST ? GMEM_SNAP_COMPRESS_ALL : 0),
		     0, "save: %s", gmem_last_error());
}

static void env_close(struct field_env *v)
{
	gmem_close(v->g);
	snap_rmdir(v->dir);
}

/* Set by an edit whose damage only decompression shows: a lazy restore
 * accepts the file, and the chunk at lazy_gpa fails when it loads. */
static bool lazy_at_load;
static uint64_t lazy_gpa;

/* The damaged chunk never becomes visible: its load fails, the failure
 * names the chunk, and its pages cannot be reached (-EIO, as documented in
 * gmem.h for lazy restore). */
static void expect_poisoned(struct gmem *r, int ret, int err)
{
	void *p;

	cr_assert_eq(ret, 0, "lazy restore: %d (%s)", ret, gmem_last_error());
	(void)err;      /* the load's own error; what callers see is -EIO */
	ret = gmem_snapshot_lazy_wait(r);
	cr_assert_eq(ret, -EIO, "lazy wait: %d, want -EIO (%s)", ret, gmem_last_error());
	cr_assert(strstr(gmem_last_error(), "does not decode") &&
		  strstr(gmem_last_error(), "pages poisoned"),
		  "lazy wait message '%s' names no damaged frame", gmem_last_error());
	p = gmem_kmap(r, lazy_gpa);
	cr_assert_null(p, "kmap of the damaged chunk at %#llx succeeded",
		       (unsigned long long)lazy_gpa);
	TH_EQ(errno, EIO);
	gmem_close(r);
}

static void expect_refused(const char *path, int err, const char *want)
{
	struct gmem_config cfg = { .size = MEM, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1 };
	struct gmem_snapshot_opts lazy = { .flags = GMEM_SNAP_LAZY };
	struct gmem_snapshot_info in;
	unsigned fds = snap_open_fds();
	struct gmem *r = NULL;
	int ret;

	ret = gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, NULL, &in);
	cr_assert_eq(ret, err, "verify: %d, want %d (%s)", ret, err, gmem_last_error());
	cr_assert(strstr(gmem_last_error(), path), "verify message '%s' names no file",
		  gmem_last_error());
	cr_assert(strstr(gmem_last_error(), want), "verify message '%s' lacks '%s'",
		  gmem_last_error(), want);
	ret = gmem_snapshot_restore(path, &cfg, &r);
	cr_assert_eq(ret, err, "restore: %d, want %d (%s)", ret, err, gmem_last_error());
	cr_assert_null(r, "restore returned a memory");
	cr_assert(strstr(gmem_last_error(), want), "restore message '%s' lacks '%s'",
		  gmem_last_error(), want);
	/* Lazy restore checks the whole file before it returns, too, short
	 * of decompressing it: a forged body is found as its chunk loads. */
	ret = gmem_snapshot_restore_ex(path, &cfg, &lazy, &r);
	if (lazy_at_load)
		expect_poisoned(r, ret, err);
	else {
		cr_assert_eq(ret, err, "lazy restore: %d, want %d (%s)", ret, err,
			     gmem_last_error());
		cr_assert_null(r, "lazy restore returned a memory");
		cr_assert(strstr(gmem_last_error(), want), "lazy restore message '%s' lacks '%s'",
			  gmem_last_error(), want);
	}
	TH_EQ(snap_open_fds(), fds);
}

static void run_case(unsigned base, void (*edit)(struct snap_ed *), unsigned fix, int err,
		     const char *want)
{
	struct field_env v;
	struct snap_ed e;

	env_open(&v, base);
	snap_ed_load(&e, v.good);
	edit(&e);
	snap_ed_save(&e, v.bad, fix);
	snap_ed_free(&e);
	expect_refused(v.bad, err, want);
	env_close(&v);
}

/* One test per damaged field: FIELD(name, base, fix, errno, message). */
#define FIELD(name, base, fix, err, want)                                       \
	static void edit_##name(struct snap_ed *e);                             \
	Test(snapshot_fields, name)                                             \
	{                                                                       \
		run_case(base, edit_##name, fix, err, want);                    \
	}                                                                       \
	static void edit_##name(struct snap_ed *e)

#define ALL SNAP_ED_FIX_ALL

/* ---- controls ------------------------------------------------------------ */

static void roundtrip(unsigned base)
{
	struct field_env v;
	struct snap_ed e;
	uint8_t *a, *b;
	size_t la, lb;
	struct gmem *r = NULL;

	env_open(&v, base);
	snap_ed_load(&e, v.good);
	snap_ed_save(&e, v.bad, ALL);
	snap_ed_free(&e);
	a = snap_slurp(v.good, &la);
	b = snap_slurp(v.bad, &lb);
	TH_EQ(lb, la);
	cr_assert(!memcmp(a, b, la), "the editor's round trip changed bytes");
	cr_assert_eq(gmem_snapshot_restore(v.bad, NULL, &r), 0, "%s", gmem_last_error());
	snap_expect_same(v.g, r);
	gmem_close(r);
	free(a);
	free(b);
	env_close(&v);
}

Test(snapshot_fields, editor_roundtrip_raw)
{
	roundtrip(RAW);
}

Test(snapshot_fields, editor_roundtrip_zstd)
{
	roundtrip(ZST);
}

/* A later minor version is read by this one (the format's promise). */
Test(snapshot_fields, header_minor_is_accepted)
{
	struct field_env v;
	struct snap_ed e;
	struct gmem *r = NULL;

	env_open(&v, RAW);
	snap_ed_load(&e, v.good);
	e.h.minor = 7;
	snap_ed_save(&e, v.bad, ALL);
	snap_ed_free(&e);
	cr_assert_eq(gmem_snapshot_restore(v.bad, NULL, &r), 0, "%s", gmem_last_error());
	snap_expect_same(v.g, r);
	gmem_close(r);
	env_close(&v);
}

/* Checksums are not signatures: a DATA chunk dropped from a file whose
 * totals are rewritten to match is a valid file, its pages holes. What
 * stops that is a sealed snapshot (a key); without one the format can
 * only promise that an accident is caught. This pins the limit down. */
Test(snapshot_fields, data_dropped_consistently_is_a_valid_file)
{
	struct field_env v;
	struct snap_ed e;
	struct gmem *r = NULL;
	uint8_t zero[64] = { 0 };

	env_open(&v, RAW);
	snap_ed_load(&e, v.good);
	snap_ed_remove(&e, snap_ed_find(&e, GM_SNAP_DATA, 0, 0));
	snap_ed_save(&e, v.bad, ALL);
	snap_ed_free(&e);
	cr_assert_eq(gmem_snapshot_restore(v.bad, NULL, &r), 0, "%s", gmem_last_error());
	cr_assert(!memcmp(gmem_kvm_view(r) + 3 * TH_PAGE, zero, sizeof(zero)),
		  "page 3 should read zero");
	gmem_close(r);
	env_close(&v);
}

/* ---- file header ---------------------------------------------------------- */

FIELD(header_magic, RAW, ALL, -EINVAL, "bad magic") { e->h.magic[0] = 'X'; }
FIELD(header_major, RAW, ALL, -EINVAL, "major at offset 8") { e->h.major = 3; }
/* A version 1 file relabelled 2 is read as 2: its header is too short. */
FIELD(header_major_v1_as_v2, RAW, ALL, -EINVAL, "header_size at offset 12") { e->h.major = 2; }
FIELD(header_hash_not_fixed, RAW, ALL & ~SNAP_ED_FIX_HASH, -EINVAL, "checksum mismatch")
{
	e->h.reserved1 = 1;
}
FIELD(header_size, RAW, ALL, -EINVAL, "header_size at offset 12") { e->h.header_size = 65; }
FIELD(header_page_size, RAW, ALL, -EINVAL, "page_size at offset 16") { e->h.page_size = 8192; }
FIELD(header_flags_unknown, RAW, ALL, -EINVAL, "flags at offset 20") { e->h.flags |= 1u << 9; }
FIELD(header_mem_size_zero, RAW, ALL, -EINVAL, "mem_size at offset 24") { e->h.mem_size = 0; }
FIELD(header_mem_size_unaligned, RAW, ALL, -EINVAL, "mem_size at offset 24")
{
	e->h.mem_size += TH_PAGE;
}
/* Smaller than the runs and data say: the runs overrun it. */
FIELD(header_mem_size_smaller, RAW, ALL, -EINVAL, "overruns the memory")
{
	e->h.mem_size = 2 * TH_MIB;
}
FIELD(header_backend_auto, RAW, ALL, -EINVAL, "backend at offset 32") { e->h.backend = 0; }
FIELD(header_backend_unknown, RAW, ALL, -EINVAL, "backend at offset 32") { e->h.backend = 3; }
FIELD(header_mem_flags_unknown, RAW, ALL, -EINVAL, "mem_flags at offset 36")
{
	e->h.mem_flags |= 1u << 30;
}
FIELD(header_chunk_max_zero, RAW, ALL, -EINVAL, "chunk_max at offset 40") { e->h.chunk_max = 0; }
FIELD(header_chunk_max_too_big, RAW, ALL, -EINVAL, "chunk_max at offset 40")
{
	e->h.chunk_max = 2u << 20;
}
FIELD(header_chunk_max_unaligned, RAW, ALL, -EINVAL, "chunk_max at offset 40")
{
	e->h.chunk_max = 4097;
}
/* Valid by itself, but the three-page chunk exceeds it. */
FIELD(header_chunk_max_below_a_chunk, RAW, ALL, -EINVAL, "raw_len 12288")
{
	e->h.chunk_max = 4096;
}
FIELD(header_reserved0, RAW, ALL, -EINVAL, "reserved0 at offset 44") { e->h.reserved0 = 1; }
FIELD(header_reserved1, RAW, ALL, -EINVAL, "reserved1 at offset 48") { e->h.reserved1 = 1; }

/* A valid file for a memory larger than the target given. */
Test(snapshot_fields, header_mem_size_above_target)
{
	struct gmem_config cfg = { .size = MEM, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1 };
	struct field_env v;
	struct snap_ed e;
	struct gmem *r = NULL;
	uint64_t run;
	size_t i;

	env_open(&v, RAW);
	snap_ed_load(&e, v.good);
	e.h.mem_size = 2 * MEM;
	i = snap_ed_find(&e, GM_SNAP_STATES, 0, 0);
	run = gm_snap_run(MEM / TH_PAGE, GMEM_PRIVATE);
	{
		size_t n = e.ch[i].c.stored_len;
		uint8_t *p = malloc(n + 8);

		memcpy(p, e.ch[i].p, n);
		memcpy(p + n, &run, 8);
		snap_ed_set_payload(&e, i, p, n + 8);
		e.ch[i].c.raw_len = (uint32_t)(n + 8);
		free(p);
	}
	snap_ed_save(&e, v.bad, ALL);
	snap_ed_free(&e);
	TH_EQ(gmem_snapshot_restore(v.bad, &cfg, &r), -EFBIG);
	cr_assert_null(r);
	cr_assert(strstr(gmem_last_error(), "the target has"), "%s", gmem_last_error());
	env_close(&v);
}

/* ---- STATES chunks -------------------------------------------------------- */

static size_t states(struct snap_ed *e)
{
	return snap_ed_find(e, GM_SNAP_STATES, 0, 0);
}

static uint64_t *runs_of(struct snap_ed *e, size_t i, size_t *n)
{
	*n = e->ch[i].c.stored_len / 8;
	return (uint64_t *)e->ch[i].p;
}

/* Set the runs of STATES chunk @i (raw_len and stored_len follow). */
static void set_runs(struct snap_ed *e, size_t i, const uint64_t *runs, size_t n)
{
	snap_ed_set_payload(e, i, runs, n * 8);
	e->ch[i].c.raw_len = (uint32_t)(n * 8);
}

FIELD(states_flags, RAW, ALL, -EINVAL, "flags 0x1: a states chunk has none")
{
	e->ch[states(e)].c.flags = 1;
}
FIELD(states_raw_len_zero, RAW, ALL, -EINVAL, "raw_len 0")
{
	set_runs(e, states(e), NULL, 0);
}
FIELD(states_raw_len_not_runs, RAW, ALL, -EINVAL, "raw_len 12")
{
	size_t i = states(e), n;
	uint8_t p[12] = { 0 };

	(void)runs_of(e, i, &n);
	snap_ed_set_payload(e, i, p, sizeof(p));
	e->ch[i].c.raw_len = sizeof(p);
}
/* 600 runs of one page each, then the rest: 4808 bytes > chunk_max 4096. */
FIELD(states_raw_len_above_chunk_max, RAW, ALL, -EINVAL, "raw_len 4808")
{
	uint64_t runs[601];

	for (unsigned k = 0; k < 600; k++)
		runs[k] = gm_snap_run(1, k & 1);
	runs[600] = gm_snap_run(MEM / TH_PAGE - 600, GMEM_PRIVATE);
	set_runs(e, states(e), runs, 601);
	e->h.chunk_max = 4096;
}
FIELD(states_stored_len_differs, RAW, ALL, -EINVAL, "stored_len")
{
	size_t i = states(e), n;
	uint64_t *r = runs_of(e, i, &n), more[64];

	cr_assert_lt(n, 63);
	memcpy(more, r, n * 8);
	more[n] = gm_snap_run(1, 0);
	snap_ed_set_payload(e, i, more, (n + 1) * 8);  /* raw_len kept */
}
FIELD(states_first_wrong, RAW, ALL, -EINVAL, "first 1: the runs before end at page 0")
{
	e->ch[states(e)].c.first = 1;
}
FIELD(states_run_of_no_pages, RAW, ALL, -EINVAL, "has no pages")
{
	size_t i = states(e), n;
	uint64_t *r = runs_of(e, i, &n), more[64];

	memcpy(more + 1, r, n * 8);
	more[0] = gm_snap_run(0, 1);
	set_runs(e, i, more, n + 1);
}
FIELD(states_run_overruns, RAW, ALL, -EINVAL, "overruns the memory")
{
	size_t n;
	uint64_t *r = runs_of(e, states(e), &n);

	r[n - 1] += 2;          /* one page more */
}
FIELD(states_run_beyond_any_memory, RAW, ALL, -EINVAL, "overruns the memory")
{
	size_t n;
	uint64_t *r = runs_of(e, states(e), &n);

	r[0] = UINT64_MAX;      /* 2^63 - 1 shared pages */
}
FIELD(states_runs_short, RAW, ALL, -EINVAL, "page states cover 1023 of 1024 pages")
{
	size_t n;
	uint64_t *r = runs_of(e, states(e), &n);

	r[n - 1] -= 2;
}
FIELD(states_missing, RAW, ALL, -EINVAL, "page states cover 0 of 1024 pages")
{
	snap_ed_remove(e, states(e));
}
FIELD(states_duplicated, RAW, ALL, -EINVAL, "first 0: the runs before end at page 1024")
{
	snap_ed_dup(e, states(e), states(e) + 1);
}
FIELD(states_after_data, RAW, ALL, -EINVAL, "states after data")
{
	snap_ed_dup(e, states(e), e->n - 1);
}

/* ---- DATA chunks ---------------------------------------------------------- */

static size_t data(struct snap_ed *e, unsigned nth)
{
	return snap_ed_find(e, GM_SNAP_DATA, 0, nth);
}

FIELD(data_flags_unknown, RAW, ALL, -EINVAL, "flags 0x2: unknown bits")
{
	e->ch[data(e, 0)].c.flags |= 2;
}
/* A zstd chunk in a file that says it holds none. */
FIELD(data_zstd_in_plain_file, RAW, ALL, -EINVAL, "header says it is not compressed")
{
	size_t i = data(e, 0);
	size_t bound = ZSTD_compressBound(e->ch[i].c.raw_len), z;
	void *dst = malloc(bound);

	z = ZSTD_compress(dst, bound, e->ch[i].p, e->ch[i].c.raw_len, 1);
	cr_assert(!ZSTD_isError(z));
	snap_ed_set_payload(e, i, dst, z);
	e->ch[i].c.flags = GM_SNAP_CHUNK_ZSTD;
	free(dst);
}
FIELD(data_raw_len_zero, RAW, ALL, -EINVAL, "raw_len 0")
{
	size_t i = data(e, 0);

	e->ch[i].c.raw_len = 0;
	snap_ed_set_payload(e, i, NULL, 0);
}
FIELD(data_raw_len_unaligned, RAW, ALL, -EINVAL, "raw_len 4095")
{
	size_t i = data(e, 0);

	e->ch[i].c.raw_len = 4095;
	e->ch[i].c.stored_len = 4095;   /* the payload's last byte is dropped */
}
FIELD(data_first_unaligned, RAW, ALL, -EINVAL, "not page aligned")
{
	e->ch[data(e, 0)].c.first += 1;
}
FIELD(data_overlaps, RAW, ALL, -EINVAL, "out of order, the data before ends at")
{
	e->ch[data(e, 1)].c.first = e->ch[data(e, 0)].c.first;
}
FIELD(data_past_the_end, RAW, ALL, -EINVAL, "past the end of the memory")
{
	size_t i = data(e, 2);

	e->ch[i].c.first = MEM;
}
/* first + raw_len wraps around 2^64: must not look like a small address. */
FIELD(data_range_wraps, RAW, ALL, -EINVAL, "past the end of the memory")
{
	e->ch[data(e, 2)].c.first = UINT64_MAX - TH_PAGE + 1;
}
FIELD(data_stored_len_differs, RAW, ALL, -EINVAL, "stored_len 4100: must equal raw_len 4096")
{
	size_t i = data(e, 0);
	uint8_t *p = calloc(1, 4100);

	memcpy(p, e->ch[i].p, 4096);
	snap_ed_set_payload(e, i, p, 4100);
	free(p);
}
FIELD(data_swapped, RAW, ALL, -EINVAL, "out of order")
{
	snap_ed_swap(e, data(e, 0), data(e, 1));
}
FIELD(data_duplicated, RAW, ALL, -EINVAL, "out of order")
{
	snap_ed_dup(e, data(e, 1), data(e, 1) + 1);
}
/* Dropped, and the totals not rewritten: the END chunk disagrees. */
FIELD(data_missing, RAW, SNAP_ED_FIX_HASH | SNAP_ED_FIX_FOOTER, -EINVAL,
      "chunks at payload offset 0 says")
{
	snap_ed_remove(e, data(e, 1));
}
FIELD(chunk_type_zero, RAW, ALL, -EINVAL, "unknown chunk type 0")
{
	e->ch[data(e, 0)].c.type = 0;
}
FIELD(chunk_type_unknown, RAW, ALL, -EINVAL, "unknown chunk type 9")
{
	e->ch[data(e, 1)].c.type = 9;
}

/* ---- zstd frames -------------------------------------------------------- */

static size_t zdata(struct snap_ed *e)
{
	return snap_ed_find(e, GM_SNAP_DATA, GM_SNAP_CHUNK_ZSTD, 0);
}

/* Chunk @i's payload: a zstd frame of @len bytes of a pattern. */
static void put_frame(struct snap_ed *e, size_t i, size_t len, size_t extra_frames)
{
	uint8_t *src = malloc(len), *dst;
	size_t bound = ZSTD_compressBound(len), z, at = 0;

	cr_assert_not_null(src);
	memset(src, 0x77, len);
	dst = malloc(bound * (1 + extra_frames));
	for (size_t f = 0; f <= extra_frames; f++) {
		z = ZSTD_compress(dst + at, bound, src, len, 1);
		cr_assert(!ZSTD_isError(z));
		at += z;
	}
	snap_ed_set_payload(e, i, dst, at);
	free(src);
	free(dst);
}

/* A small file that would expand past its chunk: refused from the frame
 * header, before anything is decompressed. */
FIELD(zstd_frame_larger_than_declared, ZST, ALL, -EINVAL, "zstd frame declares")
{
	size_t i = zdata(e);

	put_frame(e, i, (size_t)e->ch[i].c.raw_len * 64, 0);
}
FIELD(zstd_frame_smaller_than_declared, ZST, ALL, -EINVAL, "zstd frame declares")
{
	size_t i = zdata(e);

	put_frame(e, i, e->ch[i].c.raw_len / 2, 0);
}
FIELD(zstd_two_frames, ZST, ALL, -EINVAL, "zstd frame")
{
	size_t i = zdata(e);

	put_frame(e, i, e->ch[i].c.raw_len, 1);
}
FIELD(zstd_not_a_frame, ZST, ALL, -EINVAL, "zstd frame")
{
	uint8_t junk[100];

	memset(junk, 0xee, sizeof(junk));
	snap_ed_set_payload(e, zdata(e), junk, sizeof(junk));
}
/* A right header over a damaged body: found when decoding. */
FIELD(zstd_body_damaged, ZST, ALL, -EINVAL, "zstd frame")
{
	size_t i = zdata(e);

	put_frame(e, i, e->ch[i].c.raw_len, 0);
	e->ch[i].p[e->ch[i].c.stored_len - 5] ^= 0x5a;
	lazy_at_load = true;
	lazy_gpa = e->ch[i].c.first;
}
FIELD(zstd_stored_len_above_bound, ZST, ALL, -EINVAL, "more than zstd's bound")
{
	size_t i = zdata(e), n = ZSTD_compressBound(e->ch[i].c.raw_len) + 1;
	uint8_t *p = calloc(1, n);

	snap_ed_set_payload(e, i, p, n);
	free(p);
}

/* ---- END chunk and footer --------------------------------------------------- */

static struct snap_ed_chunk *end_chunk(struct snap_ed *e)
{
	return &e->ch[e->n - 1];
}

FIELD(end_flags, RAW, ALL, -EINVAL, "flags 0x1, first 0, raw_len 48") { end_chunk(e)->c.flags = 1; }
FIELD(end_first, RAW, ALL, -EINVAL, "first 5") { end_chunk(e)->c.first = 5; }
FIELD(end_raw_len, RAW, ALL, -EINVAL, "raw_len 49") { end_chunk(e)->c.raw_len = 49; }
FIELD(end_chunks_beyond_the_file, RAW, SNAP_ED_FIX_HASH | SNAP_ED_FIX_FOOTER, -EINVAL,
      "has room for")
{
	snap_ed_end(e)->chunks = 1ull << 60;
}

#define END_TOTAL(field, off)                                                   \
	FIELD(end_##field, RAW, SNAP_ED_FIX_HASH | SNAP_ED_FIX_FOOTER, -EINVAL, \
	      #field " at payload offset " #off " says")                         \
	{                                                                       \
		snap_ed_fix(e, SNAP_ED_FIX_END);                                \
		snap_ed_end(e)->field += 1;                                     \
	}

END_TOTAL(chunks, 0)
END_TOTAL(runs, 8)
END_TOTAL(shared_pages, 16)
END_TOTAL(data_chunks, 24)
END_TOTAL(populated, 32)
END_TOTAL(stored, 40)

/* An END chunk before the last one: the footer names the last. */
FIELD(end_not_last, RAW, ALL, -EINVAL, "an END chunk before the one the footer names")
{
	snap_ed_dup(e, e->n - 1, e->n - 1);
}
FIELD(footer_end_offset, RAW, SNAP_ED_FIX_HASH | SNAP_ED_FIX_END, -EINVAL, "END offset")
{
	e->f.end_offset -= 8;
}
FIELD(footer_magic, RAW, ALL, -EINVAL, "no footer at offset") { e->f.magic[7] ^= 1; }

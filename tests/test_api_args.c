// SPDX-License-Identifier: MIT
/*
 * test_api_args.c - suite "api_args": every public call given arguments a
 * caller may get wrong (NULL, unaligned, out of range, gpa + len wrapping,
 * unknown flags, values outside an enum) refuses with the errno its man
 * page lists and changes nothing: page states, pins, temporary mappings,
 * counters, page contents and descriptors are the same before and after.
 *
 * The table is checked against the linker version script: a call exported
 * without a row here fails the suite, so a new call cannot skip it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <xxhash.h>

#include "helpers.h"
#include "snapshot/snap.h"

#define SIZE  (4 * TH_MIB)
#define P     TH_PAGE
#define WRAP  (UINT64_MAX - P + 1)      /* aligned; gpa + WRAP wraps past 0 */

struct fx {
	struct gmem *g;
	struct gmem_io *io;
	char dir[64], snap[96], missing[96];
	uint8_t buf[2 * P];
	struct gmem_io_target mem_target;
	struct gmem_io_seg seg;
	struct gmem_io_req req;
};

/* A request that would be served as it stands: each row spoils one field. */
static struct gmem_io_req *req(struct fx *f)
{
	f->mem_target = (struct gmem_io_target){ .kind = GMEM_IO_MEMORY, .fd = -1,
						 .direct_fd = -1, .mem = f->buf,
						 .mem_len = sizeof(f->buf) };
	f->seg = (struct gmem_io_seg){ .gpa = 0, .len = P };
	f->req = (struct gmem_io_req){ .dir = GMEM_IO_READ, .path = GMEM_IO_BOUNCE, .nsegs = 1,
				       .segs = &f->seg, .target = &f->mem_target };
	return &f->req;
}

static struct gmem_io_req *req_seg(struct fx *f, uint64_t gpa, uint64_t len)
{
	req(f);
	f->seg = (struct gmem_io_seg){ .gpa = gpa, .len = len };
	return &f->req;
}

/* Results of calls that return a pointer, a string or nothing, as errnos. */
#define PTR(e)  ({ errno = 0; void *p_ = (void *)(e); p_ ? 0 : -(int64_t)errno; })
#define STR(e)  ({ const char *s_ = (e); s_ && s_[0] ? 0 : -1; })
#define STR0(e) ({ const char *s_ = (e); s_ ? 0 : -1; })   /* "" allowed */
#define VOID(e) ((e), 0)

/* Open-coded configs: each a valid one with one field spoiled (a later
 * designated initializer overriding the default is the point). */
#pragma GCC diagnostic ignored "-Woverride-init"
#define CFG(...) (&(struct gmem_config){ .size = 2 * TH_MIB, .backend = GMEM_BACKEND_MEMFD, \
					 .vm_fd = -1, __VA_ARGS__ })
#define IOCFG(...) (&(struct gmem_io_config){ __VA_ARGS__ })
#define OPTS(...) (&(struct gmem_snapshot_opts){ __VA_ARGS__ })

static struct gmem *out_g;

static int th_live_pause_nop(void *ctx, int pause)
{
	(void)ctx;
	(void)pause;
	return 0;
}
static struct gmem_io *out_io;
static struct gmem_stats out_st;
static struct gmem_info out_info;
static struct gmem_snapshot_info out_si;
static struct gmem_snapshot_lazy_stats out_ls;
static struct gmem_io_stats out_ios;
static struct gmem_io_target out_t;

/* X(call, what is wrong, errno, expression). */
#define ROWS(X)                                                                          \
	X(gmem_open, "cfg NULL", -EINVAL, gmem_open(NULL, &out_g))                        \
	X(gmem_open, "out NULL", -EINVAL, gmem_open(CFG(), NULL))                         \
	X(gmem_open, "size 0", -EINVAL, gmem_open(CFG(.size = 0), &out_g))                \
	X(gmem_open, "more mappings than vm.max_map_count", -ENOMEM,                      \
	  gmem_open(CFG(.max_mappings = 1ull << 40), &out_g))                             \
	X(gmem_open, "size not 2 MiB aligned", -EINVAL,                                   \
	  gmem_open(CFG(.size = 2 * TH_MIB + P), &out_g))                                 \
	X(gmem_open, "size near 2^64", -EINVAL,                                           \
	  gmem_open(CFG(.size = UINT64_MAX - 2 * TH_MIB + 1), &out_g))                    \
	X(gmem_open, "unknown flag", -EINVAL, gmem_open(CFG(.flags = 1u << 31), &out_g))  \
	X(gmem_open, "unknown backend", -EINVAL,                                          \
	  gmem_open(CFG(.backend = (enum gmem_backend)7), &out_g))                        \
	X(gmem_close, "NULL", 0, VOID(gmem_close(NULL)))                                  \
	X(gmem_convert, "NULL memory", -EINVAL, gmem_convert(NULL, 0, P, GMEM_SHARED, NULL)) \
	X(gmem_convert, "len 0", -EINVAL, gmem_convert(f->g, 0, 0, GMEM_SHARED, NULL))    \
	X(gmem_convert, "gpa unaligned", -EINVAL, gmem_convert(f->g, 1, P, GMEM_SHARED, NULL)) \
	X(gmem_convert, "len unaligned", -EINVAL,                                         \
	  gmem_convert(f->g, 0, P + 1, GMEM_SHARED, NULL))                                \
	X(gmem_convert, "gpa past the end", -EINVAL,                                      \
	  gmem_convert(f->g, SIZE, P, GMEM_SHARED, NULL))                                 \
	X(gmem_convert, "range past the end", -EINVAL,                                    \
	  gmem_convert(f->g, SIZE - P, 2 * P, GMEM_SHARED, NULL))                         \
	X(gmem_convert, "gpa + len wraps", -EINVAL,                                       \
	  gmem_convert(f->g, 2 * P, WRAP, GMEM_SHARED, NULL))                             \
	X(gmem_convert, "unknown state", -EINVAL,                                         \
	  gmem_convert(f->g, 0, P, (enum gmem_state)2, NULL))                             \
	X(gmem_convert, "negative state", -EINVAL,                                        \
	  gmem_convert(f->g, 0, P, (enum gmem_state)-1, NULL))                            \
	X(gmem_state, "NULL memory", -EINVAL, gmem_state(NULL, 0))                        \
	X(gmem_state, "gpa past the end", -EINVAL, gmem_state(f->g, SIZE))                \
	X(gmem_state, "gpa 2^64 - 1", -EINVAL, gmem_state(f->g, UINT64_MAX))              \
	X(gmem_host, "NULL memory", -EINVAL, PTR(gmem_host(NULL, 0)))                     \
	X(gmem_host, "gpa past the end", -EINVAL, PTR(gmem_host(f->g, SIZE)))             \
	X(gmem_pin, "NULL memory", -EINVAL, gmem_pin(NULL, 0, P))                         \
	X(gmem_pin, "len 0", -EINVAL, gmem_pin(f->g, 0, 0))                               \
	X(gmem_pin, "gpa unaligned", -EINVAL, gmem_pin(f->g, 1, P))                       \
	X(gmem_pin, "range past the end", -EINVAL, gmem_pin(f->g, SIZE - P, 2 * P))       \
	X(gmem_pin, "gpa + len wraps", -EINVAL, gmem_pin(f->g, P, WRAP))                  \
	X(gmem_pin, "a private page", -EPERM, gmem_pin(f->g, 3 * TH_MIB, P))              \
	X(gmem_unpin, "NULL memory", -EINVAL, gmem_unpin(NULL, 0, P))                     \
	X(gmem_unpin, "len 0", -EINVAL, gmem_unpin(f->g, 0, 0))                           \
	X(gmem_unpin, "gpa + len wraps", -EINVAL, gmem_unpin(f->g, P, WRAP))              \
	X(gmem_unpin, "a page not pinned", -EINVAL, gmem_unpin(f->g, 8 * P, P))           \
	X(gmem_unpin, "pinned and unpinned pages", -EINVAL, gmem_unpin(f->g, 4 * P, 2 * P)) \
	X(gmem_kmap, "NULL memory", -EINVAL, PTR(gmem_kmap(NULL, 0)))                     \
	X(gmem_kmap, "gpa past the end", -EINVAL, PTR(gmem_kmap(f->g, SIZE)))             \
	X(gmem_kunmap, "NULL memory", 0, VOID(gmem_kunmap(NULL, f->buf)))                 \
	X(gmem_kunmap, "NULL address", 0, VOID(gmem_kunmap(f->g, NULL)))                  \
	X(gmem_kunmap, "not a temporary mapping", 0, VOID(gmem_kunmap(f->g, f->buf)))     \
	X(gmem_kunmap, "the host view", 0, VOID(gmem_kunmap(f->g, gmem_host(f->g, 0))))   \
	X(gmem_discard, "NULL memory", -EINVAL, gmem_discard(NULL, 0, P))                 \
	X(gmem_discard, "len 0", -EINVAL, gmem_discard(f->g, 0, 0))                       \
	X(gmem_discard, "len unaligned", -EINVAL, gmem_discard(f->g, 0, 100))             \
	X(gmem_discard, "range past the end", -EINVAL, gmem_discard(f->g, SIZE - P, 2 * P)) \
	X(gmem_discard, "gpa + len wraps", -EINVAL, gmem_discard(f->g, P, WRAP))          \
	X(gmem_discard, "a pinned page", -EBUSY, gmem_discard(f->g, 4 * P, P))            \
	X(gmem_stats, "NULL memory", -EINVAL, gmem_stats(NULL, &out_st))                  \
	X(gmem_stats, "NULL stats", -EINVAL, gmem_stats(f->g, NULL))                      \
	X(gmem_strerror, "INT_MIN", 0, STR(gmem_strerror(INT_MIN)))                       \
	X(gmem_strerror, "an errno no call returns", 0, STR(gmem_strerror(-9999)))        \
	X(gmem_kvm_view, "NULL memory", -EINVAL, PTR(gmem_kvm_view(NULL)))                \
	X(gmem_info, "NULL memory", -EINVAL, gmem_info(NULL, &out_info))                  \
	X(gmem_info, "NULL info", -EINVAL, gmem_info(f->g, NULL))                         \
	X(gmem_probe, "NULL", -EINVAL, gmem_probe(NULL))                                  \
	X(gmem_backend_name, "outside the enum", 0,                                       \
	  STR(gmem_backend_name((enum gmem_backend)99)))                                  \
	X(gmem_huge_name, "outside the enum", 0, STR(gmem_huge_name((enum gmem_huge)-1))) \
	X(gmem_last_error, "no argument to get wrong", 0, STR0(gmem_last_error())) \
	X(gmem_dmap_assumptions, "no argument to get wrong", 0, STR(gmem_dmap_assumptions())) \
	X(gmem_snapshot_save, "NULL memory", -EINVAL, gmem_snapshot_save(NULL, f->missing, 0)) \
	X(gmem_snapshot_save, "NULL path", -EINVAL, gmem_snapshot_save(f->g, NULL, 0))    \
	X(gmem_snapshot_save, "empty path", -EINVAL, gmem_snapshot_save(f->g, "", 0))     \
	X(gmem_snapshot_save, "unknown flag", -EINVAL,                                    \
	  gmem_snapshot_save(f->g, f->missing, 1u << 30))                                 \
	X(gmem_snapshot_save, "a restore flag", -EINVAL,                                  \
	  gmem_snapshot_save(f->g, f->missing, GMEM_SNAP_LAZY))                           \
	X(gmem_snapshot_save_ex, "reserved field set", -EINVAL,                           \
	  gmem_snapshot_save_ex(f->g, f->missing, OPTS(.reserved = { [0] = 1 })))         \
	X(gmem_snapshot_save_ex, "zstd level out of range", -EINVAL,                      \
	  gmem_snapshot_save_ex(f->g, f->missing, OPTS(.level = 1000)))                   \
	X(gmem_snapshot_save_ex, "NULL memory", -EINVAL,                                  \
	  gmem_snapshot_save_ex(NULL, f->missing, NULL))                                  \
	X(gmem_snapshot_restore, "NULL path", -EINVAL, gmem_snapshot_restore(NULL, NULL, &out_g)) \
	X(gmem_snapshot_restore, "NULL out", -EINVAL, gmem_snapshot_restore(f->snap, NULL, NULL)) \
	X(gmem_snapshot_restore, "no such file", -ENOENT,                                 \
	  gmem_snapshot_restore(f->missing, NULL, &out_g))                                \
	X(gmem_snapshot_restore, "invalid config", -EINVAL,                               \
	  gmem_snapshot_restore(f->snap, CFG(.size = SIZE, .flags = 1u << 31), &out_g))                 \
	X(gmem_snapshot_restore, "config smaller than the file", -EFBIG,                  \
	  gmem_snapshot_restore(f->snap, CFG(), &out_g))                                  \
	X(gmem_snapshot_restore_ex, "unknown flag", -EINVAL,                              \
	  gmem_snapshot_restore_ex(f->snap, NULL, OPTS(.flags = 1u << 30), &out_g))       \
	X(gmem_snapshot_restore_ex, "reserved field set", -EINVAL,                        \
	  gmem_snapshot_restore_ex(f->snap, NULL, OPTS(.reserved = { [0] = 1 }), &out_g)) \
	X(gmem_snapshot_save_ex, "live_pause without GMEM_SNAP_LIVE", -EINVAL,            \
	  gmem_snapshot_save_ex(f->g, f->missing, OPTS(.live_pause = th_live_pause_nop)))  \
	X(gmem_snapshot_restore_ex, "live_pause on a restore", -EINVAL,                   \
	  gmem_snapshot_restore_ex(f->snap, NULL, OPTS(.live_pause = th_live_pause_nop), &out_g)) \
	X(gmem_snapshot_inspect, "NULL path", -EINVAL, gmem_snapshot_inspect(NULL, 0, NULL, &out_si)) \
	X(gmem_snapshot_inspect, "NULL info", -EINVAL, gmem_snapshot_inspect(f->snap, 0, NULL, NULL)) \
	X(gmem_snapshot_inspect, "unknown flag", -EINVAL,                                 \
	  gmem_snapshot_inspect(f->snap, 1u << 7, NULL, &out_si))                         \
	X(gmem_snapshot_lazy_stats, "NULL memory", -EINVAL, gmem_snapshot_lazy_stats(NULL, &out_ls)) \
	X(gmem_snapshot_lazy_stats, "NULL stats", -EINVAL, gmem_snapshot_lazy_stats(f->g, NULL)) \
	X(gmem_snapshot_lazy_wait, "NULL memory", -EINVAL, gmem_snapshot_lazy_wait(NULL)) \
	X(gmem_io_create, "NULL memory", -EINVAL, gmem_io_create(NULL, NULL, &out_io))    \
	X(gmem_io_create, "NULL out", -EINVAL, gmem_io_create(f->g, NULL, NULL))          \
	X(gmem_io_create, "slot size not a power of two", -EINVAL,                        \
	  gmem_io_create(f->g, IOCFG(.slot_size = 3 * P), &out_io))                       \
	X(gmem_io_create, "slot size above 4 MiB", -EINVAL,                               \
	  gmem_io_create(f->g, IOCFG(.slot_size = 8 * TH_MIB), &out_io))                  \
	X(gmem_io_create, "pool not a multiple of the slot", -EINVAL,                     \
	  gmem_io_create(f->g, IOCFG(.pool_size = 65 * 1024), &out_io))                   \
	X(gmem_io_create, "unknown flag", -EINVAL,                                        \
	  gmem_io_create(f->g, IOCFG(.flags = 1u << 20), &out_io))                        \
	X(gmem_io_destroy, "NULL", -EINVAL, gmem_io_destroy(NULL))                         \
	X(gmem_harden_process, "unknown flag", -EINVAL, gmem_harden_process(1))           \
	X(gmem_convert_notify, "NULL memory", -EINVAL, gmem_convert_notify(NULL, NULL, NULL)) \
	X(gmem_io_rw, "NULL context", -EINVAL, gmem_io_rw(NULL, req(f)))                  \
	X(gmem_io_rw, "NULL request", -EINVAL, gmem_io_rw(f->io, NULL))                   \
	X(gmem_io_rw, "no segments", -EINVAL, gmem_io_rw(f->io, (req(f)->nsegs = 0, &f->req))) \
	X(gmem_io_rw, "NULL segments", -EINVAL, gmem_io_rw(f->io, (req(f)->segs = NULL, &f->req))) \
	X(gmem_io_rw, "empty segment", -EINVAL, gmem_io_rw(f->io, req_seg(f, 0, 0)))      \
	X(gmem_io_rw, "segment past the end", -EINVAL,                                    \
	  gmem_io_rw(f->io, req_seg(f, SIZE - 10, 20)))                                   \
	X(gmem_io_rw, "segment gpa + len wraps", -EINVAL,                                 \
	  gmem_io_rw(f->io, req_seg(f, 16, UINT64_MAX - 8)))                              \
	X(gmem_io_rw, "unknown direction", -EINVAL,                                       \
	  gmem_io_rw(f->io, (req(f)->dir = (enum gmem_io_dir)5, &f->req)))                \
	X(gmem_io_rw, "unknown path", -EINVAL,                                            \
	  gmem_io_rw(f->io, (req(f)->path = (enum gmem_io_path)9, &f->req)))              \
	X(gmem_io_rw, "unknown flag", -EINVAL,                                            \
	  gmem_io_rw(f->io, (req(f)->flags = 1u << 9, &f->req)))                          \
	X(gmem_io_rw, "NULL target", -EINVAL, gmem_io_rw(f->io, (req(f)->target = NULL, &f->req))) \
	X(gmem_io_rw, "unknown target kind", -EINVAL,                                     \
	  gmem_io_rw(f->io, (req(f), f->mem_target.kind = (enum gmem_io_kind)9, &f->req))) \
	X(gmem_io_rw, "memory target NULL", -EINVAL,                                      \
	  gmem_io_rw(f->io, (req(f), f->mem_target.mem = NULL, &f->req)))                 \
	X(gmem_io_rw, "target offset + len wraps", -EINVAL,                               \
	  gmem_io_rw(f->io, (req(f)->off = UINT64_MAX - 10, &f->req)))                    \
	X(gmem_io_calibrate, "NULL", -EINVAL, gmem_io_calibrate(NULL))                    \
	X(gmem_io_choose, "NULL context", -EINVAL, gmem_io_choose(NULL, req(f)))          \
	X(gmem_io_choose, "NULL request", -EINVAL, gmem_io_choose(f->io, NULL))           \
	X(gmem_io_choose, "segment past the end", -EINVAL,                                \
	  gmem_io_choose(f->io, req_seg(f, SIZE, P)))                                     \
	X(gmem_io_stats, "NULL context", -EINVAL, gmem_io_stats(NULL, &out_ios))          \
	X(gmem_io_stats, "NULL stats", -EINVAL, gmem_io_stats(f->io, NULL))               \
	X(gmem_io_path_name, "outside the enum", 0,                                       \
	  STR(gmem_io_path_name((enum gmem_io_path)99)))                                  \
	X(gmem_io_target_file, "NULL target", -EINVAL, gmem_io_target_file(NULL, 0, -1))  \
	X(gmem_io_target_file, "fd -1", -EINVAL, gmem_io_target_file(&out_t, -1, -1))

struct row {
	const char *call, *what;
	int64_t want;
};

static const struct row rows[] = {
#define X(call, what, want, expr) { #call, what, want },
	ROWS(X)
#undef X
};

static int64_t row_run(size_t i, struct fx *f)
{
	size_t k = 0;

#define X(call, what, want, expr)                                                \
	if (i == k++)                                                           \
		return (int64_t)(expr);
	ROWS(X)
#undef X
	cr_assert_fail("row %zu", i);
	return 0;
}

/* What must not change: every page's state, the counters of the memory
 * and its contents (hashed through the KVM view), the open descriptors. */
struct print {
	uint8_t state[SIZE / P];
	struct gmem_stats st;
	uint64_t hash;
	unsigned fds;
};

static unsigned open_fds(void)
{
	unsigned n = 0;
	char p[64];

	for (int fd = 0; fd < 1024; fd++) {
		snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
		n += access(p, F_OK) == 0;
	}
	return n;
}

static void print_take(struct fx *f, struct print *p)
{
	for (uint64_t i = 0; i < SIZE / P; i++)
		p->state[i] = (uint8_t)gmem_state(f->g, i * P);
	cr_assert_eq(gmem_stats(f->g, &p->st), 0);
	p->hash = XXH3_64bits(gmem_kvm_view(f->g), SIZE);
	p->fds = open_fds();
}

static void print_same(const struct print *a, const struct print *b, const struct row *r)
{
	for (uint64_t i = 0; i < SIZE / P; i++)
		cr_assert_eq(a->state[i], b->state[i], "%s (%s): page %llu state %u -> %u", r->call,
			     r->what, (unsigned long long)i, a->state[i], b->state[i]);
#define SAME(fld)                                                                 \
	cr_assert_eq(a->st.fld, b->st.fld, "%s (%s): " #fld " %llu -> %llu", r->call,   \
		     r->what, (unsigned long long)a->st.fld, (unsigned long long)b->st.fld)
	SAME(shared_pages);
	SAME(pinned_pages);
	SAME(kmapped_pages);
	SAME(conversions);
	SAME(pages_converted);
	SAME(pins);
	SAME(kmaps);
	SAME(discards);
	SAME(view_mappings);
#undef SAME
	cr_assert_eq(a->hash, b->hash, "%s (%s): contents changed", r->call, r->what);
	cr_assert_eq(a->fds, b->fds, "%s (%s): %u descriptors open, were %u", r->call, r->what,
		     b->fds, a->fds);
}

static void fx_open(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	f->g = th_open(GMEM_BACKEND_MEMFD, SIZE, 0);
	memset(gmem_kvm_view(f->g), 0x42, 16 * P);
	cr_assert_eq(gmem_convert(f->g, 0, 2 * TH_MIB, GMEM_SHARED, NULL), 0);
	cr_assert_eq(gmem_pin(f->g, 4 * P, P), 0);
	cr_assert_eq(gmem_io_create(f->g, IOCFG(.flags = GMEM_IO_CTX_NO_CALIBRATE), &f->io), 0);
	snprintf(f->dir, sizeof(f->dir), "/tmp/gmem-args-XXXXXX");
	cr_assert_not_null(mkdtemp(f->dir));
	snprintf(f->snap, sizeof(f->snap), "%s/mem.snap", f->dir);
	snprintf(f->missing, sizeof(f->missing), "%s/none.snap", f->dir);
	cr_assert_eq(gmem_snapshot_save(f->g, f->snap, 0), 0, "%s", gmem_last_error());
}

static void fx_close(struct fx *f)
{
	gmem_io_destroy(f->io);
	gmem_unpin(f->g, 4 * P, P);
	gmem_close(f->g);
	unlink(f->snap);
	rmdir(f->dir);
}

Test(api_args, every_row_refuses_and_changes_nothing)
{
	static struct fx f;
	struct print before, after;

	fx_open(&f);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		int64_t ret;

		out_g = NULL;
		out_io = NULL;
		print_take(&f, &before);
		ret = row_run(i, &f);
		cr_expect_eq(ret, rows[i].want, "%s (%s): %lld, want %lld (%s)", rows[i].call,
			     rows[i].what, (long long)ret, (long long)rows[i].want,
			     gmem_last_error());
		cr_assert_null(out_g, "%s (%s) returned a memory", rows[i].call, rows[i].what);
		cr_assert_null(out_io, "%s (%s) returned a context", rows[i].call, rows[i].what);
		print_take(&f, &after);
		print_same(&before, &after, &rows[i]);
		cr_assert(access(f.missing, F_OK) != 0, "%s (%s) wrote a file", rows[i].call,
			  rows[i].what);
	}
	cr_log_info("%zu rows", sizeof(rows) / sizeof(rows[0]));
	fx_close(&f);
}

/* Every call the library exports (src/lib/libgmem.map) has a row. */
Test(api_args, every_exported_call_has_a_row)
{
	FILE *m = fopen(GMEM_LIBMAP, "r");
	char line[256], name[128];
	unsigned calls = 0;

	cr_assert_not_null(m, "%s: %s", GMEM_LIBMAP, strerror(errno));
	while (fgets(line, sizeof(line), m)) {
		bool found = false;

		if (sscanf(line, " %127[a-z0-9_];", name) != 1 || strncmp(name, "gmem_", 5))
			continue;
		calls++;
		for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]) && !found; i++)
			found = !strcmp(rows[i].call, name);
		cr_expect(found, "%s is exported but has no row in test_api_args.c", name);
	}
	fclose(m);
	cr_assert_gt(calls, 30, "only %u calls read from %s", calls, GMEM_LIBMAP);
}

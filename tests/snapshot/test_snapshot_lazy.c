// SPDX-License-Identifier: MIT
/*
 * test_snapshot_lazy.c - suite "snapshot_lazy": restore with GMEM_SNAP_LAZY.
 *
 * A lazy restore equals an eager one byte for byte and state for state;
 * with the background loader held (gm_lazy_hold), pages touched through the
 * KVM view or a registered host-view run are loaded by the fault thread,
 * and kmap windows, conversions to shared and discards load what they
 * cover first (the counters of gmem_snapshot_lazy_stats say who loaded
 * what); a file changed after the restore never exposes its data; closing
 * while loading leaks nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "snap_th.h"

#define LZ_SZ (8 * TH_MIB)

static struct gmem *lazy_restore(const char *path, uint64_t size)
{
	struct gmem_config cfg = { .size = size, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1 };
	struct gmem_snapshot_opts o = { .flags = GMEM_SNAP_LAZY };
	struct gmem *r = NULL;
	int ret = gmem_snapshot_restore_ex(path, &cfg, &o, &r);

	cr_assert_eq(ret, 0, "lazy restore %s: %d (%s): %s", path, ret, gmem_strerror(ret),
		     gmem_last_error());
	return r;
}

static struct gmem_snapshot_lazy_stats lazy_stats(struct gmem *g)
{
	struct gmem_snapshot_lazy_stats st;

	cr_assert_eq(gmem_snapshot_lazy_stats(g, &st), 0);
	return st;
}

static void lazy_round_trip(enum gmem_backend from, unsigned flags, uint64_t seed)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = th_open(from, 32 * TH_MIB, 0), *eager, *lazy;
	struct gmem_snapshot_lazy_stats st;
	int ret;

	snap_randomize(g, seed, 30);
	ret = gmem_snapshot_save(g, path, flags);
	cr_assert_eq(ret, 0, "save: %d (%s)", ret, gmem_last_error());
	ret = gmem_snapshot_restore(path, NULL, &eager);
	cr_assert_eq(ret, 0, "eager restore: %d (%s)", ret, gmem_last_error());
	lazy = lazy_restore(path, 32 * TH_MIB);
	/* Read everything at once, racing the loader, then once it is done. */
	snap_expect_same(eager, lazy);
	TH_EQ(gmem_snapshot_lazy_wait(lazy), 0);
	st = lazy_stats(lazy);
	TH_EQ(st.chunks_loaded, st.chunks);
	TH_EQ(st.by_fault + st.by_access + st.by_loader, st.chunks);
	TH_EQ(st.loading, 0);
	TH_EQ(st.error, 0);
	TH_EQ(snap_populated_pages(lazy), snap_populated_pages(eager));
	TH_EQ(th_stats(lazy).shared_pages, th_stats(eager).shared_pages);
	TH_EQ(th_stats(lazy).view_mappings, th_stats(eager).view_mappings);
	snap_expect_same(g, lazy);
	gmem_close(lazy);
	gmem_close(eager);
	gmem_close(g);
	snap_rmdir(dir);
}

TH_TEST(snapshot_lazy, round_trip)
{
	lazy_round_trip(backend, 0, 11);
}

TH_TEST(snapshot_lazy, round_trip_compressed)
{
	lazy_round_trip(backend, GMEM_SNAP_COMPRESS_ALL, 12);
}

/* Every byte a known function of its address: 8 MiB of data, so the
 * snapshot has exactly one 1 MiB DATA chunk per MiB. */
static uint64_t lz_word(uint64_t gpa)
{
	return (gpa + 1) * 0x9e3779b97f4a7c15ull;
}

static struct gmem *lz_source(const char *path)
{
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, LZ_SZ, 0);
	uint64_t *kv = gmem_kvm_view(g);
	struct gmem_snapshot_info in;
	int ret;

	for (uint64_t i = 0; i < LZ_SZ / 8; i++)
		kv[i] = lz_word(i * 8);
	/* Shared: 2..4 MiB (chunks 2 and 3). */
	cr_assert_eq(gmem_convert(g, 2 * TH_MIB, 2 * TH_MIB, GMEM_SHARED, NULL), 0);
	ret = gmem_snapshot_save(g, path, 0);
	cr_assert_eq(ret, 0, "save: %d (%s)", ret, gmem_last_error());
	cr_assert_eq(gmem_snapshot_inspect(path, 0, NULL, &in), 0);
	TH_EQ(in.data_chunks, 8);
	return g;
}

static void lz_expect_word(const void *addr, uint64_t gpa)
{
	uint64_t got;

	memcpy(&got, addr, sizeof(got));
	cr_assert_eq(got, lz_word(gpa), "gpa %#llx: read %#llx, saved %#llx",
		     (unsigned long long)gpa, (unsigned long long)got,
		     (unsigned long long)lz_word(gpa));
}

Test(snapshot_lazy, touched_first_loaded_first)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = lz_source(path), *r;
	const uint8_t *kv;
	struct gmem_snapshot_lazy_stats st;
	uint8_t *w;

	gm_lazy_hold(NULL, true);       /* the loader starts held */
	r = lazy_restore(path, LZ_SZ);
	gm_lazy_hold(NULL, false);
	kv = gmem_kvm_view(r);
	st = lazy_stats(r);
	TH_EQ(st.chunks, 8);
	TH_EQ(st.chunks_loaded, 0);

	/* A guest read through the KVM view: chunk 5, by the fault thread. */
	lz_expect_word(kv + 5 * TH_MIB + 4096, 5 * TH_MIB + 4096);
	st = lazy_stats(r);
	cr_assert_eq(st.by_fault, 1, "loaded %llu: by fault %llu, by access %llu, by loader "
		     "%llu, faults %llu", (unsigned long long)st.chunks_loaded,
		     (unsigned long long)st.by_fault, (unsigned long long)st.by_access,
		     (unsigned long long)st.by_loader, (unsigned long long)st.faults);
	/* A host-view run registered at restore time: chunk 2. */
	lz_expect_word((uint8_t *)gmem_host(r, 2 * TH_MIB + 8192) + 8, 2 * TH_MIB + 8192 + 8);
	TH_EQ(lazy_stats(r).by_fault, 2);
	/* A kmap window (not registered): chunk 6 loaded first. */
	w = gmem_kmap(r, 6 * TH_MIB + 3 * 4096);
	cr_assert_not_null(w, "kmap: %s", gmem_last_error());
	lz_expect_word(w + 16, 6 * TH_MIB + 3 * 4096 + 16);
	gmem_kunmap(r, w);
	TH_EQ(lazy_stats(r).by_access, 1);
	/* A run made shared after the restore: chunk 7. */
	cr_assert_eq(gmem_convert(r, 7 * TH_MIB, 4096, GMEM_SHARED, NULL), 0);
	lz_expect_word(gmem_host(r, 7 * TH_MIB + 64), 7 * TH_MIB + 64);
	TH_EQ(lazy_stats(r).by_access, 2);
	/* A discard of pages not loaded yet: chunk 4 first, then the hole. */
	cr_assert_eq(gmem_discard(r, 4 * TH_MIB, 64 * 1024), 0);
	TH_EQ(lazy_stats(r).by_access, 3);
	for (uint64_t off = 0; off < 64 * 1024; off += 4096)
		TH_EQ(kv[4 * TH_MIB + off], 0);
	lz_expect_word(kv + 4 * TH_MIB + 64 * 1024, 4 * TH_MIB + 64 * 1024);

	st = lazy_stats(r);
	TH_EQ(st.by_fault, 2);
	TH_EQ(st.by_access, 3);
	TH_EQ(st.by_loader, 0);
	TH_EQ(st.chunks_loaded, 5);
	TH_EQ(st.loading, 1);
	cr_assert_geq(st.faults, 2, "faults %llu", (unsigned long long)st.faults);

	gm_lazy_hold(r, false);
	TH_EQ(gmem_snapshot_lazy_wait(r), 0);
	st = lazy_stats(r);
	TH_EQ(st.chunks_loaded, 8);
	TH_EQ(st.by_fault + st.by_access + st.by_loader, 8);
	/* The same changes on the source: then the two are the same. */
	cr_assert_eq(gmem_discard(g, 4 * TH_MIB, 64 * 1024), 0);
	cr_assert_eq(gmem_convert(g, 7 * TH_MIB, 4096, GMEM_SHARED, NULL), 0);
	snap_expect_same(g, r);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

/* A save of a memory still loading saves every page, not holes. */
Test(snapshot_lazy, save_while_loading)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	const char *again = snap_file(dir, "again.snap", 1);
	struct gmem *g = lz_source(path), *r, *r2;
	struct gmem_snapshot_info in;

	gm_lazy_hold(NULL, true);
	r = lazy_restore(path, LZ_SZ);
	gm_lazy_hold(NULL, false);
	cr_assert_eq(gmem_snapshot_save(r, again, 0), 0, "save: %s", gmem_last_error());
	cr_assert_eq(gmem_snapshot_inspect(again, GMEM_SNAP_VERIFY, NULL, &in), 0);
	TH_EQ(in.populated_bytes, LZ_SZ);
	TH_EQ(lazy_stats(r).chunks_loaded, 8);
	cr_assert_eq(gmem_snapshot_restore(again, NULL, &r2), 0, "%s", gmem_last_error());
	snap_expect_same(g, r2);
	gmem_close(r2);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

/* The file changes after the restore: the damaged chunk is never exposed. */
Test(snapshot_lazy, file_changed_after_restore)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = lz_source(path), *r;
	const uint8_t *kv;
	/* Chunk 4, gpa 3 MiB: after the header, the STATES chunk (3 runs) and
	 * three DATA chunks. */
	off_t at = 64 + 32 + 3 * 8 + 3 * (32 + (1 << 20)) + 32 + 100;
	uint8_t byte = 0xee;
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	void *w;

	gm_lazy_hold(NULL, true);
	r = lazy_restore(path, LZ_SZ);
	gm_lazy_hold(NULL, false);
	kv = gmem_kvm_view(r);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, &byte, 1, at), 1);
	close(fd);
	w = gmem_kmap(r, 3 * TH_MIB);
	cr_assert_null(w, "kmap of a damaged chunk's page succeeded");
	TH_EQ(errno, EIO);
	cr_assert(strstr(gmem_last_error(), "data chunk 4 at offset"),
		  "message: %s", gmem_last_error());
	/* Touching the page raises SIGBUS, through either view. */
	TH_EQ(th_read_faults(kv + 3 * TH_MIB + 4096), 1);
	TH_EQ(th_read_faults(gmem_host(r, 3 * TH_MIB + 8192)), 1);
	/* Its neighbours load as saved. */
	lz_expect_word(kv + 5 * TH_MIB, 5 * TH_MIB);
	gm_lazy_hold(r, false);
	TH_EQ(gmem_snapshot_lazy_wait(r), -EIO);
	TH_EQ(lazy_stats(r).chunks_loaded, 7);
	TH_EQ(lazy_stats(r).error, -EINVAL);
	lz_expect_word(kv + 7 * TH_MIB, 7 * TH_MIB);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

/* Closing at any point of the load: threads stopped, nothing left open. */
Test(snapshot_lazy, close_while_loading)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, 64 * TH_MIB, 0);
	unsigned fds, maps;

	snap_randomize(g, 21, 60);
	cr_assert_eq(gmem_snapshot_save(g, path, GMEM_SNAP_COMPRESS), 0, "%s",
		     gmem_last_error());
	/* glibc keeps the stacks of joined threads for reuse: warm that cache. */
	gmem_close(lazy_restore(path, 64 * TH_MIB));
	fds = snap_open_fds();
	maps = snap_maps();
	for (unsigned i = 0; i < 12; i++) {
		struct gmem *r;
		const volatile uint8_t *kv;

		gm_lazy_hold(NULL, i % 3 == 1);
		r = lazy_restore(path, 64 * TH_MIB);
		gm_lazy_hold(NULL, false);
		kv = gmem_kvm_view(r);
		if (i % 2)
			(void)kv[(i * 5 + 1) * TH_MIB + 4096];
		if (i % 4 == 3)
			usleep(2000);
		gmem_close(r);
	}
	TH_EQ(snap_open_fds(), fds);
	if (SNAP_MAPS_EXACT)
		TH_EQ(snap_maps(), maps);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_lazy, refused_where_unsupported)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, 4 * TH_MIB, 0), *r = NULL;
	struct gmem_snapshot_opts o = { .flags = GMEM_SNAP_LAZY };
	struct gmem_config cfg = { .size = 4 * TH_MIB, .backend = GMEM_BACKEND_KVM, .vm_fd = -1 };
	struct gmem_snapshot_lazy_stats st;
	int ret;

	th_fill(g, 0, TH_MIB, 3);
	TH_EQ(gmem_snapshot_save_ex(g, path, &o), -EINVAL);
	cr_assert_eq(gmem_snapshot_save(g, path, 0), 0);
	if (!th_kvm_unavailable()) {
		ret = gmem_snapshot_restore_ex(path, &cfg, &o, &r);
		TH_EQ(ret, -EOPNOTSUPP);
		cr_assert(strstr(gmem_last_error(), "userfaultfd"), "message: %s",
			  gmem_last_error());
	}
	/* Not restored lazily: no counters, nothing to wait for. */
	TH_EQ(gmem_snapshot_lazy_stats(g, &st), 0);
	TH_EQ(st.chunks, 0);
	TH_EQ(gmem_snapshot_lazy_wait(g), 0);
	/* cfg NULL picks a backing that can do it. */
	TH_EQ(gmem_snapshot_restore_ex(path, NULL, &o, &r), 0);
	TH_EQ(gmem_snapshot_lazy_wait(r), 0);
	snap_expect_same(g, r);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

// SPDX-License-Identifier: MIT
/*
 * test_snapshot_hostile.c - suite "snapshot_hostile": a snapshot path or
 * file chosen by an attacker.
 *
 *  - a FIFO, a directory, a device: refused at once with a message, never
 *    waited on (a FIFO with no writer would block open(2) for ever);
 *  - the file swapped for another valid snapshot after the header was
 *    checked: the restore still reads only the file it checked (the
 *    direct-I/O ring reopens the descriptor, never the path);
 *  - a file claiming a memory far larger than the host: restore with no
 *    config refuses it before opening any memory, while inspect and verify
 *    describe it without allocating in proportion to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/in.h"
#include "snapshot/snap.h"
#include "snap_edit.h"
#include "snap_th.h"

static void expect_refused_fast(const char *path, const char *want)
{
	struct gmem_snapshot_info in;
	struct gmem *r = NULL;
	int ret;

	ret = gmem_snapshot_inspect(path, 0, NULL, &in);
	TH_EQ(ret, -EINVAL);
	cr_assert(strstr(gmem_last_error(), want), "inspect message '%s' lacks '%s'",
		  gmem_last_error(), want);
	ret = gmem_snapshot_restore(path, NULL, &r);
	TH_EQ(ret, -EINVAL);
	cr_assert_null(r);
	cr_assert(strstr(gmem_last_error(), want), "restore message '%s' lacks '%s'",
		  gmem_last_error(), want);
}

Test(snapshot_hostile, fifo_is_refused_at_once, .timeout = 20)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "fifo", 0);

	cr_assert_eq(mkfifo(path, 0600), 0, "mkfifo: %s", strerror(errno));
	expect_refused_fast(path, "a FIFO");
	snap_rmdir(dir);
}

Test(snapshot_hostile, directory_is_refused)
{
	const char *dir = snap_tmpdir();

	expect_refused_fast(dir, "a directory");
	snap_rmdir(dir);
}

Test(snapshot_hostile, device_is_refused)
{
	expect_refused_fast("/dev/zero", "a character device");
}

/* Page @p of @g holds @seed's pattern through the KVM view. */
static void fill(struct gmem *g, uint64_t pages, uint8_t seed)
{
	uint8_t *kv = gmem_kvm_view(g);

	for (uint64_t p = 0; p < pages; p++)
		memset(kv + p * TH_PAGE, seed ^ (uint8_t)p, TH_PAGE);
}

static const char *swap_from, *swap_to;

static void swap_now(const char *path)
{
	cr_assert_str_eq(path, swap_to);
	cr_assert_eq(rename(swap_from, swap_to), 0, "rename: %s", strerror(errno));
}

/* Two snapshots of one layout, different contents: after the header of A
 * is checked, B takes A's name. The restore must give A's contents. */
Test(snapshot_hostile, file_swapped_after_open_is_not_read, .timeout = 60)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a.snap", 0);
	const char *b = snap_file(dir, "b.snap", 1);
	const uint64_t size = 8 * TH_MIB, pages = size / TH_PAGE;
	struct gmem *ga = th_open(GMEM_BACKEND_MEMFD, size, 0);
	struct gmem *gb = th_open(GMEM_BACKEND_MEMFD, size, 0);
	unsigned long rings = __atomic_load_n(&gm_in_opened, __ATOMIC_RELAXED);
	struct gmem *r = NULL;
	int ret;

	fill(ga, pages, 0xa0);
	fill(gb, pages, 0x0b);
	cr_assert_eq(gmem_snapshot_save(ga, a, 0), 0, "save a: %s", gmem_last_error());
	cr_assert_eq(gmem_snapshot_save(gb, b, 0), 0, "save b: %s", gmem_last_error());
	swap_from = b;
	swap_to = a;
	gm_in_min_file = 0;             /* the direct-I/O ring, whatever the size */
	gm_snap_opened_hook = swap_now;
	ret = gmem_snapshot_restore(a, NULL, &r);
	gm_snap_opened_hook = NULL;
	gm_in_min_file = GM_IN_MIN_FILE;
	cr_assert_eq(ret, 0, "restore: %d (%s)", ret, gmem_last_error());
	if (__atomic_load_n(&gm_in_opened, __ATOMIC_RELAXED) == rings)
		cr_log_warn("no direct I/O on %s: only the buffered reader was tried", dir);
	snap_expect_same(ga, r);
	gmem_close(r);
	gmem_close(ga);
	gmem_close(gb);
	snap_rmdir(dir);
}

/* A 4 MiB snapshot edited to claim 1 TiB, its page states stretched to
 * cover it (checksums recomputed). */
static void claim_huge(const char *good, const char *bad, uint64_t size)
{
	struct snap_ed e;
	size_t i;
	uint64_t *runs, n, covered = 0;

	snap_ed_load(&e, good);
	i = snap_ed_find(&e, GM_SNAP_STATES, 0, 0);
	n = e.ch[i].c.stored_len / 8;
	runs = malloc((n + 1) * 8);
	cr_assert_not_null(runs);
	memcpy(runs, e.ch[i].p, n * 8);
	for (uint64_t k = 0; k < n; k++)
		covered += runs[k] >> 1;
	runs[n] = gm_snap_run(size / TH_PAGE - covered, GMEM_PRIVATE);
	snap_ed_set_payload(&e, i, runs, (n + 1) * 8);
	e.ch[i].c.raw_len = e.ch[i].c.stored_len;
	e.h.mem_size = size;
	snap_ed_save(&e, bad, SNAP_ED_FIX_ALL);
	snap_ed_free(&e);
	free(runs);
}

Test(snapshot_hostile, huge_claim_needs_a_config, .timeout = 60)
{
	const char *dir = snap_tmpdir(), *good = snap_file(dir, "good.snap", 0);
	const char *bad = snap_file(dir, "huge.snap", 1);
	const uint64_t huge = 1ull << 40;
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, 4 * TH_MIB, 0);
	struct gmem_snapshot_info in;
	struct gmem *r = NULL;
	int ret;

	fill(g, 16, 0x33);
	cr_assert_eq(gmem_convert(g, 0, 2 * TH_MIB, GMEM_SHARED, NULL), 0);
	cr_assert_eq(gmem_snapshot_save(g, good, 0), 0, "save: %s", gmem_last_error());
	claim_huge(good, bad, huge);
	/* Described and verified: neither allocates by the claimed size. */
	ret = gmem_snapshot_inspect(bad, GMEM_SNAP_VERIFY, NULL, &in);
	cr_assert_eq(ret, 0, "verify of the edited file: %d (%s)", ret, gmem_last_error());
	TH_EQ(in.size, huge);
	ret = gmem_snapshot_restore(bad, NULL, &r);
	TH_EQ(ret, -EFBIG);
	cr_assert_null(r);
	cr_assert(strstr(gmem_last_error(), "gmem_config"), "message '%s' names no remedy",
		  gmem_last_error());
	gmem_close(g);
	snap_rmdir(dir);
}

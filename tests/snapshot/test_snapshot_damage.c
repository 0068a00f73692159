// SPDX-License-Identifier: MIT
/*
 * test_snapshot_damage.c - suite "snapshot_damage": a damaged snapshot is
 * refused, and a killed save damages nothing.
 *
 *  - every single byte of a small snapshot (header, states, data raw and
 *    compressed, END, footer) flipped in turn: both verify and restore
 *    refuse it, with a message naming the file, and leave no descriptor or
 *    mapping behind;
 *  - truncation at every section boundary and at a sample of other
 *    lengths: refused the same way;
 *  - a save killed (SIGKILL) half-way leaves the earlier snapshot at that
 *    path intact, byte for byte.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "snapshot/snap.h"
#include "snap_th.h"

/* A small memory: mixed states, a compressible and a random page, a run of
 * three pages, holes between. */
static struct gmem *small_memory(void)
{
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, 2 * TH_MIB, 0);
	uint8_t *kv = gmem_kvm_view(g);
	uint64_t x = 88172645463325252ull;

	memset(kv + 3 * TH_PAGE, 0x5a, TH_PAGE);
	for (unsigned i = 0; i < 3 * TH_PAGE; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		kv[100 * TH_PAGE + i] = (uint8_t)x;
	}
	cr_assert_eq(gmem_convert(g, 64 * TH_PAGE, 64 * TH_PAGE, GMEM_SHARED, NULL), 0);
	cr_assert_eq(gmem_convert(g, 101 * TH_PAGE, TH_PAGE, GMEM_SHARED, NULL), 0);
	return g;
}

/* Restore @good once and close it: the restore's worker threads leave
 * their stacks in the C library's cache, mappings a process keeps however
 * many restores follow, so the counts of expect_refused() start after. */
static void warm_up(const char *good)
{
	struct gmem *r = NULL;
	int ret = gmem_snapshot_restore(good, NULL, &r);

	cr_assert_eq(ret, 0, "restore of the good file: %d (%s)", ret, gmem_last_error());
	gmem_close(r);
}

/* @path must be refused by verify and by restore, naming the file, with
 * nothing left open. @what says what was done to it. */
static void expect_refused(const char *path, const char *what)
{
	struct gmem_snapshot_info in;
	struct gmem_config cfg = { .size = 2 * TH_MIB, .backend = GMEM_BACKEND_MEMFD,
				   .vm_fd = -1 };
	struct gmem *r = NULL;
	unsigned fds = snap_open_fds(), maps = snap_maps();
	int ret;

	ret = gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, NULL, &in);
	cr_assert_lt(ret, 0, "%s: verify accepted it (ret %d)", what, ret);
	cr_assert(strstr(gmem_last_error(), path), "%s: verify message '%s' names no file",
		  what, gmem_last_error());
	ret = gmem_snapshot_restore(path, &cfg, &r);
	cr_assert_lt(ret, 0, "%s: restore accepted it (ret %d)", what, ret);
	cr_assert_null(r, "%s: restore returned a memory", what);
	cr_assert(gmem_last_error()[0], "%s: restore gave no message", what);
	cr_assert_eq(snap_open_fds(), fds, "%s: %u descriptors open, were %u", what,
		     snap_open_fds(), fds);
	if (SNAP_MAPS_EXACT)
		cr_assert_eq(snap_maps(), maps, "%s: %u mappings, were %u", what, snap_maps(),
			     maps);
}

/* Exhaustive: some 10^4 files, each refused by verify, inspect and restore;
 * about 2 minutes under ASan on an idle 2-CPU machine, longer beside the
 * rest of the suite, hence the long timeout. */
static void every_byte(unsigned flags)
{
	const char *dir = snap_tmpdir(), *good = snap_file(dir, "good.snap", 0);
	const char *bad = snap_file(dir, "bad.snap", 1);
	struct gmem *g = small_memory();
	uint8_t *buf;
	size_t len;
	char what[96];

	cr_assert_eq(gmem_snapshot_save(g, good, flags), 0, "save: %s", gmem_last_error());
	warm_up(good);
	buf = snap_slurp(good, &len);
	cr_log_info("snapshot of %zu bytes; flipping each", len);
	for (size_t i = 0; i < len; i++) {
		buf[i] ^= 0xff;
		snap_spit(bad, buf, len);
		buf[i] ^= 0xff;
		snprintf(what, sizeof(what), "byte %zu of %zu flipped", i, len);
		expect_refused(bad, what);
	}
	free(buf);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_damage, every_byte_raw, .timeout = 900)
{
	every_byte(0);
}

Test(snapshot_damage, every_byte_compressed, .timeout = 900)
{
	every_byte(GMEM_SNAP_COMPRESS_ALL);
}

/* Offsets where sections and chunks begin and end, from the file itself. */
static size_t boundaries(const uint8_t *buf, size_t len, size_t *out, size_t max)
{
	size_t n = 0, pos = sizeof(struct gm_snap_header);

	out[n++] = 0;
	out[n++] = pos;
	while (pos + sizeof(struct gm_snap_chunk) <= len && n + 2 < max) {
		struct gm_snap_chunk c;

		memcpy(&c, buf + pos, sizeof(c));
		out[n++] = pos + sizeof(c);
		pos += sizeof(c) + c.stored_len;
		out[n++] = pos;
		if (c.type == GM_SNAP_END)
			break;
	}
	TH_EQ(pos + sizeof(struct gm_snap_footer), len);
	return n;
}

static void truncations(unsigned flags)
{
	const char *dir = snap_tmpdir(), *good = snap_file(dir, "good.snap", 0);
	const char *bad = snap_file(dir, "bad.snap", 1);
	struct gmem *g = small_memory();
	size_t cut[64], n, len;
	uint8_t *buf;
	char what[96];

	cr_assert_eq(gmem_snapshot_save(g, good, flags), 0, "save: %s", gmem_last_error());
	warm_up(good);
	buf = snap_slurp(good, &len);
	n = boundaries(buf, len, cut, 64);
	cr_log_info("%zu section boundaries in %zu bytes", n, len);
	for (size_t i = 0; i < n; i++) {
		snap_spit(bad, buf, cut[i]);
		snprintf(what, sizeof(what), "cut at boundary %zu of %zu", cut[i], len);
		expect_refused(bad, what);
		if (cut[i] > 0) {
			snap_spit(bad, buf, cut[i] - 1);
			snprintf(what, sizeof(what), "cut at %zu (boundary - 1) of %zu",
				 cut[i] - 1, len);
			expect_refused(bad, what);
		}
	}
	for (size_t l = 1; l < len; l += 37) {
		snap_spit(bad, buf, l);
		snprintf(what, sizeof(what), "cut at %zu of %zu", l, len);
		expect_refused(bad, what);
	}
	for (size_t l = len - 64; l < len; l++) {
		snap_spit(bad, buf, l);
		snprintf(what, sizeof(what), "cut at %zu of %zu", l, len);
		expect_refused(bad, what);
	}
	/* Bytes appended after the footer are damage too. */
	buf = realloc(buf, len + 1);
	buf[len] = 0;
	snap_spit(bad, buf, len + 1);
	expect_refused(bad, "one byte appended");
	free(buf);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_damage, truncation_raw)
{
	truncations(0);
}

Test(snapshot_damage, truncation_compressed)
{
	truncations(GMEM_SNAP_COMPRESS_ALL);
}

/* The child signals half-way through its save and is killed there. */
static int kill_pipe[2];

static void signal_half(void *ctx, uint64_t done, uint64_t total)
{
	bool *sent = ctx;

	if (*sent || done < total / 2)
		return;
	*sent = true;
	if (write(kill_pipe[1], "h", 1) != 1)
		_exit(3);
	/* Keep the save open until the parent's SIGKILL lands. */
	for (;;)
		pause();
}

static void child_save(const char *path)
{
	struct gmem_config cfg = { .size = 512 * TH_MIB, .backend = GMEM_BACKEND_MEMFD,
				   .vm_fd = -1 };
	bool sent = false;
	struct gmem_snapshot_opts o = { .progress = signal_half, .progress_ctx = &sent };
	struct gmem *g;
	uint8_t *kv;

	if (gmem_open(&cfg, &g))
		_exit(2);
	kv = gmem_kvm_view(g);
	for (uint64_t off = 0; off < cfg.size; off += TH_PAGE)
		memset(kv + off, (int)(off >> 12), 64);
	gmem_snapshot_save_ex(g, path, &o);
	_exit(4);       /* the save finished: the kill came too late */
}

Test(snapshot_damage, kill_during_save, .timeout = 120)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = small_memory();
	struct gmem_snapshot_info in;
	uint8_t *before, *after;
	size_t lb, la;
	int status;
	char c;
	pid_t pid;

	cr_assert_eq(gmem_snapshot_save(g, path, 0), 0, "save: %s", gmem_last_error());
	before = snap_slurp(path, &lb);
	cr_assert_eq(pipe(kill_pipe), 0);
	pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0)
		child_save(path);
	close(kill_pipe[1]);
	cr_assert_eq(read(kill_pipe[0], &c, 1), 1, "child ended before half-way");
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		  "child status %#x: not killed mid-save", status);
	after = snap_slurp(path, &la);
	TH_EQ(la, lb);
	cr_assert(!memcmp(before, after, lb), "earlier snapshot changed by a killed save");
	cr_assert_eq(gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, NULL, &in), 0,
		     "earlier snapshot no longer verifies: %s", gmem_last_error());
	free(before);
	free(after);
	gmem_close(g);
	snap_rmdir(dir);
}

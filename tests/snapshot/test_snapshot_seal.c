// SPDX-License-Identifier: MIT
/*
 * test_snapshot_seal.c - suite "snapshot_seal": snapshots saved with a key
 * (gmem_snapshot_opts.key; docs/snapshot-format.md, "Sealed files").
 *
 *  - a marker written into private and shared pages is nowhere in a sealed
 *    file, compressed or not; it is in the unsealed files (so the search
 *    can fail);
 *  - round trips, eager (ring and buffered reads, both workers' paths) and
 *    lazy, raw and compressed, with either AEAD: contents and states exact;
 *  - every single byte of a small sealed file flipped in turn, two DATA
 *    payloads swapped, a chunk dropped, a chunk spliced from another file
 *    sealed with the same key, truncation, a wrong key: all -EBADMSG from
 *    restore (with nothing left open) and from verify with the key; the
 *    swaps and splices, made with every checksum recomputed, pass a verify
 *    without the key: only the AEAD tells them apart;
 *  - no key for a sealed file: inspect works, restore is -ENOKEY; a key for
 *    a file that is not sealed: -EINVAL; a save without a key is the
 *    version 1 format still.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "snapshot/seal.h"
#include "snapshot/snap.h"
#include "snap_edit.h"
#include "snap_th.h"

static const uint8_t key_a[GMEM_SNAP_KEY_BYTES] = {
	0x4b, 0x1e, 0x93, 0x07, 0xaa, 0x52, 0xc8, 0x3d, 0x61, 0xf0, 0x2e, 0x99, 0x15, 0xb7, 0x48, 0xd6,
	0x0c, 0x7a, 0xe3, 0x58, 0x26, 0x9f, 0x41, 0xbd, 0x83, 0x6e, 0xc5, 0x12, 0xfa, 0x37, 0x90, 0x2b,
};
static const uint8_t key_b[GMEM_SNAP_KEY_BYTES] = { 1, 2, 3 };

static const char marker[] = "GMEM-SEAL-MARKER:the-guest-secret-0123456789";

static int save_key(struct gmem *g, const char *path, unsigned flags, const uint8_t *key)
{
	struct gmem_snapshot_opts o = { .flags = flags, .key = key };

	return gmem_snapshot_save_ex(g, path, &o);
}

static void save_ok(struct gmem *g, const char *path, unsigned flags, const uint8_t *key)
{
	int ret = save_key(g, path, flags, key);

	cr_assert_eq(ret, 0, "save %s: %d (%s)", path, ret, gmem_last_error());
}

static int restore_key(const char *path, uint64_t size, unsigned flags, const uint8_t *key,
		       struct gmem **out)
{
	struct gmem_config cfg = { .size = size, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1 };
	struct gmem_snapshot_opts o = { .flags = flags, .key = key };

	*out = NULL;
	return gmem_snapshot_restore_ex(path, &cfg, &o, out);
}

static int verify_key(const char *path, const uint8_t *key, struct gmem_snapshot_info *in)
{
	struct gmem_snapshot_opts o = { .key = key };

	return gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, &o, in);
}

static bool contains(const uint8_t *buf, size_t len, const void *pat, size_t n)
{
	return memmem(buf, len, pat, n) != NULL;
}

/* ---- the seal itself ----------------------------------------------------- */

/* In place and out of place give the same bytes; a changed AD byte, nonce
 * (index) or tag is refused; both AEADs. */
Test(snapshot_seal, aead_in_place_and_refusals)
{
	static const uint32_t aeads[] = { GM_SNAP_AEAD_AES256GCM,
					  GM_SNAP_AEAD_XCHACHA20POLY1305 };
	uint8_t id[GM_SNAP_ID_BYTES] = { 9 }, hdr[128] = { 1, 2, 3 };
	uint8_t plain[4096 + 16], a[4096 + 16], b[4096 + 16];

	for (unsigned i = 0; i < sizeof(plain); i++)
		plain[i] = (uint8_t)(i * 7);
	for (unsigned k = 0; k < 2; k++) {
		struct gm_snap_chunk c = { .type = GM_SNAP_DATA, .first = 8192, .raw_len = 4096,
					   .stored_len = 4096 + 16 };
		struct gm_seal *s;

		if (aeads[k] == GM_SNAP_AEAD_AES256GCM && gm_seal_pick() != aeads[k] &&
		    !gm_seal_force_aead)
			continue;       /* no AES-NI: libsodium has no AES-GCM */
		cr_assert_eq(gm_seal_new(key_a, aeads[k], id, &s), 0);
		gm_seal_bind(s, hdr, sizeof(hdr));
		gm_seal_chunk(s, &c, 5, plain, a, 4096);
		memcpy(b, plain, sizeof(b));
		gm_seal_chunk(s, &c, 5, b, b, 4096);
		cr_assert(!memcmp(a, b, sizeof(a)), "aead %u: in place differs", aeads[k]);
		cr_assert(memcmp(a, plain, 4096), "aead %u: nothing encrypted", aeads[k]);
		TH_EQ(gm_seal_open(s, &c, 5, a, b), 0);
		cr_assert(!memcmp(b, plain, 4096));
		memcpy(b, a, sizeof(b));
		TH_EQ(gm_seal_open(s, &c, 5, b, b), 0);
		cr_assert(!memcmp(b, plain, 4096), "aead %u: open in place", aeads[k]);
		TH_EQ(gm_seal_open(s, &c, 6, a, b), -EBADMSG);
		c.first += 4096;
		TH_EQ(gm_seal_open(s, &c, 5, a, b), -EBADMSG);
		c.first -= 4096;
		a[4096 + 3] ^= 1;
		TH_EQ(gm_seal_open(s, &c, 5, a, b), -EBADMSG);
		a[4096 + 3] ^= 1;
		hdr[100] ^= 1;
		gm_seal_bind(s, hdr, sizeof(hdr));
		TH_EQ(gm_seal_open(s, &c, 5, a, b), -EBADMSG);
		gm_seal_free(s);
		hdr[100] ^= 1;
	}
}

/* ---- no plain text ------------------------------------------------------- */

/* 4 MiB: the marker in private pages and shared pages, among random and
 * zero-filled ones. */
static struct gmem *marker_memory(void)
{
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, 4 * TH_MIB, 0);
	uint8_t *kv = gmem_kvm_view(g);

	snap_randomize(g, 77, 20);
	cr_assert_eq(gmem_convert(g, 0, TH_MIB, GMEM_PRIVATE, NULL), 0);
	cr_assert_eq(gmem_convert(g, TH_MIB, TH_MIB, GMEM_SHARED, NULL), 0);
	for (uint64_t p = 0; p < 2 * TH_MIB / TH_PAGE; p += 37) {
		memset(kv + p * TH_PAGE, 0, TH_PAGE);
		for (unsigned at = 0; at + sizeof(marker) < TH_PAGE; at += 512)
			memcpy(kv + p * TH_PAGE + at, marker, sizeof(marker) - 1);
	}
	TH_EQ(gmem_state(g, 0), GMEM_PRIVATE);
	TH_EQ(gmem_state(g, TH_MIB), GMEM_SHARED);
	return g;
}

static void no_marker(unsigned flags)
{
	const char *dir = snap_tmpdir(), *plain = snap_file(dir, "plain.snap", 0);
	const char *sealed = snap_file(dir, "sealed.snap", 1);
	struct gmem *g = marker_memory(), *r;
	uint8_t *buf;
	size_t len;

	save_ok(g, plain, flags, NULL);
	save_ok(g, sealed, flags, key_a);
	buf = snap_slurp(plain, &len);
	cr_assert(contains(buf, len, marker, sizeof(marker) - 1),
		  "the unsealed file lacks the marker: this test could not fail");
	free(buf);
	buf = snap_slurp(sealed, &len);
	cr_assert(!contains(buf, len, marker, sizeof(marker) - 1),
		  "the sealed file holds the marker in plain text");
	/* Nor a piece of it as long as an AES block. */
	cr_assert(!contains(buf, len, marker + 8, 16), "a piece of the marker is in the file");
	free(buf);
	TH_EQ(restore_key(sealed, 4 * TH_MIB, 0, key_a, &r), 0);
	snap_expect_same(g, r);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_seal, no_marker_raw)
{
	no_marker(0);
}

Test(snapshot_seal, no_marker_compressed)
{
	no_marker(GMEM_SNAP_COMPRESS_ALL);
}

/* ---- round trips --------------------------------------------------------- */

static void round_trip_aead(uint32_t aead, unsigned save_flags, unsigned restore_flags,
			    uint64_t seed)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, 32 * TH_MIB, 0), *r;
	struct gmem_snapshot_info in;
	struct gm_snap_header2 h;
	uint8_t *buf;
	size_t len;
	int ret;

	uint64_t pop;

	snap_randomize(g, seed, 30);
	pop = snap_populated_pages(g);
	gm_seal_force_aead = aead;
	save_ok(g, path, save_flags, key_a);
	gm_seal_force_aead = GM_SNAP_AEAD_NONE;
	buf = snap_slurp(path, &len);
	memcpy(&h, buf, sizeof(h));
	free(buf);
	TH_EQ(h.major, GM_SNAP_V2_MAJOR);
	TH_EQ(h.header_size, 128);
	cr_assert(h.flags & GM_SNAP_HDR_SEALED);
	TH_EQ(h.aead, aead ? aead : gm_seal_pick());
	ret = restore_key(path, 32 * TH_MIB, restore_flags, key_a, &r);
	cr_assert_eq(ret, 0, "restore: %d (%s)", ret, gmem_last_error());
	if (restore_flags & GMEM_SNAP_LAZY) {
		snap_expect_same(g, r);         /* racing the loader */
		TH_EQ(gmem_snapshot_lazy_wait(r), 0);
	} else {
		TH_EQ(snap_populated_pages(r), pop);
	}
	snap_expect_same(g, r);
	TH_EQ(th_stats(r).shared_pages, th_stats(g).shared_pages);
	gmem_close(r);
	ret = verify_key(path, key_a, &in);
	cr_assert_eq(ret, 0, "verify with the key: %d (%s)", ret, gmem_last_error());
	TH_EQ(in.verified, 1);
	TH_EQ(in.shared_pages, th_stats(g).shared_pages);
	ret = verify_key(path, NULL, &in);
	cr_assert_eq(ret, 0, "verify without the key: %d (%s)", ret, gmem_last_error());
	TH_EQ(in.populated_bytes, pop * TH_PAGE);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_seal, round_trip_raw)
{
	round_trip_aead(0, 0, 0, 1);
}

Test(snapshot_seal, round_trip_compressed)
{
	round_trip_aead(0, GMEM_SNAP_COMPRESS_ALL, 0, 2);
}

Test(snapshot_seal, round_trip_adaptive)
{
	round_trip_aead(0, GMEM_SNAP_COMPRESS, 0, 3);
}

Test(snapshot_seal, round_trip_buffered)
{
	round_trip_aead(0, GMEM_SNAP_BUFFERED, GMEM_SNAP_BUFFERED, 4);
}

Test(snapshot_seal, round_trip_compressed_buffered)
{
	round_trip_aead(0, GMEM_SNAP_COMPRESS_ALL, GMEM_SNAP_BUFFERED, 5);
}

Test(snapshot_seal, round_trip_xchacha)
{
	round_trip_aead(GM_SNAP_AEAD_XCHACHA20POLY1305, 0, 0, 6);
}

Test(snapshot_seal, round_trip_xchacha_compressed)
{
	round_trip_aead(GM_SNAP_AEAD_XCHACHA20POLY1305, GMEM_SNAP_COMPRESS_ALL, GMEM_SNAP_BUFFERED,
			7);
}

Test(snapshot_seal, round_trip_lazy)
{
	round_trip_aead(0, 0, GMEM_SNAP_LAZY, 8);
}

Test(snapshot_seal, round_trip_lazy_compressed)
{
	round_trip_aead(0, GMEM_SNAP_COMPRESS_ALL, GMEM_SNAP_LAZY, 9);
}

Test(snapshot_seal, round_trip_lazy_xchacha)
{
	round_trip_aead(GM_SNAP_AEAD_XCHACHA20POLY1305, GMEM_SNAP_COMPRESS_ALL, GMEM_SNAP_LAZY, 10);
}

/* A memory with no page data: STATES and END only. */
Test(snapshot_seal, round_trip_empty)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, 2 * TH_MIB, 0), *r;

	cr_assert_eq(gmem_convert(g, 0, TH_MIB, GMEM_SHARED, NULL), 0);
	save_ok(g, path, 0, key_a);
	TH_EQ(restore_key(path, 2 * TH_MIB, 0, key_a, &r), 0);
	snap_expect_same(g, r);
	gmem_close(r);
	TH_EQ(restore_key(path, 2 * TH_MIB, GMEM_SNAP_LAZY, key_a, &r), 0);
	snap_expect_same(g, r);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

/* Without a key nothing changes: version 1, 64-byte header. */
Test(snapshot_seal, no_key_is_version_1)
{
	const char *dir = snap_tmpdir(), *path = snap_file(dir, "mem.snap", 0);
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, 2 * TH_MIB, 0);
	struct gm_snap_header h;
	uint8_t *buf;
	size_t len;

	snap_randomize(g, 3, 10);
	save_ok(g, path, 0, NULL);
	buf = snap_slurp(path, &len);
	memcpy(&h, buf, sizeof(h));
	TH_EQ(h.major, GM_SNAP_VERSION_MAJOR);
	TH_EQ(h.header_size, 64);
	TH_EQ(h.flags, 0);
	free(buf);
	gmem_close(g);
	snap_rmdir(dir);
}

/* ---- attacks ------------------------------------------------------------- */

/* The small memory of test_snapshot_damage.c: mixed states, a compressible
 * and three random pages, holes between. */
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
	memset(kv + 300 * TH_PAGE, 0x11, TH_PAGE);
	cr_assert_eq(gmem_convert(g, 64 * TH_PAGE, 64 * TH_PAGE, GMEM_SHARED, NULL), 0);
	cr_assert_eq(gmem_convert(g, 101 * TH_PAGE, TH_PAGE, GMEM_SHARED, NULL), 0);
	return g;
}

/* Restore once, so that the worker threads' cached stacks and libsodium's
 * first use are not counted by expect_badmsg(). */
static void warm_up(const char *good, const uint8_t *key)
{
	struct gmem *r;
	int ret = restore_key(good, 2 * TH_MIB, 0, key, &r);

	cr_assert_eq(ret, 0, "restore of the good file: %d (%s)", ret, gmem_last_error());
	gmem_close(r);
}

/* @path must be refused with -EBADMSG by restore (eager, and lazy if
 * @lazy) and by verify with @key, with no memory returned and nothing left
 * open. */
static void expect_badmsg_as(const char *path, const uint8_t *key, const char *what, bool lazy)
{
	struct gmem_snapshot_info in;
	struct gmem *r = NULL;
	unsigned fds = snap_open_fds(), maps = snap_maps();
	int ret;

	ret = restore_key(path, 2 * TH_MIB, 0, key, &r);
	cr_assert_eq(ret, -EBADMSG, "%s: restore gave %d (%s), not -EBADMSG", what, ret,
		     gmem_last_error());
	cr_assert_null(r, "%s: restore returned a memory", what);
	cr_assert(strstr(gmem_last_error(), path), "%s: message '%s' names no file", what,
		  gmem_last_error());
	ret = lazy ? restore_key(path, 2 * TH_MIB, GMEM_SNAP_LAZY, key, &r) : -EBADMSG;
	cr_assert_eq(ret, -EBADMSG, "%s: lazy restore gave %d (%s), not -EBADMSG", what, ret,
		     gmem_last_error());
	cr_assert_null(r, "%s: lazy restore returned a memory", what);
	ret = verify_key(path, key, &in);
	cr_assert_eq(ret, -EBADMSG, "%s: verify gave %d (%s), not -EBADMSG", what, ret,
		     gmem_last_error());
	cr_assert_eq(snap_open_fds(), fds, "%s: %u descriptors open, were %u", what,
		     snap_open_fds(), fds);
	if (SNAP_MAPS_EXACT)
		cr_assert_eq(snap_maps(), maps, "%s: %u mappings, were %u", what, snap_maps(),
			     maps);
}

static void expect_badmsg(const char *path, const uint8_t *key, const char *what)
{
	expect_badmsg_as(path, key, what, true);
}

/* Some 3 10^4 files: each restored and verified, every eighth restored
 * lazily too (the same walk; ASan makes it slow). */
static void every_byte(unsigned flags)
{
	const char *dir = snap_tmpdir(), *good = snap_file(dir, "good.snap", 0);
	const char *bad = snap_file(dir, "bad.snap", 1);
	struct gmem *g = small_memory();
	uint8_t *buf;
	size_t len;
	char what[96];

	save_ok(g, good, flags, key_a);
	warm_up(good, key_a);
	buf = snap_slurp(good, &len);
	cr_log_info("sealed snapshot of %zu bytes; flipping each", len);
	for (size_t i = 0; i < len; i++) {
		buf[i] ^= 0x01 << (i % 8);
		snap_spit(bad, buf, len);
		buf[i] ^= 0x01 << (i % 8);
		snprintf(what, sizeof(what), "byte %zu of %zu changed", i, len);
		expect_badmsg_as(bad, key_a, what, i % 8 == 0);
	}
	free(buf);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_seal, every_byte_raw, .timeout = 900)
{
	every_byte(0);
}

Test(snapshot_seal, every_byte_compressed, .timeout = 900)
{
	every_byte(GMEM_SNAP_COMPRESS_ALL);
}

/* A file the editor changed with every checksum and the footer remade
 * still passes a verify without the key: only the AEAD refuses it. */
static void expect_only_aead_refuses(const char *path, const char *what)
{
	struct gmem_snapshot_info in;
	int ret = verify_key(path, NULL, &in);

	cr_assert_eq(ret, 0, "%s: verify without the key refused it (%d: %s): the test "
		     "would not show the AEAD at work", what, ret, gmem_last_error());
	expect_badmsg(path, key_a, what);
}

Test(snapshot_seal, swapped_data_payloads)
{
	const char *dir = snap_tmpdir(), *good = snap_file(dir, "good.snap", 0);
	const char *bad = snap_file(dir, "bad.snap", 1);
	struct gmem *g = small_memory();
	struct snap_ed e;
	size_t a, b;

	save_ok(g, good, 0, key_a);
	warm_up(good, key_a);
	snap_ed_load(&e, good);
	/* Two raw DATA chunks of one page each: same sizes, so the swap keeps
	 * every header valid. */
	a = snap_ed_find(&e, GM_SNAP_DATA, 0, 0);
	b = snap_ed_find(&e, GM_SNAP_DATA, 0, 2);
	TH_EQ(e.ch[a].c.stored_len, e.ch[b].c.stored_len);
	{
		uint8_t *p = e.ch[a].p;

		e.ch[a].p = e.ch[b].p;
		e.ch[b].p = p;
	}
	snap_ed_save(&e, bad, SNAP_ED_FIX_HASH);
	expect_only_aead_refuses(bad, "two DATA payloads swapped");
	snap_ed_free(&e);
	/* And whole chunks swapped: order is refused too. */
	snap_ed_load(&e, good);
	snap_ed_swap(&e, a, b);
	snap_ed_save(&e, bad, SNAP_ED_FIX_HASH);
	expect_badmsg(bad, key_a, "two DATA chunks swapped");
	snap_ed_free(&e);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_seal, dropped_chunk)
{
	const char *dir = snap_tmpdir(), *good = snap_file(dir, "good.snap", 0);
	const char *bad = snap_file(dir, "bad.snap", 1);
	struct gmem *g = small_memory();
	struct snap_ed e;
	size_t last;

	save_ok(g, good, 0, key_a);
	warm_up(good, key_a);
	/* The last DATA chunk dropped, headers, digest, hashes and footer
	 * remade, END totals kept: the END says one chunk more. */
	snap_ed_load(&e, good);
	last = e.n - 2;
	TH_EQ(e.ch[last].c.type, GM_SNAP_DATA);
	snap_ed_remove(&e, last);
	snap_ed_save(&e, bad, SNAP_ED_FIX_HASH | SNAP_ED_FIX_FOOTER);
	expect_badmsg(bad, key_a, "last DATA chunk dropped");
	snap_ed_free(&e);
	/* Dropped with the END totals made to fit too (the forgery a plain
	 * file cannot refuse: snapshot_fields/data_dropped_consistently...):
	 * the END's tag refuses it. */
	snap_ed_load(&e, good);
	{
		struct snap_ed_chunk *d = &e.ch[last];
		struct gm_snap_end *end = snap_ed_end(&e);

		end->chunks--;
		end->data_chunks--;
		end->populated -= d->c.raw_len;
		end->stored -= d->c.stored_len;
	}
	snap_ed_remove(&e, last);
	snap_ed_save(&e, bad, SNAP_ED_FIX_HASH | SNAP_ED_FIX_FOOTER);
	expect_only_aead_refuses(bad, "last DATA chunk dropped, END totals fixed");
	snap_ed_free(&e);
	gmem_close(g);
	snap_rmdir(dir);
}

/* A chunk of another file sealed with the same key, from the same memory
 * (same index, same header fields): its file_id differs, so its tag. */
Test(snapshot_seal, chunk_spliced_from_another_file)
{
	const char *dir = snap_tmpdir(), *good = snap_file(dir, "good.snap", 0);
	const char *other = snap_file(dir, "other.snap", 1), *bad = snap_file(dir, "bad.snap", 2);
	struct gmem *g = small_memory();
	struct snap_ed e, o;
	size_t i;

	save_ok(g, good, 0, key_a);
	((uint8_t *)gmem_kvm_view(g))[3 * TH_PAGE] = 0x77;  /* another content, same layout */
	save_ok(g, other, 0, key_a);
	warm_up(good, key_a);
	snap_ed_load(&e, good);
	snap_ed_load(&o, other);
	TH_EQ(e.n, o.n);
	for (uint32_t type = GM_SNAP_STATES; type <= GM_SNAP_DATA; type++) {
		i = snap_ed_find(&e, type, 0, 0);
		TH_EQ(o.ch[i].c.type, type);
		snap_ed_set_payload(&e, i, o.ch[i].p, o.ch[i].c.stored_len);
		snap_ed_save(&e, bad, SNAP_ED_FIX_HASH);
		expect_only_aead_refuses(bad, type == GM_SNAP_DATA ? "DATA chunk spliced"
								  : "STATES chunk spliced");
		snap_ed_free(&e);
		snap_ed_load(&e, good);
	}
	/* The other file's header (file_id) with this file's chunks. */
	memcpy(&e.h2, &o.h2, sizeof(e.h2));
	snap_ed_save(&e, bad, SNAP_ED_FIX_HASH);
	expect_badmsg(bad, key_a, "header of another file");
	snap_ed_free(&o);
	snap_ed_free(&e);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_seal, truncation, .timeout = 300)
{
	const char *dir = snap_tmpdir(), *good = snap_file(dir, "good.snap", 0);
	const char *bad = snap_file(dir, "bad.snap", 1);
	struct gmem *g = small_memory();
	uint8_t *buf;
	size_t len;
	char what[96];

	save_ok(g, good, GMEM_SNAP_COMPRESS_ALL, key_a);
	warm_up(good, key_a);
	buf = snap_slurp(good, &len);
	for (size_t l = 0; l < len; l += l < 256 || l > len - 256 ? 1 : 97) {
		snap_spit(bad, buf, l);
		snprintf(what, sizeof(what), "cut at %zu of %zu", l, len);
		expect_badmsg(bad, key_a, what);
	}
	buf = realloc(buf, len + 1);
	buf[len] = 0;
	snap_spit(bad, buf, len + 1);
	expect_badmsg(bad, key_a, "one byte appended");
	free(buf);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_seal, wrong_key)
{
	const char *dir = snap_tmpdir(), *good = snap_file(dir, "good.snap", 0);
	struct gmem *g = small_memory();

	save_ok(g, good, 0, key_a);
	warm_up(good, key_a);
	expect_badmsg(good, key_b, "wrong key");
	cr_assert(strstr(gmem_last_error(), "wrong key"), "message: %s", gmem_last_error());
	/* One bit off. */
	{
		uint8_t k[GMEM_SNAP_KEY_BYTES];

		memcpy(k, key_a, sizeof(k));
		k[31] ^= 0x80;
		expect_badmsg(good, k, "key with one bit changed");
	}
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_seal, no_key_for_a_sealed_file)
{
	const char *dir = snap_tmpdir(), *good = snap_file(dir, "good.snap", 0);
	struct gmem *g = small_memory(), *r;
	struct gmem_snapshot_info in;
	unsigned fds;
	int ret;

	save_ok(g, good, GMEM_SNAP_COMPRESS_ALL, key_a);
	warm_up(good, key_a);
	fds = snap_open_fds();
	ret = restore_key(good, 2 * TH_MIB, 0, NULL, &r);
	cr_assert_eq(ret, -ENOKEY, "restore without the key: %d (%s)", ret, gmem_last_error());
	cr_assert_null(r);
	cr_assert(strstr(gmem_last_error(), "sealed"), "message: %s", gmem_last_error());
	TH_EQ(restore_key(good, 2 * TH_MIB, GMEM_SNAP_LAZY, NULL, &r), -ENOKEY);
	TH_EQ(gmem_snapshot_restore(good, NULL, &r), -ENOKEY);
	TH_EQ(snap_open_fds(), fds);
	/* Inspect: the ends, and with verify every checksum. */
	ret = gmem_snapshot_inspect(good, 0, NULL, &in);
	cr_assert_eq(ret, 0, "info without the key: %d (%s)", ret, gmem_last_error());
	TH_EQ(in.version_major, GM_SNAP_V2_MAJOR);
	TH_EQ(in.shared_pages, 64);
	TH_EQ(in.populated_bytes, 5 * TH_PAGE);
	TH_EQ(verify_key(good, NULL, &in), 0);
	TH_EQ(in.verified, 1);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_seal, key_for_an_unsealed_file)
{
	const char *dir = snap_tmpdir(), *good = snap_file(dir, "good.snap", 0);
	struct gmem *g = small_memory(), *r;
	struct gmem_snapshot_info in;
	int ret;

	save_ok(g, good, 0, NULL);
	ret = restore_key(good, 2 * TH_MIB, 0, key_a, &r);
	cr_assert_eq(ret, -EINVAL, "restore with a key: %d (%s)", ret, gmem_last_error());
	cr_assert_null(r);
	cr_assert(strstr(gmem_last_error(), "not sealed"), "message: %s", gmem_last_error());
	TH_EQ(verify_key(good, key_a, &in), -EINVAL);
	TH_EQ(gmem_snapshot_inspect(good, 0, &(struct gmem_snapshot_opts){ .key = key_a }, &in),
	      -EINVAL);
	gmem_close(g);
	snap_rmdir(dir);
}

/* ---- the command line: --key-file ----------------------------------------- */

static const char key_hex[] =
	"4b1e9307aa52c83d61f02e9915b748d60c7ae358269f41bd836ec512fa37902b";

/* A key file of @mode holding key_a in hex and a newline. */
static const char *key_file(const char *dir, const char *name, mode_t mode, unsigned slot)
{
	const char *path = snap_file(dir, name, slot);

	snap_spit(path, key_hex, strlen(key_hex));
	{
		FILE *f = fopen(path, "ae");

		cr_assert_not_null(f);
		fputc('\n', f);
		fclose(f);
	}
	cr_assert_eq(chmod(path, mode), 0);
	return path;
}

/* Run @argv (the CLI), stdout and stderr into @out; while it runs, read its
 * /proc cmdline and environ as often as possible: neither may hold the
 * key, in hex or raw. Returns the exit status. */
static int cli_run(char *const argv[], char *out, size_t size, unsigned *seen)
{
	char tmp[] = "/tmp/gmem-seal-cli-XXXXXX", proc[64];
	int fd = mkstemp(tmp), st;
	pid_t pid;
	ssize_t n;

	cr_assert_geq(fd, 0);
	unlink(tmp);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		execv(argv[0], argv);
		_exit(127);
	}
	for (;;) {
		static const char *const what[] = { "cmdline", "environ" };
		pid_t w = waitpid(pid, &st, WNOHANG);

		for (unsigned i = 0; i < 2 && !w; i++) {
			uint8_t buf[65536];
			size_t len;
			FILE *f;

			snprintf(proc, sizeof(proc), "/proc/%d/%s", (int)pid, what[i]);
			f = fopen(proc, "re");
			if (!f)
				continue;
			len = fread(buf, 1, sizeof(buf), f);
			fclose(f);
			if (!len)
				continue;
			(*seen)++;
			cr_assert(!contains(buf, len, key_hex, 16), "%s holds the key in hex", proc);
			cr_assert(!contains(buf, len, key_a, 8), "%s holds the key", proc);
		}
		if (w == pid)
			break;
	}
	n = pread(fd, out, size - 1, 0);
	out[n > 0 ? n : 0] = 0;
	close(fd);
	cr_assert(!strstr(out, key_hex) && !contains((uint8_t *)out, (size_t)(n > 0 ? n : 0),
						      key_a, 8), "the output holds the key:\n%s", out);
	cr_assert(WIFEXITED(st), "status %#x", st);
	return WEXITSTATUS(st);
}

Test(snapshot_seal, cli_key_file, .timeout = 120)
{
	const char *dir = snap_tmpdir(), *snap = snap_file(dir, "vm.snap", 0);
	char guest[256], out[16384];
	const char *key = key_file(dir, "key", 0600, 1);
	struct gmem_snapshot_info in;
	unsigned seen = 0;
	uint8_t *buf;
	size_t len;

	snprintf(guest, sizeof(guest), "%s/snapvm.elf", GMEM_GUEST_DIR);
	char *save[] = { GMEM_CLI, "vm", "--accel", "user", "--save-at", "0", (char *)snap,
			 "--key-file", (char *)key, guest, NULL };
	char *verify[] = { GMEM_CLI, "snapshot", "verify", "--key-file", (char *)key,
			   (char *)snap, NULL };
	char *restore[] = { GMEM_CLI, "vm", "--accel", "user", "--restore", (char *)snap,
			    "--key-file", (char *)key, NULL };
	char *restore_nokey[] = { GMEM_CLI, "vm", "--accel", "user", "--restore", (char *)snap,
				  NULL };

	/* The guest may end before the save pauses it: try again. */
	for (unsigned i = 0; i < 50; i++) {
		int st = cli_run(save, out, sizeof(out), &seen);

		if (!strstr(out, "has stopped already")) {
			cr_assert_eq(st, 0, "output:\n%s", out);
			break;
		}
	}
	if (strstr(out, "has stopped already"))
		cr_skip_test("the guest always ended before the save could pause it");
	cr_assert(strstr(out, "vm: saved "), "output:\n%s", out);
	buf = snap_slurp(snap, &len);
	TH_EQ(((struct gm_snap_header2 *)buf)->major, GM_SNAP_V2_MAJOR);
	cr_assert(((struct gm_snap_header2 *)buf)->flags & GM_SNAP_HDR_SEALED);
	free(buf);
	/* The key file's key is key_a: the library opens the file with it. */
	TH_EQ(verify_key(snap, key_a, &in), 0);
	TH_EQ(cli_run(verify, out, sizeof(out), &seen), 0);
	cr_assert(strstr(out, ": ok: "), "output:\n%s", out);
	TH_EQ(cli_run(restore, out, sizeof(out), &seen), 0);
	cr_assert(strstr(out, "verified 12 passes"), "output:\n%s", out);
	cr_assert_null(strstr(out, "FAIL"), "output:\n%s", out);
	TH_EQ(cli_run(restore_nokey, out, sizeof(out), &seen), 1);
	cr_assert(strstr(out, "sealed"), "output:\n%s", out);
	/* Raw 32 bytes work too; another key is refused. */
	snap_spit(key, key_b, sizeof(key_b));
	TH_EQ(cli_run(verify, out, sizeof(out), &seen), 1);
	cr_assert(strstr(out, "wrong key"), "output:\n%s", out);
	/* A key file others may read: refused in one line, nothing read. */
	key = key_file(dir, "key", 0644, 1);
	verify[4] = (char *)key;
	TH_EQ(cli_run(verify, out, sizeof(out), &seen), 1);
	cr_assert(strstr(out, "mode 0644") && strchr(out, '\n') == out + strlen(out) - 1,
		  "output:\n%s", out);
	cr_assert_gt(seen, 0, "never caught the CLI running");
	cr_log_info("read the CLI's cmdline and environ %u times", seen);
	snap_rmdir(dir);
}

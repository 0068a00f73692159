// SPDX-License-Identifier: MIT
/*
 * test_snapshot_chain.c - write tracking (GMEM_F_TRACK_WRITES) and
 * incremental snapshots: suite snapshot_chain.
 *
 * A tracked memory is saved in full, changed through every path that can
 * write guest memory, and saved against that file; the second file must
 * hold exactly the pages changed, and the chain must restore (eager and
 * lazy) to the memory byte for byte with every page state. Chains whose
 * parents are missing, replaced or edited are refused (-ESTALE).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <xxhash.h>

#include "snapshot/snap.h"
#include "snap_th.h"

#define CH_SIZE (8 * TH_MIB)

static struct gmem *ch_open(unsigned flags)
{
	struct gmem_config cfg = { .size = CH_SIZE, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1,
				   .flags = GMEM_F_TRACK_WRITES | flags };
	struct gmem *g = NULL;
	struct gmem_info in;
	int ret = gmem_open(&cfg, &g);

	cr_assert_eq(ret, 0, "gmem_open: %s", gmem_strerror(ret));
	gmem_info(g, &in);
	if (in.track != GMEM_TRACK_PAGEMAP) {
		gmem_close(g);
		cr_skip_test("this kernel lacks UFFD_FEATURE_WP_ASYNC or PAGEMAP_SCAN "
			     "(Linux 6.7): gmem_info().track is %d", in.track);
	}
	return g;
}

static int ch_save(struct gmem *g, const char *path, const char *parent)
{
	struct gmem_snapshot_opts o = { .parent = parent };

	return gmem_snapshot_save_ex(g, path, &o);
}

static struct gmem_snapshot_info ch_info(const char *path)
{
	struct gmem_snapshot_info in;
	int ret = gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, NULL, &in);

	cr_assert_eq(ret, 0, "inspect %s: %s (%s)", path, gmem_strerror(ret), gmem_last_error());
	return in;
}

static void ch_expect_restores(struct gmem *g, const char *path, unsigned flags)
{
	struct gmem_snapshot_opts o = { .flags = flags };
	struct gmem *r = NULL;
	int ret = gmem_snapshot_restore_ex(path, NULL, &o, &r);

	cr_assert_eq(ret, 0, "restore %s (flags %#x): %s (%s)", path, flags, gmem_strerror(ret),
		     gmem_last_error());
	if (flags & GMEM_SNAP_LAZY)
		TH_EQ(gmem_snapshot_lazy_wait(r), 0);
	snap_expect_same(g, r);
	gmem_close(r);
}

/* Every path a page can change by, one page each: the new file holds
 * exactly those pages. */
Test(snapshot_chain, tracks_every_path_exactly)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a", 0), *b = snap_file(dir, "b", 1);
	struct gmem *g = ch_open(0);
	uint8_t *kv = gmem_kvm_view(g), *w;
	struct gmem_snapshot_info in;

	snap_randomize(g, 1, 50);
	TH_EQ(gmem_convert(g, 10 * TH_PAGE, TH_PAGE, GMEM_SHARED, NULL), 0);
	TH_EQ(ch_save(g, a, NULL), 0);
	in = ch_info(a);
	TH_EQ(in.incremental, 0);
	kv[3 * TH_PAGE + 5] ^= 0x5a;                                    /* KVM view  */
	((uint8_t *)gmem_host(g, 10 * TH_PAGE))[7] ^= 0xa5;             /* host view */
	TH_EQ(gmem_discard(g, 20 * TH_PAGE, TH_PAGE), 0);               /* discard   */
	w = gmem_kmap(g, 30 * TH_PAGE);                                 /* kmap      */
	cr_assert_not_null(w);
	w[9] = 0x77;
	gmem_kunmap(g, w);
	TH_EQ(gmem_convert(g, 40 * TH_PAGE, TH_PAGE,                    /* state     */
			   gmem_state(g, 40 * TH_PAGE) ? GMEM_PRIVATE : GMEM_SHARED, NULL), 0);
	TH_EQ(ch_save(g, b, a), 0);
	in = ch_info(b);
	TH_EQ(in.incremental, 1);
	TH_EQ(in.changed_pages, 5);
	cr_assert_str_eq(in.parent, a);
	cr_assert_leq(in.populated_bytes, 4 * TH_PAGE, "populated %llu",
		      (unsigned long long)in.populated_bytes);
	ch_expect_restores(g, b, 0);
	ch_expect_restores(g, b, GMEM_SNAP_LAZY);
	gmem_close(g);
	snap_rmdir(dir);
}

/* Random page writes, discards and conversions between saves. */
static void ch_churn(struct gmem *g, uint64_t *rng)
{
	uint8_t *kv = gmem_kvm_view(g);
	uint64_t npages = CH_SIZE / TH_PAGE;

	for (unsigned i = 0; i < 64; i++) {
		uint64_t p;

		*rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
		p = (*rng >> 17) % npages;
		switch ((*rng >> 7) % 8) {
		case 0:
			TH_EQ(gmem_discard(g, p * TH_PAGE, TH_PAGE), 0);
			break;
		case 1:
			TH_EQ(gmem_convert(g, p * TH_PAGE, TH_PAGE, (*rng >> 3) & 1 ? GMEM_SHARED
						  : GMEM_PRIVATE, NULL), 0);
			break;
		default:
			memset(kv + p * TH_PAGE + (*rng >> 40) % 4000, (int)(*rng >> 50), 64);
		}
	}
}

static void ch_chain(unsigned layers)
{
	const char *dir = snap_tmpdir();
	struct gmem *g = ch_open(0);
	uint64_t rng = layers;
	char name[2][32];
	const char *prev = NULL;

	snap_randomize(g, layers, 60);
	for (unsigned i = 0; i < layers; i++) {
		const char *f;

		snprintf(name[i % 2], sizeof(name[0]), "layer%u", i);
		f = snap_file(dir, name[i % 2], i % 2);
		struct gmem_snapshot_info in;

		if (i)
			ch_churn(g, &rng);
		TH_EQ(ch_save(g, f, prev), 0);
		in = ch_info(f);
		TH_EQ(in.incremental, i > 0);
		ch_expect_restores(g, f, 0);
		ch_expect_restores(g, f, GMEM_SNAP_LAZY);
		prev = f;
	}
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_chain, one_layer) { ch_chain(1); }
Test(snapshot_chain, two_layers) { ch_chain(2); }
Test(snapshot_chain, ten_layers) { ch_chain(10); }

/* A child, its parent @a, and the memory they came from. */
static struct gmem *ch_pair(const char *a, const char *b)
{
	struct gmem *g = ch_open(0);
	uint64_t rng = 7;

	snap_randomize(g, 3, 40);
	TH_EQ(ch_save(g, a, NULL), 0);
	ch_churn(g, &rng);
	TH_EQ(ch_save(g, b, a), 0);
	return g;
}

static void ch_expect_refused(const char *path, int err, const char *says)
{
	struct gmem *r = (struct gmem *)&r;
	unsigned fds = snap_open_fds();
	int ret = gmem_snapshot_restore(path, NULL, &r);

	TH_EQ(ret, err);
	cr_assert_eq(r, (struct gmem *)&r, "*out written on failure");
	cr_assert(strstr(gmem_last_error(), says), "message '%s' lacks '%s'", gmem_last_error(),
		  says);
	TH_EQ(snap_open_fds(), fds);
}

Test(snapshot_chain, missing_parent_is_refused)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a", 0), *b = snap_file(dir, "b", 1);
	struct gmem *g = ch_pair(a, b);

	TH_EQ(unlink(a), 0);
	ch_expect_refused(b, -ESTALE, a);
	gmem_close(g);
	snap_rmdir(dir);
}

/* The parent's path holds another snapshot (saved again, or another one
 * copied over it): its identity is not the one recorded. */
Test(snapshot_chain, replaced_parent_is_refused)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a", 0), *b = snap_file(dir, "b", 1);
	struct gmem *g = ch_pair(a, b), *h = ch_open(0);

	snap_randomize(h, 3, 40);       /* the same contents, another file */
	TH_EQ(gmem_snapshot_save(h, a, 0), 0);
	ch_expect_refused(b, -ESTALE, "not the file it was saved against");
	gmem_close(h);
	gmem_close(g);
	snap_rmdir(dir);
}

/* Flip one byte of the first raw DATA chunk of the v2 file in @f and fix
 * that chunk's hash; with @fix_end also the END digest and hash, so the
 * file is consistent again and only its identity tells. */
static void ch_edit(uint8_t *f, size_t len, bool fix_end)
{
	size_t pos = sizeof(struct gm_snap_header2), nh = 0;
	uint8_t *heads = malloc(len);
	bool done = false;

	cr_assert_not_null(heads);
	for (uint64_t index = 0;; index++) {
		struct gm_snap_chunk c;

		cr_assert_leq(pos + sizeof(c), len);
		memcpy(&c, f + pos, sizeof(c));
		if (c.type == GM_SNAP_END) {
			struct gm_snap_end2 e;

			if (!fix_end)
				break;
			memcpy(&e, f + pos + sizeof(c), sizeof(e));
			e.digest = XXH3_64bits(heads, nh);
			memcpy(f + pos + sizeof(c), &e, sizeof(e));
			c.hash = gm_snap_chunk_hash(&c, e.chunks, &e);
			memcpy(f + pos, &c, sizeof(c));
			break;
		}
		if (!done && c.type == GM_SNAP_DATA && !(c.flags & GM_SNAP_CHUNK_ZSTD)) {
			f[pos + sizeof(c) + 100] ^= 1;
			c.hash = gm_snap_chunk_hash(&c, index, f + pos + sizeof(c));
			memcpy(f + pos, &c, sizeof(c));
			done = true;
		}
		memcpy(heads + nh, &c, sizeof(c));
		nh += sizeof(c);
		pos += sizeof(c) + c.stored_len;
	}
	cr_assert(done, "no raw data chunk to edit");
	free(heads);
}

static void ch_edited(bool fix_end, int err, const char *says)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a", 0), *b = snap_file(dir, "b", 1);
	struct gmem *g = ch_pair(a, b);
	size_t len;
	uint8_t *f = snap_slurp(a, &len);

	ch_edit(f, len, fix_end);
	snap_spit(a, f, len);
	free(f);
	ch_expect_refused(b, err, says);
	gmem_close(g);
	snap_rmdir(dir);
}

/* The chunk's hash fixed, not the digest of the chunk headers: the walk of
 * the parent refuses it. */
Test(snapshot_chain, edited_parent_is_refused) { ch_edited(false, -EINVAL, "digest"); }
/* A consistent forgery of the parent: only its identity gives it away. */
Test(snapshot_chain, forged_parent_is_refused)
{
	ch_edited(true, -ESTALE, "not the file it was saved against");
}

/* Saving against a file that is not the memory's last: refused, and no
 * file appears. */
Test(snapshot_chain, save_against_an_older_file_is_refused)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a", 0), *b = snap_file(dir, "b", 1);
	const char *c = snap_file(dir, "c", 2);
	struct gmem *g = ch_pair(a, b);

	TH_EQ(ch_save(g, c, a), -ESTALE);
	cr_assert(strstr(gmem_last_error(), "not the last snapshot"), "%s", gmem_last_error());
	cr_assert_neq(access(c, F_OK), 0, "%s was written", c);
	/* And the memory still knows its baseline: against b it works. */
	TH_EQ(ch_save(g, c, b), 0);
	ch_expect_restores(g, c, 0);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_chain, parent_needs_a_tracked_memory)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a", 0), *b = snap_file(dir, "b", 1);
	struct gmem_config cfg = { .size = CH_SIZE, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1 };
	struct gmem *g = NULL;
	struct gmem_snapshot_opts o = { .parent = a };

	TH_EQ(gmem_open(&cfg, &g), 0);
	TH_EQ(gmem_snapshot_save(g, a, 0), 0);
	TH_EQ(gmem_snapshot_save_ex(g, b, &o), -EINVAL);
	TH_EQ(gmem_snapshot_restore_ex(a, NULL, &o, &g), -EINVAL);
	gmem_close(g);
	snap_rmdir(dir);
}

/* No baseline yet (never saved): the file is a full one, not a diff. */
Test(snapshot_chain, first_save_is_full)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a", 0), *b = snap_file(dir, "b", 1);
	struct gmem *g = ch_open(0), *h = ch_open(0);

	snap_randomize(g, 5, 30);
	TH_EQ(gmem_snapshot_save(h, a, 0), 0);
	TH_EQ(ch_save(g, b, a), 0);     /* a is h's, and g has none */
	TH_EQ(ch_info(b).incremental, 0);
	ch_expect_restores(g, b, 0);
	gmem_close(h);
	gmem_close(g);
	snap_rmdir(dir);
}

/* Run @cmd, its output into @out: the exit status. */
static int ch_sh(const char *cmd, char *out, size_t len)
{
	FILE *p = popen(cmd, "r");
	size_t n;
	int st;

	cr_assert_not_null(p);
	n = fread(out, 1, len - 1, p);
	out[n] = 0;
	st = pclose(p);
	cr_assert(WIFEXITED(st), "%s: status %#x", cmd, st);
	return WEXITSTATUS(st);
}

/* gmem snapshot info shows the chain; merge flattens it into a full file
 * that restores to the same memory without the chain; a broken chain
 * fails the merge with one line naming the parent. */
Test(snapshot_chain, cli_info_and_merge)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a", 0), *b = snap_file(dir, "b", 1);
	const char *m = snap_file(dir, "merged", 2);
	struct gmem *g = ch_pair(a, b);
	char cmd[1024], out[8192];

	snprintf(cmd, sizeof(cmd), "%s snapshot info %s 2>&1", GMEM_CLI, b);
	TH_EQ(ch_sh(cmd, out, sizeof(out)), 0);
	cr_assert(strstr(out, "pages changed since its parent") && strstr(out, "chain") &&
		  strstr(out, "(the chain's base)") && strstr(out, a), "output:\n%s", out);
	snprintf(cmd, sizeof(cmd), "%s snapshot merge --quiet %s %s 2>&1", GMEM_CLI, b, m);
	TH_EQ(ch_sh(cmd, out, sizeof(out)), 0);
	TH_EQ(ch_info(m).incremental, 0);
	TH_EQ(unlink(a), 0);
	ch_expect_restores(g, m, 0);
	snprintf(cmd, sizeof(cmd), "%s snapshot merge --quiet %s %s.2 2>&1", GMEM_CLI, b, m);
	TH_EQ(ch_sh(cmd, out, sizeof(out)), 1);
	cr_assert(strstr(out, "merge: ") && strstr(out, a) && !strchr(strchr(out, '\n') + 1, '\n'),
		  "output:\n%s", out);
	gmem_close(g);
	snap_rmdir(dir);
}

/* ---- hostile incremental files: every v2 rule, checksums made right ---- */

struct v2_chunk {
	struct gm_snap_chunk c;
	uint8_t *p;
};

struct v2_file {
	struct gm_snap_header2 h;
	struct v2_chunk ch[64];
	size_t n;               /* END last */
};

static void v2_load(struct v2_file *e, const char *path)
{
	size_t len, pos = sizeof(e->h);
	uint8_t *f = snap_slurp(path, &len);

	memset(e, 0, sizeof(*e));
	memcpy(&e->h, f, sizeof(e->h));
	TH_EQ(e->h.major, 2);
	for (;;) {
		struct v2_chunk *k = &e->ch[e->n++];

		cr_assert_lt(e->n, 64, "too many chunks for this editor");
		memcpy(&k->c, f + pos, sizeof(k->c));
		pos += sizeof(k->c);
		k->p = malloc(k->c.stored_len + 1);
		memcpy(k->p, f + pos, k->c.stored_len);
		pos += k->c.stored_len;
		if (k->c.type == GM_SNAP_END)
			break;
	}
	free(f);
}

/* Write @e with the header hash, every chunk hash, the END digest, chunk
 * count and hash, and the footer made consistent again. */
static void v2_save(struct v2_file *e, const char *path)
{
	size_t size = sizeof(e->h) + 16, off = 0;
	struct v2_chunk *end = &e->ch[e->n - 1];
	struct gm_snap_end2 *en = (struct gm_snap_end2 *)end->p;
	uint8_t heads[64 * 32], *f;
	struct gm_snap_footer ft = { 0 };

	e->h.hash = gm_snap_header2_hash(&e->h);
	for (size_t i = 0; i + 1 < e->n; i++) {
		e->ch[i].c.hash = gm_snap_chunk_hash(&e->ch[i].c, i, e->ch[i].p);
		memcpy(heads + i * 32, &e->ch[i].c, 32);
	}
	en->chunks = e->n - 1;
	en->digest = XXH3_64bits(heads, (e->n - 1) * 32);
	end->c.hash = gm_snap_chunk_hash(&end->c, en->chunks, end->p);
	for (size_t i = 0; i < e->n; i++)
		size += sizeof(e->ch[i].c) + e->ch[i].c.stored_len;
	f = malloc(size);
	memcpy(f, &e->h, sizeof(e->h));
	off = sizeof(e->h);
	for (size_t i = 0; i < e->n; i++) {
		if (i == e->n - 1)
			ft.end_offset = off;
		memcpy(f + off, &e->ch[i].c, sizeof(e->ch[i].c));
		off += sizeof(e->ch[i].c);
		memcpy(f + off, e->ch[i].p, e->ch[i].c.stored_len);
		off += e->ch[i].c.stored_len;
	}
	memcpy(ft.magic, GM_SNAP_END_MAGIC, sizeof(ft.magic));
	memcpy(f + off, &ft, sizeof(ft));
	snap_spit(path, f, size);
	free(f);
	for (size_t i = 0; i < e->n; i++)
		free(e->ch[i].p);
}

static size_t v2_find(const struct v2_file *e, uint32_t type)
{
	for (size_t i = 0; i < e->n; i++)
		if (e->ch[i].c.type == type)
			return i;
	cr_assert_fail("no chunk of type %u", type);
	return 0;
}

/* A valid child @b of @a, edited by @edit, then restored and verified:
 * both refuse it with -EINVAL and a message holding @says. */
static void v2_hostile(void (*edit)(struct v2_file *e), const char *says)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a", 0), *b = snap_file(dir, "b", 1);
	struct gmem *g = ch_pair(a, b);
	struct gmem_snapshot_info in;
	struct v2_file e;

	v2_load(&e, b);
	edit(&e);
	v2_save(&e, b);
	TH_EQ(gmem_snapshot_inspect(b, GMEM_SNAP_VERIFY, NULL, &in), -EINVAL);
	cr_assert(strstr(gmem_last_error(), says), "verify: '%s' lacks '%s'", gmem_last_error(),
		  says);
	ch_expect_refused(b, -EINVAL, says);
	gmem_close(g);
	snap_rmdir(dir);
}

/* The control: the editor alone leaves a valid file. */
static void v2_nothing(struct v2_file *e) { (void)e; }
Test(snapshot_chain, editor_keeps_a_valid_file)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a", 0), *b = snap_file(dir, "b", 1);
	struct gmem *g = ch_pair(a, b);
	struct v2_file e;

	v2_load(&e, b);
	v2_nothing(&e);
	v2_save(&e, b);
	ch_expect_restores(g, b, 0);
	gmem_close(g);
	snap_rmdir(dir);
}

/* DATA for a page the file says did not change would overwrite the
 * parent's page with bytes nothing accounted for. */
static void v2_data_unchanged(struct v2_file *e)
{
	size_t i = v2_find(e, GM_SNAP_CHANGED);
	uint64_t *runs = (uint64_t *)e->ch[i].p;

	for (size_t r = 0; r < e->ch[i].c.raw_len / 8; r++)
		runs[r] &= ~1ull;       /* nothing changed, data still there */
	((struct gm_snap_end2 *)e->ch[e->n - 1].p)->changed_pages = 0;
}
Test(snapshot_chain, data_on_unchanged_pages_is_refused)
{
	v2_hostile(v2_data_unchanged, "do not mark changed");
}

static void v2_parent_second(struct v2_file *e)
{
	struct v2_chunk t = e->ch[0];

	e->ch[0] = e->ch[1];
	e->ch[1] = t;
}
Test(snapshot_chain, parent_chunk_not_first_is_refused)
{
	v2_hostile(v2_parent_second, "parent chunk");
}

static void v2_no_parent_flag(struct v2_file *e)
{
	e->h.flags &= ~GM_SNAP_HDR_PARENT;
	memset(e->h.parent_id, 0, sizeof(e->h.parent_id));
	((struct gm_snap_end2 *)e->ch[e->n - 1].p)->changed_pages = 0;
}
Test(snapshot_chain, parent_chunk_without_the_flag_is_refused)
{
	v2_hostile(v2_no_parent_flag, "without a parent");
}

static void v2_nul_in_path(struct v2_file *e)
{
	e->ch[0].p[0] = 0;
}
Test(snapshot_chain, parent_path_with_nul_is_refused)
{
	v2_hostile(v2_nul_in_path, "NUL");
}

/* The last CHANGED run one page short: the runs do not cover the memory. */
static void v2_changed_short(struct v2_file *e)
{
	size_t i = v2_find(e, GM_SNAP_CHANGED);
	uint64_t *runs = (uint64_t *)e->ch[i].p, *last = &runs[e->ch[i].c.raw_len / 8 - 1];

	cr_assert_gt(*last >> 1, 1);
	if (*last & 1)
		((struct gm_snap_end2 *)e->ch[e->n - 1].p)->changed_pages--;
	*last -= 2;
}
Test(snapshot_chain, changed_runs_short_of_the_memory_are_refused)
{
	v2_hostile(v2_changed_short, "changed runs cover");
}

static void v2_changed_total(struct v2_file *e)
{
	((struct gm_snap_end2 *)e->ch[e->n - 1].p)->changed_pages++;
}
Test(snapshot_chain, changed_pages_total_is_checked)
{
	v2_hostile(v2_changed_total, "changed_pages");
}

/* CHANGED before STATES are complete. */
static void v2_changed_first(struct v2_file *e)
{
	size_t i = v2_find(e, GM_SNAP_CHANGED);
	struct v2_chunk t = e->ch[i];

	e->ch[i] = e->ch[1];
	e->ch[1] = t;
}
Test(snapshot_chain, changed_before_states_is_refused)
{
	v2_hostile(v2_changed_first, "page states cover");
}

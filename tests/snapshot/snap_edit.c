// SPDX-License-Identifier: MIT
/*
 * snap_edit.c - the snapshot editor of the damage tests (snap_edit.h).
 *
 * It parses with no checks beyond what it needs to find the chunks (it
 * loads files the library wrote), and writes with the format's own hash
 * functions, so a file it writes differs from a valid one only where the
 * test changed it.
 */
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "snap_edit.h"
#include "snap_th.h"

static void snap_ed_push(struct snap_ed *e, const struct gm_snap_chunk *c, const void *p)
{
	struct snap_ed_chunk *k;

	if (e->n == e->cap) {
		e->cap = e->cap ? 2 * e->cap : 16;
		e->ch = realloc(e->ch, e->cap * sizeof(*e->ch));
		cr_assert_not_null(e->ch);
	}
	k = &e->ch[e->n++];
	k->c = *c;
	k->p = malloc(c->stored_len ? c->stored_len : 1);
	cr_assert_not_null(k->p);
	memcpy(k->p, p, c->stored_len);
}

void snap_ed_load(struct snap_ed *e, const char *path)
{
	size_t len, pos;
	uint8_t *buf = snap_slurp(path, &len);
	uint16_t major;

	memset(e, 0, sizeof(*e));
	cr_assert_geq(len, sizeof(e->h) + sizeof(e->f), "%s: %zu bytes", path, len);
	memcpy(&e->h, buf, sizeof(e->h));
	memcpy(&major, buf + 8, sizeof(major));
	e->hsize = major == GM_SNAP_V2_MAJOR ? sizeof(e->h2) : sizeof(e->h);
	if (e->hsize == sizeof(e->h2)) {
		cr_assert_geq(len, sizeof(e->h2) + sizeof(e->f), "%s: %zu bytes", path, len);
		memcpy(&e->h2, buf, sizeof(e->h2));
	}
	pos = e->hsize;
	for (;;) {
		struct gm_snap_chunk c;

		cr_assert_leq(pos + sizeof(c), len, "%s: chunk header past the end", path);
		memcpy(&c, buf + pos, sizeof(c));
		pos += sizeof(c);
		cr_assert_leq(pos + c.stored_len, len, "%s: payload past the end", path);
		snap_ed_push(e, &c, buf + pos);
		pos += c.stored_len;
		if (c.type == GM_SNAP_END)
			break;
	}
	TH_EQ(pos + sizeof(e->f), len);
	memcpy(&e->f, buf + pos, sizeof(e->f));
	free(buf);
}

void snap_ed_free(struct snap_ed *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->ch[i].p);
	free(e->ch);
	memset(e, 0, sizeof(*e));
}

struct gm_snap_end *snap_ed_end(struct snap_ed *e)
{
	struct snap_ed_chunk *k = &e->ch[e->n - 1];

	cr_assert_eq(k->c.type, GM_SNAP_END, "last chunk is not END");
	cr_assert_geq(k->c.stored_len, sizeof(struct gm_snap_end));
	return (struct gm_snap_end *)k->p;
}

static void snap_ed_fix_end(struct snap_ed *e)
{
	struct gm_snap_end *end = snap_ed_end(e), t = { .chunks = e->n - 1 };

	for (size_t i = 0; i + 1 < e->n; i++) {
		const struct snap_ed_chunk *k = &e->ch[i];

		if (k->c.type == GM_SNAP_STATES) {
			const uint64_t *runs = (const uint64_t *)k->p;

			t.runs += k->c.stored_len / 8;
			for (size_t r = 0; r < k->c.stored_len / 8; r++)
				t.shared_pages += runs[r] & 1 ? runs[r] >> 1 : 0;
		} else if (k->c.type == GM_SNAP_DATA) {
			t.data_chunks++;
			t.populated += k->c.raw_len;
			t.stored += k->c.stored_len;
		}
	}
	*end = t;
}

static uint64_t snap_ed_size(const struct snap_ed *e, size_t upto)
{
	uint64_t off = e->hsize;

	for (size_t i = 0; i < upto; i++)
		off += sizeof(e->ch[i].c) + e->ch[i].c.stored_len;
	return off;
}

static void snap_ed_fix_hash(struct snap_ed *e)
{
	e->h.hash = gm_snap_header_hash(&e->h);
	if (e->hsize == sizeof(e->h2))
		e->h2.hash = gm_snap_header2_hash(&e->h2);
	for (size_t i = 0; i < e->n; i++) {
		struct snap_ed_chunk *k = &e->ch[i];
		/* A reader hashes END with the count its payload records. */
		uint64_t index = i;

		if (k->c.type == GM_SNAP_END && k->c.stored_len >= sizeof(struct gm_snap_end))
			index = ((const struct gm_snap_end *)k->p)->chunks;
		/* Version 2: END's digest covers the chunk headers before it. */
		if (k->c.type == GM_SNAP_END && e->hsize == sizeof(e->h2) &&
		    k->c.stored_len >= sizeof(struct gm_snap_end2)) {
			uint64_t dig;
			XXH3_state_t *x = XXH3_createState();

			cr_assert_not_null(x);
			XXH3_64bits_reset(x);
			for (size_t j = 0; j < i; j++)
				XXH3_64bits_update(x, &e->ch[j].c, sizeof(e->ch[j].c));
			dig = XXH3_64bits_digest(x);
			XXH3_freeState(x);
			memcpy(k->p + offsetof(struct gm_snap_end2, digest), &dig, sizeof(dig));
		}
		k->c.hash = gm_snap_chunk_hash(&k->c, index, k->p);
	}
}

void snap_ed_fix(struct snap_ed *e, unsigned fix)
{
	if (fix & SNAP_ED_FIX_END)
		snap_ed_fix_end(e);
	if (fix & SNAP_ED_FIX_FOOTER)
		e->f.end_offset = snap_ed_size(e, e->n - 1);
	if (fix & SNAP_ED_FIX_HASH)
		snap_ed_fix_hash(e);
}

void snap_ed_save(struct snap_ed *e, const char *path, unsigned fix)
{
	uint64_t size = snap_ed_size(e, e->n) + sizeof(e->f), off;
	uint8_t *buf;

	snap_ed_fix(e, fix);
	buf = malloc(size);
	cr_assert_not_null(buf);
	if (e->hsize == sizeof(e->h2))
		memcpy(buf, &e->h2, sizeof(e->h2));
	else
		memcpy(buf, &e->h, sizeof(e->h));
	off = e->hsize;
	for (size_t i = 0; i < e->n; i++) {
		memcpy(buf + off, &e->ch[i].c, sizeof(e->ch[i].c));
		off += sizeof(e->ch[i].c);
		memcpy(buf + off, e->ch[i].p, e->ch[i].c.stored_len);
		off += e->ch[i].c.stored_len;
	}
	memcpy(buf + off, &e->f, sizeof(e->f));
	snap_spit(path, buf, size);
	free(buf);
}

size_t snap_ed_find(const struct snap_ed *e, uint32_t type, uint32_t flags, unsigned nth)
{
	for (size_t i = 0; i < e->n; i++)
		if (e->ch[i].c.type == type && (e->ch[i].c.flags & flags) == flags && !nth--)
			return i;
	cr_assert_fail("no chunk of type %u with flags %#x (wanted one more)", type, flags);
	return 0;
}

void snap_ed_dup(struct snap_ed *e, size_t from, size_t at)
{
	struct snap_ed_chunk k;

	cr_assert_lt(from, e->n);
	cr_assert_leq(at, e->n);
	snap_ed_push(e, &e->ch[from].c, e->ch[from].p);
	k = e->ch[e->n - 1];
	memmove(&e->ch[at + 1], &e->ch[at], (e->n - 1 - at) * sizeof(k));
	e->ch[at] = k;
}

void snap_ed_remove(struct snap_ed *e, size_t at)
{
	cr_assert_lt(at, e->n);
	free(e->ch[at].p);
	memmove(&e->ch[at], &e->ch[at + 1], (e->n - at - 1) * sizeof(e->ch[0]));
	e->n--;
}

void snap_ed_swap(struct snap_ed *e, size_t a, size_t b)
{
	struct snap_ed_chunk k = e->ch[a];

	e->ch[a] = e->ch[b];
	e->ch[b] = k;
}

void snap_ed_set_payload(struct snap_ed *e, size_t i, const void *p, size_t len)
{
	struct snap_ed_chunk *k = &e->ch[i];

	free(k->p);
	k->p = malloc(len ? len : 1);
	cr_assert_not_null(k->p);
	if (len)
		memcpy(k->p, p, len);
	k->c.stored_len = (uint32_t)len;
}

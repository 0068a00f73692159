/* SPDX-License-Identifier: MIT */
/*
 * snap_edit.h - a snapshot file editor for the structural damage tests.
 *
 * The checksums of the format catch accidents; a hostile file comes with
 * checksums that match. So to prove the checks behind them (field ranges,
 * run lengths, chunk order, sizes), a test loads a valid snapshot into
 * this editor, changes any field, payload or the chunk sequence, and
 * writes it back with every checksum, the END totals and the footer made
 * consistent again (each fix-up can be left out, to test it too).
 */
#ifndef SNAP_EDIT_H
#define SNAP_EDIT_H

#include <stddef.h>
#include <stdint.h>

#include "snapshot/snap.h"

struct snap_ed_chunk {
	struct gm_snap_chunk c;
	uint8_t *p;             /* c.stored_len bytes, malloc'ed               */
};

struct snap_ed {
	struct gm_snap_header h;        /* version 1 files                     */
	struct gm_snap_header2 h2;      /* version 2 files (hsize 128)         */
	size_t hsize;                   /* header bytes as loaded: 64 or 128   */
	struct snap_ed_chunk *ch;   /* every chunk in file order, END last     */
	size_t n, cap;
	struct gm_snap_footer f;
};

/* What snap_ed_save() recomputes. */
#define SNAP_ED_FIX_HASH   (1u << 0)   /* header hash and every chunk hash   */
#define SNAP_ED_FIX_END    (1u << 1)   /* END totals from the chunks before  */
#define SNAP_ED_FIX_FOOTER (1u << 2)   /* footer: offset of the last chunk   */
#define SNAP_ED_FIX_ALL    (SNAP_ED_FIX_HASH | SNAP_ED_FIX_END | SNAP_ED_FIX_FOOTER)

/* Load the valid snapshot at @path (fails the test if it is not one). */
void snap_ed_load(struct snap_ed *e, const char *path);
void snap_ed_free(struct snap_ed *e);
/* Write @e to @path, after the fix-ups in @fix (in the order END totals,
 * footer, hashes, so the hashes cover the fixed totals). A version 2 file
 * keeps its 128-byte header; its END digest is remade with the hashes. */
void snap_ed_save(struct snap_ed *e, const char *path, unsigned fix);
/* The same fix-ups, in @e only. */
void snap_ed_fix(struct snap_ed *e, unsigned fix);

/* Index of the @nth (0-based) chunk of @type whose flags include all of
 * @flags; fails the test when there is none. */
size_t snap_ed_find(const struct snap_ed *e, uint32_t type, uint32_t flags, unsigned nth);
/* Insert a copy of chunk @from (header and payload) before index @at. */
void snap_ed_dup(struct snap_ed *e, size_t from, size_t at);
void snap_ed_remove(struct snap_ed *e, size_t at);
void snap_ed_swap(struct snap_ed *e, size_t a, size_t b);
/* Replace the payload of chunk @i (sets stored_len, not raw_len). */
void snap_ed_set_payload(struct snap_ed *e, size_t i, const void *p, size_t len);
/* The END payload (the last chunk's). */
struct gm_snap_end *snap_ed_end(struct snap_ed *e);

#endif /* SNAP_EDIT_H */

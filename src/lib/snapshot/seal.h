/* SPDX-License-Identifier: MIT */
/*
 * seal.h - sealed snapshot files: every chunk's payload under an AEAD
 * (docs/snapshot-format.md, "Sealed files").
 *
 * Model: a file sealed with a user key K has its own subkey
 *   S = BLAKE2b-256(key = K, "gmem-snapshot-v2" || file_id)
 * so nonces can be deterministic: chunk i's nonce is i (u64 LE, zeros
 * after). The associated data of chunk i is its header's first 24 bytes,
 * i (u64 LE) and the file header as stored, so a chunk cannot be changed,
 * moved, dropped or taken from another file. The header's seal field
 * (BLAKE2b-128 keyed with S over header bytes 0..87) tells a wrong key
 * apart before anything else is read. The END payload stays readable (its
 * totals) and is authenticated: its tag is that of an empty message whose
 * associated data also holds the 64 plain END bytes.
 *
 * A struct gm_seal lives in guarded memory (no core dump, no child); the
 * user key is wiped as soon as S is derived, S when the seal is freed.
 * After gm_seal_bind() it is only read: any thread may seal or open with it.
 */
#ifndef GM_SEAL_H
#define GM_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snap.h"

struct gm_seal;

/* Tests: the AEAD a sealed save uses (GM_SNAP_AEAD_NONE: AES-256-GCM
 * where the CPU has it, else XChaCha20-Poly1305). */
extern enum gm_snap_aead gm_seal_force_aead;

/* The AEAD a save with a key uses on this CPU. */
enum gm_snap_aead gm_seal_pick(void);
/* @n random bytes (a file_id). */
void gm_seal_random(void *p, size_t n);
/* The seal of user key @key (GMEM_SNAP_KEY_BYTES) for the file whose
 * header has @aead and @file_id: 0, -EINVAL (aead unknown) or -ENOMEM. */
int  gm_seal_new(const uint8_t *key, uint32_t aead, const uint8_t file_id[GM_SNAP_ID_BYTES],
		 struct gm_seal **out);
/* Wipe and free (NULL: nothing). */
void gm_seal_free(struct gm_seal *s);
/* The header field seal (GM_SNAP_SEAL_BYTES) of header bytes @hdr 0..87. */
void gm_seal_header(const struct gm_seal *s, const void *hdr, uint8_t seal[GM_SNAP_SEAL_BYTES]);
/* Does @seal match header bytes @hdr 0..87 (constant time)? */
bool gm_seal_header_ok(const struct gm_seal *s, const void *hdr,
		       const uint8_t seal[GM_SNAP_SEAL_BYTES]);
/* Bind the file header as stored (its seal and hash set): every chunk's
 * associated data holds it. Before any gm_seal_chunk or gm_seal_open. */
void gm_seal_bind(struct gm_seal *s, const void *hdr, size_t len);
/*
 * Seal chunk @c, number @index, whose header is final (stored_len =
 * @len + GM_SNAP_TAG_BYTES): @len plain bytes at @src become @len bytes of
 * ciphertext then the tag at @dst (@src may equal @dst, or lie in guest
 * memory). An END chunk's payload is copied as it is and the tag follows.
 */
void gm_seal_chunk(const struct gm_seal *s, const struct gm_snap_chunk *c, uint64_t index,
		   const uint8_t *src, uint8_t *dst, size_t len);
/*
 * Open chunk @c, number @index: its c->stored_len stored bytes at @src
 * (ciphertext, tag) become c->stored_len - GM_SNAP_TAG_BYTES plain bytes
 * at @dst (@dst may equal @src). 0, or -EBADMSG if the tag does not match
 * (@dst is then not to be used). END: checks the tag only, @dst unused.
 */
int  gm_seal_open(const struct gm_seal *s, const struct gm_snap_chunk *c, uint64_t index,
		  const uint8_t *src, uint8_t *dst);
/* @c as its payload reads once opened: stored_len without the tag. */
static inline struct gm_snap_chunk gm_seal_plain(const struct gm_snap_chunk *c)
{
	struct gm_snap_chunk p = *c;

	p.stored_len -= GM_SNAP_TAG_BYTES;
	return p;
}

#endif /* GM_SEAL_H */

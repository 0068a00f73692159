/* SPDX-License-Identifier: MIT */
/*
 * snap.h - the snapshot file format (docs/snapshot-format.md) and the
 * helpers shared by save, restore and inspect.
 *
 * Model: a snapshot is a 64-byte file header, a sequence of chunks (STATES,
 * then DATA, then one END), and a 16-byte footer. Every chunk carries a
 * 32-byte header whose XXH3 hash covers the header itself, the chunk's
 * position in the sequence and its stored payload; the file header has its
 * own hash; the footer points back at the END chunk. So any changed byte,
 * any truncation and any reordering of chunks is refused when read.
 *
 * All integers are little-endian on disk. The structures below are the
 * on-disk layout on little-endian hosts (x86-64, arm64); the build refuses
 * big-endian hosts rather than write files nobody else can read.
 */
#ifndef GM_SNAP_H
#define GM_SNAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

struct gm_in;
struct gm_seal;

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "snapshot format is little-endian; add byte swapping for this host"
#endif

#define GM_SNAP_MAGIC         "GMEMSNAP"
#define GM_SNAP_END_MAGIC     "GMEMEND1"
#define GM_SNAP_VERSION_MAJOR 1   /* plain files: written as before       */
#define GM_SNAP_VERSION_MINOR 0
#define GM_SNAP_V2_MAJOR      2   /* incremental, sealed or tracked files  */
#define GM_SNAP_V2_MINOR      0

/* Largest raw payload of one chunk: big enough that per-chunk costs vanish,
 * small enough that a chunk stays in cache between hashing and writing. */
#define GM_SNAP_CHUNK_MAX     (1u << 20)

/* File header flags. */
#define GM_SNAP_HDR_COMPRESSED (1u << 0)   /* saved with GM_SNAP_ZSTD_FLAGS  */
#define GM_SNAP_HDR_ALL        GM_SNAP_HDR_COMPRESSED
/* Version 2 only. */
#define GM_SNAP_HDR_PARENT     (1u << 1)   /* incremental: PARENT, CHANGED   */
#define GM_SNAP_HDR_SEALED     (1u << 2)   /* every payload AEAD-sealed      */
#define GM_SNAP_HDR2_ALL       (GM_SNAP_HDR_COMPRESSED | GM_SNAP_HDR_PARENT | \
				GM_SNAP_HDR_SEALED)

/* Version 2 header field aead. */
enum gm_snap_aead {
	GM_SNAP_AEAD_NONE = 0,
	GM_SNAP_AEAD_AES256GCM = 1,
	GM_SNAP_AEAD_XCHACHA20POLY1305 = 2,
};

#define GM_SNAP_ID_BYTES   16       /* file identity, file_id, parent_id   */
#define GM_SNAP_SEAL_BYTES 24       /* header field seal                   */
#define GM_SNAP_TAG_BYTES  16       /* AEAD tag after a sealed payload     */
#define GM_SNAP_PARENT_MAX 4095     /* longest recorded parent path        */
/* Longest chain a restore follows: deeper is refused, not recursed into. */
#define GM_SNAP_CHAIN_MAX  64

/* Save flags that ask for compression. */
#define GM_SNAP_ZSTD_FLAGS (GMEM_SNAP_COMPRESS | GMEM_SNAP_COMPRESS_ALL)

enum gm_snap_type {
	GM_SNAP_STATES = 1,     /* page-state runs                             */
	GM_SNAP_DATA = 2,       /* contents of populated pages                 */
	GM_SNAP_END = 3,        /* totals; last chunk                          */
	GM_SNAP_PARENT = 4,     /* v2: the parent's path; first chunk          */
	GM_SNAP_CHANGED = 5,    /* v2: runs of pages changed since the parent  */
};

/* Chunk flags. */
#define GM_SNAP_CHUNK_ZSTD    (1u << 0)    /* payload is one zstd frame       */

struct gm_snap_header {
	char magic[8];          /* GM_SNAP_MAGIC                               */
	uint16_t major, minor;  /* format version                              */
	uint32_t header_size;   /* sizeof(struct gm_snap_header)               */
	uint32_t page_size;     /* 4096                                        */
	uint32_t flags;         /* GM_SNAP_HDR_*                               */
	uint64_t mem_size;      /* bytes of guest memory                       */
	uint32_t backend;       /* enum gmem_backend of the saved memory       */
	uint32_t mem_flags;     /* GMEM_F_* the saved memory was opened with   */
	uint32_t chunk_max;     /* largest raw payload of any chunk            */
	uint32_t reserved0;     /* 0                                           */
	uint64_t reserved1;     /* 0                                           */
	uint64_t hash;          /* XXH3_64bits of the 56 bytes above           */
};

/* Version 2 file header: the first 48 bytes as version 1 (reserved0 is
 * aead), then the file's identity, its parent's, and the seal. */
struct gm_snap_header2 {
	char magic[8];
	uint16_t major, minor;  /* 2, 0                                        */
	uint32_t header_size;   /* 128                                         */
	uint32_t page_size;
	uint32_t flags;         /* GM_SNAP_HDR2_ALL                            */
	uint64_t mem_size;
	uint32_t backend;
	uint32_t mem_flags;
	uint32_t chunk_max;
	uint32_t aead;          /* enum gm_snap_aead, 0 unless SEALED          */
	uint64_t reserved1;     /* 0                                           */
	uint8_t file_id[GM_SNAP_ID_BYTES];      /* random, this file's own     */
	uint8_t parent_id[GM_SNAP_ID_BYTES];    /* PARENT: gm_snap_identity()
						 * of the parent; else 0      */
	uint8_t seal[GM_SNAP_SEAL_BYTES];       /* SEALED: key check; else 0   */
	uint64_t reserved2;     /* 0                                           */
	uint64_t hash;          /* XXH3_64bits of the 120 bytes above          */
};

/* A file header as read, whichever version: the fields of both, and the
 * bytes as stored (what identities and sealed chunks bind). */
struct gm_snap_hdr {
	uint16_t major, minor;
	uint32_t header_size;
	uint32_t page_size;
	uint32_t flags;
	uint64_t mem_size;
	uint32_t backend;
	uint32_t mem_flags;
	uint32_t chunk_max;
	uint32_t aead;
	uint8_t file_id[GM_SNAP_ID_BYTES];
	uint8_t parent_id[GM_SNAP_ID_BYTES];
	uint8_t seal[GM_SNAP_SEAL_BYTES];
	uint8_t raw[sizeof(struct gm_snap_header2)];    /* header_size bytes   */
};

struct gm_snap_chunk {
	uint32_t type;          /* enum gm_snap_type                           */
	uint32_t flags;         /* GM_SNAP_CHUNK_*                             */
	uint64_t first;         /* STATES: first page; DATA: gpa; END: 0       */
	uint32_t raw_len;       /* payload bytes once decompressed             */
	uint32_t stored_len;    /* payload bytes in the file                   */
	uint64_t hash;          /* see gm_snap_chunk_hash()                    */
};

/* Payload of the END chunk. */
struct gm_snap_end {
	uint64_t chunks;        /* chunks before END                           */
	uint64_t runs;          /* page-state runs                             */
	uint64_t shared_pages;
	uint64_t data_chunks;
	uint64_t populated;     /* raw bytes of page data                      */
	uint64_t stored;        /* stored bytes of page data                   */
};

/* Payload of the END chunk in version 2: version 1's, then two more. */
struct gm_snap_end2 {
	uint64_t chunks, runs, shared_pages, data_chunks, populated, stored;
	uint64_t changed_pages; /* PARENT: pages the CHANGED runs mark; else 0 */
	uint64_t digest;        /* XXH3_64bits of every chunk header before END,
				 * 32 bytes each, in file order                */
};

struct gm_snap_footer {
	uint64_t end_offset;    /* file offset of the END chunk header         */
	char magic[8];          /* GM_SNAP_END_MAGIC                           */
};

_Static_assert(sizeof(struct gm_snap_header) == 64, "file header is 64 bytes");
_Static_assert(sizeof(struct gm_snap_chunk) == 32, "chunk header is 32 bytes");
_Static_assert(sizeof(struct gm_snap_end) == 48, "END payload is 48 bytes");
_Static_assert(sizeof(struct gm_snap_footer) == 16, "footer is 16 bytes");
_Static_assert(sizeof(struct gm_snap_header2) == 128, "v2 file header is 128 bytes");
_Static_assert(sizeof(struct gm_snap_end2) == 64, "v2 END payload is 64 bytes");

/* A STATES run: bit 0 the state, bits 1..63 the number of pages. */
static inline uint64_t gm_snap_run(uint64_t pages, int state)
{
	return pages << 1 | (uint64_t)(state & 1);
}

uint64_t gm_snap_header_hash(const struct gm_snap_header *h);
uint64_t gm_snap_header2_hash(const struct gm_snap_header2 *h);
/*
 * A file's identity: XXH3_128bits of its file header as stored, its END
 * chunk's header and its END payload as stored. The END payload of a
 * version 2 file carries the digest of every chunk header, and each chunk
 * header the hash of its payload, so the identity changes with any byte
 * of the file. What an incremental file records of its parent.
 */
void gm_snap_identity(const void *hdr, size_t hdr_len, const struct gm_snap_chunk *end_chunk,
		      const void *end_payload, size_t end_len, uint8_t id[GM_SNAP_ID_BYTES]);
/* Hash of chunk @index: its first 24 header bytes and index seed the hash
 * of its stored payload, so a chunk moved or copied elsewhere fails too. */
uint64_t gm_snap_chunk_hash(const struct gm_snap_chunk *c, uint64_t index,
			    const void *payload);

/* ---- populated pages (populated.c) -------------------------------------- */

enum gm_scan_mode {
	GM_SCAN_SEEK,           /* memfd: SEEK_DATA / SEEK_HOLE                */
	GM_SCAN_CACHE,          /* guest_memfd: cachestat skips, mincore leaves */
	GM_SCAN_NONZERO,        /* hugetlb: every page is read, zero ones skipped */
};

struct gm_scan {
	struct gmem *g;
	enum gm_scan_mode mode;
	uint64_t pos, end;      /* bytes                                       */
	uint64_t blk;           /* start of the 2 MiB block vec describes      */
	bool blk_valid;
	bool no_cachestat;      /* the kernel refused cachestat: mincore only  */
	unsigned char vec[GM_REGION_PAGES];
};

void gm_scan_init(struct gm_scan *s, struct gmem *g);
/* Next populated extent at or after the scan position: 1 and [*start,
 * *start + *len), 0 when there is none left, or -errno. Extents ascend and
 * never overlap; they need not be maximal. Caller holds g->lock. */
int  gm_scan_next(struct gm_scan *s, uint64_t *start, uint64_t *len);
/* Bytes populated in all (a full scan; cheap: no page is read except in
 * GM_SCAN_NONZERO mode). */
int  gm_scan_total(struct gmem *g, uint64_t *bytes);

/* ---- page ranges (reader.c) ---------------------------------------------- */

/* Ascending page ranges [v[i][0], v[i][1]), adjacent ones merged. */
struct gm_ranges {
	uint64_t (*v)[2];
	uint64_t n, cap;
};

/* Append [lo, hi) after the last range: 0 or -ENOMEM. */
int  gm_ranges_add(struct gm_ranges *r, uint64_t lo, uint64_t hi);

/* ---- reading a snapshot (reader.c) --------------------------------------- */

struct gm_snap_reader {
	int fd;
	const char *path;       /* for messages                                */
	uint64_t file_size;
	uint64_t pos;           /* file offset of the next byte to parse       */
	uint8_t *buf;           /* read-ahead buffer                           */
	uint64_t buf_off;       /* file offset of buf[0]                       */
	size_t buf_len, buf_cap;
	size_t refill;          /* bytes read into it at a time                */
	uint8_t *scratch;       /* one stored payload (compressed or states)   */
	struct gm_in *in;       /* if set, bytes come from its ring (in.c)      */
	struct gm_seal *seal;   /* sealed file opened with its key (seal.h)    */
	bool keyed;             /* a key was given: refusals are -EBADMSG      */
	void *dctx;             /* ZSTD_DCtx                                   */
	struct gm_snap_hdr hdr;
	struct gm_snap_end2 end;        /* v1 files: changed_pages, digest 0   */
	struct gm_snap_chunk end_chunk; /* END chunk's header as read          */
	uint32_t end_len;               /* END raw_len: 48 (v1) or 64 (v2)     */
	uint8_t end_stored[sizeof(struct gm_snap_end2) + GM_SNAP_TAG_BYTES];
	uint64_t end_offset;
	/* v2, PARENT: the recorded parent path (NUL-terminated), from the walk. */
	char parent[GM_SNAP_PARENT_MAX + 1];
	/* Filled while walking. */
	uint64_t index;         /* chunks seen                                 */
	uint64_t chunk_off;     /* file offset of the current chunk            */
	struct gm_snap_chunk chunk;
};

/* Tests only: called by a restore once the file at @path is open and its
 * ends checked (a test swaps the file there). NULL otherwise. */
extern void (*gm_snap_opened_hook)(const char *path);

/* Open @path, check the file header, the footer and the END chunk (so
 * truncation is refused before any work). -errno with gmem_last_error() set
 * naming what is wrong and where. */
int  gm_snap_open(struct gm_snap_reader *r, const char *path);
/* The same with user key @key (NULL: as gm_snap_open): the file must be
 * sealed (-EINVAL), the key its own (-EBADMSG, checked first), and every
 * refusal after is -EBADMSG; payloads are opened as they are read. */
int  gm_snap_open_key(struct gm_snap_reader *r, const char *path, const uint8_t *key);
/* A sealed file opened without its key: restore refuses it (-ENOKEY,
 * message set); 0 otherwise. */
int  gm_snap_seal_need_key(struct gm_snap_reader *r);
void gm_snap_close(struct gm_snap_reader *r);

/* What the walk does with each chunk. on_states gets the decoded runs;
 * on_data must consume the payload with gm_snap_load(). */
struct gm_snap_walk_ops {
	int (*on_states)(void *ctx, uint64_t first, const uint64_t *runs, uint64_t n);
	/* v2 incremental files: the CHANGED runs (bit 0: 1 changed). NULL: none. */
	int (*on_changed)(void *ctx, uint64_t first, const uint64_t *runs, uint64_t n);
	int (*on_data)(void *ctx, struct gm_snap_reader *r, const struct gm_snap_chunk *c);
	/* Called with the bytes of the file parsed so far, for progress. */
	void (*on_progress)(void *ctx, uint64_t done, uint64_t total);
};

/* Read every chunk in order, checking hashes, order, coverage and the
 * totals of the END chunk. 0 or -errno (message set). */
int  gm_snap_walk(struct gm_snap_reader *r, const struct gm_snap_walk_ops *ops, void *ctx);
/* Load the payload of DATA chunk @c into @dst (c->raw_len bytes): read,
 * check its hash, decompress. */
int  gm_snap_load(struct gm_snap_reader *r, const struct gm_snap_chunk *c, void *dst);
/* Read the stored payload of DATA chunk @c into @buf and check its hash. */
int  gm_snap_fetch(struct gm_snap_reader *r, const struct gm_snap_chunk *c, void *buf);
/* Longest reason gm_snap_frame_check and gm_snap_decode write. */
#define GM_SNAP_WHY_MAX 96
/* The frame header of zstd chunk @c's payload @src declares exactly
 * c->raw_len bytes in exactly c->stored_len (0 for a raw chunk), or
 * -EINVAL with the reason in @why. Pure: callable from any thread. */
int  gm_snap_frame_check(const struct gm_snap_chunk *c, const void *src, char *why, size_t len);
/* Check the frame header, then decompress the checked payload @src of zstd
 * chunk @c into @dst (c->raw_len bytes) with ZSTD_DCtx @dctx: 0, or -EINVAL
 * with the reason in @why (the reader's message is not touched). */
int  gm_snap_decode(void *dctx, const struct gm_snap_chunk *c, const void *src, void *dst,
		    char *why, size_t len);
/* Pass over the stored payload of DATA chunk @c without reading it (its
 * reader checks it): 0, or -EIO with the message set if the file ends. */
int  gm_snap_skip(struct gm_snap_reader *r, const struct gm_snap_chunk *c);
/* Most payloads will be skipped: read ahead little, just the headers. */
void gm_snap_headers_only(struct gm_snap_reader *r);
/* pread exactly @n bytes at @off: 0, -errno, or -EIO at end of file. */
int  gm_snap_pread(int fd, void *dst, size_t n, uint64_t off);
/* Read the stored payload of DATA chunk @c and check its hash, without
 * decompressing it; *off is its file offset. */
int  gm_snap_check(struct gm_snap_reader *r, const struct gm_snap_chunk *c, uint64_t *off);
/* Refuse with a message naming the file, the chunk and the offset. */
int  gm_snap_bad(struct gm_snap_reader *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Read and check the PARENT chunk of a file with a parent into r->parent
 * (left empty for a file without one), without walking the file. */
int  gm_snap_read_parent(struct gm_snap_reader *r);
/* The file's payloads are sealed (v2, GM_SNAP_HDR_SEALED). */
bool gm_snap_sealed(const struct gm_snap_reader *r);
/* Stored bytes of the END chunk: its payload, and a tag if sealed. */
uint32_t gm_snap_end_stored(const struct gm_snap_reader *r);
/* The identity of the file @r has open (gm_snap_identity). */
void gm_snap_reader_identity(const struct gm_snap_reader *r, uint8_t id[GM_SNAP_ID_BYTES]);

/* ---- chains of incremental files (chain.c) ------------------------------ */

struct gm_snap_chain {
	struct gm_snap_reader *r;       /* [0] the newest, [n - 1] a full file */
	char *path[GM_SNAP_CHAIN_MAX];
	unsigned n;
};

/* Open @path and every parent it names, with @key (NULL: none) if sealed
 * (-ENOKEY without one, -EBADMSG on a wrong one), each checked against the identity
 * its child recorded: 0, or -ESTALE (a parent missing, changed or another
 * file), -ELOOP (too deep), or the reader's error; message set. */
int  gm_chain_open(struct gm_snap_chain *ch, const char *path, const uint8_t *key);
void gm_chain_close(struct gm_snap_chain *ch);
/* The path a parent recorded as @rec in the file at @child_path lies at
 * (malloc'ed), or NULL. */
char *gm_chain_parent_path(const char *child_path, const char *rec);

/* ---- lazy restore (lazy.c) ---------------------------------------------- */

/* One DATA chunk as the restore's walk found and checked it, and the part
 * of it this restore loads (a newer file of the chain may hold the rest). */
struct gm_lazy_chunk {
	struct gm_snap_chunk c; /* its header (c.first: gpa)                   */
	uint64_t index;         /* its number in the file (seeds its hash)     */
	uint64_t off;           /* file offset of its payload                  */
	uint64_t lo, hi;        /* guest bytes [lo, hi) it serves              */
	uint32_t file;          /* which file of the chain: 0 the newest       */
};

struct gm_lazy_index {
	struct gm_lazy_chunk *v;
	uint64_t n, cap;
};

/* Walk callback of a lazy restore of layer @file of a chain: check chunk
 * @c's hash and note where it is, for the pages no newer layer decided
 * (bit set in @decided; NULL: none). */
int  gm_lazy_note(struct gm_lazy_index *ix, struct gm_snap_reader *r,
		  const struct gm_snap_chunk *c, uint32_t file, const uint64_t *decided);
/* Order the index by guest address (layers noted newest first). */
void gm_lazy_sort(struct gm_lazy_index *ix);
/* Can @g be restored lazily? 0, or -EOPNOTSUPP with the reason set. */
int  gm_lazy_supported(struct gmem *g);
/* Start serving @g from the file of @r: register its views with userfaultfd,
 * start the fault and loader threads, install g->loader. Takes @ix (freed by
 * the loader, or here on failure). The states must be applied already. */
int  gm_lazy_start(struct gmem *g, struct gm_snap_chain *ch, struct gm_lazy_index *ix);

#endif /* GM_SNAP_H */

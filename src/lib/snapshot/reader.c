// SPDX-License-Identifier: MIT
/*
 * reader.c - read and check a snapshot file (snap.h).
 *
 * Model: gm_snap_open() checks what can be checked from the ends of the
 * file: the file header and its hash, the footer, the END chunk it points
 * at and that chunk's hash. A truncated file has no valid footer, so it is
 * refused before a memory is even opened. gm_snap_walk() then reads every
 * chunk in order through a read-ahead buffer, checks each chunk's hash
 * (which also binds the chunk to its position), that STATES runs tile the
 * memory exactly and come first, that DATA chunks ascend without overlap
 * inside the memory, and that the END totals agree with what was read.
 *
 * Every refusal sets gmem_last_error() to one line naming the file, what is
 * wrong and where: section, chunk number, file offset.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY    /* XXH3_state_t on the stack */
#include <xxhash.h>
#include <zstd.h>

#include "sys.h"
#include "in.h"
#include "seal.h"
#include "snap.h"

/* Small: chunk headers and small payloads come through it; a large
 * payload is mostly read straight into guest memory, copied once. */
#define GM_READ_AHEAD (128u << 10)
/* Payloads read straight into their destination from this size up. */
#define GM_READ_DIRECT (16u << 10)
/* Read-ahead when payloads are read elsewhere (gm_snap_headers_only). */
#define GM_READ_HEADERS (4u << 10)

uint64_t gm_snap_header_hash(const struct gm_snap_header *h)
{
	return XXH3_64bits(h, offsetof(struct gm_snap_header, hash));
}

uint64_t gm_snap_header2_hash(const struct gm_snap_header2 *h)
{
	return XXH3_64bits(h, offsetof(struct gm_snap_header2, hash));
}

void gm_snap_identity(const void *hdr, size_t hdr_len, const struct gm_snap_chunk *end_chunk,
		      const void *end_payload, size_t end_len, uint8_t id[GM_SNAP_ID_BYTES])
{
	XXH3_state_t st;
	XXH128_hash_t h;

	XXH3_128bits_reset(&st);
	XXH3_128bits_update(&st, hdr, hdr_len);
	XXH3_128bits_update(&st, end_chunk, sizeof(*end_chunk));
	XXH3_128bits_update(&st, end_payload, end_len);
	h = XXH3_128bits_digest(&st);
	memcpy(id, &h.low64, 8);
	memcpy(id + 8, &h.high64, 8);
}

uint64_t gm_snap_chunk_hash(const struct gm_snap_chunk *c, uint64_t index,
			    const void *payload)
{
	uint64_t seed = XXH3_64bits_withSeed(c, offsetof(struct gm_snap_chunk, hash), index);
	return XXH3_64bits_withSeed(payload, c->stored_len, seed);
}

static const char *gm_snap_type_name(uint32_t type)
{
	switch (type) {
	case GM_SNAP_STATES:
		return "states";
	case GM_SNAP_DATA:
		return "data";
	case GM_SNAP_END:
		return "end";
	case GM_SNAP_PARENT:
		return "parent";
	case GM_SNAP_CHANGED:
		return "changed";
	}
	return "unknown";
}

int gm_snap_bad(struct gm_snap_reader *r, int err, const char *fmt, ...)
{
	char what[192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	/* Read with a key, a file that fails a check was tampered with. */
	if (r->keyed && err == -EINVAL)
		err = -EBADMSG;
	if (r->index == UINT64_MAX)
		gm_set_error("snapshot %s: %s", r->path, what);
	else
		gm_set_error("snapshot %s: %s chunk %llu at offset %llu: %s", r->path,
			     gm_snap_type_name(r->chunk.type), (unsigned long long)r->index,
			     (unsigned long long)r->chunk_off, what);
	return err;
}

int gm_snap_pread(int fd, void *dst, size_t n, uint64_t off)
{
	uint8_t *p = dst;

	while (n) {
		ssize_t got = pread(fd, p, n, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			return -EIO;
		p += got;
		n -= (size_t)got;
		off += (uint64_t)got;
	}
	return 0;
}

/* Take the next @n bytes of the file into @dst. Small reads are served
 * from the read-ahead buffer; large ones go straight to @dst. */
static int gm_snap_take(struct gm_snap_reader *r, void *dst, size_t n)
{
	uint8_t *p = dst;
	int ret;

	if (n > r->file_size - r->pos)
		return -EIO;
	if (r->in) {
		const uint8_t *src = gm_in_get(r->in, r->pos, n, &ret);

		if (!src)
			return ret;
		memcpy(p, src, n);
		r->pos += n;
		return 0;
	}
	while (n) {
		if (r->pos >= r->buf_off && r->pos < r->buf_off + r->buf_len) {
			size_t at = (size_t)(r->pos - r->buf_off), k = r->buf_len - at;

			k = k < n ? k : n;
			memcpy(p, r->buf + at, k);
			p += k;
			n -= k;
			r->pos += k;
			continue;
		}
		if (n >= GM_READ_DIRECT) {
			ret = gm_snap_pread(r->fd, p, n, r->pos);
			if (ret)
				return ret;
			r->pos += n;
			return 0;
		}
		r->buf_off = r->pos;
		r->buf_len = r->file_size - r->pos < r->refill ? (size_t)(r->file_size - r->pos)
							       : r->refill;
		ret = gm_snap_pread(r->fd, r->buf, r->buf_len, r->buf_off);
		if (ret) {
			r->buf_len = 0;
			return ret;
		}
	}
	return 0;
}

/* One field of the file header against its range: the message names the
 * field, its offset (in the version 2 layout, which shares version 1's
 * offsets up to 48) and what it must be. */
#define GM_HDR_FIELD(r, ok, field, must)                                        \
	do {                                                                    \
		if (!(ok))                                                      \
			return gm_snap_bad(r, -EINVAL,                          \
					   "file header: " #field " at offset %zu is %llu; " \
					   must, offsetof(struct gm_snap_header2, field), \
					   (unsigned long long)(r)->hdr.field);  \
	} while (0)

static bool gm_snap_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Version 1: 64 bytes, already in hdr.raw. */
static int gm_snap_parse_v1(struct gm_snap_reader *r)
{
	struct gm_snap_header h;

	memcpy(&h, r->hdr.raw, sizeof(h));
	if (h.hash != gm_snap_header_hash(&h))
		return gm_snap_bad(r, -EINVAL, "file header (offset 0..63): checksum mismatch");
	r->hdr.header_size = h.header_size;
	GM_HDR_FIELD(r, h.header_size == sizeof(h), header_size, "must be 64");
	r->hdr.page_size = h.page_size;
	r->hdr.flags = h.flags;
	r->hdr.mem_size = h.mem_size;
	r->hdr.backend = h.backend;
	r->hdr.mem_flags = h.mem_flags;
	r->hdr.chunk_max = h.chunk_max;
	GM_HDR_FIELD(r, !(h.flags & ~GM_SNAP_HDR_ALL), flags, "unknown bits");
	if (h.reserved0)
		return gm_snap_bad(r, -EINVAL, "file header: reserved0 at offset 44 is %u; "
				   "must be 0", h.reserved0);
	if (h.reserved1)
		return gm_snap_bad(r, -EINVAL, "file header: reserved1 at offset 48 is %llu; "
				   "must be 0", (unsigned long long)h.reserved1);
	r->end_len = sizeof(struct gm_snap_end);
	return 0;
}

/* Version 2: 128 bytes; the second 64 are read here. */
static int gm_snap_parse_v2(struct gm_snap_reader *r)
{
	struct gm_snap_header2 h;
	bool sealed, parent;
	int ret;

	memcpy(&h, r->hdr.raw, 64);
	if (h.header_size != sizeof(h))
		return gm_snap_bad(r, -EINVAL, "file header: header_size at offset 12 is %u; "
				   "must be 128", h.header_size);
	if (r->file_size < sizeof(h))
		return gm_snap_bad(r, -EINVAL, "truncated: %llu bytes, shorter than the header",
				   (unsigned long long)r->file_size);
	ret = gm_snap_take(r, r->hdr.raw + 64, sizeof(h) - 64);
	if (ret)
		return gm_snap_bad(r, ret, "reading the file header: %s", strerror(-ret));
	memcpy(&h, r->hdr.raw, sizeof(h));
	if (h.hash != gm_snap_header2_hash(&h))
		return gm_snap_bad(r, -EINVAL, "file header (offset 0..127): checksum mismatch");
	r->hdr.header_size = h.header_size;
	r->hdr.page_size = h.page_size;
	r->hdr.flags = h.flags;
	r->hdr.mem_size = h.mem_size;
	r->hdr.backend = h.backend;
	r->hdr.mem_flags = h.mem_flags;
	r->hdr.chunk_max = h.chunk_max;
	r->hdr.aead = h.aead;
	memcpy(r->hdr.file_id, h.file_id, sizeof(h.file_id));
	memcpy(r->hdr.parent_id, h.parent_id, sizeof(h.parent_id));
	memcpy(r->hdr.seal, h.seal, sizeof(h.seal));
	GM_HDR_FIELD(r, !(h.flags & ~GM_SNAP_HDR2_ALL), flags, "unknown bits");
	sealed = h.flags & GM_SNAP_HDR_SEALED;
	parent = h.flags & GM_SNAP_HDR_PARENT;
	GM_HDR_FIELD(r, sealed ? h.aead == GM_SNAP_AEAD_AES256GCM ||
			 h.aead == GM_SNAP_AEAD_XCHACHA20POLY1305 : !h.aead, aead,
		     "must be 1 or 2 in a sealed file, 0 otherwise");
	if (h.reserved1 || h.reserved2)
		return gm_snap_bad(r, -EINVAL, "file header: reserved%s at offset %u is set; "
				   "must be 0", h.reserved1 ? "1" : "2", h.reserved1 ? 48 : 112);
	if (!parent && !gm_snap_zero(h.parent_id, sizeof(h.parent_id)))
		return gm_snap_bad(r, -EINVAL, "file header: parent_id at offset 72 is set in "
				   "a file without a parent");
	if (!sealed && !gm_snap_zero(h.seal, sizeof(h.seal)))
		return gm_snap_bad(r, -EINVAL, "file header: seal at offset 88 is set in a "
				   "file that is not sealed");
	r->end_len = sizeof(struct gm_snap_end2);
	return 0;
}

static int gm_snap_check_header(struct gm_snap_reader *r)
{
	const struct gm_snap_header *v1 = (const struct gm_snap_header *)r->hdr.raw;
	int ret;

	if (memcmp(v1->magic, GM_SNAP_MAGIC, sizeof(v1->magic)))
		return gm_snap_bad(r, -EINVAL, "not a gmem snapshot (bad magic at offset 0)");
	r->hdr.major = v1->major;
	r->hdr.minor = v1->minor;
	if (v1->major != GM_SNAP_VERSION_MAJOR && v1->major != GM_SNAP_V2_MAJOR)
		return gm_snap_bad(r, -EINVAL, "file header: major at offset 8: format version "
				   "%u.%u; this library reads %u.x and %u.x", v1->major,
				   v1->minor, GM_SNAP_VERSION_MAJOR, GM_SNAP_V2_MAJOR);
	ret = v1->major == GM_SNAP_VERSION_MAJOR ? gm_snap_parse_v1(r) : gm_snap_parse_v2(r);
	if (ret)
		return ret;
	GM_HDR_FIELD(r, r->hdr.page_size == GMEM_PAGE_SIZE, page_size, "must be 4096");
	GM_HDR_FIELD(r, r->hdr.mem_size && !(r->hdr.mem_size % GMEM_REGION_SIZE), mem_size,
		     "must be a non-zero multiple of 2 MiB");
	GM_HDR_FIELD(r, r->hdr.backend == GMEM_BACKEND_KVM ||
		     r->hdr.backend == GMEM_BACKEND_MEMFD,
		     backend, "must be 1 (kvm) or 2 (memfd)");
	GM_HDR_FIELD(r, !(r->hdr.mem_flags & ~GMEM_F_ALL), mem_flags, "unknown GMEM_F_ bits");
	GM_HDR_FIELD(r, r->hdr.chunk_max && r->hdr.chunk_max <= GM_SNAP_CHUNK_MAX &&
		     !(r->hdr.chunk_max % GMEM_PAGE_SIZE), chunk_max,
		     "must be a multiple of 4096 up to 1 MiB");
	return 0;
}

bool gm_snap_sealed(const struct gm_snap_reader *r)
{
	return r->hdr.flags & GM_SNAP_HDR_SEALED;
}

uint32_t gm_snap_end_stored(const struct gm_snap_reader *r)
{
	return r->end_len + (gm_snap_sealed(r) ? GM_SNAP_TAG_BYTES : 0);
}

/* Key @key for the file @r has open, its header read and checked: refuses
 * a file that is not sealed (-EINVAL), and a wrong key (-EBADMSG), before
 * anything else is read. Sets r->seal. */
static int gm_snap_seal_attach(struct gm_snap_reader *r, const uint8_t *key)
{
	int ret;

	if (!gm_snap_sealed(r)) {
		gm_set_error("snapshot %s: a key was given, but the file is not sealed (format "
			     "%u.%u, no GM_SNAP_HDR_SEALED): refused rather than read unsealed",
			     r->path, r->hdr.major, r->hdr.minor);
		return -EINVAL;
	}
	ret = gm_seal_new(key, r->hdr.aead, r->hdr.file_id, &r->seal);
	if (ret)
		return ret == -EINVAL ? gm_snap_bad(r, -EBADMSG, "file header: aead %u unknown",
						    r->hdr.aead) : ret;
	if (!gm_seal_header_ok(r->seal, r->hdr.raw, r->hdr.seal)) {
		gm_seal_free(r->seal);
		r->seal = NULL;
		return gm_snap_bad(r, -EBADMSG, "wrong key (the header's seal at offset 88 "
				   "does not match it)");
	}
	gm_seal_bind(r->seal, r->hdr.raw, r->hdr.header_size);
	return 0;
}

/* The END chunk's tag (r->seal set): 0 or -EBADMSG, message set. */
static int gm_snap_seal_end(struct gm_snap_reader *r)
{
	if (gm_seal_open(r->seal, &r->end_chunk, r->end.chunks, r->end_stored, NULL))
		return gm_snap_bad(r, -EBADMSG, "END chunk at offset %llu: authentication "
				   "failed", (unsigned long long)r->end_offset);
	return 0;
}

int gm_snap_seal_need_key(struct gm_snap_reader *r)
{
	if (!gm_snap_sealed(r) || r->seal)
		return 0;
	gm_set_error("snapshot %s: the file is sealed; give its key to restore it "
		     "(gmem_snapshot_opts.key, --key-file)", r->path);
	return -ENOKEY;
}

/* The footer, and the END chunk it points at. */
static int gm_snap_check_tail(struct gm_snap_reader *r)
{
	const uint32_t stored = gm_snap_end_stored(r);
	const uint64_t min = r->hdr.header_size + sizeof(struct gm_snap_chunk) + stored +
			     sizeof(struct gm_snap_footer);
	struct gm_snap_chunk *c = &r->end_chunk;
	struct gm_snap_footer f;
	int ret;

	if (r->file_size < min)
		return gm_snap_bad(r, -EINVAL, "truncated: %llu bytes, no footer",
				   (unsigned long long)r->file_size);
	ret = gm_snap_pread(r->fd, &f, sizeof(f), r->file_size - sizeof(f));
	if (ret)
		return gm_snap_bad(r, ret, "reading the footer: %s", strerror(-ret));
	if (memcmp(f.magic, GM_SNAP_END_MAGIC, sizeof(f.magic)))
		return gm_snap_bad(r, -EINVAL, "truncated or damaged: no footer at offset %llu",
				   (unsigned long long)(r->file_size - sizeof(f)));
	if (f.end_offset != r->file_size - sizeof(f) - sizeof(*c) - stored)
		return gm_snap_bad(r, -EINVAL, "footer at offset %llu: END offset %llu is wrong",
				   (unsigned long long)(r->file_size - sizeof(f)),
				   (unsigned long long)f.end_offset);
	r->end_offset = f.end_offset;
	ret = gm_snap_pread(r->fd, c, sizeof(*c), f.end_offset);
	if (!ret)
		ret = gm_snap_pread(r->fd, r->end_stored, stored, f.end_offset + sizeof(*c));
	if (ret)
		return gm_snap_bad(r, ret, "reading the END chunk: %s", strerror(-ret));
	memset(&r->end, 0, sizeof(r->end));
	memcpy(&r->end, r->end_stored, r->end_len);
	/* Its index is the chunk count it records: hash with that. */
	if (c->type != GM_SNAP_END || c->stored_len != stored ||
	    c->hash != gm_snap_chunk_hash(c, r->end.chunks, r->end_stored))
		return gm_snap_bad(r, -EINVAL, "END chunk at offset %llu: checksum mismatch",
				   (unsigned long long)f.end_offset);
	if (r->seal && (ret = gm_snap_seal_end(r)))
		return ret;
	if (c->flags || c->first || c->raw_len != r->end_len)
		return gm_snap_bad(r, -EINVAL, "END chunk at offset %llu: flags %#x, first %llu, "
				   "raw_len %u; must be 0, 0, %u", (unsigned long long)f.end_offset,
				   c->flags, (unsigned long long)c->first, c->raw_len, r->end_len);
	/* Each chunk takes at least its header: a count the file cannot
	 * hold is refused before anything is sized by it. */
	if (r->end.chunks > f.end_offset / sizeof(*c))
		return gm_snap_bad(r, -EINVAL, "END chunk at offset %llu: chunks %llu; the file "
				   "has room for %llu", (unsigned long long)f.end_offset,
				   (unsigned long long)r->end.chunks,
				   (unsigned long long)(f.end_offset / sizeof(*c)));
	if (!(r->hdr.flags & GM_SNAP_HDR_PARENT) && r->end.changed_pages)
		return gm_snap_bad(r, -EINVAL, "END chunk at offset %llu: changed_pages %llu in "
				   "a file without a parent", (unsigned long long)f.end_offset,
				   (unsigned long long)r->end.changed_pages);
	return 0;
}

void gm_snap_reader_identity(const struct gm_snap_reader *r, uint8_t id[GM_SNAP_ID_BYTES])
{
	gm_snap_identity(r->hdr.raw, r->hdr.header_size, &r->end_chunk, r->end_stored,
			 gm_snap_end_stored(r), id);
}

static const char *gm_snap_file_kind(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	return "not a file";
}

static int gm_snap_alloc(struct gm_snap_reader *r)
{
	r->buf_cap = GM_READ_AHEAD;
	r->refill = r->buf_cap;
	/* They hold the file's page data: guarded, never left in the heap. */
	r->buf = gm_sys_guarded_alloc(r->buf_cap);
	r->scratch = gm_sys_guarded_alloc(ZSTD_compressBound(GM_SNAP_CHUNK_MAX));
	r->dctx = ZSTD_createDCtx();
	return r->buf && r->scratch && r->dctx ? 0 : -ENOMEM;
}

static int gm_snap_open_as(struct gm_snap_reader *r, const char *path, const uint8_t *key)
{
	struct stat sb;
	int ret;

	memset(r, 0, sizeof(*r));
	r->path = path;
	r->keyed = key;
	r->index = UINT64_MAX;  /* no chunk yet: messages name sections */
	/* Opened once, and only this descriptor is read (gm_in_open reopens
	 * it, not the path). O_NONBLOCK: opening a FIFO must not wait for a
	 * writer; it changes nothing for the regular file read here. */
	r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (r->fd < 0) {
		ret = -errno;
		return gm_snap_bad(r, ret, "cannot open: %s", strerror(errno));
	}
	if (fstat(r->fd, &sb)) {
		ret = -errno;
		gm_snap_bad(r, ret, "fstat: %s", strerror(errno));
		goto err;
	}
	if (!S_ISREG(sb.st_mode)) {
		ret = gm_snap_bad(r, -EINVAL, "not a regular file (%s)", gm_snap_file_kind(sb.st_mode));
		goto err;
	}
	r->file_size = (uint64_t)sb.st_size;
	ret = gm_snap_alloc(r);
	if (ret)
		goto err;
	/* Doubles the kernel's read-ahead window. Extra WILLNEED requests ahead
	 * of the parse position were measured slower here (0.6-0.8x the read
	 * rate of plain sequential read-ahead on virtio), so there are none. */
	posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (r->file_size < sizeof(struct gm_snap_header)) {
		ret = gm_snap_bad(r, -EINVAL, "truncated: %llu bytes, shorter than the header",
				  (unsigned long long)r->file_size);
		goto err;
	}
	ret = gm_snap_take(r, r->hdr.raw, sizeof(struct gm_snap_header));
	if (!ret)
		ret = gm_snap_check_header(r);
	if (!ret && key)
		ret = gm_snap_seal_attach(r, key);
	if (!ret)
		ret = gm_snap_check_tail(r);
	if (ret)
		goto err;
	return 0;

err:
	gm_snap_close(r);
	return ret;
}

int gm_snap_open(struct gm_snap_reader *r, const char *path)
{
	return gm_snap_open_as(r, path, NULL);
}

int gm_snap_open_key(struct gm_snap_reader *r, const char *path, const uint8_t *key)
{
	return gm_snap_open_as(r, path, key);
}

void gm_snap_close(struct gm_snap_reader *r)
{
	gm_seal_free(r->seal);
	r->seal = NULL;
	ZSTD_freeDCtx(r->dctx);
	gm_sys_guarded_free(r->scratch);
	gm_sys_guarded_free(r->buf);
	if (r->fd >= 0)
		close(r->fd);
	r->dctx = r->scratch = r->buf = NULL;
	r->fd = -1;
}

/* A zstd payload is exactly one frame whose header declares raw_len
 * bytes: checked from the frame header alone, before anything is
 * decompressed, so neither restore expands a frame beyond its chunk. */
int gm_snap_frame_check(const struct gm_snap_chunk *c, const void *src, char *why, size_t len)
{
	unsigned long long size;
	size_t n;

	if (!(c->flags & GM_SNAP_CHUNK_ZSTD))
		return 0;
	size = ZSTD_getFrameContentSize(src, c->stored_len);
	if (size == ZSTD_CONTENTSIZE_ERROR) {
		snprintf(why, len, "payload is not a zstd frame");
		return -EINVAL;
	}
	if (size == ZSTD_CONTENTSIZE_UNKNOWN) {
		snprintf(why, len, "zstd frame does not declare its size");
		return -EINVAL;
	}
	if (size != c->raw_len) {
		snprintf(why, len, "zstd frame declares %llu bytes; raw_len is %u", size,
			 c->raw_len);
		return -EINVAL;
	}
	n = ZSTD_findFrameCompressedSize(src, c->stored_len);
	if (ZSTD_isError(n) || n != c->stored_len) {
		snprintf(why, len, "zstd frame is not exactly stored_len %u bytes", c->stored_len);
		return -EINVAL;
	}
	return 0;
}

static int gm_snap_frame_ok(struct gm_snap_reader *r, const struct gm_snap_chunk *c,
			    const void *src)
{
	char why[GM_SNAP_WHY_MAX];

	if (gm_snap_frame_check(c, src, why, sizeof(why)))
		return gm_snap_bad(r, -EINVAL, "%s", why);
	return 0;
}

/* A sealed file read without its key: checksums and layout only. */
static bool gm_snap_opaque(const struct gm_snap_reader *r)
{
	return gm_snap_sealed(r) && !r->seal;
}

/* Open sealed chunk @c's stored payload at @src (hash checked) into @dst. */
static int gm_snap_unseal(struct gm_snap_reader *r, const struct gm_snap_chunk *c,
			  const uint8_t *src, uint8_t *dst)
{
	if (gm_seal_open(r->seal, c, r->index, src, dst))
		return gm_snap_bad(r, -EBADMSG, "authentication failed");
	return 0;
}

/* gm_snap_load of a sealed chunk: read into scratch, check, open into
 * @dst (raw) or in place (zstd, then decoded into @dst). */
static int gm_snap_load_sealed(struct gm_snap_reader *r, const struct gm_snap_chunk *c,
			       void *dst)
{
	struct gm_snap_chunk p = gm_seal_plain(c);
	bool z = c->flags & GM_SNAP_CHUNK_ZSTD;
	size_t got;
	int ret;

	ret = gm_snap_take(r, r->scratch, c->stored_len);
	if (ret)
		return gm_snap_bad(r, ret, "reading the payload: %s", strerror(-ret));
	if (c->hash != gm_snap_chunk_hash(c, r->index, r->scratch))
		return gm_snap_bad(r, -EINVAL, "checksum mismatch");
	if (gm_snap_opaque(r))
		return 0;
	ret = gm_snap_unseal(r, c, r->scratch, z ? r->scratch : dst);
	if (ret || !z)
		return ret;
	ret = gm_snap_frame_ok(r, &p, r->scratch);
	if (ret)
		return ret;
	got = ZSTD_decompressDCtx(r->dctx, dst, c->raw_len, r->scratch, p.stored_len);
	if (ZSTD_isError(got) || got != c->raw_len)
		return gm_snap_bad(r, -EINVAL, "zstd frame does not decode to raw_len %u bytes",
				   c->raw_len);
	return 0;
}

int gm_snap_load(struct gm_snap_reader *r, const struct gm_snap_chunk *c, void *dst)
{
	bool z = c->flags & GM_SNAP_CHUNK_ZSTD;
	void *into = z ? r->scratch : dst;
	size_t got;
	int ret;

	if (gm_snap_sealed(r))
		return gm_snap_load_sealed(r, c, dst);
	ret = gm_snap_take(r, into, c->stored_len);
	if (ret)
		return gm_snap_bad(r, ret, "reading the payload: %s", strerror(-ret));
	if (c->hash != gm_snap_chunk_hash(c, r->index, into))
		return gm_snap_bad(r, -EINVAL, "checksum mismatch");
	if (!z)
		return 0;
	ret = gm_snap_frame_ok(r, c, into);
	if (ret)
		return ret;
	got = ZSTD_decompressDCtx(r->dctx, dst, c->raw_len, r->scratch, c->stored_len);
	if (ZSTD_isError(got) || got != c->raw_len)
		return gm_snap_bad(r, -EINVAL, "zstd frame does not decode to raw_len %u bytes",
				   c->raw_len);
	return 0;
}

int gm_snap_fetch(struct gm_snap_reader *r, const struct gm_snap_chunk *c, void *buf)
{
	int ret = gm_snap_take(r, buf, c->stored_len);

	if (ret)
		return gm_snap_bad(r, ret, "reading the payload: %s", strerror(-ret));
	if (c->hash != gm_snap_chunk_hash(c, r->index, buf))
		return gm_snap_bad(r, -EINVAL, "checksum mismatch");
	if (gm_snap_sealed(r)) {
		struct gm_snap_chunk p = gm_seal_plain(c);

		if (gm_snap_opaque(r))
			return 0;
		ret = gm_snap_unseal(r, c, buf, buf);
		return ret ? ret : gm_snap_frame_ok(r, &p, buf);
	}
	return gm_snap_frame_ok(r, c, buf);
}

int gm_snap_decode(void *dctx, const struct gm_snap_chunk *c, const void *src, void *dst,
		   char *why, size_t len)
{
	size_t got;

	if (gm_snap_frame_check(c, src, why, len))
		return -EINVAL;
	got = ZSTD_decompressDCtx(dctx, dst, c->raw_len, src, c->stored_len);
	if (ZSTD_isError(got) || got != c->raw_len) {
		snprintf(why, len, "zstd frame does not decode to raw_len %u bytes", c->raw_len);
		return -EINVAL;
	}
	return 0;
}

int gm_snap_skip(struct gm_snap_reader *r, const struct gm_snap_chunk *c)
{
	if (c->stored_len > r->file_size - r->pos)
		return gm_snap_bad(r, -EIO, "reading the payload: %s", strerror(EIO));
	r->pos += c->stored_len;
	return 0;
}

void gm_snap_headers_only(struct gm_snap_reader *r)
{
	r->refill = GM_READ_HEADERS;
}

int gm_snap_check(struct gm_snap_reader *r, const struct gm_snap_chunk *c, uint64_t *off)
{
	*off = r->pos;
	return gm_snap_fetch(r, c, r->scratch);
}

int gm_ranges_add(struct gm_ranges *r, uint64_t lo, uint64_t hi)
{
	if (r->n && r->v[r->n - 1][1] == lo) {
		r->v[r->n - 1][1] = hi;
		return 0;
	}
	if (r->n == r->cap) {
		uint64_t cap = r->cap ? 2 * r->cap : 64;
		void *p = realloc(r->v, cap * sizeof(*r->v));

		if (!p)
			return -ENOMEM;
		r->v = p;
		r->cap = cap;
	}
	r->v[r->n][0] = lo;
	r->v[r->n][1] = hi;
	r->n++;
	return 0;
}

/* Walk state: what has been seen so far. */
struct gm_snap_seen {
	uint64_t runs_pages;    /* pages the STATES runs covered so far        */
	uint64_t chg_pages;     /* pages the CHANGED runs covered so far       */
	uint64_t data_end;      /* end of the last DATA chunk (bytes)          */
	bool in_chg;            /* a CHANGED chunk was seen: no more STATES    */
	bool in_data;           /* a DATA chunk was seen: no more STATES       */
	bool parent;            /* the file has a parent (v2 PARENT flag)      */
	struct gm_snap_end2 sum;
	/* Changed extents in pages; DATA must lie in them. Grows with the
	 * file (8 bytes of file per run at least). */
	struct gm_ranges chg;
	uint64_t atchg;
	XXH3_state_t dig;       /* digest of the chunk headers (v2)            */
};

/* Read chunk @c's stored payload into scratch and check its hash. */
static int gm_snap_take_checked(struct gm_snap_reader *r, const struct gm_snap_chunk *c)
{
	int ret = gm_snap_take(r, r->scratch, c->stored_len);

	if (ret)
		return gm_snap_bad(r, ret, "reading the payload: %s", strerror(-ret));
	if (c->hash != gm_snap_chunk_hash(c, r->index, r->scratch))
		return gm_snap_bad(r, -EINVAL, "checksum mismatch");
	if (r->seal)
		return gm_snap_unseal(r, c, r->scratch, r->scratch);
	return 0;
}

/* The header fields of a STATES or CHANGED chunk, before its payload is
 * read: runs continue from @covered pages. */
static int gm_snap_runs_ok(struct gm_snap_reader *r, const struct gm_snap_chunk *c,
			   uint64_t covered)
{
	if (c->flags)
		return gm_snap_bad(r, -EINVAL, "flags %#x: a %s chunk has none", c->flags,
				   c->type == GM_SNAP_STATES ? "states" : "changed");
	if (!c->raw_len || c->raw_len % 8 || c->raw_len > r->hdr.chunk_max)
		return gm_snap_bad(r, -EINVAL, "raw_len %u: must be a multiple of 8 up to "
				   "chunk_max %u", c->raw_len, r->hdr.chunk_max);
	if (c->stored_len != c->raw_len + (gm_snap_sealed(r) ? GM_SNAP_TAG_BYTES : 0))
		return gm_snap_bad(r, -EINVAL, "stored_len %u: must equal raw_len %u%s",
				   c->stored_len, c->raw_len, gm_snap_sealed(r) ? " + 16" : "");
	/* Without the key the runs before are not known: the hash binds it. */
	if (c->first != covered && !gm_snap_opaque(r))
		return gm_snap_bad(r, -EINVAL, "first %llu: the runs before end at page %llu",
				   (unsigned long long)c->first, (unsigned long long)covered);
	return 0;
}

/* Check the @n runs in scratch continue from *@covered and stay inside the
 * memory; advance *@covered. */
static int gm_snap_runs_check(struct gm_snap_reader *r, uint64_t n, uint64_t *covered)
{
	uint64_t npages = r->hdr.mem_size >> GM_PAGE_SHIFT;
	const uint64_t *runs = (const uint64_t *)r->scratch;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t len = runs[i] >> 1;

		if (!len)
			return gm_snap_bad(r, -EINVAL, "run %llu (payload offset %llu) has no pages",
					   (unsigned long long)i, (unsigned long long)i * 8);
		if (len > npages - *covered)
			return gm_snap_bad(r, -EINVAL, "run %llu (payload offset %llu) of %llu "
					   "pages overruns the memory at page %llu",
					   (unsigned long long)i, (unsigned long long)i * 8,
					   (unsigned long long)len, (unsigned long long)*covered);
		*covered += len;
	}
	return 0;
}

static int gm_snap_states(struct gm_snap_reader *r, const struct gm_snap_chunk *c,
			  struct gm_snap_seen *w, const struct gm_snap_walk_ops *ops, void *ctx)
{
	uint64_t n = c->raw_len / 8, at = w->runs_pages;
	const uint64_t *runs = (const uint64_t *)r->scratch;
	int ret;

	if (w->in_data || w->in_chg)
		return gm_snap_bad(r, -EINVAL, "states after %s: out of order",
				   w->in_data ? "data" : "changed runs");
	ret = gm_snap_runs_ok(r, c, w->runs_pages);
	if (!ret)
		ret = gm_snap_take_checked(r, c);
	if (!ret && gm_snap_opaque(r)) {
		/* Sealed runs, no key: counted, not read. */
		w->sum.runs += n;
		w->runs_pages = r->hdr.mem_size >> GM_PAGE_SHIFT;
		return 0;
	}
	if (!ret)
		ret = gm_snap_runs_check(r, n, &w->runs_pages);
	if (ret)
		return ret;
	for (uint64_t i = 0; i < n; i++)
		w->sum.shared_pages += runs[i] & 1 ? runs[i] >> 1 : 0;
	w->sum.runs += n;
	return ops->on_states ? ops->on_states(ctx, at, runs, n) : 0;
}

static int gm_snap_changed(struct gm_snap_reader *r, const struct gm_snap_chunk *c,
			   struct gm_snap_seen *w, const struct gm_snap_walk_ops *ops, void *ctx)
{
	uint64_t npages = r->hdr.mem_size >> GM_PAGE_SHIFT, n = c->raw_len / 8;
	uint64_t at = w->chg_pages, pos = at;
	const uint64_t *runs = (const uint64_t *)r->scratch;
	int ret;

	if (!w->parent)
		return gm_snap_bad(r, -EINVAL, "changed runs in a file without a parent");
	if (w->in_data)
		return gm_snap_bad(r, -EINVAL, "changed runs after data: out of order");
	if (w->runs_pages != npages)
		return gm_snap_bad(r, -EINVAL, "page states cover %llu of %llu pages",
				   (unsigned long long)w->runs_pages, (unsigned long long)npages);
	w->in_chg = true;
	ret = gm_snap_runs_ok(r, c, w->chg_pages);
	if (!ret)
		ret = gm_snap_take_checked(r, c);
	if (!ret && gm_snap_opaque(r)) {
		w->chg_pages = npages;  /* sealed runs, no key: not read */
		return 0;
	}
	if (!ret)
		ret = gm_snap_runs_check(r, n, &w->chg_pages);
	if (ret)
		return ret;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t len = runs[i] >> 1;

		if (runs[i] & 1) {
			w->sum.changed_pages += len;
			if (gm_ranges_add(&w->chg, pos, pos + len))
				return gm_snap_bad(r, -ENOMEM, "out of memory");
		}
		pos += len;
	}
	return ops->on_changed ? ops->on_changed(ctx, at, runs, n) : 0;
}

/* The PARENT chunk: the first, only in a file with a parent. */
static int gm_snap_parent(struct gm_snap_reader *r, const struct gm_snap_chunk *c,
			  struct gm_snap_seen *w)
{
	int ret;

	if (!w->parent || r->index)
		return gm_snap_bad(r, -EINVAL, "%s", w->parent ? "not the first chunk"
				   : "a parent chunk in a file without a parent");
	if (c->flags || !c->raw_len || c->raw_len > GM_SNAP_PARENT_MAX ||
	    c->stored_len != c->raw_len + (gm_snap_sealed(r) ? GM_SNAP_TAG_BYTES : 0))
		return gm_snap_bad(r, -EINVAL, "flags %#x, raw_len %u, stored_len %u: must be "
				   "0, 1..%u, raw_len%s", c->flags, c->raw_len, c->stored_len,
				   GM_SNAP_PARENT_MAX, gm_snap_sealed(r) ? " + 16" : "");
	ret = gm_snap_take_checked(r, c);
	if (ret || gm_snap_opaque(r))
		return ret;     /* sealed path, no key: not read */
	if (memchr(r->scratch, 0, c->raw_len))
		return gm_snap_bad(r, -EINVAL, "the parent's path holds a NUL byte");
	memcpy(r->parent, r->scratch, c->raw_len);
	r->parent[c->raw_len] = 0;
	return 0;
}

int gm_snap_read_parent(struct gm_snap_reader *r)
{
	struct gm_snap_seen w = { .parent = true };
	int ret;

	r->parent[0] = 0;
	if (!(r->hdr.flags & GM_SNAP_HDR_PARENT))
		return 0;
	r->pos = r->chunk_off = r->hdr.header_size;
	r->index = 0;
	ret = gm_snap_take(r, &r->chunk, sizeof(r->chunk));
	if (ret)
		ret = gm_snap_bad(r, ret, "reading the chunk header: %s", strerror(-ret));
	else if (r->chunk.type != GM_SNAP_PARENT)
		ret = gm_snap_bad(r, -EINVAL, "the file has a parent but no parent chunk");
	else
		ret = gm_snap_parent(r, &r->chunk, &w);
	r->index = UINT64_MAX;
	return ret;
}

/* The header fields of a DATA chunk, before anything reads its payload. */
static int gm_snap_data_ok(struct gm_snap_reader *r, const struct gm_snap_chunk *c,
			   const struct gm_snap_seen *w)
{
	bool z = c->flags & GM_SNAP_CHUNK_ZSTD;
	uint64_t size = r->hdr.mem_size;

	if (w->runs_pages != size >> GM_PAGE_SHIFT)
		return gm_snap_bad(r, -EINVAL, "page states cover %llu of %llu pages",
				   (unsigned long long)w->runs_pages,
				   (unsigned long long)(size >> GM_PAGE_SHIFT));
	if (w->parent && w->chg_pages != size >> GM_PAGE_SHIFT)
		return gm_snap_bad(r, -EINVAL, "changed runs cover %llu of %llu pages",
				   (unsigned long long)w->chg_pages,
				   (unsigned long long)(size >> GM_PAGE_SHIFT));
	if (c->flags & ~GM_SNAP_CHUNK_ZSTD)
		return gm_snap_bad(r, -EINVAL, "flags %#x: unknown bits", c->flags);
	if (z && !(r->hdr.flags & GM_SNAP_HDR_COMPRESSED))
		return gm_snap_bad(r, -EINVAL, "flags: zstd, in a file whose header says it "
				   "is not compressed");
	if (!c->raw_len || c->raw_len % GMEM_PAGE_SIZE || c->raw_len > r->hdr.chunk_max)
		return gm_snap_bad(r, -EINVAL, "raw_len %u: must be a multiple of 4096 up to "
				   "chunk_max %u", c->raw_len, r->hdr.chunk_max);
	if (c->first % GMEM_PAGE_SIZE)
		return gm_snap_bad(r, -EINVAL, "first %#llx: not page aligned",
				   (unsigned long long)c->first);
	if (c->first < w->data_end)
		return gm_snap_bad(r, -EINVAL, "first %#llx: out of order, the data before "
				   "ends at %#llx", (unsigned long long)c->first,
				   (unsigned long long)w->data_end);
	if (c->first > size - c->raw_len)
		return gm_snap_bad(r, -EINVAL, "first %#llx + raw_len %u: past the end of "
				   "the memory (%#llx)", (unsigned long long)c->first,
				   c->raw_len, (unsigned long long)size);
	if (gm_snap_sealed(r)) {
		uint64_t body = c->stored_len >= GM_SNAP_TAG_BYTES ?
				c->stored_len - GM_SNAP_TAG_BYTES : 0;

		if (c->stored_len < GM_SNAP_TAG_BYTES || (z ? !body ||
		    body > ZSTD_compressBound(c->raw_len) : body != c->raw_len))
			return gm_snap_bad(r, -EINVAL, "stored_len %u: %s raw_len %u, plus the "
					   "16-byte tag", c->stored_len,
					   z ? "more than zstd's bound for" : "must equal",
					   c->raw_len);
		return 0;
	}
	if (z ? c->stored_len > ZSTD_compressBound(c->raw_len) || !c->stored_len
	      : c->stored_len != c->raw_len)
		return gm_snap_bad(r, -EINVAL, "stored_len %u: %s raw_len %u", c->stored_len,
				   z ? "more than zstd's bound for" : "must equal", c->raw_len);
	return 0;
}

/* An incremental file holds data only for pages it marks changed. */
static int gm_snap_data_changed(struct gm_snap_reader *r, const struct gm_snap_chunk *c,
				struct gm_snap_seen *w)
{
	uint64_t lo = c->first >> GM_PAGE_SHIFT, hi = lo + (c->raw_len >> GM_PAGE_SHIFT);

	while (w->atchg < w->chg.n && w->chg.v[w->atchg][1] <= lo)
		w->atchg++;
	if (w->atchg == w->chg.n || w->chg.v[w->atchg][0] > lo || w->chg.v[w->atchg][1] < hi)
		return gm_snap_bad(r, -EINVAL, "first %#llx + raw_len %u: pages the changed "
				   "runs do not mark changed", (unsigned long long)c->first,
				   c->raw_len);
	return 0;
}

static int gm_snap_data(struct gm_snap_reader *r, const struct gm_snap_chunk *c,
			struct gm_snap_seen *w, const struct gm_snap_walk_ops *ops, void *ctx)
{
	int ret = gm_snap_data_ok(r, c, w);

	if (!ret && w->parent && !gm_snap_opaque(r))
		ret = gm_snap_data_changed(r, c, w);
	if (ret)
		return ret;
	w->in_data = true;
	w->data_end = c->first + c->raw_len;
	w->sum.data_chunks++;
	w->sum.populated += c->raw_len;
	w->sum.stored += c->stored_len;
	return ops->on_data(ctx, r, c);
}

/* The END chunk: must be where the footer says, with the totals seen. */
static int gm_snap_finish(struct gm_snap_reader *r, struct gm_snap_seen *w)
{
	static const char *const names[] = {
		"chunks", "runs", "shared_pages", "data_chunks", "populated", "stored",
		"changed_pages", "digest",
	};
	struct gm_snap_end2 e = w->sum;
	const uint64_t *got = (const uint64_t *)&e, *said = (const uint64_t *)&r->end;
	unsigned fields = r->end_len / 8;

	_Static_assert(sizeof(names) / sizeof(names[0]) == sizeof(e) / 8, "END fields");
	e.chunks = r->index;
	if (r->hdr.major == GM_SNAP_V2_MAJOR)
		e.digest = XXH3_64bits_digest(&w->dig);
	if (r->chunk_off != r->end_offset)
		return gm_snap_bad(r, -EINVAL, "an END chunk before the one the footer names "
				   "(offset %llu)", (unsigned long long)r->end_offset);
	if (gm_snap_opaque(r)) {
		/* What only the sealed payloads could tell. */
		e.shared_pages = r->end.shared_pages;
		e.changed_pages = r->end.changed_pages;
	} else if (w->parent && !r->parent[0])
		return gm_snap_bad(r, -EINVAL, "the file has a parent but no parent chunk");
	for (unsigned i = 0; i < fields; i++)
		if (got[i] != said[i])
			return gm_snap_bad(r, -EINVAL, "%s at payload offset %u says %llu; the "
					   "chunks read give %llu", names[i], i * 8,
					   (unsigned long long)said[i],
					   (unsigned long long)got[i]);
	if (w->runs_pages != r->hdr.mem_size >> GM_PAGE_SHIFT)
		return gm_snap_bad(r, -EINVAL, "page states cover %llu of %llu pages",
				   (unsigned long long)w->runs_pages,
				   (unsigned long long)(r->hdr.mem_size >> GM_PAGE_SHIFT));
	if (w->parent && w->chg_pages != r->hdr.mem_size >> GM_PAGE_SHIFT)
		return gm_snap_bad(r, -EINVAL, "changed runs cover %llu of %llu pages",
				   (unsigned long long)w->chg_pages,
				   (unsigned long long)(r->hdr.mem_size >> GM_PAGE_SHIFT));
	return 0;
}

static int gm_snap_walk_one(struct gm_snap_reader *r, struct gm_snap_seen *w,
			    const struct gm_snap_walk_ops *ops, void *ctx)
{
	switch (r->chunk.type) {
	case GM_SNAP_STATES:
		return gm_snap_states(r, &r->chunk, w, ops, ctx);
	case GM_SNAP_DATA:
		return gm_snap_data(r, &r->chunk, w, ops, ctx);
	case GM_SNAP_PARENT:
		if (r->hdr.major == GM_SNAP_V2_MAJOR)
			return gm_snap_parent(r, &r->chunk, w);
		break;
	case GM_SNAP_CHANGED:
		if (r->hdr.major == GM_SNAP_V2_MAJOR)
			return gm_snap_changed(r, &r->chunk, w, ops, ctx);
		break;
	}
	return gm_snap_bad(r, -EINVAL, "unknown chunk type %u", r->chunk.type);
}

int gm_snap_walk(struct gm_snap_reader *r, const struct gm_snap_walk_ops *ops, void *ctx)
{
	struct gm_snap_seen w = { .parent = r->hdr.flags & GM_SNAP_HDR_PARENT };
	int ret;

	XXH3_64bits_reset(&w.dig);
	r->parent[0] = 0;
	r->pos = r->hdr.header_size;
	for (r->index = 0;; r->index++) {
		r->chunk_off = r->pos;
		memset(&r->chunk, 0, sizeof(r->chunk));
		if (r->pos > r->end_offset) {
			ret = gm_snap_bad(r, -EINVAL, "runs past the END chunk");
			break;
		}
		ret = gm_snap_take(r, &r->chunk, sizeof(r->chunk));
		if (ret) {
			ret = gm_snap_bad(r, ret, "reading the chunk header: %s", strerror(-ret));
			break;
		}
		if (ops->on_progress)
			ops->on_progress(ctx, r->pos, r->file_size);
		if (r->chunk.type == GM_SNAP_END) {
			ret = gm_snap_finish(r, &w);
			if (!ret && ops->on_progress)
				ops->on_progress(ctx, r->file_size, r->file_size);
			break;
		}
		XXH3_64bits_update(&w.dig, &r->chunk, sizeof(r->chunk));
		/* Sealed: a payload past the END chunk is damage, not an I/O error. */
		if (gm_snap_sealed(r) && r->chunk.stored_len > r->end_offset - r->pos) {
			ret = gm_snap_bad(r, -EINVAL, "stored_len %u runs past the END chunk",
					  r->chunk.stored_len);
			break;
		}
		ret = gm_snap_walk_one(r, &w, ops, ctx);
		if (ret)
			break;
	}
	free(w.chg.v);
	return ret;
}

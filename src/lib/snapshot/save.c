// SPDX-License-Identifier: MIT
/*
 * save.c - write a snapshot: file header, page-state runs, populated pages,
 * END chunk, footer (snap.h, docs/snapshot-format.md).
 *
 * Model: the whole save runs under g->lock, so no conversion, discard or
 * temporary mapping changes states or contents meanwhile; the guest (through
 * KVM) and devices (through pins) may still write, and what they write
 * lands in the file or not, page by page. Page data is read through the KVM
 * view, which maps every page whatever its state: private pages are never
 * made shared or mapped in the host view.
 *
 * Each chunk is first copied (or compressed) from guest memory into an
 * output arena and hashed there, then the arena goes to the file in large
 * writes. Hashing the copy, not guest memory, keeps every chunk consistent
 * with its checksum even when the guest writes during the save. Page data
 * is copied or compressed by filler threads while this thread writes (see
 * GM_BATCH_RAW); the file is the same as one thread would write.
 *
 * The file is written with direct I/O where the file system has it, through
 * the page cache with streaming writeback otherwise or with
 * GMEM_SNAP_BUFFERED (out.c); either way the writer's pace is the device's.
 * Arenas leave GM_OUT_ALIGN bytes of room in front of their data, and a
 * filler puts a batch where it will be written without being moved when
 * it can tell where it starts in the file (gm_batch_phase).
 *
 * Compression (GMEM_SNAP_COMPRESS) is adaptive: a batch is compressed only
 * when the writer will not need it before it can be compressed, judged
 * from the measured time the writer is blocked on the device per batch and
 * a filler takes to compress one (gm_batch_has_time). On a device slower
 * than zstd everything is compressed; on one faster than two CPUs can
 * compress, the save stays as fast as a raw one and compresses what the
 * spare time allows. GMEM_SNAP_COMPRESS_ALL compresses every chunk,
 * whatever it costs in time.
 *
 * Atomicity: the file is built as a temporary in the same directory, then
 * fsync, rename over @path, fsync of the directory. A save that fails or is
 * killed leaves an earlier file at @path as it was (a killed one may leave
 * its ".NAME.gmem-XXXXXX" temporary behind).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sys/random.h>

#define XXH_STATIC_LINKING_ONLY    /* XXH3_state_t in the saver */
#include <xxhash.h>
#include <zstd.h>

#include "clock.h"
#include "live.h"
#include "out.h"
#include "seal.h"
#include "snap.h"
#include "sys.h"
#include "track.h"

/* Arena of the header, STATES and END chunks: flushed when full. */
#define GM_ARENA_FLUSH (1u << 20)

/* Page data goes through a pipeline: the saving thread finds populated
 * extents and cuts them into batches of DATA chunks (GM_BATCH_RAW bytes of
 * pages at most); filler threads copy or compress each batch into its own
 * arena and hash its chunks; the saving thread writes the arenas in order.
 * Chunk numbers are fixed when a batch is cut, so the file is byte for byte
 * what one thread would write. Compression runs on two fillers, a raw copy
 * on one; the saving thread fills batches itself while it would otherwise
 * wait (and alone if no thread can be started). Batches are small and
 * few, and their arenas one huge-page mapping, so a small save does not
 * spend its time faulting in fresh buffers. */
#define GM_BATCH_RAW    (1u << 20)
#define GM_BATCH_PIECES (GM_BATCH_RAW / GMEM_PAGE_SIZE)
#define GM_BATCH_SLOTS  8
#define GM_FILLERS_MAX  2

struct gm_piece {
	uint64_t gpa;
	uint32_t len;
};

struct gm_batch {
	struct gm_piece piece[GM_BATCH_PIECES];
	uint32_t n;
	uint64_t first_index;   /* chunk number of piece[0]                    */
	uint8_t *room;          /* GM_OUT_ALIGN-aligned start of the slot      */
	uint8_t *arena;         /* chunks, headers included, once filled:
				 * less than GM_OUT_ALIGN after room           */
	size_t len, cap;
	int end_phase;          /* file offset % GM_OUT_ALIGN after this batch,
				 * -1 while unknown (gm_batch_phase)           */
	uint64_t raw, stored;   /* page bytes, payload bytes                   */
	int err;                /* a live save lost a page: the save fails     */
	bool filled;
};

struct gm_saver;

struct gm_filler {
	struct gm_saver *s;
	pthread_t thread;
	ZSTD_CCtx *cctx;
	uint8_t *bounce;        /* live save: a chunk assembled from copies    */
	bool started;
	bool zstd_only;         /* adaptive: takes only batches it compresses  */
};

struct gm_saver {
	struct gmem *g;
	const struct gmem_snapshot_opts *o;
	int fd;
	char *tmp;              /* temporary file, unlinked on failure          */
	struct gm_out out;      /* the temporary, being written                 */
	uint8_t *room;          /* the arena's buffer, GM_OUT_ALIGN-aligned     */
	uint8_t *arena;         /* header, STATES, END: inside room, at the
				 * file's phase (gm_out_put)                    */
	size_t len, cap;
	uint64_t index;         /* chunks emitted                               */
	ZSTD_CCtx *cctx;
	struct gm_snap_end2 end;        /* v1 files write the first 48 bytes    */
	/* Version 2 (a parent, a key or a tracked memory): the header as
	 * written, the digest of the chunk headers, the END chunk's header. */
	bool v2;
	struct gm_seal *seal;   /* o->key: every payload sealed (seal.h)       */
	uint8_t hdr[sizeof(struct gm_snap_header2)];
	uint32_t hdr_len;
	XXH3_state_t dig;
	uint8_t id[GM_SNAP_ID_BYTES];   /* identity of the file written         */
	/* Incremental: the parent's identity and recorded path; the pages
	 * changed since it (chg, a bit per page; NULL: every page). */
	bool incremental;
	uint8_t parent_id[GM_SNAP_ID_BYTES];
	char parent_rec[GM_SNAP_PARENT_MAX + 1];
	uint64_t *chg;
	uint64_t *track_chg;    /* what the tracker handed over (track.c)       */
	uint64_t total, done;   /* populated bytes, for progress                */
	/* GMEM_SNAP_LIVE: the start image (live.c), the saving thread's bounce
	 * buffer for chunks it fills itself. */
	struct gm_live *live;
	uint8_t *bounce;
	/* The data pipeline (see GM_BATCH_RAW). */
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* any change of the sequence numbers below    */
	struct gm_batch *slot[GM_BATCH_SLOTS];
	uint8_t *arenas;        /* every slot's arena, one mapping             */
	size_t arenas_len;
	uint64_t seq_cut, seq_fill, seq_write;  /* batches cut / taken / written */
	size_t phase_write;     /* gm_out_phase() before batch seq_write        */
	uint64_t wait_ns;       /* adaptive zstd: running mean of the time the
				 * writer is blocked (off CPU) per batch write */
	bool wait_known;        /* a batch has been written                      */
	uint64_t zstd_ns;       /* and per batch compression (0: none yet)      */
	bool adaptive;          /* GMEM_SNAP_COMPRESS without _ALL              */
	bool cut_done;          /* no more batches will be cut                 */
	bool stop;              /* fillers leave                               */
	struct gm_filler fill[GM_FILLERS_MAX];
	unsigned nfill;
};

/* Write the arena out, and start it again where the next write will need
 * no move. */
static int gm_save_flush(struct gm_saver *s)
{
	int ret = gm_out_put(&s->out, s->room, s->arena, s->len);

	if (ret)
		return ret;
	s->arena = s->room + gm_out_phase(&s->out);
	s->len = 0;
	if (s->o->progress)
		s->o->progress(s->o->progress_ctx, s->done, s->total);
	return 0;
}

/* Room for @need more bytes in the arena, flushing it first if needed. */
static int gm_save_room(struct gm_saver *s, size_t need)
{
	if (s->len + need <= s->cap)
		return 0;
	return gm_save_flush(s);
}

/* The chunk whose payload was just placed after room for its header at
 * arena[len]: write the header in front and account for it. The arena
 * holds payloads of any length back to back, so headers are copied in,
 * never accessed in place (they may be unaligned). */
static int gm_save_emit(struct gm_saver *s, uint32_t type, uint32_t flags, uint64_t first,
			uint32_t raw_len, uint32_t stored_len)
{
	struct gm_snap_chunk c = { .type = type, .flags = flags, .first = first,
				   .raw_len = raw_len, .stored_len = stored_len };
	uint8_t *at = s->arena + s->len;

	if (s->seal) {
		c.stored_len = raw_len + GM_SNAP_TAG_BYTES;
		gm_seal_chunk(s->seal, &c, s->index, at + sizeof(c), at + sizeof(c), raw_len);
	}
	c.hash = gm_snap_chunk_hash(&c, s->index, at + sizeof(c));
	memcpy(at, &c, sizeof(c));
	if (type == GM_SNAP_END)
		gm_snap_identity(s->hdr, s->hdr_len, &c, at + sizeof(c), c.stored_len, s->id);
	else if (s->v2)
		XXH3_64bits_update(&s->dig, &c, sizeof(c));
	s->index++;
	s->len += sizeof(c) + c.stored_len;
	return s->len >= GM_ARENA_FLUSH ? gm_save_flush(s) : 0;
}

static void gm_save_header_v1(struct gm_saver *s)
{
	struct gm_snap_header h = {
		.major = GM_SNAP_VERSION_MAJOR,
		.minor = GM_SNAP_VERSION_MINOR,
		.header_size = sizeof(h),
		.page_size = GMEM_PAGE_SIZE,
		.flags = s->o->flags & GM_SNAP_ZSTD_FLAGS ? GM_SNAP_HDR_COMPRESSED : 0,
		.mem_size = s->g->size,
		.backend = s->g->b.kind,
		.mem_flags = s->g->flags,
		.chunk_max = GM_SNAP_CHUNK_MAX,
	};

	memcpy(h.magic, GM_SNAP_MAGIC, sizeof(h.magic));
	h.hash = gm_snap_header_hash(&h);
	memcpy(s->hdr, &h, sizeof(h));
	s->hdr_len = sizeof(h);
}

static int gm_save_header_v2(struct gm_saver *s)
{
	struct gm_snap_header2 h = {
		.major = GM_SNAP_V2_MAJOR,
		.minor = GM_SNAP_V2_MINOR,
		.header_size = sizeof(h),
		.page_size = GMEM_PAGE_SIZE,
		.flags = (s->o->flags & GM_SNAP_ZSTD_FLAGS ? GM_SNAP_HDR_COMPRESSED : 0) |
			 (s->incremental ? GM_SNAP_HDR_PARENT : 0) |
			 (s->o->key ? GM_SNAP_HDR_SEALED : 0),
		.mem_size = s->g->size,
		.backend = s->g->b.kind,
		.mem_flags = s->g->flags,
		.chunk_max = GM_SNAP_CHUNK_MAX,
		.aead = s->o->key ? gm_seal_pick() : GM_SNAP_AEAD_NONE,
	};
	int ret;

	memcpy(h.magic, GM_SNAP_MAGIC, sizeof(h.magic));
	/* Random: two saves of the same memory are two files (and, sealed,
	 * two subkeys). */
	if (getrandom(h.file_id, sizeof(h.file_id), 0) != sizeof(h.file_id)) {
		gm_set_error("snapshot: getrandom: %s", strerror(errno));
		return -EIO;
	}
	if (s->incremental)
		memcpy(h.parent_id, s->parent_id, sizeof(h.parent_id));
	if (s->o->key) {
		ret = gm_seal_new(s->o->key, h.aead, h.file_id, &s->seal);
		if (ret)
			return ret;
		gm_seal_header(s->seal, &h, h.seal);
	}
	h.hash = gm_snap_header2_hash(&h);
	if (s->seal)
		gm_seal_bind(s->seal, &h, sizeof(h));
	memcpy(s->hdr, &h, sizeof(h));
	s->hdr_len = sizeof(h);
	XXH3_64bits_reset(&s->dig);
	return 0;
}

static int gm_save_header(struct gm_saver *s)
{
	if (s->v2) {
		int ret = gm_save_header_v2(s);

		if (ret)
			return ret;
	} else {
		gm_save_header_v1(s);
	}
	memcpy(s->arena, s->hdr, s->hdr_len);
	s->len = s->hdr_len;
	return 0;
}

/* The PARENT chunk: the parent's path as recorded, first of all. */
static int gm_save_parent(struct gm_saver *s)
{
	uint32_t n = (uint32_t)strlen(s->parent_rec);
	int ret = gm_save_room(s, sizeof(struct gm_snap_chunk) + n + GM_SNAP_TAG_BYTES);

	if (ret)
		return ret;
	memcpy(s->arena + s->len + sizeof(struct gm_snap_chunk), s->parent_rec, n);
	return gm_save_emit(s, GM_SNAP_PARENT, 0, 0, n, n);
}

static int gm_save_runs(struct gm_saver *s, uint32_t type, uint64_t first,
			const uint64_t *runs, uint64_t n)
{
	uint32_t bytes = (uint32_t)(n * sizeof(*runs));
	int ret = gm_save_room(s, sizeof(struct gm_snap_chunk) + bytes + GM_SNAP_TAG_BYTES);

	if (ret)
		return ret;
	memcpy(s->arena + s->len + sizeof(struct gm_snap_chunk), runs, bytes);
	return gm_save_emit(s, type, 0, first, bytes, bytes);
}

/* First page at or after @pos, below @end, whose bit in @bits is not @v. */
static uint64_t gm_bits_run_end(const uint64_t *bits, uint64_t pos, uint64_t end, int v)
{
	while (pos < end) {
		uint64_t w = bits[pos / 64] ^ (v ? ~0ull : 0), b = pos % 64;

		w >>= b;
		if (w) {
			pos += (uint64_t)__builtin_ctzll(w);
			return pos < end ? pos : end;
		}
		pos += 64 - b;
	}
	return end;
}

/* The CHANGED runs of an incremental file: bit 0 set for pages changed
 * since the parent. */
static int gm_save_changed(struct gm_saver *s)
{
	const uint64_t per = GM_SNAP_CHUNK_MAX / sizeof(uint64_t), npages = s->g->st.npages;
	uint64_t pos = 0, first = 0, n = 0, *runs;
	int ret = 0;

	runs = malloc(GM_SNAP_CHUNK_MAX);
	if (!runs)
		return -ENOMEM;
	while (pos < npages) {
		int v = gm_track_test(s->chg, pos);
		uint64_t end = gm_bits_run_end(s->chg, pos, npages, v);

		if (!n)
			first = pos;
		runs[n++] = gm_snap_run(end - pos, v);
		s->end.changed_pages += v ? end - pos : 0;
		pos = end;
		if (n == per || pos == npages) {
			ret = gm_save_runs(s, GM_SNAP_CHANGED, first, runs, n);
			if (ret)
				break;
			n = 0;
		}
	}
	free(runs);
	return ret;
}

/* Page states as runs, GM_SNAP_CHUNK_MAX bytes of runs per chunk. */
static int gm_save_states(struct gm_saver *s)
{
	const struct gm_state *st = &s->g->st;
	const uint64_t per = GM_SNAP_CHUNK_MAX / sizeof(uint64_t);
	uint64_t pos = 0, first = 0, n = 0, *runs;
	int ret = 0;

	runs = malloc(GM_SNAP_CHUNK_MAX);
	if (!runs)
		return -ENOMEM;
	while (pos < st->npages) {
		int cur = gm_state_get(st, pos);
		uint64_t start, len;

		/* Cannot fail: page pos has state cur. */
		gm_state_next_run(st, pos, st->npages - pos, cur, &start, &len);
		if (!n)
			first = pos;
		runs[n++] = gm_snap_run(len, cur);
		s->end.runs++;
		s->end.shared_pages += cur ? len : 0;
		pos = start + len;
		if (n == per || pos == st->npages) {
			ret = gm_save_runs(s, GM_SNAP_STATES, first, runs, n);
			if (ret)
				break;
			n = 0;
		}
	}
	free(runs);
	return ret;
}

/* Arena room for a batch of GM_BATCH_RAW bytes in GM_BATCH_PIECES chunks,
 * each compressed at worst to ZSTD_compressBound(). */
static size_t gm_batch_cap(void)
{
	return GM_BATCH_RAW + GM_BATCH_RAW / 256 +
	       GM_BATCH_PIECES * (sizeof(struct gm_snap_chunk) + 128) + 4096;
}

/* A slot: GM_OUT_ALIGN of room for the file's carry, then the batch. */
static size_t gm_slot_size(void)
{
	return (GM_OUT_ALIGN + gm_batch_cap() + GM_OUT_ALIGN - 1) / GM_OUT_ALIGN * GM_OUT_ALIGN;
}

/* File bytes of batch @b if filled raw. */
static size_t gm_batch_raw_len(const struct gm_saver *s, const struct gm_batch *b)
{
	return b->n * (sizeof(struct gm_snap_chunk) + (s->seal ? GM_SNAP_TAG_BYTES : 0)) + b->raw;
}

static int gm_save_level(const struct gm_saver *s)
{
	return s->o->level ? s->o->level : 1;
}

static uint64_t gm_now_ns(void)
{
	return gm_clock_ns(CLOCK_MONOTONIC);
}

/* Fold @ns into running mean *@mean, its first sample if @first (new
 * samples weigh 1/4). */
static void gm_mean_add(uint64_t *mean, uint64_t ns, bool first)
{
	*mean = first ? ns : (*mean * 3 + ns) / 4;
}

/* Copy or compress (with @cctx) every chunk of @b into its arena and hash
 * it. Reads guest memory only: the saving thread holds g->lock for all of
 * it, or, in a live save, the pages read are those of the start image
 * (gm_live_read_begin; @bounce is where copies are assembled). */
static void gm_batch_fill(struct gm_saver *s, struct gm_batch *b, ZSTD_CCtx *cctx,
			  uint8_t *bounce)
{
	b->len = 0;
	b->stored = 0;
	b->err = 0;
	for (uint32_t i = 0; i < b->n; i++) {
		const uint8_t *src = s->g->kvm_view + b->piece[i].gpa;
		uint32_t len = b->piece[i].len, stored = len, flags = 0;
		struct gm_snap_chunk c = { .type = GM_SNAP_DATA, .first = b->piece[i].gpa,
					   .raw_len = len };
		uint8_t *at = b->arena + b->len, *dst = at + sizeof(c);

		if (s->live) {
			src = gm_live_read_begin(s->live, b->piece[i].gpa, len, bounce, &b->err);
			if (!src)
				return;
		}
		if (cctx) {
			size_t bound = ZSTD_compressBound(len), z;

			/* gm_batch_cap() leaves room for this. */
			z = ZSTD_compress2(cctx, dst, bound, src, len);
			/* Keep it raw when zstd does not help: loads faster. */
			if (!ZSTD_isError(z) && z < len) {
				stored = (uint32_t)z;
				flags = GM_SNAP_CHUNK_ZSTD;
			}
		}
		if (!flags && !s->seal)
			memcpy(dst, src, len);
		c.flags = flags;
		c.stored_len = stored;
		if (s->seal) {
			/* Raw: encrypted from guest memory straight into the arena. */
			c.stored_len += GM_SNAP_TAG_BYTES;
			gm_seal_chunk(s->seal, &c, b->first_index + i, flags ? dst : src, dst,
				      stored);
		}
		if (s->live)
			gm_live_read_end(s->live, b->piece[i].gpa, len);
		c.hash = gm_snap_chunk_hash(&c, b->first_index + i, dst);
		memcpy(at, &c, sizeof(c));
		b->len += sizeof(c) + c.stored_len;
		b->stored += c.stored_len;
	}
}

/*
 * What a batch took to compress in the last adaptive save of this process,
 * and at which level: zstd's speed is the machine's, not the file's, so a
 * later save starts from it instead of measuring again (a measurement is a
 * compression the writer may wait for). Guarded by gm_zstd_memo_lock.
 */
static pthread_mutex_t gm_zstd_memo_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	int level;
	uint64_t ns;
} gm_zstd_memo;

static void gm_zstd_memo_load(struct gm_saver *s, int level)
{
	pthread_mutex_lock(&gm_zstd_memo_lock);
	if (gm_zstd_memo.ns && gm_zstd_memo.level == level)
		s->zstd_ns = gm_zstd_memo.ns;
	pthread_mutex_unlock(&gm_zstd_memo_lock);
}

static void gm_zstd_memo_store(const struct gm_saver *s, int level)
{
	pthread_mutex_lock(&gm_zstd_memo_lock);
	if (s->zstd_ns) {
		gm_zstd_memo.level = level;
		gm_zstd_memo.ns = s->zstd_ns;
	}
	pthread_mutex_unlock(&gm_zstd_memo_lock);
}

/* Take the next cut batch to fill, or NULL; *@seq its number. Called with
 * s->mu held. */
static struct gm_batch *gm_batch_take(struct gm_saver *s, uint64_t *seq)
{
	if (s->stop || s->seq_fill == s->seq_cut)
		return NULL;
	*seq = s->seq_fill++;
	return s->slot[*seq % GM_BATCH_SLOTS];
}

/*
 * Adaptive compression: is there time to compress batch @seq before the
 * writer wants it, on a CPU nobody else needs? The writer is at batch
 * s->seq_write and is blocked on the device (off CPU) about s->wait_ns
 * per batch: CPU time a compression can use without slowing anything.
 * Its time on CPU (copying into the page cache) does not count: there a
 * compressing filler would slow the writer down, and a slower writer would
 * look like room for more compression. Compressing a batch takes about
 * s->zstd_ns (this save's running mean, or the last save's: gm_zstd_memo).
 * Until a batch has been written, batches go raw, except that while zstd's
 * speed is unknown a batch two or more ahead of the writer is compressed
 * (which measures it). Called with s->mu held.
 */
static bool gm_batch_has_time(const struct gm_saver *s, uint64_t seq)
{
	uint64_t ahead = seq - s->seq_write;

	if (!s->adaptive)
		return true;
	if (!s->wait_known)
		return !s->zstd_ns && ahead >= 2;
	if (!s->zstd_ns)
		return s->wait_ns && ahead >= 2;
	/* Twice the time: the estimate is a mean, and a wrong guess makes the
	 * writer wait while a wrong raw batch only costs file size. */
	return ahead * s->wait_ns >= 2 * s->zstd_ns;
}

/*
 * Where batch @seq will start in the file, modulo GM_OUT_ALIGN, or -1 if
 * that is not known yet: the writer's phase for the batch it writes next,
 * else where the batch before ends. That one has been taken (batches are
 * taken in order) and not written, so its slot still holds it; its end is
 * known once it is filled, or when it was taken to be filled raw (its
 * length is then fixed). A batch placed at a guess is moved when written.
 * Called with s->mu held.
 */
static int gm_batch_phase(const struct gm_saver *s, uint64_t seq)
{
	if (seq == s->seq_write)
		return (int)s->phase_write;
	return s->slot[(seq - 1) % GM_BATCH_SLOTS]->end_phase;
}

/* Fill batch @b, number @seq, just taken: compressed with @cctx if there
 * is time, raw otherwise, at its phase in the file; then mark it filled.
 * Called with s->mu held, which is dropped while filling. */
static void gm_batch_fill_taken(struct gm_saver *s, struct gm_batch *b, uint64_t seq,
				ZSTD_CCtx *cctx, uint8_t *bounce)
{
	bool z = cctx && gm_batch_has_time(s, seq);
	uint64_t t0 = z ? gm_now_ns() : 0, ns;
	int phase = gm_batch_phase(s, seq);

	b->arena = b->room + (phase < 0 ? 0 : phase);
	b->end_phase = phase < 0 || z ? -1 :
		       (int)((phase + gm_batch_raw_len(s, b)) % GM_OUT_ALIGN);
	pthread_mutex_unlock(&s->mu);
	gm_batch_fill(s, b, z ? cctx : NULL, bounce);
	ns = z ? gm_now_ns() - t0 : 0;
	pthread_mutex_lock(&s->mu);
	b->filled = true;
	if (phase >= 0)
		b->end_phase = (int)((phase + b->len) % GM_OUT_ALIGN);
	if (z)
		gm_mean_add(&s->zstd_ns, ns, !s->zstd_ns);    /* never 0 once measured */
	pthread_cond_broadcast(&s->cv);
}

/* The next batch for filler @f, or NULL. A second filler of an adaptive
 * save only takes batches there is time to compress: a second raw copier
 * measured slower than one (8 GiB at 25 %: ~870 against ~1320 MiB/s), as
 * it competes with the writer for the CPUs. Called with s->mu held. */
static struct gm_batch *gm_filler_take(struct gm_saver *s, const struct gm_filler *f,
				       uint64_t *seq)
{
	if (f->zstd_only && (s->seq_fill == s->seq_cut || !gm_batch_has_time(s, s->seq_fill)))
		return NULL;
	return gm_batch_take(s, seq);
}

static void *gm_filler_main(void *arg)
{
	struct gm_filler *f = arg;
	struct gm_saver *s = f->s;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		struct gm_batch *b;
		uint64_t seq;

		while (!(b = gm_filler_take(s, f, &seq)) && !s->stop && !s->cut_done)
			pthread_cond_wait(&s->cv, &s->mu);
		if (!b)
			break;
		gm_batch_fill_taken(s, b, seq, f->cctx, f->bounce);
	}
	pthread_mutex_unlock(&s->mu);
	gm_sys_stack_wipe();      /* page data passed through this stack */
	return NULL;
}

/* Scan position between batches: the rest of the current extent. */
struct gm_cutter {
	struct gm_scan scan;
	uint64_t live_pos;              /* a live save's start image instead  */
	uint64_t start, len;
	uint64_t pstart, plen;  /* incremental: the populated extent left      */
	bool done;
};

/* The next extent to save: a populated one, or in an incremental save the
 * next part of one that changed since the parent. 1, 0 at the end, -errno. */
static int gm_cut_extent(struct gm_saver *s, struct gm_cutter *k)
{
	if (s->live)
		return gm_live_cut_next(s->live, &k->live_pos, &k->start, &k->len);
	for (;;) {
		uint64_t p, e, end;
		int ret;

		if (!k->plen) {
			ret = gm_scan_next(&k->scan, &k->pstart, &k->plen);
			if (ret <= 0)
				return ret;
		}
		if (!s->chg) {
			k->start = k->pstart;
			k->len = k->plen;
			k->plen = 0;
			return 1;
		}
		p = k->pstart >> GM_PAGE_SHIFT;
		end = (k->pstart + k->plen) >> GM_PAGE_SHIFT;
		p = gm_bits_run_end(s->chg, p, end, 0);         /* first changed */
		e = gm_bits_run_end(s->chg, p, end, 1);         /* and its end   */
		k->plen = (end - e) << GM_PAGE_SHIFT;
		k->pstart = e << GM_PAGE_SHIFT;
		if (e > p) {
			k->start = p << GM_PAGE_SHIFT;
			k->len = (e - p) << GM_PAGE_SHIFT;
			return 1;
		}
	}
}

/* Cut the next batch into @b: 1, 0 when there is no page data left, or
 * -errno. Extents are cut into GM_SNAP_CHUNK_MAX pieces from their start,
 * as a save without the pipeline would. */
static int gm_batch_cut(struct gm_saver *s, struct gm_cutter *k, struct gm_batch *b)
{
	uint64_t raw = 0;
	int ret;

	b->n = 0;
	b->filled = false;
	b->end_phase = -1;
	while (b->n < GM_BATCH_PIECES) {
		uint32_t take;

		if (!k->len) {
			if (k->done)
				break;
			ret = gm_cut_extent(s, k);
			if (ret < 0) {
				gm_set_error("snapshot: finding populated pages: %s", strerror(-ret));
				return ret;
			}
			if (!ret) {
				k->done = true;
				break;
			}
		}
		take = (uint32_t)(k->len < GM_SNAP_CHUNK_MAX ? k->len : GM_SNAP_CHUNK_MAX);
		if (raw + take > GM_BATCH_RAW)
			break;
		b->piece[b->n].gpa = k->start;
		b->piece[b->n].len = take;
		b->n++;
		raw += take;
		k->start += take;
		k->len -= take;
	}
	b->raw = raw;
	b->first_index = s->index;
	s->index += b->n;
	return b->n ? 1 : 0;
}

/* Account the time writing one batch kept the writer blocked. */
static void gm_batch_waited(struct gm_saver *s, uint64_t wall, uint64_t cpu)
{
	uint64_t wait = wall > cpu ? wall - cpu : 0;

	pthread_mutex_lock(&s->mu);
	gm_mean_add(&s->wait_ns, wait, !s->wait_known);        /* may be 0 */
	s->wait_known = true;
	pthread_mutex_unlock(&s->mu);
}

/* Fold the chunk headers of batch @b into the file's digest, in order. */
static void gm_batch_digest(struct gm_saver *s, const struct gm_batch *b)
{
	const uint8_t *at = b->arena;

	for (uint32_t i = 0; i < b->n; i++) {
		struct gm_snap_chunk c;

		memcpy(&c, at, sizeof(c));
		XXH3_64bits_update(&s->dig, &c, sizeof(c));
		at += sizeof(c) + c.stored_len;
	}
}

/* Write filled batch @b at the end of the file. */
static int gm_batch_write(struct gm_saver *s, struct gm_batch *b)
{
	uint64_t t0, c0;
	int ret;

	/* Before the write, which may move the batch. */
	if (s->v2)
		gm_batch_digest(s, b);
	t0 = gm_now_ns();
	c0 = s->adaptive ? gm_clock_ns(CLOCK_THREAD_CPUTIME_ID) : 0;
	ret = gm_out_put(&s->out, b->room, b->arena, b->len);
	if (ret)
		return ret;
	if (s->adaptive)
		gm_batch_waited(s, gm_now_ns() - t0, gm_clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0);
	s->end.data_chunks += b->n;
	s->end.populated += b->raw;
	s->end.stored += b->stored;
	s->done += b->raw;
	if (s->o->progress)
		s->o->progress(s->o->progress_ctx, s->done, s->total);
	return 0;
}

/*
 * The arenas of the last save, kept for the next one (or NULL): faulting in
 * and zeroing 8 MiB of fresh arenas cost a small save (1 GiB at 1 %) a
 * sixth of its time. One set is kept per process, whatever the number of
 * memories; a save that finds it taken maps its own. Guarded by
 * gm_arena_cache_lock.
 */
static pthread_mutex_t gm_arena_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *gm_arena_cache;

/* All slots' arenas in one mapping, 2 MiB aligned and advised huge: a
 * fault per 2 MiB, not per 4 KiB, the first time each is used. The
 * process keeps the last one (gm_arena_cache). */
static int gm_arenas_map(struct gm_saver *s)
{
	size_t len = GM_BATCH_SLOTS * gm_slot_size();
	uint8_t *p;

	s->arenas_len = len;
	pthread_mutex_lock(&gm_arena_cache_lock);
	s->arenas = gm_arena_cache;
	gm_arena_cache = NULL;
	pthread_mutex_unlock(&gm_arena_cache_lock);
	if (s->arenas)
		return 0;
	if (gm_reserve(len, GMEM_REGION_SIZE, &p))
		return -ENOMEM;
	if (mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
		 0) == MAP_FAILED) {
		munmap(p, len);
		return -ENOMEM;
	}
	/* Guest data passes through: no core dump, no child. */
	if (gm_sys_guard(p, len, true)) {
		munmap(p, len);
		return -ENOMEM;
	}
	madvise(p, len, MADV_HUGEPAGE);        /* advisory */
	s->arenas = p;
	return 0;
}

static void gm_arenas_unmap(struct gm_saver *s)
{
	if (!s->arenas)
		return;
	pthread_mutex_lock(&gm_arena_cache_lock);
	if (!gm_arena_cache) {
		gm_arena_cache = s->arenas;
		s->arenas = NULL;
	}
	pthread_mutex_unlock(&gm_arena_cache_lock);
	if (s->arenas)
		munmap(s->arenas, s->arenas_len);
}

static int gm_pipe_start(struct gm_saver *s)
{
	bool z = s->o->flags & GM_SNAP_ZSTD_FLAGS;
	/* Sealing, like zstd, is CPU work: two fillers. */
	unsigned want = z || s->seal ? GM_FILLERS_MAX : 1;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (cpus < 2)
		want = 0;       /* the saving thread fills and writes alone */
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->phase_write = gm_out_phase(&s->out);
	s->adaptive = z && !(s->o->flags & GMEM_SNAP_COMPRESS_ALL);
	if (s->adaptive)
		gm_zstd_memo_load(s, gm_save_level(s));
	if (gm_arenas_map(s))
		return -ENOMEM;
	for (unsigned i = 0; i < GM_BATCH_SLOTS; i++) {
		s->slot[i] = calloc(1, sizeof(*s->slot[i]));
		if (!s->slot[i])
			return -ENOMEM;
		s->slot[i]->cap = gm_batch_cap();
		s->slot[i]->room = s->arenas + i * gm_slot_size();
		s->slot[i]->end_phase = -1;
	}
	for (unsigned i = 0; i < want; i++) {
		struct gm_filler *f = &s->fill[i];

		f->s = s;
		f->zstd_only = s->adaptive && i > 0;
		if (s->live) {
			f->bounce = gm_sys_guarded_alloc(GM_SNAP_CHUNK_MAX);
			if (!f->bounce)
				break;
		}
		if (z) {
			f->cctx = ZSTD_createCCtx();
			if (!f->cctx)
				break;
			ZSTD_CCtx_setParameter(f->cctx, ZSTD_c_compressionLevel,
					       gm_save_level(s));
			ZSTD_CCtx_setParameter(f->cctx, ZSTD_c_checksumFlag, 0);
			ZSTD_CCtx_setParameter(f->cctx, ZSTD_c_contentSizeFlag, 1);
		}
		if (pthread_create(&f->thread, NULL, gm_filler_main, f))
			break;  /* fewer fillers: slower, not wrong */
		f->started = true;
		s->nfill++;
	}
	return 0;
}

static void gm_pipe_stop(struct gm_saver *s)
{
	if (!s->slot[0])
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	for (unsigned i = 0; i < GM_FILLERS_MAX; i++) {
		if (s->fill[i].started)
			pthread_join(s->fill[i].thread, NULL);
		ZSTD_freeCCtx(s->fill[i].cctx);
		gm_sys_guarded_free(s->fill[i].bounce);
	}
	if (s->adaptive)
		gm_zstd_memo_store(s, gm_save_level(s));        /* fillers are gone */
	for (unsigned i = 0; i < GM_BATCH_SLOTS; i++)
		free(s->slot[i]);
	gm_arenas_unmap(s);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
}

/* Cut batches ahead while slots are free, write them in order as they are
 * filled, and fill one here rather than wait. */
static int gm_pipe_run(struct gm_saver *s)
{
	struct gm_cutter k = { 0 };
	int ret = 0;

	gm_scan_init(&k.scan, s->g);
	for (;;) {
		struct gm_batch *b;

		if (!s->cut_done && s->seq_cut - s->seq_write < GM_BATCH_SLOTS) {
			/* The slot is free: only this thread touches it until cut. */
			ret = gm_batch_cut(s, &k, s->slot[s->seq_cut % GM_BATCH_SLOTS]);
			pthread_mutex_lock(&s->mu);
			if (ret > 0)
				s->seq_cut++;
			else
				s->cut_done = true;
			pthread_cond_broadcast(&s->cv);
			pthread_mutex_unlock(&s->mu);
			if (ret < 0)
				return ret;
			continue;
		}
		if (s->seq_write == s->seq_cut)
			return 0;       /* all cut, all written */
		b = s->slot[s->seq_write % GM_BATCH_SLOTS];
		pthread_mutex_lock(&s->mu);
		while (!b->filled) {
			uint64_t seq;
			struct gm_batch *mine = gm_batch_take(s, &seq);

			/* Rather than wait, fill one here, by the same rule. */
			if (mine) {
				gm_batch_fill_taken(s, mine, seq, s->cctx, s->bounce);
				continue;
			}
			pthread_cond_wait(&s->cv, &s->mu);
		}
		pthread_mutex_unlock(&s->mu);
		ret = b->err ? b->err : gm_batch_write(s, b);
		if (ret)
			return ret;
		pthread_mutex_lock(&s->mu);
		b->filled = false;
		s->seq_write++;
		s->phase_write = gm_out_phase(&s->out);
		pthread_mutex_unlock(&s->mu);
	}
}

static int gm_save_data(struct gm_saver *s)
{
	int ret = gm_save_flush(s);     /* header and states first */

	if (!ret)
		ret = gm_pipe_start(s);
	if (!ret)
		ret = gm_pipe_run(s);
	gm_pipe_stop(s);
	return ret;
}

static int gm_save_end(struct gm_saver *s)
{
	struct gm_snap_footer f;
	uint64_t end_off;
	int ret;

	uint32_t n = s->v2 ? sizeof(struct gm_snap_end2) : sizeof(struct gm_snap_end);

	ret = gm_save_room(s, sizeof(struct gm_snap_chunk) + sizeof(s->end) + GM_SNAP_TAG_BYTES +
			   sizeof(f));
	if (ret)
		return ret;
	end_off = s->out.off + s->len;
	s->end.chunks = s->index;
	if (s->v2)
		s->end.digest = XXH3_64bits_digest(&s->dig);
	memcpy(s->arena + s->len + sizeof(struct gm_snap_chunk), &s->end, n);
	ret = gm_save_emit(s, GM_SNAP_END, 0, 0, n, n);
	if (ret)
		return ret;
	ret = gm_save_room(s, sizeof(f));
	if (ret)
		return ret;
	f.end_offset = end_off;
	memcpy(f.magic, GM_SNAP_END_MAGIC, sizeof(f.magic));
	memcpy(s->arena + s->len, &f, sizeof(f));
	s->len += sizeof(f);
	ret = gm_save_flush(s);
	return ret ? ret : gm_out_finish(&s->out);
}

/* Can the memory be saved now? Caller holds g->lock. */
static int gm_save_check(struct gm_saver *s)
{
	struct gmem *g = s->g;
	int ret;

	if (g->broken)
		return -EIO;
	if (g->saving_live) {
		gm_set_error("snapshot: a live save of this memory is being written");
		return -EBUSY;
	}
	/* Pages a lazy restore has not loaded yet look like holes to the scan. */
	ret = gm_loader_ensure(g, 0, g->st.npages);
	if (ret)
		return ret;
	if (g->b.inplace && g->st.nshared < g->st.npages) {
		gm_set_error("snapshot: the kernel converts in place and refuses host access "
			     "to private pages; they cannot be saved without sharing them");
		return -EOPNOTSUPP;
	}
	/* Before a live save switches the tracker's mechanism. */
	return gm_track_parent_check(g, s->o->parent ? s->parent_id : NULL);
}

/* The start: what the file says of the memory as a whole, and which pages
 * it holds. A live save's start image is fixed already (gm_live_fix), so
 * no page is written unseen between it and the changed pages taken here.
 * Caller holds g->lock. */
static int gm_save_fix(struct gm_saver *s)
{
	struct gmem *g = s->g;
	int ret;

	ret = gm_track_save_begin(g, s->o->parent ? s->parent_id : NULL, &s->track_chg,
				  &s->incremental);
	if (ret)
		return ret;
	s->chg = s->incremental ? s->track_chg : NULL;
	if (s->live)
		gm_live_set_changed(s->live, s->chg);
	if (s->o->progress && s->live) {
		s->total = gm_live_populated(s->live) << GM_PAGE_SHIFT;
	} else if (s->o->progress) {
		ret = gm_scan_total(g, &s->total);
		if (ret)
			return ret;
	}
	ret = gm_save_header(s);
	if (!ret && s->incremental)
		ret = gm_save_parent(s);
	if (!ret)
		ret = gm_save_states(s);
	if (!ret && s->incremental)
		ret = gm_save_changed(s);
	return ret;
}

/* The page data and the end. Caller holds g->lock, or in a live save
 * need not. */
static int gm_save_rest(struct gm_saver *s)
{
	int ret = gm_save_data(s);

	return ret ? ret : gm_save_end(s);
}

/* A live save after gm_live_arm(): the page tables are walked unlocked,
 * the start fixed under the lock (between the caller's live_pause calls),
 * the data written unlocked. */
static int gm_save_live(struct gm_saver *s)
{
	const struct gmem_snapshot_opts *o = s->o;
	struct gmem *g = s->g;
	int ret = gm_live_prepare(s->live);

	if (ret)
		return ret;
	if (o->live_pause) {
		ret = o->live_pause(o->progress_ctx, 1);
		if (ret) {
			gm_set_error("snapshot: the caller could not pause for the start (%s)",
				     strerror(ret < 0 ? -ret : EINVAL));
			return ret < 0 ? ret : -EINVAL;
		}
	}
	pthread_mutex_lock(&g->lock);
	ret = gm_live_fix(s->live);
	if (!ret)
		ret = gm_save_fix(s);
	pthread_mutex_unlock(&g->lock);
	if (o->live_pause)
		o->live_pause(o->progress_ctx, 0);
	if (ret)
		return ret;
	if (o->progress)
		o->progress(o->progress_ctx, 0, s->total);
	ret = gm_save_rest(s);
	pthread_mutex_lock(&g->lock);
	if (!ret && gm_track_missed(g)) {
		gm_set_error("snapshot: a mapping made during the live save could not be "
			     "write-protected; the file might miss a write");
		ret = -EIO;
	}
	pthread_mutex_unlock(&g->lock);
	return ret;
}

/* The whole save under the lock; a live save holds it for its start only
 * and keeps other saves away until it ends (g->saving_live). */
static int gm_save_run(struct gm_saver *s)
{
	struct gmem *g = s->g;
	int ret;

	pthread_mutex_lock(&g->lock);
	ret = gm_save_check(s);
	if (!ret && s->o->flags & GMEM_SNAP_LIVE) {
		ret = gm_live_arm(g, &s->live);
		g->saving_live = !ret;
	} else if (!ret) {
		ret = gm_save_fix(s);
		if (!ret)
			ret = gm_save_rest(s);
	}
	pthread_mutex_unlock(&g->lock);
	if (!s->live)
		return ret;
	ret = gm_save_live(s);
	gm_live_end(s->live);   /* takes g->lock: the hook goes */
	s->live = NULL;
	pthread_mutex_lock(&g->lock);
	g->saving_live = false;
	pthread_mutex_unlock(&g->lock);
	return ret;
}

/* Create the temporary file next to @path. */
static int gm_save_tmp(struct gm_saver *s, const char *path)
{
	char *d = strdup(path), *b = strdup(path);
	int ret = 0;

	if (!d || !b || asprintf(&s->tmp, "%s/.%s.gmem-XXXXXX", dirname(d), basename(b)) < 0) {
		s->tmp = NULL;
		ret = -ENOMEM;
		goto out;
	}
	s->fd = mkostemp(s->tmp, O_CLOEXEC);
	if (s->fd < 0) {
		ret = -errno;
		gm_set_error("snapshot: creating a temporary file for %s: %s", path,
			     strerror(errno));
		free(s->tmp);
		s->tmp = NULL;
	}
out:
	free(d);
	free(b);
	return ret;
}

static int gm_fsync_dir(const char *path)
{
	char *d = strdup(path);
	int fd, ret = 0;

	if (!d)
		return -ENOMEM;
	fd = open(dirname(d), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd))
		ret = -errno;
	if (fd >= 0)
		close(fd);
	free(d);
	return ret;
}

/* Make the temporary durable, then atomically the file at @path. */
static int gm_save_commit(struct gm_saver *s, const char *path)
{
	int ret;

	if (fsync(s->fd)) {
		ret = -errno;
		gm_set_error("snapshot: syncing %s: %s", s->tmp, strerror(errno));
		return ret;
	}
	if (rename(s->tmp, path)) {
		ret = -errno;
		gm_set_error("snapshot: renaming %s to %s: %s", s->tmp, path, strerror(errno));
		return ret;
	}
	free(s->tmp);
	s->tmp = NULL;  /* renamed: nothing to unlink any more */
	ret = gm_fsync_dir(path);
	if (ret)
		gm_set_error("snapshot: syncing the directory of %s: %s", path, strerror(-ret));
	return ret;
}

static int gm_save_setup(struct gm_saver *s)
{
	/* Header, STATES chunks of GM_SNAP_CHUNK_MAX, END and footer. */
	s->cap = GM_ARENA_FLUSH + 2 * sizeof(struct gm_snap_chunk) + GM_SNAP_CHUNK_MAX + 4096;
	/* Page data passes through it too (small saves, the direct-I/O tail):
	 * guarded, page-aligned, never left in the heap. */
	s->room = gm_sys_guarded_alloc(GM_OUT_ALIGN + s->cap);
	if (!s->room)
		return -ENOMEM;
	if (s->o->flags & GMEM_SNAP_LIVE) {
		s->bounce = gm_sys_guarded_alloc(GM_SNAP_CHUNK_MAX);
		if (!s->bounce)
			return -ENOMEM;
	}
	s->arena = s->room;
	if (!(s->o->flags & GM_SNAP_ZSTD_FLAGS))
		return 0;
	s->cctx = ZSTD_createCCtx();
	if (!s->cctx)
		return -ENOMEM;
	ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_compressionLevel, gm_save_level(s));
	/* The chunk header has the sizes and the hash already. */
	ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_checksumFlag, 0);
	ZSTD_CCtx_setParameter(s->cctx, ZSTD_c_contentSizeFlag, 1);
	return 0;
}

/* How the new file at @path names @parent: by its name alone when both
 * are in one directory (the pair can move together), else by its full
 * path. */
static int gm_parent_record(struct gm_saver *s, const char *parent, const char *path)
{
	char *rp = realpath(parent, NULL), *d = strdup(path), *rd = NULL, *pd = NULL;
	const char *rec;
	int ret = 0;

	if (!rp || !d || !(rd = realpath(dirname(d), NULL)) || !(pd = strdup(rp))) {
		ret = errno == ENOMEM ? -ENOMEM : -ESTALE;
		gm_set_error("snapshot: parent %s: %s", parent, strerror(errno));
		goto out;
	}
	rec = strcmp(dirname(pd), rd) ? rp : strrchr(rp, '/') + 1;
	if (strlen(rec) > GM_SNAP_PARENT_MAX) {
		gm_set_error("snapshot: parent %s: path longer than %u bytes", parent,
			     GM_SNAP_PARENT_MAX);
		ret = -ENAMETOOLONG;
		goto out;
	}
	strcpy(s->parent_rec, rec);
out:
	free(rp);
	free(d);
	free(rd);
	free(pd);
	return ret;
}

/* The parent the caller names: its identity, checked against the memory
 * under the lock (gm_track_save_begin), and how the file will name it. */
static int gm_save_parent_open(struct gm_saver *s, const char *parent, const char *path)
{
	struct gm_snap_reader r;
	int ret;

	if (!(s->g->flags & GMEM_F_TRACK_WRITES)) {
		gm_set_error("snapshot: an incremental save needs a memory opened with "
			     "GMEM_F_TRACK_WRITES");
		return -EINVAL;
	}
	ret = gm_snap_open(&r, parent);
	if (ret) {
		gm_set_error("snapshot: parent %s: %s", parent, gmem_last_error());
		return -ESTALE;
	}
	gm_snap_reader_identity(&r, s->parent_id);
	if (r.hdr.mem_size != s->g->size) {
		gm_set_error("snapshot: parent %s holds %llu bytes; this memory has %llu", parent,
			     (unsigned long long)r.hdr.mem_size,
			     (unsigned long long)s->g->size);
		ret = -ESTALE;
	}
	gm_snap_close(&r);
	return ret ? ret : gm_parent_record(s, parent, path);
}

/* Validated arguments; the whole save. */
int gm_snap_save(struct gmem *g, const char *path, const struct gmem_snapshot_opts *o)
{
	struct gm_saver s = { .g = g, .o = o, .fd = -1 };
	int ret;

	s.v2 = o->parent || o->key || g->flags & GMEM_F_TRACK_WRITES;
	if (o->parent) {
		ret = gm_save_parent_open(&s, o->parent, path);
		if (ret)
			return ret;
	}
	ret = gm_save_setup(&s);
	if (ret)
		goto out;
	ret = gm_save_tmp(&s, path);
	if (ret)
		goto out;
	ret = gm_out_init(&s.out, s.fd, s.tmp, !(o->flags & GMEM_SNAP_BUFFERED));
	if (ret)
		goto out_file;
	ret = gm_save_run(&s);
	if (!ret)
		ret = gm_save_commit(&s, path);
	if (s.track_chg || !ret)
		gm_track_save_end(g, s.track_chg, ret ? NULL : s.id);
	gm_out_destroy(&s.out);
out_file:
	if (s.tmp)
		unlink(s.tmp);
	close(s.fd);
out:
	free(s.tmp);
	ZSTD_freeCCtx(s.cctx);
	gm_seal_free(s.seal);
	gm_sys_guarded_free(s.room);
	gm_sys_guarded_free(s.bounce);
	return ret;
}

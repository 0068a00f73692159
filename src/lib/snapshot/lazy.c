// SPDX-License-Identifier: MIT
/*
 * lazy.c - lazy restore: page data loaded on first touch and in the
 * background (GMEM_SNAP_LAZY).
 *
 * Model: the restore's walk has checked the whole file (every chunk's hash,
 * order, coverage, the END totals) and noted where each DATA chunk lies
 * (struct gm_lazy_index); the page states are applied. Nothing of the page
 * data is in memory yet. Then:
 *
 *  - the KVM view, and the host view's shared runs as they are now, are
 *    registered with one userfaultfd in MISSING mode (shmem: a fault is
 *    raised for a page the file does not hold yet);
 *  - a fault thread serves each fault at once: it loads the chunk holding the
 *    page (read, hash checked again, decompressed, UFFDIO_COPY into the KVM
 *    view, which puts the pages in the file and so in every view), then
 *    zero-fills the page if it is still missing (a hole, or a page discarded
 *    since its chunk was loaded) and wakes the faulting address. So the pages
 *    a guest touches first are loaded first;
 *  - a loader thread loads every chunk in file order; once all are in, it
 *    stops the fault thread and closes the userfaultfd (the views behave as
 *    after an eager restore from then on);
 *  - the core calls gm_loader_ensure() (internal.h) before it makes a
 *    mapping that is not registered (a host-view run made shared, a kmap
 *    window, a collapse), before a discard, and before a save: that loads the
 *    chunks the range touches in the calling thread, or waits for their load.
 *
 * Guarantee: a chunk's pages become visible only after its hash matched,
 * twice (at restore and at load). A chunk that fails at load (the file
 * changed or went away since the restore) is never copied in: its pages are
 * poisoned (UFFDIO_POISON: touching them raises SIGBUS, KVM reports a memory
 * error), calls that need them fail with -EIO, and gmem_snapshot_lazy_wait()
 * returns the error with gmem_last_error() naming the chunk.
 *
 * Lock rules: l->mu guards the chunk states, counters, the first error and
 * the hold/finished flags; it is never held across I/O or an ioctl. A chunk
 * is loaded by exactly one thread (state LOADING); others wait on l->cv.
 * The fault and loader threads never take g->lock, so an ensure() called
 * with g->lock held may wait for them. Buffers: one set per loading role;
 * the ACCESS set is used only under g->lock, so one suffices.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/userfaultfd.h>
#include <zstd.h>

#include "sys.h"
#include "seal.h"
#include "snap.h"
#include "track.h"

#ifndef UFFD_FEATURE_POISON     /* Linux 6.6; older uapi headers lack it */
#define UFFD_FEATURE_POISON (1 << 14)
#define _UFFDIO_POISON      (0x08)
struct uffdio_poison {
	struct uffdio_range range;
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

enum gm_lz_state { GM_LZ_ABSENT, GM_LZ_LOADING, GM_LZ_LOADED, GM_LZ_FAILED };

/* Who loads a chunk: one buffer set each, and a counter each. */
enum gm_lz_who { GM_LZ_FAULT, GM_LZ_ACCESS, GM_LZ_LOADER, GM_LZ_WHO };

struct gm_lz_buf {
	uint8_t *stored;        /* a compressed payload                        */
	uint8_t *raw;           /* a chunk's page data                         */
	ZSTD_DCtx *dctx;
};

struct gm_lazy {
	struct gm_loader hook;  /* first: g->loader points here                */
	struct gmem *g;
	char *path[GM_SNAP_CHAIN_MAX];  /* for messages                        */
	int fd[GM_SNAP_CHAIN_MAX];      /* the snapshot files, newest first    */
	unsigned nfiles;
	int uffd;               /* -1 once every chunk is loaded               */
	int stopfd;             /* eventfd: the fault thread must return       */
	struct gm_lazy_index ix;
	/* Sealed files: each one's subkey, wiped once everything is loaded. */
	struct gm_seal *seal[GM_SNAP_CHAIN_MAX];
	pthread_t loader, server;
	bool server_stopped;    /* loader thread, then (after join) the closer */
	atomic_bool stop;       /* gmem_close(): loader, stop now              */
	atomic_bool done;       /* every chunk loaded: ensure() has no work    */
	atomic_uint_fast64_t faults;
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* a chunk left LOADING; finished; hold        */
	/* Under mu: */
	uint8_t *st;            /* enum gm_lz_state per chunk                  */
	bool hold, finished;
	int err;
	char msg[256];
	uint64_t nloaded, by[GM_LZ_WHO], bytes;
	struct gm_lz_buf buf[GM_LZ_WHO];
};

int gm_lazy_supported(struct gmem *g)
{
	if (g->b.kind == GMEM_BACKEND_MEMFD && g->b.huge != GMEM_HUGE_HUGETLB)
		return 0;
	gm_set_error("snapshot: lazy restore needs userfaultfd on the backing: memfd without "
		     "hugetlb pages (this memory: %s, %s)", gmem_backend_name(g->b.kind),
		     gmem_huge_name(g->b.huge));
	return -EOPNOTSUPP;
}

static int gm_lazy_push(struct gm_lazy_index *ix, const struct gm_lazy_chunk *k)
{
	if (ix->n == ix->cap) {
		uint64_t cap = ix->cap ? ix->cap * 2 : 64;
		struct gm_lazy_chunk *v = realloc(ix->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		ix->v = v;
		ix->cap = cap;
	}
	ix->v[ix->n++] = *k;
	return 0;
}

int gm_lazy_note(struct gm_lazy_index *ix, struct gm_snap_reader *r,
		 const struct gm_snap_chunk *c, uint32_t file, const uint64_t *decided)
{
	struct gm_lazy_chunk k = { .c = *c, .index = r->index, .file = file };
	uint64_t p = c->first >> GM_PAGE_SHIFT, end = p + (c->raw_len >> GM_PAGE_SHIFT);
	int ret = gm_snap_check(r, c, &k.off);

	if (ret)
		return ret;
	/* One entry per stretch of pages no newer file decided. */
	while (p < end) {
		uint64_t e = p + 1;

		if (decided && gm_track_test(decided, p)) {
			p++;
			continue;
		}
		while (e < end && !(decided && gm_track_test(decided, e)))
			e++;
		k.lo = p << GM_PAGE_SHIFT;
		k.hi = e << GM_PAGE_SHIFT;
		ret = gm_lazy_push(ix, &k);
		if (ret)
			return ret;
		p = e;
	}
	return 0;
}

static int gm_lazy_cmp(const void *a, const void *b)
{
	const struct gm_lazy_chunk *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

void gm_lazy_sort(struct gm_lazy_index *ix)
{
	if (ix->n)
		qsort(ix->v, ix->n, sizeof(*ix->v), gm_lazy_cmp);
}

/* First entry ending above byte @gpa (entries ascend without overlap). */
static uint64_t gm_lz_find(const struct gm_lazy *l, uint64_t gpa)
{
	uint64_t lo = 0, hi = l->ix.n;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (l->ix.v[mid].hi <= gpa)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Note the first failure, naming the chunk. Returns @err. */
static int gm_lz_fail(struct gm_lazy *l, const struct gm_lazy_chunk *k, int err,
		      const char *what)
{
	pthread_mutex_lock(&l->mu);
	if (!l->err) {
		l->err = err;
		snprintf(l->msg, sizeof(l->msg),
			 "snapshot %s: data chunk %llu at offset %llu (gpa %#llx): %s: pages "
			 "poisoned", l->path[k->file], (unsigned long long)k->index,
			 (unsigned long long)(k->off - sizeof(struct gm_snap_chunk)),
			 (unsigned long long)k->c.first, what);
	}
	pthread_mutex_unlock(&l->mu);
	return err;
}

/* Read chunk @k's payload into @b->raw, its hash checked again. */
static int gm_lz_read(struct gm_lazy *l, const struct gm_lazy_chunk *k, struct gm_lz_buf *b)
{
	bool z = k->c.flags & GM_SNAP_CHUNK_ZSTD;
	/* Sealed: the stored payload is longer than its pages (the tag). */
	const struct gm_seal *seal = l->seal[k->file];
	uint8_t *in = z || seal ? b->stored : b->raw;
	struct gm_snap_chunk p = k->c;
	char why[GM_SNAP_WHY_MAX];
	uint64_t done = 0;

	while (done < k->c.stored_len) {
		ssize_t n = pread(l->fd[k->file], in + done, k->c.stored_len - done,
				  (off_t)(k->off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return gm_lz_fail(l, k, n < 0 ? -errno : -EIO, "reading the payload");
		done += (uint64_t)n;
	}
	if (k->c.hash != gm_snap_chunk_hash(&k->c, k->index, in))
		return gm_lz_fail(l, k, -EINVAL, "checksum mismatch (file changed since the restore)");
	if (seal) {
		p = gm_seal_plain(&k->c);
		if (gm_seal_open(seal, &k->c, k->index, in, z ? in : b->raw))
			return gm_lz_fail(l, k, -EBADMSG, "authentication failed (file changed "
					  "since the restore)");
	}
	if (!z)
		return 0;
	if (gm_snap_decode(b->dctx, &p, in, b->raw, why, sizeof(why)))
		return gm_lz_fail(l, k, -EINVAL, why);
	return 0;
}

/* Put @len bytes at @src into the file at @gpa, through the KVM view. A page
 * already there (EEXIST) was written since: it is kept. Faulting threads
 * are woken by the caller, once the chunk is counted as loaded. */
static int gm_lz_copy(struct gm_lazy *l, uint64_t gpa, const uint8_t *src, uint64_t len)
{
	uint64_t done = 0;

	while (done < len) {
		struct uffdio_copy cp = {
			.dst = (uintptr_t)(l->g->kvm_view + gpa + done),
			.src = (uintptr_t)(src + done),
			.len = len - done,
			.mode = UFFDIO_COPY_MODE_DONTWAKE,
		};

		if (!ioctl(l->uffd, UFFDIO_COPY, &cp))
			return 0;
		if (cp.copy > 0)
			done += (uint64_t)cp.copy;
		else if (errno == EEXIST)
			done += GMEM_PAGE_SIZE;
		else if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return 0;
}

/* Make the missing pages of [addr, addr + len) raise SIGBUS when touched. */
static void gm_lz_poison(struct gm_lazy *l, uint8_t *addr, uint64_t len)
{
	for (uint64_t off = 0; off < len; off += GMEM_PAGE_SIZE) {
		struct uffdio_poison p = {
			.range = { .start = (uintptr_t)(addr + off), .len = GMEM_PAGE_SIZE },
		};

		ioctl(l->uffd, UFFDIO_POISON, &p);      /* EEXIST: a page is there */
	}
}

/* Chunk @i loaded (0), or failed (-EIO): load it here, or wait for the
 * thread loading it. */
static int gm_lz_get(struct gm_lazy *l, uint64_t i, enum gm_lz_who who)
{
	const struct gm_lazy_chunk *k = &l->ix.v[i];
	int ret;

	pthread_mutex_lock(&l->mu);
	while (l->st[i] == GM_LZ_LOADING)
		pthread_cond_wait(&l->cv, &l->mu);
	if (l->st[i] != GM_LZ_ABSENT) {
		ret = l->st[i] == GM_LZ_LOADED ? 0 : -EIO;
		pthread_mutex_unlock(&l->mu);
		return ret;
	}
	l->st[i] = GM_LZ_LOADING;
	pthread_mutex_unlock(&l->mu);

	ret = gm_lz_read(l, k, &l->buf[who]);
	if (!ret) {
		ret = gm_lz_copy(l, k->lo, l->buf[who].raw + (k->lo - k->c.first), k->hi - k->lo);
		if (ret)
			gm_lz_fail(l, k, ret, "copying into guest memory");
	}
	if (ret)
		gm_lz_poison(l, l->g->kvm_view + k->lo, k->hi - k->lo);

	pthread_mutex_lock(&l->mu);
	l->st[i] = ret ? GM_LZ_FAILED : GM_LZ_LOADED;
	if (!ret) {
		l->nloaded++;
		l->by[who]++;
		l->bytes += k->hi - k->lo;
	}
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	if (!ret) {
		struct uffdio_range wake = {
			.start = (uintptr_t)(l->g->kvm_view + k->lo), .len = k->hi - k->lo,
		};

		ioctl(l->uffd, UFFDIO_WAKE, &wake);
	}
	return ret ? -EIO : 0;
}

static void gm_lz_set_error(struct gm_lazy *l)
{
	pthread_mutex_lock(&l->mu);
	gm_set_error("%s", l->msg);
	pthread_mutex_unlock(&l->mu);
}

/* g->loader->ensure: g->lock held. */
static int gm_lz_ensure(struct gm_loader *h, uint64_t first, uint64_t n)
{
	struct gm_lazy *l = (struct gm_lazy *)h;
	uint64_t lo = first << GM_PAGE_SHIFT, hi = (first + n) << GM_PAGE_SHIFT;

	if (atomic_load_explicit(&l->done, memory_order_acquire))
		return 0;
	for (uint64_t i = gm_lz_find(l, lo); i < l->ix.n && l->ix.v[i].lo < hi; i++) {
		int ret = gm_lz_get(l, i, GM_LZ_ACCESS);

		if (ret) {
			gm_lz_set_error(l);
			return ret;
		}
	}
	return 0;
}

/* Serve one fault at @addr, in the KVM view or a registered host-view run. */
static void gm_lz_serve(struct gm_lazy *l, uint64_t addr)
{
	struct gmem *g = l->g;
	uint8_t *a = (uint8_t *)(uintptr_t)(addr & ~(uint64_t)(GMEM_PAGE_SIZE - 1));
	struct uffdio_range wake = { .start = (uintptr_t)a, .len = GMEM_PAGE_SIZE };
	uint64_t gpa, i;
	int ret = 0;

	if (a >= g->kvm_view && a < g->kvm_view + g->size)
		gpa = (uint64_t)(a - g->kvm_view);
	else if (a >= g->view && a < g->view + g->size)
		gpa = (uint64_t)(a - g->view);
	else
		return;         /* registered ranges are the views only */
	i = gm_lz_find(l, gpa);
	if (i < l->ix.n && l->ix.v[i].lo <= gpa)
		ret = gm_lz_get(l, i, GM_LZ_FAULT);
	if (ret) {
		gm_lz_poison(l, a, GMEM_PAGE_SIZE);
	} else {
		/* Still missing: a hole, or discarded since its chunk was loaded.
		 * Usually the page is there (EEXIST). */
		struct uffdio_zeropage z = {
			.range = { .start = (uintptr_t)(g->kvm_view + gpa), .len = GMEM_PAGE_SIZE },
		};

		ioctl(l->uffd, UFFDIO_ZEROPAGE, &z);
	}
	atomic_fetch_add(&l->faults, 1);       /* counted before the faulter runs */
	ioctl(l->uffd, UFFDIO_WAKE, &wake);
}

static void *gm_lz_server(void *arg)
{
	struct gm_lazy *l = arg;
	struct pollfd p[2] = { { .fd = l->uffd, .events = POLLIN },
			       { .fd = l->stopfd, .events = POLLIN } };
	struct uffd_msg msg[16];

	for (;;) {
		ssize_t n;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		n = read(l->uffd, msg, sizeof(msg));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n < 0)
			break;
		for (size_t i = 0; i < (size_t)n / sizeof(msg[0]); i++)
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				gm_lz_serve(l, msg[i].arg.pagefault.address);
	}
	gm_sys_stack_wipe();      /* page data passed through this stack */
	return NULL;
}

/* Stop the fault thread and close the userfaultfd: registered views fault
 * as plain mappings again (a pending fault is retried as one). */
static void gm_lz_server_stop(struct gm_lazy *l)
{
	eventfd_write(l->stopfd, 1);
	pthread_join(l->server, NULL);
	close(l->uffd);
	l->uffd = -1;
	l->server_stopped = true;
}

static void *gm_lz_loader(void *arg)
{
	struct gm_lazy *l = arg;
	bool all;

	for (uint64_t i = 0; i < l->ix.n; i++) {
		pthread_mutex_lock(&l->mu);
		while (l->hold && !atomic_load(&l->stop))
			pthread_cond_wait(&l->cv, &l->mu);
		pthread_mutex_unlock(&l->mu);
		if (atomic_load(&l->stop))
			break;
		gm_lz_get(l, i, GM_LZ_LOADER);  /* a failure is kept; go on */
	}
	pthread_mutex_lock(&l->mu);
	all = l->nloaded == l->ix.n;
	if (!atomic_load(&l->stop)) {
		/* Every chunk is loaded or failed: nothing reads the file again. */
		for (unsigned f = 0; f < l->nfiles; f++) {
			gm_seal_free(l->seal[f]);
			l->seal[f] = NULL;
		}
	}
	pthread_mutex_unlock(&l->mu);
	if (all) {
		atomic_store_explicit(&l->done, true, memory_order_release);
		gm_lz_server_stop(l);
	}
	pthread_mutex_lock(&l->mu);
	l->finished = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	gm_sys_stack_wipe();      /* page data passed through this stack */
	return NULL;
}

static void gm_lz_free(struct gm_lazy *l)
{
	for (unsigned w = 0; w < GM_LZ_WHO; w++) {
		ZSTD_freeDCtx(l->buf[w].dctx);
		gm_sys_guarded_free(l->buf[w].stored);
		gm_sys_guarded_free(l->buf[w].raw);
	}
	if (l->uffd >= 0)
		close(l->uffd);
	if (l->stopfd >= 0)
		close(l->stopfd);
	for (unsigned f = 0; f < l->nfiles; f++) {
		if (l->fd[f] >= 0)
			close(l->fd[f]);
		free(l->path[f]);
	}
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	for (unsigned f = 0; f < GM_SNAP_CHAIN_MAX; f++)
		gm_seal_free(l->seal[f]);
	free(l->st);
	free(l->ix.v);
	free(l);
}

/* g->loader->stop: gmem_close(), no other call on the memory in flight. */
static void gm_lz_stop(struct gm_loader *h)
{
	struct gm_lazy *l = (struct gm_lazy *)h;

	atomic_store(&l->stop, true);
	pthread_mutex_lock(&l->mu);
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->loader, NULL);
	if (!l->server_stopped)
		gm_lz_server_stop(l);
	l->g->loader = NULL;
	gm_lz_free(l);
}

static int gm_lz_alloc(struct gm_lazy *l, const struct gm_snap_chain *ch)
{
	/* Every file's descriptor, as the chain opened it: never the paths. */
	for (unsigned f = 0; f < ch->n; f++) {
		l->fd[f] = fcntl(ch->r[f].fd, F_DUPFD_CLOEXEC, 0);
		l->path[f] = strdup(ch->r[f].path);
		l->nfiles++;
		if (l->fd[f] < 0 || !l->path[f])
			return -ENOMEM;
	}
	l->st = calloc(l->ix.n, 1);
	if (!l->st)
		return -ENOMEM;
	for (unsigned w = 0; w < GM_LZ_WHO; w++) {
		l->buf[w].stored = gm_sys_guarded_alloc(ZSTD_compressBound(GM_SNAP_CHUNK_MAX));
		l->buf[w].raw = gm_sys_guarded_alloc(GM_SNAP_CHUNK_MAX);
		l->buf[w].dctx = ZSTD_createDCtx();
		if (!l->buf[w].stored || !l->buf[w].raw || !l->buf[w].dctx)
			return -ENOMEM;
	}
	l->stopfd = eventfd(0, EFD_CLOEXEC);
	if (l->stopfd < 0)
		return -errno;
	return 0;
}

static int gm_lz_register(struct gm_lazy *l, uint8_t *addr, uint64_t len)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	int ret;

	if (!gm_sys_ioctl(l->uffd, UFFDIO_REGISTER, &reg))
		return 0;
	ret = -errno;
	gm_set_error("snapshot: registering %llu bytes with userfaultfd: %s",
		     (unsigned long long)len, strerror(errno));
	return ret;
}

/* The userfaultfd, with the KVM view and the host view's shared runs on it. */
static int gm_lz_uffd(struct gm_lazy *l)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_POISON,
	};
	struct gmem *g = l->g;
	uint64_t pos = 0, s, len;
	int ret;

	l->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (l->uffd < 0) {
		ret = -errno;
		gm_set_error("snapshot: lazy restore: userfaultfd: %s", strerror(errno));
		return ret == -ENOSYS ? -EOPNOTSUPP : ret;
	}
	if (gm_sys_ioctl(l->uffd, UFFDIO_API, &api)) {
		gm_set_error("snapshot: lazy restore: the kernel's userfaultfd lacks shmem "
			     "faults or UFFDIO_POISON: %s", strerror(errno));
		return -EOPNOTSUPP;
	}
	ret = gm_lz_register(l, g->kvm_view, g->size);
	while (!ret && pos < g->st.npages &&
	       gm_state_next_run(&g->st, pos, g->st.npages - pos, 1, &s, &len)) {
		ret = gm_lz_register(l, g->view + (s << GM_PAGE_SHIFT), len << GM_PAGE_SHIFT);
		pos = s + len;
	}
	return ret;
}

/* Tests: the hold lazy restores start with (gm_lazy_hold(NULL, ...)). */
static atomic_bool gm_lz_hold_default;

int gm_lazy_start(struct gmem *g, struct gm_snap_chain *ch, struct gm_lazy_index *ix)
{
	struct gm_lazy *l;
	int ret;

	if (!ix->n) {           /* nothing to load: an empty memory */
		free(ix->v);
		return 0;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		free(ix->v);
		return -ENOMEM;
	}
	l->ix = *ix;
	l->g = g;
	/* Taken from the chain's readers: loading opens each chunk again. */
	for (unsigned f = 0; f < ch->n; f++) {
		l->seal[f] = ch->r[f].seal;
		ch->r[f].seal = NULL;
	}
	l->uffd = l->stopfd = -1;
	l->hook.ensure = gm_lz_ensure;
	l->hook.stop = gm_lz_stop;
	l->hold = atomic_load(&gm_lz_hold_default);
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	ret = gm_lz_alloc(l, ch);
	if (!ret)
		ret = gm_lz_uffd(l);
	if (ret)
		goto err;
	ret = -pthread_create(&l->server, NULL, gm_lz_server, l);
	if (ret)
		goto err;
	ret = -pthread_create(&l->loader, NULL, gm_lz_loader, l);
	if (ret)
		goto err_server;
	g->loader = &l->hook;
	return 0;

err_server:
	gm_lz_server_stop(l);
err:
	gm_lz_free(l);
	return ret;
}

void gm_lazy_hold(struct gmem *g, bool hold)
{
	struct gm_lazy *l = g ? (struct gm_lazy *)g->loader : NULL;

	if (!g)
		atomic_store(&gm_lz_hold_default, hold);
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->hold = hold;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

int gmem_snapshot_lazy_stats(struct gmem *g, struct gmem_snapshot_lazy_stats *st)
{
	struct gm_lazy *l;

	if (!g || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	l = (struct gm_lazy *)g->loader;
	if (!l)
		return 0;
	pthread_mutex_lock(&l->mu);
	st->loading = l->nloaded < l->ix.n && !l->finished;
	st->error = l->err;
	st->chunks = l->ix.n;
	st->chunks_loaded = l->nloaded;
	st->by_fault = l->by[GM_LZ_FAULT];
	st->by_access = l->by[GM_LZ_ACCESS];
	st->by_loader = l->by[GM_LZ_LOADER];
	st->bytes_loaded = l->bytes;
	pthread_mutex_unlock(&l->mu);
	st->faults = atomic_load(&l->faults);
	return 0;
}

int gmem_snapshot_lazy_wait(struct gmem *g)
{
	struct gm_lazy *l;
	int ret;

	gm_clear_error();
	if (!g)
		return -EINVAL;
	l = (struct gm_lazy *)g->loader;
	if (!l)
		return 0;
	pthread_mutex_lock(&l->mu);
	while (!l->finished)
		pthread_cond_wait(&l->cv, &l->mu);
	ret = l->err ? -EIO : 0;
	if (ret)
		gm_set_error("%s", l->msg);
	pthread_mutex_unlock(&l->mu);
	return ret;
}

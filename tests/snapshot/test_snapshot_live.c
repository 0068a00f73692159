// SPDX-License-Identifier: MIT
/*
 * test_snapshot_live.c - live saves (GMEM_SNAP_LIVE): suite snapshot_live.
 *
 * The start image (every page's bytes read with pread(2) from the backing
 * file, so holes stay holes; every page's state; which pages hold data) is
 * taken while nothing writes; then the live save runs while writer threads
 * and the progress callback change the memory through every path there is
 * (KVM view, host view, discards, conversions, temporary mappings, a
 * mapping the library does not know of over a pinned page). The file must
 * restore to the start image exactly.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "internal.h"
#include "sys.h"
#include "track.h"
#include <sys/ioctl.h>
#include <linux/userfaultfd.h>
#include "snapshot/live.h"
#include "snap_th.h"

#define LV_SIZE   (64 * TH_MIB)
#define LV_PAGES  (LV_SIZE / TH_PAGE)

static const uint8_t lv_key[GMEM_SNAP_KEY_BYTES] = { 7, 1, 2, 3, 9 };

struct lv_image {
	uint8_t *bytes;
	uint8_t *state;
	uint64_t populated;
	uint64_t size;
};

static int lv_fd(const struct gmem *g)
{
	struct gmem_info in;

	TH_EQ(gmem_info(g, &in), 0);
	return in.fd;
}

static uint64_t lv_populated(int fd, uint64_t size)
{
	uint64_t n = 0;
	off_t pos = 0;

	for (;;) {
		off_t d = lseek(fd, pos, SEEK_DATA), h;

		if (d < 0 || (uint64_t)d >= size)
			return n;
		h = lseek(fd, d, SEEK_HOLE);
		n += (uint64_t)(h - d) / TH_PAGE;
		pos = h;
	}
}

/* Bytes, states and populated pages of @g, without populating any. */
static void lv_capture(struct gmem *g, struct lv_image *im)
{
	struct gmem_info in;
	int fd;

	TH_EQ(gmem_info(g, &in), 0);
	fd = in.fd;
	im->size = in.size;
	im->bytes = malloc(im->size);
	im->state = malloc(im->size / TH_PAGE);
	cr_assert(im->bytes && im->state);
	TH_EQ(pread(fd, im->bytes, im->size, 0), (long long)im->size);
	for (uint64_t p = 0; p < im->size / TH_PAGE; p++)
		im->state[p] = (uint8_t)gmem_state(g, p * TH_PAGE);
	im->populated = lv_populated(fd, im->size);
}

static void lv_image_free(struct lv_image *im)
{
	free(im->bytes);
	free(im->state);
}

/* The memory restored from @path is @im, page for page. */
static void lv_expect_image(const char *path, unsigned flags, const uint8_t *key,
			    const struct lv_image *im)
{
	struct gmem_snapshot_opts o = { .flags = flags, .key = key };
	struct gmem *r = NULL;
	struct lv_image got;
	int ret = gmem_snapshot_restore_ex(path, NULL, &o, &r);

	cr_assert_eq(ret, 0, "restore %s: %s (%s)", path, gmem_strerror(ret), gmem_last_error());
	if (flags & GMEM_SNAP_LAZY)
		TH_EQ(gmem_snapshot_lazy_wait(r), 0);
	lv_capture(r, &got);
	TH_EQ(got.size, im->size);
	for (uint64_t p = 0; p < im->size / TH_PAGE; p++) {
		const uint8_t *a = im->bytes + p * TH_PAGE, *b = got.bytes + p * TH_PAGE;

		cr_assert_eq(got.state[p], im->state[p], "page %llu: state %u, start image %u",
			     (unsigned long long)p, got.state[p], im->state[p]);
		if (memcmp(a, b, TH_PAGE)) {
			unsigned i = 0;

			while (a[i] == b[i])
				i++;
			cr_assert(0, "page %llu byte %u: restored %#x, start image %#x",
				       (unsigned long long)p, i, b[i], a[i]);
		}
	}
	TH_EQ(got.populated, im->populated);
	lv_image_free(&got);
	gmem_close(r);
}

static struct gmem *lv_open(unsigned flags)
{
	struct gmem *g = th_open(GMEM_BACKEND_MEMFD, LV_SIZE, flags);

	cr_assert_not_null(g);
	return g;
}

/* A memory tracked asynchronously, as every tracked memory starts. */
static struct gmem *lv_open_tracked(void)
{
	struct gmem *g = lv_open(GMEM_F_TRACK_WRITES);
	struct gmem_info gi;

	TH_EQ(gmem_info(g, &gi), 0);
	if (gi.track != GMEM_TRACK_PAGEMAP) {
		gmem_close(g);
		cr_skip_test("no asynchronous write tracking here (track %d)", gi.track);
	}
	return g;
}

/* ---- writers ------------------------------------------------------------------ */

struct lv_writers;

struct lv_writer_arg {
	struct lv_writers *w;
	int id;
};

struct lv_writers {
	struct gmem *g;
	pthread_t t[2];
	struct lv_writer_arg arg[2];
	volatile int go, stop;
	uint64_t writes[2];
	uint64_t count;         /* writes so far, both writers (atomic)      */
	/* The copy pool and the file do not meet: writers start when the
	 * save says its start is fixed (progress 0), as vCPUs would resume. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

/*
 * A store to guest memory as the guest makes it. It races the save's reads
 * of the page on purpose, ordered by the userfaultfd: the store waits in the
 * kernel until the save has copied or written the page. ThreadSanitizer
 * cannot see that edge, so this store (the guest's, not the library's) is
 * not instrumented; every access of the library stays instrumented.
 */
__attribute__((no_sanitize("thread")))
static void lv_guest_store(uint8_t *at, uint8_t v)
{
	*(volatile uint8_t *)at = v;
}

__attribute__((no_sanitize("thread")))
static void lv_guest_flip(uint8_t *at)
{
	*(volatile uint8_t *)at ^= 0xff;
}

static uint64_t lv_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t lv_rand(uint64_t *r)
{
	*r = *r * 6364136223846793005ull + 1442695040888963407ull;
	return *r >> 17;
}

static void lv_wait_go(struct lv_writers *w)
{
	pthread_mutex_lock(&w->mu);
	while (!w->go)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

/* Writer 0: random pages through the KVM view, as a guest. Writer 1: the
 * host view's shared pages, as device emulation. */
static void *lv_writer(void *arg)
{
	struct lv_writers *w = ((struct lv_writer_arg *)arg)->w;
	int id = ((struct lv_writer_arg *)arg)->id;
	uint64_t r = 0x1234 + (uint64_t)id, n = 0;
	uint8_t *kv = gmem_kvm_view(w->g);

	lv_wait_go(w);
	while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
		uint64_t p = lv_rand(&r) % LV_PAGES;
		uint8_t *at = id ? gmem_host(w->g, p * TH_PAGE) : kv + p * TH_PAGE;

		/* The host view's private pages are not there: skip them. */
		if (id && gmem_state(w->g, p * TH_PAGE) != GMEM_SHARED)
			continue;
		if (!at)
			continue;
		lv_guest_store(at + lv_rand(&r) % TH_PAGE, (uint8_t)lv_rand(&r) | 1);
		n++;
		__atomic_fetch_add(&w->count, 1, __ATOMIC_RELAXED);
	}
	w->writes[id] = n;
	return NULL;
}

static void lv_writers_start(struct lv_writers *w, struct gmem *g)
{
	memset(w, 0, sizeof(*w));
	w->g = g;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	for (int i = 0; i < 2; i++) {
		w->arg[i] = (struct lv_writer_arg){ .w = w, .id = i };
		cr_assert_eq(pthread_create(&w->t[i], NULL, lv_writer, &w->arg[i]), 0);
	}
}

static void lv_writers_go(struct lv_writers *w)
{
	pthread_mutex_lock(&w->mu);
	w->go = 1;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Stop them; the writes they made. */
static uint64_t lv_writers_stop(struct lv_writers *w)
{
	lv_writers_go(w);       /* a save that failed never said go */
	__atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
	pthread_join(w->t[0], NULL);
	pthread_join(w->t[1], NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	return w->writes[0] + w->writes[1];
}

struct lv_progress {
	struct lv_writers *w;
	unsigned calls, zero_calls;
	void (*at_start)(struct lv_progress *p);
	struct gmem *g;
	int busy_ret;
};

static void lv_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct lv_progress *p = ctx;

	(void)total;
	if (!p->calls++) {
		TH_EQ(done, 0);
		p->zero_calls++;
		if (p->at_start)
			p->at_start(p);
		if (p->w) {
			uint64_t t0 = lv_now_ns();

			lv_writers_go(p->w);
			/* The file is not written before the writers have written
			 * (a loaded machine may not run them otherwise). */
			while (__atomic_load_n(&p->w->count, __ATOMIC_RELAXED) < 2000 &&
			       lv_now_ns() - t0 < 5000000000ull)
				sched_yield();
		}
	}
}

static int lv_save(struct gmem *g, const char *path, unsigned flags, const char *parent,
		   const uint8_t *key, struct lv_progress *p)
{
	struct gmem_snapshot_opts o = { .flags = GMEM_SNAP_LIVE | flags, .parent = parent,
					.key = key, .progress = lv_progress, .progress_ctx = p };

	return gmem_snapshot_save_ex(g, path, &o);
}

/* Save @g live at @path under the writers; the file is the start image. */
static void lv_live_round(struct gmem *g, const char *path, unsigned flags, const char *parent,
			  const uint8_t *key)
{
	struct lv_writers w;
	struct lv_progress p = { 0 };
	struct lv_image im;
	uint64_t writes;
	int ret;

	lv_capture(g, &im);
	lv_writers_start(&w, g);
	p.w = &w;
	ret = lv_save(g, path, flags, parent, key, &p);
	writes = lv_writers_stop(&w);
	cr_assert_eq(ret, 0, "live save: %s (%s)", gmem_strerror(ret), gmem_last_error());
	TH_EQ(p.zero_calls, 1);
	/* The writers ran during the save, and the hook saw their first
	 * writes: otherwise this test proves nothing. */
	cr_assert_gt(writes, 100, "writes during the save: %llu", (unsigned long long)writes);
	cr_assert_gt(gm_live_last.touched, 20, "pages first written during the save: %llu",
		     (unsigned long long)gm_live_last.touched);
	cr_assert_gt(gm_live_last.copied, 0, "pages copied: %llu",
		     (unsigned long long)gm_live_last.copied);
	lv_expect_image(path, 0, key, &im);
	lv_expect_image(path, GMEM_SNAP_LAZY, key, &im);
	lv_image_free(&im);
}

Test(snapshot_live, writers_see_the_start_image)
{
	const char *dir = snap_tmpdir(), *f = snap_file(dir, "live", 0);
	struct gmem *g = lv_open(0);
	unsigned fds, maps;

	snap_randomize(g, 11, 70);
	/* Once first: glibc keeps the stacks of threads that ended, and the
	 * saver its arenas, for the next ones. */
	lv_live_round(g, f, GMEM_SNAP_BUFFERED, NULL, NULL);
	fds = snap_open_fds();
	maps = snap_maps();
	lv_live_round(g, f, 0, NULL, NULL);
	/* No fault thread, userfaultfd or copy pool is left behind. */
	TH_EQ(snap_open_fds(), fds);
	if (SNAP_MAPS_EXACT)
		TH_EQ(snap_maps(), maps);
	gmem_close(g);
	snap_rmdir(dir);
}

Test(snapshot_live, compressed_and_sealed)
{
	const char *dir = snap_tmpdir(), *f = snap_file(dir, "live", 0);
	struct gmem *g = lv_open(0);

	snap_randomize(g, 12, 60);
	lv_live_round(g, f, GMEM_SNAP_COMPRESS_ALL, NULL, lv_key);
	gmem_close(g);
	snap_rmdir(dir);
}

/* ---- writers that run all along, paused as vCPUs are -------------------- */

struct lv_vcpus {
	struct gmem *g;
	pthread_t t;
	volatile int stop, paused, parked;
	uint64_t writes, paused_writes;
	struct lv_image im;
	bool captured;
};

static void *lv_vcpu(void *arg)
{
	struct lv_vcpus *v = arg;
	uint8_t *kv = gmem_kvm_view(v->g);
	uint64_t r = 99;

	while (!__atomic_load_n(&v->stop, __ATOMIC_ACQUIRE)) {
		uint64_t p = lv_rand(&r) % LV_PAGES;

		if (__atomic_load_n(&v->paused, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&v->parked, 1, __ATOMIC_RELEASE);
			while (__atomic_load_n(&v->paused, __ATOMIC_ACQUIRE))
				;
			__atomic_store_n(&v->parked, 0, __ATOMIC_RELEASE);
			continue;
		}
		lv_guest_store(kv + p * TH_PAGE + lv_rand(&r) % TH_PAGE, (uint8_t)lv_rand(&r) | 1);
		__atomic_fetch_add(&v->writes, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/* live_pause: stop the vCPU and take the start image; resume it. */
static int lv_vcpu_pause(void *ctx, int pause)
{
	struct lv_vcpus *v = ctx;

	if (!pause) {
		v->paused_writes = v->writes;
		__atomic_store_n(&v->paused, 0, __ATOMIC_RELEASE);
		return 0;
	}
	__atomic_store_n(&v->paused, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&v->parked, __ATOMIC_ACQUIRE))
		;
	lv_capture(v->g, &v->im);
	v->captured = true;
	return 0;
}

/* Writes between the protection and the passes, for certain: holes and
 * pages with data, through both views. */
static void lv_write_during_start(struct gmem *g)
{
	uint8_t *kv = gmem_kvm_view(g);

	for (uint64_t p = 0; p < LV_PAGES; p += 97) {
		uint8_t *host = gmem_host(g, p * TH_PAGE);

		lv_guest_store(host && gmem_state(g, p * TH_PAGE) == GMEM_SHARED ? host :
			       kv + p * TH_PAGE, (uint8_t)(p | 1));
	}
}

/* The guest writes while the views are protected (the unlocked part of
 * the start), stops only between live_pause(1) and (0), and goes on. */
Test(snapshot_live, guest_runs_through_the_start)
{
	const char *dir = snap_tmpdir(), *f = snap_file(dir, "live", 0);
	struct lv_vcpus v = { 0 };
	struct gmem_snapshot_opts o = { .flags = GMEM_SNAP_LIVE, .live_pause = lv_vcpu_pause,
					.progress_ctx = &v };
	int ret;

	v.g = lv_open(0);
	snap_randomize(v.g, 17, 80);
	cr_assert_eq(pthread_create(&v.t, NULL, lv_vcpu, &v), 0);
	while (__atomic_load_n(&v.writes, __ATOMIC_RELAXED) < 10000)
		;
	gm_live_test_protected = lv_write_during_start;
	ret = gmem_snapshot_save_ex(v.g, f, &o);
	gm_live_test_protected = NULL;
	__atomic_store_n(&v.stop, 1, __ATOMIC_RELEASE);
	pthread_join(v.t, NULL);
	cr_assert_eq(ret, 0, "live save: %s (%s)", gmem_strerror(ret), gmem_last_error());
	cr_assert(v.captured, "live_pause(1) was never called");
	cr_assert_gt(gm_live_last.reprotected, 0, "no page was written during the start");
	cr_assert_gt(v.writes, v.paused_writes, "no write after the start");
	lv_expect_image(f, 0, NULL, &v.im);
	lv_image_free(&v.im);
	gmem_close(v.g);
	snap_rmdir(dir);
}

/* Nothing written during it: the file is the plain save's, byte for byte. */
Test(snapshot_live, quiet_live_save_is_the_plain_file)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "plain", 0),
		   *b = snap_file(dir, "live", 1);
	struct gmem *g = lv_open(0);
	struct lv_progress p = { 0 };
	uint8_t *fa, *fb;
	size_t la, lb;

	snap_randomize(g, 13, 50);
	TH_EQ(gmem_snapshot_save(g, a, 0), 0);
	TH_EQ(lv_save(g, b, 0, NULL, NULL, &p), 0);
	fa = snap_slurp(a, &la);
	fb = snap_slurp(b, &lb);
	TH_EQ(lb, la);
	cr_assert(!memcmp(fa, fb, la), "the quiet live file differs from the plain one");
	free(fa);
	free(fb);
	gmem_close(g);
	snap_rmdir(dir);
}

/* ---- the library's own calls during the save ------------------------------- */

struct lv_calls {
	struct gmem *g;
	uint64_t pinned, kmapped, discarded, converted, hole;
	uint8_t *window;        /* opened before the save                   */
	uint8_t *alias;         /* the test's own mapping of the file       */
};

static struct lv_calls lv_c;

static void lv_calls_at_start(struct lv_progress *p)
{
	struct lv_calls *c = &lv_c;
	uint8_t *w, *kv = gmem_kvm_view(p->g);
	struct gmem_snapshot_opts o = { 0 };
	const char *dir = snap_tmpdir();

	/* A second save meanwhile is refused, and leaves no file. */
	p->busy_ret = gmem_snapshot_save_ex(p->g, snap_file(dir, "second", 2), &o);
	TH_EQ(access(snap_file(dir, "second", 2), F_OK), -1);
	snap_rmdir(dir);
	TH_EQ(gmem_discard(p->g, c->discarded * TH_PAGE, 4 * TH_PAGE), 0);
	TH_EQ(gmem_convert(p->g, c->converted * TH_PAGE, 8 * TH_PAGE,
			   gmem_state(p->g, c->converted * TH_PAGE) ? GMEM_PRIVATE : GMEM_SHARED,
			   NULL), 0);
	w = gmem_kmap(p->g, c->kmapped * TH_PAGE);
	cr_assert_not_null(w);
	memset(w, 0xc3, TH_PAGE);
	gmem_kunmap(p->g, w);
	memset(c->window, 0x3c, TH_PAGE);                       /* opened before */
	memset(c->alias + c->pinned * TH_PAGE, 0x5a, TH_PAGE);  /* unseen write  */
	memset(kv + c->hole * TH_PAGE, 0xee, TH_PAGE);          /* a hole filled */
	memset(kv + (c->converted + 1) * TH_PAGE, 0x99, 64);
}

Test(snapshot_live, library_calls_during_the_save)
{
	const char *dir = snap_tmpdir(), *f = snap_file(dir, "live", 0);
	struct gmem *g = lv_open(0);
	struct lv_calls *c = &lv_c;
	struct lv_progress p = { .at_start = lv_calls_at_start, .g = g };
	struct lv_image im;
	int fd = lv_fd(g);

	snap_randomize(g, 14, 40);
	memset(c, 0, sizeof(*c));
	c->g = g;
	/* Pages the calls change, all holding data at the start but the hole. */
	c->pinned = 100;
	c->kmapped = 200;
	c->discarded = 300;
	c->converted = 400;
	c->hole = LV_PAGES - 3;
	TH_EQ(gmem_convert(g, c->pinned * TH_PAGE, TH_PAGE, GMEM_SHARED, NULL), 0);
	for (uint64_t q = 0; q < 16; q++)
		memset(gmem_kvm_view(g) + (c->pinned + q) * TH_PAGE + 100 * q, (int)q + 1, 100);
	memset(gmem_kvm_view(g) + c->kmapped * TH_PAGE, 1, TH_PAGE);
	memset(gmem_kvm_view(g) + (c->kmapped + 1) * TH_PAGE, 2, TH_PAGE);
	for (uint64_t q = 0; q < 4; q++)
		memset(gmem_kvm_view(g) + (c->discarded + q) * TH_PAGE, 3, TH_PAGE);
	TH_EQ(gmem_discard(g, c->hole * TH_PAGE, TH_PAGE), 0);
	TH_EQ(gmem_pin(g, c->pinned * TH_PAGE, TH_PAGE), 0);
	c->window = gmem_kmap(g, (c->kmapped + 1) * TH_PAGE);
	cr_assert_not_null(c->window);
	c->alias = mmap(NULL, LV_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(c->alias, MAP_FAILED);

	lv_capture(g, &im);
	TH_EQ(lv_save(g, f, 0, NULL, NULL, &p), 0);
	TH_EQ(p.busy_ret, -EBUSY);
	/* They all happened: the memory is not the start image any more. */
	TH_EQ(c->alias[c->pinned * TH_PAGE], 0x5a);
	TH_EQ(c->alias[c->hole * TH_PAGE], 0xee);
	TH_EQ(c->alias[c->discarded * TH_PAGE], 0);
	lv_expect_image(f, 0, NULL, &im);
	lv_expect_image(f, GMEM_SNAP_LAZY, NULL, &im);
	/* Afterwards saves are plain ones again, and see the changes. */
	TH_EQ(gmem_snapshot_save(g, f, 0), 0);
	lv_image_free(&im);
	lv_capture(g, &im);
	lv_expect_image(f, 0, NULL, &im);
	lv_image_free(&im);
	munmap(c->alias, LV_SIZE);
	gmem_kunmap(g, c->window);
	TH_EQ(gmem_unpin(g, c->pinned * TH_PAGE, TH_PAGE), 0);
	gmem_close(g);
	snap_rmdir(dir);
}

/* ---- bounded copies ------------------------------------------------------------- */

struct lv_rewriter {
	struct gmem *g;
	volatile int stop;
	uint64_t rounds;
	struct lv_writers *w;
};

/* Rewrite every page from the top down, ahead of the save, which goes up. */
static void *lv_rewriter_main(void *arg)
{
	struct lv_rewriter *r = arg;
	uint8_t *kv = gmem_kvm_view(r->g);

	lv_wait_go(r->w);
	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		for (uint64_t p = LV_PAGES; p-- > 0 && !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE);)
			lv_guest_flip(kv + p * TH_PAGE + r->rounds % TH_PAGE);
		r->rounds++;
	}
	return NULL;
}

Test(snapshot_live, copies_are_bounded)
{
	const char *dir = snap_tmpdir(), *f = snap_file(dir, "live", 0);
	struct gmem *g = lv_open(0);
	struct lv_writers w = { 0 };
	struct lv_rewriter r = { .g = g, .w = &w };
	struct lv_progress p = { .w = &w };
	struct lv_image im;
	pthread_t t;
	int ret;

	snap_randomize(g, 15, 100);
	lv_capture(g, &im);
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	gm_live_copy_max = 32 * TH_PAGE;
	cr_assert_eq(pthread_create(&t, NULL, lv_rewriter_main, &r), 0);
	ret = lv_save(g, f, GMEM_SNAP_BUFFERED, NULL, NULL, &p);
	lv_writers_go(&w);
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	gm_live_copy_max = 0;
	cr_assert_eq(ret, 0, "live save: %s (%s)", gmem_strerror(ret), gmem_last_error());
	cr_assert_leq(gm_live_last.copy_peak, 32 * TH_PAGE, "copies held: %llu bytes",
		      (unsigned long long)gm_live_last.copy_peak);
	cr_assert_gt(gm_live_last.waits, 0, "the writer never had to wait (copied %llu)",
		     (unsigned long long)gm_live_last.copied);
	lv_expect_image(f, 0, NULL, &im);
	lv_image_free(&im);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
	gmem_close(g);
	snap_rmdir(dir);
}

/* ---- tracked memories: live saves in a chain --------------------------------- */

static void lv_churn(struct gmem *g, uint64_t seed)
{
	uint8_t *kv = gmem_kvm_view(g);

	for (unsigned i = 0; i < 200; i++) {
		uint64_t p = lv_rand(&seed) % LV_PAGES;

		if (i % 16 == 0)
			TH_EQ(gmem_discard(g, p * TH_PAGE, TH_PAGE), 0);
		else if (i % 16 == 1)
			TH_EQ(gmem_convert(g, p * TH_PAGE, TH_PAGE,
					   lv_rand(&seed) & 1 ? GMEM_SHARED : GMEM_PRIVATE, NULL), 0);
		else
			memset(kv + p * TH_PAGE + lv_rand(&seed) % 4000, (int)i, 64);
	}
}

static struct gmem_snapshot_info lv_info(const char *path, const uint8_t *key)
{
	struct gmem_snapshot_opts o = { .key = key };
	struct gmem_snapshot_info in;
	int ret = gmem_snapshot_inspect(path, GMEM_SNAP_VERIFY, &o, &in);

	cr_assert_eq(ret, 0, "inspect %s: %s (%s)", path, gmem_strerror(ret), gmem_last_error());
	return in;
}

Test(snapshot_live, tracked_chain)
{
	const char *dir = snap_tmpdir(), *f[4];
	struct gmem *g = lv_open_tracked();
	struct gmem_snapshot_opts o = { 0 };
	struct gmem_info gi;
	struct lv_image im;

	for (unsigned i = 0; i < 4; i++) {
		char n[16];

		snprintf(n, sizeof(n), "f%u", i);
		f[i] = snap_file(dir, n, i);
	}
	snap_randomize(g, 16, 60);
	TH_EQ(gmem_snapshot_save_ex(g, f[0], &o), 0);
	lv_churn(g, 1);
	/* The first live save moves tracking to the synchronous userfaultfd;
	 * a write in the handover could go unseen, so this file is full. */
	lv_live_round(g, f[1], 0, f[0], NULL);
	TH_EQ(lv_info(f[1], NULL).incremental, 0);
	TH_EQ(gmem_info(g, &gi), 0);
	TH_EQ(gi.track, GMEM_TRACK_UFFD_SYNC);
	/* From then on live saves are incremental. */
	lv_churn(g, 2);
	lv_live_round(g, f[2], 0, f[1], NULL);
	cr_assert_eq(lv_info(f[2], NULL).incremental, 1, "the second live save is full");
	/* Writes during that save belong to the next interval. */
	lv_churn(g, 3);
	o.parent = f[2];
	TH_EQ(gmem_snapshot_save_ex(g, f[3], &o), 0);
	TH_EQ(lv_info(f[3], NULL).incremental, 1);
	lv_capture(g, &im);
	lv_expect_image(f[3], 0, NULL, &im);
	lv_expect_image(f[3], GMEM_SNAP_LAZY, NULL, &im);
	lv_image_free(&im);
	gmem_close(g);
	snap_rmdir(dir);
}

/* ---- refusals ------------------------------------------------------------------ */

/* The backing as gmem_live_arm() sees it, forced: guest_memfd and hugetlb
 * pages cannot be write-protected per page through the library's views. */
static void lv_refused_as(struct gmem *g, const char *f, enum gmem_backend kind,
			  enum gmem_huge huge)
{
	struct gmem_snapshot_opts o = { .flags = GMEM_SNAP_LIVE };
	enum gmem_backend k = g->b.kind;
	enum gmem_huge h = g->b.huge;
	int ret;

	g->b.kind = kind;
	g->b.huge = huge;
	ret = gmem_snapshot_save_ex(g, f, &o);
	g->b.kind = k;
	g->b.huge = h;
	TH_EQ(ret, -EOPNOTSUPP);
	cr_assert(strstr(gmem_last_error(), "live save"), "message: %s", gmem_last_error());
	TH_EQ(access(f, F_OK), -1);
	TH_EQ(g->trk == NULL, 1);
}

Test(snapshot_live, refused_where_writes_cannot_be_seen)
{
	const char *why = th_kvm_unavailable();
	const char *dir = snap_tmpdir(), *f = snap_file(dir, "live", 0);
	struct gmem_snapshot_opts o = { .flags = GMEM_SNAP_LIVE };
	struct gmem *g, *r = NULL;

	g = lv_open(0);
	/* A restore is not live. */
	TH_EQ(gmem_snapshot_save(g, f, 0), 0);
	TH_EQ(gmem_snapshot_restore_ex(f, NULL, &o, &r), -EINVAL);
	cr_assert_null(r);
	unlink(f);
	lv_refused_as(g, f, GMEM_BACKEND_KVM, g->b.huge);
	lv_refused_as(g, f, g->b.kind, GMEM_HUGE_HUGETLB);
	/* And nothing was left behind: a live save works after them. */
	TH_EQ(gmem_snapshot_save_ex(g, f, &o), 0);
	gmem_close(g);
	if (why) {
		cr_log_info("guest_memfd itself not tried: %s", why);
	} else {
		g = th_open(GMEM_BACKEND_KVM, 4 * TH_MIB, 0);
		cr_assert_not_null(g);
		unlink(f);
		TH_EQ(gmem_snapshot_save_ex(g, f, &o), -EOPNOTSUPP);
		TH_EQ(access(f, F_OK), -1);
		gmem_close(g);
	}
	snap_rmdir(dir);
}

/* A live save refused for its parent changes nothing: the tracker keeps its
 * mechanism and its baseline, and the next save is still incremental. */
Test(snapshot_live, stale_parent_changes_nothing)
{
	const char *dir = snap_tmpdir(), *a = snap_file(dir, "a", 0), *b = snap_file(dir, "b", 1),
		   *c = snap_file(dir, "c", 2);
	struct gmem *g = lv_open_tracked();
	struct gmem_snapshot_opts o = { 0 };
	struct lv_progress p = { 0 };
	struct gmem_info gi;

	snap_randomize(g, 18, 30);
	TH_EQ(gmem_snapshot_save_ex(g, a, &o), 0);
	lv_churn(g, 4);
	o.parent = a;
	TH_EQ(gmem_snapshot_save_ex(g, b, &o), 0);
	lv_churn(g, 5);
	/* a is no longer the last save: refused, before anything is armed. */
	TH_EQ(lv_save(g, c, 0, a, NULL, &p), -ESTALE);
	TH_EQ(p.calls, 0);
	TH_EQ(access(c, F_OK), -1);
	TH_EQ(gmem_info(g, &gi), 0);
	TH_EQ(gi.track, GMEM_TRACK_PAGEMAP);
	o.parent = b;
	TH_EQ(gmem_snapshot_save_ex(g, c, &o), 0);
	TH_EQ(lv_info(c, NULL).incremental, 1);
	gmem_close(g);
	snap_rmdir(dir);
}

/* ---- findings of the review, each seen failing before its fix ----------- */

static uint64_t lv_fixed_page;

/* Under the lock, the copying hook in place: a write the fault thread
 * serves (copy, bit, unprotect) before the tracker's bits are taken. */
static void lv_write_in_fix(struct gmem *g)
{
	lv_guest_store(gmem_kvm_view(g) + lv_fixed_page * TH_PAGE + 7, 0x42);
}

/* Such a page stays unprotected after the save: its bit must be in the
 * next interval, or a later write to it goes unseen and the next
 * incremental file holds it stale. */
Test(snapshot_live, write_during_the_fix_counts_for_the_next_save)
{
	const char *dir = snap_tmpdir(), *f[3] = { snap_file(dir, "a", 0), snap_file(dir, "b", 1),
						   snap_file(dir, "c", 2) };
	struct gmem *g = lv_open(GMEM_F_TRACK_WRITES);
	struct gmem_snapshot_opts o = { 0 };
	struct lv_progress p = { 0 };
	struct lv_image im;

	snap_randomize(g, 19, 60);
	lv_fixed_page = 1234;
	memset(gmem_kvm_view(g) + lv_fixed_page * TH_PAGE, 1, TH_PAGE);
	TH_EQ(lv_save(g, f[0], 0, NULL, NULL, &p), 0);      /* now synchronous */
	gm_live_test_fixed = lv_write_in_fix;
	p = (struct lv_progress){ 0 };
	TH_EQ(lv_save(g, f[1], 0, f[0], NULL, &p), 0);
	gm_live_test_fixed = NULL;
	lv_guest_store(gmem_kvm_view(g) + lv_fixed_page * TH_PAGE + 9, 0x43);
	o.parent = f[1];
	TH_EQ(gmem_snapshot_save_ex(g, f[2], &o), 0);
	TH_EQ(lv_info(f[2], NULL).incremental, 1);
	lv_capture(g, &im);
	lv_expect_image(f[2], 0, NULL, &im);
	lv_image_free(&im);
	gmem_close(g);
	snap_rmdir(dir);
}

/* Pinned pages are copied at the start, before any filler can free a copy:
 * more of them than the copy budget must not wait for room (it would wait
 * forever, with the memory locked). */
Test(snapshot_live, more_pinned_pages_than_copy_room, .timeout = 60)
{
	const char *dir = snap_tmpdir(), *f = snap_file(dir, "live", 0);
	struct gmem *g = lv_open(0);
	struct lv_progress p = { 0 };
	struct lv_image im;

	snap_randomize(g, 20, 100);
	TH_EQ(gmem_convert(g, 0, 64 * TH_PAGE, GMEM_SHARED, NULL), 0);
	TH_EQ(gmem_pin(g, 0, 64 * TH_PAGE), 0);
	lv_capture(g, &im);
	gm_live_copy_max = 4 * TH_PAGE;
	TH_EQ(lv_save(g, f, 0, NULL, NULL, &p), 0);
	gm_live_copy_max = 0;
	cr_assert_geq(gm_live_last.copied, 64, "copied %llu", (unsigned long long)gm_live_last.copied);
	lv_expect_image(f, 0, NULL, &im);
	lv_image_free(&im);
	TH_EQ(gmem_unpin(g, 0, 64 * TH_PAGE), 0);
	gmem_close(g);
	snap_rmdir(dir);
}

static uint8_t *lv_window;

/* During the prepare: a temporary window opened before the save fills a
 * hole; no fault sees it. */
static void lv_fill_hole_through_window(struct gmem *g)
{
	(void)g;
	memset(lv_window, 0x6b, TH_PAGE);
}

Test(snapshot_live, window_opened_before_fills_a_hole_during_the_start)
{
	const char *dir = snap_tmpdir(), *f = snap_file(dir, "live", 0);
	struct gmem *g = lv_open(0);
	struct lv_progress p = { 0 };
	uint64_t hole = 777;
	struct gmem *r;

	snap_randomize(g, 21, 50);
	TH_EQ(gmem_discard(g, hole * TH_PAGE, TH_PAGE), 0);
	lv_window = gmem_kmap(g, hole * TH_PAGE);
	cr_assert_not_null(lv_window);
	gm_live_test_protected = lv_fill_hole_through_window;
	TH_EQ(lv_save(g, f, 0, NULL, NULL, &p), 0);
	gm_live_test_protected = NULL;
	gmem_kunmap(g, lv_window);
	/* Written before the start was fixed: part of the start image. */
	TH_EQ(gmem_snapshot_restore(f, NULL, &r), 0);
	TH_EQ(((uint8_t *)gmem_kvm_view(r))[hole * TH_PAGE + 100], 0x6b);
	gmem_close(r);
	gmem_close(g);
	snap_rmdir(dir);
}

/* The start fails (registering the views is refused): the tracked memory
 * goes back to asynchronous tracking, and its saves become incremental
 * again after one full one. */
static bool lv_refuse_register(int fd, unsigned long req, void *arg, int *ret)
{
	(void)fd;
	(void)arg;
	if (req != UFFDIO_REGISTER)
		return false;
	errno = ENOMEM;
	*ret = -1;
	return true;
}

Test(snapshot_live, failed_start_keeps_tracking)
{
	const char *dir = snap_tmpdir(), *f[3] = { snap_file(dir, "a", 0), snap_file(dir, "b", 1),
						   snap_file(dir, "c", 2) };
	struct gmem *g = lv_open_tracked();
	struct gmem_snapshot_opts o = { 0 };
	struct lv_progress p = { 0 };
	struct gmem_info gi;
	struct lv_image im;

	snap_randomize(g, 22, 40);
	TH_EQ(gmem_snapshot_save_ex(g, f[0], &o), 0);
	gm_sys_set_ioctl_hook(lv_refuse_register);
	TH_EQ(lv_save(g, f[1], 0, f[0], NULL, &p), -ENOMEM);
	gm_sys_set_ioctl_hook(NULL);
	TH_EQ(access(f[1], F_OK), -1);
	TH_EQ(gmem_info(g, &gi), 0);
	TH_EQ(gi.track, GMEM_TRACK_PAGEMAP);
	lv_churn(g, 6);
	o.parent = f[0];
	TH_EQ(gmem_snapshot_save_ex(g, f[1], &o), 0);           /* full: baseline lost */
	lv_churn(g, 7);
	o.parent = f[1];
	TH_EQ(gmem_snapshot_save_ex(g, f[2], &o), 0);
	TH_EQ(lv_info(f[2], NULL).incremental, 1);
	lv_capture(g, &im);
	lv_expect_image(f[2], 0, NULL, &im);
	lv_image_free(&im);
	gmem_close(g);
	snap_rmdir(dir);
}

/* A fault the early hook serves marks its page, then lifts the protection.
 * A pass that took the mark in between protected a page still protected,
 * which the fault then unprotected for good: a later write went unseen
 * and into the file. The fault thread is slowed at that point here. */
#define LV_RACE_PAGE 500

static struct {
	struct gmem *g;
	pthread_t t;
	int in_serve, first_done, second_go, second_done;
} lv_race;

static void lv_race_serving(uint64_t page)
{
	if (page != LV_RACE_PAGE || __atomic_exchange_n(&lv_race.in_serve, 1, __ATOMIC_ACQ_REL))
		return;
	usleep(100 * 1000);     /* the passes run now */
}

static void *lv_race_writer(void *arg)
{
	uint8_t *at = gmem_kvm_view(lv_race.g) + LV_RACE_PAGE * TH_PAGE;

	(void)arg;
	lv_guest_store(at + 1, 0x11);           /* faults: the early hook */
	__atomic_store_n(&lv_race.first_done, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&lv_race.second_go, __ATOMIC_ACQUIRE))
		sched_yield();
	lv_guest_store(at + 2, 0x22);           /* after the start */
	__atomic_store_n(&lv_race.second_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* After the protection, before the passes: the writer's fault is being
 * served, slowly. */
static void lv_race_protected(struct gmem *g)
{
	(void)g;
	cr_assert_eq(pthread_create(&lv_race.t, NULL, lv_race_writer, NULL), 0);
	while (!__atomic_load_n(&lv_race.in_serve, __ATOMIC_ACQUIRE))
		sched_yield();
}

static struct lv_image lv_race_im;

static int lv_race_pause(void *ctx, int pause)
{
	(void)ctx;
	if (pause) {
		while (!__atomic_load_n(&lv_race.first_done, __ATOMIC_ACQUIRE))
			sched_yield();
		lv_capture(lv_race.g, &lv_race_im);
	}
	return 0;
}

static void lv_race_progress(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx;
	(void)total;
	if (done)
		return;
	__atomic_store_n(&lv_race.second_go, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&lv_race.second_done, __ATOMIC_ACQUIRE))
		sched_yield();
}

Test(snapshot_live, a_pass_does_not_take_a_mark_before_its_fault_is_served, .timeout = 60)
{
	const char *dir = snap_tmpdir(), *f = snap_file(dir, "live", 0);
	struct gmem_snapshot_opts o = { .flags = GMEM_SNAP_LIVE, .live_pause = lv_race_pause,
					.progress = lv_race_progress };
	int ret;

	memset(&lv_race, 0, sizeof(lv_race));
	lv_race.g = lv_open(0);
	snap_randomize(lv_race.g, 23, 100);
	__atomic_store_n(&gm_track_test_serving, lv_race_serving, __ATOMIC_RELEASE);
	gm_live_test_protected = lv_race_protected;
	ret = gmem_snapshot_save_ex(lv_race.g, f, &o);
	gm_live_test_protected = NULL;
	__atomic_store_n(&gm_track_test_serving, NULL, __ATOMIC_RELEASE);
	pthread_join(lv_race.t, NULL);
	cr_assert_eq(ret, 0, "live save: %s (%s)", gmem_strerror(ret), gmem_last_error());
	TH_EQ(lv_race.second_done, 1);
	lv_expect_image(f, 0, NULL, &lv_race_im);
	lv_image_free(&lv_race_im);
	gmem_close(lv_race.g);
	snap_rmdir(dir);
}

/* The same race in a plain save of a memory tracked synchronously (after a
 * live save): a fault that set its bit before the save took the bits must
 * not lift the protection after the save protected again, or the next
 * incremental file misses a later write. */
static void *lv_race_plain_writer(void *arg)
{
	uint8_t *at = gmem_kvm_view(lv_race.g) + LV_RACE_PAGE * TH_PAGE;

	(void)arg;
	lv_guest_store(at + 3, 0x33);
	__atomic_store_n(&lv_race.first_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

Test(snapshot_live, a_save_does_not_take_bits_before_their_fault_is_served, .timeout = 60)
{
	const char *dir = snap_tmpdir(), *f[3] = { snap_file(dir, "a", 0), snap_file(dir, "b", 1),
						   snap_file(dir, "c", 2) };
	struct gmem_snapshot_opts o = { 0 };
	struct lv_progress p = { 0 };
	struct lv_image im;

	memset(&lv_race, 0, sizeof(lv_race));
	lv_race.g = lv_open(GMEM_F_TRACK_WRITES);
	snap_randomize(lv_race.g, 24, 100);
	TH_EQ(lv_save(lv_race.g, f[0], 0, NULL, NULL, &p), 0);      /* now synchronous */
	__atomic_store_n(&gm_track_test_serving, lv_race_serving, __ATOMIC_RELEASE);
	cr_assert_eq(pthread_create(&lv_race.t, NULL, lv_race_plain_writer, NULL), 0);
	while (!__atomic_load_n(&lv_race.in_serve, __ATOMIC_ACQUIRE))
		sched_yield();
	o.parent = f[0];
	TH_EQ(gmem_snapshot_save_ex(lv_race.g, f[1], &o), 0);  /* during the slow fault */
	pthread_join(lv_race.t, NULL);
	__atomic_store_n(&gm_track_test_serving, NULL, __ATOMIC_RELEASE);
	lv_guest_store(gmem_kvm_view(lv_race.g) + LV_RACE_PAGE * TH_PAGE + 4, 0x44);
	o.parent = f[1];
	TH_EQ(gmem_snapshot_save_ex(lv_race.g, f[2], &o), 0);
	TH_EQ(lv_info(f[2], NULL).incremental, 1);
	lv_capture(lv_race.g, &im);
	lv_expect_image(f[2], 0, NULL, &im);
	lv_image_free(&im);
	gmem_close(lv_race.g);
	snap_rmdir(dir);
}

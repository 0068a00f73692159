// SPDX-License-Identifier: MIT
/*
 * bench_snapshot_live.c - live saves (part of gmem-bench snapshot): a
 * memory of GMEM_BENCH_LIVE_GIB GiB (8 by default) fully populated, saved
 * plainly (the memory is locked for the whole save) and live while a
 * writer thread writes random pages through the KVM view, as a guest
 * would, from the moment the save says its start is fixed (progress 0).
 *
 * The writer is paused in the save's live_pause(1) callback and resumed in
 * live_pause(0), as a VMM stops and resumes its vCPUs; the start image's
 * page hashes are taken in between, before the library locks the memory.
 *
 * Target (issue 15): the live save keeps the memory locked at most 20 ms,
 * against the plain save's whole time. The locked time is measured from
 * live_pause(1) returning to live_pause(0) being called, and, as a check,
 * as the longest wait of a thread that calls gmem_kmap() in a loop during
 * the save. The file is then restored and every page's hash compared
 * with the start image's.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "bench.h"

#define LIVE_IOBUF (8 * MiB)

struct live_run {
	struct gmem *g;
	uint64_t size;
	uint64_t t_call, t_start;       /* the call, progress(0)              */
	uint64_t t_pause, t_lock, t_unlock;     /* live_pause(1) called and
						 * returns, (0) called          */
	uint64_t *start;                /* page hashes at the pause           */
	int hash_err;
	volatile int go, stop, paused, parked;
	uint64_t writes;
	uint64_t kmap_max_ns, kmaps;
	pthread_t writer, prober;
};

/* A hash per page of the memory's file, read with pread(2). */
static int live_hashes(struct gmem *g, uint64_t size, uint64_t *h)
{
	struct gmem_info in;
	uint8_t *buf = malloc(LIVE_IOBUF);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	gmem_info(g, &in);
	for (uint64_t off = 0; off < size && !ret; off += LIVE_IOBUF) {
		ssize_t n = pread(in.fd, buf, LIVE_IOBUF, (off_t)off);

		if (n != (ssize_t)LIVE_IOBUF) {
			ret = n < 0 ? -errno : -EIO;
			break;
		}
		for (uint64_t i = 0; i < LIVE_IOBUF; i += 4096)
			h[(off + i) / 4096] = XXH3_64bits(buf + i, 4096);
	}
	free(buf);
	return ret;
}

static void *live_writer(void *arg)
{
	struct live_run *r = arg;
	uint8_t *kv = gmem_kvm_view(r->g);
	uint64_t rng = 0x9e3779b97f4a7c15ull, pages = r->size / 4096, n = 0;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		uint64_t p = rng_next(&rng) % pages;

		/* Paused as a vCPU would be: acknowledged, then spinning. */
		if (__atomic_load_n(&r->paused, __ATOMIC_ACQUIRE)) {
			__atomic_store_n(&r->parked, 1, __ATOMIC_RELEASE);
			while (__atomic_load_n(&r->paused, __ATOMIC_ACQUIRE))
				;
			__atomic_store_n(&r->parked, 0, __ATOMIC_RELEASE);
			continue;
		}
		*(uint64_t *)(kv + p * 4096 + (rng_next(&rng) % 512) * 8) = rng_next(&rng);
		n++;
	}
	r->writes = n;
	return NULL;
}

/* A library call that takes the memory's lock, again and again: its
 * longest wait is how long the memory was locked at a time. */
static void *live_prober(void *arg)
{
	struct live_run *r = arg;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		uint64_t t0 = now_ns(), ns;
		void *p = gmem_kmap(r->g, r->size - 4096);

		ns = now_ns() - t0;
		if (p)
			gmem_kunmap(r->g, p);
		if (ns > r->kmap_max_ns)
			r->kmap_max_ns = ns;
		r->kmaps++;
		usleep(200);
	}
	return NULL;
}

static void live_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct live_run *r = ctx;

	(void)total;
	if (!done && !r->t_start)
		r->t_start = now_ns();
}

/* The VMM's side: stop the writer, take the start image, let the save
 * lock; then resume the writer. */
static int live_pause(void *ctx, int pause)
{
	struct live_run *r = ctx;

	if (!pause) {
		r->t_unlock = now_ns();
		__atomic_store_n(&r->paused, 0, __ATOMIC_RELEASE);
		return 0;
	}
	r->t_pause = now_ns();
	__atomic_store_n(&r->paused, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&r->parked, __ATOMIC_ACQUIRE))
		;
	r->hash_err = live_hashes(r->g, r->size, r->start);
	r->t_lock = now_ns();
	return 0;
}

static int live_save(struct live_run *r, const char *path, unsigned flags, uint64_t *ns)
{
	struct gmem_snapshot_opts o = { .flags = flags, .progress = live_progress,
					.progress_ctx = r,
					.live_pause = flags & GMEM_SNAP_LIVE ? live_pause : NULL };
	int ret;

	r->go = r->stop = r->paused = r->parked = 0;
	r->t_start = r->t_pause = r->t_lock = r->t_unlock = 0;
	r->writes = r->kmaps = r->kmap_max_ns = 0;
	if (pthread_create(&r->prober, NULL, live_prober, r))
		return -EAGAIN;
	if ((flags & GMEM_SNAP_LIVE) && pthread_create(&r->writer, NULL, live_writer, r)) {
		__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
		pthread_join(r->prober, NULL);
		return -EAGAIN;
	}
	r->t_call = now_ns();
	ret = gmem_snapshot_save_ex(r->g, path, &o);
	*ns = now_ns() - r->t_call;
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
	pthread_join(r->prober, NULL);
	if (flags & GMEM_SNAP_LIVE)
		pthread_join(r->writer, NULL);
	if (ret)
		out_fail("gmem_snapshot_save_ex: %s (%s)", gmem_strerror(ret), gmem_last_error());
	return ret;
}

/* Restore @path and count the pages whose hash is not @want's. */
static int live_check(const char *path, uint64_t size, const uint64_t *want, uint64_t *diff)
{
	uint64_t *got = malloc(size / 4096 * sizeof(*got));
	struct gmem *m;
	int ret;

	if (!got)
		return -ENOMEM;
	ret = gmem_snapshot_restore(path, NULL, &m);
	if (ret) {
		out_fail("gmem_snapshot_restore: %s (%s)", gmem_strerror(ret), gmem_last_error());
		free(got);
		return ret;
	}
	ret = live_hashes(m, size, got);
	gmem_close(m);
	*diff = 0;
	for (uint64_t p = 0; !ret && p < size / 4096; p++) {
		if (got[p] != want[p] && !*diff)
			out_note("page %llu of the live file is not as at the start",
				 (unsigned long long)p);
		*diff += got[p] != want[p];
	}
	free(got);
	return ret;
}

static int live_run_all(struct live_run *r, const char *plain, const char *live)
{
	uint64_t pages = r->size / 4096, plain_ns, live_ns, plain_kmap, diff;
	uint64_t *start = malloc(pages * sizeof(*start));
	char info[200];
	int ret;

	if (!start)
		return -ENOMEM;
	r->start = start;
	ret = live_save(r, plain, 0, &plain_ns);
	plain_kmap = r->kmap_max_ns;
	if (!ret)
		ret = live_save(r, live, GMEM_SNAP_LIVE, &live_ns);
	if (!ret && r->hash_err)
		ret = r->hash_err;
	if (ret) {
		free(start);
		return ret;
	}
	snprintf(info, sizeof(info), "plain save locked %.0f ms (longest gmem_kmap wait %.0f ms)",
		 (double)plain_ns / 1e6, (double)plain_kmap / 1e6);
	out_row("plain save: memory locked", (double)plain_ns / 1e6, "ms", info);
	snprintf(info, sizeof(info), "whole live save %.0f ms, of which unlocked write-protect "
		 "%.0f ms; longest gmem_kmap wait %.2f ms of %llu calls", (double)live_ns / 1e6,
		 (double)(r->t_pause - r->t_call) / 1e6, (double)r->kmap_max_ns / 1e6,
		 (unsigned long long)r->kmaps);
	out_target("live save: memory locked (between live_pause calls)",
		   (double)(r->t_unlock - r->t_lock) / 1e6, "ms", CMP_LE, 20, info);
	out_row("live locked / plain locked",
		(double)(r->t_unlock - r->t_lock) / (double)plain_ns, "x", "");
	gmem_close(r->g);
	r->g = NULL;
	ret = live_check(live, r->size, start, &diff);
	if (!ret) {
		snprintf(info, sizeof(info), "%llu writes by the writer thread during the save",
			 (unsigned long long)r->writes);
		out_target("pages of the live file not as at the start", (double)diff, "pages",
			   CMP_LE, 0, info);
	}
	free(start);
	return ret;
}

int bench_snapshot_live(const char *dir)
{
	const char *env = getenv("GMEM_BENCH_LIVE_GIB");
	uint64_t size = (env ? strtoull(env, NULL, 0) : 8) * GiB;
	struct gmem_config cfg = { .size = size, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1 };
	struct live_run r = { .size = size };
	char plain[300], live[300], sz[32];
	uint64_t rng = 0x2545f4914f6cdd1dull;
	int ret;

	out_section("live save: %s fully populated, a writer thread during the save",
		    fmt_size(size, sz, sizeof(sz)));
	if (!size)
		return 0;
	ret = gmem_open(&cfg, &r.g);
	if (ret) {
		out_skip("a %s memfd memory: %s", sz, gmem_strerror(ret));
		return 0;
	}
	{
		uint8_t *kv = gmem_kvm_view(r.g);

		for (uint64_t off = 0; off < size; off += 8)
			*(uint64_t *)(kv + off) = rng_next(&rng);
	}
	snprintf(plain, sizeof(plain), "%s/live-plain.snap", dir);
	snprintf(live, sizeof(live), "%s/live.snap", dir);
	ret = live_run_all(&r, plain, live);
	if (r.g)
		gmem_close(r.g);
	unlink(plain);
	unlink(live);
	return ret;
}

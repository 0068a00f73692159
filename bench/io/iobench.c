// SPDX-License-Identifier: MIT
/*
 * iobench.c - `gmem bench io`: throughput and latency of every I/O path on
 * private guest memory, side by side in one run.
 *
 * Model: one cell is (direction, request size, shape, threads). In a cell
 * every column runs in turn for a short slice, several rounds, the order
 * rotating each round, so a noisy machine's drift hits all columns alike:
 *   memcpy          - memcpy of the same bytes between two plain buffers;
 *   shared-baseline - the same I/O on guest memory that is shared already
 *                     (no isolation: what a VMM without private memory does);
 *   inplace, bounce, kmap, auto - gmem_io_rw on private memory.
 * Each thread works on its own 32 MiB of private memory (and 32 MiB shared
 * for the baseline), walking it request by request, and the target is 64
 * MiB: the working set exceeds the caches, as I/O data does. The target is
 * memory (default) or a file in the page cache (tmpfs), so the run measures
 * the paths, not a disk. Throughput is bytes over wall time (MB/s = 1e6
 * B/s); latencies are per request. Sizes 512 B .. 1 MiB; scattered
 * requests are one page per segment, every other page (8 KiB and up).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "iobench.h"

#define AREA      (32ull << 20)
#define TGT_LEN   (64ull << 20)
#define PG        4096ull
#define MAXSEGS   256u
#define LAT_CAP   (1u << 18)

struct env {
	const struct iob_opts *o;
	struct gmem *g;
	struct gmem_io *io;
	struct gmem_io_target t;
	uint8_t *tgt;           /* memory target, or the file's bytes       */
	uint8_t *plain;         /* memcpy's other side                      */
	unsigned nthreads;      /* areas laid out for this many             */
	int fd;
	/* the slice running now */
	enum iob_path path;
	uint64_t size;
	unsigned shape;
	enum gmem_io_dir dir;
	uint64_t deadline;
	pthread_barrier_t start, end;
	bool quit;
};

struct worker {
	struct env *e;
	unsigned id;
	pthread_t th;
	uint64_t cursor, reqs, bytes;
	uint64_t *lat;
	uint64_t nlat;
	uint64_t picks[GMEM_IO_NPATHS];
	int err;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

const char *iob_path_name(enum iob_path p)
{
	static const char *const names[IOB_NPATHS] = {
		"memcpy", "shared-baseline", "inplace", "bounce", "kmap", "auto",
	};

	return p < IOB_NPATHS ? names[p] : "?";
}

const char *iob_shape_name(unsigned shape)
{
	return shape ? "scattered" : "contiguous";
}

/* ---- one request ----------------------------------------------------------- */

/* Segments of the worker's next request, relative to its area. */
static unsigned next_segs(struct worker *w, struct gmem_io_seg *s, uint64_t *toff)
{
	struct env *e = w->e;
	uint64_t span = e->shape ? 2 * e->size : (e->size + PG - 1) & ~(PG - 1);
	uint64_t slots = AREA / span, n = 0;
	uint64_t base = (w->cursor % slots) * span;

	*toff = (w->cursor * ((e->size + 63) & ~63ull)) % (TGT_LEN - e->size);
	w->cursor++;
	if (!e->shape) {
		s[0] = (struct gmem_io_seg){ base, e->size };
		return 1;
	}
	for (uint64_t at = 0; at < e->size; at += PG)
		s[n++] = (struct gmem_io_seg){ base + 2 * at, PG };
	return (unsigned)n;
}

/* The same I/O on shared memory, straight on the host view. */
static int shared_io(struct env *e, const struct gmem_io_seg *s, unsigned n, uint64_t base,
		     uint64_t toff)
{
	struct iovec iov[MAXSEGS];
	uint64_t total = 0;
	ssize_t got;

	for (unsigned i = 0; i < n; i++) {
		iov[i].iov_base = gmem_host(e->g, base + s[i].gpa);
		iov[i].iov_len = s[i].len;
		if (e->o->target == IOB_MEMORY) {
			if (e->dir == GMEM_IO_READ)
				memcpy(iov[i].iov_base, e->tgt + toff + total, s[i].len);
			else
				memcpy(e->tgt + toff + total, iov[i].iov_base, s[i].len);
		}
		total += s[i].len;
	}
	if (e->o->target == IOB_MEMORY)
		return 0;
	got = e->dir == GMEM_IO_READ ? preadv(e->fd, iov, (int)n, (off_t)toff)
				     : pwritev(e->fd, iov, (int)n, (off_t)toff);
	return got == (ssize_t)total ? 0 : got < 0 ? -errno : -EIO;
}

static int one_request(struct worker *w)
{
	struct env *e = w->e;
	struct gmem_io_seg s[MAXSEGS];
	uint64_t toff, priv = (uint64_t)w->id * AREA;
	uint64_t shared = (uint64_t)(e->nthreads + w->id) * AREA;
	unsigned n = next_segs(w, s, &toff);
	struct gmem_io_req q;
	int64_t ret;

	switch (e->path) {
	case IOB_MEMCPY:
		/* The same bytes in the same layout, between plain buffers. */
		for (unsigned i = 0, at = 0; i < n; at += (unsigned)s[i].len, i++) {
			if (e->dir == GMEM_IO_READ)
				memcpy(e->plain + priv + s[i].gpa, e->tgt + toff + at, s[i].len);
			else
				memcpy(e->tgt + toff + at, e->plain + priv + s[i].gpa, s[i].len);
		}
		return 0;
	case IOB_SHARED:
		return shared_io(e, s, n, shared, toff);
	default:
		break;
	}
	for (unsigned i = 0; i < n; i++)
		s[i].gpa += priv;
	q = (struct gmem_io_req){ .dir = e->dir, .nsegs = n, .segs = s, .target = &e->t,
				  .off = toff };
	q.path = e->path == IOB_INPLACE ? GMEM_IO_INPLACE : e->path == IOB_BOUNCE ? GMEM_IO_BOUNCE
		 : e->path == IOB_KMAP ? GMEM_IO_KMAP : GMEM_IO_AUTO;
	ret = gmem_io_rw(e->io, &q);
	w->picks[q.used]++;
	return ret == (int64_t)e->size ? 0 : ret < 0 ? (int)ret : -EIO;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct env *e = w->e;

	for (;;) {
		pthread_barrier_wait(&e->start);
		if (e->quit)
			return NULL;
		do {
			uint64_t t0 = now_ns();
			int ret = one_request(w);

			if (ret && !w->err)
				w->err = ret;
			if (w->nlat < LAT_CAP)
				w->lat[w->nlat++] = now_ns() - t0;
			w->reqs++;
			w->bytes += e->size;
		} while (now_ns() < e->deadline && !w->err);
		pthread_barrier_wait(&e->end);
	}
}

/* ---- cells ---------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

#define MAX_ROUNDS 11u

struct acc {
	uint64_t bytes, ns, reqs, nlat;
	uint64_t *lat;
	double round_mbps[MAX_ROUNDS];
};

/* Run one column for one slice on every worker; add to @a. */
static int slice(struct env *e, struct worker *w, unsigned nw, enum iob_path p,
		 uint64_t slice_ns, struct acc *a, unsigned round, uint64_t *picks)
{
	uint64_t t0, dt, bytes = 0;

	e->path = p;
	for (unsigned i = 0; i < nw; i++)
		w[i].reqs = w[i].bytes = w[i].nlat = 0;
	t0 = now_ns();
	e->deadline = t0 + slice_ns;
	pthread_barrier_wait(&e->start);
	pthread_barrier_wait(&e->end);
	dt = now_ns() - t0;
	for (unsigned i = 0; i < nw; i++) {
		if (w[i].err)
			return w[i].err;
		bytes += w[i].bytes;
		a->reqs += w[i].reqs;
		for (uint64_t k = 0; k < w[i].nlat && a->nlat < LAT_CAP; k++)
			a->lat[a->nlat++] = w[i].lat[k];
		for (unsigned k = 0; k < GMEM_IO_NPATHS && p == IOB_AUTO; k++)
			picks[k] += w[i].picks[k];
		memset(w[i].picks, 0, sizeof(w[i].picks));
	}
	a->bytes += bytes;
	a->ns += dt;
	a->round_mbps[round] = (double)bytes * 1e3 / (double)dt;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Median over rounds of a[x] / a[y], each round's pair measured back to
 * back: the drift of a noisy machine cancels. */
static double ratio(const struct acc *a, enum iob_path x, enum iob_path y, unsigned rounds)
{
	double r[MAX_ROUNDS];

	for (unsigned i = 0; i < rounds; i++)
		r[i] = a[y].round_mbps[i] > 0 ? a[x].round_mbps[i] / a[y].round_mbps[i] : 0;
	return median(r, rounds);
}

static void finish(struct iob_cell *c, enum iob_path p, struct acc *a, unsigned rounds,
		   const uint64_t *picks)
{
	double m[MAX_ROUNDS];

	memcpy(m, a->round_mbps, sizeof(m));
	c->run[p] = true;
	c->requests[p] = a->reqs;
	c->mbps[p] = median(m, rounds);
	qsort(a->lat, a->nlat, sizeof(*a->lat), cmp_u64);
	c->p50_us[p] = a->nlat ? (double)a->lat[a->nlat / 2] / 1e3 : 0;
	c->p99_us[p] = a->nlat ? (double)a->lat[(a->nlat * 99) / 100] / 1e3 : 0;
	if (p == IOB_AUTO && a->reqs)
		for (unsigned k = 0; k < GMEM_IO_NPATHS; k++)
			c->auto_share[k] = (double)picks[k] / (double)a->reqs;
}

static double best_fixed(const struct iob_cell *c, enum iob_path *which);

static int run_cell(struct env *e, struct worker *w, unsigned nw, struct iob_cell *c)
{
	unsigned rounds = e->o->quick ? 5 : 11;
	uint64_t slice_ns = (e->o->quick ? 2 : 5) * 1000000ull;
	struct acc a[IOB_NPATHS] = { 0 };
	uint64_t picks[GMEM_IO_NPATHS] = { 0 };
	int ret = 0;

	e->size = c->size;
	e->shape = c->shape;
	e->dir = c->dir;
	for (unsigned p = 0; p < IOB_NPATHS; p++) {
		a[p].lat = malloc(LAT_CAP * sizeof(uint64_t));
		if (!a[p].lat)
			ret = -ENOMEM;
	}
	for (unsigned r = 0; !ret && r < rounds; r++)
		for (unsigned k = 0; !ret && k < IOB_NPATHS; k++) {
			enum iob_path p = (enum iob_path)((k + r) % IOB_NPATHS);

			ret = slice(e, w, nw, p, slice_ns, &a[p], r, picks);
		}
	for (unsigned p = 0; !ret && p < IOB_NPATHS; p++)
		finish(c, p, &a[p], rounds, picks);
	if (!ret) {
		best_fixed(c, &c->best);
		c->auto_vs_best = ratio(a, IOB_AUTO, c->best, rounds);
		c->bounce_vs_memcpy = ratio(a, IOB_BOUNCE, IOB_MEMCPY, rounds);
		c->auto_vs_best_p50 = c->p50_us[IOB_AUTO] > 0
				      ? c->p50_us[c->best] / c->p50_us[IOB_AUTO] : 0;
	}
	for (unsigned p = 0; p < IOB_NPATHS; p++)
		free(a[p].lat);
	return ret;
}

/* ---- set-up ----------------------------------------------------------------- */

static int env_open(struct env *e, const struct iob_opts *o)
{
	struct gmem_config cfg = { .size = 4 * AREA * o->threads, .backend = o->backend,
				   .vm_fd = -1 };
	struct gmem_io_config icfg = { .slot_size = o->slot_size,
				       .pool_size = o->slot_size ? 64ull * o->slot_size : 0 };
	int ret;

	e->o = o;
	e->fd = -1;
	ret = gmem_open(&cfg, &e->g);
	if (ret)
		return ret;
	ret = gmem_io_create(e->g, &icfg, &e->io);
	if (ret)
		return ret;
	e->tgt = mmap(NULL, TGT_LEN, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	e->plain = mmap(NULL, AREA * o->threads, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (e->tgt == MAP_FAILED || e->plain == MAP_FAILED)
		return -ENOMEM;
	memset(e->tgt, 0x5a, TGT_LEN);
	e->t = (struct gmem_io_target){ .kind = GMEM_IO_MEMORY, .mem = e->tgt,
					.mem_len = TGT_LEN };
	if (o->target == IOB_FILE) {
		char path[256];

		snprintf(path, sizeof(path), "%s/gmem-bench-io-XXXXXX", o->file_dir);
		e->fd = mkstemp(path);
		if (e->fd < 0)
			return -errno;
		unlink(path);
		if (pwrite(e->fd, e->tgt, TGT_LEN, 0) != (ssize_t)TGT_LEN)
			return -EIO;
		gmem_io_target_file(&e->t, e->fd, -1);
	}
	return 0;
}

static void env_close(struct env *e)
{
	if (e->fd >= 0)
		close(e->fd);
	if (e->plain && e->plain != MAP_FAILED)
		munmap(e->plain, AREA * e->o->threads);
	if (e->tgt && e->tgt != MAP_FAILED)
		munmap(e->tgt, TGT_LEN);
	gmem_io_destroy(e->io);
	gmem_close(e->g);
}

/* Lay out @nt threads' areas: private ones first, then shared ones, and
 * fault every page in once so no column pays first-touch costs. */
static int env_layout(struct env *e, unsigned nt)
{
	struct gmem_io_seg s;
	struct gmem_io_req q = { .dir = GMEM_IO_READ, .path = GMEM_IO_BOUNCE, .nsegs = 1,
				 .segs = &s, .target = &e->t };
	int ret;

	e->nthreads = nt;
	ret = gmem_convert(e->g, 0, 4 * AREA * e->o->threads, GMEM_PRIVATE, NULL);
	if (!ret)
		ret = gmem_convert(e->g, nt * AREA, nt * AREA, GMEM_SHARED, NULL);
	for (unsigned i = 0; !ret && i < nt; i++) {
		for (uint64_t at = 0; at < AREA; at += (1u << 20)) {
			s = (struct gmem_io_seg){ i * AREA + at, 1u << 20 };
			q.off = at % (TGT_LEN - (1u << 20));
			if (gmem_io_rw(e->io, &q) < 0)
				return -EIO;
		}
		memset(gmem_host(e->g, (nt + i) * AREA), 0, AREA);
	}
	return ret;
}

/* ---- output ------------------------------------------------------------------ */

static void json_cell(const struct iob_cell *c, const struct iob_opts *o)
{
	for (unsigned p = 0; p < IOB_NPATHS; p++) {
		if (!c->run[p])
			continue;
		printf("{\"bench\":\"io\",\"path\":\"%s\",\"size\":%llu,\"shape\":\"%s\","
		       "\"threads\":%u,\"dir\":\"%s\",\"target\":\"%s\",\"mbps\":%.1f,"
		       "\"p50_us\":%.2f,\"p99_us\":%.2f,\"requests\":%llu",
		       iob_path_name(p), (unsigned long long)c->size, iob_shape_name(c->shape),
		       c->threads, c->dir == GMEM_IO_READ ? "read" : "write",
		       o->target == IOB_FILE ? "file" : "memory", c->mbps[p], c->p50_us[p],
		       c->p99_us[p], (unsigned long long)c->requests[p]);
		if (p == IOB_AUTO)
			printf(",\"vs_best\":%.3f,\"vs_best_p50\":%.3f,\"best\":\"%s\","
			       "\"picked_inplace\":%.2f,\"picked_bounce\":%.2f,\"picked_kmap\":%.2f",
			       c->auto_vs_best, c->auto_vs_best_p50,
			       iob_path_name(c->best), c->auto_share[GMEM_IO_INPLACE],
			       c->auto_share[GMEM_IO_BOUNCE], c->auto_share[GMEM_IO_KMAP]);
		if (p == IOB_BOUNCE)
			printf(",\"vs_memcpy\":%.3f", c->bounce_vs_memcpy);
		printf("}\n");
	}
	fflush(stdout);
}

static double best_fixed(const struct iob_cell *c, enum iob_path *which)
{
	double best = 0;

	for (enum iob_path p = IOB_INPLACE; p <= IOB_KMAP; p++)
		if (c->mbps[p] > best) {
			best = c->mbps[p];
			*which = p;
		}
	return best;
}

static const char *fmt_size(uint64_t b, char *buf)
{
	if (b >= (1u << 20))
		sprintf(buf, "%lluM", (unsigned long long)(b >> 20));
	else if (b >= 1024)
		sprintf(buf, "%lluK", (unsigned long long)(b >> 10));
	else
		sprintf(buf, "%llu", (unsigned long long)b);
	return buf;
}

static void table_head(FILE *tab)
{
	fprintf(tab, "\n%-5s %-4s %-4s %2s | %8s %8s %8s %8s %8s %8s | %-9s %-4s %-6s | %s\n",
		"dir", "size", "shp", "th", "memcpy", "shared", "inplace", "bounce", "kmap",
		"auto", "auto/best", "p50", "bnc/mc", "p50/p99 us: inplace bounce kmap auto");
}

static void table_row(FILE *tab, const struct iob_cell *c)
{
	char sz[16];

	fprintf(tab, "%-5s %-4s %-4s %2u |", c->dir == GMEM_IO_READ ? "read" : "write",
		fmt_size(c->size, sz), c->shape ? "scat" : "cont", c->threads);
	for (unsigned p = 0; p < IOB_NPATHS; p++)
		fprintf(tab, " %8.0f", c->mbps[p]);
	fprintf(tab, " | %5.2f %-3.3s %4.2f %6.2f |", c->auto_vs_best, iob_path_name(c->best),
		c->auto_vs_best_p50, c->bounce_vs_memcpy);
	for (enum iob_path p = IOB_INPLACE; p <= IOB_AUTO; p++)
		fprintf(tab, " %.1f/%.1f", c->p50_us[p], c->p99_us[p]);
	fputc('\n', tab);
	fflush(tab);
}

/* Where @x and @y trade places along one series, or who leads throughout. */
static void pair_cross(FILE *tab, const struct iob_cell *c, unsigned n, enum iob_path x,
		       enum iob_path y, const char *series, const struct iob_opts *o)
{
	char line[256], sz[16];
	size_t len = 0;
	int lead = 0;

	len += (size_t)snprintf(line + len, sizeof(line) - len, "%s vs %s:", iob_path_name(x),
				iob_path_name(y));
	for (unsigned i = 0; i < n; i++) {
		int now = c[i].mbps[x] >= c[i].mbps[y] ? 1 : -1;

		if (lead && now != lead) {
			len += (size_t)snprintf(line + len, sizeof(line) - len, " %s ahead from %s;",
						iob_path_name(now > 0 ? x : y),
						fmt_size(c[i].size, sz));
			if (o->json)
				printf("{\"bench\":\"io\",\"crossover\":\"%s\",\"faster\":\"%s\","
				       "\"slower\":\"%s\",\"size\":%llu}\n", series,
				       iob_path_name(now > 0 ? x : y), iob_path_name(now > 0 ? y : x),
				       (unsigned long long)c[i].size);
		}
		lead = now;
	}
	if (!strchr(line, ';')) {
		double lo = 1e30, hi = 0;

		for (unsigned i = 0; i < n; i++) {
			double r = lead > 0 ? c[i].mbps[x] / c[i].mbps[y] : c[i].mbps[y] / c[i].mbps[x];

			lo = r < lo ? r : lo;
			hi = r > hi ? r : hi;
		}
		snprintf(line + len, sizeof(line) - len, " no crossover, %s faster at every size"
			 " (%.1fx .. %.1fx)", iob_path_name(lead > 0 ? x : y), lo, hi);
	}
	fprintf(tab, "  %-28s %s\n", "", line);
}

/* Where the best fixed path changes along the sizes of one series, and the
 * pairwise crossovers. */
static void crossovers(FILE *tab, const struct iob_cell *c, unsigned n, const char *series,
		       const struct iob_opts *o)
{
	enum iob_path prev = IOB_NPATHS;
	char line[512] = "", sz[16];
	size_t len = 0;

	for (unsigned i = 0; i < n; i++) {
		enum iob_path bp = c[i].best;

		if (bp != prev)
			len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s from %s",
						prev == IOB_NPATHS ? "" : ", ", iob_path_name(bp),
						fmt_size(c[i].size, sz));
		prev = bp;
	}
	fprintf(tab, "  %-28s best fixed path: %s\n", series, line);
	pair_cross(tab, c, n, IOB_INPLACE, IOB_BOUNCE, series, o);
	pair_cross(tab, c, n, IOB_INPLACE, IOB_KMAP, series, o);
	pair_cross(tab, c, n, IOB_KMAP, IOB_BOUNCE, series, o);
}

struct verdict {
	double bounce_min, auto_min, p50_min;
	unsigned bounce_n, auto_n, auto_miss, p50_miss;
	char bounce_at[64], auto_at[64];
};

static void judge(struct verdict *v, const struct iob_cell *c)
{
	double r = c->auto_vs_best;
	char sz[16];

	v->auto_miss += r < 0.95;
	v->p50_miss += c->auto_vs_best_p50 < 0.95;
	if (!v->auto_n || c->auto_vs_best_p50 < v->p50_min)
		v->p50_min = c->auto_vs_best_p50;
	if (!v->auto_n++ || r < v->auto_min) {
		v->auto_min = r;
		snprintf(v->auto_at, sizeof(v->auto_at), "%s %s %s %ut",
			 c->dir ? "write" : "read", fmt_size(c->size, sz),
			 iob_shape_name(c->shape), c->threads);
	}
	r = c->bounce_vs_memcpy;
	if (c->size >= (64u << 10) && (!v->bounce_n++ || r < v->bounce_min)) {
		v->bounce_min = r;
		snprintf(v->bounce_at, sizeof(v->bounce_at), "%s %s %s %ut",
			 c->dir ? "write" : "read", fmt_size(c->size, sz),
			 iob_shape_name(c->shape), c->threads);
	}
}

static void verdicts(FILE *tab, const struct verdict *v, const struct iob_opts *o)
{
	bool bpass = v->bounce_min >= 0.8, apass = !v->auto_miss;

	fprintf(tab, "\n  bounce / memcpy at >= 64 KiB: min %.2f (%s) target >= 0.80  %s\n",
		v->bounce_min, v->bounce_at, bpass ? "PASS" : "MISS");
	fprintf(tab, "  auto / best fixed path:       min %.2f (%s) target >= 0.95  %s"
		" (%u of %u cells below)\n", v->auto_min, v->auto_at, apass ? "PASS" : "MISS",
		v->auto_miss, v->auto_n);
	fprintf(tab, "  auto / best by p50 latency:   min %.2f, %u of %u cells below 0.95"
		" (median request time: robust to stalls of a loaded machine)\n", v->p50_min,
		v->p50_miss, v->auto_n);
	if (o->json) {
		printf("{\"bench\":\"io\",\"target\":\"bounce_vs_memcpy_64k\",\"value\":%.3f,"
		       "\"want\":0.8,\"pass\":%s}\n", v->bounce_min, bpass ? "true" : "false");
		printf("{\"bench\":\"io\",\"target\":\"auto_vs_best\",\"value\":%.3f,"
		       "\"want\":0.95,\"pass\":%s,\"cells_below\":%u,\"cells\":%u,"
		       "\"p50_min\":%.3f,\"p50_cells_below\":%u}\n",
		       v->auto_min, apass ? "true" : "false", v->auto_miss, v->auto_n,
		       v->p50_min, v->p50_miss);
	}
}

/* ---- the run ------------------------------------------------------------------- */

/* The cells of one (direction, threads), in size order: contiguous then
 * scattered. Returns their number. */
static unsigned plan(struct iob_cell *c, const struct iob_opts *o, enum gmem_io_dir dir,
		     unsigned threads)
{
	static const uint64_t quick[] = { 512, 4096, 65536, 1u << 20 };
	unsigned n = 0;

	for (unsigned shape = 0; shape < 2; shape++) {
		for (unsigned i = 0; i < (o->quick ? 4u : 12u); i++) {
			uint64_t size = o->quick ? quick[i] : 512ull << i;

			if (shape && size < 2 * PG)
				continue;
			c[n++] = (struct iob_cell){ .size = size, .shape = shape,
						    .threads = threads, .dir = dir };
		}
	}
	return n;
}

static int run_threads(struct env *e, unsigned nt, struct iob_cell *cells, unsigned *ncells,
		       FILE *tab, struct verdict *v)
{
	struct worker *w = calloc(nt, sizeof(*w));
	int ret = env_layout(e, nt);

	if (!w)
		return -ENOMEM;
	pthread_barrier_init(&e->start, NULL, nt + 1);
	pthread_barrier_init(&e->end, NULL, nt + 1);
	e->quit = false;
	for (unsigned i = 0; i < nt; i++) {
		w[i] = (struct worker){ .e = e, .id = i, .lat = malloc(LAT_CAP * sizeof(uint64_t)) };
		pthread_create(&w[i].th, NULL, worker_main, &w[i]);
	}
	for (int dir = 0; !ret && dir < 2; dir++) {
		struct iob_cell *c = cells + *ncells;
		unsigned n, start;
		char series[64];

		if (!(e->o->dirs & (1 << dir)))
			continue;
		n = plan(c, e->o, (enum gmem_io_dir)dir, nt);
		for (unsigned i = 0; !ret && i < n; i++) {
			ret = run_cell(e, w, nt, &c[i]);
			if (ret)
				break;
			table_row(tab, &c[i]);
			judge(v, &c[i]);
			if (e->o->json)
				json_cell(&c[i], e->o);
		}
		for (start = 0; !ret && start < n;) {
			unsigned end = start;

			while (end < n && c[end].shape == c[start].shape)
				end++;
			snprintf(series, sizeof(series), "%s %s %u thread%s",
				 dir ? "write" : "read", iob_shape_name(c[start].shape), nt,
				 nt > 1 ? "s" : "");
			crossovers(tab, c + start, end - start, series, e->o);
			start = end;
		}
		*ncells += n;
	}
	e->quit = true;
	pthread_barrier_wait(&e->start);
	for (unsigned i = 0; i < nt; i++) {
		pthread_join(w[i].th, NULL);
		free(w[i].lat);
	}
	pthread_barrier_destroy(&e->start);
	pthread_barrier_destroy(&e->end);
	free(w);
	return ret;
}

int iob_run(const struct iob_opts *o, FILE *tab)
{
	struct iob_cell *cells = calloc(4 * 2 * 24, sizeof(*cells));
	struct env e = { 0 };
	struct verdict v = { 0 };
	struct gmem_io_stats st;
	struct gmem_info info;
	unsigned ncells = 0;
	char sub[160];
	int ret;

	if (!cells)
		return -ENOMEM;
	ret = env_open(&e, o);
	if (ret)
		goto out;
	gmem_info(e.g, &info);
	gmem_io_stats(e.io, &st);
	snprintf(sub, sizeof(sub), "%s backend, %s target, pool %llu KiB in %llu KiB slots",
		 gmem_backend_name(info.backend),
		 o->target == IOB_FILE ? "page-cache file" : "memory",
		 (unsigned long long)st.pool_size >> 10,
		 (unsigned long long)st.pool_slot_size >> 10);
	fprintf(tab, "gmem bench io: %s; calibration %.0f ms\n", sub, st.calib_ns / 1e6);
	fprintf(tab, "MB/s per path (1e6 B/s); auto/best = auto over the best fixed path;"
		" bnc/mc = bounce over memcpy\n");
	table_head(tab);
	ret = run_threads(&e, 1, cells, &ncells, tab, &v);
	if (!ret && o->threads > 1)
		ret = run_threads(&e, o->threads, cells, &ncells, tab, &v);
	if (ret)
		goto out;
	verdicts(tab, &v, o);
	if (o->plot) {
		ret = iob_plot_svg(o->plot, cells, ncells, sub);
		if (!ret)
			fprintf(tab, "  plot: %s\n", o->plot);
	}
out:
	env_close(&e);
	free(cells);
	return ret;
}

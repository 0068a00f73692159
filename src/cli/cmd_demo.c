// SPDX-License-Identifier: MIT
/*
 * cmd_demo.c - gmem demo: private guest memory at work, on the best backend
 * this host has.
 *
 * 1 GiB of private memory; a 64 MiB image loaded into it by host-driven
 * in-place conversion; scattered I/O-sized fragments shared inside huge
 * regions (splitting them), pinned, a pinned page refused when converted
 * back, unpinned, unshared (repairing the regions); a range discarded; then
 * the stats and the direct-map model. With --save FILE the memory, private
 * pages and all, is then saved as a snapshot (docs/snapshot-format.md).
 * With --restore FILE [--lazy] the demo's memory comes back from such a
 * snapshot instead, and is checked as the demo left it: every page
 * private, the discarded range zero, the rest of the image intact.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "cmd.h"

#define DEMO_SIZE       (1ull << 30)
#define DEMO_IMAGE_GPA  (16ull << 20)
#define DEMO_IMAGE_LEN  (64ull << 20)
#define DEMO_IO_BASE    (128ull << 20)
#define DEMO_FRAGMENTS  64
#define DEMO_DISCARD    (32ull << 20)

struct demo {
	struct gmem *g;
	uint64_t granule;       /* smallest convertible unit of this backing */
	bool inplace;           /* the kernel forbids mapping private pages */
	bool json;
	const char *save;       /* --save FILE, or NULL */
	unsigned save_flags;    /* --zstd, --zstd-all   */
	const char *restore;    /* --restore FILE, or NULL */
	bool lazy;              /* --restore through userfaultfd (GMEM_SNAP_LAZY) */
	bool backend_set;       /* --backend given: restore into it */
	json_t *steps;          /* JSON: one object per step */
	uint64_t frag_gpa[DEMO_FRAGMENTS];
	uint64_t frag_len[DEMO_FRAGMENTS];
};

static double demo_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static uint8_t demo_image_byte(uint64_t off)
{
	return (uint8_t)((off * 2654435761u) >> 13);
}

/* Report one step: a line of text, or an entry in the JSON steps array. */
static void demo_step(struct demo *d, const char *name, json_t *data, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void demo_step(struct demo *d, const char *name, json_t *data, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (!d->json) {
		printf("%-10s %s\n", name, line);
		json_decref(data);
		return;
	}
	if (!data)
		data = json_object();
	json_object_set_new(data, "step", json_string(name));
	json_object_set_new(data, "text", json_string(line));
	json_array_append_new(d->steps, data);
}

static int demo_fail(const char *what, int err)
{
	const char *why = gmem_last_error();

	return cli_fail("demo: %s: %s%s%s", what, gmem_strerror(err), why[0] ? ": " : "", why);
}

/* Load the image the way a VMM would with no guest help: share the range,
 * write it through the host view, make it private again. */
static int demo_load(struct demo *d)
{
	double t0 = demo_now_us(), t1;
	uint8_t *h;
	int ret;

	ret = gmem_convert(d->g, DEMO_IMAGE_GPA, DEMO_IMAGE_LEN, GMEM_SHARED, NULL);
	if (ret)
		return demo_fail("sharing the image range", ret);
	h = gmem_host(d->g, DEMO_IMAGE_GPA);
	for (uint64_t off = 0; off < DEMO_IMAGE_LEN; off++)
		h[off] = demo_image_byte(off);
	ret = gmem_convert(d->g, DEMO_IMAGE_GPA, DEMO_IMAGE_LEN, GMEM_PRIVATE, NULL);
	if (ret)
		return demo_fail("making the image private", ret);
	t1 = demo_now_us();
	demo_step(d, "load", json_pack("{s:I,s:I,s:f}", "gpa", (json_int_t)DEMO_IMAGE_GPA,
				       "bytes", (json_int_t)DEMO_IMAGE_LEN, "ms", (t1 - t0) / 1e3),
		  "%llu MiB image at gpa %#llx: share, write, make private in %.1f ms",
		  (unsigned long long)(DEMO_IMAGE_LEN >> 20), (unsigned long long)DEMO_IMAGE_GPA,
		  (t1 - t0) / 1e3);
	return CLI_EXIT_OK;
}

/*
 * Check bytes of private memory the way the hypervisor reaches them: through
 * temporary mappings. Where the kernel itself forbids mapping private pages
 * (in-place conversion), share the range for the check and make it private
 * again. @want(off) gives the expected byte at gpa + off.
 */
static int demo_check(struct demo *d, uint64_t gpa, uint64_t len, uint8_t (*want)(uint64_t),
		      const char *what)
{
	int ret;

	if (d->inplace) {
		const uint8_t *h = gmem_host(d->g, gpa);

		ret = gmem_convert(d->g, gpa, len, GMEM_SHARED, NULL);
		if (ret)
			return demo_fail("sharing a range to check it", ret);
		for (uint64_t off = 0; off < len; off += 4093)
			if (h[off] != want(off))
				return cli_fail("demo: %s: byte %#llx is %#x, want %#x", what,
						(unsigned long long)off, h[off], want(off));
		ret = gmem_convert(d->g, gpa, len, GMEM_PRIVATE, NULL);
		return ret ? demo_fail("making a checked range private", ret) : CLI_EXIT_OK;
	}
	for (uint64_t off = 0; off < len; off += 64 * 1024 + 4093) {
		const uint8_t *w = gmem_kmap(d->g, gpa + off);
		uint8_t got;

		if (!w)
			return demo_fail("temporary mapping", -errno);
		got = *w;
		gmem_kunmap(d->g, (void *)w);
		if (got != want(off))
			return cli_fail("demo: %s: byte %#llx is %#x, want %#x", what,
					(unsigned long long)off, got, want(off));
	}
	return CLI_EXIT_OK;
}

static int demo_verify_image(struct demo *d)
{
	int ret = demo_check(d, DEMO_IMAGE_GPA, DEMO_IMAGE_LEN, demo_image_byte,
			     "image lost");

	if (ret)
		return ret;
	demo_step(d, "verify", NULL, "image intact through %s; state of gpa %#llx: %s",
		  d->inplace ? "a brief in-place share" : "temporary mappings",
		  (unsigned long long)DEMO_IMAGE_GPA,
		  gmem_state(d->g, DEMO_IMAGE_GPA) == GMEM_SHARED ? "shared" : "private");
	return CLI_EXIT_OK;
}

/* Virtio-like buffers: 4 KiB to 64 KiB, one per 2 MiB region, at an offset
 * inside the region so every one of them splits a huge region. */
static int demo_share_fragments(struct demo *d)
{
	uint64_t x = 0x9e3779b97f4a7c15ull, bytes = 0;
	int ret;

	for (int i = 0; i < DEMO_FRAGMENTS; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		/* 4 KiB to 64 KiB at a page offset inside the region; with a 2 MiB
		 * granule (hugetlb) a fragment is its whole region. */
		d->frag_len[i] = d->granule > 4096 ? d->granule : (1 + x % 16) * 4096;
		d->frag_gpa[i] = DEMO_IO_BASE + (uint64_t)i * 3 * GMEM_REGION_SIZE +
				 (d->granule > 4096 ? 0 : ((x >> 20) % 400 + 8) * 4096);
		ret = gmem_convert(d->g, d->frag_gpa[i], d->frag_len[i], GMEM_SHARED, NULL);
		if (ret)
			return demo_fail("sharing a fragment", ret);
		memset(gmem_host(d->g, d->frag_gpa[i]), 0x40 + i, d->frag_len[i]);
		bytes += d->frag_len[i];
	}
	demo_step(d, "share", json_pack("{s:i,s:I}", "fragments", DEMO_FRAGMENTS, "bytes",
					(json_int_t)bytes),
		  "%d I/O fragments (%llu KiB) shared inside %d huge regions",
		  DEMO_FRAGMENTS, (unsigned long long)(bytes >> 10), DEMO_FRAGMENTS);
	return CLI_EXIT_OK;
}

static int demo_pin_and_refuse(struct demo *d)
{
	uint64_t busy = 0, target;
	int ret;

	for (int i = 0; i < DEMO_FRAGMENTS; i++) {
		ret = gmem_pin(d->g, d->frag_gpa[i], d->frag_len[i]);
		if (ret)
			return demo_fail("pinning a fragment", ret);
	}
	demo_step(d, "pin", NULL, "all %d fragments pinned for I/O", DEMO_FRAGMENTS);
	/* The device still holds the buffer: making it private must fail. */
	target = d->frag_gpa[7] - d->granule;
	ret = gmem_convert(d->g, target, d->frag_len[7] + 2 * d->granule, GMEM_PRIVATE, &busy);
	if (ret != -EAGAIN)
		return cli_fail("demo: converting a pinned page: got %d, want -EAGAIN", ret);
	demo_step(d, "refuse", json_pack("{s:I,s:I,s:i}", "gpa", (json_int_t)target,
					 "busy_gpa", (json_int_t)busy, "error", ret),
		  "making [%#llx, +%llu KiB) private refused: %s; first busy page %#llx",
		  (unsigned long long)target,
		  (unsigned long long)((d->frag_len[7] + 2 * d->granule) >> 10),
		  gmem_strerror(ret), (unsigned long long)busy);
	for (int i = 0; i < DEMO_FRAGMENTS; i++) {
		ret = gmem_unpin(d->g, d->frag_gpa[i], d->frag_len[i]);
		if (ret)
			return demo_fail("unpinning a fragment", ret);
	}
	demo_step(d, "unpin", NULL, "I/O done: all fragments unpinned");
	return CLI_EXIT_OK;
}

static int demo_unshare(struct demo *d)
{
	struct gmem_stats before, after;
	int ret;

	gmem_stats(d->g, &before);
	for (int i = 0; i < DEMO_FRAGMENTS; i++) {
		ret = gmem_convert(d->g, d->frag_gpa[i], d->frag_len[i], GMEM_PRIVATE, NULL);
		if (ret)
			return demo_fail("unsharing a fragment", ret);
	}
	gmem_stats(d->g, &after);
	demo_step(d, "unshare", json_pack("{s:I,s:I,s:I}", "regions_mixed_before",
					  (json_int_t)before.regions_mixed, "regions_mixed_after",
					  (json_int_t)after.regions_mixed, "regions_repaired",
					  (json_int_t)after.regions_repaired),
		  "fragments private again: mixed regions %llu -> %llu, %llu repaired, "
		  "host view %llu -> %llu mappings",
		  (unsigned long long)before.regions_mixed, (unsigned long long)after.regions_mixed,
		  (unsigned long long)after.regions_repaired,
		  (unsigned long long)before.view_mappings, (unsigned long long)after.view_mappings);
	return CLI_EXIT_OK;
}

/* A whole region shared and one page of it taken back: split, then repair. */
static int demo_split_repair(struct demo *d)
{
	uint64_t r = DEMO_SIZE - GMEM_REGION_SIZE;
	struct gmem_stats s0, s1;
	int ret;

	if (d->granule > 4096) {
		demo_step(d, "repair", NULL, "hugetlb backing: regions convert whole, never split");
		return CLI_EXIT_OK;
	}
	gmem_stats(d->g, &s0);
	ret = gmem_convert(d->g, r, GMEM_REGION_SIZE, GMEM_SHARED, NULL);
	if (!ret)
		ret = gmem_convert(d->g, r + 100 * 4096, 4096, GMEM_PRIVATE, NULL);
	if (!ret)
		ret = gmem_convert(d->g, r + 100 * 4096, 4096, GMEM_SHARED, NULL);
	if (!ret)
		ret = gmem_convert(d->g, r, GMEM_REGION_SIZE, GMEM_PRIVATE, NULL);
	if (ret)
		return demo_fail("split and repair of the last region", ret);
	gmem_stats(d->g, &s1);
	demo_step(d, "repair", json_pack("{s:I,s:I}", "split",
					 (json_int_t)(s1.regions_split - s0.regions_split),
					 "repaired",
					 (json_int_t)(s1.regions_repaired - s0.regions_repaired)),
		  "last region shared whole, one page taken back and returned: "
		  "%llu split, %llu repaired",
		  (unsigned long long)(s1.regions_split - s0.regions_split),
		  (unsigned long long)(s1.regions_repaired - s0.regions_repaired));
	return CLI_EXIT_OK;
}

static uint8_t demo_zero_byte(uint64_t off)
{
	(void)off;
	return 0;
}

static uint8_t demo_image_tail_byte(uint64_t off)
{
	return demo_image_byte(DEMO_DISCARD + off);
}

static int demo_discard(struct demo *d)
{
	int ret = gmem_discard(d->g, DEMO_IMAGE_GPA, DEMO_DISCARD);

	if (ret)
		return demo_fail("discarding", ret);
	ret = demo_check(d, DEMO_IMAGE_GPA, DEMO_DISCARD, demo_zero_byte,
			 "discarded memory not zero");
	if (!ret)
		ret = demo_check(d, DEMO_IMAGE_GPA + DEMO_DISCARD, DEMO_IMAGE_LEN - DEMO_DISCARD,
				 demo_image_tail_byte, "discard reached past its range");
	if (ret)
		return ret;
	demo_step(d, "discard", NULL,
		  "first %llu MiB of the image discarded: reads zero, still %s, rest intact",
		  (unsigned long long)(DEMO_DISCARD >> 20),
		  gmem_state(d->g, DEMO_IMAGE_GPA) ? "shared" : "private");
	return CLI_EXIT_OK;
}

/* Save the whole memory, states and contents, to --save FILE. */
static int demo_save(struct demo *d)
{
	struct cli_progress bar;
	struct gmem_snapshot_opts o = { .flags = d->save_flags, .progress = cli_progress_cb,
					.progress_ctx = &bar };
	struct gmem_snapshot_info in;
	double t0 = demo_now_us();
	int ret;

	cli_progress_init(&bar, "saving", d->json);
	ret = gmem_snapshot_save_ex(d->g, d->save, &o);
	cli_progress_end(&bar);
	if (ret)
		return demo_fail("saving the snapshot", ret);
	ret = gmem_snapshot_inspect(d->save, 0, NULL, &in);
	if (ret)
		return demo_fail("reading the snapshot back", ret);
	demo_step(d, "save", NULL, "%s: %llu MiB populated of %llu MiB, %llu state runs, "
		  "%.1f ms", d->save, (unsigned long long)(in.populated_bytes >> 20),
		  (unsigned long long)(in.size >> 20), (unsigned long long)in.runs,
		  (demo_now_us() - t0) / 1e3);
	return CLI_EXIT_OK;
}

static void demo_header(struct demo *d, json_t *out);

/* --restore FILE: the memory a `demo --save` left, from the snapshot. */
static int demo_restore(struct demo *d, const struct gmem_config *cfg, json_t *out)
{
	struct cli_progress bar;
	struct gmem_snapshot_opts o = {
		.flags = d->lazy ? GMEM_SNAP_LAZY : 0,
		.progress = cli_progress_cb, .progress_ctx = &bar,
	};
	struct gmem_snapshot_info in;
	double t0 = demo_now_us();
	int ret;

	ret = gmem_snapshot_inspect(d->restore, 0, NULL, &in);
	if (ret)
		return demo_fail("reading the snapshot", ret);
	if (in.size != DEMO_SIZE)
		return cli_fail("demo: %s holds %llu MiB, not the demo's %llu MiB", d->restore,
				(unsigned long long)(in.size >> 20),
				(unsigned long long)(DEMO_SIZE >> 20));
	cli_progress_init(&bar, "restoring", d->json);
	ret = gmem_snapshot_restore_ex(d->restore, d->backend_set ? cfg : NULL, &o, &d->g);
	cli_progress_end(&bar);
	if (ret)
		return demo_fail("restoring the snapshot", ret);
	demo_header(d, out);
	demo_step(d, "restore", NULL, "%s: %llu MiB populated of %llu MiB, %llu state runs, "
		  "%.1f ms%s", d->restore, (unsigned long long)(in.populated_bytes >> 20),
		  (unsigned long long)(in.size >> 20), (unsigned long long)in.runs,
		  (demo_now_us() - t0) / 1e3, d->lazy ? " (lazy: pages load on first touch)" : "");
	return CLI_EXIT_OK;
}

/* The restored memory is what the demo left: all private, the discarded
 * range zero, the rest of the image as loaded. */
static int demo_verify_restored(struct demo *d)
{
	struct gmem_snapshot_lazy_stats ls;
	struct gmem_stats st;
	double t0 = demo_now_us();
	int ret;

	ret = gmem_stats(d->g, &st);
	if (ret)
		return demo_fail("reading the stats", ret);
	if (st.shared_pages)
		return cli_fail("demo: restored memory has %llu shared pages; the demo leaves none",
				(unsigned long long)st.shared_pages);
	ret = demo_check(d, DEMO_IMAGE_GPA, DEMO_DISCARD, demo_zero_byte,
			 "restored discarded range not zero");
	if (!ret)
		ret = demo_check(d, DEMO_IMAGE_GPA + DEMO_DISCARD, DEMO_IMAGE_LEN - DEMO_DISCARD,
				 demo_image_tail_byte, "restored image differs");
	if (ret)
		return ret;
	if (!gmem_snapshot_lazy_stats(d->g, &ls) && ls.chunks)
		demo_step(d, "verify", NULL, "all pages private, discarded range zero, image "
			  "intact (%.1f ms); lazy: %llu of %llu chunks loaded so far, %llu on "
			  "access, %llu by the loader", (demo_now_us() - t0) / 1e3,
			  (unsigned long long)ls.chunks_loaded, (unsigned long long)ls.chunks,
			  (unsigned long long)(ls.by_fault + ls.by_access),
			  (unsigned long long)ls.by_loader);
	else
		demo_step(d, "verify", NULL, "all pages private, discarded range zero, image "
			  "intact (%.1f ms)", (demo_now_us() - t0) / 1e3);
	ret = gmem_snapshot_lazy_wait(d->g);
	return ret ? demo_fail("loading the rest of the snapshot", ret) : CLI_EXIT_OK;
}

static int demo_run(struct demo *d)
{
	int (*const steps[])(struct demo *) = {
		demo_load, demo_verify_image, demo_share_fragments, demo_pin_and_refuse,
		demo_unshare, demo_split_repair, demo_discard,
	};

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		int ret = steps[i](d);

		if (ret)
			return ret;
	}
	return d->save ? demo_save(d) : CLI_EXIT_OK;
}

static int demo_parse(int argc, char **argv, struct demo *d, struct gmem_config *cfg)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			d->json = true;
		} else if (!strcmp(argv[i], "--huge")) {
			cfg->flags |= GMEM_F_HUGE;
		} else if (!strcmp(argv[i], "--save") && i + 1 < argc) {
			d->save = argv[++i];
		} else if (!strcmp(argv[i], "--restore") && i + 1 < argc) {
			d->restore = argv[++i];
		} else if (!strcmp(argv[i], "--zstd")) {
			d->save_flags = GMEM_SNAP_COMPRESS;
		} else if (!strcmp(argv[i], "--zstd-all")) {
			d->save_flags = GMEM_SNAP_COMPRESS_ALL;
		} else if (!strcmp(argv[i], "--lazy")) {
			d->lazy = true;
		} else if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
			if (!cli_parse_backend(argv[++i], &cfg->backend))
				return cli_usage("demo", "unknown backend '%s'", argv[i]);
			d->backend_set = true;
		} else {
			return cli_usage("demo", "unknown option '%s'", argv[i]);
		}
	}
	if (d->lazy && !d->restore)
		return cli_usage("demo", "--lazy needs --restore FILE");
	if (d->save_flags && !d->save)
		return cli_usage("demo", "--zstd and --zstd-all need --save FILE");
	if (d->restore && (d->save || cfg->flags & GMEM_F_HUGE))
		return cli_usage("demo", "--restore FILE takes no --save or --huge");
	return CLI_EXIT_OK;
}

static void demo_header(struct demo *d, json_t *out)
{
	struct gmem_info in;

	gmem_info(d->g, &in);
	d->granule = in.granule;
	d->inplace = in.inplace;
	if (d->json) {
		json_object_set_new(out, "backend", json_string(gmem_backend_name(in.backend)));
		json_object_set_new(out, "huge", json_string(gmem_huge_name(in.huge)));
		json_object_set_new(out, "size", json_integer((json_int_t)in.size));
		json_object_set_new(out, "guest_memfd_flags", json_integer((json_int_t)in.gmem_flags));
		json_object_set_new(out, "inplace", json_boolean(in.inplace));
		json_object_set_new(out, "privacy", json_integer(in.privacy));
		return;
	}
	printf("gmem demo: %llu MiB of private guest memory on the %s backend "
	       "(%s pages%s%s)\n", (unsigned long long)(in.size >> 20),
	       gmem_backend_name(in.backend), gmem_huge_name(in.huge),
	       in.backend == GMEM_BACKEND_KVM ? ", guest_memfd" : "",
	       in.inplace ? ", kernel in-place conversion" : ", host-view enforcement");
	printf("privacy level: %s\n", cli_privacy(in.privacy));
}

int cmd_demo(int argc, char **argv)
{
	struct gmem_config cfg = { .size = DEMO_SIZE, .backend = GMEM_BACKEND_AUTO, .vm_fd = -1 };
	struct demo d = { 0 };
	struct gmem_stats st;
	json_t *out = NULL;
	int ret;

	ret = demo_parse(argc, argv, &d, &cfg);
	if (ret)
		return ret;
	if (d.json) {
		out = json_object();
		d.steps = json_array();
	}
	if (d.restore) {
		ret = demo_restore(&d, &cfg, out);
		if (!ret)
			ret = demo_verify_restored(&d);
		if (!d.g)
			goto out;
	} else {
		ret = gmem_open(&cfg, &d.g);
		if (ret) {
			ret = demo_fail("opening 1 GiB of guest memory", ret);
			goto out;
		}
		demo_header(&d, out);
		ret = demo_run(&d);
	}
	if (!ret && !gmem_stats(d.g, &st)) {
		if (d.json) {
			json_object_set_new(out, "steps", d.steps);
			json_object_set_new(out, "stats", cli_stats_json(&st));
			d.steps = NULL;
			ret = cli_json_print(out);
			out = NULL;
		} else {
			cli_stats_print(&st);
		}
	}
	gmem_close(d.g);
out:
	json_decref(d.steps);
	json_decref(out);
	return ret;
}

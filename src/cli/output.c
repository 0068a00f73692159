// SPDX-License-Identifier: MIT
/*
 * output.c - what every subcommand prints the same way: errors, aligned
 * "name value" rows, JSON, and the stats with the direct-map model.
 */
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"

int cli_fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cli_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return CLI_EXIT_FAIL;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s %s: ", cli_prog, cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try '%s help')\n", cli_prog);
	return CLI_EXIT_USAGE;
}

int cli_json_print(json_t *root)
{
	int ret = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	json_decref(root);
	if (ret)
		return cli_fail("cannot write JSON output");
	putchar('\n');
	return CLI_EXIT_OK;
}

void cli_row(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("  %-34s ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

const char *cli_privacy(int level)
{
	switch (level) {
	case GMEM_PRIVACY_KERNEL:
		return "kernel (private pages fault in every mapping)";
	case GMEM_PRIVACY_VIEW:
		return "view (the library keeps private pages out of the host view; "
		       "KVM's full view is guarded)";
	}
	return "unknown";
}

const char *cli_track(int how)
{
	switch (how) {
	case GMEM_TRACK_OFF:
		return "off";
	case GMEM_TRACK_PAGEMAP:
		return "pagemap (userfaultfd write-protect, asynchronous; PAGEMAP_SCAN)";
	case GMEM_TRACK_UFFD_SYNC:
		return "uffd-sync (userfaultfd write-protect served by a thread)";
	case GMEM_TRACK_NONE:
		return "none (nothing sees guest writes here: every save is full)";
	}
	return "unknown";
}

const char *cli_yes(int v)
{
	return v > 0 ? "yes" : "no";
}

bool cli_parse_backend(const char *s, enum gmem_backend *out)
{
	static const enum gmem_backend all[] = { GMEM_BACKEND_AUTO, GMEM_BACKEND_KVM,
						 GMEM_BACKEND_MEMFD };

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (!strcmp(s, gmem_backend_name(all[i]))) {
			*out = all[i];
			return true;
		}
	}
	return false;
}

/* One table drives both the text and the JSON form of the stats. */
#define STAT(f) { #f, offsetof(struct gmem_stats, f) }
static const struct { const char *name; size_t off; } cli_stat_fields[] = {
	STAT(size), STAT(shared_pages), STAT(private_pages), STAT(pinned_pages),
	STAT(kmapped_pages), STAT(conversions), STAT(pages_converted), STAT(refused),
	STAT(pins), STAT(kmaps), STAT(discards), STAT(view_syscalls), STAT(view_mappings),
	STAT(view_mapping_limit), STAT(regions), STAT(regions_mixed), STAT(regions_split),
	STAT(regions_repaired), STAT(collapse_failures), STAT(metadata_bytes),
};
#define DMAP(f) { #f, offsetof(struct gmem_dmap_model, f) }
static const struct { const char *name; size_t off; } cli_dmap_fields[] = {
	DMAP(removed_4k), DMAP(restored_4k), DMAP(removed_2m), DMAP(restored_2m),
	DMAP(splits_2m), DMAP(splits_1g), DMAP(merges_2m), DMAP(flushes_batched),
	DMAP(flushes_per_page),
};

static uint64_t cli_u64(const void *base, size_t off)
{
	uint64_t v;

	memcpy(&v, (const char *)base + off, sizeof(v));
	return v;
}

json_t *cli_stats_json(const struct gmem_stats *st)
{
	json_t *o = json_object(), *d = json_object();

	for (size_t i = 0; i < sizeof(cli_stat_fields) / sizeof(cli_stat_fields[0]); i++)
		json_object_set_new(o, cli_stat_fields[i].name,
				    json_integer((json_int_t)cli_u64(st, cli_stat_fields[i].off)));
	json_object_set_new(d, "kind", json_string(st->dmap_real ? "real" : "model"));
	json_object_set_new(d, "assumptions", json_string(gmem_dmap_assumptions()));
	for (size_t i = 0; i < sizeof(cli_dmap_fields) / sizeof(cli_dmap_fields[0]); i++)
		json_object_set_new(d, cli_dmap_fields[i].name,
				    json_integer((json_int_t)cli_u64(&st->dmap,
								     cli_dmap_fields[i].off)));
	json_object_set_new(o, "direct_map", d);
	return o;
}

void cli_stats_print(const struct gmem_stats *st)
{
	printf("stats\n");
	for (size_t i = 0; i < sizeof(cli_stat_fields) / sizeof(cli_stat_fields[0]); i++)
		cli_row(cli_stat_fields[i].name, "%llu",
			(unsigned long long)cli_u64(st, cli_stat_fields[i].off));
	printf("direct map (%s)\n", st->dmap_real
		? "REAL: the kernel removes private pages; counts below are the library's model"
		: "MODEL: what the kernel would do; it does not remove pages here");
	for (size_t i = 0; i < sizeof(cli_dmap_fields) / sizeof(cli_dmap_fields[0]); i++)
		cli_row(cli_dmap_fields[i].name, "%llu",
			(unsigned long long)cli_u64(&st->dmap, cli_dmap_fields[i].off));
	printf("  assumptions: %s\n", gmem_dmap_assumptions());
}

/* The progress bar of long operations (snapshot save, verify). */
void cli_progress_init(struct cli_progress *p, const char *what, bool quiet)
{
	p->what = what;
	p->on = !quiet && isatty(STDERR_FILENO);
	p->shown = -1;
}

void cli_progress_cb(void *ctx, uint64_t done, uint64_t total)
{
	struct cli_progress *p = ctx;
	const int width = 40;
	int permille, fill;
	char bar[64];

	if (!p->on || !total)
		return;
	permille = (int)(done * 1000 / total);
	/* Redraw only when the figure changes: a bar must not cost much. */
	if (permille == p->shown)
		return;
	p->shown = permille;
	fill = permille * width / 1000;
	memset(bar, '#', (size_t)fill);
	memset(bar + fill, '.', (size_t)(width - fill));
	bar[width] = 0;
	fprintf(stderr, "\r%-10s [%s] %5.1f%%  %llu/%llu MiB", p->what, bar,
		(double)permille / 10, (unsigned long long)(done >> 20),
		(unsigned long long)(total >> 20));
	fflush(stderr);
}

void cli_progress_end(struct cli_progress *p)
{
	if (p->on && p->shown >= 0)
		fprintf(stderr, "\r\033[K");
}

// SPDX-License-Identifier: MIT
/*
 * cmd_bench.c - gmem bench io: the I/O paths on private memory, measured
 * side by side (bench/io/iobench.c).
 *
 *   gmem bench io [--quick] [--json] [--plot FILE.svg] [--threads N]
 *                 [--dir read|write|both] [--target memory|file[:DIR]]
 *                 [--backend auto|kvm|memfd] [--slot BYTES]
 *
 * --slot sets the bounce pool's slot size (64 slots; default: the
 * library's, 64 KiB).
 *
 * With --json the JSON lines go to stdout and the table to stderr.
 */
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "iobench.h"

static int bench_io_usage(const char *fmt, const char *arg)
{
	char msg[160];

	snprintf(msg, sizeof(msg), fmt, arg);
	return cli_usage("bench io", "%s", msg);
}

static int bench_io_parse(int argc, char **argv, struct iob_opts *o)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(a, "--quick")) {
			o->quick = true;
		} else if (!strcmp(a, "--json")) {
			o->json = true;
		} else if (!strcmp(a, "--plot") && v) {
			o->plot = v;
			i++;
		} else if (!strcmp(a, "--threads") && v) {
			o->threads = (unsigned)atoi(v);
			if (o->threads < 1 || o->threads > 16)
				return bench_io_usage("--threads %s: 1 to 16", v);
			i++;
		} else if (!strcmp(a, "--dir") && v) {
			o->dirs = !strcmp(v, "read") ? 1 : !strcmp(v, "write") ? 2
				  : !strcmp(v, "both") ? 3 : 0;
			if (!o->dirs)
				return bench_io_usage("--dir %s: read, write or both", v);
			i++;
		} else if (!strcmp(a, "--target") && v) {
			if (!strcmp(v, "memory")) {
				o->target = IOB_MEMORY;
			} else if (!strncmp(v, "file", 4) && (!v[4] || v[4] == ':')) {
				o->target = IOB_FILE;
				if (v[4])
					o->file_dir = v + 5;
			} else {
				return bench_io_usage("--target %s: memory or file[:DIR]", v);
			}
			i++;
		} else if (!strcmp(a, "--slot") && v) {
			o->slot_size = (uint32_t)strtoul(v, NULL, 0);
			i++;
		} else if (!strcmp(a, "--backend") && v) {
			if (!cli_parse_backend(v, &o->backend))
				return bench_io_usage("--backend %s: auto, kvm or memfd", v);
			i++;
		} else {
			return bench_io_usage("unknown option or missing value: %s", a);
		}
	}
	return 0;
}

int cmd_bench(int argc, char **argv)
{
	struct iob_opts o = { .threads = 2, .dirs = 3, .target = IOB_MEMORY,
			      .file_dir = "/dev/shm", .backend = GMEM_BACKEND_AUTO };
	int ret;

	if (argc < 2 || strcmp(argv[1], "io"))
		return cli_usage("bench", "which benchmark? 'io'");
	ret = bench_io_parse(argc - 2, argv + 2, &o);
	if (ret)
		return ret;
	ret = iob_run(&o, o.json ? stderr : stdout);
	if (ret)
		return cli_fail("bench io: %s (%s)", gmem_strerror(ret), gmem_last_error());
	return CLI_EXIT_OK;
}

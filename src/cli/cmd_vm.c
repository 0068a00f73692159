// SPDX-License-Identifier: MIT
/*
 * cmd_vm.c - gmem vm: run a guest program on gmem memory with the micro-VMM
 * (src/vmm), print its console, exit with its status.
 *
 * Exit status: the guest's (0..255; a wider status is reported and becomes
 * 1), 1 with one line on stderr when KVM is unusable, the ELF is bad, or the
 * guest faults (then the registers and the exit reason follow), 2 on bad
 * usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cmd.h"
#include "pvblk.h"
#include "vmm.h"

#define VM_USAGE "[--cpus N] [--mem SIZE] [--policy convert|stop] [--disk FILE " \
		 "[--io-path auto|inplace|bounce|kmap]] [--verbose] GUEST.elf"

struct vm_opts {
	unsigned cpus;
	uint64_t mem;
	enum gv_fault_policy policy;
	bool verbose;
	const char *disk;       /* paravirtual block device image, or NULL */
	enum gmem_io_path io_path;
	bool io_path_set;
	const char *path;
};

static bool vm_parse_io_path(const char *s, enum gmem_io_path *out)
{
	for (unsigned p = 0; p < GMEM_IO_NPATHS; p++) {
		if (!strcmp(s, gmem_io_path_name((enum gmem_io_path)p))) {
			*out = (enum gmem_io_path)p;
			return true;
		}
	}
	return false;
}

/* "64M", "2G", "4194304": bytes. */
static bool vm_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *s == '-')
		return false;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B' && shift)
		end++;
	if (*end || v > (UINT64_MAX >> shift))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

static int vm_parse(int argc, char **argv, struct vm_opts *o)
{
	static const struct option longopts[] = {
		{ "cpus", required_argument, NULL, 'c' },
		{ "mem", required_argument, NULL, 'm' },
		{ "policy", required_argument, NULL, 'p' },
		{ "disk", required_argument, NULL, 'd' },
		{ "io-path", required_argument, NULL, 'i' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	*o = (struct vm_opts){ .cpus = 1, .mem = 4ull << 20, .policy = GV_POLICY_CONVERT,
			       .io_path = GMEM_IO_AUTO };
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+c:m:p:d:i:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			errno = 0;
			o->cpus = (unsigned)strtoul(optarg, &end, 10);
			if (errno || *end || o->cpus < 1 || o->cpus > GV_MAX_CPUS)
				return cli_usage("vm", "--cpus %s: want 1..%u", optarg,
						 GV_MAX_CPUS);
			break;
		case 'm':
			if (!vm_parse_size(optarg, &o->mem) || !o->mem ||
			    o->mem % GMEM_REGION_SIZE || o->mem > GV_MAP_LIMIT)
				return cli_usage("vm", "--mem %s: want a multiple of 2M, at most 4G",
						 optarg);
			break;
		case 'p':
			if (!strcmp(optarg, "convert"))
				o->policy = GV_POLICY_CONVERT;
			else if (!strcmp(optarg, "stop"))
				o->policy = GV_POLICY_STOP;
			else
				return cli_usage("vm", "--policy %s: want convert or stop", optarg);
			break;
		case 'd':
			o->disk = optarg;
			break;
		case 'i':
			if (!vm_parse_io_path(optarg, &o->io_path))
				return cli_usage("vm", "--io-path %s: want auto, inplace, bounce or kmap",
						 optarg);
			o->io_path_set = true;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'h':
			printf("usage: %s vm %s\n", cli_prog, VM_USAGE);
			return -1;
		default:
			return cli_usage("vm", "unknown option '%s'; usage: vm %s",
					 argv[optind - 1], VM_USAGE);
		}
	}
	if (optind != argc - 1)
		return cli_usage("vm", "want exactly one guest program; usage: vm %s", VM_USAGE);
	if (o->io_path_set && !o->disk)
		return cli_usage("vm", "--io-path needs --disk");
	o->path = argv[optind];
	return 0;
}

static void vm_console(void *ctx, const char *text, size_t len)
{
	(void)ctx;
	fwrite(text, 1, len, stdout);
	fflush(stdout);
}

static void vm_print_paths(struct gv_vm *vm, const struct vm_opts *o)
{
	struct gv_paths p;

	gv_vm_paths(vm, &p);
	fprintf(stderr, "vm: %u vCPU(s), %llu MiB of private gmem RAM on the kvm backend\n",
		o->cpus, (unsigned long long)(o->mem >> 20));
	fprintf(stderr, "vm: conversion path: %s\n", p.conversion);
	fprintf(stderr, "vm: direct-map removal: %s\n",
		p.dmap_removal ? "yes, by the kernel" : "no (the library models it)");
	fprintf(stderr, "vm: KVM_SET_MEMORY_ATTRIBUTES mirrored: %s\n",
		p.attributes ? "yes" : "no (the VM type has none, cap 233)");
	fprintf(stderr, "vm: memory-fault exits: %s\n",
		o->policy == GV_POLICY_CONVERT ? "convert and resume" : "stop the guest");
}

/* The disk: attached before the guest loads, reported with --verbose. */
static int vm_attach_disk(struct gv_vm *vm, const struct vm_opts *o, struct gv_blk **blk)
{
	struct gv_blk_config bc = { .image = o->disk, .io_path = o->io_path };
	struct gv_blk_stats bs;
	int ret;

	ret = gv_blk_attach(vm, &bc, blk);
	if (ret)
		return cli_fail("vm: %s", gv_last_error());
	if (o->verbose && !gv_blk_stats(*blk, &bs))
		fprintf(stderr, "vm: disk %s: %llu sectors on ports %#x-%#x, I/O path %s%s%s\n",
			o->disk, (unsigned long long)bs.sectors, GV_PORT_BLK,
			GV_PORT_BLK + GV_BLK_NPORTS - 1, gmem_io_path_name(o->io_path),
			o->io_path == GMEM_IO_AUTO ? " (calibrated)" : "",
			bs.direct ? ", O_DIRECT where aligned" : ", buffered");
	return 0;
}

static void vm_print_disk(struct gv_blk *blk)
{
	struct gv_blk_stats bs;

	if (gv_blk_stats(blk, &bs))
		return;
	fprintf(stderr, "vm: disk: %llu reads (%llu B), %llu writes (%llu B), %llu I/O errors, "
		"%llu refused, device status %d\n",
		(unsigned long long)bs.reads, (unsigned long long)bs.bytes_read,
		(unsigned long long)bs.writes, (unsigned long long)bs.bytes_written,
		(unsigned long long)bs.ioerrs, (unsigned long long)bs.badreqs, bs.status);
	fprintf(stderr, "vm: disk I/O by path: inplace %llu, bounce %llu, kmap %llu; "
		"%llu conversions by I/O\n",
		(unsigned long long)bs.io.requests[GMEM_IO_INPLACE],
		(unsigned long long)bs.io.requests[GMEM_IO_BOUNCE],
		(unsigned long long)bs.io.requests[GMEM_IO_KMAP],
		(unsigned long long)bs.io.conversions);
}

static double vm_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What the guest's end means for the exit status. */
static int vm_outcome(const struct gv_result *r)
{
	switch (r->why) {
	case GV_STOP_EXIT:
		if (r->status < 0 || r->status > 255) {
			cli_fail("vm: guest exit status %d does not fit an exit code", r->status);
			return CLI_EXIT_FAIL;
		}
		return r->status;
	case GV_STOP_HALT:
		return CLI_EXIT_OK;
	case GV_STOP_FAULT:
	case GV_STOP_ERROR:
	case GV_STOP_REQUESTED:
	case GV_STOP_NONE:
		break;
	}
	fflush(stdout);
	{
		/* First line is the reason; the registers follow. */
		const char *nl = strchr(r->report, '\n');
		int n = nl ? (int)(nl - r->report) : (int)strlen(r->report);

		cli_fail("vm: guest %s (exit %s): %.*s", r->why == GV_STOP_FAULT ? "faulted"
			 : "stopped", gv_exit_name(r->exit_reason), n, r->report);
		if (nl)
			fputs(nl + 1, stderr);
	}
	return CLI_EXIT_FAIL;
}

int cmd_vm(int argc, char **argv)
{
	struct gv_config cfg = { 0 };
	struct gv_result res;
	struct gv_blk *blk = NULL;
	struct gv_vm *vm;
	struct vm_opts o;
	double t0;
	int ret, status;

	ret = vm_parse(argc, argv, &o);
	if (ret)
		return ret < 0 ? CLI_EXIT_OK : ret;
	cfg.mem_size = o.mem;
	cfg.ncpus = o.cpus;
	cfg.policy = o.policy;
	cfg.console = vm_console;
	ret = gv_vm_create(&cfg, &vm);
	if (ret)
		return cli_fail("vm: %s", gv_last_error());
	if (o.verbose)
		vm_print_paths(vm, &o);
	if (o.disk) {
		status = vm_attach_disk(vm, &o, &blk);
		if (status)
			goto out;
	}
	ret = gv_vm_load_file(vm, o.path);
	if (ret) {
		status = cli_fail("vm: %s%s", gv_last_error(),
				  ret == -EFBIG ? "; try a larger --mem or fewer --cpus" : "");
		goto out;
	}
	t0 = vm_now();
	ret = gv_vm_run(vm, &res);
	if (ret) {
		status = cli_fail("vm: %s", gv_last_error());
		goto out;
	}
	status = vm_outcome(&res);
	if (o.verbose) {
		struct gmem_stats st;

		const char *nl = strchr(res.report, '\n');

		fprintf(stderr, "vm: guest ran %.3f s, stopped by %s: %.*s\n", vm_now() - t0,
			gv_stop_name(res.why),
			nl ? (int)(nl - res.report) : (int)strlen(res.report), res.report);
		if (blk)
			vm_print_disk(blk);
		if (!gmem_stats(gv_vm_gmem(vm), &st)) {
			fflush(stdout);
			printf("gmem stats after the run:\n");
			cli_stats_print(&st);
		}
	}
out:
	gv_vm_destroy(vm);
	return status;
}

// SPDX-License-Identifier: MIT
/*
 * cmd_vm.c - gmem vm: run a guest program on gmem memory with the micro-VMM
 * (src/vmm), print its console, exit with its status.
 *
 * With --save-at MS FILE the running guest is snapshotted MS milliseconds
 * after it starts (pause, save, resume: src/vmm/vmsnap.c) and runs on to its
 * end; --restore FILE runs a new VM from such a snapshot instead of an ELF.
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
#include "virtio/virtio_blk.h"
#include "vm_script.h"
#include "vmm.h"
#include "vmsnap.h"

#define VM_USAGE "[--accel kvm|user] [--cpus N] [--mem SIZE] [--policy convert|stop] " \
		 "[--virtio-disk FILE] [--io-path auto|inplace|bounce|kmap] " \
		 "[--save-at MS FILE [--zstd|--zstd-all] [--live]] [--key-file KEY] " \
		 "[--verbose] [--no-harden] " \
		 "GUEST.elf\n       vm --restore FILE [--lazy] [--key-file KEY] [--virtio-disk FILE] [--policy convert|stop] " \
		 "[--verbose]" \
		 "\n       vm --accel test --script FILE [--cpus N] [--mem SIZE] [--virtio-disk FILE ...] " \
		 "[--restore FILE] [GUEST.elf]"

struct vm_opts {
	unsigned cpus;
	uint64_t mem;
	enum gv_fault_policy policy;
	bool verbose;
	const char *vdisk;      /* virtio-blk image, or NULL                 */
	enum gmem_io_path io_path;
	bool io_path_set;
	const char *path;
	long save_at_ms;        /* --save-at: snapshot after this many ms, or -1 */
	const char *save;       /* its FILE                                      */
	unsigned save_flags;    /* --zstd, --zstd-all: GMEM_SNAP_COMPRESS(_ALL); */
				/* --live: GMEM_SNAP_LIVE                       */
	const char *restore;    /* --restore FILE: run that instead of an ELF   */
	bool lazy;              /* --lazy: restore through userfaultfd           */
	const char *key_file;   /* --key-file: seal the save, open the restore   */
	bool no_harden;         /* --no-harden: leave the process dumpable       */
	bool mem_set, cpus_set;
	enum gv_accel accel;    /* --accel kvm|test                              */
	const char *script;     /* --script FILE: the test accelerator's driver  */
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
		{ "virtio-disk", required_argument, NULL, 'V' },
		{ "io-path", required_argument, NULL, 'i' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "save-at", required_argument, NULL, 'S' },
		{ "restore", required_argument, NULL, 'R' },
		{ "lazy", no_argument, NULL, 'L' },
		{ "zstd", no_argument, NULL, 'z' },
		{ "zstd-all", no_argument, NULL, 'Z' },
		{ "live", no_argument, NULL, 'W' },
		{ "no-harden", no_argument, NULL, 'H' },
		{ "key-file", required_argument, NULL, 'K' },
		{ "accel", required_argument, NULL, 'A' },
		{ "script", required_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	*o = (struct vm_opts){ .cpus = 1, .mem = 4ull << 20, .policy = GV_POLICY_CONVERT,
			       .io_path = GMEM_IO_AUTO, .save_at_ms = -1 };
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+c:m:p:i:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			errno = 0;
			o->cpus = (unsigned)strtoul(optarg, &end, 10);
			if (errno || *end || o->cpus < 1 || o->cpus > GV_MAX_CPUS)
				return cli_usage("vm", "--cpus %s: want 1..%u", optarg,
						 GV_MAX_CPUS);
			o->cpus_set = true;
			break;
		case 'm':
			if (!vm_parse_size(optarg, &o->mem) || !o->mem ||
			    o->mem % GMEM_REGION_SIZE || o->mem > GV_MAP_LIMIT)
				return cli_usage("vm", "--mem %s: want a multiple of 2M, at most 4G",
						 optarg);
			o->mem_set = true;
			break;
		case 'p':
			if (!strcmp(optarg, "convert"))
				o->policy = GV_POLICY_CONVERT;
			else if (!strcmp(optarg, "stop"))
				o->policy = GV_POLICY_STOP;
			else
				return cli_usage("vm", "--policy %s: want convert or stop", optarg);
			break;
		case 'V':
			o->vdisk = optarg;
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
		case 'S':       /* --save-at MS FILE: FILE is the next word */
			errno = 0;
			o->save_at_ms = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || o->save_at_ms < 0 ||
			    optind >= argc)
				return cli_usage("vm", "--save-at %s: want MS (>= 0) and a FILE",
						 optarg);
			o->save = argv[optind++];
			break;
		case 'R':
			o->restore = optarg;
			break;
		case 'L':
			o->lazy = true;
			break;
		case 'W':
			o->save_flags |= GMEM_SNAP_LIVE;
			break;
		case 'z':
			o->save_flags = (o->save_flags & GMEM_SNAP_LIVE) | GMEM_SNAP_COMPRESS;
			break;
		case 'Z':
			o->save_flags = (o->save_flags & GMEM_SNAP_LIVE) | GMEM_SNAP_COMPRESS_ALL;
			break;
		case 'H':
			o->no_harden = true;
			break;
		case 'K':
			o->key_file = optarg;
			break;
		case 'A':
			if (!strcmp(optarg, "kvm"))
				o->accel = GV_ACCEL_KVM;
			else if (!strcmp(optarg, "test"))
				o->accel = GV_ACCEL_TEST;
			else if (!strcmp(optarg, "user"))
				o->accel = GV_ACCEL_USER;
			else
				return cli_usage("vm", "--accel %s: want kvm, test or user", optarg);
			break;
		case 'X':
			o->script = optarg;
			break;
		case 'h':
			printf("usage: %s vm %s\n", cli_prog, VM_USAGE);
			return -1;
		default:
			return cli_usage("vm", "unknown option '%s'; usage: vm %s",
					 argv[optind - 1], VM_USAGE);
		}
	}
	/* Nothing executes under the test accelerator: a script drives it. */
	if ((o->accel == GV_ACCEL_TEST) != !!o->script)
		return cli_usage("vm", o->script ? "--script needs --accel test"
						 : "--accel test needs --script FILE");
	if (o->script) {
		if (o->save || o->lazy || optind + 1 < argc ||
		    (o->restore && (optind != argc || o->mem_set || o->cpus_set)))
			return cli_usage("vm", "--script takes at most one guest program, no "
					 "--save-at or --lazy (use its save command), and with "
					 "--restore no program, --mem or --cpus");
		if (o->io_path_set && !o->vdisk)
			return cli_usage("vm", "--io-path needs --virtio-disk");
		o->path = optind < argc ? argv[optind] : NULL;
		return 0;
	}
	if (o->restore) {
		if (optind != argc || o->save || o->save_flags || o->mem_set || o->cpus_set)
			return cli_usage("vm", "--restore FILE takes no guest program, --save-at, "
					 "--mem or --cpus (they come from the snapshot)");
		return 0;
	}
	if (o->lazy)
		return cli_usage("vm", "--lazy needs --restore");
	if (o->key_file && !o->save)
		return cli_usage("vm", "--key-file needs --save-at MS FILE or --restore FILE");
	if (o->save_flags && !o->save)
		return cli_usage("vm", "--zstd, --zstd-all and --live need --save-at MS FILE");
	if (optind != argc - 1)
		return cli_usage("vm", "want exactly one guest program; usage: vm %s", VM_USAGE);
	if (o->io_path_set && !o->vdisk)
		return cli_usage("vm", "--io-path needs --virtio-disk");
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
	struct gmem_info in;
	struct gv_paths p;
	bool plain;

	gv_vm_paths(vm, &p);
	gmem_info(gv_vm_gmem(vm), &in);
	plain = in.backend != GMEM_BACKEND_KVM;
	fprintf(stderr, "vm: %u vCPU(s), %llu MiB of private gmem RAM on the %s backend%s\n",
		gv_vm_ncpus(vm), (unsigned long long)(gv_vm_mem_size(vm) >> 20),
		gmem_backend_name(in.backend),
		plain ? " (a plain memslot: KVM knows no private pages)" : "");
	fprintf(stderr, "vm: privacy level: %s; process %s\n", cli_privacy(in.privacy),
		o->no_harden ? "not hardened (--no-harden)"
			     : "hardened (not dumpable, not readable by other processes)");
	fprintf(stderr, "vm: conversion path: %s\n", p.conversion);
	fprintf(stderr, "vm: direct-map removal: %s\n",
		p.dmap_removal ? "yes, by the kernel" : "no (the library models it)");
	fprintf(stderr, "vm: KVM_SET_MEMORY_ATTRIBUTES mirrored: %s\n",
		p.attributes ? "yes, the I/O layer's conversions too" :
		plain ? "no (a plain memslot has none)" : "no (the VM type has none, cap 233)");
	fprintf(stderr, "vm: memory-fault exits: %s\n",
		plain ? "none can come (a plain memslot)"
		      : o->policy == GV_POLICY_CONVERT ? "convert and resume" : "stop the guest");
}

/* Conversions the I/O layer made, mirrored into KVM's attributes. */
static void vm_print_mirror(struct gv_vm *vm)
{
	struct gv_paths p;

	gv_vm_paths(vm, &p);
	if (p.attributes)
		fprintf(stderr, "vm: I/O-layer conversions mirrored to KVM: %llu, refused: %llu\n",
			(unsigned long long)p.io_mirrored, (unsigned long long)p.mirror_errors);
}

/* The virtio disk: attached before the guest starts (after a restore too:
 * the device takes the state the snapshot holds for it). */
static int vm_attach_vdisk(struct gv_vm *vm, const struct vm_opts *o, struct gv_vblk **vb)
{
	struct gv_vblk_config bc = { .image = o->vdisk, .io_path = o->io_path };
	struct gv_vblk_stats bs;

	if (gv_vblk_attach(vm, &bc, vb))
		return cli_fail("vm: virtio disk %s: %s", o->vdisk, gv_last_error());
	if (o->verbose && !gv_vblk_stats(*vb, &bs))
		fprintf(stderr, "vm: virtio disk %s: %llu sectors at MMIO %#llx, I/O path %s%s%s\n",
			o->vdisk, (unsigned long long)bs.sectors,
			(unsigned long long)GV_VIRTIO_MMIO_BASE, gmem_io_path_name(o->io_path),
			bs.direct ? ", O_DIRECT where aligned" : ", buffered",
			bs.status ? " (state from the snapshot)" : "");
	return 0;
}

static void vm_print_vdisk(struct gv_vblk *vb)
{
	struct gv_vblk_stats bs;

	if (gv_vblk_stats(vb, &bs))
		return;
	fprintf(stderr, "vm: virtio disk: %llu reads (%llu B), %llu writes (%llu B), %llu flushes, "
		"%llu I/O errors; status %#x%s, features %#llx, queue %u, %llu notifies "
		"(most served by one: %llu)\n",
		(unsigned long long)bs.reads, (unsigned long long)bs.bytes_read,
		(unsigned long long)bs.writes, (unsigned long long)bs.bytes_written,
		(unsigned long long)bs.flushes, (unsigned long long)bs.ioerrs, bs.status,
		bs.broken ? " NEEDS_RESET" : "", (unsigned long long)bs.features, bs.queue_num,
		(unsigned long long)bs.notifies, (unsigned long long)bs.max_notify);
	fprintf(stderr, "vm: virtio disk I/O by path: inplace %llu, bounce %llu, kmap %llu; "
		"%llu conversions by I/O\n",
		(unsigned long long)bs.io.requests[GMEM_IO_INPLACE],
		(unsigned long long)bs.io.requests[GMEM_IO_BOUNCE],
		(unsigned long long)bs.io.requests[GMEM_IO_KMAP],
		(unsigned long long)bs.io.conversions);
}

/* What the guest may hold of the VMM, and what it held (issue 13's
 * per-VM limits; the reasons are in gv_abi.h). */
static void vm_print_limits(struct gv_vm *vm, struct gv_vblk *vblk)
{
	struct gv_vblk_stats vs;
	struct gv_limits l;

	gv_vm_limits(vm, &l);
	fprintf(stderr, "vm: limits: DMA pins %u ranges of at most %llu KiB, %u pins each "
		"(held %u, peak %u, refused %llu)\n", l.dma_ranges,
		(unsigned long long)(l.dma_max_bytes >> 10), l.dma_pins_max, l.dma_ranges_held,
		l.dma_ranges_peak, (unsigned long long)l.dma_refused);
	fprintf(stderr, "vm: limits: host-view mappings %llu of this memory's %llu; "
		"HOSTIO at most %llu KiB, HOST_READ %llu B\n",
		(unsigned long long)l.view_mappings, (unsigned long long)l.view_mapping_budget,
		(unsigned long long)(l.hostio_max >> 10), (unsigned long long)l.host_read_max);
	if (vblk && !gv_vblk_stats(vblk, &vs))
		fprintf(stderr, "vm: limits: virtio queue %u of at most %u entries, requests of "
			"at most %u KiB in at most %u segments, one ring per notify (most served "
			"by one notify: %llu)\n", vs.queue_num, vs.queue_max, vs.size_max >> 10,
			vs.seg_max, (unsigned long long)vs.max_notify);
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

static void vm_sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* The --key-file key (key.c), from parsing until the save or restore
 * that uses it. */
static uint8_t *vm_key;

static void vm_key_drop(void)
{
	cli_key_free(vm_key);
	vm_key = NULL;
}

/* --save-at: start, wait, snapshot, let the guest run on; then wait. */
static int vm_run_saving(struct gv_vm *vm, const struct vm_opts *o, struct gv_result *res)
{
	double t;
	int ret = gv_vm_start(vm);

	if (ret)
		return ret;
	vm_sleep_ms(o->save_at_ms);
	t = vm_now();
	{
		const struct gmem_snapshot_opts so = { .flags = o->save_flags, .key = vm_key };

		ret = gv_vm_snapshot_save(vm, o->save, &so);
		vm_key_drop();  /* the library copied it */
	}
	if (ret) {
		fflush(stdout);
		cli_fail("vm: snapshot at %ld ms: %s", o->save_at_ms, gv_last_error());
	} else {
		fflush(stdout);
		fprintf(stderr, "vm: saved %s and %s%s at %ld ms (guest paused %.1f ms)\n",
			o->save, o->save, GV_SNAP_VM_SUFFIX, o->save_at_ms, (vm_now() - t) * 1e3);
	}
	if (gv_vm_wait(vm, res))
		return -EINVAL;         /* gv_vm_wait only fails when never started */
	return ret ? -EIO : 0;
}

static void vm_print_lazy(struct gv_vm *vm)
{
	struct gmem_snapshot_lazy_stats ls;

	if (gmem_snapshot_lazy_stats(gv_vm_gmem(vm), &ls) || !ls.chunks)
		return;
	fprintf(stderr, "vm: lazy restore: %llu of %llu chunks loaded (%llu by guest faults, "
		"%llu before host access, %llu by the loader), %llu faults served\n",
		(unsigned long long)ls.chunks_loaded, (unsigned long long)ls.chunks,
		(unsigned long long)ls.by_fault, (unsigned long long)ls.by_access,
		(unsigned long long)ls.by_loader, (unsigned long long)ls.faults);
}

/* --script: start the vCPUs, drive them line by line; a script that runs
 * to its end stops the guest (GV_STOP_REQUESTED is then success). */
static int vm_run_script(struct gv_vm *vm, const struct vm_opts *o, struct gv_result *res)
{
	bool stopped;
	int status;

	if (gv_vm_start(vm))
		return cli_fail("vm: %s", gv_last_error());
	status = vm_script_run(vm, o->script, &stopped);
	if (!stopped)
		gv_vm_stop(vm);
	gv_vm_wait(vm, res);
	if (!status && !stopped) {
		res->why = GV_STOP_HALT;        /* vm_outcome: success */
		snprintf(res->report, sizeof(res->report), "the script ran to its end");
	}
	return status;
}

/* --restore: a new VM from the snapshot; the guest carries on. */
static int vm_restore(const struct vm_opts *o, struct gv_config *cfg, struct gv_vm **vm)
{
	struct gmem_snapshot_opts so = { .flags = o->lazy ? GMEM_SNAP_LAZY : 0, .key = vm_key };
	double t = vm_now();
	int ret = gv_vm_snapshot_restore(cfg, o->restore, &so, vm);

	vm_key_drop();          /* the library copied it */
	if (ret)
		return cli_fail("vm: %s", gv_last_error());
	if (o->verbose)
		fprintf(stderr, "vm: restored %s%s in %.1f ms: %u vCPU(s), %llu MiB\n", o->restore,
			o->lazy ? " lazily" : "", (vm_now() - t) * 1e3, gv_vm_ncpus(*vm),
			(unsigned long long)(gv_vm_mem_size(*vm) >> 20));
	return 0;
}

int cmd_vm(int argc, char **argv)
{
	struct gv_config cfg = { 0 };
	struct gv_result res;
	struct gv_vblk *vblk = NULL;
	struct gv_vm *vm;
	struct vm_opts o;
	double t0;
	int ret, status;

	ret = vm_parse(argc, argv, &o);
	if (ret)
		return ret < 0 ? CLI_EXIT_OK : ret;
	/* The KVM view maps every private page in this process: keep other
	 * processes of this user, and core dumps, out of it. */
	if (!o.no_harden && (ret = gmem_harden_process(0)))
		return cli_fail("vm: %s", gmem_strerror(ret));
	if (o.key_file && cli_key_load(o.key_file, &vm_key))
		return CLI_EXIT_FAIL;
	cfg.mem_size = o.mem;
	cfg.ncpus = o.cpus;
	cfg.policy = o.policy;
	cfg.console = vm_console;
	cfg.accel = o.accel;
	if (o.accel == GV_ACCEL_USER)
		fprintf(stderr, "vm: user accelerator: the guest runs in this process with no "
			"isolation; for trusted test programs only\n");
	if (o.restore) {
		status = vm_restore(&o, &cfg, &vm);
		if (status)
			return status;
		if (o.vdisk && (status = vm_attach_vdisk(vm, &o, &vblk)))
			goto out;
		goto run;
	}
	ret = gv_vm_create(&cfg, &vm);
	if (ret) {
		vm_key_drop();
		return cli_fail("vm: %s", gv_last_error());
	}
	if (o.verbose)
		vm_print_paths(vm, &o);
	if (o.vdisk) {
		status = vm_attach_vdisk(vm, &o, &vblk);
		if (status)
			goto out;
	}
	ret = o.path ? gv_vm_load_file(vm, o.path) : 0;
	if (ret) {
		status = cli_fail("vm: %s%s", gv_last_error(),
				  ret == -EFBIG ? "; try a larger --mem or fewer --cpus" : "");
		goto out;
	}
run:
	t0 = vm_now();
	if (o.script) {
		status = vm_run_script(vm, &o, &res);
		if (status)
			goto out;
		ret = 0;
	} else {
		ret = o.save ? vm_run_saving(vm, &o, &res) : gv_vm_run(vm, &res);
	}
	if (ret == -EIO) {              /* the save failed (reported); the run did not */
		vm_outcome(&res);
		status = CLI_EXIT_FAIL;
		goto out;
	}
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
		if (vblk)
			vm_print_vdisk(vblk);
		vm_print_lazy(vm);
		vm_print_mirror(vm);
		vm_print_limits(vm, vblk);
		if (!gmem_stats(gv_vm_gmem(vm), &st)) {
			fflush(stdout);
			printf("gmem stats after the run:\n");
			cli_stats_print(&st);
		}
	}
out:
	vm_key_drop();
	gv_vm_destroy(vm);
	return status;
}

// SPDX-License-Identifier: MIT
/*
 * test_vm_snapshot.c - suite "vm_snapshot": snapshots of a running guest.
 *
 * The snapvm guest fills 64 KiB of private memory from a TSC seed and
 * verifies it pass after pass. The test saves it between two passes (pause,
 * save, resume), lets the original finish, then restores the snapshot into
 * a new VM, eagerly (guest_memfd) and lazily (memfd + userfaultfd, loader
 * held so that only the guest's own touches load pages): the guest carries
 * on from where it was and verifies its memory. A damaged or mismatched
 * PATH.vm is refused before any VM is made. Where KVM is missing the same
 * session runs on the test accelerator, a driver standing in for snapvm
 * (below), so the VM snapshot and its lazy restore are proven everywhere.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "internal.h"
#include "vmsnap.h"
#include "vt.h"

struct vs_dir {
	char dir[64], mem[96], vm[100];
};

static void vs_dir_make(struct vs_dir *d)
{
	snprintf(d->dir, sizeof(d->dir), "/tmp/gmem-vmsnap-XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir));
	snprintf(d->mem, sizeof(d->mem), "%s/guest.snap", d->dir);
	snprintf(d->vm, sizeof(d->vm), "%s.vm", d->mem);
}

static void vs_dir_remove(struct vs_dir *d)
{
	unlink(d->vm);
	unlink(d->mem);
	rmdir(d->dir);
}

/* ---- the session on the test accelerator ------------------------------
 *
 * Where KVM is missing a driver does what snapvm does, through the same
 * exits and the memslot's mapping: fills VS_WORDS words of private memory
 * from a seed, keeps the seed and the next pass in the vCPU's registers
 * (rbx, r12) as the guest keeps them in its own, verifies pass after pass
 * and prints the same lines. The snapshot then has to bring back memory,
 * states and registers for the restored session to verify anything; with
 * a lazy restore the driver's reads are the guest's touches.
 */
#define VS_WORDS    8192        /* as SNAPVM_WORDS */
#define VS_PASSES   12
#define VS_PATTERN  0x200000ull

static bool vs_on_kvm(void)
{
	return !th_kvm_device_unavailable();
}

static uint64_t vs_word(uint64_t seed, uint64_t i)
{
	uint64_t x = seed ^ (i * 0x9e3779b97f4a7c15ull);

	return x ^ (x >> 29);
}

/* A seed no earlier run or fresh VM holds, as snapvm draws from the TSC. */
static uint64_t vs_seed(void)
{
	uint64_t seed = 0;

	cr_assert_eq(getrandom(&seed, sizeof(seed), 0), (ssize_t)sizeof(seed));
	return seed | 1;
}

static void vs_print(struct gv_vm *vm, const char *fmt, ...)
{
	char line[128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	TH_EQ(gv_test_outs(vm, 0, GV_PORT_CONSOLE, 1, line, (uint32_t)n), 0);
}

/* rbx = seed, r12 = the next pass, set while the vCPU is out of the run. */
static void vs_keep_in_registers(struct gv_vm *vm, uint64_t seed, uint64_t next, bool running)
{
	struct gv_vcpu_state st;

	if (running)
		TH_EQ(gv_vm_pause(vm), 0);
	TH_EQ(gv_vcpu_get_state(vm, 0, &st), 0);
	st.regs.rbx = seed;
	st.regs.r12 = next;
	TH_EQ(gv_vcpu_set_state(vm, 0, &st), 0);
	if (running)
		TH_EQ(gv_vm_resume(vm), 0);
}

/* Passes @from..VS_PASSES over the pattern, then the exit. */
static const struct gmem_snapshot_opts *vs_save_opts;   /* NULL: a plain save */

static void vs_drive_passes(struct gv_vm *vm, uint64_t seed, int from, const char *save_at)
{
	static uint64_t got[VS_WORDS];

	for (int pass = from; pass <= VS_PASSES; pass++) {
		uint64_t bad = 0;

		TH_EQ(gv_test_mem_read(vm, VS_PATTERN, got, sizeof(got)), 0);
		for (uint64_t i = 0; i < VS_WORDS; i++)
			bad += got[i] != vs_word(seed, i);
		if (bad) {
			vs_print(vm, "snapvm: pass %d: %llu words differ\n", pass,
				 (unsigned long long)bad);
			TH_EQ(gv_test_out(vm, 0, GV_PORT_EXIT, 4, 1), 0);
			return;
		}
		vs_print(vm, "snapvm: pass %d ok\n", pass);
		vs_keep_in_registers(vm, seed, (uint64_t)pass + 1, true);
		if (pass == 1 && save_at) {
			int ret = gv_vm_snapshot_save(vm, save_at, vs_save_opts);

			cr_assert_eq(ret, 0, "save: %d: %s", ret, gv_last_error());
		}
	}
	vs_print(vm, "snapvm: verified %d passes\n", VS_PASSES);
	TH_EQ(gv_test_out(vm, 0, GV_PORT_EXIT, 4, 0), 0);
}

static void vs_drive_save(const char *path)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1, .policy = GV_POLICY_CONVERT,
				 .accel = GV_ACCEL_TEST };
	static uint64_t pattern[VS_WORDS];
	uint64_t seed = vs_seed();
	struct gv_result res;
	struct gv_vm *vm;

	cr_assert_eq(gv_vm_create(&cfg, &vm), 0, "%s", gv_last_error());
	vs_keep_in_registers(vm, seed, 1, false);
	cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
	for (uint64_t i = 0; i < VS_WORDS; i++)
		pattern[i] = vs_word(seed, i);
	TH_EQ(gv_test_mem_write(vm, VS_PATTERN, pattern, sizeof(pattern)), 0);
	TH_EQ(gmem_state(gv_vm_gmem(vm), VS_PATTERN), GMEM_PRIVATE);
	vs_print(vm, "snapvm: filled %zu KiB at %#llx\n", sizeof(pattern) >> 10, VS_PATTERN);
	vs_drive_passes(vm, seed, 1, path);
	cr_assert_eq(gv_vm_wait(vm, &res), 0);
	vt_expect_exit(vm, &res, 0);
	vt_console_has(vm, "snapvm: verified 12 passes\n");
	gv_vm_destroy(vm);
}

/* The restored session: what it knows comes from the snapshot's registers. */
static void vs_drive_restored(struct gv_vm *vm)
{
	struct gv_vcpu_state st;

	TH_EQ(gv_vcpu_get_state(vm, 0, &st), 0);
	cr_assert(st.regs.r12 == 2 && (st.regs.rbx & 1),
		  "registers after restore: rbx %#llx r12 %llu, want an odd seed and pass 2",
		  (unsigned long long)st.regs.rbx, (unsigned long long)st.regs.r12);
	cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
	vs_drive_passes(vm, st.regs.rbx, (int)st.regs.r12, NULL);
}

/* ---- the session under KVM, or driven ------------------------------------ */

/* Run snapvm, save it once its first pass is printed, let it finish. */
static void vs_save_running(const char *path)
{
	struct gv_vm *vm;
	struct gv_result res;
	int ret = -1;

	if (!vs_on_kvm()) {
		vs_drive_save(path);
		return;
	}
	vm = vt_vm("snapvm", 1, GV_POLICY_CONVERT);
	cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
	for (int i = 0; i < 20000 && ret; i++) {
		bool seen;

		gv_vm_pause(vm);
		seen = strstr(gv_vm_console(vm, NULL), "snapvm: pass 1 ok\n");
		gv_vm_resume(vm);
		if (seen) {
			ret = gv_vm_snapshot_save(vm, path, vs_save_opts);
			cr_assert_eq(ret, 0, "save: %d: %s", ret, gv_last_error());
		} else {
			usleep(1000);
		}
	}
	cr_assert_eq(ret, 0, "the guest never finished pass 1; console:\n%s",
		     gv_vm_console(vm, NULL));
	cr_assert_eq(gv_vm_wait(vm, &res), 0);
	vt_expect_exit(vm, &res, 0);
	vt_console_has(vm, "snapvm: verified 12 passes\n");
	gv_vm_destroy(vm);
}

static struct gv_config vs_restore_cfg(void)
{
	return (struct gv_config){ .policy = GV_POLICY_CONVERT,
				   .accel = vs_on_kvm() ? GV_ACCEL_KVM : GV_ACCEL_TEST };
}

static struct gv_vm *vs_restore(const char *path, unsigned flags)
{
	struct gv_config cfg = vs_restore_cfg();
	struct gmem_snapshot_opts o = { .flags = flags };
	struct gv_vm *vm = NULL;
	int ret = gv_vm_snapshot_restore(&cfg, path, &o, &vm);

	cr_assert_eq(ret, 0, "restore %s: %d: %s", path, ret, gv_last_error());
	return vm;
}

/* The restored guest finishes its passes and never starts over. */
static void vs_expect_carried_on(struct gv_vm *vm)
{
	struct gv_result res;

	if (vs_on_kvm()) {
		cr_assert_eq(gv_vm_run(vm, &res), 0, "%s", gv_last_error());
	} else {
		vs_drive_restored(vm);
		cr_assert_eq(gv_vm_wait(vm, &res), 0);
	}
	vt_expect_exit(vm, &res, 0);
	vt_console_has(vm, "snapvm: verified 12 passes\n");
	vt_console_has(vm, "snapvm: pass 12 ok\n");
	cr_assert_null(strstr(gv_vm_console(vm, NULL), "pass 1 ok"),
		       "the restored guest did pass 1 again; console:\n%s",
		       gv_vm_console(vm, NULL));
	cr_assert_null(strstr(gv_vm_console(vm, NULL), "filled"),
		       "the restored guest started over; console:\n%s", gv_vm_console(vm, NULL));
}

Test(vm_snapshot, guest_runs_on_in_a_new_vm)
{
	struct vs_dir d;
	struct gmem_info in;
	struct gmem_probe host;
	struct gv_vm *vm;

	vs_dir_make(&d);
	vs_save_running(d.mem);
	vm = vs_restore(d.mem, 0);
	gmem_info(gv_vm_gmem(vm), &in);
	gmem_probe(&host);
	TH_EQ(in.backend, host.auto_backend);   /* a guest_memfd where KVM has one */
	TH_EQ(gv_vm_ncpus(vm), 1);
	TH_EQ(gv_vm_mem_size(vm), VT_MEM);
	vs_expect_carried_on(vm);
	gv_vm_destroy(vm);
	/* The same snapshot restores again: nothing in it was consumed. */
	vm = vs_restore(d.mem, 0);
	vs_expect_carried_on(vm);
	gv_vm_destroy(vm);
	vs_dir_remove(&d);
}

/* GMEM_SNAP_LIVE: the vCPUs pause only while the start is fixed and run on
 * while the memory file is written (under KVM the guest goes on with its
 * passes meanwhile); the pair restores to that moment. */
Test(vm_snapshot, live_snapshot_guest_runs_on_in_a_new_vm)
{
	static const struct gmem_snapshot_opts live = { .flags = GMEM_SNAP_LIVE };
	struct vs_dir d;
	struct gv_vm *vm;

	vs_dir_make(&d);
	vs_save_opts = &live;
	vs_save_running(d.mem);
	vs_save_opts = NULL;
	vm = vs_restore(d.mem, 0);
	vs_expect_carried_on(vm);
	gv_vm_destroy(vm);
	vs_dir_remove(&d);
}

static int vs_no_pause(void *ctx, int pause)
{
	(void)ctx;
	(void)pause;
	abort();
}

/* The user accelerator writes guest memory through a window of its own. */
Test(vm_snapshot, live_snapshot_refused_where_writes_are_unseen)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1, .policy = GV_POLICY_CONVERT,
				 .accel = GV_ACCEL_USER };
	struct gmem_snapshot_opts o = { .flags = GMEM_SNAP_LIVE };
	struct vs_dir d;
	struct gv_vm *vm;
	int ret;

	vs_dir_make(&d);
	ret = gv_vm_create(&cfg, &vm);
	cr_assert_eq(ret, 0, "gv_vm_create(user): %d: %s", ret, gv_last_error());
	TH_EQ(gv_vm_snapshot_save(vm, d.mem, &o), -EOPNOTSUPP);
	cr_assert(strstr(gv_last_error(), "window"), "message: %s", gv_last_error());
	TH_EQ(access(d.mem, F_OK), -1);
	o.live_pause = vs_no_pause;
	TH_EQ(gv_vm_snapshot_save(vm, d.mem, &o), -EINVAL);
	gv_vm_destroy(vm);
	vs_dir_remove(&d);
}

Test(vm_snapshot, lazy_restore_loads_what_the_guest_touches)
{
	struct gmem_snapshot_lazy_stats st;
	struct vs_dir d;
	struct gv_vm *vm;

	vs_dir_make(&d);
	vs_save_running(d.mem);
	gm_lazy_hold(NULL, true);       /* only the guest's touches load */
	vm = vs_restore(d.mem, GMEM_SNAP_LAZY);
	gm_lazy_hold(NULL, false);
	vs_expect_carried_on(vm);
	cr_assert_eq(gmem_snapshot_lazy_stats(gv_vm_gmem(vm), &st), 0);
	cr_assert_gt(st.by_fault, 0, "faults %llu, chunks %llu/%llu",
		     (unsigned long long)st.faults, (unsigned long long)st.chunks_loaded,
		     (unsigned long long)st.chunks);
	/* Held, the loader loaded nothing: the guest ran on what it touched. */
	TH_EQ(st.by_loader, 0);
	gm_lazy_hold(gv_vm_gmem(vm), false);
	TH_EQ(gmem_snapshot_lazy_wait(gv_vm_gmem(vm)), 0);
	cr_assert_eq(gmem_snapshot_lazy_stats(gv_vm_gmem(vm), &st), 0);
	TH_EQ(st.chunks_loaded, st.chunks);
	gv_vm_destroy(vm);
	vs_dir_remove(&d);
}

Test(vm_snapshot, damaged_or_mismatched_vm_side_refused)
{
	struct gv_config cfg = vs_restore_cfg();
	struct vs_dir d;
	struct gv_vm *vm = NULL;
	char other[128];
	uint8_t byte;
	int fd;

	vs_dir_make(&d);
	vs_save_running(d.mem);
	/* One byte of a register flipped. */
	fd = open(d.vm, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &byte, 1, 64 + 128), 1);
	byte ^= 0x40;
	cr_assert_eq(pwrite(fd, &byte, 1, 64 + 128), 1);
	TH_EQ(gv_vm_snapshot_restore(&cfg, d.mem, NULL, &vm), -EINVAL);
	cr_assert(strstr(gv_last_error(), "checksum mismatch"), "message: %s", gv_last_error());
	byte ^= 0x40;
	cr_assert_eq(pwrite(fd, &byte, 1, 64 + 128), 1);
	close(fd);
	/* PATH.vm of another save of PATH. */
	snprintf(other, sizeof(other), "%s.keep", d.vm);
	cr_assert_eq(rename(d.vm, other), 0);
	vs_save_running(d.mem);
	cr_assert_eq(rename(other, d.vm), 0);
	TH_EQ(gv_vm_snapshot_restore(&cfg, d.mem, NULL, &vm), -EINVAL);
	cr_assert(strstr(gv_last_error(), "does not belong"), "message: %s", gv_last_error());
	/* No PATH.vm at all. */
	unlink(d.vm);
	TH_EQ(gv_vm_snapshot_restore(&cfg, d.mem, NULL, &vm), -ENOENT);
	cr_assert_null(vm);
	vs_dir_remove(&d);
}

/* ---- version 2 memory files, sealed PATH.vm --------------------------------
 *
 * These run on the test accelerator on every host: what they check is the
 * files, not guest instructions. A VM holds markers in a register, in an
 * XMM register and in a device's state; it is saved with a key (the memory
 * file is then version 2, sealed), or with its memory tracked (version 2,
 * unsealed), or tracked and incremental (version 2 with a PARENT chunk).
 */
#include <xxhash.h>

#define VS_REG_MARK "REGMARK!"                  /* 8 bytes: rbx           */
#define VS_XMM_MARK "XMMMARK-vcpu-fpu"          /* 16 bytes: xmm0         */
#define VS_DEV_MARK "DEVMARK-device-state-0123" /* the device's state     */
#define VS_DEV_BASE 0xd0000000ull

static const uint8_t vs_key[GMEM_SNAP_KEY_BYTES] = "vm-snapshot-test-key-0123456789";
static const uint8_t vs_other_key[GMEM_SNAP_KEY_BYTES] = "vm-snapshot-test-key-0123456780";

struct vs_dev {
	char loaded[64];
	int nloaded;
};

static int vs_dev_read(struct gv_vcpu *vcpu, uint64_t off, void *data, unsigned size, void *ctx)
{
	(void)vcpu, (void)off, (void)ctx;
	memset(data, 0, size);
	return 0;
}

static int vs_dev_write(struct gv_vcpu *vcpu, uint64_t off, const void *data, unsigned size,
			void *ctx)
{
	(void)vcpu, (void)off, (void)data, (void)size, (void)ctx;
	return 0;
}

static int vs_dev_save(void *ctx, void *buf, size_t cap)
{
	(void)ctx;
	cr_assert_geq(cap, sizeof(VS_DEV_MARK));
	memcpy(buf, VS_DEV_MARK, sizeof(VS_DEV_MARK));
	return (int)sizeof(VS_DEV_MARK);
}

static int vs_dev_load(void *ctx, const void *buf, size_t len)
{
	struct vs_dev *d = ctx;

	if (len > sizeof(d->loaded))
		return -EINVAL;
	memcpy(d->loaded, buf, len);
	d->nloaded++;
	return 0;
}

static void vs_add_dev(struct gv_vm *vm, struct vs_dev *d)
{
	struct gv_mmio_dev dev = { .name = "vsmark", .base = VS_DEV_BASE, .len = 0x1000,
				   .read = vs_dev_read, .write = vs_dev_write,
				   .save = vs_dev_save, .load = vs_dev_load, .ctx = d };

	cr_assert_eq(gv_vm_add_mmio(vm, &dev), 0, "%s", gv_last_error());
}

/* gv_config.open_mem: a memfd memory with its writes tracked (version 2). */
static int vs_open_tracked(void *ctx, int vm_fd, uint64_t size, struct gmem **out)
{
	struct gmem_config c = { .size = size, .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1,
				 .flags = GMEM_F_TRACK_WRITES };

	(void)ctx, (void)vm_fd;
	return gmem_open(&c, out);
}

static struct gv_config vs_test_cfg(void)
{
	return (struct gv_config){ .mem_size = VT_MEM, .ncpus = 1, .policy = GV_POLICY_CONVERT,
				   .accel = GV_ACCEL_TEST };
}

/* A VM (not started) holding the markers and a page of data. */
static struct gv_vm *vs_marker_vm(bool tracked, struct vs_dev *d)
{
	struct gv_config cfg = vs_test_cfg();
	static const uint8_t page[4096] = "a page of guest memory";
	struct gv_vcpu_state st;
	struct gv_vm *vm;

	if (tracked)
		cfg.open_mem = vs_open_tracked;
	cr_assert_eq(gv_vm_create(&cfg, &vm), 0, "%s", gv_last_error());
	TH_EQ(gv_vcpu_get_state(vm, 0, &st), 0);
	memcpy(&st.regs.rbx, VS_REG_MARK, 8);
	memcpy(st.fpu.xmm[0], VS_XMM_MARK, 16);
	TH_EQ(gv_vcpu_set_state(vm, 0, &st), 0);
	TH_EQ(gv_test_mem_write(vm, VS_PATTERN, page, sizeof(page)), 0);
	vs_add_dev(vm, d);
	return vm;
}

static void vs_save(struct gv_vm *vm, const char *path, const uint8_t *key, const char *parent)
{
	struct gmem_snapshot_opts o = { .key = key, .parent = parent };
	int ret = gv_vm_snapshot_save(vm, path, &o);

	cr_assert_eq(ret, 0, "save %s: %d: %s", path, ret, gv_last_error());
}

static int vs_restore_test(const char *path, const uint8_t *key, struct gv_vm **vm)
{
	struct gv_config cfg = vs_test_cfg();
	struct gmem_snapshot_opts o = { .key = key };

	*vm = NULL;
	return gv_vm_snapshot_restore(&cfg, path, &o, vm);
}

/* The restored VM holds the markers: registers, FPU, device state. */
static void vs_expect_markers(struct gv_vm *vm)
{
	struct gv_vcpu_state st;
	struct vs_dev d = { 0 };
	struct gv_result res;

	TH_EQ(gv_vcpu_get_state(vm, 0, &st), 0);
	cr_assert_eq(memcmp(&st.regs.rbx, VS_REG_MARK, 8), 0, "rbx %#llx",
		     (unsigned long long)st.regs.rbx);
	cr_assert_eq(memcmp(st.fpu.xmm[0], VS_XMM_MARK, 16), 0, "xmm0 not restored");
	vs_add_dev(vm, &d);
	TH_EQ(d.nloaded, 1);
	cr_assert_str_eq(d.loaded, VS_DEV_MARK);
	/* Every record claimed: the VM starts. */
	cr_assert_eq(gv_vm_start(vm), 0, "%s", gv_last_error());
	gv_vm_stop(vm);
	gv_vm_wait(vm, &res);
}

/* mem_tag as docs/snapshot-format.md defines it, computed here on its own:
 * version 2: the file header as stored; then (both versions) every chunk
 * header from header_size to END included, END's stored payload, footer. */
static uint64_t vs_doc_tag(const char *path, uint64_t *size)
{
	size_t len;
	uint8_t *f = vt_read(path, &len);
	uint16_t major;
	uint32_t hsize, stored;
	uint64_t end, pos, tag;
	XXH3_state_t *x = XXH3_createState();

	cr_assert(f && x && len > 64 + 48);
	memcpy(&major, f + 8, 2);
	memcpy(&hsize, f + 12, 4);
	memcpy(&end, f + len - 16, 8);
	TH_EQ(hsize, major == 2 ? 128 : 64);
	XXH3_64bits_reset(x);
	if (major == 2)
		XXH3_64bits_update(x, f, hsize);
	for (pos = hsize; pos <= end; pos += 32 + stored) {
		cr_assert_leq(pos + 32, len);
		XXH3_64bits_update(x, f + pos, 32);
		memcpy(&stored, f + pos + 20, 4);
	}
	TH_EQ(pos, len - 16);
	XXH3_64bits_update(x, f + end + 32, len - end - 32);
	tag = XXH3_64bits_digest(x);
	XXH3_freeState(x);
	free(f);
	*size = len;
	return tag;
}

static void vs_expect_doc_tag(const char *path, const char *vpath)
{
	uint64_t size, want = vs_doc_tag(path, &size), got_size, got;
	size_t len;
	uint8_t *v = vt_read(vpath, &len);

	cr_assert(v && len > 64);
	memcpy(&got_size, v + 32, 8);
	memcpy(&got, v + 40, 8);
	free(v);
	TH_EQ(got_size, size);
	cr_assert_eq(got, want, "%s: mem_tag %#llx, the documented tag of %s is %#llx", vpath,
		     (unsigned long long)got, path, (unsigned long long)want);
}

static uint16_t vs_u16_at(const char *path, off_t off)
{
	uint16_t v = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &v, sizeof(v), off), (ssize_t)sizeof(v));
	close(fd);
	return v;
}

Test(vm_snapshot, v2_memory_files_round_trip_and_carry_the_documented_tag)
{
	struct vs_dir d;
	struct vs_dev dev = { 0 };
	struct gv_vm *vm, *back;
	char child[128], child_vm[136];
	static const uint8_t more[4096] = "written after the first save";

	vs_dir_make(&d);
	/* Version 1 (neither key nor tracking): the tag as it always was. */
	vm = vs_marker_vm(false, &dev);
	vs_save(vm, d.mem, NULL, NULL);
	TH_EQ(vs_u16_at(d.mem, 8), 1);
	vs_expect_doc_tag(d.mem, d.vm);
	/* With a key: the memory file is version 2, sealed. */
	vs_save(vm, d.mem, vs_key, NULL);
	gv_vm_destroy(vm);
	TH_EQ(vs_u16_at(d.mem, 8), 2);
	vs_expect_doc_tag(d.mem, d.vm);
	cr_assert_eq(vs_restore_test(d.mem, vs_key, &back), 0, "%s", gv_last_error());
	vs_expect_markers(back);
	gv_vm_destroy(back);

	/* Tracked memory: version 2, unsealed; then an incremental file
	 * (PARENT chunk, CHANGED runs) over it. */
	vm = vs_marker_vm(true, &dev);
	vs_save(vm, d.mem, NULL, NULL);
	TH_EQ(vs_u16_at(d.mem, 8), 2);
	vs_expect_doc_tag(d.mem, d.vm);
	TH_EQ(gv_test_mem_write(vm, VS_PATTERN + 8192, more, sizeof(more)), 0);
	snprintf(child, sizeof(child), "%s/child.snap", d.dir);
	snprintf(child_vm, sizeof(child_vm), "%s.vm", child);
	vs_save(vm, child, NULL, d.mem);
	{
		struct gmem_info in;

		/* Where writes are tracked the child is incremental (flag
		 * PARENT, bit 1 at offset 20); elsewhere a full file. */
		gmem_info(gv_vm_gmem(vm), &in);
		if (in.track == GMEM_TRACK_PAGEMAP)
			cr_assert(vs_u16_at(child, 20) & 2, "%s is not incremental", child);
	}
	gv_vm_destroy(vm);
	TH_EQ(vs_u16_at(child, 8), 2);
	vs_expect_doc_tag(child, child_vm);
	cr_assert_eq(vs_restore_test(d.mem, NULL, &back), 0, "%s", gv_last_error());
	vs_expect_markers(back);
	gv_vm_destroy(back);
	cr_assert_eq(vs_restore_test(child, NULL, &back), 0, "%s", gv_last_error());
	vs_expect_markers(back);
	{
		uint8_t got[sizeof(more)];

		TH_EQ(gv_test_mem_read(back, VS_PATTERN + 8192, got, sizeof(got)), 0);
		cr_assert_eq(memcmp(got, more, sizeof(more)), 0, "the child's page");
	}
	gv_vm_destroy(back);
	unlink(child_vm);
	unlink(child);
	vs_dir_remove(&d);
}

/* Copy @from over @to. */
static void vs_copy(const char *from, const char *to)
{
	size_t len;
	uint8_t *b = vt_read(from, &len);
	int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	cr_assert(b && fd >= 0);
	cr_assert_eq(write(fd, b, len), (ssize_t)len);
	close(fd);
	free(b);
}

static void vs_patch(const char *path, off_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, buf, len, off), (ssize_t)len);
	close(fd);
}

Test(vm_snapshot, vm_side_with_another_or_damaged_v2_memory_refused)
{
	struct vs_dir d;
	struct vs_dev dev = { 0 };
	struct gv_vm *vm, *back;
	char other[128], other_vm[136], keep[136];
	uint32_t big = 0x7ffffff0;

	vs_dir_make(&d);
	snprintf(other, sizeof(other), "%s/other.snap", d.dir);
	snprintf(other_vm, sizeof(other_vm), "%s.vm", other);
	snprintf(keep, sizeof(keep), "%s.keep", d.mem);
	vm = vs_marker_vm(true, &dev);
	vs_save(vm, d.mem, NULL, NULL);
	vs_save(vm, other, NULL, NULL);         /* same memory, another file */
	gv_vm_destroy(vm);
	/* PATH.vm of the other save. */
	vs_copy(other_vm, d.vm);
	TH_EQ(vs_restore_test(d.mem, NULL, &back), -EINVAL);
	cr_assert_null(back);
	cr_assert(strstr(gv_last_error(), "does not belong"), "message: %s", gv_last_error());
	vs_copy(other, d.mem);                  /* the pair matches again */
	cr_assert_eq(vs_restore_test(d.mem, NULL, &back), 0, "%s", gv_last_error());
	gv_vm_destroy(back);
	vs_copy(d.mem, keep);
	/* The first chunk's stored_len beyond the end of the file. */
	vs_patch(d.mem, 128 + 20, &big, sizeof(big));
	TH_EQ(vs_restore_test(d.mem, NULL, &back), -EINVAL);
	cr_assert_null(back);
	cr_assert(strstr(gv_last_error(), d.mem), "message: %s", gv_last_error());
	/* A chunk's hash changed, END left as it was: its digest refuses it. */
	vs_copy(keep, d.mem);
	vs_patch(d.mem, 128 + 24, "\x5a", 1);
	TH_EQ(vs_restore_test(d.mem, NULL, &back), -EINVAL);
	cr_assert_null(back);
	cr_assert(strstr(gv_last_error(), "digest"), "message: %s", gv_last_error());
	/* A chunk's hash changed, END left as it was: its digest refuses it. */
	vs_copy(keep, d.mem);
	vs_patch(d.mem, 128 + 24, "\x5a", 1);
	TH_EQ(vs_restore_test(d.mem, NULL, &back), -EINVAL);
	cr_assert_null(back);
	cr_assert(strstr(gv_last_error(), "digest"), "message: %s", gv_last_error());
	/* A header_size no version has. */
	vs_copy(keep, d.mem);
	big = 4096;
	vs_patch(d.mem, 12, &big, sizeof(big));
	TH_EQ(vs_restore_test(d.mem, NULL, &back), -EINVAL);
	cr_assert_null(back);
	/* Too short to be a snapshot. */
	cr_assert_eq(truncate(d.mem, 100), 0);
	TH_EQ(vs_restore_test(d.mem, NULL, &back), -EINVAL);
	cr_assert_null(back);
	unlink(keep);
	unlink(other_vm);
	unlink(other);
	vs_dir_remove(&d);
}

/* Whether @needle occurs in the file at @path. */
static bool vs_file_has(const char *path, const char *needle, size_t n)
{
	size_t len;
	uint8_t *b = vt_read(path, &len);
	bool found = false;

	cr_assert_not_null(b);
	for (size_t i = 0; i + n <= len && !found; i++)
		found = !memcmp(b + i, needle, n);
	free(b);
	return found;
}

Test(vm_snapshot, sealed_vm_side_hides_vcpu_and_device_state)
{
	struct vs_dir d;
	struct vs_dev dev = { 0 };
	struct gv_vm *vm, *back;

	vs_dir_make(&d);
	/* Without a key the markers are there to find: the test can see them. */
	vm = vs_marker_vm(false, &dev);
	vs_save(vm, d.mem, NULL, NULL);
	cr_assert(vs_file_has(d.vm, VS_REG_MARK, 8));
	cr_assert(vs_file_has(d.vm, VS_XMM_MARK, 16));
	cr_assert(vs_file_has(d.vm, VS_DEV_MARK, sizeof(VS_DEV_MARK) - 1));
	/* With one, none of them. */
	vs_save(vm, d.mem, vs_key, NULL);
	gv_vm_destroy(vm);
	cr_assert_not(vs_file_has(d.vm, VS_REG_MARK, 8), "rbx in the clear in %s", d.vm);
	cr_assert_not(vs_file_has(d.vm, VS_XMM_MARK, 16), "xmm0 in the clear in %s", d.vm);
	cr_assert_not(vs_file_has(d.vm, VS_DEV_MARK, 8), "device state in the clear in %s",
		      d.vm);
	cr_assert_eq(vs_restore_test(d.mem, vs_key, &back), 0, "%s", gv_last_error());
	vs_expect_markers(back);
	gv_vm_destroy(back);
	vs_dir_remove(&d);
}

Test(vm_snapshot, sealed_vm_side_refuses_a_changed_byte_or_wrong_key)
{
	struct vs_dir d;
	struct vs_dev dev = { 0 };
	struct gv_vm *vm, *back;
	size_t len;
	uint8_t *orig;

	vs_dir_make(&d);
	vm = vs_marker_vm(false, &dev);
	vs_save(vm, d.mem, vs_key, NULL);
	orig = vt_read(d.vm, &len);
	cr_assert_not_null(orig);
	/* Wrong key, no key: refused before any VM is made. */
	TH_EQ(vs_restore_test(d.mem, vs_other_key, &back), -EBADMSG);
	cr_assert_null(back);
	cr_assert(strstr(gv_last_error(), d.vm), "message: %s", gv_last_error());
	TH_EQ(vs_restore_test(d.mem, NULL, &back), -ENOKEY);
	cr_assert_null(back);
	/* Every byte flipped in turn. */
	for (size_t i = 0; i < len; i++) {
		uint8_t b = orig[i] ^ 0x01;
		int ret;

		vs_patch(d.vm, (off_t)i, &b, 1);
		ret = vs_restore_test(d.mem, vs_key, &back);
		cr_assert_eq(ret, -EBADMSG, "byte %zu of %zu flipped: %d: %s", i, len, ret,
			     gv_last_error());
		cr_assert_null(back);
		vs_patch(d.vm, (off_t)i, orig + i, 1);
	}
	/* A byte of the sealed records, and one of the header (ncpus), changed
	 * with the file's checksum made to fit: the AEAD refuses. */
	for (size_t at = 0; at < 2; at++) {
		size_t i = at ? 16 : 64 + 24 + 40;
		uint8_t *b = malloc(len);
		uint64_t h;
		int fd;

		memcpy(b, orig, len);
		b[i] ^= 0x01;
		h = XXH3_64bits(b, len - 8);
		memcpy(b + len - 8, &h, 8);
		fd = open(d.vm, O_WRONLY | O_TRUNC | O_CLOEXEC);
		cr_assert_eq(write(fd, b, len), (ssize_t)len);
		close(fd);
		free(b);
		TH_EQ(vs_restore_test(d.mem, vs_key, &back), -EBADMSG);
		cr_assert_null(back);
	}
	vs_patch(d.vm, 0, orig, len);
	cr_assert_eq(vs_restore_test(d.mem, vs_key, &back), 0, "%s", gv_last_error());
	gv_vm_destroy(back);
	free(orig);
	/* A key for a VM side saved without one. */
	vs_save(vm, d.mem, NULL, NULL);
	gv_vm_destroy(vm);
	TH_EQ(vs_restore_test(d.mem, vs_key, &back), -EINVAL);
	cr_assert_null(back);
	vs_dir_remove(&d);
}

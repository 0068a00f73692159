// SPDX-License-Identifier: MIT
/*
 * test_vm_vdrv.c - the guests' virtio-blk driver (guests/virtio/vdrv.c),
 * the very code guests/vblk.c runs under KVM, run here on the test
 * accelerator: its platform is gv_test_mmio for the registers,
 * gv_test_mem_read/write for guest memory and gv_test_vmcall for
 * KVM_HC_MAP_GPA_RANGE, so every exit it causes goes through the dispatch
 * code a KVM exit reaches. A whole session with private data buffers, a
 * conversion in the middle, a snapshot in the middle, and the driver's
 * answers to a device that refuses or breaks.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>
#include <linux/kvm_para.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vdrv.h"
#include "virtio/virtio_blk.h"
#include "vmsnap.h"
#include "vt.h"

#define VD_RING   0x100000ull   /* the driver's shared page            */
#define VD_BUF    0x200000ull   /* private data buffers                */
#define VD_SECTS  4096u         /* a 2 MiB image                       */

struct vd {
	struct gv_vm *vm;
	struct gv_vblk *vb;
	struct gvd d;
	struct gvd_platform p;
	char image[64];
	unsigned exits;
};

static uint32_t vd_reg_read(void *ctx, uint32_t off)
{
	struct vd *t = ctx;
	uint32_t v = 0xdeadbeef;

	t->exits++;
	cr_assert_eq(gv_test_mmio(t->vm, 0, GV_VIRTIO_MMIO_BASE + off, false, &v, 4), 0,
		     "MMIO read %#x: %s", off, gv_last_error());
	return v;
}

static void vd_reg_write(void *ctx, uint32_t off, uint32_t v)
{
	struct vd *t = ctx;

	t->exits++;
	cr_assert_eq(gv_test_mmio(t->vm, 0, GV_VIRTIO_MMIO_BASE + off, true, &v, 4), 0,
		     "MMIO write %#x: %s", off, gv_last_error());
}

static void vd_mem_read(void *ctx, uint64_t gpa, void *buf, uint32_t len)
{
	struct vd *t = ctx;

	cr_assert_eq(gv_test_mem_read(t->vm, gpa, buf, len), 0);
}

static void vd_mem_write(void *ctx, uint64_t gpa, const void *buf, uint32_t len)
{
	struct vd *t = ctx;

	cr_assert_eq(gv_test_mem_write(t->vm, gpa, buf, len), 0);
}

static long vd_map(void *ctx, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	struct vd *t = ctx;
	uint64_t args[6] = { gpa, npages, attrs };
	int64_t res = 0x7777;

	t->exits++;
	cr_assert_eq(gv_test_vmcall(t->vm, 0, KVM_HC_MAP_GPA_RANGE, args, &res), 0);
	return (long)res;
}

static const struct gv_config vd_cfg = { .mem_size = VT_MEM, .ncpus = 1,
					 .policy = GV_POLICY_CONVERT, .accel = GV_ACCEL_TEST };

static void vd_attach(struct vd *t)
{
	struct gv_vblk_config bc = { .image = t->image, .io_path = GMEM_IO_AUTO };

	cr_assert_eq(gv_vblk_attach(t->vm, &bc, &t->vb), 0, "attach: %s", gv_last_error());
	cr_assert_eq(gv_vm_start(t->vm), 0, "start: %s", gv_last_error());
}

static void vd_boot(struct vd *t)
{
	int fd;

	memset(t, 0, sizeof(*t));
	snprintf(t->image, sizeof(t->image), "/tmp/gmem-vdrv-XXXXXX");
	fd = mkstemp(t->image);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, VD_SECTS * 512ull), 0);
	close(fd);
	t->p = (struct gvd_platform){ vd_reg_read, vd_reg_write, vd_mem_read, vd_mem_write,
				      vd_map, t };
	cr_assert_eq(gv_vm_create(&vd_cfg, &t->vm), 0, "%s", gv_last_error());
	vd_attach(t);
}

static void vd_teardown(struct vd *t)
{
	gv_vm_destroy(t->vm);
	unlink(t->image);
}

/* The 64-bit word at disk byte @off, as the guest program writes it. */
static uint64_t vd_pattern(uint64_t off)
{
	return (off ^ 0x676d656d2d766972ull) * 0x9e3779b97f4a7c15ull;
}

static void vd_fill(struct vd *t, uint64_t gpa, uint64_t disk_off, size_t len)
{
	uint64_t *w = malloc(len);

	cr_assert_not_null(w);
	for (size_t i = 0; i < len / 8; i++)
		w[i] = vd_pattern(disk_off + 8 * i);
	cr_assert_eq(gv_test_mem_write(t->vm, gpa, w, len), 0);
	free(w);
}

/* Guest memory at @gpa holds the pattern of disk bytes from @disk_off. */
static void vd_check(struct vd *t, uint64_t gpa, uint64_t disk_off, size_t len)
{
	uint64_t *w = malloc(len);

	cr_assert_not_null(w);
	cr_assert_eq(gv_test_mem_read(t->vm, gpa, w, len), 0);
	for (size_t i = 0; i < len / 8; i++)
		cr_assert_eq(w[i], vd_pattern(disk_off + 8 * i), "word %zu of %#llx: %#llx, want %#llx",
			     i, (unsigned long long)gpa, (unsigned long long)w[i],
			     (unsigned long long)vd_pattern(disk_off + 8 * i));
	free(w);
}

static void vd_expect_private(struct vd *t, uint64_t gpa, size_t len)
{
	for (uint64_t a = gpa & ~(TH_PAGE - 1); a < gpa + len; a += TH_PAGE)
		cr_assert_eq(gmem_state(gv_vm_gmem(t->vm), a), GMEM_PRIVATE, "page %#llx",
			     (unsigned long long)a);
}

/* The image holds the pattern over [@disk_off, +@len). */
static void vd_check_image(struct vd *t, uint64_t disk_off, size_t len)
{
	uint64_t *w = malloc(len);
	int fd = open(t->image, O_RDONLY);

	cr_assert(w && fd >= 0);
	TH_EQ(pread(fd, w, len, (off_t)disk_off), (ssize_t)len);
	for (size_t i = 0; i < len / 8; i++)
		cr_assert_eq(w[i], vd_pattern(disk_off + 8 * i), "image word %zu", i);
	close(fd);
	free(w);
}

Test(vdrv, the_guest_driver_runs_a_session_with_private_buffers)
{
	const struct gvd_seg w3[3] = { { VD_BUF, 1024 }, { VD_BUF + 0x3000, 4096 },
				       { VD_BUF + 0x5e00, 512 } };
	const struct gvd_seg r1[1] = { { VD_BUF + 0x10000 + 512, 5632 } };
	char id[GVD_ID_BYTES + 1];
	struct gv_vblk_stats bs;
	struct vd t;

	vd_boot(&t);
	TH_EQ(gvd_init(&t.d, &t.p, VD_RING), 0);
	TH_EQ(t.d.capacity, VD_SECTS);
	TH_EQ(t.d.num, GVD_QUEUE_MAX);
	TH_EQ(gmem_state(gv_vm_gmem(t.vm), VD_RING), GMEM_SHARED);    /* by MAP_GPA_RANGE */
	/* Three buffers gathered to sectors 8..18, read back as one. */
	vd_fill(&t, VD_BUF, 8 * 512, 1024);
	vd_fill(&t, VD_BUF + 0x3000, 8 * 512 + 1024, 4096);
	vd_fill(&t, VD_BUF + 0x5e00, 8 * 512 + 5120, 512);
	TH_EQ(gvd_rw(&t.d, 1, 8, w3, 3), 0);
	vd_check_image(&t, 8 * 512, 5632);
	TH_EQ(gvd_rw(&t.d, 0, 8, r1, 1), 0);
	vd_check(&t, VD_BUF + 0x10000 + 512, 8 * 512, 5632);
	vd_expect_private(&t, VD_BUF, 0x6000);
	vd_expect_private(&t, VD_BUF + 0x10000, 0x2000);
	/* The guest shares a buffer for a while, as set_memory_decrypted does. */
	TH_EQ(t.p.map_gpa_range(&t, VD_BUF + 0x20000, 2, 0), 0);
	{
		const struct gvd_seg s[1] = { { VD_BUF + 0x20000, 8192 } };

		TH_EQ(gvd_rw(&t.d, 0, 8, s, 1), 0);
		vd_check(&t, VD_BUF + 0x20000, 8 * 512, 5632);
		TH_EQ(gmem_state(gv_vm_gmem(t.vm), VD_BUF + 0x20000), GMEM_SHARED);
	}
	TH_EQ(t.p.map_gpa_range(&t, VD_BUF + 0x20000, 2, 1u << 4), 0);
	vd_expect_private(&t, VD_BUF + 0x20000, 8192);
	/* Flush, the serial, a type the device lacks, a read past the end. */
	TH_EQ(gvd_flush(&t.d), 0);
	TH_EQ(gvd_get_id(&t.d, id), 0);
	cr_assert_str_eq(id, "gmem-virtio-blk");
	TH_EQ(gvd_raw(&t.d, 11), GVD_ENOTSUP);
	{
		const struct gvd_seg s[1] = { { VD_BUF, 1024 } };

		TH_EQ(gvd_rw(&t.d, 0, VD_SECTS - 1, s, 1), GVD_EIO);
		/* The driver itself refuses what it cannot post. */
		TH_EQ(gvd_rw(&t.d, 0, 0, s, 0), GVD_EINVAL);
		TH_EQ(gvd_rw(&t.d, 0, 0, (const struct gvd_seg[]){ { VD_BUF, 100 } }, 1),
		      GVD_EINVAL);
		TH_EQ(gvd_rw(&t.d, 0, UINT64_MAX, s, 1), GVD_EINVAL);
	}
	cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
	TH_EQ(bs.writes, 1);
	TH_EQ(bs.reads, 2);     /* the one past the end is an I/O error */
	TH_EQ(bs.ioerrs, 1);
	TH_EQ(bs.broken, 0);
	TH_EQ(t.d.requests, 7);
	TH_EQ(th_stats(gv_vm_gmem(t.vm)).shared_pages, 1);            /* the ring page */
	TH_EQ(th_stats(gv_vm_gmem(t.vm)).pinned_pages, 0);
	cr_log_info("vdrv session: %u exits for %llu requests", t.exits,
		    (unsigned long long)t.d.requests);
	vd_teardown(&t);
}

/* A snapshot in the middle of the driver's session: after the restore
 * (the same image attached again) the driver carries on with its queue. */
Test(vdrv, the_guest_driver_carries_on_after_a_snapshot)
{
	const struct gvd_seg s[1] = { { VD_BUF, 8192 } };
	char mem[64] = "/tmp/gmem-vdrv-snap-XXXXXX", vmf[80];
	struct gv_config cfg = vd_cfg;
	struct vd t;
	int fd;

	vd_boot(&t);
	TH_EQ(gvd_init(&t.d, &t.p, VD_RING), 0);
	vd_fill(&t, VD_BUF, 100 * 512, 8192);
	TH_EQ(gvd_rw(&t.d, 1, 100, s, 1), 0);
	fd = mkstemp(mem);
	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(vmf, sizeof(vmf), "%s%s", mem, GV_SNAP_VM_SUFFIX);
	cr_assert_eq(gv_vm_snapshot_save(t.vm, mem, NULL), 0, "save: %s", gv_last_error());
	gv_vm_destroy(t.vm);

	cfg.mem_size = 0;
	cr_assert_eq(gv_vm_snapshot_restore(&cfg, mem, NULL, &t.vm), 0, "restore: %s",
		     gv_last_error());
	vd_attach(&t);
	/* The private buffer came back with its state; the queue goes on. */
	vd_expect_private(&t, VD_BUF, 8192);
	TH_EQ(gvd_rw(&t.d, 0, 100, (const struct gvd_seg[]){ { VD_BUF + 0x8000, 8192 } }, 1), 0);
	vd_check(&t, VD_BUF + 0x8000, 100 * 512, 8192);
	TH_EQ(t.d.used_seen, 2);
	vd_teardown(&t);
	unlink(mem);
	unlink(vmf);
}

/* What the driver says when the device will not do: a ring the guest made
 * private breaks the device (NEEDS_RESET), the driver reports -EIO and a
 * new gvd_init() recovers; a feature set without VERSION_1 is refused. */
Test(vdrv, the_guest_driver_reports_a_broken_device_and_recovers)
{
	const struct gvd_seg s[1] = { { VD_BUF, 512 } };
	struct vd t;

	vd_boot(&t);
	TH_EQ(gvd_init(&t.d, &t.p, VD_RING + 8), GVD_EINVAL);          /* not a page */
	TH_EQ(gvd_rw(&t.d, 0, 0, s, 1), GVD_EINVAL);                    /* not set up */
	TH_EQ(gvd_init(&t.d, &t.p, VD_RING), 0);
	TH_EQ(t.p.map_gpa_range(&t, VD_RING, 1, 1u << 4), 0);
	TH_EQ(gvd_rw(&t.d, 0, 0, s, 1), GVD_EIO);
	TH_EQ(gvd_init(&t.d, &t.p, VD_RING), 0);
	TH_EQ(gvd_rw(&t.d, 0, 0, s, 1), 0);
	/* A ring page outside RAM cannot be shared: nothing is left live. */
	TH_EQ(gvd_init(&t.d, &t.p, VT_MEM), GVD_EIO);
	TH_EQ(vd_reg_read(&t, 0x070), 0);                               /* Status */
	vd_teardown(&t);
}

/* The same driver inside a guest, under KVM, on the image at t->image;
 * false when the guest did not finish within @secs (stopped then). */
struct vd_watch {
	struct gv_vm *vm;
	unsigned secs;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done, fired;
};

static void *vd_watchdog(void *arg)
{
	struct vd_watch *w = arg;
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += w->secs;
	pthread_mutex_lock(&w->mu);
	while (!w->done && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0)
		;
	if (!w->done) {
		w->fired = true;
		gv_vm_stop(w->vm);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static bool vd_run_guest(struct vd *t, const char *name, unsigned secs, struct gv_result *res)
{
	struct gv_vblk_config bc = { .io_path = GMEM_IO_AUTO, .image = t->image };
	struct vd_watch w = { .secs = secs, .mu = PTHREAD_MUTEX_INITIALIZER,
			      .cv = PTHREAD_COND_INITIALIZER };
	pthread_t th;
	int fd;

	snprintf(t->image, sizeof(t->image), "/tmp/gmem-vdrv-XXXXXX");
	fd = mkstemp(t->image);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, VD_SECTS * 512ull), 0);
	close(fd);
	t->vm = vt_vm(name, 1, GV_POLICY_CONVERT);
	w.vm = t->vm;
	cr_assert_eq(gv_vblk_attach(t->vm, &bc, &t->vb), 0, "attach: %s", gv_last_error());
	cr_assert_eq(gv_vm_start(t->vm), 0, "start: %s", gv_last_error());
	cr_assert_eq(pthread_create(&th, NULL, vd_watchdog, &w), 0);
	cr_assert_eq(gv_vm_wait(t->vm, res), 0);
	pthread_mutex_lock(&w.mu);
	w.done = true;
	pthread_cond_signal(&w.cv);
	pthread_mutex_unlock(&w.mu);
	pthread_join(th, NULL);
	return !w.fired;
}

static void vd_expect_session(struct vd *t, const struct gv_result *res)
{
	struct gv_vblk_stats bs;

	vt_expect_exit(t->vm, res, 0);
	vt_console_has(t->vm, "ok   a read past the end fails");
	vd_check_image(t, 8 * 512, 5632);
	cr_assert_eq(gv_vblk_stats(t->vb, &bs), 0);
	TH_EQ(bs.writes, 1);
	TH_EQ(bs.reads, 2);
	TH_EQ(bs.broken, 0);
	TH_EQ(bs.features & (1ull << 32), 1ull << 32);
	TH_EQ(th_stats(gv_vm_gmem(t->vm)).shared_pages, 1);           /* the ring page */
}

/* guests/vblk.c under KVM: MMIO exits into the device, conversions by the
 * port hypercalls, the data buffers private throughout. */
Test(vdrv, the_vblk_guest_runs_its_session_under_kvm)
{
	struct gv_result res;
	struct vd t = { 0 };

	cr_assert(vd_run_guest(&t, "vblk", 60, &res), "the guest did not finish in 60 s");
	vd_expect_session(&t, &res);
	vd_teardown(&t);
}

/* guests/vblk.c built to convert the Linux way: KVM_HC_MAP_GPA_RANGE by
 * vmcall. Some KVMs never return from vmcall (kvm-pvm here: the vCPU
 * spins in KVM_RUN); the watchdog stops the guest and the test says so. */
Test(vdrv, the_vblk_guest_converts_by_map_gpa_range_under_kvm)
{
	struct gv_paths paths;
	struct gv_result res;
	struct vd t = { 0 };
	bool finished;

	finished = vd_run_guest(&t, "vblk-gpa", 10, &res);
	gv_vm_paths(t.vm, &paths);
	if (!finished) {
		vd_teardown(&t);
		cr_skip_test("kvm: vmcall did not return within 10 s (KVM_CAP_EXIT_HYPERCALL "
			     "%s); the same driver converts by MAP_GPA_RANGE on the test "
			     "accelerator (the_guest_driver_runs_a_session_with_private_buffers)",
			     paths.map_gpa_range ? "enabled" : "absent");
	}
	vd_expect_session(&t, &res);
	cr_assert_geq(paths.map_gpa_ranges, 3, "conversions by MAP_GPA_RANGE: %llu",
		      (unsigned long long)paths.map_gpa_ranges);
	vd_teardown(&t);
}

/* The CLI's accelerator option: KVM where it is, else the user one. */
static const char *vd_accel(void)
{
	return vt_exec_accel() == GV_ACCEL_USER ? "--accel user" : "";
}

/* Run @cmd; its exit status, its stdout+stderr in @out. */
static int vd_sh(const char *cmd, char *out, size_t size)
{
	FILE *p = popen(cmd, "r");
	size_t n;
	int st;

	cr_assert_not_null(p, "%s", cmd);
	n = fread(out, 1, size - 1, p);
	out[n] = '\0';
	st = pclose(p);
	cr_assert(WIFEXITED(st), "%s: did not exit (%#x)", cmd, st);
	return WEXITSTATUS(st);
}

/* The CLI runs the vblk guest on a virtio disk (gmem vm --virtio-disk). */
Test(vdrv, cli_runs_the_vblk_guest_on_a_virtio_disk)
{
	char cmd[512], out[16384], image[] = "/tmp/gmem-vdrv-cli-XXXXXX";
	int fd, st;
	size_t n;
	FILE *p;

	fd = mkstemp(image);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, VD_SECTS * 512ull), 0);
	close(fd);
	snprintf(cmd, sizeof(cmd), "timeout 60 %s vm %s --verbose --virtio-disk %s %s 2>&1",
		 GMEM_CLI, vd_accel(), image, vt_guest_path("vblk"));
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	st = pclose(p);
	unlink(image);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status %#x\n%s", cmd, st, out);
	cr_assert(strstr(out, "vm: virtio disk: 2 reads (13824 B), 1 writes (5632 B)"),
		  "output:\n%s", out);
	cr_assert_null(strstr(out, "FAIL"), "output:\n%s", out);
}

/* Under KVM: the vblk guest saved in the middle of its session (CLI
 * --save-at), restored with the same image: the device takes its state and
 * the guest finishes every check. Restored without the disk, the VM does
 * not start and says why in one line. */
static void vd_cli_snapshot(const char *save_flags)
{
	char cmd[1024], out[16384], image[] = "/tmp/gmem-vdrv-snap-XXXXXX", snap[80];
	struct vd t = { 0 };
	int fd;

	fd = mkstemp(image);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, VD_SECTS * 512ull), 0);
	close(fd);
	snprintf(snap, sizeof(snap), "%s.snap", image);
	snprintf(cmd, sizeof(cmd), "timeout 60 %s vm %s --virtio-disk %s --save-at 0 %s %s %s 2>&1",
		 GMEM_CLI, vd_accel(), image, snap, save_flags, vt_guest_path("vblk"));
	if (vd_sh(cmd, out, sizeof(out)) && strstr(out, "has stopped already")) {
		unlink(image);
		cr_skip_test("the guest ended before the save could pause it (a fast KVM)");
	}
	cr_assert(strstr(out, "vm: saved "), "output:\n%s", out);
	snprintf(cmd, sizeof(cmd), "timeout 60 %s vm %s --restore %s --virtio-disk %s 2>&1",
		 GMEM_CLI, vd_accel(), snap, image);
	TH_EQ(vd_sh(cmd, out, sizeof(out)), 0);
	cr_assert(strstr(out, "ok   a read past the end fails"), "output:\n%s", out);
	cr_assert_null(strstr(out, "FAIL"), "output:\n%s", out);
	snprintf(t.image, sizeof(t.image), "%s", image);
	vd_check_image(&t, 8 * 512, 5632);
	snprintf(cmd, sizeof(cmd), "timeout 60 %s vm %s --restore %s 2>&1", GMEM_CLI,
		 vd_accel(), snap);
	TH_EQ(vd_sh(cmd, out, sizeof(out)), 1);
	cr_assert(strstr(out, "virtio-blk") && strstr(out, "add the device first"),
		  "output:\n%s", out);
	unlink(image);
	unlink(snap);
	strcat(snap, GV_SNAP_VM_SUFFIX);
	unlink(snap);
}

Test(vdrv, cli_snapshot_in_the_middle_of_the_vblk_guest)
{
	vd_cli_snapshot("");
}

/* The same with --live: the vCPUs run on, and the device goes on moving
 * data into guest memory, while the file is written. The user accelerator
 * (no KVM) writes through a window of its own: refused there. */
Test(vdrv, cli_live_snapshot_in_the_middle_of_the_vblk_guest)
{
	char cmd[1024], out[16384], snap[] = "/tmp/gmem-vdrv-live-XXXXXX";
	int fd;

	if (!strcmp(vd_accel(), "")) {
		vd_cli_snapshot("--live");
		return;
	}
	fd = mkstemp(snap);
	cr_assert_geq(fd, 0);
	close(fd);
	unlink(snap);
	snprintf(cmd, sizeof(cmd), "timeout 60 %s vm %s --save-at 0 %s --live %s 2>&1",
		 GMEM_CLI, vd_accel(), snap, vt_guest_path("hello"));
	TH_EQ(vd_sh(cmd, out, sizeof(out)) != 0, 1);
	cr_assert(strstr(out, "window"), "output:\n%s", out);
	TH_EQ(access(snap, F_OK), -1);
}

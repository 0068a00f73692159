// SPDX-License-Identifier: MIT
/*
 * test_vm_virtio.c - virtio-blk over virtio-mmio, driven on the test
 * accelerator by a small virtio driver written here (no instruction runs,
 * so this runs on every host): feature negotiation, queue set-up, requests
 * whose data stays private, conversions by KVM_HC_MAP_GPA_RANGE in the
 * middle, and every rule a hostile driver can break.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm_para.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <xxhash.h>

#include "virtio/virtio.h"
#include "virtio/virtio_blk.h"
#include "vmsnap.h"
#include "vt.h"

#define VV_BASE   GV_VIRTIO_MMIO_BASE
#define VV_QN     16u
#define VV_RING   0x100000ull           /* shared page: the three rings    */
#define VV_DESC   VV_RING
#define VV_AVAIL  (VV_RING + 0x100)
#define VV_USED   (VV_RING + 0x200)
#define VV_HDR    (VV_RING + 0x800)     /* request header, then status     */
#define VV_STATUS (VV_HDR + 16)
#define VV_ID     (VV_RING + 0x900)     /* GET_ID answer                   */
#define VV_BUF    0x240000ull           /* private data buffers            */
#define VV_SECTS  2048u                 /* a 1 MiB image                   */
#define VV_ENC    (1ull << 4)           /* KVM_MAP_GPA_RANGE_ENCRYPTED     */

#define VV_WANT (1ull << GV_VIO_F_VERSION_1 | 1ull << GV_VBLK_F_FLUSH | \
		 1ull << GV_VBLK_F_SEG_MAX)

struct vv {
	struct gv_vm *vm;
	struct gv_vblk *vb;
	char image[64];
	uint16_t avail;
};

static uint32_t vv_r(struct vv *t, uint64_t off)
{
	uint32_t v = 0xdeadbeef;

	cr_assert_eq(gv_test_mmio(t->vm, 0, VV_BASE + off, false, &v, 4), 0,
		     "MMIO read %#llx: %s", (unsigned long long)off, gv_last_error());
	return v;
}

static void vv_w(struct vv *t, uint64_t off, uint32_t v)
{
	cr_assert_eq(gv_test_mmio(t->vm, 0, VV_BASE + off, true, &v, 4), 0,
		     "MMIO write %#llx: %s", (unsigned long long)off, gv_last_error());
}

static int64_t vv_map(struct vv *t, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	uint64_t args[6] = { gpa, npages, attrs };
	int64_t res = 0x7777;

	cr_assert_eq(gv_test_vmcall(t->vm, 0, KVM_HC_MAP_GPA_RANGE, args, &res), 0);
	return res;
}

static void vv_put(struct vv *t, uint64_t gpa, const void *buf, size_t len)
{
	TH_EQ(gv_test_mem_write(t->vm, gpa, buf, len), 0);
}

static void vv_get(struct vv *t, uint64_t gpa, void *buf, size_t len)
{
	TH_EQ(gv_test_mem_read(t->vm, gpa, buf, len), 0);
}

/* A VM of @ncpus with the device on @in, started; the ring page shared the
 * way a Linux guest shares its virtqueues (MAP_GPA_RANGE) and zeroed. With
 * no target in @in the disk is a fresh image file of @image_bytes. */
static void vv_boot_ex(struct vv *t, const struct gv_vblk_config *in, uint64_t image_bytes,
		       unsigned ncpus)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = ncpus,
				 .policy = GV_POLICY_CONVERT, .accel = GV_ACCEL_TEST };
	struct gv_vblk_config bc = *in;
	static uint8_t zero[4096];
	int fd;

	memset(t, 0, sizeof(*t));
	if (!bc.target) {
		snprintf(t->image, sizeof(t->image), "/tmp/gmem-virtio-XXXXXX");
		fd = mkstemp(t->image);
		cr_assert_geq(fd, 0);
		cr_assert_eq(ftruncate(fd, (off_t)image_bytes), 0);
		close(fd);
		bc.image = t->image;
	}
	cr_assert_eq(gv_vm_create(&cfg, &t->vm), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vblk_attach(t->vm, &bc, &t->vb), 0, "attach: %s", gv_last_error());
	cr_assert_eq(gv_vm_start(t->vm), 0);
	TH_EQ(vv_map(t, VV_RING, 1, 0), 0);
	vv_put(t, VV_RING, zero, sizeof(zero));
}

/* One vCPU; the disk a fresh 1 MiB image, or @target (VV_SECTS sectors). */
static void vv_boot_on(struct vv *t, enum gmem_io_path path, const struct gmem_io_target *target)
{
	struct gv_vblk_config bc = { .io_path = path, .target = target,
				     .sectors = target ? VV_SECTS : 0 };

	vv_boot_ex(t, &bc, VV_SECTS * 512ull, 1);
}

static void vv_boot(struct vv *t, enum gmem_io_path path)
{
	vv_boot_on(t, path, NULL);
}

static void vv_teardown(struct vv *t)
{
	gv_vm_destroy(t->vm);
	if (t->image[0])
		unlink(t->image);
}

/* 3.1.1 steps 1-6; returns the status read back after FEATURES_OK. */
static uint32_t vv_negotiate(struct vv *t, uint64_t want)
{
	uint32_t st = GV_VIO_S_ACKNOWLEDGE | GV_VIO_S_DRIVER;

	vv_w(t, GV_VIO_STATUS, 0);
	vv_w(t, GV_VIO_STATUS, GV_VIO_S_ACKNOWLEDGE);
	vv_w(t, GV_VIO_STATUS, st);
	vv_w(t, GV_VIO_DRIVER_FEATURES_SEL, 0);
	vv_w(t, GV_VIO_DRIVER_FEATURES, (uint32_t)want);
	vv_w(t, GV_VIO_DRIVER_FEATURES_SEL, 1);
	vv_w(t, GV_VIO_DRIVER_FEATURES, (uint32_t)(want >> 32));
	vv_w(t, GV_VIO_STATUS, st | GV_VIO_S_FEATURES_OK);
	return vv_r(t, GV_VIO_STATUS);
}

static void vv_queue_regs(struct vv *t, uint32_t num, uint64_t desc, uint64_t avail,
			  uint64_t used)
{
	vv_w(t, GV_VIO_QUEUE_SEL, 0);
	vv_w(t, GV_VIO_QUEUE_NUM, num);
	vv_w(t, GV_VIO_QUEUE_DESC_LOW, (uint32_t)desc);
	vv_w(t, GV_VIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
	vv_w(t, GV_VIO_QUEUE_DRIVER_LOW, (uint32_t)avail);
	vv_w(t, GV_VIO_QUEUE_DRIVER_HIGH, (uint32_t)(avail >> 32));
	vv_w(t, GV_VIO_QUEUE_DEVICE_LOW, (uint32_t)used);
	vv_w(t, GV_VIO_QUEUE_DEVICE_HIGH, (uint32_t)(used >> 32));
	vv_w(t, GV_VIO_QUEUE_READY, 1);
}

/* Negotiate, set up the queue, DRIVER_OK: the device is live. */
static void vv_start(struct vv *t)
{
	uint32_t st = vv_negotiate(t, VV_WANT);
	static uint8_t zero[0x800];

	cr_assert(st & GV_VIO_S_FEATURES_OK, "FEATURES_OK refused: status %#x", st);
	vv_put(t, VV_RING, zero, sizeof(zero));
	t->avail = 0;
	vv_queue_regs(t, VV_QN, VV_DESC, VV_AVAIL, VV_USED);
	TH_EQ(vv_r(t, GV_VIO_QUEUE_READY), 1);
	vv_w(t, GV_VIO_STATUS, st | GV_VIO_S_DRIVER_OK);
	TH_EQ(vv_r(t, GV_VIO_STATUS), st | GV_VIO_S_DRIVER_OK);
}

/* Make the chain @d[0..n) available (descriptors 0..n-1, linked). */
static void vv_stage(struct vv *t, const struct gv_vq_desc *d, unsigned n)
{
	uint16_t head = 0;

	for (unsigned i = 0; i < n; i++)
		vv_put(t, VV_DESC + 16ull * i, &d[i], sizeof(d[i]));
	vv_put(t, VV_AVAIL + 4 + 2ull * (t->avail % VV_QN), &head, sizeof(head));
	t->avail++;
	vv_put(t, VV_AVAIL + 2, &t->avail, sizeof(t->avail));
}

/* ... and notify. */
static void vv_post(struct vv *t, const struct gv_vq_desc *d, unsigned n)
{
	vv_stage(t, d, n);
	vv_w(t, GV_VIO_QUEUE_NOTIFY, 0);
}

static uint16_t vv_used_idx(struct vv *t)
{
	uint16_t idx;

	vv_get(t, VV_USED + 2, &idx, sizeof(idx));
	return idx;
}

struct vv_seg {
	uint64_t gpa;
	uint32_t len;
};

/* A request of @type at @sector over @segs; returns the status byte (0xee:
 * never written) and the used length in *len. */
static uint8_t vv_req(struct vv *t, uint32_t type, uint64_t sector, const struct vv_seg *segs,
		      unsigned nsegs, uint32_t *len)
{
	struct gv_vblk_req_hdr h = { .type = type, .sector = sector };
	struct gv_vq_desc d[GV_VQ_CHAIN_MAX];
	uint16_t used = vv_used_idx(t);
	uint8_t status = 0xee;
	uint32_t elem[2];
	unsigned n = 0;

	vv_put(t, VV_HDR, &h, sizeof(h));
	vv_put(t, VV_STATUS, &status, 1);
	d[n++] = (struct gv_vq_desc){ VV_HDR, sizeof(h), GV_VQ_DESC_F_NEXT, 1 };
	for (unsigned i = 0; i < nsegs; i++, n++)
		d[n] = (struct gv_vq_desc){ segs[i].gpa, segs[i].len,
			GV_VQ_DESC_F_NEXT | (type == GV_VBLK_T_OUT ? 0 : GV_VQ_DESC_F_WRITE),
			(uint16_t)(n + 1) };
	d[n++] = (struct gv_vq_desc){ VV_STATUS, 1, GV_VQ_DESC_F_WRITE, 0 };
	vv_post(t, d, n);
	TH_EQ(vv_used_idx(t), (uint16_t)(used + 1));
	vv_get(t, VV_USED + 4 + 8ull * (used % VV_QN), elem, sizeof(elem));
	TH_EQ(elem[0], 0);                      /* the head we posted */
	*len = elem[1];
	vv_get(t, VV_STATUS, &status, 1);
	return status;
}

static void vv_image(struct vv *t, uint64_t off, void *buf, size_t len)
{
	int fd = open(t->image, O_RDONLY);

	cr_assert_geq(fd, 0);
	TH_EQ(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* ---- a whole session -------------------------------------------------------- */

static void vv_session(enum gmem_io_path path)
{
	uint8_t out[3 * 4096], in[3 * 4096], img[3 * 4096];
	struct gv_vblk_stats bs;
	struct gmem *g;
	char id[GV_VBLK_ID_BYTES + 1] = { 0 };
	uint64_t cap = 0;
	uint32_t len, segmax = 0;
	struct vv t;

	vv_boot(&t, path);
	g = gv_vm_gmem(t.vm);
	/* Discovery: a virtio-mmio v2 block device. */
	TH_EQ(vv_r(&t, GV_VIO_MAGIC_VALUE), GV_VIO_MAGIC);
	TH_EQ(vv_r(&t, GV_VIO_VERSION), 2);
	TH_EQ(vv_r(&t, GV_VIO_DEVICE_ID), 2);
	vv_w(&t, GV_VIO_DEVICE_FEATURES_SEL, 1);
	TH_EQ(vv_r(&t, GV_VIO_DEVICE_FEATURES) & 1, 1);            /* VERSION_1 */
	vv_w(&t, GV_VIO_DEVICE_FEATURES_SEL, 0);
	TH_EQ(vv_r(&t, GV_VIO_DEVICE_FEATURES) & (uint32_t)VV_WANT, (uint32_t)VV_WANT);
	TH_EQ(vv_r(&t, GV_VIO_QUEUE_NUM_MAX), GV_VQ_MAX);
	/* The configuration: an 8-byte and a 4-byte read. */
	TH_EQ(gv_test_mmio(t.vm, 0, VV_BASE + GV_VIO_CONFIG, false, &cap, 8), 0);
	TH_EQ(cap, VV_SECTS);
	TH_EQ(gv_test_mmio(t.vm, 0, VV_BASE + GV_VIO_CONFIG + 12, false, &segmax, 4), 0);
	TH_EQ(segmax, GV_VBLK_SEG_MAX);
	vv_start(&t);

	/* Write 12 KiB from private memory, in two buffers, at sector 16. */
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 131 + 7);
	vv_put(&t, VV_BUF, out, sizeof(out));
	{
		struct vv_seg s[2] = { { VV_BUF, 4096 }, { VV_BUF + 4096, 8192 } };

		TH_EQ(vv_req(&t, GV_VBLK_T_OUT, 16, s, 2, &len), GV_VBLK_S_OK);
		TH_EQ(len, 1);                  /* the device wrote the status only */
	}
	vv_image(&t, 16 * 512, img, sizeof(img));
	cr_assert_eq(memcmp(img, out, sizeof(out)), 0, "the image differs");
	for (uint64_t a = VV_BUF; a < VV_BUF + sizeof(out); a += TH_PAGE)
		TH_EQ(gmem_state(g, a), GMEM_PRIVATE);

	/* Read it back into another private buffer, one request, unaligned. */
	{
		struct vv_seg s[1] = { { VV_BUF + 0x10000 + 100, sizeof(in) } };

		TH_EQ(vv_req(&t, GV_VBLK_T_IN, 16, s, 1, &len), GV_VBLK_S_OK);
		TH_EQ(len, sizeof(in) + 1);
		vv_get(&t, VV_BUF + 0x10000 + 100, in, sizeof(in));
		cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "read back differs");
	}
	/* The guest converts a buffer in the middle (as set_memory_decrypted
	 * does) and does I/O on it shared, then makes it private again. */
	TH_EQ(vv_map(&t, VV_BUF + 0x20000, 1, 0), 0);
	TH_EQ(gmem_state(g, VV_BUF + 0x20000), GMEM_SHARED);
	{
		struct vv_seg s[1] = { { VV_BUF + 0x20000, 4096 } };

		TH_EQ(vv_req(&t, GV_VBLK_T_IN, 18, s, 1, &len), GV_VBLK_S_OK);
		cr_assert_eq(memcmp(gmem_host(g, VV_BUF + 0x20000), out + 1024, 4096), 0);
	}
	TH_EQ(gmem_state(g, VV_BUF + 0x20000), GMEM_SHARED);
	TH_EQ(vv_map(&t, VV_BUF + 0x20000, 1, VV_ENC), 0);
	TH_EQ(gmem_state(g, VV_BUF + 0x20000), GMEM_PRIVATE);

	/* Flush, the serial, and a type the device does not know. */
	TH_EQ(vv_req(&t, GV_VBLK_T_FLUSH, 0, NULL, 0, &len), GV_VBLK_S_OK);
	{
		struct vv_seg s[1] = { { VV_ID, GV_VBLK_ID_BYTES } };

		TH_EQ(vv_req(&t, GV_VBLK_T_GET_ID, 0, s, 1, &len), GV_VBLK_S_OK);
		TH_EQ(len, GV_VBLK_ID_BYTES + 1);
		vv_get(&t, VV_ID, id, GV_VBLK_ID_BYTES);
		cr_assert_str_eq(id, "gmem-virtio-blk");
	}
	TH_EQ(vv_req(&t, 11, 0, NULL, 0, &len), GV_VBLK_S_UNSUPP);
	TH_EQ(vv_r(&t, GV_VIO_INTERRUPT_STATUS) & 1, 1);
	vv_w(&t, GV_VIO_INTERRUPT_ACK, 1);
	TH_EQ(vv_r(&t, GV_VIO_INTERRUPT_STATUS), 0);

	cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
	TH_EQ(bs.writes, 1);
	TH_EQ(bs.reads, 2);
	TH_EQ(bs.flushes, 1);
	TH_EQ(bs.get_ids, 1);
	TH_EQ(bs.unsupp, 1);
	TH_EQ(bs.ioerrs, 0);
	TH_EQ(bs.broken, 0);
	TH_EQ(bs.features, VV_WANT);
	TH_EQ(bs.queue_num, VV_QN);
	TH_EQ(bs.io.shared_now, 0);
	/* Three requests moved data: on the path asked for, or on auto on
	 * the paths its calibration chose. */
	TH_EQ(bs.io.requests[GMEM_IO_AUTO], 0);
	if (path == GMEM_IO_AUTO) {
		TH_EQ(bs.io.requests[GMEM_IO_INPLACE] + bs.io.requests[GMEM_IO_BOUNCE] +
		      bs.io.requests[GMEM_IO_KMAP], 3);
		cr_assert_gt(bs.io.calibrations, 0, "auto ran uncalibrated");
	} else {
		TH_EQ(bs.io.requests[path], 3);
		TH_EQ(bs.io.calibrations, 0);
	}
	TH_EQ(th_stats(g).pinned_pages, 0);
	TH_EQ(th_stats(g).kmapped_pages, 0);
	TH_EQ(th_stats(g).shared_pages, 1);     /* the ring page, nothing else */
	cr_log_info("%s: %llu B written, %llu B read", gmem_io_path_name(path),
		    (unsigned long long)bs.bytes_written, (unsigned long long)bs.bytes_read);
	vv_teardown(&t);
}

Test(virtio, blk_session_inplace)
{
	vv_session(GMEM_IO_INPLACE);
}

Test(virtio, blk_session_bounce)
{
	vv_session(GMEM_IO_BOUNCE);
}

Test(virtio, blk_session_kmap)
{
	vv_session(GMEM_IO_KMAP);
}

Test(virtio, blk_session_auto, .timeout = 60)
{
	vv_session(GMEM_IO_AUTO);
}

/* ---- negotiation and set-up rules ---------------------------------------- */

Test(virtio, negotiation_rules)
{
	struct vv t;
	uint32_t st;

	vv_boot(&t, GMEM_IO_BOUNCE);
	/* A driver without VERSION_1 (a legacy driver) is refused. */
	st = vv_negotiate(&t, 1ull << GV_VBLK_F_FLUSH);
	TH_EQ(st & GV_VIO_S_FEATURES_OK, 0);
	/* A feature the device did not offer (indirect descriptors). */
	st = vv_negotiate(&t, VV_WANT | 1ull << GV_VIO_F_INDIRECT_DESC);
	TH_EQ(st & GV_VIO_S_FEATURES_OK, 0);
	/* Queue registers before FEATURES_OK are ignored. */
	vv_queue_regs(&t, VV_QN, VV_DESC, VV_AVAIL, VV_USED);
	TH_EQ(vv_r(&t, GV_VIO_QUEUE_READY), 0);
	/* DRIVER_OK without FEATURES_OK breaks the device. */
	vv_w(&t, GV_VIO_STATUS, vv_r(&t, GV_VIO_STATUS) | GV_VIO_S_DRIVER_OK);
	TH_EQ(vv_r(&t, GV_VIO_STATUS) & GV_VIO_S_NEEDS_RESET, GV_VIO_S_NEEDS_RESET);
	/* Reset clears it; a good negotiation sticks. */
	st = vv_negotiate(&t, VV_WANT);
	TH_EQ(st, GV_VIO_S_ACKNOWLEDGE | GV_VIO_S_DRIVER | GV_VIO_S_FEATURES_OK);
	/* Features cannot change after FEATURES_OK. */
	vv_w(&t, GV_VIO_DRIVER_FEATURES_SEL, 0);
	vv_w(&t, GV_VIO_DRIVER_FEATURES, 0);
	/* Queues: not a power of two, too big, misaligned, outside RAM. */
	vv_queue_regs(&t, 6, VV_DESC, VV_AVAIL, VV_USED);
	TH_EQ(vv_r(&t, GV_VIO_QUEUE_READY), 0);
	vv_queue_regs(&t, 512, VV_DESC, VV_AVAIL, VV_USED);
	TH_EQ(vv_r(&t, GV_VIO_QUEUE_READY), 0);
	vv_queue_regs(&t, VV_QN, VV_DESC + 8, VV_AVAIL, VV_USED);
	TH_EQ(vv_r(&t, GV_VIO_QUEUE_READY), 0);
	vv_queue_regs(&t, VV_QN, VV_DESC, VT_MEM - 4, VV_USED);
	TH_EQ(vv_r(&t, GV_VIO_QUEUE_READY), 0);
	/* A queue that does not exist. */
	vv_w(&t, GV_VIO_QUEUE_SEL, 1);
	TH_EQ(vv_r(&t, GV_VIO_QUEUE_NUM_MAX), 0);
	vv_w(&t, GV_VIO_QUEUE_READY, 1);
	TH_EQ(vv_r(&t, GV_VIO_QUEUE_READY), 0);
	/* Queue 0, set up right. */
	vv_queue_regs(&t, VV_QN, VV_DESC, VV_AVAIL, VV_USED);
	TH_EQ(vv_r(&t, GV_VIO_QUEUE_READY), 1);
	/* Clearing a status bit without a reset breaks the device. */
	vv_w(&t, GV_VIO_STATUS, GV_VIO_S_ACKNOWLEDGE);
	TH_EQ(vv_r(&t, GV_VIO_STATUS) & GV_VIO_S_NEEDS_RESET, GV_VIO_S_NEEDS_RESET);
	{
		struct gv_vblk_stats bs;

		cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
		TH_EQ(bs.broken, -EPROTO);
		TH_EQ(bs.features, VV_WANT);    /* the change after FEATURES_OK did not take */
	}
	/* And the device starts over. */
	vv_start(&t);
	vv_teardown(&t);
}

Test(virtio, register_width_stops_the_guest_with_a_report)
{
	struct gv_result res;
	uint16_t v = 0;
	struct vv t;

	vv_boot(&t, GMEM_IO_BOUNCE);
	TH_EQ(gv_test_mmio(t.vm, 0, VV_BASE + GV_VIO_STATUS, true, &v, 2), -EINVAL);
	cr_assert_eq(gv_vm_wait(t.vm, &res), 0);
	TH_EQ(res.why, GV_STOP_ERROR);
	cr_assert(strstr(res.report, "virtio-blk"), "report: %s", res.report);
	vv_teardown(&t);
}

Test(virtio, attach_refuses_a_window_over_ram_or_a_device)
{
	struct gv_config cfg = { .mem_size = VT_MEM, .ncpus = 1, .accel = GV_ACCEL_TEST };
	struct gv_vblk_config bc = { .io_path = GMEM_IO_BOUNCE, .base = 0x100000 };
	char image[] = "/tmp/gmem-virtio-att-XXXXXX";
	struct gv_vblk *vb;
	struct gv_vm *vm;
	int fd = mkstemp(image);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	bc.image = image;
	cr_assert_eq(gv_vm_create(&cfg, &vm), 0);
	TH_EQ(gv_vblk_attach(vm, &bc, &vb), -EEXIST);          /* inside RAM */
	bc.base = 0;
	TH_EQ(gv_vblk_attach(vm, &bc, &vb), 0);
	TH_EQ(gv_vblk_attach(vm, &bc, &vb), -EEXIST);          /* taken */
	bc.image = "/nonexistent/disk.img";
	bc.base = GV_VIRTIO_MMIO_BASE + 0x1000;
	TH_EQ(gv_vblk_attach(vm, &bc, &vb), -ENOENT);
	/* An access where no device is stops the guest. */
	cr_assert_eq(gv_vm_start(vm), 0);
	{
		uint32_t v;
		struct gv_result res;

		TH_EQ(gv_test_mmio(vm, 0, GV_VIRTIO_MMIO_BASE + 0x1000, false, &v, 4), -EFAULT);
		cr_assert_eq(gv_vm_wait(vm, &res), 0);
		TH_EQ(res.why, GV_STOP_FAULT);
		cr_assert(strstr(res.report, "no device there"), "report: %s", res.report);
	}
	gv_vm_destroy(vm);
	unlink(image);
}

/* The registers a driver reads that the session does not: vendor, config
 * generation (never changes), a third feature word and write-only
 * registers (zeros); the configuration is read-only; a control register
 * read of the wrong width stops the guest as a write does. */
Test(virtio, registers_read_as_the_spec_says_and_the_config_is_read_only)
{
	uint64_t cap = 0, big = VV_SECTS * 4;
	struct gv_result res;
	uint16_t half = 0;
	struct vv t;

	vv_boot(&t, GMEM_IO_BOUNCE);
	TH_EQ(vv_r(&t, GV_VIO_VENDOR_ID), GV_VIO_VENDOR);
	TH_EQ(vv_r(&t, GV_VIO_CONFIG_GENERATION), 0);
	vv_w(&t, GV_VIO_DEVICE_FEATURES_SEL, 2);
	TH_EQ(vv_r(&t, GV_VIO_DEVICE_FEATURES), 0);
	TH_EQ(vv_r(&t, GV_VIO_QUEUE_NOTIFY), 0);
	TH_EQ(vv_r(&t, GV_VIO_DRIVER_FEATURES), 0);
	TH_EQ(gv_test_mmio(t.vm, 0, VV_BASE + GV_VIO_CONFIG, true, &big, 8), 0);
	TH_EQ(gv_test_mmio(t.vm, 0, VV_BASE + GV_VIO_CONFIG, false, &cap, 8), 0);
	TH_EQ(cap, VV_SECTS);
	TH_EQ(gv_test_mmio(t.vm, 0, VV_BASE + GV_VIO_STATUS, false, &half, 2), -EINVAL);
	cr_assert_eq(gv_vm_wait(t.vm, &res), 0);
	TH_EQ(res.why, GV_STOP_ERROR);
	cr_assert(strstr(res.report, "virtio-blk"), "report: %s", res.report);
	vv_teardown(&t);
}

/* A header the device may write, or shorter than 16 bytes: IOERR, not
 * served, the device not broken. */
Test(virtio, a_header_writable_or_short_is_ioerr)
{
	struct gv_vblk_req_hdr h = { .type = GV_VBLK_T_IN };
	const uint16_t flags[2] = { GV_VQ_DESC_F_NEXT | GV_VQ_DESC_F_WRITE, GV_VQ_DESC_F_NEXT };
	const uint32_t lens[2] = { sizeof(h), sizeof(h) - 1 };
	struct gv_vblk_stats bs;
	struct vv t;

	vv_boot(&t, GMEM_IO_BOUNCE);
	vv_start(&t);
	for (unsigned i = 0; i < 2; i++) {
		struct gv_vq_desc d[3] = {
			{ VV_HDR, lens[i], flags[i], 1 },
			{ VV_BUF, 512, GV_VQ_DESC_F_NEXT | GV_VQ_DESC_F_WRITE, 2 },
			{ VV_STATUS, 1, GV_VQ_DESC_F_WRITE, 0 },
		};
		uint8_t status = 0xee;

		vv_put(&t, VV_HDR, &h, sizeof(h));
		vv_put(&t, VV_STATUS, &status, 1);
		vv_post(&t, d, 3);
		TH_EQ(vv_used_idx(&t), i + 1);
		vv_get(&t, VV_STATUS, &status, 1);
		cr_assert_eq(status, GV_VBLK_S_IOERR, "case %u: status %u", i, status);
	}
	cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
	TH_EQ(bs.ioerrs, 2);
	TH_EQ(bs.reads, 0);
	TH_EQ(bs.broken, 0);
	TH_EQ(gv_vblk_stats(NULL, &bs), -EINVAL);
	TH_EQ(gv_vblk_stats(t.vb, NULL), -EINVAL);
	vv_teardown(&t);
}

/* ---- a hostile driver ------------------------------------------------------ */

/* Chains that break the ring: the device sets DEVICE_NEEDS_RESET with the
 * reason, touches nothing (image, data buffer, used ring), and works again
 * after a reset. Each case is posted as descriptors 0..n-1, head 0 unless
 * the case says otherwise. */
struct vv_break {
	const char *what;
	struct gv_vq_desc d[4];
	unsigned n;
	uint16_t head;          /* the head in the available ring            */
	uint16_t avail_jump;    /* extra to add to avail->idx (0: one entry) */
	int broken;
};

Test(virtio, broken_rings_need_a_reset_and_change_nothing)
{
	const struct vv_break cases[] = {
		{ "head index past the queue", { { 0 } }, 0, VV_QN, 0, -EPROTO },
		{ "next index past the queue",
		  { { VV_HDR, 16, GV_VQ_DESC_F_NEXT, VV_QN } }, 1, 0, 0, -EPROTO },
		{ "a chain that loops",
		  { { VV_HDR, 16, GV_VQ_DESC_F_NEXT, 1 },
		    { VV_BUF, 512, GV_VQ_DESC_F_NEXT | GV_VQ_DESC_F_WRITE, 0 } }, 2, 0, 0, -ELOOP },
		{ "an indirect descriptor (not offered)",
		  { { VV_HDR, 16, GV_VQ_DESC_F_INDIRECT, 0 } }, 1, 0, 0, -EPROTO },
		{ "a buffer outside RAM",
		  { { VV_HDR, 16, GV_VQ_DESC_F_NEXT, 1 },
		    { VT_MEM - 256, 512, GV_VQ_DESC_F_NEXT | GV_VQ_DESC_F_WRITE, 2 },
		    { VV_STATUS, 1, GV_VQ_DESC_F_WRITE, 0 } }, 3, 0, 0, -EFAULT },
		{ "a buffer whose end wraps",
		  { { ~0ull - 8, 16, 0, 0 } }, 1, 0, 0, -EFAULT },
		{ "no writable status byte",
		  { { VV_HDR, 16, GV_VQ_DESC_F_NEXT, 1 },
		    { VV_STATUS, 1, 0, 0 } }, 2, 0, 0, -EPROTO },
		{ "a header alone", { { VV_HDR, 16, 0, 0 } }, 1, 0, 0, -EPROTO },
		{ "the status byte in private memory",
		  { { VV_HDR, 16, GV_VQ_DESC_F_NEXT, 1 },
		    { VV_BUF, 1, GV_VQ_DESC_F_WRITE, 0 } }, 2, 0, 0, -EFAULT },
		{ "the status byte inside the used ring",
		  { { VV_HDR, 16, GV_VQ_DESC_F_NEXT, 1 },
		    { VV_USED + 4, 1, GV_VQ_DESC_F_WRITE, 0 } }, 2, 0, 0, -EPROTO },
		{ "more available than entries",
		  { { VV_HDR, 16, 0, 0 } }, 1, 0, VV_QN, -EPROTO },
	};
	uint8_t img[512], before[512], buf[512], bbefore[512];
	struct gv_vblk_stats bs;
	struct vv t;

	vv_boot(&t, GMEM_IO_BOUNCE);
	vv_image(&t, 0, before, sizeof(before));
	memset(bbefore, 0x5a, sizeof(bbefore));
	vv_put(&t, VV_BUF, bbefore, sizeof(bbefore));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct vv_break *c = &cases[i];
		struct gv_vblk_req_hdr h = { .type = GV_VBLK_T_IN };
		uint16_t idx;

		vv_start(&t);
		vv_put(&t, VV_HDR, &h, sizeof(h));
		for (unsigned k = 0; k < c->n; k++)
			vv_put(&t, VV_DESC + 16ull * k, &c->d[k], sizeof(c->d[k]));
		vv_put(&t, VV_AVAIL + 4, &c->head, sizeof(c->head));
		idx = (uint16_t)(1 + c->avail_jump);
		vv_put(&t, VV_AVAIL + 2, &idx, sizeof(idx));
		vv_w(&t, GV_VIO_QUEUE_NOTIFY, 0);
		cr_assert(vv_r(&t, GV_VIO_STATUS) & GV_VIO_S_NEEDS_RESET, "%s: not broken",
			  c->what);
		cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
		cr_assert_eq(bs.broken, c->broken, "%s: broken %d, want %d", c->what, bs.broken,
			     c->broken);
		cr_assert_eq(vv_used_idx(&t), 0, "%s: a used entry was written", c->what);
		/* A broken device ignores notifies until the reset. */
		vv_w(&t, GV_VIO_QUEUE_NOTIFY, 0);
		TH_EQ(vv_used_idx(&t), 0);
	}
	vv_image(&t, 0, img, sizeof(img));
	cr_assert_eq(memcmp(img, before, sizeof(img)), 0, "the image changed");
	vv_get(&t, VV_BUF, buf, sizeof(buf));
	cr_assert_eq(memcmp(buf, bbefore, sizeof(buf)), 0, "the data buffer changed");
	TH_EQ(bs.reads + bs.writes, 0);
	/* After all that, a reset and an honest request work. */
	vv_start(&t);
	{
		struct vv_seg s[1] = { { VV_BUF, 512 } };
		uint32_t len;

		TH_EQ(vv_req(&t, GV_VBLK_T_IN, 0, s, 1, &len), GV_VBLK_S_OK);
	}
	vv_teardown(&t);
}

/* Requests the device answers with IOERR, moving nothing. */
struct vv_bad {
	const char *what;
	uint32_t type;
	uint64_t sector;
	struct vv_seg segs[GV_VBLK_SEG_MAX + 1];
	unsigned nsegs;
	bool flip_dir;          /* give the data buffers the wrong direction */
};

Test(virtio, malformed_requests_fail_alone_and_move_nothing)
{
	const struct vv_bad cases[] = {
		{ "IN into a device-readable buffer", GV_VBLK_T_IN, 0, { { VV_BUF, 512 } }, 1, true },
		{ "OUT from a device-writable buffer", GV_VBLK_T_OUT, 0, { { VV_BUF, 512 } }, 1, true },
		{ "no data buffer", GV_VBLK_T_IN, 0, { { 0 } }, 0, false },
		{ "not whole sectors", GV_VBLK_T_OUT, 0, { { VV_BUF, 511 } }, 1, false },
		{ "an empty buffer", GV_VBLK_T_IN, 0, { { VV_BUF, 512 }, { VV_BUF, 0 } }, 2, false },
		{ "past the capacity", GV_VBLK_T_OUT, VV_SECTS, { { VV_BUF, 512 } }, 1, false },
		{ "running past the capacity", GV_VBLK_T_OUT, VV_SECTS - 1,
		  { { VV_BUF, 1024 } }, 1, false },
		{ "a sector that wraps", GV_VBLK_T_OUT, ~0ull, { { VV_BUF, 512 } }, 1, false },
		{ "more than 1 MiB", GV_VBLK_T_IN, 0,
		  { { VV_BUF, 1u << 20 }, { VV_BUF, 512 } }, 2, false },
		{ "a buffer over 1 MiB", GV_VBLK_T_IN, 0, { { VV_BUF, (1u << 20) + 512 } }, 1, false },
		{ "more than SEG_MAX buffers", GV_VBLK_T_OUT, 0,
		  { { VV_BUF, 512 }, { VV_BUF, 512 }, { VV_BUF, 512 }, { VV_BUF, 512 },
		    { VV_BUF, 512 }, { VV_BUF, 512 }, { VV_BUF, 512 }, { VV_BUF, 512 },
		    { VV_BUF, 512 } }, 9, false },
		{ "IN into the descriptor table", GV_VBLK_T_IN, 0, { { VV_DESC, 512 } }, 1, false },
		{ "IN into the available ring", GV_VBLK_T_IN, 0, { { VV_AVAIL, 512 } }, 1, false },
		{ "GET_ID into private memory", GV_VBLK_T_GET_ID, 0, { { VV_BUF, 20 } }, 1, false },
		{ "FLUSH with data", GV_VBLK_T_FLUSH, 0, { { VV_BUF, 512 } }, 1, false },
	};
	uint8_t img[4096], before[4096], ring[0x300], ring_before[0x300];
	uint8_t buf[1024], bbefore[1024];
	struct gv_vblk_stats bs;
	struct vv t;

	vv_boot(&t, GMEM_IO_BOUNCE);
	vv_start(&t);
	{
		int fd = open(t.image, O_WRONLY);

		memset(img, 0xc3, sizeof(img));
		TH_EQ(pwrite(fd, img, sizeof(img), (off_t)(VV_SECTS * 512ull - sizeof(img))),
		      (ssize_t)sizeof(img));
		TH_EQ(pwrite(fd, img, sizeof(img), 0), (ssize_t)sizeof(img));
		close(fd);
	}
	vv_image(&t, 0, before, sizeof(before));
	memset(bbefore, 0x5a, sizeof(bbefore));
	vv_put(&t, VV_BUF, bbefore, sizeof(bbefore));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct vv_bad *c = &cases[i];
		struct gv_vblk_req_hdr h = { .type = c->type, .sector = c->sector };
		struct gv_vq_desc d[GV_VQ_CHAIN_MAX];
		bool dev_writes = c->type != GV_VBLK_T_OUT;
		uint16_t used = vv_used_idx(&t);
		uint8_t status = 0xee;
		unsigned n = 0;

		if (c->flip_dir)
			dev_writes = !dev_writes;
		vv_put(&t, VV_HDR, &h, sizeof(h));
		vv_put(&t, VV_STATUS, &status, 1);
		d[n++] = (struct gv_vq_desc){ VV_HDR, sizeof(h), GV_VQ_DESC_F_NEXT, 1 };
		for (unsigned k = 0; k < c->nsegs; k++, n++)
			d[n] = (struct gv_vq_desc){ c->segs[k].gpa, c->segs[k].len,
				GV_VQ_DESC_F_NEXT | (dev_writes ? GV_VQ_DESC_F_WRITE : 0),
				(uint16_t)(n + 1) };
		d[n++] = (struct gv_vq_desc){ VV_STATUS, 1, GV_VQ_DESC_F_WRITE, 0 };
		vv_stage(&t, d, n);
		vv_get(&t, VV_RING, ring_before, sizeof(ring_before));
		vv_w(&t, GV_VIO_QUEUE_NOTIFY, 0);
		cr_assert_eq(vv_used_idx(&t), (uint16_t)(used + 1), "%s: not completed", c->what);
		vv_get(&t, VV_STATUS, &status, 1);
		cr_assert_eq(status, GV_VBLK_S_IOERR, "%s: status %u", c->what, status);
		cr_assert_eq(vv_r(&t, GV_VIO_STATUS) & GV_VIO_S_NEEDS_RESET, 0,
			     "%s: broke the device", c->what);
		/* Nothing moved: the rings hold what the driver wrote, plus the
		 * used entry. */
		vv_get(&t, VV_RING, ring, sizeof(ring));
		cr_assert_eq(memcmp(ring, ring_before, 0x200), 0, "%s: a ring changed", c->what);
	}
	vv_image(&t, 0, img, sizeof(img));
	cr_assert_eq(memcmp(img, before, sizeof(img)), 0, "the image changed");
	vv_get(&t, VV_BUF, buf, sizeof(buf));
	cr_assert_eq(memcmp(buf, bbefore, sizeof(buf)), 0, "the data buffer changed");
	cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
	TH_EQ(bs.ioerrs, sizeof(cases) / sizeof(cases[0]));
	TH_EQ(bs.reads + bs.writes + bs.flushes + bs.get_ids, 0);
	TH_EQ(bs.broken, 0);
	TH_EQ(th_stats(gv_vm_gmem(t.vm)).shared_pages, 1);
	vv_teardown(&t);
}

/* The rings must stay shared: a driver that makes them private breaks the
 * device (the host view faults; the device never signals). */
Test(virtio, a_ring_made_private_breaks_the_device_not_the_vmm)
{
	struct gv_vblk_stats bs;
	struct vv t;

	vv_boot(&t, GMEM_IO_BOUNCE);
	vv_start(&t);
	TH_EQ(vv_map(&t, VV_RING, 1, VV_ENC), 0);
	vv_w(&t, GV_VIO_QUEUE_NOTIFY, 0);
	TH_EQ(vv_r(&t, GV_VIO_STATUS) & GV_VIO_S_NEEDS_RESET, GV_VIO_S_NEEDS_RESET);
	cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
	TH_EQ(bs.broken, -EFAULT);
	TH_EQ(vv_map(&t, VV_RING, 1, 0), 0);
	vv_start(&t);
	vv_teardown(&t);
}

/* One notify serves what was available when it began: a second vCPU
 * topping the ring up cannot keep the first in the device. */
/*
 * The disk of the notify test: while the device serves a read, a second
 * vCPU of the guest posts one more entry whenever the ring has room, as a
 * driver keeping its queue full would. A device that re-read avail->idx
 * would never finish the notify; this one serves what was posted when the
 * notify began.
 */
struct vv_refiller {
	struct vv *t;
	unsigned posted;
};

static int64_t vv_refill_read(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			      int iovcnt, uint64_t off)
{
	struct vv_refiller *r = opaque;
	struct vv *t = r->t;
	int64_t n = 0;

	(void)off;
	if (dir != GMEM_IO_READ)
		return -EIO;
	for (int i = 0; i < iovcnt; i++) {
		memset(iov[i].iov_base, 0, iov[i].iov_len);
		n += (int64_t)iov[i].iov_len;
	}
	if (r->posted < 4 * VV_QN && (uint16_t)(t->avail - vv_used_idx(t)) < VV_QN) {
		t->avail++;
		r->posted++;
		vv_put(t, VV_AVAIL + 2, &t->avail, sizeof(t->avail));
	}
	return n;
}

Test(virtio, one_notify_serves_at_most_a_ring)
{
	struct gv_vblk_req_hdr h = { .type = GV_VBLK_T_IN };
	struct vv_refiller r = { 0 };
	struct gmem_io_target disk = { .kind = GMEM_IO_CALLBACK, .fn = vv_refill_read,
				       .opaque = &r };
	struct gv_vq_desc d[3] = {
		{ VV_HDR, sizeof(h), GV_VQ_DESC_F_NEXT, 1 },
		{ VV_BUF, 512, GV_VQ_DESC_F_NEXT | GV_VQ_DESC_F_WRITE, 2 },
		{ VV_STATUS, 1, GV_VQ_DESC_F_WRITE, 0 },
	};
	struct gv_vblk_stats bs;
	uint8_t status = 0xee;
	uint16_t zero = 0;
	struct vv t;

	r.t = &t;
	vv_boot_on(&t, GMEM_IO_BOUNCE, &disk);
	vv_start(&t);
	/* Every entry is the same 3-descriptor request: a 512-byte read. */
	vv_put(&t, VV_HDR, &h, sizeof(h));
	vv_put(&t, VV_STATUS, &status, 1);
	for (unsigned i = 0; i < 3; i++)
		vv_put(&t, VV_DESC + 16ull * i, &d[i], sizeof(d[i]));
	for (unsigned i = 0; i < VV_QN; i++)
		vv_put(&t, VV_AVAIL + 4 + 2ull * i, &zero, sizeof(zero));
	t.avail = VV_QN;
	vv_put(&t, VV_AVAIL + 2, &t.avail, sizeof(t.avail));
	vv_w(&t, GV_VIO_QUEUE_NOTIFY, 0);
	cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
	cr_log_info("one notify served %llu entries; %u more were posted while it ran",
		    (unsigned long long)bs.reads, r.posted);
	cr_assert_gt(r.posted, 0, "the refiller never found room: the test proves nothing");
	cr_assert_leq(bs.reads, VV_QN, "one notify served %llu entries, more than a ring (%u)",
		      (unsigned long long)bs.reads, VV_QN);
	TH_EQ(bs.reads, VV_QN);
	TH_EQ(bs.max_notify, VV_QN);
	TH_EQ(bs.broken, 0);
	/* The entries posted meanwhile wait for the next notify, and are served. */
	vv_w(&t, GV_VIO_QUEUE_NOTIFY, 0);
	cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
	TH_EQ(bs.broken, 0);
	cr_assert_geq(bs.reads, VV_QN + 1);
	vv_teardown(&t);
}

/* ---- a disk that fails, a disk shorter than it says ----------------------- */

static const enum gmem_io_path vv_paths[] = {
	GMEM_IO_INPLACE, GMEM_IO_BOUNCE, GMEM_IO_KMAP, GMEM_IO_AUTO,
};
#define VV_NPATHS (sizeof(vv_paths) / sizeof(vv_paths[0]))

/* A memory disk whose I/O fails with EIO at offsets in [fail_at, fail_end):
 * a write running into that range moves the bytes before it, then fails. */
struct vv_faulty_disk {
	uint8_t *mem;
	uint64_t len;
	uint64_t fail_at, fail_end;
	unsigned eios;
};

static int64_t vv_faulty_io(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			    int iovcnt, uint64_t off)
{
	struct vv_faulty_disk *d = opaque;
	uint64_t moved = 0, end = d->len;

	if (off >= d->fail_at && off < d->fail_end) {
		d->eios++;
		return -EIO;
	}
	if (off < d->fail_at)
		end = d->fail_at;
	for (int i = 0; i < iovcnt && off < end; i++) {
		uint64_t n = iov[i].iov_len < end - off ? iov[i].iov_len : end - off;

		if (dir == GMEM_IO_READ)
			memcpy(iov[i].iov_base, d->mem + off, n);
		else
			memcpy(d->mem + off, iov[i].iov_base, n);
		off += n;
		moved += n;
	}
	return (int64_t)moved;
}

/* A 4 KiB request of @type at @sector on the buffer at @gpa. */
static uint8_t vv_req1(struct vv *t, uint32_t type, uint64_t sector, uint64_t gpa,
		       uint32_t *len)
{
	struct vv_seg s[1] = { { gpa, 4096 } };

	return vv_req(t, type, sector, s, 1, len);
}

static void vv_expect_bytes(const uint8_t *p, uint8_t want, size_t len, const char *what)
{
	for (size_t i = 0; i < len; i++)
		cr_assert_eq(p[i], want, "%s: byte %zu is %#x, want %#x", what, i, p[i], want);
}

/* The disk fails with EIO under sectors [32, 40): a request there completes
 * with IOERR and moves nothing (the disk and the guest buffer as they were,
 * used length 1: the status byte), one running into it moves what lies
 * before, and every page keeps the state the guest gave it, on every path.
 * The device is not broken: the next request is served. */
static void vv_injected_eio(enum gmem_io_path path)
{
	struct vv_faulty_disk d = { .len = VV_SECTS * 512ull, .fail_at = 32 * 512,
				    .fail_end = 40 * 512 };
	struct gmem_io_target disk = { .kind = GMEM_IO_CALLBACK, .fn = vv_faulty_io,
				       .opaque = &d };
	const char *name = gmem_io_path_name(path);
	uint8_t buf[4096], fill[4096];
	struct gv_vblk_stats bs;
	struct gmem *g;
	uint32_t len;
	struct vv t;

	d.mem = malloc(d.len);
	cr_assert_not_null(d.mem);
	memset(d.mem, 0xee, d.len);
	memset(fill, 0x5a, sizeof(fill));
	vv_boot_on(&t, path, &disk);
	g = gv_vm_gmem(t.vm);
	vv_start(&t);
	vv_put(&t, VV_BUF, fill, sizeof(fill));
	vv_put(&t, VV_BUF + 0x10000, fill, sizeof(fill));
	TH_EQ(vv_map(&t, VV_BUF + 0x20000, 1, 0), 0);   /* one buffer shared */
	vv_put(&t, VV_BUF + 0x20000, fill, sizeof(fill));

	/* A write inside the failing range, from private and shared memory. */
	cr_assert_eq(vv_req1(&t, GV_VBLK_T_OUT, 32, VV_BUF, &len), GV_VBLK_S_IOERR,
		     "%s: private write into EIO", name);
	TH_EQ(len, 1);
	cr_assert_eq(vv_req1(&t, GV_VBLK_T_OUT, 32, VV_BUF + 0x20000, &len), GV_VBLK_S_IOERR,
		     "%s: shared write into EIO", name);
	vv_expect_bytes(d.mem + 32 * 512, 0xee, 8 * 512, "disk under the failed writes");
	/* A read from it: the buffer keeps its bytes. */
	cr_assert_eq(vv_req1(&t, GV_VBLK_T_IN, 32, VV_BUF + 0x10000, &len), GV_VBLK_S_IOERR,
		     "%s: read from EIO", name);
	cr_assert_eq(len, 1, "%s: used length %u of a failed read", name, len);
	vv_get(&t, VV_BUF + 0x10000, buf, sizeof(buf));
	vv_expect_bytes(buf, 0x5a, sizeof(buf), "buffer of the failed read");
	/* A write running into the range: the 2 KiB before it land. */
	cr_assert_eq(vv_req1(&t, GV_VBLK_T_OUT, 28, VV_BUF, &len), GV_VBLK_S_IOERR,
		     "%s: write running into EIO", name);
	vv_expect_bytes(d.mem + 28 * 512, 0x5a, 2048, "disk before the failure");
	vv_expect_bytes(d.mem + 32 * 512, 0xee, 8 * 512, "disk from the failure on");
	TH_EQ(d.eios, 4);
	for (uint64_t a = VV_BUF; a < VV_BUF + 0x11000; a += TH_PAGE)
		cr_assert_eq(gmem_state(g, a), GMEM_PRIVATE, "%s: page %#llx not private", name,
			     (unsigned long long)a);
	TH_EQ(gmem_state(g, VV_BUF + 0x20000), GMEM_SHARED);
	/* Not broken: a request elsewhere is served. */
	cr_assert_eq(vv_req1(&t, GV_VBLK_T_OUT, 64, VV_BUF, &len), GV_VBLK_S_OK, "%s", name);
	vv_expect_bytes(d.mem + 64 * 512, 0x5a, 4096, "disk after the honest write");
	cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
	TH_EQ(bs.ioerrs, 4);
	TH_EQ(bs.io.errors, 4);
	TH_EQ(bs.writes, 1);
	TH_EQ(bs.reads, 0);
	TH_EQ(bs.broken, 0);
	TH_EQ(bs.io.shared_now, 0);
	TH_EQ(bs.io.deferred, 0);
	TH_EQ(th_stats(g).pinned_pages, 0);
	TH_EQ(th_stats(g).kmapped_pages, 0);
	TH_EQ(th_stats(g).shared_pages, 2);     /* the ring page and the shared buffer */
	vv_teardown(&t);
	free(d.mem);
}

Test(virtio, injected_eio_is_ioerr_moves_nothing_and_keeps_page_states, .timeout = 60)
{
	for (unsigned i = 0; i < VV_NPATHS; i++)
		vv_injected_eio(vv_paths[i]);
}

/* The device says the disk has 128 sectors; the image holds 56. A read
 * inside the image is served; one past its end comes back short: IOERR,
 * nothing in the buffer, which stays private. */
static void vv_short_image(enum gmem_io_path path)
{
	struct gv_vblk_config bc = { .io_path = path, .sectors = 128 };
	const char *name = gmem_io_path_name(path);
	uint8_t buf[4096], fill[4096];
	struct gv_vblk_stats bs;
	uint64_t cap = 0;
	uint32_t len;
	struct vv t;

	memset(fill, 0x5a, sizeof(fill));
	vv_boot_ex(&t, &bc, 56 * 512, 1);
	TH_EQ(gv_test_mmio(t.vm, 0, VV_BASE + GV_VIO_CONFIG, false, &cap, 8), 0);
	TH_EQ(cap, 128);
	vv_start(&t);
	vv_put(&t, VV_BUF, fill, sizeof(fill));
	cr_assert_eq(vv_req1(&t, GV_VBLK_T_IN, 40, VV_BUF + 0x10000, &len), GV_VBLK_S_OK,
		     "%s: read inside the image", name);
	cr_assert_eq(vv_req1(&t, GV_VBLK_T_IN, 120, VV_BUF, &len), GV_VBLK_S_IOERR,
		     "%s: read past the image's end", name);
	cr_assert_eq(len, 1, "%s: used length %u of a read past the end", name, len);
	vv_get(&t, VV_BUF, buf, sizeof(buf));
	vv_expect_bytes(buf, 0x5a, sizeof(buf), "buffer of the read past the end");
	TH_EQ(gmem_state(gv_vm_gmem(t.vm), VV_BUF), GMEM_PRIVATE);
	cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
	TH_EQ(bs.sectors, 128);
	TH_EQ(bs.reads, 1);
	TH_EQ(bs.ioerrs, 1);
	TH_EQ(bs.io.short_transfers, 1);
	TH_EQ(bs.broken, 0);
	TH_EQ(bs.io.shared_now, 0);
	TH_EQ(th_stats(gv_vm_gmem(t.vm)).shared_pages, 1);
	TH_EQ(th_stats(gv_vm_gmem(t.vm)).pinned_pages, 0);
	vv_teardown(&t);
}

Test(virtio, image_shorter_than_the_disk_is_ioerr_past_its_end, .timeout = 60)
{
	for (unsigned i = 0; i < VV_NPATHS; i++)
		vv_short_image(vv_paths[i]);
}

/* Configurations refused before anything is opened or claimed, and an
 * attach after the start. */
Test(virtio, attach_refusals)
{
	struct gmem_io_target t = { .kind = GMEM_IO_MEMORY };
	struct gv_vblk_config both = { .image = "/dev/null", .target = &t, .sectors = 8 };
	struct gv_vblk_config none = { .sectors = 8 };
	struct gv_vblk_config nosize = { .target = &t };
	struct gv_vblk_config badpath = { .target = &t, .sectors = 8, .io_path = 9 };
	struct gv_vblk_config missing = { .image = "/nonexistent/gmem-disk.img" };
	struct gv_vblk_config chardev = { .image = "/dev/null" };
	struct gv_vblk_config mem = { .target = &t, .sectors = 8 };
	struct gv_vblk *vb = NULL;
	struct gv_vm *vm = vt_vm_any(NULL, 1, GV_POLICY_CONVERT);
	struct gv_result res;

	t.mem = calloc(8, 512);
	t.mem_len = 8 * 512;
	cr_assert_not_null(t.mem);
	TH_EQ(gv_vblk_attach(NULL, &mem, &vb), -EINVAL);
	TH_EQ(gv_vblk_attach(vm, NULL, &vb), -EINVAL);
	TH_EQ(gv_vblk_attach(vm, &both, &vb), -EINVAL);
	TH_EQ(gv_vblk_attach(vm, &none, &vb), -EINVAL);
	TH_EQ(gv_vblk_attach(vm, &nosize, &vb), -EINVAL);
	TH_EQ(gv_vblk_attach(vm, &badpath, &vb), -EINVAL);
	cr_assert(strstr(gv_last_error(), "I/O path"), "%s", gv_last_error());
	TH_EQ(gv_vblk_attach(vm, &missing, &vb), -ENOENT);
	cr_assert(strstr(gv_last_error(), "/nonexistent/gmem-disk.img"), "%s", gv_last_error());
	/* A character device is neither a file nor a disk. */
	TH_EQ(gv_vblk_attach(vm, &chardev, &vb), -EINVAL);
	cr_assert(strstr(gv_last_error(), "not a regular file or block device"), "%s",
		  gv_last_error());
	cr_assert_null(vb, "a refused attach set *out");
	TH_EQ(gv_vblk_attach(vm, &mem, &vb), 0);
	cr_assert_not_null(vb);
	TH_EQ(gv_vblk_attach(vm, &mem, &vb), -EEXIST);          /* the window is taken */
	cr_assert_eq(gv_vm_load_file(vm, vt_guest_path("hello")), 0, "%s", gv_last_error());
	vt_finish(vm, &res);
	mem.base = GV_VIRTIO_MMIO_BASE + GV_VIRTIO_MMIO_SIZE;
	TH_EQ(gv_vblk_attach(vm, &mem, &vb), -EBUSY);           /* after the start */
	gv_vm_destroy(vm);
	free((void *)t.mem);
}

/* ---- a guest converting a buffer while the device does I/O on it ---------- */

/* vCPU 1 flips a data buffer's state as fast as it can while vCPU 0 does
 * block I/O on it. Every request completes, the device is not broken, and
 * once the I/O is over the page is in the state of the guest's last
 * successful conversion (gmem_convert(3)): no interleaving leaves it in a
 * state nobody asked for. The flipper is stopped from inside the last
 * request's I/O, so its last conversion came before that request ended
 * and the device's clean-up, not the flipper, had the last word. */
struct vv_flipper {
	struct gv_vm *vm;
	atomic_bool stop;       /* set from the disk; the flipper reads it   */
	atomic_bool exited;     /* the flipper made its last call            */
	bool steal;             /* first try to drop the request's pin       */
	int last;               /* state of the last successful conversion  */
	unsigned ok, busy, other, stolen;
};

static void *vv_flip_run(void *arg)
{
	struct vv_flipper *f = arg;

	for (unsigned i = 0; !atomic_load(&f->stop); i++) {
		int to = i & 1 ? GMEM_PRIVATE : GMEM_SHARED;
		int64_t res = 0;

		if (f->steal && to == GMEM_PRIVATE) {
			if (gv_test_hypercall(f->vm, 1, GV_HC_IO_UNPIN, VV_BUF, TH_PAGE, 0, &res)) {
				f->other++;
				break;
			}
			f->stolen += res == 0;
		}
		if (gv_test_hypercall(f->vm, 1, to == GMEM_SHARED ? GV_HC_SHARE : GV_HC_UNSHARE,
				      VV_BUF, TH_PAGE, 0, &res)) {
			f->other++;
			break;
		}
		if (res == 0) {
			f->last = to;
			f->ok++;
		} else if (res == -EAGAIN) {
			f->busy++;      /* a request had it pinned: refused whole */
		} else {
			f->other++;
		}
	}
	atomic_store(&f->exited, true);
	return NULL;
}

/* The racing disk: memory, and on the last request, from inside its I/O,
 * the flipper stopped and waited for. */
struct vv_race_disk {
	uint8_t mem[64 * 4096];
	struct vv_flipper *f;
	atomic_bool last;
};

static int64_t vv_race_io(void *opaque, enum gmem_io_dir dir, const struct iovec *iov,
			  int iovcnt, uint64_t off)
{
	struct vv_race_disk *d = opaque;
	int64_t n = 0;

	for (int i = 0; i < iovcnt; i++) {
		if (off + iov[i].iov_len > sizeof(d->mem))
			return -EIO;
		if (dir == GMEM_IO_READ)
			memcpy(iov[i].iov_base, d->mem + off, iov[i].iov_len);
		else
			memcpy(d->mem + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
		n += (int64_t)iov[i].iov_len;
	}
	if (atomic_load(&d->last)) {
		atomic_store(&d->f->stop, true);
		while (!atomic_load(&d->f->exited))
			sched_yield();
	}
	return n;
}

static void vv_race(enum gmem_io_path path, bool steal)
{
	struct vv_flipper f = { .last = GMEM_PRIVATE, .steal = steal };
	struct vv_race_disk *d = calloc(1, sizeof(*d));
	struct gmem_io_target disk = { .kind = GMEM_IO_CALLBACK, .fn = vv_race_io, .opaque = d };
	struct gv_vblk_config bc = { .io_path = path, .target = &disk,
				     .sectors = sizeof(d->mem) / 512 };
	unsigned good = 0;
	struct gv_vblk_stats bs;
	pthread_t th;
	struct vv t;

	cr_assert_not_null(d);
	d->f = &f;
	vv_boot_ex(&t, &bc, 0, 2);
	vv_start(&t);
	f.vm = t.vm;
	cr_assert_eq(pthread_create(&th, NULL, vv_flip_run, &f), 0);
	for (unsigned i = 0; i < 400; i++) {
		uint32_t type = i & 1 ? GV_VBLK_T_IN : GV_VBLK_T_OUT, len;
		uint8_t st;

		atomic_store(&d->last, i == 399);
		st = vv_req1(&t, type, i % 64 * 8, VV_BUF, &len);
		good += st == GV_VBLK_S_OK;
		cr_assert(st == GV_VBLK_S_OK || st == GV_VBLK_S_IOERR, "request %u: status %u",
			  i, st);
	}
	pthread_join(th, NULL);
	cr_assert(atomic_load(&f.stop), "the last request never reached the disk");
	TH_EQ(f.other, 0);
	cr_assert_eq(f.stolen, 0, "the guest dropped the device's pin %u times", f.stolen);
	cr_assert_gt(f.ok, 0, "the guest never converted");
	cr_assert_eq(gmem_state(gv_vm_gmem(t.vm), VV_BUF), f.last,
		     "the buffer is %d after the I/O, the guest last asked for %d",
		     gmem_state(gv_vm_gmem(t.vm), VV_BUF), f.last);
	cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
	TH_EQ(bs.broken, 0);
	TH_EQ(bs.reads + bs.writes + bs.ioerrs, 400);
	TH_EQ(bs.io.shared_now, 0);
	TH_EQ(bs.io.deferred, 0);
	TH_EQ(th_stats(gv_vm_gmem(t.vm)).pinned_pages, 0);
	TH_EQ(th_stats(gv_vm_gmem(t.vm)).kmapped_pages, 0);
	cr_log_info("%s: %u of 400 requests OK; guest conversions: %u done, %u refused busy",
		    gmem_io_path_name(path), good, f.ok, f.busy);
	vv_teardown(&t);
	free(d);
}

Test(virtio, inplace_io_racing_guest_unshare, .timeout = 60)
{
	vv_race(GMEM_IO_INPLACE, false);
}

/* The same guest also tries to drop the pin an in-place request holds
 * before each unshare, to take the page back under the device's copy. */
Test(virtio, inplace_io_racing_guest_unpin_and_unshare, .timeout = 60)
{
	vv_race(GMEM_IO_INPLACE, true);
}

Test(virtio, bounce_io_racing_guest_unshare, .timeout = 60)
{
	vv_race(GMEM_IO_BOUNCE, false);
}

/* ---- device state in VM snapshots ------------------------------------------ */

/* Offsets in PATH.vm (docs/snapshot-format.md): header fields, and the
 * first device record's header and state (virtio transport state). */
#define VS_NDEVS      48
#define VS_DEV_BYTES  52
#define VS_HDR_RSVD   56
#define VS_REC_NAME   0
#define VS_REC_LEN    24
#define VS_REC_RSVD   28
#define VS_STATE      32
#define VS_ST_DEVID   0
#define VS_ST_STATUS  4
#define VS_ST_ISR     20
#define VS_ST_FEAT    24
#define VS_ST_DESC    32
#define VS_ST_NUM     56
#define VS_ST_LAST    60
#define VS_ST_READY   64
#define VS_ST_BROKEN  68
#define VS_ST_CFGLEN  72
#define VS_ST_RSVD    76
#define VS_ST_CONFIG  80

struct vs_snap {
	char mem[64], vm[80];
	uint8_t *orig;          /* PATH.vm as saved */
	size_t len;
	size_t rec;             /* offset of the first device record */
};

static void vs_snap_paths(struct vs_snap *s)
{
	int fd;

	snprintf(s->mem, sizeof(s->mem), "/tmp/gmem-virtio-snap-XXXXXX");
	fd = mkstemp(s->mem);
	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(s->vm, sizeof(s->vm), "%s%s", s->mem, GV_SNAP_VM_SUFFIX);
}

static void vs_snap_load(struct vs_snap *s)
{
	int fd = open(s->vm, O_RDONLY);
	uint32_t ncpus, vcpu_size;
	off_t n;

	cr_assert_geq(fd, 0);
	n = lseek(fd, 0, SEEK_END);
	cr_assert_gt(n, 64);
	s->len = (size_t)n;
	s->orig = malloc(s->len);
	cr_assert_not_null(s->orig);
	TH_EQ(pread(fd, s->orig, s->len, 0), (ssize_t)s->len);
	close(fd);
	memcpy(&ncpus, s->orig + 16, 4);
	memcpy(&vcpu_size, s->orig + 20, 4);
	s->rec = 64 + (size_t)ncpus * vcpu_size;
	cr_assert_lt(s->rec + VS_STATE, s->len);
}

/* PATH.vm as saved with @len bytes at @off replaced, its hash made right
 * again: only the checks past the hash stand between it and the VMM. */
static void vs_snap_edit(struct vs_snap *s, size_t off, const void *bytes, size_t len)
{
	uint8_t *b = malloc(s->len);
	uint64_t h;
	int fd;

	cr_assert_not_null(b);
	memcpy(b, s->orig, s->len);
	cr_assert_leq(off + len, s->len - 8);
	memcpy(b + off, bytes, len);
	h = XXH3_64bits(b, s->len - 8);
	memcpy(b + s->len - 8, &h, 8);
	fd = open(s->vm, O_WRONLY | O_TRUNC);
	cr_assert_geq(fd, 0);
	TH_EQ(write(fd, b, s->len), (ssize_t)s->len);
	close(fd);
	free(b);
}

static void vs_snap_remove(struct vs_snap *s)
{
	unlink(s->mem);
	unlink(s->vm);
	free(s->orig);
}

static const struct gv_config vs_cfg = { .policy = GV_POLICY_CONVERT,
					 .accel = GV_ACCEL_TEST };

/* A session saved in the middle: 8 KiB written at sector 32 from private
 * memory, then a read of it into another private buffer made available but
 * not yet notified. The VM is destroyed; the image stays. */
static void vs_save_session(struct vv *t, struct vs_snap *s, uint8_t *out, size_t len)
{
	struct vv_seg seg[1] = { { VV_BUF, (uint32_t)len } };
	struct gv_vblk_req_hdr h = { .type = GV_VBLK_T_IN, .sector = 32 };
	struct gv_vq_desc d[3] = {
		{ VV_HDR, sizeof(h), GV_VQ_DESC_F_NEXT, 1 },
		{ VV_BUF + 0x10000, (uint32_t)len, GV_VQ_DESC_F_NEXT | GV_VQ_DESC_F_WRITE, 2 },
		{ VV_STATUS, 1, GV_VQ_DESC_F_WRITE, 0 },
	};
	uint8_t status = 0xee;
	uint32_t n;

	vv_boot(t, GMEM_IO_BOUNCE);
	vv_start(t);
	for (size_t i = 0; i < len; i++)
		out[i] = (uint8_t)(i * 37 + 11);
	vv_put(t, VV_BUF, out, len);
	TH_EQ(vv_req(t, GV_VBLK_T_OUT, 32, seg, 1, &n), GV_VBLK_S_OK);
	vv_put(t, VV_HDR, &h, sizeof(h));
	vv_put(t, VV_STATUS, &status, 1);
	vv_stage(t, d, 3);
	vs_snap_paths(s);
	cr_assert_eq(gv_vm_snapshot_save(t->vm, s->mem, NULL), 0, "save: %s", gv_last_error());
	gv_vm_destroy(t->vm);
	t->vm = NULL;
	t->vb = NULL;
	vs_snap_load(s);
}

static int vs_attach(struct vv *t, const char *image, struct gv_vblk **vb)
{
	struct gv_vblk_config bc = { .image = image, .io_path = GMEM_IO_BOUNCE };

	return gv_vblk_attach(t->vm, &bc, vb);
}

Test(virtio, snapshot_in_the_middle_of_a_session_carries_on)
{
	uint8_t out[8192], in[8192], status;
	struct gv_vblk_stats bs;
	struct vs_snap s;
	struct vv t;
	uint32_t n;

	vs_save_session(&t, &s, out, sizeof(out));
	cr_assert_eq(gv_vm_snapshot_restore(&vs_cfg, s.mem, NULL, &t.vm), 0, "restore: %s",
		     gv_last_error());
	/* The snapshot holds the device's state: the VM does not start
	 * without the device to take it. */
	TH_EQ(gv_vm_start(t.vm), -ENODEV);
	cr_assert(strstr(gv_last_error(), "virtio-blk"), "message: %s", gv_last_error());
	cr_assert_eq(vs_attach(&t, t.image, &t.vb), 0, "attach: %s", gv_last_error());
	cr_assert_eq(gv_vm_start(t.vm), 0, "start: %s", gv_last_error());
	/* The device is where the driver left it: live, negotiated. */
	cr_assert_eq(gv_vblk_stats(t.vb, &bs), 0);
	TH_EQ(bs.features, VV_WANT);
	TH_EQ(bs.queue_num, VV_QN);
	TH_EQ(bs.status & GV_VIO_S_DRIVER_OK, GV_VIO_S_DRIVER_OK);
	TH_EQ(vv_r(&t, GV_VIO_QUEUE_READY), 1);
	TH_EQ(vv_used_idx(&t), 1);
	/* The request made available before the save is served by a notify
	 * after it: the data written before the save comes back. */
	vv_w(&t, GV_VIO_QUEUE_NOTIFY, 0);
	TH_EQ(vv_used_idx(&t), 2);
	vv_get(&t, VV_STATUS, &status, 1);
	TH_EQ(status, GV_VBLK_S_OK);
	vv_get(&t, VV_BUF + 0x10000, in, sizeof(in));
	cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "read back after restore differs");
	for (uint64_t a = VV_BUF; a < VV_BUF + 0x12000; a += TH_PAGE)
		if (a < VV_BUF + sizeof(out) || a >= VV_BUF + 0x10000)
			TH_EQ(gmem_state(gv_vm_gmem(t.vm), a), GMEM_PRIVATE);
	/* ... and the session goes on. */
	{
		struct vv_seg seg[1] = { { VV_BUF + 0x20000, 4096 } };

		TH_EQ(vv_req(&t, GV_VBLK_T_IN, 33, seg, 1, &n), GV_VBLK_S_OK);
		vv_get(&t, VV_BUF + 0x20000, in, 4096);
		cr_assert_eq(memcmp(in, out + 512, 4096), 0);
	}
	TH_EQ(th_stats(gv_vm_gmem(t.vm)).shared_pages, 1);     /* the ring page */
	vv_teardown(&t);
	vs_snap_remove(&s);
}

/* Restore, attach the device: attach must fail with @err, naming @what. */
static void vs_expect_attach(struct vs_snap *s, const char *image, int err, const char *what)
{
	struct gv_vblk *vb = NULL;
	struct vv t = { 0 };
	int ret;

	cr_assert_eq(gv_vm_snapshot_restore(&vs_cfg, s->mem, NULL, &t.vm), 0, "%s: restore: %s",
		     what, gv_last_error());
	ret = vs_attach(&t, image, &vb);
	cr_assert_eq(ret, err, "%s: attach gave %d (%s), want %d", what, ret, gv_last_error(),
		     err);
	cr_assert(strstr(gv_last_error(), what), "%s: message: %s", what, gv_last_error());
	/* Refused, the record is still unclaimed: the VM does not start. */
	TH_EQ(gv_vm_start(t.vm), -ENODEV);
	gv_vm_destroy(t.vm);
}

struct vs_field {
	const char *what;       /* in the error message */
	size_t off;             /* into the virtio state */
	uint64_t value;
	unsigned size;
};

static int vs_dev_read(struct gv_vcpu *vcpu, uint64_t off, void *data, unsigned size,
		       void *ctx)
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

Test(virtio, hostile_device_state_in_a_snapshot_changes_nothing)
{
	uint32_t status = GV_VIO_S_ACKNOWLEDGE | GV_VIO_S_DRIVER | GV_VIO_S_FEATURES_OK |
			  GV_VIO_S_DRIVER_OK;
	const struct vs_field f[] = {
		{ "device_id", VS_ST_DEVID, 3, 4 },
		{ "status", VS_ST_STATUS, status | 0x10, 4 },           /* unknown bit */
		{ "status", VS_ST_STATUS, status & ~GV_VIO_S_FEATURES_OK, 4 },
		{ "driver_features", VS_ST_FEAT, VV_WANT | 1ull << GV_VIO_F_INDIRECT_DESC, 8 },
		{ "driver_features", VS_ST_FEAT, 1ull << GV_VBLK_F_FLUSH, 8 },  /* no VERSION_1 */
		{ "broken", VS_ST_BROKEN, (uint32_t)-EIO, 4 },          /* without NEEDS_RESET */
		{ "broken", VS_ST_STATUS, status | GV_VIO_S_NEEDS_RESET, 4 },   /* without why */
		{ "isr", VS_ST_ISR, 2, 4 },
		{ "ready", VS_ST_READY, 2, 4 },
		{ "ready", VS_ST_NUM, 3, 4 },                           /* not a power of two */
		{ "ready", VS_ST_NUM, 512, 4 },                         /* over QueueNumMax */
		{ "ready", VS_ST_DESC, VT_MEM - 16, 8 },                /* ring outside RAM */
		{ "ready", VS_ST_DESC, VV_DESC + 8, 8 },                /* misaligned */
		{ "last_avail", VS_ST_LAST, 7, 2 },                     /* served, never answered */
		{ "config_len", VS_ST_CFGLEN, 8, 4 },
		{ "reserved", VS_ST_RSVD, 1, 4 },
		{ "config", VS_ST_CONFIG, VV_SECTS * 4, 8 },            /* capacity */
	};
	struct gv_mmio_dev noload = { .name = "virtio-blk", .base = VV_BASE,
				      .len = GV_VIRTIO_MMIO_SIZE, .read = vs_dev_read,
				      .write = vs_dev_write };
	uint8_t out[8192];
	struct vs_snap s;
	struct vv t;

	vs_save_session(&t, &s, out, sizeof(out));
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		vs_snap_edit(&s, s.rec + VS_STATE + f[i].off, &f[i].value, f[i].size);
		vs_expect_attach(&s, t.image, -EINVAL, f[i].what);
	}
	/* The record is another device's. */
	vs_snap_edit(&s, s.rec + VS_REC_NAME, "virtio-net\0\0\0\0\0", 16);
	vs_expect_attach(&s, t.image, -EINVAL, "virtio-net");
	/* Right state, another disk: its capacity differs from the saved one. */
	vs_snap_edit(&s, 0, s.orig, 8);
	{
		char other[64] = "/tmp/gmem-virtio-other-XXXXXX";
		int fd = mkstemp(other);

		cr_assert_geq(fd, 0);
		cr_assert_eq(ftruncate(fd, 2 * VV_SECTS * 512ull), 0);
		close(fd);
		vs_expect_attach(&s, other, -EINVAL, "config");
		unlink(other);
	}
	/* A device that cannot load state, at the record's base. */
	{
		struct gv_vm *vm;

		cr_assert_eq(gv_vm_snapshot_restore(&vs_cfg, s.mem, NULL, &vm), 0);
		TH_EQ(gv_vm_add_mmio(vm, &noload), -EOPNOTSUPP);
		TH_EQ(gv_vm_start(vm), -ENODEV);
		gv_vm_destroy(vm);
	}
	/* The unedited snapshot still restores: nothing above changed it. */
	{
		struct gv_vm *vm;
		struct gv_vblk *vb;

		cr_assert_eq(gv_vm_snapshot_restore(&vs_cfg, s.mem, NULL, &vm), 0);
		t.vm = vm;
		cr_assert_eq(vs_attach(&t, t.image, &vb), 0, "%s", gv_last_error());
		cr_assert_eq(gv_vm_start(vm), 0);
		gv_vm_destroy(vm);
	}
	unlink(t.image);
	vs_snap_remove(&s);
}

struct vs_frame {
	const char *what;
	size_t off;             /* into PATH.vm; SIZE_MAX: into the record */
	size_t rec_off;
	uint32_t value;
};

/* The framing of the device records is checked before any VM is made. */
Test(virtio, malformed_device_records_refused_at_restore)
{
	const struct vs_frame f[] = {
		{ "ndevs over the bound", VS_NDEVS, 0, GV_MAX_MMIO + 1 },
		{ "ndevs zero, bytes left", VS_NDEVS, 0, 0 },
		{ "dev_bytes against the size", VS_DEV_BYTES, 0, 8 },
		{ "header reserved", VS_HDR_RSVD, 0, 1 },
		{ "state_len over GV_DEV_STATE_MAX", SIZE_MAX, VS_REC_LEN, GV_DEV_STATE_MAX + 8 },
		{ "state_len past the records", SIZE_MAX, VS_REC_LEN, 200 },
		{ "record reserved", SIZE_MAX, VS_REC_RSVD, 1 },
		{ "name unterminated", SIZE_MAX, 12, 0x41414141 },
		{ "name empty", SIZE_MAX, VS_REC_NAME, 0 },
	};
	uint8_t out[4096];
	struct vs_snap s;
	struct gv_vm *vm;
	struct vv t;

	vs_save_session(&t, &s, out, sizeof(out));
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		size_t off = f[i].off == SIZE_MAX ? s.rec + f[i].rec_off : f[i].off;
		int ret;

		vs_snap_edit(&s, off, &f[i].value, 4);
		vm = NULL;
		ret = gv_vm_snapshot_restore(&vs_cfg, s.mem, NULL, &vm);
		cr_assert_eq(ret, -EINVAL, "%s: restore gave %d (%s)", f[i].what, ret,
			     gv_last_error());
		cr_assert_null(vm, "%s", f[i].what);
	}
	/* A VM with an MMIO device that cannot save its state is not saved. */
	{
		struct gv_mmio_dev nosave = { .name = "nosave", .base = VV_BASE + 0x10000,
					      .len = 0x1000, .read = vs_dev_read,
					      .write = vs_dev_write };
		struct gv_config cfg = vs_cfg;
		char never[] = "/tmp/gmem-virtio-never";

		cfg.mem_size = VT_MEM;
		cfg.ncpus = 1;
		cr_assert_eq(gv_vm_create(&cfg, &vm), 0, "%s", gv_last_error());
		TH_EQ(gv_vm_add_mmio(vm, &nosave), 0);
		TH_EQ(gv_vm_snapshot_save(vm, never, NULL), -EOPNOTSUPP);
		cr_assert(strstr(gv_last_error(), "nosave"), "message: %s", gv_last_error());
		TH_EQ(access(never, F_OK), -1);
		gv_vm_destroy(vm);
	}
	unlink(t.image);
	vs_snap_remove(&s);
}

/* The VM side torn from its memory, damaged, missing or not writable, on
 * the test accelerator: refused before any VM is made, or the save fails
 * and the guest goes on. */
Test(virtio, vm_side_damaged_mismatched_missing_or_unwritable)
{
	uint8_t out[4096], byte;
	char other[96];
	struct vs_snap s;
	struct gv_vm *vm = NULL;
	struct vv t;

	vs_save_session(&t, &s, out, sizeof(out));
	/* One byte flipped, the hash left as it was. */
	memcpy(&byte, s.orig + 64 + 128, 1);
	byte ^= 0x40;
	{
		uint8_t *b = malloc(s.len);
		int fd = open(s.vm, O_WRONLY | O_TRUNC);

		cr_assert(b && fd >= 0);
		memcpy(b, s.orig, s.len);
		b[64 + 128] = byte;
		TH_EQ(write(fd, b, s.len), (ssize_t)s.len);
		close(fd);
		free(b);
	}
	TH_EQ(gv_vm_snapshot_restore(&vs_cfg, s.mem, NULL, &vm), -EINVAL);
	cr_assert(strstr(gv_last_error(), "checksum mismatch"), "%s", gv_last_error());
	cr_assert_null(vm);
	/* A PATH.vm of another save of PATH. */
	vs_snap_edit(&s, 0, s.orig, 8);                 /* the one saved, whole */
	snprintf(other, sizeof(other), "%s.keep", s.vm);
	cr_assert_eq(rename(s.vm, other), 0);
	cr_assert_eq(gv_vm_snapshot_restore(&vs_cfg, s.mem, NULL, &vm), -ENOENT);
	cr_assert_null(vm);
	{
		struct gv_config cfg = vs_cfg;

		cfg.mem_size = VT_MEM;
		cfg.ncpus = 1;
		cr_assert_eq(gv_vm_create(&cfg, &vm), 0);
		cr_assert_eq(gv_vm_start(vm), 0);
		TH_EQ(gv_test_mem_write(vm, 0x300000, "another", 7), 0);
		cr_assert_eq(gv_vm_snapshot_save(vm, s.mem, NULL), 0, "%s", gv_last_error());
		/* PATH.vm cannot be written (a directory is in the way): the save
		 * fails naming it, and the guest runs on. */
		unlink(s.vm);
		cr_assert_eq(mkdir(s.vm, 0700), 0);
		cr_assert_lt(gv_vm_snapshot_save(vm, s.mem, NULL), 0);
		cr_assert(strstr(gv_last_error(), s.vm), "%s", gv_last_error());
		cr_assert(!gv_vm_stopped(vm), "the guest did not go on");
		TH_EQ(gv_test_mem_write(vm, 0x300000, "runs on", 7), 0);
		rmdir(s.vm);
		gv_vm_destroy(vm);
		vm = NULL;
	}
	cr_assert_eq(rename(other, s.vm), 0);
	TH_EQ(gv_vm_snapshot_restore(&vs_cfg, s.mem, NULL, &vm), -EINVAL);
	cr_assert(strstr(gv_last_error(), "does not belong"), "%s", gv_last_error());
	cr_assert_null(vm);
	unlink(t.image);
	vs_snap_remove(&s);
}

/* The VM's devices share one I/O context: made uncalibrated for the first
 * device with a fixed path, calibrated once when a device on `auto` joins
 * (a second virtio disk, in the next window). */
Test(virtio, devices_share_one_io_context_calibrated_once_for_auto, .timeout = 60)
{
	struct gmem_io_target mem = { .kind = GMEM_IO_MEMORY, .mem = calloc(1, 64 * 512),
				      .mem_len = 64 * 512 };
	struct gv_vblk_config fixed = { .target = &mem, .sectors = 64, .io_path = GMEM_IO_BOUNCE };
	struct gv_vblk_config autop = { .target = &mem, .sectors = 64, .io_path = GMEM_IO_AUTO,
					.base = GV_VIRTIO_MMIO_BASE + GV_VIRTIO_MMIO_SIZE };
	struct gv_config cfg = vs_cfg;
	struct gv_vblk_stats fs, as;
	struct gv_vblk *fb, *ab;
	struct gv_vm *vm;

	cr_assert_not_null(mem.mem);
	cfg.mem_size = VT_MEM;
	cfg.ncpus = 1;
	cr_assert_eq(gv_vm_create(&cfg, &vm), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vblk_attach(vm, &fixed, &fb), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vblk_stats(fb, &fs), 0);
	TH_EQ(fs.io.calibrations, 0);
	cr_assert_eq(gv_vblk_attach(vm, &autop, &ab), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vblk_stats(fb, &fs), 0);
	cr_assert_eq(gv_vblk_stats(ab, &as), 0);
	TH_EQ(fs.io.calibrations, 1);           /* the same context, seen by both */
	TH_EQ(as.io.calibrations, 1);
	/* A third on auto finds it calibrated. */
	autop.base += GV_VIRTIO_MMIO_SIZE;
	cr_assert_eq(gv_vblk_attach(vm, &autop, &ab), 0, "%s", gv_last_error());
	cr_assert_eq(gv_vblk_stats(ab, &as), 0);
	TH_EQ(as.io.calibrations, 1);
	gv_vm_destroy(vm);
	free((void *)mem.mem);
}

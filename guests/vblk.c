// SPDX-License-Identifier: MIT
/*
 * vblk.c - a disk session through virtio-blk (src/vmm/virtio) with the
 * guests' driver (guests/virtio/vdrv.c), the way a Linux guest's
 * virtio-blk does it: the virtqueue page is shared, data buffers stay
 * private.
 *
 * Built twice. vblk-gpa.elf converts the way Linux guests do, with
 * KVM_HC_MAP_GPA_RANGE (vmcall, KVM_EXIT_HYPERCALL). vblk.elf converts
 * with the micro-VMM's port hypercalls (GV_HC_SHARE/UNSHARE): on a host
 * whose KVM does not return from vmcall (measured on kvm-pvm, where the
 * vCPU spins inside KVM_RUN) it is the one that runs.
 *
 * It writes three private buffers (gathered) to sectors 8..18, reads them
 * back into another private buffer, shares a buffer for a read and makes
 * it private again, flushes, reads the serial, and expects a type the
 * device lacks and a read past the end to fail. After each request the
 * VMM is asked (GV_HC_STATE) whether the buffers are still private.
 *
 * Pattern: the 64-bit word at disk byte offset o is
 * (o ^ VBLK_SEED) * 0x9e3779b97f4a7c15 (tests/vm/test_vm_vdrv.c writes and
 * checks the same one on the test accelerator).
 * Console: one "ok"/"FAIL" line per check; exit status: the failures.
 */
#include "rt.h"
#include "vdrv.h"

#define VBLK_SEED 0x676d656d2d766972ull        /* "gmem-vir" */
#define KVM_HC_MAP_GPA_RANGE 12ul
#define MAP_GPA_ENCRYPTED    (1ul << 4)

static uint8_t ring_page[GVD_RING_BYTES] GV_ALIGNED_PAGE;      /* shared */
static uint8_t wbuf[6 * GV_PAGE] GV_ALIGNED_PAGE;              /* private */
static uint8_t rbuf[2 * GV_PAGE] GV_ALIGNED_PAGE;              /* private */
static uint8_t sbuf[2 * GV_PAGE] GV_ALIGNED_PAGE;              /* shared a while */

/* ---- the platform: MMIO, memory, vmcall ---------------------------------- */

static uint32_t g_reg_read(void *ctx, uint32_t off)
{
	(void)ctx;
	return *(volatile uint32_t *)(uintptr_t)(GV_VIRTIO_MMIO_BASE + off);
}

static void g_reg_write(void *ctx, uint32_t off, uint32_t v)
{
	(void)ctx;
	*(volatile uint32_t *)(uintptr_t)(GV_VIRTIO_MMIO_BASE + off) = v;
}

/* RAM is identity-mapped: a guest-physical address is the pointer. */
static void g_mem_read(void *ctx, uint64_t gpa, void *buf, uint32_t len)
{
	(void)ctx;
	memcpy(buf, (const void *)(uintptr_t)gpa, len);
}

static void g_mem_write(void *ctx, uint64_t gpa, const void *buf, uint32_t len)
{
	(void)ctx;
	memcpy((void *)(uintptr_t)gpa, buf, len);
}

#ifdef VBLK_MAP_GPA_RANGE
/* KVM's hypercall ABI: number in rax, arguments in rbx, rcx, rdx. */
static long g_map(void *ctx, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	long ret;

	(void)ctx;
	__asm__ volatile("vmcall"
			 : "=a"(ret)
			 : "a"(KVM_HC_MAP_GPA_RANGE), "b"(gpa), "c"(npages), "d"(attrs)
			 : "memory");
	return ret;
}
#else
/* The same conversion through the VMM's port hypercalls. */
static long g_map(void *ctx, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	const void *p = (const void *)(uintptr_t)gpa;

	(void)ctx;
	return attrs & MAP_GPA_ENCRYPTED ? gv_unshare(p, npages * GV_PAGE)
					 : gv_share(p, npages * GV_PAGE);
}
#endif

static const struct gvd_platform platform = {
	g_reg_read, g_reg_write, g_mem_read, g_mem_write, g_map, 0,
};

/* ---- the session ---------------------------------------------------------- */

static uint64_t pattern(uint64_t disk_off)
{
	return (disk_off ^ VBLK_SEED) * 0x9e3779b97f4a7c15ull;
}

static void fill(uint8_t *p, uint64_t disk_off, uint32_t len)
{
	for (uint32_t i = 0; i < len; i += 8)
		*(uint64_t *)(p + i) = pattern(disk_off + i);
}

/* Words of @p that differ from the pattern. */
static long differ(const uint8_t *p, uint64_t disk_off, uint32_t len)
{
	long bad = 0;

	for (uint32_t i = 0; i < len; i += 8)
		bad += *(const uint64_t *)(p + i) != pattern(disk_off + i);
	return bad;
}

static long private_pages(const uint8_t *p, uint32_t len)
{
	long n = 0;

	for (uint32_t i = 0; i < len; i += GV_PAGE)
		n += gv_page_state(p + i) == 0;         /* GMEM_PRIVATE */
	return n;
}

#define GPA(p) ((uint64_t)(uintptr_t)(p))

int guest_main(const struct gv_boot *b)
{
	const struct gvd_seg w3[3] = { { GPA(wbuf), 1024 }, { GPA(wbuf + 0x3000), 4096 },
				       { GPA(wbuf + 0x5e00), 512 } };
	const struct gvd_seg r1[1] = { { GPA(rbuf + 512), 5632 } };
	const struct gvd_seg s1[1] = { { GPA(sbuf), 8192 } };
	char id[GVD_ID_BYTES + 1];
	struct gvd d;

	(void)b;
	gv_expect(gvd_init(&d, &platform, GPA(ring_page)), 0, "virtio-blk found and set up");
	if (gv_failures())
		return gv_failures();
	gv_printf("vblk: %lu sectors, queue of %u\n", (unsigned long)d.capacity, d.num);
	gv_expect(gv_page_state(ring_page), 1, "the ring page is shared");
	fill(wbuf, 8 * 512, 1024);
	fill(wbuf + 0x3000, 8 * 512 + 1024, 4096);
	fill(wbuf + 0x5e00, 8 * 512 + 5120, 512);
	gv_expect(gvd_rw(&d, 1, 8, w3, 3), 0, "write 3 buffers, 5.5 KiB");
	gv_expect(gvd_rw(&d, 0, 8, r1, 1), 0, "read them back as one");
	gv_expect(differ(rbuf + 512, 8 * 512, 5632), 0, "the data came back");
	gv_expect(private_pages(wbuf, sizeof(wbuf)), 6, "written buffers stay private");
	gv_expect(private_pages(rbuf, sizeof(rbuf)), 2, "read buffer stays private");
	gv_expect(g_map(0, GPA(sbuf), 2, 0), 0, "share a buffer");
	gv_expect(gvd_rw(&d, 0, 8, s1, 1), 0, "read into it shared");
	gv_expect(differ(sbuf, 8 * 512, 5632), 0, "the data came back shared");
	gv_expect(g_map(0, GPA(sbuf), 2, MAP_GPA_ENCRYPTED), 0, "make it private again");
	gv_expect(private_pages(sbuf, sizeof(sbuf)), 2, "it is private");
	gv_expect(gvd_flush(&d), 0, "flush");
	gv_expect(gvd_get_id(&d, id), 0, "serial");
	gv_expect(memcmp(id, "gmem-virtio-blk", 16), 0, "serial is gmem-virtio-blk");
	gv_expect(gvd_raw(&d, 11), GVD_ENOTSUP, "an unknown type is refused");
	gv_expect(gvd_rw(&d, 0, d.capacity - 1, w3, 1), GVD_EIO, "a read past the end fails");
	return gv_failures();
}

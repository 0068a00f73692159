// SPDX-License-Identifier: MIT
/*
 * vdrv.c - the guests' virtio-blk driver core (see vdrv.h for the model).
 *
 * Set-up follows virtio 1.2 section 3.1.1: reset, ACKNOWLEDGE, DRIVER,
 * features (VERSION_1, and FLUSH if offered), FEATURES_OK read back, the
 * queue (4.2.3.2), DRIVER_OK. The ring page, from GVD_RING_BYTES:
 *
 *   0x000 descriptor table   16 x num
 *   0x100 available ring     6 + 2 x num
 *   0x200 used ring          6 + 8 x num
 *   0x800 request header     16 (type, reserved, sector)
 *   0x810 status byte
 *   0x900 GET_ID answer      20
 *
 * A request is one chain: header (device-readable), the data buffers
 * (device-writable for a read), the status byte (device-writable), posted
 * at descriptors 0..n+1 since only one request is in flight.
 */
#include "vdrv.h"

/* 4.2.2 MMIO registers. */
#define VIO_MAGIC_VALUE        0x000
#define VIO_VERSION            0x004
#define VIO_DEVICE_ID          0x008
#define VIO_DEVICE_FEATURES    0x010
#define VIO_DEVICE_FEATURES_SEL 0x014
#define VIO_DRIVER_FEATURES    0x020
#define VIO_DRIVER_FEATURES_SEL 0x024
#define VIO_QUEUE_SEL          0x030
#define VIO_QUEUE_NUM_MAX      0x034
#define VIO_QUEUE_NUM          0x038
#define VIO_QUEUE_READY        0x044
#define VIO_QUEUE_NOTIFY       0x050
#define VIO_INTERRUPT_STATUS   0x060
#define VIO_INTERRUPT_ACK      0x064
#define VIO_STATUS             0x070
#define VIO_QUEUE_DESC_LOW     0x080
#define VIO_QUEUE_DESC_HIGH    0x084
#define VIO_QUEUE_DRIVER_LOW   0x090
#define VIO_QUEUE_DRIVER_HIGH  0x094
#define VIO_QUEUE_DEVICE_LOW   0x0a0
#define VIO_QUEUE_DEVICE_HIGH  0x0a4
#define VIO_CONFIG             0x100

#define VIO_S_ACKNOWLEDGE      1u
#define VIO_S_DRIVER           2u
#define VIO_S_DRIVER_OK        4u
#define VIO_S_FEATURES_OK      8u
#define VIO_S_NEEDS_RESET      64u

#define VIO_F_VERSION_1        32
#define VBLK_F_FLUSH           9

#define VBLK_T_IN              0u
#define VBLK_T_OUT             1u
#define VBLK_T_FLUSH           4u
#define VBLK_T_GET_ID          8u

#define VQ_F_NEXT              1u
#define VQ_F_WRITE             2u

#define RING_DESC              0x000u
#define RING_AVAIL             0x100u
#define RING_USED              0x200u
#define RING_HDR               0x800u
#define RING_STATUS            0x810u
#define RING_ID                0x900u

#define GVD_POLLS              1000000u
#define GVD_SHARE_RETRIES      16u
#define GVD_STATUS_UNWRITTEN   0xffu

struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vblk_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

/* The driver does not reorder its own stores around a notify: the device
 * reads the rings during the MMIO write (x86 keeps stores in order; only
 * the compiler could move them). */
static inline void gvd_barrier(void)
{
	__asm__ volatile("" ::: "memory");
}

static uint32_t rd(struct gvd *d, uint32_t off)
{
	return d->p->reg_read(d->p->ctx, off);
}

static void wr(struct gvd *d, uint32_t off, uint32_t v)
{
	d->p->reg_write(d->p->ctx, off, v);
}

static void put(struct gvd *d, uint32_t at, const void *buf, uint32_t len)
{
	d->p->mem_write(d->p->ctx, d->ring + at, buf, len);
}

static void get(struct gvd *d, uint32_t at, void *buf, uint32_t len)
{
	d->p->mem_read(d->p->ctx, d->ring + at, buf, len);
}

static void put_u16(struct gvd *d, uint32_t at, uint16_t v)
{
	put(d, at, &v, sizeof(v));
}

static uint16_t get_u16(struct gvd *d, uint32_t at)
{
	uint16_t v;

	get(d, at, &v, sizeof(v));
	return v;
}

void gvd_reset(struct gvd *d)
{
	wr(d, VIO_STATUS, 0);
}

static void gvd_zero_ring(struct gvd *d)
{
	static const uint64_t zero[32];

	for (uint32_t at = 0; at < GVD_RING_BYTES; at += sizeof(zero))
		put(d, at, zero, sizeof(zero));
}

static int gvd_share_ring(struct gvd *d)
{
	long ret = -11;

	for (unsigned i = 0; i < GVD_SHARE_RETRIES && ret == -11; i++)   /* -EAGAIN */
		ret = d->p->map_gpa_range(d->p->ctx, d->ring, 1, 0);
	return ret ? GVD_EIO : 0;
}

/* 3.1.1 steps 4-6: the features the driver wants and the device offers. */
static int gvd_negotiate(struct gvd *d, uint32_t status)
{
	uint64_t offered, want;

	wr(d, VIO_DEVICE_FEATURES_SEL, 0);
	offered = rd(d, VIO_DEVICE_FEATURES);
	wr(d, VIO_DEVICE_FEATURES_SEL, 1);
	offered |= (uint64_t)rd(d, VIO_DEVICE_FEATURES) << 32;
	if (!(offered >> VIO_F_VERSION_1 & 1))
		return GVD_ENODEV;              /* a legacy-only device */
	want = offered & (1ull << VIO_F_VERSION_1 | 1ull << VBLK_F_FLUSH);
	wr(d, VIO_DRIVER_FEATURES_SEL, 0);
	wr(d, VIO_DRIVER_FEATURES, (uint32_t)want);
	wr(d, VIO_DRIVER_FEATURES_SEL, 1);
	wr(d, VIO_DRIVER_FEATURES, (uint32_t)(want >> 32));
	wr(d, VIO_STATUS, status | VIO_S_FEATURES_OK);
	if (!(rd(d, VIO_STATUS) & VIO_S_FEATURES_OK))
		return GVD_ENODEV;
	d->features = want;
	return 0;
}

/* 4.2.3.2: queue 0, at most GVD_QUEUE_MAX entries, rings in the page. */
static int gvd_setup_queue(struct gvd *d)
{
	uint32_t max;

	wr(d, VIO_QUEUE_SEL, 0);
	if (rd(d, VIO_QUEUE_READY))
		return GVD_EIO;
	max = rd(d, VIO_QUEUE_NUM_MAX);
	if (!max)
		return GVD_ENODEV;
	d->num = max < GVD_QUEUE_MAX ? max : GVD_QUEUE_MAX;
	while (d->num & (d->num - 1))   /* a power of two for split rings */
		d->num &= d->num - 1;
	wr(d, VIO_QUEUE_NUM, d->num);
	wr(d, VIO_QUEUE_DESC_LOW, (uint32_t)(d->ring + RING_DESC));
	wr(d, VIO_QUEUE_DESC_HIGH, (uint32_t)((d->ring + RING_DESC) >> 32));
	wr(d, VIO_QUEUE_DRIVER_LOW, (uint32_t)(d->ring + RING_AVAIL));
	wr(d, VIO_QUEUE_DRIVER_HIGH, (uint32_t)((d->ring + RING_AVAIL) >> 32));
	wr(d, VIO_QUEUE_DEVICE_LOW, (uint32_t)(d->ring + RING_USED));
	wr(d, VIO_QUEUE_DEVICE_HIGH, (uint32_t)((d->ring + RING_USED) >> 32));
	wr(d, VIO_QUEUE_READY, 1);
	return rd(d, VIO_QUEUE_READY) == 1 ? 0 : GVD_EIO;
}

int gvd_init(struct gvd *d, const struct gvd_platform *p, uint64_t ring_gpa)
{
	uint32_t st = VIO_S_ACKNOWLEDGE | VIO_S_DRIVER;
	int ret;

	*d = (struct gvd){ .p = p, .ring = ring_gpa };
	if (ring_gpa % GVD_RING_BYTES)
		return GVD_EINVAL;
	if (rd(d, VIO_MAGIC_VALUE) != 0x74726976u || rd(d, VIO_VERSION) != 2 ||
	    rd(d, VIO_DEVICE_ID) != 2)
		return GVD_ENODEV;
	gvd_reset(d);
	wr(d, VIO_STATUS, VIO_S_ACKNOWLEDGE);
	wr(d, VIO_STATUS, st);
	ret = gvd_negotiate(d, st);
	if (!ret)
		ret = gvd_share_ring(d);
	if (!ret) {
		gvd_zero_ring(d);
		ret = gvd_setup_queue(d);
	}
	if (ret) {
		gvd_reset(d);
		return ret;
	}
	st |= VIO_S_FEATURES_OK;
	wr(d, VIO_STATUS, st | VIO_S_DRIVER_OK);
	if (rd(d, VIO_STATUS) != (st | VIO_S_DRIVER_OK)) {
		gvd_reset(d);
		return GVD_EIO;
	}
	d->capacity = rd(d, VIO_CONFIG) | (uint64_t)rd(d, VIO_CONFIG + 4) << 32;
	return 0;
}

/* Post descriptors 0..n-1 as one chain, notify, wait for it to be used. */
static int gvd_submit(struct gvd *d, const struct vq_desc *desc, unsigned n)
{
	uint32_t elem[2];
	uint16_t used;
	unsigned polls;

	for (unsigned i = 0; i < n; i++)
		put(d, RING_DESC + 16 * i, &desc[i], sizeof(desc[i]));
	put_u16(d, RING_AVAIL + 4 + 2 * (d->avail_idx % d->num), 0);   /* head 0 */
	gvd_barrier();
	d->avail_idx++;
	put_u16(d, RING_AVAIL + 2, d->avail_idx);
	gvd_barrier();
	wr(d, VIO_QUEUE_NOTIFY, 0);
	for (polls = 0; polls < GVD_POLLS; polls++) {
		used = get_u16(d, RING_USED + 2);
		if (used != d->used_seen)
			break;
	}
	if (rd(d, VIO_STATUS) & VIO_S_NEEDS_RESET)
		return GVD_EIO;
	if (polls == GVD_POLLS)
		return GVD_ETIMEDOUT;
	if ((uint16_t)(used - d->used_seen) != 1)
		return GVD_EIO;                 /* more answers than requests */
	get(d, RING_USED + 4 + 8 * (d->used_seen % d->num), elem, sizeof(elem));
	d->used_seen = used;
	if (elem[0] != 0)
		return GVD_EIO;
	/* Used buffer notification: acknowledge what the device raised. */
	wr(d, VIO_INTERRUPT_ACK, rd(d, VIO_INTERRUPT_STATUS));
	d->requests++;
	return 0;
}

/* One request of @type at @sector with @nsegs data buffers: 0 or -errno
 * from the status byte. */
static int gvd_request(struct gvd *d, uint32_t type, uint64_t sector, const struct gvd_seg *segs,
		       unsigned nsegs, int device_writes)
{
	struct vq_desc desc[GVD_SEGS_MAX + 2];
	struct vblk_hdr h = { .type = type, .sector = sector };
	uint8_t status = GVD_STATUS_UNWRITTEN;
	unsigned n = 0;
	int ret;

	if (!d->num || nsegs > GVD_SEGS_MAX || nsegs + 2 > d->num)
		return GVD_EINVAL;
	put(d, RING_HDR, &h, sizeof(h));
	put(d, RING_STATUS, &status, 1);
	desc[n++] = (struct vq_desc){ d->ring + RING_HDR, sizeof(h), VQ_F_NEXT, 1 };
	for (unsigned i = 0; i < nsegs; i++, n++)
		desc[n] = (struct vq_desc){ segs[i].gpa, segs[i].len,
					    (uint16_t)(VQ_F_NEXT | (device_writes ? VQ_F_WRITE : 0)),
					    (uint16_t)(n + 1) };
	desc[n++] = (struct vq_desc){ d->ring + RING_STATUS, 1, VQ_F_WRITE, 0 };
	ret = gvd_submit(d, desc, n);
	if (ret)
		return ret;
	get(d, RING_STATUS, &status, 1);
	switch (status) {
	case 0:
		return 0;
	case 2:
		return GVD_ENOTSUP;
	default:
		return GVD_EIO;                 /* IOERR, or never written */
	}
}

int gvd_rw(struct gvd *d, int write, uint64_t sector, const struct gvd_seg *segs,
	   unsigned nsegs)
{
	uint64_t sectors = 0;

	if (!nsegs)
		return GVD_EINVAL;
	for (unsigned i = 0; i < nsegs; i++) {
		if (!segs[i].len || segs[i].len % GVD_SECTOR)
			return GVD_EINVAL;
		sectors += segs[i].len / GVD_SECTOR;
	}
	/* Past the end is the device's to refuse; the driver checks only that
	 * the arithmetic does not wrap. */
	if (sector + sectors < sector)
		return GVD_EINVAL;
	return gvd_request(d, write ? VBLK_T_OUT : VBLK_T_IN, sector, segs, nsegs, !write);
}

int gvd_flush(struct gvd *d)
{
	if (!(d->features >> VBLK_F_FLUSH & 1))
		return 0;                       /* write-through: nothing to do */
	return gvd_request(d, VBLK_T_FLUSH, 0, 0, 0, 0);
}

int gvd_get_id(struct gvd *d, char id[GVD_ID_BYTES + 1])
{
	struct gvd_seg s = { d->ring + RING_ID, GVD_ID_BYTES };
	int ret = gvd_request(d, VBLK_T_GET_ID, 0, &s, 1, 1);

	if (ret)
		return ret;
	get(d, RING_ID, id, GVD_ID_BYTES);
	id[GVD_ID_BYTES] = '\0';
	return 0;
}

int gvd_raw(struct gvd *d, uint32_t type)
{
	return gvd_request(d, type, 0, 0, 0, 0);
}

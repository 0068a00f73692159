// SPDX-License-Identifier: MIT
/*
 * transport.c - virtio-mmio, version 2 (virtio 1.2 section 4.2): the
 * registers, feature negotiation, queue set-up and notification, for one
 * device with one virtqueue (see virtio.h for the model).
 *
 * Negotiation (3.1.1): the driver resets (Status 0), sets ACKNOWLEDGE and
 * DRIVER, reads DeviceFeatures (two 32-bit halves via DeviceFeaturesSel),
 * writes the subset it wants to DriverFeatures, sets FEATURES_OK and reads
 * Status back: the device keeps FEATURES_OK only if the subset is one it
 * offered and includes VIRTIO_F_VERSION_1 (this device has no legacy
 * interface). Queue registers are taken only between FEATURES_OK and
 * DRIVER_OK; the queue is served only once DRIVER_OK is set. A driver
 * that clears a status bit without a reset, or sets DRIVER_OK without
 * FEATURES_OK, breaks the device (DEVICE_NEEDS_RESET).
 */
#include <errno.h>
#include <string.h>

#include "virtio.h"
#include "../vmm_internal.h"

bool gv_virtio_has(const struct gv_virtio *vd, unsigned bit)
{
	return bit < 64 && (vd->driver_features >> bit) & 1;
}

void gv_virtio_break(struct gv_virtio *vd, int err)
{
	if (!vd->broken)
		vd->broken = err ? err : -EPROTO;
	vd->status |= GV_VIO_S_NEEDS_RESET;
}

static uint64_t gv_virtio_offered(const struct gv_virtio *vd)
{
	return vd->ops->features | 1ull << GV_VIO_F_VERSION_1;
}

/* Caller holds vd->lock. */
static void gv_virtio_reset(struct gv_virtio *vd)
{
	vd->status = 0;
	vd->dev_features_sel = vd->drv_features_sel = vd->queue_sel = 0;
	vd->driver_features = 0;
	vd->isr = 0;
	vd->broken = 0;
	memset(&vd->vq, 0, sizeof(vd->vq));
	vd->resets++;
	if (vd->ops->reset)
		vd->ops->reset(vd->ctx);
}

static void gv_virtio_set_status(struct gv_virtio *vd, uint32_t v)
{
	uint32_t old = vd->status & ~GV_VIO_S_NEEDS_RESET;

	if (!v) {
		gv_virtio_reset(vd);
		return;
	}
	if ((v & old) != old || v & GV_VIO_S_NEEDS_RESET) {
		gv_virtio_break(vd, -EPROTO);   /* bits are cleared only by reset */
		return;
	}
	if (v & GV_VIO_S_FEATURES_OK && !(old & GV_VIO_S_FEATURES_OK)) {
		uint64_t want = vd->driver_features;

		/* Refused features: FEATURES_OK does not stick (3.1.1 step 6). */
		if (want & ~gv_virtio_offered(vd) || !(want >> GV_VIO_F_VERSION_1 & 1))
			v &= ~GV_VIO_S_FEATURES_OK;
	}
	if (v & GV_VIO_S_DRIVER_OK && !(v & GV_VIO_S_FEATURES_OK)) {
		gv_virtio_break(vd, -EPROTO);
		return;
	}
	vd->status = v | (vd->status & GV_VIO_S_NEEDS_RESET);
}

/* Queue registers are the driver's between FEATURES_OK and DRIVER_OK, for
 * a queue that exists and is not yet live. */
static bool gv_virtio_queue_writable(const struct gv_virtio *vd)
{
	return (vd->status & (GV_VIO_S_FEATURES_OK | GV_VIO_S_DRIVER_OK)) == GV_VIO_S_FEATURES_OK &&
	       vd->queue_sel == 0 && !vd->vq.ready;
}

static void gv_virtio_set_half(uint64_t *v, bool high, uint32_t half)
{
	*v = high ? (*v & 0xffffffffull) | (uint64_t)half << 32
		  : (*v & ~0xffffffffull) | half;
}

static void gv_virtio_notify(struct gv_virtio *vd, uint32_t queue)
{
	uint16_t used = vd->vq.used_idx;

	vd->notifies++;
	if (queue != 0 || !vd->vq.ready || !(vd->status & GV_VIO_S_DRIVER_OK) ||
	    vd->status & GV_VIO_S_NEEDS_RESET)
		return;
	vd->ops->notify(vd, vd->ctx);
	if (vd->vq.used_idx != used)
		vd->isr |= 1;   /* used buffer notification, polled */
}

static void gv_virtio_queue_write(struct gv_virtio *vd, uint64_t off, uint32_t v)
{
	struct gv_vq *vq = &vd->vq;

	if (!gv_virtio_queue_writable(vd))
		return;                 /* ignored, as for a queue that is not there */
	switch (off) {
	case GV_VIO_QUEUE_NUM:
		vq->num = v;
		break;
	case GV_VIO_QUEUE_READY:
		if (v == 1 && gv_vq_enable(vd->vm, vq))
			vq->ready = false;  /* refused: reads back 0 */
		break;
	case GV_VIO_QUEUE_DESC_LOW:
	case GV_VIO_QUEUE_DESC_HIGH:
		gv_virtio_set_half(&vq->desc, off == GV_VIO_QUEUE_DESC_HIGH, v);
		break;
	case GV_VIO_QUEUE_DRIVER_LOW:
	case GV_VIO_QUEUE_DRIVER_HIGH:
		gv_virtio_set_half(&vq->avail, off == GV_VIO_QUEUE_DRIVER_HIGH, v);
		break;
	case GV_VIO_QUEUE_DEVICE_LOW:
	case GV_VIO_QUEUE_DEVICE_HIGH:
		gv_virtio_set_half(&vq->used, off == GV_VIO_QUEUE_DEVICE_HIGH, v);
		break;
	}
}

static void gv_virtio_reg_write(struct gv_virtio *vd, uint64_t off, uint32_t v)
{
	switch (off) {
	case GV_VIO_DEVICE_FEATURES_SEL:
		vd->dev_features_sel = v;
		break;
	case GV_VIO_DRIVER_FEATURES_SEL:
		vd->drv_features_sel = v;
		break;
	case GV_VIO_DRIVER_FEATURES:
		/* Only while negotiating (3.1.1 step 5). */
		if (vd->drv_features_sel < 2 && !(vd->status & GV_VIO_S_FEATURES_OK))
			gv_virtio_set_half(&vd->driver_features, vd->drv_features_sel == 1, v);
		break;
	case GV_VIO_QUEUE_SEL:
		vd->queue_sel = v;
		break;
	case GV_VIO_QUEUE_NOTIFY:
		gv_virtio_notify(vd, v);
		break;
	case GV_VIO_INTERRUPT_ACK:
		vd->isr &= ~v;
		break;
	case GV_VIO_STATUS:
		gv_virtio_set_status(vd, v);
		break;
	default:
		gv_virtio_queue_write(vd, off, v);
		break;
	}
}

static uint32_t gv_virtio_reg_read(struct gv_virtio *vd, uint64_t off)
{
	uint64_t offered = gv_virtio_offered(vd);

	switch (off) {
	case GV_VIO_MAGIC_VALUE:
		return GV_VIO_MAGIC;
	case GV_VIO_VERSION:
		return 2;
	case GV_VIO_DEVICE_ID:
		return vd->ops->device_id;
	case GV_VIO_VENDOR_ID:
		return GV_VIO_VENDOR;
	case GV_VIO_DEVICE_FEATURES:
		return vd->dev_features_sel < 2 ? (uint32_t)(offered >> 32 * vd->dev_features_sel)
						: 0;
	case GV_VIO_QUEUE_NUM_MAX:
		return vd->queue_sel == 0 ? GV_VQ_MAX : 0;
	case GV_VIO_QUEUE_READY:
		return vd->queue_sel == 0 && vd->vq.ready;
	case GV_VIO_INTERRUPT_STATUS:
		return vd->isr;
	case GV_VIO_STATUS:
		return vd->status;
	case GV_VIO_CONFIG_GENERATION:
		return 0;               /* the configuration never changes */
	default:
		return 0;               /* write-only and reserved registers */
	}
}

static int gv_virtio_read(struct gv_vcpu *vcpu, uint64_t off, void *data, unsigned size,
			  void *ctx)
{
	struct gv_virtio *vd = ctx;
	uint32_t v;

	(void)vcpu;
	if (off >= GV_VIO_CONFIG) {
		uint64_t c = off - GV_VIO_CONFIG;

		/* Past the device's configuration: zeros. */
		memset(data, 0, size);
		if (c < vd->config_len)
			memcpy(data, (const uint8_t *)vd->config + c,
			       size < vd->config_len - c ? size : vd->config_len - c);
		return 0;
	}
	if (size != 4 || off % 4)
		return -EINVAL;         /* 4.2.2: 32-bit accesses only */
	pthread_mutex_lock(&vd->lock);
	v = gv_virtio_reg_read(vd, off);
	pthread_mutex_unlock(&vd->lock);
	memcpy(data, &v, sizeof(v));
	return 0;
}

static int gv_virtio_write(struct gv_vcpu *vcpu, uint64_t off, const void *data,
			   unsigned size, void *ctx)
{
	struct gv_virtio *vd = ctx;
	uint32_t v;

	(void)vcpu;
	if (off >= GV_VIO_CONFIG)
		return 0;               /* nothing in the configuration is writable */
	if (size != 4 || off % 4)
		return -EINVAL;
	memcpy(&v, data, sizeof(v));
	pthread_mutex_lock(&vd->lock);
	gv_virtio_reg_write(vd, off, v);
	pthread_mutex_unlock(&vd->lock);
	return 0;
}

/* ---- snapshots ---------------------------------------------------------- */

/* The saved state: the registers' effect and the queue, then config_len
 * bytes of the device's configuration space (which the device rebuilds from
 * its backing; a mismatch means another device or another disk). */
struct gv_virtio_state {
	uint32_t device_id, status;
	uint32_t dev_features_sel, drv_features_sel, queue_sel, isr;
	uint64_t driver_features;
	uint64_t desc, avail, used;
	uint32_t num;
	uint16_t last_avail, used_idx;
	uint32_t ready;
	int32_t broken;
	uint32_t config_len;
	uint32_t reserved;
};

_Static_assert(sizeof(struct gv_virtio_state) == GV_VIRTIO_STATE_SIZE,
	       "virtio state record is 80 bytes");

#define GV_VIO_S_KNOWN (GV_VIO_S_ACKNOWLEDGE | GV_VIO_S_DRIVER | GV_VIO_S_DRIVER_OK | \
			GV_VIO_S_FEATURES_OK | GV_VIO_S_NEEDS_RESET | GV_VIO_S_FAILED)

int gv_virtio_save(void *ctx, void *buf, size_t cap)
{
	struct gv_virtio *vd = ctx;
	struct gv_virtio_state st;
	size_t len = sizeof(st) + vd->config_len;

	if (len > cap)
		return -EOVERFLOW;
	pthread_mutex_lock(&vd->lock);
	st = (struct gv_virtio_state){
		.device_id = vd->ops->device_id, .status = vd->status,
		.dev_features_sel = vd->dev_features_sel,
		.drv_features_sel = vd->drv_features_sel, .queue_sel = vd->queue_sel,
		.isr = vd->isr, .driver_features = vd->driver_features,
		.desc = vd->vq.desc, .avail = vd->vq.avail, .used = vd->vq.used,
		.num = vd->vq.num, .last_avail = vd->vq.last_avail,
		.used_idx = vd->vq.used_idx, .ready = vd->vq.ready,
		.broken = vd->broken, .config_len = vd->config_len,
	};
	pthread_mutex_unlock(&vd->lock);
	memcpy(buf, &st, sizeof(st));
	memcpy((uint8_t *)buf + sizeof(st), vd->config, vd->config_len);
	return (int)len;
}

/* The field of @st that no sequence of register writes could have left,
 * or NULL. */
static const char *gv_virtio_state_bad(struct gv_virtio *vd, const struct gv_virtio_state *st)
{
	struct gv_vq vq = { .num = st->num, .desc = st->desc, .avail = st->avail,
			    .used = st->used };
	bool negotiated = st->status & GV_VIO_S_FEATURES_OK;
	bool broken = st->status & GV_VIO_S_NEEDS_RESET;

	if (st->device_id != vd->ops->device_id)
		return "device_id";
	if (st->status & ~GV_VIO_S_KNOWN ||
	    (st->status & GV_VIO_S_DRIVER_OK && !negotiated))
		return "status";
	if (negotiated && (st->driver_features & ~gv_virtio_offered(vd) ||
			   !(st->driver_features >> GV_VIO_F_VERSION_1 & 1)))
		return "driver_features";
	if (broken != (st->broken != 0) || st->broken > 0 || st->broken < -4095)
		return "broken";
	if (st->isr & ~1u)
		return "isr";
	if (st->ready > 1 || (st->ready && (!negotiated || !gv_vq_fits(vd->vm, &vq))))
		return "ready";
	/* At rest every chain taken has been answered, unless the device broke
	 * answering it; a queue not ready has served nothing. */
	if (st->ready ? (uint16_t)(st->last_avail - st->used_idx) > (broken ? 1 : 0)
		      : st->last_avail || st->used_idx)
		return "last_avail";
	if (st->config_len != vd->config_len)
		return "config_len";
	if (st->reserved)
		return "reserved";
	return NULL;
}

int gv_virtio_load(void *ctx, const void *buf, size_t len)
{
	struct gv_virtio *vd = ctx;
	struct gv_virtio_state st;
	const char *bad;

	if (len < sizeof(st)) {
		gv_set_error("%s: saved state of %zu bytes, not %zu", vd->ops->name, len,
			     sizeof(st));
		return -EINVAL;
	}
	memcpy(&st, buf, sizeof(st));
	bad = gv_virtio_state_bad(vd, &st);
	if (!bad && (len != sizeof(st) + vd->config_len ||
		     memcmp((const uint8_t *)buf + sizeof(st), vd->config, vd->config_len)))
		bad = "config (another device or backing than the one saved)";
	if (bad) {
		gv_set_error("%s: saved state: %s out of range", vd->ops->name, bad);
		return -EINVAL;
	}
	pthread_mutex_lock(&vd->lock);
	vd->status = st.status;
	vd->dev_features_sel = st.dev_features_sel;
	vd->drv_features_sel = st.drv_features_sel;
	vd->queue_sel = st.queue_sel;
	vd->isr = st.isr;
	vd->driver_features = st.driver_features;
	vd->broken = st.broken;
	vd->vq = (struct gv_vq){ .num = st.num, .ready = st.ready, .desc = st.desc,
				 .avail = st.avail, .used = st.used,
				 .last_avail = st.last_avail, .used_idx = st.used_idx };
	pthread_mutex_unlock(&vd->lock);
	return 0;
}

static void gv_virtio_release(void *ctx)
{
	struct gv_virtio *vd = ctx;

	pthread_mutex_destroy(&vd->lock);
	if (vd->ops->release)
		vd->ops->release(vd->ctx);
}

int gv_virtio_add(struct gv_vm *vm, struct gv_virtio *vd, uint64_t base)
{
	struct gv_mmio_dev dev = { .name = vd->ops->name, .base = base,
				   .len = GV_VIRTIO_MMIO_SIZE, .read = gv_virtio_read,
				   .write = gv_virtio_write, .release = gv_virtio_release,
				   .save = gv_virtio_save, .load = gv_virtio_load, .ctx = vd };
	int ret;

	vd->vm = vm;
	pthread_mutex_init(&vd->lock, NULL);
	ret = gv_vm_add_mmio(vm, &dev);
	if (ret)
		pthread_mutex_destroy(&vd->lock);
	return ret;
}

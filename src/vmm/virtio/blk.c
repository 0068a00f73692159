// SPDX-License-Identifier: MIT
/*
 * blk.c - virtio-blk over virtio-mmio (see virtio_blk.h for the model).
 *
 * A notify (transport.c, under the device lock, on the vCPU's thread):
 *
 *   read avail->idx once -> for each entry up to it: copy the chain out of
 *   the descriptor table (queue.c checks indices, loops, RAM bounds), read
 *   the header, check the data buffers, move the bytes with gmem_io_rw on
 *   the device's path, write the status byte, add the chain to used.
 *
 * Broken rings stop the device, malformed requests fail alone: a request
 * the device cannot even answer (no writable status byte, the status in
 * private memory) breaks the device, as 2.7 leaves no other way to
 * complete it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../disk.h"
#include "../vmm_internal.h"
#include "virtio.h"
#include "virtio_blk.h"

#define GV_VBLK_DEVICE_ID 2     /* 5 Device Types: block device */

struct gv_vblk {
	struct gv_virtio vd;    /* first: the transport's ctx is the device  */
	struct gv_disk disk;
	struct gmem_io *io;
	enum gmem_io_path path;
	struct gv_vblk_config_space cfg;
	/* Under vd.lock: */
	uint64_t reads, writes, flushes, get_ids, bytes_read, bytes_written;
	uint64_t ioerrs, unsupp;
};

/* Check the data buffers of @c (all but the header and the status) for a
 * request of @sector that the device writes into (@into_guest) or reads
 * from, and build its segment list. 0, or an IOERR to complete it with. */
static int gv_vblk_data(const struct gv_vblk *vb, const struct gv_vq_chain *c,
			bool into_guest, uint64_t sector, struct gmem_io_seg *segs,
			unsigned *nsegs, uint64_t *total)
{
	uint64_t sum = 0;
	unsigned n = c->n - 2;

	if (!n || n > GV_VBLK_SEG_MAX)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		const struct gv_vq_buf *b = &c->buf[1 + i];

		if (b->writable != into_guest || !b->len || b->len > GV_VBLK_SIZE_MAX)
			return -EINVAL;
		/* A device write into a ring would rewrite what it serves. */
		if (gv_vq_overlaps(&vb->vd.vq, b->gpa, b->len))
			return -EINVAL;
		segs[i] = (struct gmem_io_seg){ .gpa = b->gpa, .len = b->len };
		sum += b->len;
	}
	if (sum > GV_VBLK_SIZE_MAX || sum % GV_DISK_SECTOR)
		return -EINVAL;
	if (sector > vb->disk.sectors || sum / GV_DISK_SECTOR > vb->disk.sectors - sector)
		return -EINVAL;
	*nsegs = n;
	*total = sum;
	return 0;
}

static uint8_t gv_vblk_rw(struct gv_vblk *vb, const struct gv_vq_chain *c,
			  const struct gv_vblk_req_hdr *h, uint32_t *written)
{
	struct gmem_io_seg segs[GV_VBLK_SEG_MAX];
	bool write = h->type == GV_VBLK_T_OUT;
	uint64_t total, done;
	unsigned nsegs;
	int64_t n;

	if (gv_vblk_data(vb, c, !write, h->sector, segs, &nsegs, &total))
		return GV_VBLK_S_IOERR;
	n = gv_disk_rw(&vb->disk, vb->io, vb->path, write, segs, nsegs, h->sector, &done);
	if (!write)
		*written = (uint32_t)done;
	if (n < 0 || (uint64_t)n != total)
		return GV_VBLK_S_IOERR;
	if (write) {
		vb->writes++;
		vb->bytes_written += total;
	} else {
		vb->reads++;
		vb->bytes_read += total;
	}
	return GV_VBLK_S_OK;
}

static uint8_t gv_vblk_get_id(struct gv_vblk *vb, const struct gv_vq_chain *c,
			      uint32_t *written)
{
	char id[GV_VBLK_ID_BYTES] = "gmem-virtio-blk";
	const struct gv_vq_buf *b = &c->buf[1];
	uint32_t n;

	if (c->n != 3 || !b->writable || gv_vq_overlaps(&vb->vd.vq, b->gpa, b->len))
		return GV_VBLK_S_IOERR;
	n = b->len < sizeof(id) ? b->len : sizeof(id);
	if (gv_dev_write(vb->vd.vm, b->gpa, id, n))
		return GV_VBLK_S_IOERR;
	*written = n;
	vb->get_ids++;
	return GV_VBLK_S_OK;
}

static uint8_t gv_vblk_flush(struct gv_vblk *vb, const struct gv_vq_chain *c)
{
	if (c->n != 2)
		return GV_VBLK_S_IOERR;
	if (vb->disk.fd >= 0 && fdatasync(vb->disk.fd))
		return GV_VBLK_S_IOERR;
	vb->flushes++;
	return GV_VBLK_S_OK;
}

static uint8_t gv_vblk_request(struct gv_vblk *vb, const struct gv_vq_chain *c,
			       uint32_t *written)
{
	const struct gv_vq_buf *hb = &c->buf[0];
	struct gv_vblk_req_hdr h;

	if (c->n > GV_VQ_CHAIN_MAX || hb->writable || hb->len < sizeof(h) ||
	    gv_dev_read(vb->vd.vm, hb->gpa, &h, sizeof(h)))
		return GV_VBLK_S_IOERR;
	switch (h.type) {
	case GV_VBLK_T_IN:
	case GV_VBLK_T_OUT:
		return gv_vblk_rw(vb, c, &h, written);
	case GV_VBLK_T_FLUSH:
		return gv_vblk_flush(vb, c);
	case GV_VBLK_T_GET_ID:
		return gv_vblk_get_id(vb, c, written);
	default:
		vb->unsupp++;
		return GV_VBLK_S_UNSUPP;
	}
}

/* Serve one chain; a negative errno breaks the device. */
static int gv_vblk_serve(struct gv_vblk *vb, const struct gv_vq_chain *c)
{
	const struct gv_vq_buf *sb = &c->last;
	uint32_t written = 0;
	uint8_t status;
	int ret;

	/* Without a writable status byte there is no way to answer. */
	if (c->n < 2 || !sb->writable || !sb->len ||
	    gv_vq_overlaps(&vb->vd.vq, sb->gpa, sb->len))
		return -EPROTO;
	status = gv_vblk_request(vb, c, &written);
	if (status == GV_VBLK_S_IOERR)
		vb->ioerrs++;
	ret = gv_dev_write(vb->vd.vm, sb->gpa + sb->len - 1, &status, 1);
	if (ret)
		return ret;
	return gv_vq_push(vb->vd.vm, &vb->vd.vq, c->head, written + 1);
}

static void gv_vblk_notify(struct gv_virtio *vd, void *ctx)
{
	struct gv_vblk *vb = ctx;
	struct gv_vq *vq = &vd->vq;
	struct gv_vq_chain c;
	uint16_t avail;
	int ret;

	/* What was available when the notify began, at most a ring. */
	ret = gv_vq_avail_idx(vd->vm, vq, &avail);
	if (ret)
		goto broken;
	if ((uint16_t)(avail - vq->last_avail) > vd->max_notify)
		vd->max_notify = (uint16_t)(avail - vq->last_avail);
	while (vq->last_avail != avail) {
		ret = gv_vq_pop(vd->vm, vq, &c);
		if (!ret)
			ret = gv_vblk_serve(vb, &c);
		if (ret)
			goto broken;
	}
	return;

broken:
	gv_virtio_break(vd, ret);
}

static void gv_vblk_release(void *ctx)
{
	struct gv_vblk *vb = ctx;

	gv_disk_close(&vb->disk);
	free(vb);
}

static const struct gv_virtio_ops gv_vblk_ops = {
	.name = "virtio-blk",
	.device_id = GV_VBLK_DEVICE_ID,
	.features = 1ull << GV_VBLK_F_SIZE_MAX | 1ull << GV_VBLK_F_SEG_MAX |
		    1ull << GV_VBLK_F_BLK_SIZE | 1ull << GV_VBLK_F_FLUSH,
	.notify = gv_vblk_notify,
	.release = gv_vblk_release,
};

static int gv_vblk_config_ok(struct gv_vm *vm, const struct gv_vblk_config *c)
{
	if (!vm || !c) {
		gv_set_error("virtio-blk: no VM or config");
		return -EINVAL;
	}
	if ((unsigned)c->io_path >= GMEM_IO_NPATHS) {
		gv_set_error("virtio-blk: unknown I/O path %d", (int)c->io_path);
		return -EINVAL;
	}
	return 0;
}

int gv_vblk_attach(struct gv_vm *vm, const struct gv_vblk_config *cfg, struct gv_vblk **out)
{
	struct gv_vblk *vb;
	int ret;

	ret = gv_vblk_config_ok(vm, cfg);
	if (ret)
		return ret;
	vb = calloc(1, sizeof(*vb));
	if (!vb) {
		gv_set_error("out of memory");
		return -ENOMEM;
	}
	ret = gv_disk_open(&vb->disk, cfg->image, cfg->target, cfg->sectors);
	if (ret)
		goto err_free;
	vb->path = cfg->io_path;
	vb->cfg = (struct gv_vblk_config_space){ .capacity = vb->disk.sectors,
		.size_max = GV_VBLK_SIZE_MAX, .seg_max = GV_VBLK_SEG_MAX,
		.blk_size = GV_DISK_SECTOR };
	ret = gv_vm_io(vm, cfg->io_path == GMEM_IO_AUTO, &vb->io);
	if (ret)
		goto err_disk;
	vb->vd.ops = &gv_vblk_ops;
	vb->vd.ctx = vb;
	vb->vd.config = &vb->cfg;
	vb->vd.config_len = sizeof(vb->cfg);
	ret = gv_virtio_add(vm, &vb->vd, cfg->base ? cfg->base : GV_VIRTIO_MMIO_BASE);
	if (ret)
		goto err_disk;
	*out = vb;
	return 0;

err_disk:
	gv_disk_close(&vb->disk);
err_free:
	free(vb);
	return ret;
}

int gv_vblk_stats(struct gv_vblk *vb, struct gv_vblk_stats *st)
{
	if (!vb || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&vb->vd.lock);
	st->sectors = vb->disk.sectors;
	st->direct = vb->disk.dfd >= 0;
	st->status = vb->vd.status;
	st->broken = vb->vd.broken;
	st->features = vb->vd.status & GV_VIO_S_FEATURES_OK ? vb->vd.driver_features : 0;
	st->queue_num = vb->vd.vq.ready ? vb->vd.vq.num : 0;
	st->queue_max = GV_VQ_MAX;
	st->size_max = vb->cfg.size_max;
	st->seg_max = vb->cfg.seg_max;
	st->notifies = vb->vd.notifies;
	st->resets = vb->vd.resets;
	st->max_notify = vb->vd.max_notify;
	st->reads = vb->reads;
	st->writes = vb->writes;
	st->flushes = vb->flushes;
	st->get_ids = vb->get_ids;
	st->bytes_read = vb->bytes_read;
	st->bytes_written = vb->bytes_written;
	st->ioerrs = vb->ioerrs;
	st->unsupp = vb->unsupp;
	pthread_mutex_unlock(&vb->vd.lock);
	return gmem_io_stats(vb->io, &st->io);
}

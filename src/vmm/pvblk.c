// SPDX-License-Identifier: MIT
/*
 * pvblk.c - the paravirtual block device (see pvblk.h, gv_abi.h).
 *
 * Model: registers on GV_BLK_NPORTS ports; a ring of request slots in
 * guest memory the guest shares, read and written only through the host
 * view; data buffers anywhere in RAM, moved by gmem_io_rw() against the
 * image on the device's path. A kick serves every slot posted before it
 * began (at most one ring's worth), in order, on the kicking vCPU's thread:
 *
 *   read avail once -> for each slot up to it: copy the slot out of the ring, check
 *   it (op, segments, sector range, not overlapping the ring), run it with
 *   gmem_io_rw, write its completion (error, bytes, status) -> write used.
 *
 * Everything the guest wrote is copied before it is checked, so the guest
 * changing the ring under the device cannot make it act on unchecked
 * values. A request the device refuses completes with GV_BLK_S_BADREQ and
 * moves nothing; an I/O error or a short transfer (an image shorter than
 * the capacity) completes with GV_BLK_S_IOERR, the errno (-EIO for short)
 * and the bytes that did move. A broken ring (not reachable, more posted
 * than entries) stops the device: GV_BLK_REG_STATUS says why, kicks are
 * ignored until the guest sets the ring again. None of these stop the
 * guest; only a register access of the wrong width or direction does, as a
 * guest bug the report should name.
 *
 * Lock rule: b->lock covers the registers, the ring position and the
 * counters; gmem_io_rw runs under it (requests are served in order), and
 * takes only the library's own locks.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "disk.h"
#include "pvblk.h"
#include "vmm_internal.h"

struct gv_blk {
	struct gv_vm *vm;
	struct gmem_io *io;
	struct gv_disk disk;
	enum gmem_io_path path;
	uint16_t base;

	pthread_mutex_t lock;
	uint64_t ring;          /* GV_BLK_REG_RING                               */
	uint32_t entries;       /* 0: stopped                                    */
	uint32_t next;          /* next slot to serve, free-running like avail   */
	int status;
	uint64_t kicks, reads, writes, bytes_read, bytes_written, ioerrs, badreqs;
	uint64_t max_kick;      /* most requests posted to one kick */
};

static uint64_t gv_blk_ring_bytes(uint32_t entries)
{
	return sizeof(struct gv_blk_ring) + (uint64_t)entries * sizeof(struct gv_blk_req);
}

/* ---- one request --------------------------------------------------------- */

static bool gv_blk_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* Check a request copied out of the ring and build its gmem_io segments. */
static int gv_blk_check(const struct gv_blk *b, const struct gv_blk_req *q,
			struct gmem_io_seg *segs, uint64_t *total)
{
	uint64_t mem = gv_vm_mem_size(b->vm), sum = 0;

	if (q->op != GV_BLK_OP_READ && q->op != GV_BLK_OP_WRITE)
		return -EINVAL;
	if (!q->nsegs || q->nsegs > GV_BLK_SEGS)
		return -EINVAL;
	for (unsigned i = 0; i < q->nsegs; i++) {
		const struct gv_blk_seg *s = &q->seg[i];

		if (!s->len || s->gpa >= mem || s->len > mem - s->gpa)
			return -EINVAL;
		/* A device read into its own ring would rewrite the
		 * descriptors it is serving. */
		if (gv_blk_overlap(s->gpa, s->len, b->ring, gv_blk_ring_bytes(b->entries)))
			return -EINVAL;
		segs[i] = (struct gmem_io_seg){ .gpa = s->gpa, .len = s->len };
		sum += s->len;
	}
	if (sum > GV_BLK_MAX_BYTES || sum % GV_BLK_SECTOR)
		return -EINVAL;
	if (q->sector > b->disk.sectors ||
	    sum / GV_BLK_SECTOR > b->disk.sectors - q->sector)
		return -EINVAL;
	*total = sum;
	return 0;
}

/* Serve @q and fill in its completion. */
static void gv_blk_serve(struct gv_blk *b, struct gv_blk_req *q)
{
	struct gmem_io_seg segs[GV_BLK_SEGS];
	uint64_t total = 0, done;
	bool write = q->op == GV_BLK_OP_WRITE;
	int64_t n;
	int ret;

	q->bytes = 0;
	ret = gv_blk_check(b, q, segs, &total);
	if (ret) {
		q->error = ret;
		q->status = GV_BLK_S_BADREQ;
		b->badreqs++;
		return;
	}
	n = gv_disk_rw(&b->disk, b->io, b->path, write, segs, q->nsegs, q->sector, &done);
	q->bytes = (uint32_t)done;
	if (n >= 0 && (uint64_t)n == total) {
		q->error = 0;
		q->status = GV_BLK_S_OK;
		if (write) {
			b->writes++;
			b->bytes_written += total;
		} else {
			b->reads++;
			b->bytes_read += total;
		}
		return;
	}
	q->error = n < 0 ? (int32_t)n : -EIO;
	q->status = GV_BLK_S_IOERR;
	b->ioerrs++;
}

/* ---- the ring ------------------------------------------------------------- */

static void gv_blk_stop(struct gv_blk *b, int err)
{
	b->status = err;
	b->entries = 0;
}

static int gv_blk_start(struct gv_blk *b, uint32_t entries)
{
	uint64_t mem = gv_vm_mem_size(b->vm), len = gv_blk_ring_bytes(entries);
	uint32_t zero = 0, avail;
	uint8_t last;
	int ret;

	b->entries = 0;
	if (!entries)
		return 0;
	if (entries > GV_BLK_RING_MAX || (entries & (entries - 1)) || b->ring % 64 ||
	    b->ring >= mem || len > mem - b->ring)
		return -EINVAL;
	/* The ring must be reachable through the host view (shared): a byte
	 * of every page it spans. */
	ret = gv_dev_read(b->vm, b->ring, &avail, sizeof(avail));
	for (uint64_t off = GMEM_PAGE_SIZE - b->ring % GMEM_PAGE_SIZE; !ret && off < len;
	     off += GMEM_PAGE_SIZE)
		ret = gv_dev_read(b->vm, b->ring + off, &last, 1);
	if (!ret)
		ret = gv_dev_write(b->vm, b->ring + offsetof(struct gv_blk_ring, used), &zero,
				   sizeof(zero));
	if (ret)
		return ret;
	if (avail)
		return -EPROTO;         /* start from a zeroed ring */
	b->next = 0;
	b->entries = entries;
	return 0;
}

static void gv_blk_kick(struct gv_blk *b)
{
	uint64_t slots = b->ring + offsetof(struct gv_blk_ring, slot);
	uint32_t avail;
	int ret;

	b->kicks++;
	/* avail is read once: a kick serves what was posted when it began, at
	 * most one ring's worth, so a guest topping the ring up from another
	 * vCPU cannot keep this one (or a gv_vm_stop waiting for it) here. */
	ret = gv_dev_read(b->vm, b->ring + offsetof(struct gv_blk_ring, avail), &avail,
			  sizeof(avail));
	if (ret)
		goto broken;
	if (avail - b->next > b->entries) {
		ret = -EPROTO;
		goto broken;
	}
	if (avail - b->next > b->max_kick)
		b->max_kick = avail - b->next;
	while (b->entries && b->next != avail) {
		struct gv_blk_req q;
		uint64_t at;

		at = slots + (uint64_t)(b->next & (b->entries - 1)) * sizeof(q);
		ret = gv_dev_read(b->vm, at, &q, sizeof(q));
		if (ret)
			goto broken;
		gv_blk_serve(b, &q);
		/* Completion first, then used: the guest reads them in that order. */
		ret = gv_dev_write(b->vm, at + offsetof(struct gv_blk_req, error), &q.error,
				   offsetof(struct gv_blk_req, reserved) -
				   offsetof(struct gv_blk_req, error));
		if (ret)
			goto broken;
		b->next++;
		ret = gv_dev_write(b->vm, b->ring + offsetof(struct gv_blk_ring, used), &b->next,
				   sizeof(b->next));
		if (ret)
			goto broken;
	}
	return;

broken:
	gv_blk_stop(b, ret);
}

/* ---- registers ------------------------------------------------------------ */

static int gv_blk_out(struct gv_vcpu *vcpu, uint16_t port, const void *data, unsigned size,
		      void *ctx)
{
	struct gv_blk *b = ctx;
	uint32_t v;
	int ret = 0;

	(void)vcpu;
	if (size != 4)
		return -EINVAL;
	memcpy(&v, data, sizeof(v));
	pthread_mutex_lock(&b->lock);
	switch (port - b->base) {
	case GV_BLK_REG_RING:
		b->ring = v;
		break;
	case GV_BLK_REG_ENTRIES:
		b->status = gv_blk_start(b, v);
		break;
	case GV_BLK_REG_KICK:
		gv_blk_kick(b);
		break;
	default:
		ret = -EINVAL;  /* a read-only register */
		break;
	}
	pthread_mutex_unlock(&b->lock);
	return ret;
}

static int gv_blk_in(struct gv_vcpu *vcpu, uint16_t port, void *data, unsigned size,
		     void *ctx)
{
	struct gv_blk *b = ctx;
	uint32_t v;
	int ret = 0;

	(void)vcpu;
	if (size != 4)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	switch (port - b->base) {
	case GV_BLK_REG_RING:
		v = (uint32_t)b->ring;
		break;
	case GV_BLK_REG_ENTRIES:
		v = b->entries;
		break;
	case GV_BLK_REG_STATUS:
		v = (uint32_t)b->status;
		break;
	case GV_BLK_REG_SECT_LO:
		v = (uint32_t)b->disk.sectors;
		break;
	case GV_BLK_REG_SECT_HI:
		v = (uint32_t)(b->disk.sectors >> 32);
		break;
	default:
		ret = -EINVAL;  /* a write-only register */
		break;
	}
	pthread_mutex_unlock(&b->lock);
	if (!ret)
		memcpy(data, &v, sizeof(v));
	return ret;
}

/* ---- attaching ------------------------------------------------------------ */

static void gv_blk_free(struct gv_blk *b)
{
	gv_disk_close(&b->disk);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

static void gv_blk_release(void *ctx)
{
	gv_blk_free(ctx);
}

static int gv_blk_config_ok(const struct gv_blk_config *c)
{
	if (!c || !c->image == !c->target) {
		gv_set_error("block device: give a disk image or a target, not both");
		return -EINVAL;
	}
	if ((unsigned)c->io_path >= GMEM_IO_NPATHS) {
		gv_set_error("block device: unknown I/O path %d", (int)c->io_path);
		return -EINVAL;
	}
	if (c->target && !c->sectors) {
		gv_set_error("block device: a target needs a capacity in sectors");
		return -EINVAL;
	}
	if ((uint32_t)(c->port ? c->port : GV_PORT_BLK) + GV_BLK_NPORTS > 0x10000) {
		gv_set_error("block device: ports %#x.. run past 0xffff", c->port);
		return -EINVAL;
	}
	return 0;
}

int gv_blk_attach(struct gv_vm *vm, const struct gv_blk_config *cfg, struct gv_blk **out)
{
	struct gv_pio_dev dev = { .name = "pvblk", .len = GV_BLK_NPORTS,
				  .in = gv_blk_in, .out = gv_blk_out,
				  .release = gv_blk_release };
	struct gv_blk *b;
	int ret;

	ret = gv_blk_config_ok(cfg);
	if (ret)
		return ret;
	b = calloc(1, sizeof(*b));
	if (!b) {
		gv_set_error("out of memory");
		return -ENOMEM;
	}
	b->vm = vm;
	b->disk.fd = b->disk.dfd = -1;
	b->path = cfg->io_path;
	b->base = cfg->port ? cfg->port : GV_PORT_BLK;
	pthread_mutex_init(&b->lock, NULL);
	ret = gv_disk_open(&b->disk, cfg->image, cfg->target, cfg->sectors);
	if (ret)
		goto err;
	ret = gv_vm_io(vm, cfg->io_path == GMEM_IO_AUTO, &b->io);
	if (ret)
		goto err;
	dev.base = b->base;
	dev.ctx = b;
	ret = gv_vm_add_pio(vm, &dev);
	if (ret)
		goto err;
	*out = b;
	return 0;

err:
	gv_blk_free(b);
	return ret;
}

int gv_blk_stats(struct gv_blk *b, struct gv_blk_stats *st)
{
	if (!b || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&b->lock);
	st->sectors = b->disk.sectors;
	st->direct = b->disk.dfd >= 0;
	st->status = b->status;
	st->kicks = b->kicks;
	st->reads = b->reads;
	st->writes = b->writes;
	st->bytes_read = b->bytes_read;
	st->bytes_written = b->bytes_written;
	st->ioerrs = b->ioerrs;
	st->badreqs = b->badreqs;
	st->ring_entries = b->entries;
	st->ring_max = GV_BLK_RING_MAX;
	st->max_request_bytes = GV_BLK_MAX_BYTES;
	st->max_kick = b->max_kick;
	pthread_mutex_unlock(&b->lock);
	return gmem_io_stats(b->io, &st->io);
}

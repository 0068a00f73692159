// SPDX-License-Identifier: MIT
/*
 * fuzz_vdev.c - hostile device state from a VM snapshot, against the
 * virtio-blk device's loader (gv_mmio_dev.load, virtio/transport.c).
 *
 * Input: the state record a snapshot would hold for the device (80 bytes
 * of transport and queue state, then its configuration space). The VM is
 * on the test accelerator with 4 MiB of RAM and a virtio-blk device on a
 * 1 MiB memory disk; the input is loaded into the device as a restore
 * would.
 *
 * Oracles:
 *   - a refused state changes nothing: the device saves the same bytes as
 *     before, and the error names a field;
 *   - an accepted state is exactly the input: saving it again gives the
 *     same bytes (nothing half-applied, nothing the loader invented);
 *   - the device then survives its driver: a notify, a status read and a
 *     reset return, and the reset device saves the state of a fresh one.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "virtio/virtio.h"
#include "virtio/virtio_blk.h"
#include "vmm_internal.h"

#define FV_MEM     (4ull << 20)
#define FV_SECTORS 2048u

static uint8_t fv_disk[FV_SECTORS * 512];

static int fv_save(const struct gv_mmio_dev *d, uint8_t *buf)
{
	int n = d->save(d->ctx, buf, GV_DEV_STATE_MAX);

	GM_FUZZ_CHECK(n > 0 && n <= (int)GV_DEV_STATE_MAX, "save returned %d", n);
	return n;
}

static void fv_reg(struct gv_vm *vm, uint64_t off, bool write, uint32_t v)
{
	int ret = gv_test_mmio(vm, 0, GV_VIRTIO_MMIO_BASE + off, write, &v, 4);

	GM_FUZZ_CHECK(ret == 0 || (ret < 0 && ret >= -4095), "MMIO %#llx returned %d",
		      (unsigned long long)off, ret);
}

void gm_fuzz_vdev(const uint8_t *data, size_t size)
{
	struct gv_config cfg = { .mem_size = FV_MEM, .ncpus = 1, .policy = GV_POLICY_CONVERT,
				 .accel = GV_ACCEL_TEST };
	struct gmem_io_target t = { .kind = GMEM_IO_MEMORY, .mem = fv_disk,
				    .mem_len = sizeof(fv_disk) };
	struct gv_vblk_config bc = { .target = &t, .sectors = FV_SECTORS,
				     .io_path = GMEM_IO_BOUNCE };
	uint8_t fresh[GV_DEV_STATE_MAX], after[GV_DEV_STATE_MAX];
	const struct gv_mmio_dev *d;
	struct gv_vblk *vb;
	struct gv_vm *vm;
	int n0, n1, ret;

	GM_FUZZ_CHECK(gv_vm_create(&cfg, &vm) == 0, "gv_vm_create: %s", gv_last_error());
	GM_FUZZ_CHECK(gv_vblk_attach(vm, &bc, &vb) == 0, "attach: %s", gv_last_error());
	GM_FUZZ_CHECK(vm->nmmio == 1 && vm->mmio[0].load && vm->mmio[0].save, "no device");
	d = &vm->mmio[0];
	n0 = fv_save(d, fresh);
	ret = d->load(d->ctx, data, size);
	n1 = fv_save(d, after);
	if (ret) {
		GM_FUZZ_CHECK(ret == -EINVAL, "load returned %d", ret);
		GM_FUZZ_CHECK(strstr(gv_last_error(), "saved state"), "message: %s",
			      gv_last_error());
		GM_FUZZ_CHECK(n1 == n0 && !memcmp(after, fresh, (size_t)n0),
			      "a refused state changed the device");
	} else {
		GM_FUZZ_CHECK((size_t)n1 == size && !memcmp(after, data, size),
			      "the accepted state does not save back as it came");
	}
	/* The driver goes on from there: nothing it does may hurt the VMM. */
	GM_FUZZ_CHECK(gv_vm_start(vm) == 0, "start: %s", gv_last_error());
	fv_reg(vm, GV_VIO_QUEUE_NOTIFY, true, 0);
	fv_reg(vm, GV_VIO_STATUS, false, 0);
	fv_reg(vm, GV_VIO_STATUS, true, 0);                    /* reset */
	n1 = fv_save(d, after);
	GM_FUZZ_CHECK(n1 == n0 && !memcmp(after, fresh, (size_t)n0),
		      "a reset device differs from a fresh one");
	gv_vm_destroy(vm);
}

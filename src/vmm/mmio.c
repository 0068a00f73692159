// SPDX-License-Identifier: MIT
/*
 * mmio.c - MMIO devices: the table and the KVM_EXIT_MMIO dispatcher.
 *
 * Model: as for port devices (pio.c), a device owns a range, here of
 * guest-physical space outside RAM, where KVM finds no memslot and exits.
 * The table is filled before the vCPUs start and read without locks
 * afterwards. One exit is one access of run->mmio.len bytes (1..8): one
 * callback with the offset into the device's range. KVM fills the exit, but
 * the test accelerator and a hostile guest's choice of address are checked
 * as if they could be anything: the access must lie wholly inside one
 * device.
 *
 * On a VM restored from a snapshot, a device added at the base of one of
 * the snapshot's device records is given that record's state (its load()
 * checks it) before it joins the table; gv_vm_start() refuses a VM with a
 * record no device claimed.
 */
#include <errno.h>
#include <string.h>

#include "vmm_internal.h"

static bool gv_mmio_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/* The snapshot record at @dev's base, if the VM was restored with one:
 * loaded into the device and claimed. 0 when there is none. */
static int gv_mmio_claim_state(struct gv_vm *vm, const struct gv_mmio_dev *dev)
{
	const char *name = dev->name ? dev->name : "";
	struct gv_snap_dev *r = NULL;
	int ret;

	for (unsigned i = 0; i < vm->nsnap_dev && !r; i++)
		if (vm->snap_dev[i].base == dev->base)
			r = &vm->snap_dev[i];
	if (!r)
		return 0;
	if (r->claimed || strcmp(r->name, name)) {
		gv_set_error("the snapshot has %s at %#llx, not %s", r->name,
			     (unsigned long long)r->base, name);
		return -EINVAL;
	}
	if (!dev->load) {
		gv_set_error("%s cannot load the state the snapshot holds for it", name);
		return -EOPNOTSUPP;
	}
	ret = dev->load(dev->ctx, r->state, r->len);
	if (ret)
		return ret;
	r->claimed = true;
	return 0;
}

bool gv_mmio_unclaimed(const struct gv_vm *vm, const struct gv_snap_dev **rec)
{
	for (unsigned i = 0; i < vm->nsnap_dev; i++) {
		if (!vm->snap_dev[i].claimed) {
			*rec = &vm->snap_dev[i];
			return true;
		}
	}
	return false;
}

int gv_vm_add_mmio(struct gv_vm *vm, const struct gv_mmio_dev *dev)
{
	int ret;

	if (vm->started) {
		gv_set_error("devices must be added before the guest starts");
		return -EBUSY;
	}
	if (!dev || !dev->len || !dev->read || !dev->write || dev->base + dev->len < dev->base) {
		gv_set_error("bad MMIO device (empty or wrapping range, or no callback)");
		return -EINVAL;
	}
	if (gv_mmio_overlap(dev->base, dev->len, 0, vm->cfg.mem_size)) {
		gv_set_error("MMIO range %#llx+%#llx of %s overlaps guest RAM",
			     (unsigned long long)dev->base, (unsigned long long)dev->len,
			     dev->name ? dev->name : "device");
		return -EEXIST;
	}
	for (unsigned i = 0; i < vm->nmmio; i++) {
		const struct gv_mmio_dev *o = &vm->mmio[i];

		if (gv_mmio_overlap(dev->base, dev->len, o->base, o->len)) {
			gv_set_error("MMIO range of %s overlaps %s", dev->name ? dev->name : "device",
				     o->name ? o->name : "?");
			return -EEXIST;
		}
	}
	if (vm->nmmio == GV_MAX_MMIO) {
		gv_set_error("more than %u MMIO devices", GV_MAX_MMIO);
		return -ENOSPC;
	}
	ret = gv_mmio_claim_state(vm, dev);
	if (ret)
		return ret;
	vm->mmio[vm->nmmio++] = *dev;
	return 0;
}

static const struct gv_mmio_dev *gv_mmio_find(const struct gv_vm *vm, uint64_t gpa,
					      unsigned len)
{
	for (unsigned i = 0; i < vm->nmmio; i++) {
		const struct gv_mmio_dev *d = &vm->mmio[i];

		if (gpa >= d->base && gpa - d->base < d->len && len <= d->len - (gpa - d->base))
			return d;
	}
	return NULL;
}

int gv_mmio_dispatch(struct gv_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct gv_vm *vm = vcpu->vm;
	uint64_t gpa = run->mmio.phys_addr;
	unsigned len = run->mmio.len;
	const struct gv_mmio_dev *dev;
	int ret;

	dev = len && len <= sizeof(run->mmio.data) ? gv_mmio_find(vm, gpa, len) : NULL;
	if (!dev) {
		gv_vm_stop_with(vm, vcpu, GV_STOP_FAULT, -EFAULT, 0,
				"vCPU %u: MMIO %s of %u bytes at gpa %#llx: outside guest RAM "
				"and no device there", vcpu->id,
				run->mmio.is_write ? "write" : "read", len,
				(unsigned long long)gpa);
		return -EFAULT;
	}
	ret = run->mmio.is_write ? dev->write(vcpu, gpa - dev->base, run->mmio.data, len, dev->ctx)
				 : dev->read(vcpu, gpa - dev->base, run->mmio.data, len, dev->ctx);
	if (ret) {
		gv_vm_stop_with(vm, vcpu, GV_STOP_ERROR, ret, 0,
				"vCPU %u: device %s failed on an MMIO %s of %u bytes at %#llx: %s",
				vcpu->id, dev->name ? dev->name : "?",
				run->mmio.is_write ? "write" : "read", len,
				(unsigned long long)gpa, strerror(-ret));
		return ret;
	}
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * pio.c - port-I/O devices: the table, the KVM_EXIT_IO dispatcher, and the
 * two devices every guest has (console, exit).
 *
 * Model: a device owns a port range; the table is filled before the vCPUs
 * start and read without locks afterwards. A KVM_EXIT_IO carries `count`
 * elements of `size` bytes at run + data_offset (a REP string instruction
 * gives count > 1): each element is one callback, in order, as on hardware.
 * The console collects text for the caller and hands whole lines to the
 * sink; it takes a REP OUTS (the runtime's whole printf line) in one
 * piece, so two vCPUs printing at once interleave by line, not by byte.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm_internal.h"

int gv_vm_add_pio(struct gv_vm *vm, const struct gv_pio_dev *dev)
{
	uint32_t end;

	if (vm->started) {
		gv_set_error("devices must be added before the guest starts");
		return -EBUSY;
	}
	if (!dev || !dev->len || (!dev->in && !dev->out) ||
	    (uint32_t)dev->base + dev->len > 0x10000) {
		gv_set_error("bad port device (empty or wrapping range, or no callback)");
		return -EINVAL;
	}
	end = (uint32_t)dev->base + dev->len;
	for (unsigned i = 0; i < vm->npio; i++) {
		const struct gv_pio_dev *o = &vm->pio[i];

		if (dev->base < (uint32_t)o->base + o->len && o->base < end) {
			gv_set_error("ports %#x-%#x of %s overlap %s", dev->base, end - 1,
				     dev->name ? dev->name : "device", o->name ? o->name : "?");
			return -EEXIST;
		}
	}
	if (vm->npio == GV_MAX_PIO) {
		gv_set_error("more than %u port devices", GV_MAX_PIO);
		return -ENOSPC;
	}
	vm->pio[vm->npio++] = *dev;
	return 0;
}

static const struct gv_pio_dev *gv_pio_find(const struct gv_vm *vm, uint16_t port)
{
	for (unsigned i = 0; i < vm->npio; i++)
		if (port >= vm->pio[i].base && port - vm->pio[i].base < vm->pio[i].len)
			return &vm->pio[i];
	return NULL;
}

/* A device callback's result: a failure stops the guest naming the device. */
static int gv_pio_result(struct gv_vcpu *vcpu, const struct gv_pio_dev *dev, int ret)
{
	if (ret)
		gv_vm_stop_with(vcpu->vm, vcpu, GV_STOP_ERROR, ret, 0,
				"vCPU %u: device %s failed on port %#x: %s", vcpu->id,
				dev->name ? dev->name : "?", vcpu->run->io.port, strerror(-ret));
	return ret;
}

int gv_pio_dispatch(struct gv_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct gv_vm *vm = vcpu->vm;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	const struct gv_pio_dev *dev = gv_pio_find(vm, run->io.port);
	unsigned size = run->io.size;

	if (!dev || (out ? !dev->out : !dev->in)) {
		gv_vm_stop_with(vm, vcpu, GV_STOP_FAULT, -ENODEV, 0,
				"vCPU %u: port %s %#x (%u bytes): no device %s it",
				vcpu->id, out ? "write to" : "read from", run->io.port, size,
				out ? "takes writes at" : "answers reads at");
		return -ENODEV;
	}
	/* The data area lies inside the kvm_run mapping; KVM vouches for
	 * data_offset + count * size, but check rather than trust. */
	if ((uint64_t)run->io.data_offset + (uint64_t)run->io.count * size > vm->run_size) {
		gv_vm_stop_with(vm, vcpu, GV_STOP_ERROR, -EIO, 0,
				"vCPU %u: I/O exit data outside kvm_run", vcpu->id);
		return -EIO;
	}
	if (out && dev->outs && run->io.count > 1)
		return gv_pio_result(vcpu, dev, dev->outs(vcpu, run->io.port, data, size,
							  run->io.count, dev->ctx));
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		int ret = out ? dev->out(vcpu, run->io.port, data, size, dev->ctx)
			      : dev->in(vcpu, run->io.port, data, size, dev->ctx);

		if (ret)
			return gv_pio_result(vcpu, dev, ret);
	}
	return 0;
}

/* ---- console ------------------------------------------------------------ */

/* Hand the unsent complete lines (or, with @all, everything unsent) to the
 * sink. Caller holds con_lock. */
static void gv_console_emit_locked(struct gv_vm *vm, bool all)
{
	size_t end = vm->con_len;

	if (!all) {
		while (end > vm->con_line && vm->con[end - 1] != '\n')
			end--;
	}
	if (end > vm->con_line && vm->cfg.console)
		vm->cfg.console(vm->cfg.console_ctx, vm->con + vm->con_line, end - vm->con_line);
	vm->con_line = end;
}

/* Append the low byte of each of @count elements of @size bytes (an OUTB
 * is what the runtime issues; a wider one carries its character there) and
 * hand on the lines they finish. Caller holds con_lock. */
static int gv_console_put_locked(struct gv_vm *vm, const char *data, unsigned size,
				 uint32_t count)
{
	bool newline = false;

	if (vm->con_len + count + 1 > vm->con_cap) {
		size_t cap = vm->con_cap ? vm->con_cap : 4096;
		char *p;

		while (cap < vm->con_len + count + 1)
			cap *= 2;
		if (cap > GV_CONSOLE_MAX)
			return 0;       /* a runaway guest: keep what we have */
		p = realloc(vm->con, cap);
		if (!p)
			return -ENOMEM;
		vm->con = p;
		vm->con_cap = cap;
	}
	for (uint32_t i = 0; i < count; i++, data += size) {
		vm->con[vm->con_len++] = *data;
		newline |= *data == '\n';
	}
	vm->con[vm->con_len] = '\0';
	if (newline)
		gv_console_emit_locked(vm, false);
	return 0;
}

static int gv_console_outs(struct gv_vcpu *vcpu, uint16_t port, const void *data,
			   unsigned size, uint32_t count, void *ctx)
{
	struct gv_vm *vm = vcpu->vm;
	int ret;

	(void)port, (void)ctx;
	/* Under the lock for the whole string: another vCPU's text goes
	 * before or after it, not inside. */
	pthread_mutex_lock(&vm->con_lock);
	ret = gv_console_put_locked(vm, data, size, count);
	pthread_mutex_unlock(&vm->con_lock);
	return ret;
}

static int gv_console_out(struct gv_vcpu *vcpu, uint16_t port, const void *data,
			  unsigned size, void *ctx)
{
	return gv_console_outs(vcpu, port, data, size, 1, ctx);
}

void gv_console_flush(struct gv_vm *vm)
{
	pthread_mutex_lock(&vm->con_lock);
	if (vm->con)
		gv_console_emit_locked(vm, true);
	pthread_mutex_unlock(&vm->con_lock);
}

const char *gv_vm_console(struct gv_vm *vm, size_t *len)
{
	const char *s;

	pthread_mutex_lock(&vm->con_lock);
	s = vm->con ? vm->con : "";
	if (len)
		*len = vm->con_len;
	pthread_mutex_unlock(&vm->con_lock);
	return s;
}

/* ---- exit --------------------------------------------------------------- */

static int gv_exit_out(struct gv_vcpu *vcpu, uint16_t port, const void *data,
		       unsigned size, void *ctx)
{
	uint32_t status = 0;

	(void)port, (void)ctx;
	memcpy(&status, data, size < sizeof(status) ? size : sizeof(status));
	gv_vm_stop_with(vcpu->vm, vcpu, GV_STOP_EXIT, 0, (int)status,
			"vCPU %u: guest exited with status %d", vcpu->id, (int)status);
	return 0;
}

int gv_pio_builtin(struct gv_vm *vm)
{
	static const struct gv_pio_dev devs[] = {
		{ .name = "console", .base = GV_PORT_CONSOLE, .len = 1, .out = gv_console_out,
		  .outs = gv_console_outs },
		{ .name = "exit", .base = GV_PORT_EXIT, .len = 1, .out = gv_exit_out },
		{ .name = "hypercall", .base = GV_PORT_HCALL, .len = 1, .in = gv_hcall_in },
	};

	for (unsigned i = 0; i < sizeof(devs) / sizeof(devs[0]); i++) {
		int ret = gv_vm_add_pio(vm, &devs[i]);

		if (ret)
			return ret;
	}
	return 0;
}

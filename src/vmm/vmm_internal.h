/* SPDX-License-Identifier: MIT */
/*
 * vmm_internal.h - struct gv_vm, struct gv_vcpu and the helpers shared by
 * the files of src/vmm.
 *
 * Lock rule: vm->lock protects the run state (started, pause/stop requests,
 * each vCPU's phase, the result). The device table is written only before
 * the vCPUs start, so vCPU threads read it without a lock. The console has
 * its own lock, taken with nothing else held.
 */
#ifndef GV_VMM_INTERNAL_H
#define GV_VMM_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>

#include "vmm.h"

/* Boot structures in [0, GV_LOAD_MIN). */
#define GV_GDT_GPA   0x1000ull
#define GV_TSS_GPA   0x1800ull
#define GV_PML4_GPA  0x2000ull
#define GV_PDPT_GPA  0x3000ull
#define GV_PD_GPA    0x4000ull  /* 4 page directories: 4 GiB of 2 MiB pages */

#define GV_SEL_CODE  0x08
#define GV_SEL_DATA  0x10
#define GV_SEL_TSS   0x18

#define GV_CONSOLE_MAX (1u << 20)  /* collected console text is capped here */

struct gv_accel_ops;

/* dma.c: the guest's pinned ranges (GV_HC_IO_PIN). */
struct gv_dma_range {
	uint64_t gpa, len;      /* len 0: a free slot                          */
	uint32_t count;         /* pins of this exact range the guest holds    */
};

struct gv_dma {
	pthread_mutex_t lock;   /* taken before the memory's own lock (gmem_pin) */
	struct gv_dma_range r[GV_DMA_RANGES];
	unsigned held, peak;    /* slots in use, and the most ever             */
	uint64_t refused;       /* pins refused by the table's limits          */
};

enum gv_phase {
	GV_VCPU_IDLE,           /* thread not started                          */
	GV_VCPU_RUNNING,        /* in or around KVM_RUN                         */
	GV_VCPU_PAUSED,         /* parked in gv_vcpu_checkpoint, state valid    */
	GV_VCPU_DONE,           /* thread finished (halt, stop, fault)          */
};

struct gv_vcpu {
	struct gv_vm *vm;
	unsigned id;
	int fd;                 /* kvm: the vCPU fd; test: -1                  */
	struct kvm_run *run;    /* the exit being handled (accel/accel.h)      */
	void *accel;            /* the accelerator's own per-vCPU state        */
	pthread_t thread;
	enum gv_phase phase;    /* vm->lock */
	bool spawned;           /* thread created: written by the starter only */
	uint64_t exits;         /* KVM exits handled (this thread only)        */
};

struct gv_vm {
	struct gv_config cfg;
	const struct gv_accel_ops *accel;
	int kvm_fd, vm_fd;      /* kvm accelerator only; -1 under test         */
	size_t run_size;
	struct gmem *g;
	struct gmem_info info;
	bool attrs;             /* mirror into KVM_SET_MEMORY_ATTRIBUTES       */
	uint64_t io_mirrored, mirror_errors;  /* gv_mirror_io: atomic          */
	bool exit_hypercall;    /* KVM exits on KVM_HC_MAP_GPA_RANGE          */
	uint64_t map_gpa_ranges;  /* ... conversions done for it: atomic      */
	bool loaded;
	uint64_t entry;

	struct gv_pio_dev pio[GV_MAX_PIO];
	unsigned npio;
	struct gv_mmio_dev mmio[GV_MAX_MMIO];
	unsigned nmmio;
	/* Restored from a snapshot: the device records its devices claim as
	 * they are added (mmio.c); every one must be claimed before start. */
	struct gv_snap_dev {
		char name[GV_DEV_NAME_MAX + 1];
		uint64_t base;
		const uint8_t *state;   /* into snap_dev_buf */
		uint32_t len;
		bool claimed;
	} snap_dev[GV_MAX_MMIO];
	unsigned nsnap_dev;
	uint8_t *snap_dev_buf;
	struct gmem_io *io;     /* gv_vm_io: made before start, freed at destroy */
	struct gv_dma dma;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool started, joined;
	bool pause_req, stop_req;
	struct gv_result result;  /* first stop wins */

	pthread_mutex_t con_lock;
	char *con;              /* collected console text, NUL-terminated      */
	size_t con_len, con_cap, con_line;  /* con_line: start of unsent line  */

	unsigned ncpus;
	struct gv_vcpu cpu[];
};

/*
 * Layers, bottom up (tests/test_layers.c holds the files to it: no file
 * calls one that calls it back):
 *   report.c, accel/                  errors, the accelerators
 *   guestmem.c, stop.c                RAM and its access; stopping the guest
 *   dma.c, disk.c, hcall.c            guest DMA pins, disk images, hypercalls
 *   pio.c, mmio.c                     the buses (pio.c adds the built-in ports)
 *   virtio/                           devices: they add themselves to a bus,
 *                                     which calls them through pointers only
 *   vcpu.c, boot.c, elf.c, testdrv.c  exit dispatch and run loop, boot, loader
 *   vm.c, vmsnap.c                    the VM
 */

/* guestmem.c: tests stand in for KVM features this host lacks (memory
 * attributes, cap 233) by answering the VM ioctls of the attribute mirror
 * first: return true with *ret set (errno too when -1) to answer, false to
 * let the kernel answer. NULL (the default) removes the hook. */
typedef bool (*gv_ioctl_hook_fn)(int fd, unsigned long req, void *arg, int *ret);
void gv_set_ioctl_hook(gv_ioctl_hook_fn hook);
/* Open the VM's RAM and bind it to memslot 0 (gv_vm_create). */
int  gv_mem_open(struct gv_vm *vm);
/* Zero guest memory as the hypervisor (the ELF loader's bss). */
int  gv_hv_zero(struct gv_vm *vm, uint64_t gpa, uint64_t len);

/* report.c */
void gv_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void gv_vset_error(const char *fmt, va_list ap);

/* boot.c: boot structures into private memory, vCPU start state. */
int  gv_boot_write_tables(struct gv_vm *vm);
int  gv_boot_vcpu(struct gv_vcpu *vcpu, uint64_t entry);
/* Just the CPUID part of it (a restored vCPU: its registers come saved). */
int  gv_boot_cpuid(struct gv_vcpu *vcpu);

/* stop.c */
struct gv_vcpu *gv_vm_vcpu(struct gv_vm *vm, unsigned id);
/* Make every running vCPU leave the accelerator's run() soon. Caller holds
 * vm->lock. */
void gv_kick_all_locked(struct gv_vm *vm);
/* Record why the guest stops (first caller wins) and kick every vCPU. */
void gv_vm_stop_with(struct gv_vm *vm, struct gv_vcpu *vcpu, enum gv_stop why,
                     int err, int status, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/* vcpu.c */
int  gv_vcpu_create(struct gv_vm *vm, unsigned id);
void gv_vcpu_destroy(struct gv_vcpu *vcpu);
/* Handle the exit in vcpu->run: 0 resume, 1 this vCPU halted, < 0 stop
 * (the result is already recorded). Exposed for tests that feed it exits
 * the kernel here never raises (memory faults, MMIO). */
int  gv_vcpu_handle_exit(struct gv_vcpu *vcpu);

/* pio.c */
int  gv_pio_builtin(struct gv_vm *vm);
int  gv_pio_dispatch(struct gv_vcpu *vcpu);
void gv_console_flush(struct gv_vm *vm);

/* mmio.c: the KVM_EXIT_MMIO dispatcher (0 resume, < 0 the guest stopped). */
int  gv_mmio_dispatch(struct gv_vcpu *vcpu);
bool gv_mmio_unclaimed(const struct gv_vm *vm, const struct gv_snap_dev **rec);

/* hcall.c: the GV_PORT_HCALL device's in() callback, and KVM_EXIT_HYPERCALL
 * (KVM_HC_MAP_GPA_RANGE). */
int  gv_hcall_in(struct gv_vcpu *vcpu, uint16_t port, void *data, unsigned size, void *ctx);
int  gv_hcall_exit(struct gv_vcpu *vcpu);

/* dma.c: GV_HC_IO_PIN and GV_HC_IO_UNPIN (rules in gv_abi.h). Release
 * drops every pin the guest still holds (at destroy, before the I/O
 * context goes). */
void gv_dma_init(struct gv_dma *d);
int  gv_dma_pin(struct gv_vm *vm, uint64_t gpa, uint64_t len);
int  gv_dma_unpin(struct gv_vm *vm, uint64_t gpa, uint64_t len);
void gv_dma_release(struct gv_vm *vm);
void gv_dma_fini(struct gv_dma *d);

#endif /* GV_VMM_INTERNAL_H */

/* SPDX-License-Identifier: MIT */
/*
 * vmm.h - gv, the micro-VMM behind `gmem vm`: a VM whose RAM is one gmem
 * memory, a 64-bit guest program loaded from an ELF file, and N vCPUs, each
 * on its own thread, run by KVM or by the test accelerator (accel/accel.h).
 *
 * Model:
 *   - RAM is a gmem memory opened on the VM's own fd (kvm backend), all
 *     private at start, bound to memslot 0 with KVM_SET_USER_MEMORY_REGION2 +
 *     KVM_MEM_GUEST_MEMFD, the KVM view as the slot's userspace address.
 *   - The VMM writes the guest image and the boot structures into private
 *     memory through temporary mappings (gmem_kmap): nothing is shared to load.
 *   - Conversions go through gv_vm_convert(), which also mirrors the result
 *     into KVM's memory attributes where the VM supports them (cap 233).
 *   - Device code reaches guest memory only through the host view
 *     (gmem_host(), gv_dev_read()): a page the guest keeps private faults.
 *     The hypervisor's own accesses (loader, this file's gv_hv_*) use
 *     temporary mappings instead.
 *   - Guest ABI (ports, hypercalls, start state): gv_abi.h.
 *
 * Errors are negative errno values; the failing call leaves a one-line
 * reason in gv_last_error() (per thread). Once the guest runs, what stopped
 * it is in struct gv_result.
 *
 * Lifecycle: gv_vm_create -> [gv_vm_add_pio ...] -> gv_vm_load_* ->
 * gv_vm_start -> [gv_vm_pause / gv_vcpu_get_state / gv_vcpu_set_state /
 * gv_vm_resume ...] -> gv_vm_wait -> gv_vm_destroy.  gv_vm_run = start + wait.
 */
#ifndef GV_VMM_H
#define GV_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#include <gmem.h>

#include "gv_abi.h"

#define GV_MAX_CPUS 64u
#define GV_MAX_PIO  32u         /* port-I/O devices per VM */

struct gv_vm;
struct gv_vcpu;

/* What to do on KVM_EXIT_MEMORY_FAULT (the guest touched a page in the
 * state it does not have; raised by kernels with private memory attributes). */
enum gv_fault_policy {
	GV_POLICY_CONVERT,      /* convert the range to what the guest wanted, resume */
	GV_POLICY_STOP,         /* stop the guest with a report                      */
};

/* What runs the vCPUs (src/vmm/accel/accel.h). */
enum gv_accel {
	GV_ACCEL_KVM = 0,       /* /dev/kvm: the guest program executes           */
	GV_ACCEL_TEST,          /* nothing executes: a driver posts the exits a   */
	                        /* guest would cause (gv_test_*, below), on any   */
	                        /* host; RAM is a memfd memory                    */
	GV_ACCEL_USER,          /* the guest program's instructions execute in    */
	                        /* user mode in this process, privileged ones     */
	                        /* trapped into exits (accel/user.c): NO          */
	                        /* isolation, for trusted test programs on hosts  */
	                        /* without KVM; one VM per process; RAM a memfd   */
};

struct gv_config {
	uint64_t mem_size;      /* RAM: a multiple of 2 MiB, at most GV_MAP_LIMIT */
	unsigned ncpus;         /* 1..GV_MAX_CPUS                                  */
	enum gv_fault_policy policy;
	/* Console sink, called from vCPU threads with complete lines (and the
	 * unterminated tail when the guest stops); may be NULL. Console text is
	 * also collected, see gv_vm_console(). */
	void (*console)(void *ctx, const char *text, size_t len);
	void *console_ctx;
	/* Optional: open the guest RAM instead of a fresh all-private
	 * guest_memfd (vmsnap.c restores a snapshot here). Called once with the
	 * new VM's fd; must open exactly @size bytes. A memfd memory is bound
	 * as a plain memslot (no guest_memfd), so that a lazy restore can serve
	 * the guest's first touches through userfaultfd. */
	int (*open_mem)(void *ctx, int vm_fd, uint64_t size, struct gmem **out);
	void *open_mem_ctx;
	enum gv_accel accel;
};

enum gv_stop {
	GV_STOP_NONE = 0,       /* still running / never started                   */
	GV_STOP_EXIT,           /* the guest wrote GV_PORT_EXIT: status is set     */
	GV_STOP_HALT,           /* every vCPU executed HLT without an exit          */
	GV_STOP_FAULT,          /* the guest faulted: report holds exit + registers */
	GV_STOP_ERROR,          /* the VMM failed (err, report)                     */
	GV_STOP_REQUESTED,      /* gv_vm_stop()                                     */
};

struct gv_result {
	enum gv_stop why;
	int status;             /* GV_STOP_EXIT: the guest's exit status            */
	int err;                /* GV_STOP_FAULT/ERROR: negative errno              */
	int cpu;                /* the vCPU that stopped the guest, or -1           */
	uint32_t exit_reason;   /* its last KVM exit reason                         */
	char report[4096];      /* one-line reason, then registers for a fault     */
};

/* ---- VM lifecycle ------------------------------------------------------ */

/* -EOPNOTSUPP when /dev/kvm is missing or unusable (gv_last_error() says
 * why), -EINVAL on a bad config. */
int  gv_vm_create(const struct gv_config *cfg, struct gv_vm **out);
/* Stops and joins the vCPUs if they still run, then frees everything. */
void gv_vm_destroy(struct gv_vm *vm);

/* Load an ELF64 x86-64 executable (see gv_elf_parse for what is refused:
 * -ENOEXEC malformed, -EFBIG does not fit in RAM) and set up every vCPU to
 * start at its entry. Once per VM, before gv_vm_start. */
int  gv_vm_load_elf(struct gv_vm *vm, const void *buf, size_t len);
int  gv_vm_load_file(struct gv_vm *vm, const char *path);

int  gv_vm_start(struct gv_vm *vm);                     /* spawn the vCPU threads */
int  gv_vm_wait(struct gv_vm *vm, struct gv_result *res);  /* join them           */
int  gv_vm_run(struct gv_vm *vm, struct gv_result *res);   /* start + wait        */
/* Ask every vCPU to stop (GV_STOP_REQUESTED unless something stopped first). */
void gv_vm_stop(struct gv_vm *vm);
/* Something stopped the guest (the exit port, a fault, gv_vm_stop). */
bool gv_vm_stopped(struct gv_vm *vm);

/* ---- What device code and tools may reach ------------------------------ */

struct gmem *gv_vm_gmem(struct gv_vm *vm);
int  gv_vm_fd(const struct gv_vm *vm);
unsigned gv_vm_ncpus(const struct gv_vm *vm);
uint64_t gv_vm_mem_size(const struct gv_vm *vm);
/* Console text collected so far (NUL-terminated; valid until the next
 * guest output or gv_vm_destroy; read it once the guest has stopped). */
const char *gv_vm_console(struct gv_vm *vm, size_t *len);
/* How this VM converts memory, in one line each (for --verbose). */
struct gv_paths {
	bool inplace;           /* kernel converts in place (cap 249)            */
	bool dmap_removal;      /* kernel removes private pages from direct map  */
	bool attributes;        /* KVM_SET_MEMORY_ATTRIBUTES mirrored (cap 233)  */
	uint64_t io_mirrored;   /* conversions by the I/O layer mirrored         */
	uint64_t mirror_errors; /* ... that KVM refused (mirror stale there)     */
	bool map_gpa_range;     /* guest converts by KVM_HC_MAP_GPA_RANGE         */
	uint64_t map_gpa_ranges;/* ... conversions it asked for and got          */
	const char *accel;      /* "kvm" or "test"                               */
	const char *conversion; /* "inplace (found by ioctl)" or "host view"     */
};
void gv_vm_paths(const struct gv_vm *vm, struct gv_paths *p);

/* What a guest may hold of the VMM, and how much of it it holds (for the
 * VM report). The virtio disk's limits are in struct gv_vblk_stats. */
struct gv_limits {
	unsigned dma_ranges;        /* GV_DMA_RANGES: pinned ranges at once       */
	uint64_t dma_max_bytes;     /* GV_DMA_MAX_BYTES: longest pinned range     */
	unsigned dma_pins_max;      /* GV_DMA_PINS_MAX: pins of one range         */
	unsigned dma_ranges_held;   /* ... held now                               */
	unsigned dma_ranges_peak;   /* ... most held at once                      */
	uint64_t dma_refused;       /* pins refused by these limits               */
	uint64_t view_mapping_budget;   /* the memory's own share of mappings     */
	uint64_t view_mappings;         /* ... in use now                         */
	uint64_t hostio_max;        /* GV_HOSTIO_MAX, GV_HOST_READ_MAX            */
	uint64_t host_read_max;
};
void gv_vm_limits(struct gv_vm *vm, struct gv_limits *lim);

/* Convert [gpa, gpa + len) and mirror the result into KVM's memory
 * attributes where the VM has them. Same contract as gmem_convert(): all or
 * nothing, -EAGAIN + *busy_gpa when a page is pinned or mapped. */
int  gv_vm_convert(struct gv_vm *vm, uint64_t gpa, uint64_t len, enum gmem_state to,
                   uint64_t *busy_gpa);

/* The VM's one I/O context on its memory (gmem_io_create), made on first
 * use, for devices moving data to and from guest buffers whatever their
 * state. With @calibrate the context is measured for GMEM_IO_AUTO (once;
 * 0.1-0.3 s); without, it is made uncalibrated, which the fixed paths do
 * not need. Before gv_vm_start only (-EBUSY after). gv_vm_destroy destroys
 * it after releasing the devices and before closing the memory. */
int  gv_vm_io(struct gv_vm *vm, bool calibrate, struct gmem_io **out);

/* Device-code read through the host view: what a device may see. Never
 * faults the process: -EFAULT if any byte is not reachable (a private page),
 * -EINVAL outside RAM. */
int  gv_dev_read(struct gv_vm *vm, uint64_t gpa, void *buf, size_t len);
int  gv_dev_write(struct gv_vm *vm, uint64_t gpa, const void *buf, size_t len);

/* Hypervisor access to any page, private or not, through temporary mappings
 * (where the kernel forbids those, a brief in-place share). Not for device
 * code: this is the loader's and the snapshot/debug path. */
int  gv_hv_read(struct gv_vm *vm, uint64_t gpa, void *buf, size_t len);
int  gv_hv_write(struct gv_vm *vm, uint64_t gpa, const void *buf, size_t len);

/* ---- Port-I/O devices ---------------------------------------------------
 *
 * A device claims [base, base + len) of the 16-bit port space. For every
 * access by the guest (a string instruction is split into its elements) the
 * VMM calls in() or out() on the vCPU's thread with size 1, 2 or 4; in()
 * fills *data (size bytes, little endian). Several vCPUs may call a device at
 * once: the device locks what it shares. A callback returns 0 to resume the
 * guest, or a negative errno to stop it (GV_STOP_ERROR, the device's name and
 * the errno in the report). A callback may call gv_vm_convert, gmem_* on
 * gv_vm_gmem(), gv_dev_*, gv_vcpu_get_regs and gv_vm_stop; it must not call
 * gv_vm_pause (-EDEADLK: it runs on a vCPU thread).
 * Ports without a device stop the guest with a report.
 * Built in: GV_PORT_CONSOLE, GV_PORT_EXIT, GV_PORT_HCALL (gv_abi.h).
 */
struct gv_pio_dev {
	const char *name;
	uint16_t base;
	uint16_t len;
	int (*in)(struct gv_vcpu *vcpu, uint16_t port, void *data, unsigned size, void *ctx);
	int (*out)(struct gv_vcpu *vcpu, uint16_t port, const void *data, unsigned size,
		   void *ctx);
	/* Optional, beside out(): a REP OUTS whole, @count elements of @size
	 * bytes in one call, for a device whose elements belong together (the
	 * console keeps each line a guest prints in one piece while other
	 * vCPUs print). Without it each element is one out() call. */
	int (*outs)(struct gv_vcpu *vcpu, uint16_t port, const void *data, unsigned size,
		    uint32_t count, void *ctx);
	/* Optional: gv_vm_destroy calls it once the vCPUs are joined, before
	 * the VM's I/O context and memory go, in reverse order of adding. */
	void (*release)(void *ctx);
	void *ctx;
};

/* Before gv_vm_start only (-EBUSY after); -EEXIST if the range overlaps a
 * registered one, -ENOSPC past GV_MAX_PIO, -EINVAL on an empty or wrapping
 * range or a device with neither callback. The struct is copied. */
int  gv_vm_add_pio(struct gv_vm *vm, const struct gv_pio_dev *dev);

/* ---- MMIO devices -------------------------------------------------------
 *
 * A device claims [base, base + len) of guest-physical space outside RAM
 * (where an access is a KVM_EXIT_MMIO). For every access the VMM calls
 * read() or write() on the vCPU's thread with the offset into the range and
 * the access's size (1..8 bytes; an access that runs past the range's end
 * stops the guest). A callback returns 0, or a negative errno that stops
 * the guest with a report naming the device; the same rules as for port
 * devices apply to what it may call. Accesses where no device is stop the
 * guest. Before gv_vm_start only (-EBUSY after); -EEXIST on overlap with a
 * device or RAM, -ENOSPC past GV_MAX_MMIO, -EINVAL on an empty or wrapping
 * range.
 */
#define GV_MAX_MMIO 8u

/*
 * Device state in VM snapshots (vmsnap.c). save() writes the device's
 * state (at most GV_DEV_STATE_MAX bytes into @buf) and returns its length
 * or a negative errno; it is called with every vCPU paused, so no callback
 * of the device runs. load() is given that state when the device is added
 * to a VM restored from a snapshot that holds a record for its name and
 * base; the bytes come from a file and are hostile: load() checks every
 * field, returns -EINVAL (gv_last_error() naming the field) on any it
 * cannot hold, and changes nothing then. A VM whose devices lack save() is
 * not saved (-EOPNOTSUPP); a record whose device was not added stops
 * gv_vm_start() (-ENODEV). Device names are at most GV_DEV_NAME_MAX bytes.
 */
#define GV_DEV_STATE_MAX 512u
#define GV_DEV_NAME_MAX  15u

struct gv_mmio_dev {
	const char *name;
	uint64_t base, len;
	int (*read)(struct gv_vcpu *vcpu, uint64_t off, void *data, unsigned size, void *ctx);
	int (*write)(struct gv_vcpu *vcpu, uint64_t off, const void *data, unsigned size,
		     void *ctx);
	void (*release)(void *ctx);     /* as for gv_pio_dev */
	int (*save)(void *ctx, void *buf, size_t cap);          /* optional */
	int (*load)(void *ctx, const void *buf, size_t len);    /* optional */
	void *ctx;
};

int  gv_vm_add_mmio(struct gv_vm *vm, const struct gv_mmio_dev *dev);

struct gv_vm *gv_vcpu_vm(const struct gv_vcpu *vcpu);
unsigned gv_vcpu_id(const struct gv_vcpu *vcpu);
/* The vCPU's registers as of the exit being handled (in a callback). The
 * registers of a vCPU inside a port read reflect the state before it. */
int  gv_vcpu_get_regs(struct gv_vcpu *vcpu, struct kvm_regs *regs);

/* ---- Pause, resume, vCPU state ------------------------------------------
 *
 * gv_vm_pause() kicks every running vCPU out of KVM_RUN, lets KVM complete
 * any I/O it had pending (KVM_RUN with immediate_exit, as the KVM API asks
 * before reading state) and returns once each vCPU is parked or has stopped.
 * Then the vCPU state may be read and written, guest memory is stable (no
 * vCPU runs; devices are only called from vCPU threads), and gv_vm_resume()
 * lets them continue. Pausing a paused VM, or one not started, is a no-op.
 * From a vCPU thread (a device callback): -EDEADLK.
 */
int  gv_vm_pause(struct gv_vm *vm);
int  gv_vm_resume(struct gv_vm *vm);

/* Everything the guests here keep in a vCPU: general and segment/control
 * registers, x87/SSE state, and the MP state. */
struct gv_vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_mp_state mp;
};

/* Allowed while the vCPU is not in KVM_RUN: VM paused, not started, or
 * stopped; -EBUSY otherwise, -EINVAL for a bad index. */
int  gv_vcpu_get_state(struct gv_vm *vm, unsigned cpu, struct gv_vcpu_state *st);
int  gv_vcpu_set_state(struct gv_vm *vm, unsigned cpu, const struct gv_vcpu_state *st);

/* ---- ELF loading, for tests and tools ----------------------------------- */

#define GV_ELF_MAX_SEGS 16u
#define GV_ELF_MAX_SIZE (64ull << 20)

struct gv_elf_seg {
	uint64_t gpa;           /* load address (p_paddr == p_vaddr)  */
	uint64_t filesz;        /* bytes from the file                */
	uint64_t memsz;         /* bytes in memory (rest zeroed)      */
	uint64_t offset;        /* file offset of the bytes           */
	uint32_t flags;         /* PF_R/W/X                           */
};

struct gv_elf_image {
	uint64_t entry;
	unsigned nseg;
	struct gv_elf_seg seg[GV_ELF_MAX_SEGS];
};

/* Validate @len bytes of an ELF file for a guest of @mem_size bytes and
 * @ncpus vCPUs, and describe what to load. Refuses (-ENOEXEC, reason in
 * gv_last_error()): short or truncated files, bad magic, class, byte order,
 * version, type, machine, header sizes, no or too many program headers,
 * dynamic or interpreted programs, filesz > memsz, bytes past the end of
 * the file, virtual != physical addresses, overflowing ranges, overlapping
 * segments, an entry outside executable segments. -EFBIG: a segment outside
 * [GV_LOAD_MIN, mem_size - stacks). Reads nothing outside [buf, buf + len). */
int  gv_elf_parse(const void *buf, size_t len, uint64_t mem_size, unsigned ncpus,
                  struct gv_elf_image *img);

/* ---- The test accelerator's driver (testdrv.c) ---------------------------
 *
 * Under GV_ACCEL_TEST, after gv_vm_start (no guest program is needed), each
 * call performs what a guest instruction would on vCPU @cpu: it posts the
 * exit that instruction causes under KVM, the vCPU's thread handles it with
 * the same dispatch code, and the call returns once it has: 0 when the
 * guest would resume, 1 when the vCPU halted, a negative errno when the VM
 * stopped on it (gv_vm_wait tells why). -ESRCH: the vCPU does not run;
 * -EOPNOTSUPP: the VM is not on the test accelerator; -EINVAL: bad
 * arguments. Calls for one vCPU are served in order; a paused VM holds
 * them until gv_vm_resume, as it would hold a vCPU.
 */
int  gv_test_out(struct gv_vm *vm, unsigned cpu, uint16_t port, unsigned size, uint32_t val);
int  gv_test_in(struct gv_vm *vm, unsigned cpu, uint16_t port, unsigned size, uint32_t *val);
/* A REP OUTS/INS: @count elements of @size bytes in one exit. */
int  gv_test_outs(struct gv_vm *vm, unsigned cpu, uint16_t port, unsigned size,
                  const void *buf, uint32_t count);
/* The gv_abi.h hypercall (inl from GV_PORT_HCALL with rax, rdi, rsi, rcx):
 * *result gets what the guest would find in eax, sign-extended. */
int  gv_test_hypercall(struct gv_vm *vm, unsigned cpu, uint64_t nr, uint64_t a0,
                       uint64_t a1, uint64_t a2, int64_t *result);
/* KVM_EXIT_HYPERCALL (vmcall, with KVM_CAP_EXIT_HYPERCALL): *result gets
 * the value the guest would find in rax. */
int  gv_test_vmcall(struct gv_vm *vm, unsigned cpu, uint64_t nr, const uint64_t args[6],
                    int64_t *result);
int  gv_test_mmio(struct gv_vm *vm, unsigned cpu, uint64_t gpa, bool write, void *data,
                  unsigned len);
/* KVM_EXIT_MEMORY_FAULT: the guest touched [gpa, gpa + size) as private
 * (@private) or shared memory, which it is not. */
int  gv_test_memory_fault(struct gv_vm *vm, unsigned cpu, uint64_t gpa, uint64_t size,
                          bool private_access);
int  gv_test_halt(struct gv_vm *vm, unsigned cpu);
/* The guest's own loads and stores: through the memslot's mapping (the
 * KVM view), whatever the pages' states, as a guest reaches its memory.
 * No exit; -EINVAL outside RAM. */
int  gv_test_mem_write(struct gv_vm *vm, uint64_t gpa, const void *buf, size_t len);
int  gv_test_mem_read(struct gv_vm *vm, uint64_t gpa, void *buf, size_t len);
const char *gv_accel_name(const struct gv_vm *vm);

/* ---- Reports ------------------------------------------------------------ */

const char *gv_last_error(void);
const char *gv_stop_name(enum gv_stop why);
const char *gv_exit_name(uint32_t exit_reason);
/* Append the registers to @buf (NUL-terminated, at most @size bytes). */
void gv_format_regs(char *buf, size_t size, const struct kvm_regs *r,
                    const struct kvm_sregs *s);

#endif /* GV_VMM_H */

/* SPDX-License-Identifier: MIT */
/*
 * gv_abi.h - the contract between the micro-VMM and its guest programs.
 *
 * Included by the VMM (hosted C) and by the guest runtime (freestanding C),
 * so it holds only constants and fixed-layout structs of <stdint.h> types.
 *
 * Machine model the VMM gives a guest:
 *   - 64-bit long mode from the first instruction, identity-mapped with 2 MiB
 *     pages over the first 4 GiB of guest-physical space (virtual == physical);
 *     memory beyond the guest's RAM is unbacked (an access is an MMIO exit);
 *   - no IDT: any exception is a triple fault, which the VMM reports with the
 *     registers and stops the guest;
 *   - no interrupts, no LAPIC: HLT parks a vCPU for good;
 *   - every vCPU starts at the ELF entry point with
 *       rdi = vCPU index, rsi = number of vCPUs, rdx = RAM size in bytes,
 *       rsp = top of its own GV_STACK_SIZE stack at the top of RAM;
 *   - [0, GV_LOAD_MIN) holds the boot structures (GDT, TSS, page tables) and
 *     [RAM - ncpus * GV_STACK_SIZE, RAM) the stacks: ELF segments may not
 *     overlap either.
 *   - all RAM starts private; the guest shares what it wants by hypercall:
 *     KVM_HC_MAP_GPA_RANGE (vmcall, rax = 12, rbx = gpa, rcx = 4 KiB pages,
 *     rdx = attributes, bit 4 set = private), as Linux guests convert, where
 *     KVM has KVM_CAP_EXIT_HYPERCALL (gv_paths.map_gpa_range); or
 *     GV_HC_SHARE/UNSHARE below, which stay for the test programs together
 *     with the operations no standard call has (pin, unpin, host I/O).
 */
#ifndef GV_ABI_H
#define GV_ABI_H

#include <stdint.h>

#define GV_LOAD_MIN     0x100000ull     /* lowest address an ELF segment may use */
#define GV_STACK_SIZE   0x4000ull       /* per-vCPU stack                         */
#define GV_MAP_LIMIT    (4ull << 30)    /* identity-mapped guest-physical space   */

/* Port I/O. */
#define GV_PORT_CONSOLE 0x00e9  /* out byte: console character (Bochs debug port) */
#define GV_PORT_EXIT    0x00f4  /* out dword: exit(status), stops every vCPU      */
#define GV_PORT_HCALL   0x0500  /* in dword: hypercall, see below                 */
/* 0x510-0x5ff: free for devices added with gv_vm_add_pio() (the tests' spin
 * guest polls 0x510: nonzero = stop). */
#define GV_PORT_USER    0x0510

/*
 * Hypercall: `inl (%dx), %eax` with dx = GV_PORT_HCALL, rax = number,
 * rdi, rsi, rcx = arguments. The result (0 or more, or a negative errno)
 * comes back in eax as the value the port read returns.
 *
 * Why a port read rather than writing rax with KVM_SET_REGS: KVM documents
 * that a vCPU's state is consistent only once the pending I/O exit has been
 * completed by the next KVM_RUN; the value of an IN is part of that completion,
 * so the result travels the one way KVM guarantees.
 */
#define GV_HC_SHARE      1  /* (gpa, len): gmem_convert to shared            */
#define GV_HC_UNSHARE    2  /* (gpa, len): gmem_convert to private           */
#define GV_HC_STATE      3  /* (gpa): gmem_state of the page                 */
#define GV_HC_IO_PIN     4  /* (gpa, len): a device starts DMA: gmem_pin     */
#define GV_HC_IO_UNPIN   5  /* (gpa, len): the DMA ends: gmem_unpin, of a   */
                            /* range this guest pinned, exactly as pinned    */
#define GV_HC_HOSTIO     6  /* (gpa, len, op): host transforms in place      */
#define GV_HC_HOST_READ  7  /* (gpa, len): device code reads the host view:  */
                            /* sum of the bytes (31 bits) or -EFAULT          */

/* GV_HC_HOSTIO operations. */
#define GV_HOSTIO_UPPER  1  /* ASCII to upper case */
#define GV_HOSTIO_ROT13  2

#define GV_HOSTIO_MAX    (1ull << 20)  /* longest GV_HC_HOSTIO range      */
#define GV_HOST_READ_MAX 4096ull       /* longest GV_HC_HOST_READ range   */

/*
 * The stand-in DMA engine's table, per VM: the guest holds at most
 * GV_DMA_RANGES pinned ranges at once (-ENOSPC past it), each at most
 * GV_DMA_MAX_BYTES (-E2BIG), so it pins at most 64 MiB and costs the VMM
 * a fixed table whatever the RAM size. Pinning a held range again counts
 * up, to GV_DMA_PINS_MAX (then -EOVERFLOW), so that what the VMM undoes
 * for a guest at teardown is bounded too. UNPIN releases only a range the
 * guest pinned, named as it was pinned (-EINVAL otherwise): pins that
 * devices take for their own I/O are not the guest's to drop.
 */
#define GV_DMA_RANGES    64u
#define GV_DMA_MAX_BYTES (1ull << 20)
#define GV_DMA_PINS_MAX  4096u

/*
 * virtio-blk over virtio-mmio (virtio 1.2, src/vmm/virtio/): one window of
 * GV_VIRTIO_MMIO_SIZE bytes at GV_VIRTIO_MMIO_BASE, outside RAM (a VM with
 * the device has at most that much RAM) and inside the guest's identity
 * map. Offered: VIRTIO_F_VERSION_1, VIRTIO_BLK_F_SIZE_MAX, _SEG_MAX,
 * _BLK_SIZE, _FLUSH. No interrupt: the guest polls used->idx.
 */
#define GV_VIRTIO_MMIO_BASE 0xfeb00000ull
#define GV_VIRTIO_MMIO_SIZE 0x200ull

#endif /* GV_ABI_H */

/* SPDX-License-Identifier: MIT */
/*
 * kvm_uapi.h - the KVM uapi that Debian 12's <linux/kvm.h> (Linux 6.1) lacks.
 *
 * Values are those of the upstream uapi (guest_memfd, Linux 6.8+; guest_memfd
 * flags, 6.18) and of the posted series for direct-map removal and in-place
 * conversion. Each definition is guarded so a newer system header wins.
 */
#ifndef GM_KVM_UAPI_H
#define GM_KVM_UAPI_H

#include <linux/kvm.h>
#include <stdint.h>

#ifndef KVM_CAP_USER_MEMORY2
#define KVM_CAP_USER_MEMORY2 231
#endif
#ifndef KVM_CAP_MEMORY_ATTRIBUTES
#define KVM_CAP_MEMORY_ATTRIBUTES 233
#endif
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234
#endif
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235
#endif
#ifndef KVM_CAP_GUEST_MEMFD_FLAGS
#define KVM_CAP_GUEST_MEMFD_FLAGS 244
#endif
/* Posted series: in-place conversion on the guest_memfd itself. */
#ifndef KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES
#define KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES 249
#endif

#ifndef GUEST_MEMFD_FLAG_MMAP
#define GUEST_MEMFD_FLAG_MMAP        (1ull << 0)
#endif
#ifndef GUEST_MEMFD_FLAG_INIT_SHARED
#define GUEST_MEMFD_FLAG_INIT_SHARED (1ull << 1)
#endif
/* Posted series: remove the file's folios from the kernel direct map. */
#ifndef GUEST_MEMFD_FLAG_NO_DIRECT_MAP
#define GUEST_MEMFD_FLAG_NO_DIRECT_MAP (1ull << 2)
#endif

struct gm_kvm_create_guest_memfd {
	uint64_t size;
	uint64_t flags;
	uint64_t reserved[6];
};
#define GM_KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct gm_kvm_create_guest_memfd)

struct gm_kvm_userspace_memory_region2 {
	uint32_t slot;
	uint32_t flags;
	uint64_t guest_phys_addr;
	uint64_t memory_size;
	uint64_t userspace_addr;
	uint64_t guest_memfd_offset;
	uint32_t guest_memfd;
	uint32_t pad1;
	uint64_t pad2[14];
};
#define GM_KVM_SET_USER_MEMORY_REGION2 \
	_IOW(KVMIO, 0x49, struct gm_kvm_userspace_memory_region2)
#ifndef KVM_MEM_GUEST_MEMFD
#define KVM_MEM_GUEST_MEMFD (1u << 2)
#endif

struct gm_kvm_memory_attributes {
	uint64_t address;
	uint64_t size;
	uint64_t attributes;
	uint64_t flags;
};
#define GM_KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct gm_kvm_memory_attributes)
#ifndef KVM_MEMORY_ATTRIBUTE_PRIVATE
#define KVM_MEMORY_ATTRIBUTE_PRIVATE (1ull << 3)
#endif

/* Posted series: attributes set on the guest_memfd, offsets into the file.
 * On EAGAIN, error_offset names the first folio holding extra references. */
struct gm_kvm_memory_attributes2 {
	uint64_t offset;
	uint64_t size;
	uint64_t attributes;
	uint64_t flags;
	uint64_t error_offset;
	uint64_t reserved[11];
};
#define GM_KVM_SET_MEMORY_ATTRIBUTES2 _IOWR(KVMIO, 0xd2, struct gm_kvm_memory_attributes2)

#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
/* kvm_run's memory_fault payload (Linux 6.8): the guest touched [gpa,
 * gpa + size) in the state it does not have; PRIVATE: it wanted private. */
struct gm_kvm_memory_fault {
	uint64_t flags;
	uint64_t gpa;
	uint64_t size;
};
#ifndef KVM_MEMORY_EXIT_FLAG_PRIVATE
#define KVM_MEMORY_EXIT_FLAG_PRIVATE (1ull << 3)
#endif

#endif /* GM_KVM_UAPI_H */

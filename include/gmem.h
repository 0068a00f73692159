/* SPDX-License-Identifier: MIT */
/*
 * gmem.h - guest memory whose every 4 KiB page is private or shared.
 *
 * A VMM opens one guest memory of a fixed size (a multiple of 2 MiB), backed by
 * a KVM guest_memfd where the kernel offers one and by a memfd otherwise.
 * Every 4 KiB page is either
 *
 *   private - not reachable through the host view (reads and writes fault,
 *             /proc/self/mem does not return its contents), not pinnable; or
 *   shared  - mapped in the host view and pinnable for zero-copy I/O.
 *
 * The host converts ranges in place (contents and guest-physical addresses
 * are kept), may reach a private page briefly through a temporary mapping
 * (gmem_kmap), and hands KVM a separate full mapping (gmem_kvm_view) for the
 * memslot's userspace address.
 *
 * Conventions: every call returning int returns 0 (or a non-negative value)
 * on success and a negative errno on failure; a failed call changes nothing.
 * Ranges are guest-physical offsets from 0 and must be page-aligned,
 * non-empty, inside the memory and must not overflow, else -EINVAL.
 * Every call is safe from any thread.
 */
#ifndef GMEM_H
#define GMEM_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GMEM_VERSION_MAJOR 0
#define GMEM_VERSION_MINOR 1

#define GMEM_PAGE_SIZE   4096ull
#define GMEM_REGION_SIZE (2ull << 20)

enum gmem_backend { GMEM_BACKEND_AUTO, GMEM_BACKEND_KVM, GMEM_BACKEND_MEMFD };
enum gmem_state   { GMEM_PRIVATE = 0, GMEM_SHARED = 1 };

#define GMEM_F_INIT_SHARED  (1u << 0)  /* all pages start shared (default: private)       */
#define GMEM_F_HUGE         (1u << 1)  /* 2 MiB backing where the host allows it            */
#define GMEM_F_NO_PIN       (1u << 2)  /* shared pages may be mapped but never pinned       */
#define GMEM_F_ALL          (GMEM_F_INIT_SHARED | GMEM_F_HUGE | GMEM_F_NO_PIN)

struct gmem_config {
	uint64_t size;              /* a multiple of 2 MiB                              */
	enum gmem_backend backend;
	int vm_fd;                  /* KVM VM for the guest_memfd, or -1 (kvm backend  */
	                            /* then creates and owns a VM of its own)           */
	unsigned flags;             /* GMEM_F_*                                         */
};

struct gmem;

/* How 2 MiB backing was obtained (gmem_info().huge). */
enum gmem_huge {
	GMEM_HUGE_NONE = 0,         /* 4 KiB pages                                      */
	GMEM_HUGE_THP,              /* shmem transparent huge pages                     */
	GMEM_HUGE_HUGETLB,          /* hugetlbfs pages: mapping granule is 2 MiB        */
};

/* Direct-map model: what the host kernel would do to its direct map under the
 * same operations (see gmem_stats(3)). Counted by the library; real only when
 * gmem_stats.dmap_real is set (the kernel removes private memory itself). */
struct gmem_dmap_model {
	uint64_t removed_4k;        /* 4 KiB entries removed (page made private)        */
	uint64_t restored_4k;       /* 4 KiB entries restored (page made shared)        */
	uint64_t removed_2m;        /* whole 2 MiB entries removed                      */
	uint64_t restored_2m;       /* whole 2 MiB entries restored                     */
	uint64_t splits_2m;         /* 2 MiB entries split into 4 KiB entries           */
	uint64_t splits_1g;         /* 1 GiB entries split into 2 MiB entries           */
	uint64_t merges_2m;         /* 4 KiB entries merged back (Linux x86 never does) */
	uint64_t flushes_batched;   /* TLB flushes, one per conversion call             */
	uint64_t flushes_per_page;  /* TLB flushes, one per page (as secretmem does)    */
};

struct gmem_stats {
	uint64_t size;
	uint64_t shared_pages;
	uint64_t private_pages;
	uint64_t pinned_pages;      /* pages with at least one pin                      */
	uint64_t kmapped_pages;     /* pages with at least one temporary mapping        */
	uint64_t conversions;       /* gmem_convert calls that succeeded                */
	uint64_t pages_converted;   /* pages whose state changed                        */
	uint64_t refused;           /* conversions refused (-EAGAIN, -ENOMEM)           */
	uint64_t pins;              /* gmem_pin calls that succeeded                    */
	uint64_t kmaps;             /* gmem_kmap calls that succeeded                   */
	uint64_t discards;          /* gmem_discard calls that succeeded                */
	uint64_t view_syscalls;     /* mmap/madvise/ioctl calls made to map or convert  */
	uint64_t view_mappings;     /* mappings (VMAs) the host view holds now          */
	uint64_t view_mapping_limit;/* most mappings the view may hold (max_map_count)  */
	uint64_t regions;           /* 2 MiB regions                                    */
	uint64_t regions_mixed;     /* regions holding both states now                  */
	uint64_t regions_split;     /* times a uniform region became mixed              */
	uint64_t regions_repaired;  /* times a mixed region became uniform again        */
	uint64_t collapse_failures; /* MADV_COLLAPSE refusals during repair             */
	uint64_t metadata_bytes;    /* bytes of page-state metadata                     */
	int dmap_real;              /* 1: the kernel removes private memory from its   */
	                            /* direct map; 0: the counters below are a model    */
	struct gmem_dmap_model dmap;
	uint64_t reserved[8];
};

/* What an open memory is backed by. */
struct gmem_info {
	enum gmem_backend backend;  /* KVM or MEMFD, never AUTO                         */
	enum gmem_huge huge;
	unsigned flags;             /* the GMEM_F_* it was opened with                  */
	uint64_t size;
	int fd;                     /* guest memory file (guest_memfd or memfd)         */
	int vm_fd;                  /* KVM VM the guest_memfd belongs to, or -1         */
	uint64_t gmem_flags;        /* guest_memfd creation flags (kvm backend)         */
	int inplace;                /* 1: kernel converts in place (cap 249)            */
	int dmap_removal;           /* 1: kernel removes pages from its direct map      */
	uint64_t granule;           /* smallest convertible unit: 4 KiB or 2 MiB        */
};

/* What this host offers (gmem_probe). Flags are 1 or 0; counts read from
 * sysfs/procfs are a negative errno when the file cannot be read. */
struct gmem_probe {
	int kvm;                    /* /dev/kvm opens                                   */
	int kvm_api_version;
	int user_memory2;           /* KVM_CAP_USER_MEMORY2                             */
	int guest_memfd;            /* KVM_CAP_GUEST_MEMFD                              */
	uint64_t guest_memfd_flags; /* KVM_CAP_GUEST_MEMFD_FLAGS (244) bit mask         */
	int gmem_mmap;              /* flag bit 0                                       */
	int gmem_init_shared;       /* flag bit 1                                       */
	int gmem_no_direct_map;     /* flag bit 2 (direct-map removal)                  */
	int inplace_conversion;     /* cap 249 (KVM_SET_MEMORY_ATTRIBUTES2)             */
	uint64_t memory_attributes; /* KVM_CAP_MEMORY_ATTRIBUTES (233) mask             */
	uint64_t vm_types;          /* KVM_CAP_VM_TYPES (235) mask                      */
	char shmem_thp[16];         /* shmem_enabled mode, "" if unknown                */
	long hugepages_total;       /* vm.nr_hugepages (2 MiB)                          */
	long hugepages_free;
	int memfd_secret;           /* memfd_secret(2) works                            */
	int userfaultfd;            /* userfaultfd(2) works for this process            */
	long max_map_count;         /* vm.max_map_count                                 */
	enum gmem_backend auto_backend;   /* what GMEM_BACKEND_AUTO picks               */
	enum gmem_huge auto_huge;         /* what GMEM_F_HUGE gets on the memfd backend */
};

int   gmem_open(const struct gmem_config *cfg, struct gmem **out);
void  gmem_close(struct gmem *g);

int   gmem_convert(struct gmem *g, uint64_t gpa, uint64_t len, enum gmem_state to,
                   uint64_t *busy_gpa);
int   gmem_state(const struct gmem *g, uint64_t gpa);
void *gmem_host(const struct gmem *g, uint64_t gpa);

int   gmem_pin(struct gmem *g, uint64_t gpa, uint64_t len);
int   gmem_unpin(struct gmem *g, uint64_t gpa, uint64_t len);

void *gmem_kmap(struct gmem *g, uint64_t gpa);
void  gmem_kunmap(struct gmem *g, void *addr);

int   gmem_discard(struct gmem *g, uint64_t gpa, uint64_t len);
int   gmem_stats(const struct gmem *g, struct gmem_stats *st);
const char *gmem_strerror(int err);

/* Additions beyond the design brief. */
void *gmem_kvm_view(const struct gmem *g);   /* memslot userspace_addr: full mapping */
int   gmem_info(const struct gmem *g, struct gmem_info *info);
int   gmem_probe(struct gmem_probe *p);
const char *gmem_backend_name(enum gmem_backend b);
const char *gmem_huge_name(enum gmem_huge h);
/* Why the last failing gmem call of this thread failed, in one line, or ""
 * when it recorded no reason beyond its errno. Names the setting to change
 * where there is one. Each gmem call that can fail clears it on entry. */
const char *gmem_last_error(void);
/* The assumptions behind the direct-map model, in one line. */
const char *gmem_dmap_assumptions(void);

/* ---- Snapshots (src/lib/snapshot/, man/gmem_snapshot_*.3) ------------- */
/* Save the whole memory and every page's state to @path (atomically: an
 * earlier file at @path survives a failed or killed save). */
#define GMEM_SNAP_COMPRESS  (1u << 0)  /* zstd-compress page data             */
int   gmem_snapshot_save(struct gmem *g, const char *path, unsigned flags);
/* Open a new memory holding a saved snapshot: @cfg NULL restores the saved
 * size on the best backend; otherwise its backend and flags, and a size at
 * least the saved one. */
int   gmem_snapshot_restore(const char *path, const struct gmem_config *cfg,
                            struct gmem **out);
/* ---- end of snapshots ------------------------------------------------- */

/* ---- I/O on guest memory (src/lib/io/, man/gmem_io_*.3) --------------- */
/* ---- end of I/O -------------------------------------------------------- */

#ifdef __cplusplus
}
#endif
#endif /* GMEM_H */

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
 * (gmem_kmap), and hands KVM a mapping (gmem_kvm_view) for the memslot's
 * userspace address. Who enforces privacy is gmem_info().privacy:
 *
 *   GMEM_PRIVACY_VIEW   - the library: private pages are absent from the
 *                         host view, but KVM's view maps every page; it is
 *                         kept out of core dumps and children, and
 *                         gmem_harden_process() keeps other processes of
 *                         the same user out of this one;
 *   GMEM_PRIVACY_KERNEL - the kernel: private pages fault in every user
 *                         mapping, and the KVM view is the host view.
 *
 * docs/threat-model.md says what each level stops and what it cannot.
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
#define GMEM_F_TRACK_WRITES (1u << 3)  /* record pages changed since the last snapshot   */
                                       /* saved from it (incremental saves: parent)     */
#define GMEM_PIN_MAX        (1u << 24) /* pins one page may hold; one more: -EOVERFLOW  */
#define GMEM_F_ALL          (GMEM_F_INIT_SHARED | GMEM_F_HUGE | GMEM_F_NO_PIN | \
                             GMEM_F_TRACK_WRITES)

#define GMEM_PRIVACY_VIEW   1          /* library enforces it in the host view  */
#define GMEM_PRIVACY_KERNEL 2          /* kernel faults private pages anywhere  */

struct gmem_config {
	uint64_t size;              /* a multiple of 2 MiB                              */
	enum gmem_backend backend;
	int vm_fd;                  /* KVM VM for the guest_memfd, or -1 (kvm backend  */
	                            /* then creates and owns a VM of its own)           */
	unsigned flags;             /* GMEM_F_*                                         */
	uint64_t max_mappings;      /* host-view mappings to reserve of the process's   */
	                            /* vm.max_map_count (-ENOMEM if not free); 0: what  */
	                            /* it could need, up to half of what is free        */
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

/* How a memory opened with GMEM_F_TRACK_WRITES sees changed pages
 * (gmem_info().track, gmem_probe().track). */
enum gmem_track {
	GMEM_TRACK_OFF = 0,         /* not asked for                                    */
	GMEM_TRACK_PAGEMAP,         /* userfaultfd write-protect, asynchronous, read by */
	                            /* PAGEMAP_SCAN (Linux 6.7) on the library's views  */
	GMEM_TRACK_UFFD_SYNC,       /* userfaultfd write-protect served by a thread    */
	                            /* (after a GMEM_SNAP_LIVE save on this memory)    */
	GMEM_TRACK_NONE,            /* asked, but nothing here sees guest writes (a    */
	                            /* guest_memfd): every save is a full one          */
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
	int inplace;                /* 1: kernel converts in place (found by ioctl)     */
	int dmap_removal;           /* 1: kernel removes pages from its direct map      */
	uint64_t granule;           /* smallest convertible unit: 4 KiB or 2 MiB        */
	int privacy;                /* GMEM_PRIVACY_VIEW or GMEM_PRIVACY_KERNEL         */
	uint64_t view_mapping_budget; /* host-view mappings this memory may hold:       */
	                            /* its own share of vm.max_map_count, set at open   */
	enum gmem_track track;      /* GMEM_TRACK_*: how changed pages are seen         */
	int track_based;            /* 1: a snapshot saved from it is the baseline an   */
	                            /* incremental save (opts.parent) may name          */
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
	int inplace_conversion;     /* KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd      */
	                            /* works: found by issuing it (inplace_how)         */
	int inplace_cap_hint;       /* what capability 249 answers: a hint, not a fact  */
	char inplace_how[128];      /* how in-place conversion was detected             */
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
	enum gmem_track track;            /* what GMEM_F_TRACK_WRITES gets (auto backend) */
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

/* Keep other processes out of this one (PR_SET_DUMPABLE 0, as ssh-agent
 * does): processes of the same user can then neither ptrace it nor read
 * its memory (/proc/PID/mem, process_vm_readv), and it leaves no core
 * dump. @flags must be 0. Root (CAP_SYS_PTRACE) is not stopped. */
int   gmem_harden_process(unsigned flags);

/* Conversions the library makes on its own (the I/O layer sharing a buffer
 * in place and making it private again) are reported to @fn, so a VMM's
 * mirror of page states (KVM memory attributes) stays true. Called with
 * the memory's lock held, in the order the states changed, after each
 * change: @fn must not call gmem functions on @g. NULL removes it. */
typedef void (*gmem_convert_fn)(void *ctx, uint64_t gpa, uint64_t len, enum gmem_state to);
int   gmem_convert_notify(struct gmem *g, gmem_convert_fn fn, void *ctx);

/* ---- Snapshots (src/lib/snapshot/, man/gmem_snapshot_*.3) ------------- */
/* Save the whole memory and every page's state to @path (atomically: an
 * earlier file at @path survives a failed or killed save). Populated pages
 * only; format: docs/snapshot-format.md. The memory is locked for the whole
 * save (every other call on it except gmem_state/gmem_host waits); writes
 * by a running guest or by device I/O during the save land in the file or
 * not, page by page: pause vCPUs and I/O for a consistent image.
 * GMEM_SNAP_LIVE (memfd backing): locked only while the start is fixed
 * (opts.live_pause brackets it); every page is saved as it was then, copied
 * before its first later write; see gmem_snapshot_save(3). */
/* GMEM_SNAP_COMPRESS compresses what it can without slowing the save: a
 * chunk is compressed when the file's device would otherwise wait for it
 * anyway, so a slow disk gets a small file and a fast one a fast save.
 * GMEM_SNAP_COMPRESS_ALL compresses every chunk zstd can shrink.
 * A save, and an eager restore, move the file with direct I/O where its
 * file system supports it (the file does not fill the page cache);
 * GMEM_SNAP_BUFFERED goes through the page cache instead. The file's bytes,
 * and the restored memory, are the same either way. */
#define GMEM_SNAP_COMPRESS     (1u << 0)  /* save: zstd, adaptive             */
#define GMEM_SNAP_LAZY         (1u << 1)  /* restore: load pages on touch     */
#define GMEM_SNAP_COMPRESS_ALL (1u << 2)  /* save: zstd on every chunk        */
#define GMEM_SNAP_BUFFERED     (1u << 3)  /* save, restore: via page cache    */
#define GMEM_SNAP_LIVE         (1u << 4)  /* save: the memory is locked only  */
                                          /* to start; each page saved as it  */
                                          /* was then (copied before written) */
#define GMEM_SNAP_ALL          (GMEM_SNAP_COMPRESS | GMEM_SNAP_LAZY | \
                                GMEM_SNAP_COMPRESS_ALL | GMEM_SNAP_BUFFERED | \
                                GMEM_SNAP_LIVE)
#define GMEM_SNAP_KEY_BYTES    32         /* gmem_snapshot_opts.key           */
int   gmem_snapshot_save(struct gmem *g, const char *path, unsigned flags);
/* Open a new memory holding a saved snapshot: @cfg NULL restores the saved
 * size on the best backend; otherwise its backend and flags, and a size at
 * least the saved one. */
int   gmem_snapshot_restore(const char *path, const struct gmem_config *cfg,
                            struct gmem **out);

/* Progress of a long save, restore or verify: @done of @total bytes.
 * Called from the calling thread, with the memory locked during a save:
 * it must not call gmem functions on that memory (a live save: unlocked,
 * and first with @done 0 once the start is fixed). */
typedef void (*gmem_snapshot_progress_fn)(void *ctx, uint64_t done, uint64_t total);

struct gmem_snapshot_opts {
	unsigned flags;             /* GMEM_SNAP_* (save)                           */
	int level;                  /* zstd level, 0: the default (1)               */
	gmem_snapshot_progress_fn progress;   /* NULL: none                         */
	void *progress_ctx;
	/* Save: the last snapshot saved from this memory (GMEM_F_TRACK_WRITES):
	 * the new file holds only the pages changed since, and names it. NULL:
	 * a full file. Restore and inspect follow a file's chain themselves. */
	const char *parent;
	/* GMEM_SNAP_KEY_BYTES bytes: seal (save) or open (restore, inspect)
	 * every chunk with an AEAD. NULL: no key. Copied; the caller wipes it. */
	const uint8_t *key;
	/* GMEM_SNAP_LIVE: called, with progress_ctx, with 1 just before the
	 * memory is locked to fix the start image and with 0 as soon as it is
	 * unlocked. A VMM stops its vCPUs and device I/O in between: the file
	 * is then the memory at one moment. A negative errno from the call
	 * with 1 ends the save with it, nothing written (and no call with 0);
	 * the call with 0 returns 0. NULL: nothing is called, and the image is
	 * of one moment if nothing writes until progress reports 0. */
	int (*live_pause)(void *ctx, int pause);
	uint64_t reserved[1];       /* 0                                            */
};

/* As gmem_snapshot_save / _restore, with options (@opts may be NULL). */
int   gmem_snapshot_save_ex(struct gmem *g, const char *path,
                            const struct gmem_snapshot_opts *opts);
int   gmem_snapshot_restore_ex(const char *path, const struct gmem_config *cfg,
                               const struct gmem_snapshot_opts *opts, struct gmem **out);

/*
 * Lazy restore (GMEM_SNAP_LAZY, memfd backing without hugetlb pages only:
 * guest_memfd has no userfaultfd; -EOPNOTSUPP there). The whole file is
 * checked as an eager restore checks it (every checksum, every field, every
 * zstd frame header), and the states applied, before the call returns; only
 * decompression waits for the load, so a frame that passes all of that and
 * still does not decode is found as its chunk loads (poisoned, below).
 * Page data is then loaded on first touch through the KVM view or the host
 * view (userfaultfd: the pages touched first are loaded first)
 * and by a background thread that loads the rest in file order. Temporary
 * mappings, conversions to shared, discards and saves load the pages they
 * cover first. Each chunk is checked again as it is loaded: one that no
 * longer matches (the file changed under the restore) is never made visible:
 * its pages raise SIGBUS when touched and calls that reach them fail with
 * -EIO. Keep the file in place until gmem_snapshot_lazy_wait() returns.
 */
struct gmem_snapshot_lazy_stats {
	int loading;                /* 1 while chunks remain to be loaded           */
	int error;                  /* first load failure (-errno), or 0            */
	uint64_t chunks;            /* data chunks in the snapshot                  */
	uint64_t chunks_loaded;
	uint64_t by_fault;          /* chunks loaded to serve a fault               */
	uint64_t by_access;         /* ... before a kmap, conversion or discard     */
	uint64_t by_loader;         /* ... by the background loader                 */
	uint64_t faults;            /* userfaultfd faults served                    */
	uint64_t bytes_loaded;      /* page data loaded, uncompressed               */
	uint64_t reserved[4];
};
/* Counters of @g's lazy restore (all 0 if it was not restored lazily). */
int   gmem_snapshot_lazy_stats(struct gmem *g, struct gmem_snapshot_lazy_stats *st);
/* Wait until every chunk is loaded: 0, or the first load failure. */
int   gmem_snapshot_lazy_wait(struct gmem *g);

/* What a snapshot file holds (gmem_snapshot_inspect). */
struct gmem_snapshot_info {
	unsigned version_major, version_minor;
	uint64_t size;              /* bytes of guest memory saved                  */
	uint64_t page_size;
	enum gmem_backend backend;  /* of the saved memory                          */
	unsigned mem_flags;         /* GMEM_F_* of the saved memory                 */
	int compressed;             /* saved with GMEM_SNAP_COMPRESS                */
	uint64_t file_bytes;
	uint64_t shared_pages, private_pages;
	uint64_t runs;              /* page-state runs                              */
	uint64_t populated_bytes;   /* page data, uncompressed                      */
	uint64_t stored_bytes;      /* page data as stored                          */
	uint64_t chunks;            /* chunks before the END chunk                  */
	uint64_t data_chunks;
	int verified;               /* 1: every chunk's checksum was checked        */
	int incremental;            /* 1: holds only pages changed since its parent */
	int sealed;                 /* 1: every chunk sealed with a key             */
	uint64_t changed_pages;     /* incremental: pages changed since the parent  */
	char parent[4096];          /* incremental: the parent's path, as a restore */
	                            /* would open it; "" otherwise                  */
	uint64_t reserved[4];
};
#define GMEM_SNAP_VERIFY    (1u << 0)  /* inspect: read and check every chunk  */
/* Describe the snapshot at @path. Without GMEM_SNAP_VERIFY only the header,
 * footer and END chunk are read and checked (cheap; truncation is caught);
 * with it every chunk is checked as a restore would. */
int   gmem_snapshot_inspect(const char *path, unsigned flags,
                            const struct gmem_snapshot_opts *opts,
                            struct gmem_snapshot_info *info);
/* ---- end of snapshots ------------------------------------------------- */

/* ---- I/O on guest memory (src/lib/io/, man/gmem_io_*.3) --------------- */
/*
 * A device serves a request on guest memory whatever the state of its pages:
 * a list of guest ranges read from or written to a host target, through one
 * of three paths, or the one an on-host calibration says is cheapest:
 *   GMEM_IO_INPLACE - share the buffer's whole pages in place, pin them, do
 *                     the I/O on the host view (zero-copy), unpin, make
 *                     private again what was private (reference-counted,
 *                     so overlapping requests never undo each other);
 *   GMEM_IO_BOUNCE  - copy through a pool of host memory (swiotlb-like);
 *   GMEM_IO_KMAP    - copy page by page through temporary mappings.
 * Every path leaves each page's state, pins and temporary mappings as it
 * found them, whether the I/O succeeds or fails. See gmem_io_rw(3).
 */
struct iovec;
struct gmem_io;

enum gmem_io_dir {
	GMEM_IO_READ = 0,           /* target -> guest (a device read)              */
	GMEM_IO_WRITE = 1,          /* guest -> target (a device write)             */
};

enum gmem_io_path {
	GMEM_IO_AUTO = 0,           /* cheapest by the calibration (gmem_io_choose) */
	GMEM_IO_INPLACE,
	GMEM_IO_BOUNCE,
	GMEM_IO_KMAP,
};
#define GMEM_IO_NPATHS 4

enum gmem_io_kind {
	GMEM_IO_FILE = 0,           /* pread/pwrite at an offset (file, block dev)  */
	GMEM_IO_STREAM,             /* read/write (pipe, socket, tty): no offset    */
	GMEM_IO_MEMORY,             /* memcpy from/to [mem, mem + mem_len)          */
	GMEM_IO_CALLBACK,           /* fn(): a device model, or a test double       */
};

/* A callback target moves bytes like preadv/pwritev: bytes moved (fewer at
 * its end, 0 when it has ended) or a negative errno. */
typedef int64_t (*gmem_io_fn)(void *opaque, enum gmem_io_dir dir,
			      const struct iovec *iov, int iovcnt, uint64_t off);

struct gmem_io_target {
	enum gmem_io_kind kind;
	int fd;                     /* FILE, STREAM                                 */
	int direct_fd;              /* FILE: the same file opened O_DIRECT          */
	uint32_t dio_mem_align;     /* FILE: O_DIRECT buffer alignment; 0: never    */
	uint32_t dio_off_align;     /* FILE: O_DIRECT offset and length alignment   */
	void *mem;                  /* MEMORY                                       */
	uint64_t mem_len;
	gmem_io_fn fn;              /* CALLBACK                                     */
	void *opaque;
};

/* A FILE target on @fd; @direct_fd (or -1) is the same file opened with
 * O_DIRECT, used for the transfers whose buffers, offset and length meet its
 * alignment (read with statx, else 512 / logical block size). */
int   gmem_io_target_file(struct gmem_io_target *t, int fd, int direct_fd);

struct gmem_io_seg {
	uint64_t gpa;               /* any alignment; non-empty; inside the memory  */
	uint64_t len;
};

#define GMEM_IO_NOWAIT  (1u << 0)   /* -ENOBUFS instead of waiting for a pool   */
				    /* slot or a temporary-mapping window       */

struct gmem_io_req {
	enum gmem_io_dir dir;
	enum gmem_io_path path;
	unsigned flags;             /* GMEM_IO_NOWAIT                               */
	unsigned nsegs;
	const struct gmem_io_seg *segs;     /* served in order, as one stream       */
	const struct gmem_io_target *target;
	uint64_t off;               /* target position of the first byte (not STREAM) */
	uint64_t done;              /* out: bytes moved, a prefix of the request    */
	enum gmem_io_path used;     /* out: the path that served it                 */
};

struct gmem_io_config {
	uint64_t pool_size;         /* bounce pool bytes (multiple of slot_size);   */
				    /* 0: 4 MiB                                     */
	uint32_t slot_size;         /* power of two, 4 KiB .. 4 MiB; 0: 64 KiB      */
	unsigned flags;             /* GMEM_IO_CTX_*                                */
};
#define GMEM_IO_CTX_NO_CALIBRATE (1u << 0) /* auto bounces until gmem_io_calibrate */

struct gmem_io_stats {
	uint64_t requests[GMEM_IO_NPATHS];  /* served, by path used ([0]: unused)   */
	uint64_t bytes[GMEM_IO_NPATHS];
	uint64_t errors;            /* requests that returned an error              */
	uint64_t short_transfers;   /* requests the target ended early              */
	uint64_t conversions;       /* gmem_convert calls made by inplace requests  */
	uint64_t shared_now;        /* granules I/O holds shared on this memory now */
	uint64_t deferred;          /* granules waiting to become private again     */
	uint64_t restore_retries;   /* deferred returns made by a later unpin/kunmap */
	uint64_t pool_size, pool_slot_size, pool_slots, pool_free;
	uint64_t pool_waits;        /* slot requests that had to wait               */
	uint64_t pool_nobufs;       /* slot requests refused (GMEM_IO_NOWAIT)       */
	uint64_t calibrations;
	uint64_t calib_ns;          /* time the last calibration took               */
	uint64_t reserved[8];
};

int   gmem_io_create(struct gmem *g, const struct gmem_io_config *cfg, struct gmem_io **out);
/* Completes the context's pending return-to-private conversions first:
 * 0, or -EBUSY when a page stayed busy (pinned or mapped by someone else)
 * and was left shared; the context is freed either way. */
int   gmem_io_destroy(struct gmem_io *io);
/* Serve @req: bytes moved (all of them, or fewer when the target ended), or
 * a negative errno; req->done holds the bytes moved in both cases. */
int64_t gmem_io_rw(struct gmem_io *io, struct gmem_io_req *req);
int   gmem_io_calibrate(struct gmem_io *io);
/* The path GMEM_IO_AUTO would take for @req now, or a negative errno. */
int   gmem_io_choose(struct gmem_io *io, const struct gmem_io_req *req);
int   gmem_io_stats(struct gmem_io *io, struct gmem_io_stats *st);
const char *gmem_io_path_name(enum gmem_io_path p);
/* ---- end of I/O -------------------------------------------------------- */

#ifdef __cplusplus
}
#endif
#endif /* GMEM_H */

// SPDX-License-Identifier: MIT
/*
 * vmsnap.c - snapshots of a running micro-VMM guest: pause, save memory and
 * vCPU state, resume; restore into a new VM that runs on.
 *
 * Model: a VM snapshot is PATH (guest memory and page states, written by
 * gmem_snapshot_save_ex) and PATH.vm (the VM side, below and in
 * docs/snapshot-format.md). Save pauses the vCPUs (gv_vm_pause: KVM has
 * completed any pending I/O, no vCPU runs, no device is called, so guest
 * memory is stable), saves PATH, reads every vCPU's state, writes PATH.vm,
 * and resumes. Each file is written to a temporary, fsync'ed and renamed,
 * memory first: PATH.vm carries a tag of the PATH it belongs to (its size
 * and a hash of its chunk headers, which hold the payloads' hashes), so a
 * pair torn by a crash between the two renames is refused, not mixed.
 * With a key (opts->key, which seals PATH too) the records of PATH.vm are
 * sealed with an AEAD, its header bound in the associated data.
 *
 * Restore checks PATH.vm whole (magic, version, sizes, hash, seal, tag)
 * before anything is created, then creates a VM of the saved size and vCPU
 * count whose RAM is PATH restored on the new VM (gv_config.open_mem: on the
 * best backend, a guest_memfd on that VM where KVM has one; a memfd with
 * GMEM_SNAP_LAZY), gives each vCPU
 * the CPUID a booted one gets and its saved registers, and marks the VM
 * loaded: gv_vm_start() resumes the guest where it was paused.
 *
 * Device state: each MMIO device gives its state through gv_mmio_dev.save
 * (with the vCPUs paused), written after the vCPU records as one record per
 * device {name, base, length, state}. Restore does not recreate devices: a
 * device is code and a backing (a disk image) the caller names, so the
 * caller adds the same devices to the restored VM and each picks up its
 * record as it is added (mmio.c: load() checks the hostile bytes); starting
 * with a record unclaimed is refused. The built-in console, exit and
 * hypercall ports are stateless between exits (the console sends whole
 * lines); a VM with any other port device, or an MMIO device with no
 * save(), is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <xxhash.h>

#include "vmm_internal.h"
#include "vmsnap.h"

#define GV_SNAP_VM_MAGIC "GMEMVMS1"
#define GV_SNAP_VM_MAJOR 1
#define GV_SNAP_VM_MINOR 2
#define GV_SNAP_VM_SEALED 1u    /* header flags: records sealed with a key  */
#define GV_SNAP_VM_AEAD   2u    /* XChaCha20-Poly1305-IETF (the memory      */
				/* format's number for it)                  */
#define GV_SEAL_NONCE     crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  /* 24 */
#define GV_SEAL_TAG       crypto_aead_xchacha20poly1305_ietf_ABYTES     /* 16 */
/* Sealed: a nonce after the header, a tag after the records. */
#define GV_SEAL_EXTRA     (GV_SEAL_NONCE + GV_SEAL_TAG)
#define GV_BUILTIN_PIO   3u     /* console, exit, hypercall (gv_pio_builtin) */
/* From docs/snapshot-format.md, what the tag walk reads of PATH (the
 * library's own structures are src/lib/snapshot/snap.h, which the VMM does
 * not include): file headers of versions 1 and 2, chunk header, END type,
 * footer, the largest END payload as stored (version 2 sealed: 64 + tag),
 * and where version 2's END payload holds its digest. */
#define GV_MEM_MAGIC      "GMEMSNAP"
#define GV_MEM_END_MAGIC  "GMEMEND1"
#define GV_MEM_HDR1       64u
#define GV_MEM_HDR2       128u
#define GV_CHUNK_HDR      32u
#define GV_MEM_END        3u
#define GV_FOOTER         16u
#define GV_END_STORED_MAX 80u
#define GV_END2_DIGEST    56u

/* PATH.vm: this header, ncpus records of GV_VCPU_REC bytes, ndevs device
 * records (dev_bytes in all), an XXH3_64bits of everything before it.
 * Little-endian, no padding. Minor 0 files have ndevs = dev_bytes = 0.
 * Sealed (flags GV_SNAP_VM_SEALED, minor 2): the header, a random nonce,
 * the records encrypted, their AEAD tag, the hash. */
struct gv_snap_vm_header {
	char magic[8];          /* GV_SNAP_VM_MAGIC                            */
	uint16_t major, minor;
	uint32_t header_size;   /* 64                                          */
	uint32_t ncpus;
	uint32_t vcpu_size;     /* bytes per vCPU record                       */
	uint64_t mem_size;
	uint64_t mem_file_size; /* size of PATH                                */
	uint64_t mem_tag;       /* XXH3_64bits of PATH's chunk headers, END    */
				/* payload and footer (gv_mem_tag)             */
	uint32_t ndevs;         /* device records (minor 1), <= GV_MAX_MMIO    */
	uint32_t dev_bytes;     /* bytes of device records                     */
	uint32_t flags;         /* GV_SNAP_VM_SEALED or 0 (minor <= 1: 0)      */
	uint32_t aead;          /* GV_SNAP_VM_AEAD when sealed, else 0         */
};

_Static_assert(sizeof(struct gv_snap_vm_header) == 64, "PATH.vm header is 64 bytes");
_Static_assert(GV_SEAL_NONCE == 24 && GV_SEAL_TAG == 16, "XChaCha20-Poly1305-IETF");
_Static_assert(GMEM_SNAP_KEY_BYTES == crypto_generichash_KEYBYTES, "BLAKE2b key");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == 32, "XChaCha key");

/* ---- sealing (docs/snapshot-format.md, "Sealed FILE.vm") -----------------
 *
 * The records (vCPU registers, device state) are encrypted with
 * XChaCha20-Poly1305-IETF under a subkey of the user's key for this file
 * alone: BLAKE2b-256 keyed with the user key over a domain of its own (no
 * memory snapshot subkey can equal it) and the file's random nonce. The
 * associated data is the header and the nonce, as stored. The subkey lives
 * on the stack and is wiped at once; so is every plaintext buffer. */
static const char gv_seal_domain[16] = { 'g', 'm', 'e', 'm', '-', 'v', 'm', '-',
					 's', 't', 'a', 't', 'e', '-', 'v', '1' };

static void gv_seal_subkey(const uint8_t *key, const uint8_t nonce[GV_SEAL_NONCE],
			   uint8_t subkey[32])
{
	uint8_t msg[sizeof(gv_seal_domain) + GV_SEAL_NONCE];

	memcpy(msg, gv_seal_domain, sizeof(gv_seal_domain));
	memcpy(msg + sizeof(gv_seal_domain), nonce, GV_SEAL_NONCE);
	crypto_generichash(subkey, 32, msg, sizeof(msg), key, GMEM_SNAP_KEY_BYTES);
}

/* Seal @len bytes of records at @buf + 64 + GV_SEAL_NONCE in place, the
 * tag after them; @buf holds the header. Draws the nonce. */
static int gv_seal(const uint8_t *key, uint8_t *buf, size_t len)
{
	uint8_t subkey[32], *nonce = buf + sizeof(struct gv_snap_vm_header),
		*recs = nonce + GV_SEAL_NONCE;

	if (sodium_init() < 0)
		return -ENOSYS;
	randombytes_buf(nonce, GV_SEAL_NONCE);
	gv_seal_subkey(key, nonce, subkey);
	crypto_aead_xchacha20poly1305_ietf_encrypt_detached(recs, recs + len, NULL, recs, len,
							   buf, (size_t)(recs - buf), NULL,
							   nonce, subkey);
	sodium_memzero(subkey, sizeof(subkey));
	return 0;
}

/* Open what gv_seal made: 0, or -EBADMSG (wrong key, or any byte of the
 * header, nonce, records or tag changed). The records are plain in place
 * only on success. */
static int gv_unseal(const uint8_t *key, uint8_t *buf, size_t len)
{
	uint8_t subkey[32], *nonce = buf + sizeof(struct gv_snap_vm_header),
		*recs = nonce + GV_SEAL_NONCE;
	int ret;

	if (sodium_init() < 0)
		return -ENOSYS;
	gv_seal_subkey(key, nonce, subkey);
	ret = crypto_aead_xchacha20poly1305_ietf_decrypt_detached(recs, NULL, recs, len,
								 recs + len, buf,
								 (size_t)(recs - buf), nonce,
								 subkey);
	sodium_memzero(subkey, sizeof(subkey));
	return ret ? -EBADMSG : 0;
}

/* One device record: this, then state_len bytes of state, zero-padded to a
 * multiple of 8. */
struct gv_snap_dev_rec {
	char name[GV_DEV_NAME_MAX + 1]; /* NUL-terminated, NUL-padded           */
	uint64_t base;
	uint32_t state_len;             /* <= GV_DEV_STATE_MAX                  */
	uint32_t reserved;              /* 0                                    */
};

_Static_assert(sizeof(struct gv_snap_dev_rec) == 32, "device record header is 32 bytes");

#define GV_DEV_REC_MAX (sizeof(struct gv_snap_dev_rec) + GV_DEV_STATE_MAX)

static size_t gv_pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* One vCPU: the x86-64 KVM structures, each whole, in this order. */
#define GV_VCPU_REC (sizeof(struct kvm_regs) + sizeof(struct kvm_sregs) + \
		     sizeof(struct kvm_fpu) + sizeof(struct kvm_mp_state))

static void gv_rec_put(uint8_t *p, const struct gv_vcpu_state *st)
{
	memcpy(p, &st->regs, sizeof(st->regs));
	p += sizeof(st->regs);
	memcpy(p, &st->sregs, sizeof(st->sregs));
	p += sizeof(st->sregs);
	memcpy(p, &st->fpu, sizeof(st->fpu));
	p += sizeof(st->fpu);
	memcpy(p, &st->mp, sizeof(st->mp));
}

static void gv_rec_get(const uint8_t *p, struct gv_vcpu_state *st)
{
	memcpy(&st->regs, p, sizeof(st->regs));
	p += sizeof(st->regs);
	memcpy(&st->sregs, p, sizeof(st->sregs));
	p += sizeof(st->sregs);
	memcpy(&st->fpu, p, sizeof(st->fpu));
	p += sizeof(st->fpu);
	memcpy(&st->mp, p, sizeof(st->mp));
}

static char *gv_vm_path(const char *path)
{
	size_t n = strlen(path);
	char *p = malloc(n + sizeof(GV_SNAP_VM_SUFFIX));

	if (p) {
		memcpy(p, path, n);
		memcpy(p + n, GV_SNAP_VM_SUFFIX, sizeof(GV_SNAP_VM_SUFFIX));
	}
	return p;
}

/* Hash the memory snapshot on @fd, @size bytes (docs/snapshot-format.md,
 * "FILE.vm", mem_tag): version 2, its file header as stored first; then
 * every chunk header from the end of the file header to END included (each
 * carries the hash of its payload, so this stands for the whole file), END's
 * stored payload and the footer. One 32-byte read per chunk. Every byte is
 * hostile: the version and header size must be known ones, the footer must
 * point at an END chunk that ends where the footer starts, and every chunk
 * must end at or before END, so the walk reads only inside the file and
 * lands exactly on END. Version 2: END's digest (XXH3_64bits of the chunk
 * headers before it) must match them, so an edit that kept END is refused
 * here, before any VM is made. -EINVAL (@why set) or -EIO. */
static int gv_mem_tag_walk(int fd, uint64_t size, XXH3_state_t *x, const char **why)
{
	uint8_t hdr[GV_MEM_HDR2], chunk[GV_CHUNK_HDR], tail[GV_END_STORED_MAX + GV_FOOTER];
	uint64_t pos, end, digest, want;
	uint32_t hsize, stored, type;
	uint16_t major;
	XXH3_state_t *d = XXH3_createState();
	int ret = -EINVAL;

	if (!d)
		return -ENOMEM;
	XXH3_64bits_reset(d);
	*why = "too short to be a memory snapshot";
	if (size < GV_MEM_HDR1 + GV_CHUNK_HDR + GV_FOOTER)
		goto out;
	ret = -EIO;
	if (pread(fd, hdr, GV_MEM_HDR1, 0) != GV_MEM_HDR1)
		goto out;
	ret = -EINVAL;
	memcpy(&major, hdr + 8, sizeof(major));
	memcpy(&hsize, hdr + 12, sizeof(hsize));
	*why = "not a memory snapshot (magic)";
	if (memcmp(hdr, GV_MEM_MAGIC, 8))
		goto out;
	*why = "unknown version or header size";
	if (!((major == 1 && hsize == GV_MEM_HDR1) || (major == 2 && hsize == GV_MEM_HDR2)) ||
	    size < (uint64_t)hsize + GV_CHUNK_HDR + GV_FOOTER)
		goto out;
	ret = -EIO;
	if (major == 2 && pread(fd, hdr, hsize, 0) != (ssize_t)hsize)
		goto out;
	if (pread(fd, tail, GV_FOOTER, (off_t)(size - GV_FOOTER)) != GV_FOOTER)
		goto out;
	ret = -EINVAL;
	memcpy(&end, tail, sizeof(end));
	*why = "no footer at its end";
	if (memcmp(tail + 8, GV_MEM_END_MAGIC, 8) || end < hsize ||
	    end > size - GV_FOOTER - GV_CHUNK_HDR)
		goto out;
	if (major == 2)
		XXH3_64bits_update(x, hdr, hsize);
	for (pos = hsize;; pos += GV_CHUNK_HDR + stored) {
		ret = -EIO;
		if (pread(fd, chunk, sizeof(chunk), (off_t)pos) != sizeof(chunk))
			goto out;
		ret = -EINVAL;
		XXH3_64bits_update(x, chunk, sizeof(chunk));
		memcpy(&type, chunk, sizeof(type));
		memcpy(&stored, chunk + 20, sizeof(stored));
		if (pos == end)
			break;
		*why = "a chunk runs past its END chunk";
		if (type == GV_MEM_END || stored > end - pos - GV_CHUNK_HDR)
			goto out;
		XXH3_64bits_update(d, chunk, sizeof(chunk));
	}
	*why = "its END chunk does not end at the footer";
	if (type != GV_MEM_END || stored > GV_END_STORED_MAX ||
	    end + GV_CHUNK_HDR + stored != size - GV_FOOTER)
		goto out;
	ret = -EIO;
	if (pread(fd, tail, stored + GV_FOOTER, (off_t)(end + GV_CHUNK_HDR)) !=
	    (ssize_t)(stored + GV_FOOTER))
		goto out;
	ret = -EINVAL;
	if (major == 2) {
		*why = "its END chunk's digest does not match its chunk headers";
		digest = XXH3_64bits_digest(d);
		if (stored < GV_END2_DIGEST + 8)
			goto out;
		memcpy(&want, tail + GV_END2_DIGEST, sizeof(want));
		if (want != digest)
			goto out;
	}
	XXH3_64bits_update(x, tail, stored + GV_FOOTER);
	ret = 0;
out:
	XXH3_freeState(d);
	return ret;
}

/* The tag binding PATH.vm to the memory snapshot at @path (a regular
 * file, opened once; only that descriptor is read). */
static int gv_mem_tag(const char *path, uint64_t *size, uint64_t *tag)
{
	XXH3_state_t *x = XXH3_createState();
	const char *why = NULL;
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY), ret = 0;

	if (!x || fd < 0 || fstat(fd, &sb)) {
		ret = x ? -errno : -ENOMEM;
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		ret = -EINVAL;
		why = "not a regular file";
		goto out;
	}
	XXH3_64bits_reset(x);
	ret = gv_mem_tag_walk(fd, (uint64_t)sb.st_size, x, &why);
	if (ret)
		goto out;
	*size = (uint64_t)sb.st_size;
	*tag = XXH3_64bits_digest(x);
out:
	if (fd >= 0)
		close(fd);
	XXH3_freeState(x);
	if (ret == -EINVAL && why)
		gv_set_error("snapshot %s: %s", path, why);
	else if (ret)
		gv_set_error("snapshot %s: cannot read its chunk headers: %s", path,
			     strerror(-ret));
	return ret;
}

static int gv_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Write @buf to @path atomically: temporary in the same directory, fsync,
 * rename, fsync of the directory. */
static int gv_write_atomic(const char *path, const void *buf, size_t len)
{
	size_t n = strlen(path);
	char *tmp = malloc(n + 16), *slash;
	int fd, dfd, ret;

	if (!tmp)
		return -ENOMEM;
	snprintf(tmp, n + 16, "%s.tmp-XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = gv_write_all(fd, buf, len);
	if (!ret && fsync(fd))
		ret = -errno;
	close(fd);
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret) {
		unlink(tmp);
		goto out;
	}
	slash = strrchr(tmp, '/');
	if (slash)
		slash[1] = '\0';
	dfd = open(slash ? tmp : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		if (fsync(dfd))
			ret = -errno;
		close(dfd);
	}
out:
	free(tmp);
	return ret;
}

/* Write the device records of @vm (paused) at @p; their length in @len. */
static int gv_save_devs(struct gv_vm *vm, uint8_t *p, size_t *len)
{
	uint8_t *start = p;

	for (unsigned i = 0; i < vm->nmmio; i++) {
		const struct gv_mmio_dev *d = &vm->mmio[i];
		struct gv_snap_dev_rec r = { .base = d->base };
		int n = d->save(d->ctx, p + sizeof(r), GV_DEV_STATE_MAX);

		if (n < 0 || (unsigned)n > GV_DEV_STATE_MAX) {
			gv_set_error("snapshot: %s did not give its state: %s", d->name,
				     strerror(n < 0 ? -n : EOVERFLOW));
			return n < 0 ? n : -EOVERFLOW;
		}
		strncpy(r.name, d->name, sizeof(r.name) - 1);
		r.state_len = (uint32_t)n;
		memcpy(p, &r, sizeof(r));
		memset(p + sizeof(r) + n, 0, gv_pad8((size_t)n) - (size_t)n);
		p += sizeof(r) + gv_pad8((size_t)n);
	}
	*len = (size_t)(p - start);
	return 0;
}

/* The VM side of a snapshot being taken: vCPU and device records, read
 * while the vCPUs are paused, then written to PATH.vm once the memory file
 * it is bound to exists. */
struct gv_vm_side {
	uint8_t *buf;           /* header, [nonce], records, [tag], hash       */
	size_t cap;
	uint8_t *recs;          /* where the records start                     */
	size_t recs_len;
	struct gv_snap_vm_header h;
};

static void gv_vm_side_free(struct gv_vm_side *v)
{
	if (v->buf)
		sodium_memzero(v->buf, v->cap);
	free(v->buf);
	v->buf = NULL;
}

/* Read @vm's records (it is paused) into @v, to be sealed with a key if
 * @sealed. */
static int gv_vm_side_capture(struct gv_vm *vm, bool sealed, struct gv_vm_side *v)
{
	size_t dev_bytes;
	uint8_t *p;
	int ret;

	memset(v, 0, sizeof(*v));
	v->cap = sizeof(struct gv_snap_vm_header) + GV_SEAL_EXTRA + vm->ncpus * GV_VCPU_REC +
		 vm->nmmio * GV_DEV_REC_MAX + 8;
	v->h = (struct gv_snap_vm_header){
		.magic = GV_SNAP_VM_MAGIC, .major = GV_SNAP_VM_MAJOR, .minor = GV_SNAP_VM_MINOR,
		.header_size = sizeof(v->h), .ncpus = vm->ncpus, .vcpu_size = GV_VCPU_REC,
		.mem_size = vm->cfg.mem_size,
		.flags = sealed ? GV_SNAP_VM_SEALED : 0, .aead = sealed ? GV_SNAP_VM_AEAD : 0,
	};
	v->buf = calloc(1, v->cap);
	if (!v->buf)
		return -ENOMEM;
	v->recs = p = v->buf + sizeof(v->h) + (sealed ? GV_SEAL_NONCE : 0);
	for (unsigned i = 0; i < vm->ncpus; i++, p += GV_VCPU_REC) {
		struct gv_vcpu_state st;

		ret = gv_vcpu_get_state(vm, i, &st);
		if (!ret)
			gv_rec_put(p, &st);
		sodium_memzero(&st, sizeof(st));
		if (ret)
			goto err;
	}
	ret = gv_save_devs(vm, p, &dev_bytes);
	if (ret)
		goto err;
	v->h.ndevs = vm->nmmio;
	v->h.dev_bytes = (uint32_t)dev_bytes;
	v->recs_len = (size_t)(p - v->recs) + dev_bytes;
	return 0;
err:
	gv_vm_side_free(v);
	return ret;
}

/* PATH.vm from @v, bound to the memory file just saved at @path; sealed
 * with @key unless it is NULL. */
static int gv_vm_side_write(struct gv_vm_side *v, const char *path, const uint8_t *key)
{
	char *vpath = gv_vm_path(path);
	uint8_t *p = v->recs + v->recs_len;
	uint64_t hash;
	size_t len;
	int ret;

	if (!vpath)
		return -ENOMEM;
	ret = gv_mem_tag(path, &v->h.mem_file_size, &v->h.mem_tag);
	if (ret)
		goto out;
	memcpy(v->buf, &v->h, sizeof(v->h));
	if (key) {
		ret = gv_seal(key, v->buf, v->recs_len);
		if (ret) {
			gv_set_error("snapshot: libsodium does not start");
			goto out;
		}
		p += GV_SEAL_TAG;
	}
	len = (size_t)(p - v->buf) + 8;
	hash = XXH3_64bits(v->buf, len - 8);
	memcpy(p, &hash, 8);
	ret = gv_write_atomic(vpath, v->buf, len);
	if (ret)
		gv_set_error("writing %s: %s", vpath, strerror(-ret));
out:
	free(vpath);
	return ret;
}

/* PATH.vm for @vm, paused, whose memory was just saved at @path. */
static int gv_save_vm_side(struct gv_vm *vm, const char *path, const uint8_t *key)
{
	struct gv_vm_side v;
	int ret = gv_vm_side_capture(vm, key != NULL, &v);

	if (!ret)
		ret = gv_vm_side_write(&v, path, key);
	gv_vm_side_free(&v);
	return ret;
}

/* Refuse a save of a guest that has stopped. Caller has paused @vm. */
static int gv_vm_check_running(struct gv_vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->result.why != GV_STOP_NONE) {
		ret = -ESRCH;
		gv_set_error("snapshot: the guest has stopped already (%s)",
			     gv_stop_name(vm->result.why));
	}
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

/* ---- live VM snapshots ---------------------------------------------------- */

/*
 * GMEM_SNAP_LIVE: the vCPUs are paused only while the memory's start image
 * is fixed: gmem_snapshot_save_ex() calls live_pause(1) just before it
 * locks the memory and live_pause(0) just after; the vCPU and device
 * records are read in between, so they belong to the same moment as the
 * memory file. The guest then runs on while the file is written.
 */
struct gv_live {
	struct gv_vm *vm;
	const struct gmem_snapshot_opts *user;
	struct gv_vm_side side;
	bool paused, captured;
	int err;
};

/* gmem_snapshot_opts.live_pause: a VM that cannot be paused, or whose
 * records cannot be read, ends the save before anything is written. */
static int gv_live_pause(void *ctx, int pause)
{
	struct gv_live *x = ctx;

	if (!pause) {
		if (gv_vm_resume(x->vm) && !x->err)
			x->err = -EIO;
		x->paused = false;
		return 0;
	}
	x->err = gv_vm_pause(x->vm);
	if (x->err)
		return x->err;
	x->paused = true;
	x->err = gv_vm_check_running(x->vm);
	if (!x->err)
		x->err = gv_vm_side_capture(x->vm, x->user->key != NULL, &x->side);
	if (x->err) {
		gv_vm_resume(x->vm);
		x->paused = false;
		return x->err;
	}
	x->captured = true;
	return 0;
}

static void gv_live_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct gv_live *x = ctx;

	if (x->user->progress)
		x->user->progress(x->user->progress_ctx, done, total);
}

static int gv_vm_snapshot_save_live(struct gv_vm *vm, const char *path,
				    const struct gmem_snapshot_opts *opts)
{
	struct gv_live x = { .vm = vm, .user = opts };
	struct gmem_snapshot_opts o = *opts;
	int ret;

	if (opts->live_pause) {
		gv_set_error("snapshot: a live VM snapshot pauses the vCPUs itself "
			     "(live_pause must be NULL)");
		return -EINVAL;
	}
	if (vm->cfg.accel == GV_ACCEL_USER) {
		gv_set_error("snapshot: the user accelerator writes guest memory through a "
			     "window of its own, which a live save cannot see");
		return -EOPNOTSUPP;
	}
	o.live_pause = gv_live_pause;
	o.progress = gv_live_progress;
	o.progress_ctx = &x;
	ret = gmem_snapshot_save_ex(vm->g, path, &o);
	if (x.paused)
		gv_live_pause(&x, 0);   /* the save failed while it was locked */
	if (ret && x.err)
		ret = x.err;            /* gv_last_error() says why already */
	else if (ret)
		gv_set_error("saving guest memory: %s", gmem_last_error()[0] ? gmem_last_error()
									  : gmem_strerror(ret));
	else if (x.err || !x.captured)
		ret = x.err ? x.err : -EIO;
	else
		ret = gv_vm_side_write(&x.side, path, opts->key);
	gv_vm_side_free(&x.side);
	return ret;
}

int gv_vm_snapshot_save(struct gv_vm *vm, const char *path,
			const struct gmem_snapshot_opts *opts)
{
	int ret, ret2;

	if (!vm || !path || !path[0]) {
		gv_set_error("snapshot: no VM or path");
		return -EINVAL;
	}
	if (vm->npio > GV_BUILTIN_PIO) {
		gv_set_error("snapshot: the VM has devices (%s, ...) whose state is not saved",
			     vm->pio[GV_BUILTIN_PIO].name);
		return -EOPNOTSUPP;
	}
	for (unsigned i = 0; i < vm->nmmio; i++) {
		const struct gv_mmio_dev *d = &vm->mmio[i];

		if (!d->save || !d->name || strlen(d->name) > GV_DEV_NAME_MAX) {
			gv_set_error("snapshot: device %s at %#llx cannot save its state",
				     d->name ? d->name : "(unnamed)",
				     (unsigned long long)d->base);
			return -EOPNOTSUPP;
		}
	}
	if (opts && opts->flags & GMEM_SNAP_LIVE)
		return gv_vm_snapshot_save_live(vm, path, opts);
	ret = gv_vm_pause(vm);
	if (ret)
		return ret;
	ret = gv_vm_check_running(vm);
	if (!ret)
		ret = gmem_snapshot_save_ex(vm->g, path, opts);
	if (ret && ret != -ESRCH)
		gv_set_error("saving guest memory: %s", gmem_last_error()[0] ? gmem_last_error()
									   : gmem_strerror(ret));
	if (!ret)
		ret = gv_save_vm_side(vm, path, opts ? opts->key : NULL);
	ret2 = gv_vm_resume(vm);
	return ret ? ret : ret2;
}

/* ---- restore ------------------------------------------------------------- */

struct gv_restorer {
	const char *path;
	const struct gmem_snapshot_opts *opts;
};

/* gv_config.open_mem: the snapshot restored on the new VM. */
static int gv_restore_mem(void *ctx, int vm_fd, uint64_t size, struct gmem **out)
{
	const struct gv_restorer *x = ctx;
	bool lazy = x->opts && x->opts->flags & GMEM_SNAP_LAZY;
	struct gmem_config c = {
		.size = size,
		.backend = lazy ? GMEM_BACKEND_MEMFD : GMEM_BACKEND_AUTO,
		.vm_fd = lazy ? -1 : vm_fd,
	};

	return gmem_snapshot_restore_ex(x->path, &c, x->opts, out);
}

/* Check the device records at @p (@h->dev_bytes of them, hashed already
 * but hostile all the same): each record's name is a string, its length
 * within bounds, its padding and reserved field zero, no two at one base,
 * and the records fill dev_bytes exactly. */
static int gv_check_devs(const char *vpath, const struct gv_snap_vm_header *h,
			 const uint8_t *p)
{
	const uint8_t *end = p + h->dev_bytes;
	uint64_t bases[GV_MAX_MMIO];

	for (unsigned i = 0; i < h->ndevs; i++) {
		struct gv_snap_dev_rec r;
		size_t pad;

		if ((size_t)(end - p) < sizeof(r))
			goto bad;
		memcpy(&r, p, sizeof(r));
		if (!memchr(r.name, 0, sizeof(r.name)) || !r.name[0] ||
		    r.state_len > GV_DEV_STATE_MAX || r.reserved)
			goto bad;
		for (unsigned j = strlen(r.name); j < sizeof(r.name); j++)
			if (r.name[j])
				goto bad;
		pad = gv_pad8(r.state_len);
		if ((size_t)(end - p) - sizeof(r) < pad)
			goto bad;
		for (size_t k = r.state_len; k < pad; k++)
			if (p[sizeof(r) + k])
				goto bad;
		for (unsigned j = 0; j < i; j++)
			if (bases[j] == r.base)
				goto bad;
		bases[i] = r.base;
		p += sizeof(r) + pad;
		continue;
bad:
		gv_set_error("%s: device record %u out of range", vpath, i);
		return -EINVAL;
	}
	if (p != end) {
		gv_set_error("%s: %zu bytes after the device records", vpath, (size_t)(end - p));
		return -EINVAL;
	}
	return 0;
}

/* Read PATH.vm whole and check it against the memory snapshot at @path;
 * open it with @key if it is sealed. On success *@recs holds the vCPU and
 * device records, plain, right after a copy of the header (as in an
 * unsealed file), *@recs_len bytes in all: wipe them before freeing. With a
 * key every integrity refusal of PATH.vm is -EBADMSG, as for the memory
 * file; a sealed file without a key is -ENOKEY, a key for an unsealed one
 * -EINVAL. Nothing is created here: a refusal leaves nothing behind. */
static int gv_read_vm_side(const char *path, const uint8_t *key, struct gv_snap_vm_header *h,
			   uint8_t **recs, size_t *recs_len)
{
	char *vpath = gv_vm_path(path);
	uint8_t *buf = NULL;
	uint64_t size, tag, hash;
	struct stat sb;
	size_t len = 0, body;
	bool sealed;
	int fd = -1, ret, bad = key ? -EBADMSG : -EINVAL;

	if (!vpath)
		return -ENOMEM;
	fd = open(vpath, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0 || fstat(fd, &sb)) {
		ret = -errno;
		gv_set_error("%s: %s", vpath, strerror(errno));
		goto out;
	}
	ret = bad;
	if (!S_ISREG(sb.st_mode)) {
		gv_set_error("%s: not a regular file", vpath);
		goto out;
	}
	len = (size_t)sb.st_size;
	if (len < sizeof(*h) + 8 ||
	    len > sizeof(*h) + GV_SEAL_EXTRA + GV_MAX_CPUS * GV_VCPU_REC +
		  GV_MAX_MMIO * GV_DEV_REC_MAX + 8) {
		gv_set_error("%s: %zu bytes: truncated or not a VM snapshot", vpath, len);
		goto out;
	}
	buf = malloc(len);
	if (!buf || pread(fd, buf, len, 0) != (ssize_t)len) {
		ret = buf ? -EIO : -ENOMEM;
		gv_set_error("%s: cannot read it", vpath);
		goto out;
	}
	memcpy(h, buf, sizeof(*h));
	memcpy(&hash, buf + len - 8, 8);
	if (memcmp(h->magic, GV_SNAP_VM_MAGIC, sizeof(h->magic))) {
		gv_set_error("%s: not a VM snapshot (bad magic at offset 0)", vpath);
		goto out;
	}
	if (h->major != GV_SNAP_VM_MAJOR) {
		gv_set_error("%s: format version %u.%u; this VMM reads %u.x", vpath, h->major,
			     h->minor, GV_SNAP_VM_MAJOR);
		goto out;
	}
	if (hash != XXH3_64bits(buf, len - 8)) {
		gv_set_error("%s: checksum mismatch (offset %zu)", vpath, len - 8);
		goto out;
	}
	sealed = h->flags & GV_SNAP_VM_SEALED;
	if ((h->flags & ~GV_SNAP_VM_SEALED) || h->aead != (sealed ? GV_SNAP_VM_AEAD : 0)) {
		gv_set_error("%s: flags %#x, aead %u at offset 56: unknown", vpath, h->flags,
			     h->aead);
		goto out;
	}
	if (sealed && !key) {
		ret = -ENOKEY;
		gv_set_error("%s: sealed with a key; give it (--key-file)", vpath);
		goto out;
	}
	if (!sealed && key) {
		ret = -EINVAL;
		gv_set_error("%s: not sealed, yet a key was given (a sealed file stripped of its "
			     "flag is refused, not read in the clear)", vpath);
		goto out;
	}
	body = len - sizeof(*h) - 8;
	if (sealed) {
		if (body < GV_SEAL_EXTRA) {
			gv_set_error("%s: %zu bytes: too short to be sealed", vpath, len);
			goto out;
		}
		body -= GV_SEAL_EXTRA;
		ret = gv_unseal(key, buf, body);
		if (ret) {
			gv_set_error("%s: wrong key, or the file was changed (its seal does not "
				     "open)", vpath);
			goto out;
		}
		/* The records where an unsealed file has them. */
		memmove(buf + sizeof(*h), buf + sizeof(*h) + GV_SEAL_NONCE, body);
		sodium_memzero(buf + sizeof(*h) + body, len - sizeof(*h) - body);
	}
	ret = -EINVAL;
	if (h->header_size != sizeof(*h) || h->vcpu_size != GV_VCPU_REC || !h->ncpus ||
	    h->ncpus > GV_MAX_CPUS || h->ndevs > GV_MAX_MMIO ||
	    body != (size_t)h->ncpus * GV_VCPU_REC + h->dev_bytes) {
		gv_set_error("%s: header field out of range", vpath);
		goto out;
	}
	ret = gv_check_devs(vpath, h, buf + sizeof(*h) + h->ncpus * GV_VCPU_REC);
	if (ret)
		goto out;
	ret = gv_mem_tag(path, &size, &tag);
	if (ret)
		goto out;
	if (size != h->mem_file_size || tag != h->mem_tag) {
		ret = -EINVAL;
		gv_set_error("%s does not belong to %s (saved with another memory snapshot)",
			     vpath, path);
		goto out;
	}
	*recs = buf;
	*recs_len = len;
	buf = NULL;
out:
	if (fd >= 0)
		close(fd);
	if (buf)
		sodium_memzero(buf, len);
	free(buf);
	free(vpath);
	return ret;
}

/* Give the restored @vm the device records (checked by gv_check_devs) for
 * its devices to claim as they are added. */
static int gv_take_devs(struct gv_vm *vm, const struct gv_snap_vm_header *h,
			const uint8_t *p)
{
	if (!h->ndevs)
		return 0;
	vm->snap_dev_buf = malloc(h->dev_bytes);
	if (!vm->snap_dev_buf)
		return -ENOMEM;
	memcpy(vm->snap_dev_buf, p, h->dev_bytes);
	p = vm->snap_dev_buf;
	for (unsigned i = 0; i < h->ndevs; i++) {
		struct gv_snap_dev_rec r;
		struct gv_snap_dev *d = &vm->snap_dev[i];

		memcpy(&r, p, sizeof(r));
		memcpy(d->name, r.name, sizeof(d->name));
		d->base = r.base;
		d->len = r.state_len;
		d->state = p + sizeof(r);
		d->claimed = false;
		p += sizeof(r) + gv_pad8(r.state_len);
	}
	vm->nsnap_dev = h->ndevs;
	return 0;
}

int gv_vm_snapshot_restore(const struct gv_config *cfg, const char *path,
			   const struct gmem_snapshot_opts *opts, struct gv_vm **out)
{
	struct gv_restorer x = { .path = path, .opts = opts };
	struct gv_snap_vm_header h = { 0 };
	struct gv_config c;
	struct gv_vm *vm;
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret;

	if (!cfg || !path || !out) {
		gv_set_error("snapshot: no config, path or output");
		return -EINVAL;
	}
	/* userfaultfd serves the KVM view only: the user accelerator's second
	 * mapping of RAM would touch pages not loaded yet and fault. */
	if (cfg->accel == GV_ACCEL_USER && opts && (opts->flags & GMEM_SNAP_LAZY)) {
		gv_set_error("snapshot: a lazy restore cannot run on the user accelerator "
			     "(its guest mapping is outside userfaultfd's reach): restore eagerly");
		return -EOPNOTSUPP;
	}
	ret = gv_read_vm_side(path, opts ? opts->key : NULL, &h, &buf, &len);
	if (ret)
		return ret;
	c = *cfg;
	c.mem_size = h.mem_size;
	c.ncpus = h.ncpus;
	c.open_mem = gv_restore_mem;
	c.open_mem_ctx = &x;
	ret = gv_vm_create(&c, &vm);
	if (ret)
		goto out;
	vm->cfg.open_mem = NULL;        /* x lives on this stack only */
	vm->cfg.open_mem_ctx = NULL;
	for (unsigned i = 0; i < vm->ncpus && !ret; i++) {
		struct gv_vcpu_state st;

		gv_rec_get(buf + sizeof(h) + i * GV_VCPU_REC, &st);
		ret = gv_boot_cpuid(&vm->cpu[i]);
		if (!ret)
			ret = gv_vcpu_set_state(vm, i, &st);
		sodium_memzero(&st, sizeof(st));
	}
	if (!ret)
		ret = gv_take_devs(vm, &h, buf + sizeof(h) + h.ncpus * GV_VCPU_REC);
	if (ret) {
		gv_vm_destroy(vm);
		goto out;
	}
	vm->loaded = true;
	*out = vm;
out:
	if (buf)
		sodium_memzero(buf, len);
	free(buf);
	return ret;
}

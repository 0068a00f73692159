// SPDX-License-Identifier: MIT
/*
 * elf.c - the guest program loader's parser: an ELF64 x86-64 executable,
 * checked field by field before a byte of it reaches guest memory.
 *
 * Model: the file is untrusted bytes. Every offset and size is checked
 * against the file length and every address range against guest RAM, with
 * overflow-safe arithmetic (a + b is only formed after b <= limit - a), so
 * a truncated or hostile file yields -ENOEXEC or -EFBIG and a reason, never
 * a read outside the buffer. Program headers are copied out with memcpy:
 * the buffer need not be aligned.
 */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "vmm_internal.h"

#define GV_PHNUM_MAX 64u

static int gv_elf_bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int gv_elf_bad(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	gv_vset_error(fmt, ap);
	va_end(ap);
	return -ENOEXEC;
}

/* [off, off + n) lies inside a file of @len bytes. */
static bool gv_in_file(uint64_t off, uint64_t n, size_t len)
{
	return off <= len && n <= len - off;
}

static int gv_elf_header(const uint8_t *b, size_t len, Elf64_Ehdr *eh)
{
	if (len < EI_NIDENT)
		return gv_elf_bad("truncated: %zu bytes, shorter than the ELF identification",
				  len);
	if (memcmp(b, ELFMAG, SELFMAG))
		return gv_elf_bad("not an ELF file (bad magic %02x %02x %02x %02x)", b[0], b[1],
				  b[2], b[3]);
	if (b[EI_CLASS] != ELFCLASS64)
		return gv_elf_bad("ELF class %u: only 64-bit (ELFCLASS64) guests run here",
				  b[EI_CLASS]);
	if (b[EI_DATA] != ELFDATA2LSB)
		return gv_elf_bad("ELF byte order %u: only little endian", b[EI_DATA]);
	if (b[EI_VERSION] != EV_CURRENT)
		return gv_elf_bad("ELF identification version %u, want %u", b[EI_VERSION],
				  EV_CURRENT);
	if (len < sizeof(*eh))
		return gv_elf_bad("truncated: %zu bytes, shorter than the ELF header (%zu)", len,
				  sizeof(*eh));
	memcpy(eh, b, sizeof(*eh));
	if (eh->e_type != ET_EXEC)
		return gv_elf_bad("ELF type %u: need an executable (ET_EXEC, linked static "
				  "and not position-independent)", eh->e_type);
	if (eh->e_machine != EM_X86_64)
		return gv_elf_bad("ELF machine %u: need x86-64 (%u)", eh->e_machine, EM_X86_64);
	if (eh->e_version != EV_CURRENT)
		return gv_elf_bad("ELF version %u, want %u", eh->e_version, EV_CURRENT);
	if (eh->e_ehsize < sizeof(*eh))
		return gv_elf_bad("ELF header size %u, want at least %zu", eh->e_ehsize,
				  sizeof(*eh));
	if (eh->e_phentsize != sizeof(Elf64_Phdr))
		return gv_elf_bad("program header size %u, want %zu", eh->e_phentsize,
				  sizeof(Elf64_Phdr));
	if (eh->e_phnum == 0 || eh->e_phnum == PN_XNUM)
		return gv_elf_bad("%u program headers: need 1..%u", eh->e_phnum, GV_PHNUM_MAX);
	if (eh->e_phnum > GV_PHNUM_MAX)
		return gv_elf_bad("%u program headers: more than %u", eh->e_phnum, GV_PHNUM_MAX);
	if (!gv_in_file(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), len))
		return gv_elf_bad("truncated: program headers at %#llx (%u x %zu bytes) run "
				  "past the end of the %zu-byte file",
				  (unsigned long long)eh->e_phoff, eh->e_phnum,
				  sizeof(Elf64_Phdr), len);
	return 0;
}

/* Segment @i against the file, RAM and the reserved areas. */
static int gv_elf_seg(const Elf64_Phdr *ph, unsigned i, size_t len, uint64_t load_end,
		      uint64_t mem_size)
{
	if (ph->p_filesz > ph->p_memsz)
		return gv_elf_bad("segment %u: file size %#llx larger than memory size %#llx", i,
				  (unsigned long long)ph->p_filesz,
				  (unsigned long long)ph->p_memsz);
	if (!gv_in_file(ph->p_offset, ph->p_filesz, len))
		return gv_elf_bad("truncated: segment %u's %#llx bytes at offset %#llx run past "
				  "the end of the %zu-byte file", i,
				  (unsigned long long)ph->p_filesz,
				  (unsigned long long)ph->p_offset, len);
	if (ph->p_vaddr != ph->p_paddr)
		return gv_elf_bad("segment %u: virtual address %#llx != physical %#llx (guests "
				  "run identity-mapped)", i, (unsigned long long)ph->p_vaddr,
				  (unsigned long long)ph->p_paddr);
	if (ph->p_paddr > UINT64_MAX - ph->p_memsz)
		return gv_elf_bad("segment %u: %#llx + %#llx overflows", i,
				  (unsigned long long)ph->p_paddr,
				  (unsigned long long)ph->p_memsz);
	if (ph->p_paddr < GV_LOAD_MIN)
		return gv_elf_bad("segment %u at %#llx overlaps the boot page tables and GDT "
				  "below %#llx", i, (unsigned long long)ph->p_paddr, GV_LOAD_MIN);
	if (ph->p_paddr >= load_end || ph->p_memsz > load_end - ph->p_paddr) {
		gv_set_error("segment %u [%#llx, %#llx) does not fit below %#llx (%llu MiB of "
			     "RAM less the vCPU stacks)", i, (unsigned long long)ph->p_paddr,
			     (unsigned long long)(ph->p_paddr + ph->p_memsz),
			     (unsigned long long)load_end,
			     (unsigned long long)(mem_size >> 20));
		return -EFBIG;
	}
	return 0;
}

static bool gv_overlap(const struct gv_elf_seg *a, const struct gv_elf_seg *b)
{
	return a->gpa < b->gpa + b->memsz && b->gpa < a->gpa + a->memsz;
}

int gv_elf_parse(const void *buf, size_t len, uint64_t mem_size, unsigned ncpus,
		 struct gv_elf_image *img)
{
	const uint8_t *b = buf;
	uint64_t stacks = (uint64_t)ncpus * GV_STACK_SIZE, load_end;
	Elf64_Ehdr eh;
	bool entry_ok = false;
	int ret;

	memset(img, 0, sizeof(*img));
	if (!buf)
		return gv_elf_bad("no file");
	if (mem_size <= stacks || mem_size > GV_MAP_LIMIT)
		return gv_elf_bad("memory size %llu cannot hold %u vCPU stacks",
				  (unsigned long long)mem_size, ncpus);
	load_end = mem_size - stacks;
	ret = gv_elf_header(b, len, &eh);
	if (ret)
		return ret;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		struct gv_elf_seg *s;
		Elf64_Phdr ph;

		memcpy(&ph, b + eh.e_phoff + (uint64_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type == PT_DYNAMIC || ph.p_type == PT_INTERP)
			return gv_elf_bad("segment %u: dynamic program (type %#x); link guests "
					  "-static -nostdlib", i, ph.p_type);
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		ret = gv_elf_seg(&ph, i, len, load_end, mem_size);
		if (ret)
			return ret;
		if (img->nseg == GV_ELF_MAX_SEGS)
			return gv_elf_bad("more than %u loadable segments", GV_ELF_MAX_SEGS);
		s = &img->seg[img->nseg];
		*s = (struct gv_elf_seg){ .gpa = ph.p_paddr, .filesz = ph.p_filesz,
					  .memsz = ph.p_memsz, .offset = ph.p_offset,
					  .flags = ph.p_flags };
		for (unsigned j = 0; j < img->nseg; j++)
			if (gv_overlap(s, &img->seg[j]))
				return gv_elf_bad("segment %u [%#llx, %#llx) overlaps an earlier "
						  "one at %#llx", i,
						  (unsigned long long)s->gpa,
						  (unsigned long long)(s->gpa + s->memsz),
						  (unsigned long long)img->seg[j].gpa);
		if ((s->flags & PF_X) && eh.e_entry >= s->gpa && eh.e_entry - s->gpa < s->memsz)
			entry_ok = true;
		img->nseg++;
	}
	if (!img->nseg)
		return gv_elf_bad("no loadable segment");
	if (!entry_ok)
		return gv_elf_bad("entry point %#llx is not inside an executable segment",
				  (unsigned long long)eh.e_entry);
	img->entry = eh.e_entry;
	return 0;
}

// SPDX-License-Identifier: MIT
/*
 * test_vm_elf.c - the guest loader against truncated, malformed and randomly
 * corrupted files: a clear error (-ENOEXEC or -EFBIG and a reason), never a
 * crash and never a read outside the file (each sample sits in a buffer of
 * exactly its size, so ASan sees any over-read).
 */
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vt.h"

#define VT_CPUS 1

static int vt_parse(const uint8_t *file, size_t len, struct gv_elf_image *img)
{
	/* An exact-size copy: reading one byte past it is an ASan error. */
	uint8_t *copy = malloc(len ? len : 1);
	int ret;

	cr_assert_not_null(copy);
	memcpy(copy, file, len);
	ret = gv_elf_parse(copy, len, VT_MEM, VT_CPUS, img);
	free(copy);
	return ret;
}

/* The bytes a loader needs: headers and every segment's file bytes. */
static size_t vt_needed(const uint8_t *file)
{
	Elf64_Ehdr eh;
	size_t need;

	memcpy(&eh, file, sizeof(eh));
	need = eh.e_phoff + (size_t)eh.e_phnum * sizeof(Elf64_Phdr);
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;

		memcpy(&ph, file + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type == PT_LOAD && ph.p_offset + ph.p_filesz > need)
			need = ph.p_offset + ph.p_filesz;
	}
	return need > sizeof(eh) ? need : sizeof(eh);
}

Test(vm, elf_accepts_the_guests)
{
	static const char *const names[] = { "hello", "convert", "hostio", "smp", "fault",
					     "spin" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct gv_elf_image img;
		size_t len;
		uint8_t *f = vt_read(vt_guest_path(names[i]), &len);
		int ret = vt_parse(f, len, &img);

		cr_assert_eq(ret, 0, "%s: %d: %s", names[i], ret, gv_last_error());
		TH_EQ(img.entry, GV_LOAD_MIN);
		cr_assert_geq(img.nseg, 2, "%s: %u segments", names[i], img.nseg);
		free(f);
	}
}

Test(vm, elf_truncated_at_every_length)
{
	struct gv_elf_image img;
	size_t len, need, refused = 0;
	uint8_t *f = vt_read(vt_guest_path("hello"), &len);

	need = vt_needed(f);
	cr_assert_leq(need, len);
	for (size_t n = 0; n <= len; n++) {
		int ret = vt_parse(f, n, &img);

		if (n < need) {
			cr_assert_eq(ret, -ENOEXEC, "%zu of %zu bytes (need %zu): got %d, want "
				     "-ENOEXEC", n, len, need, ret);
			cr_assert_neq(gv_last_error()[0], '\0', "%zu bytes: no reason given", n);
			cr_assert(strstr(gv_last_error(), "truncated") ||
				  strstr(gv_last_error(), "not an ELF"),
				  "%zu bytes: reason \"%s\" does not say truncated", n,
				  gv_last_error());
			refused++;
		} else {
			/* Section headers are not needed to load. */
			cr_assert_eq(ret, 0, "%zu of %zu bytes (need %zu): %d: %s", n, len, need,
				     ret, gv_last_error());
		}
	}
	cr_log_info("%zu truncations refused, %zu accepted", refused, len + 1 - refused);
	free(f);
}

/* One malformation: edit a copy of hello.elf, expect @err and @why. */
struct vt_bad {
	const char *name;
	void (*edit)(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph);
	int err;
	const char *why;
};

#define EH(f) ((Elf64_Ehdr *)(f))

static void e_magic(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)eh, (void)ph; f[1] = 'X'; }
static void e_class(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)eh, (void)ph; f[EI_CLASS] = ELFCLASS32; }
static void e_data(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)eh, (void)ph; f[EI_DATA] = ELFDATA2MSB; }
static void e_idver(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)eh, (void)ph; f[EI_VERSION] = 2; }
static void e_type(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)ph; eh->e_type = ET_DYN; }
static void e_machine(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)ph; eh->e_machine = EM_386; }
static void e_version(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)ph; eh->e_version = 0; }
static void e_ehsize(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)ph; eh->e_ehsize = 52; }
static void e_phentsize(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)ph; eh->e_phentsize = 32; }
static void e_phnum0(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)ph; eh->e_phnum = 0; }
static void e_phnum_xnum(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)ph; eh->e_phnum = PN_XNUM; }
static void e_phnum_many(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)ph; eh->e_phnum = 65; }
static void e_phoff_past(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)ph; eh->e_phoff = 1u << 20; }
static void e_phoff_wrap(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)ph; eh->e_phoff = UINT64_MAX - 8; }
static void e_filesz(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)eh; ph[0].p_filesz = ph[0].p_memsz + 1; }
static void e_offset_wrap(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)eh; ph[0].p_offset = UINT64_MAX - 16; }
static void e_offset_past(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)eh; ph[0].p_offset = 1u << 20; }
static void e_vaddr(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)eh; ph[0].p_vaddr += 0x1000; }
static void e_addr_wrap(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph)
{
	(void)f, (void)eh;
	ph[1].p_paddr = ph[1].p_vaddr = UINT64_MAX - 0xfff;
	ph[1].p_memsz = 0x2000;
	ph[1].p_filesz = 0;
}
static void e_boot_area(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph)
{
	(void)f, (void)eh;
	ph[1].p_paddr = ph[1].p_vaddr = 0x2000;  /* the PML4 */
}
static void e_past_ram(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph)
{
	(void)f, (void)eh;
	ph[1].p_paddr = ph[1].p_vaddr = VT_MEM;
}
static void e_huge_bss(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph)
{
	(void)f, (void)eh;
	ph[2].p_memsz = VT_MEM;
}
static void e_stack(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph)
{
	(void)f, (void)eh;
	ph[1].p_paddr = ph[1].p_vaddr = VT_MEM - 0x1000;  /* vCPU 0's stack */
	ph[1].p_memsz = 0x100;
	ph[1].p_filesz = 0x100;
}
static void e_overlap(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph)
{
	(void)f, (void)eh;
	ph[1].p_paddr = ph[1].p_vaddr = ph[0].p_paddr + 0x10;
}
static void e_entry(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph)
{
	(void)f;
	eh->e_entry = ph[1].p_paddr;  /* rodata: not executable */
}
static void e_entry_nowhere(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)ph; eh->e_entry = 0x3000000; }
static void e_interp(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)eh; ph[1].p_type = PT_INTERP; }
static void e_dynamic(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph) { (void)f, (void)eh; ph[2].p_type = PT_DYNAMIC; }
static void e_noload(uint8_t *f, Elf64_Ehdr *eh, Elf64_Phdr *ph)
{
	(void)f;
	for (unsigned i = 0; i < eh->e_phnum; i++)
		ph[i].p_type = PT_NOTE;
}

static const struct vt_bad vt_bads[] = {
	{ "bad magic", e_magic, -ENOEXEC, "bad magic" },
	{ "32-bit class", e_class, -ENOEXEC, "class" },
	{ "big endian", e_data, -ENOEXEC, "byte order" },
	{ "ident version", e_idver, -ENOEXEC, "version" },
	{ "shared object", e_type, -ENOEXEC, "ET_EXEC" },
	{ "i386 machine", e_machine, -ENOEXEC, "machine" },
	{ "ELF version 0", e_version, -ENOEXEC, "version" },
	{ "short ELF header", e_ehsize, -ENOEXEC, "header size" },
	{ "program header size", e_phentsize, -ENOEXEC, "program header size" },
	{ "no program headers", e_phnum0, -ENOEXEC, "program headers" },
	{ "phnum PN_XNUM", e_phnum_xnum, -ENOEXEC, "program headers" },
	{ "too many program headers", e_phnum_many, -ENOEXEC, "more than" },
	{ "program headers past the file", e_phoff_past, -ENOEXEC, "truncated" },
	{ "phoff overflow", e_phoff_wrap, -ENOEXEC, "truncated" },
	{ "filesz > memsz", e_filesz, -ENOEXEC, "larger than memory size" },
	{ "p_offset overflow", e_offset_wrap, -ENOEXEC, "truncated" },
	{ "p_offset past the file", e_offset_past, -ENOEXEC, "truncated" },
	{ "vaddr != paddr", e_vaddr, -ENOEXEC, "identity" },
	{ "address overflow", e_addr_wrap, -ENOEXEC, "overflows" },
	{ "over the page tables", e_boot_area, -ENOEXEC, "page tables" },
	{ "segment past RAM", e_past_ram, -EFBIG, "does not fit" },
	{ "bss past RAM", e_huge_bss, -EFBIG, "does not fit" },
	{ "over the vCPU stack", e_stack, -EFBIG, "stacks" },
	{ "overlapping segments", e_overlap, -ENOEXEC, "overlaps" },
	{ "entry in rodata", e_entry, -ENOEXEC, "entry point" },
	{ "entry outside", e_entry_nowhere, -ENOEXEC, "entry point" },
	{ "PT_INTERP", e_interp, -ENOEXEC, "dynamic" },
	{ "PT_DYNAMIC", e_dynamic, -ENOEXEC, "dynamic" },
	{ "no PT_LOAD", e_noload, -ENOEXEC, "no loadable segment" },
};

Test(vm, elf_malformed_files_refused)
{
	size_t len;
	uint8_t *good = vt_read(vt_guest_path("hello"), &len);

	cr_assert_eq(EH(good)->e_phnum, 3, "the table assumes hello.elf has text, rodata, "
		     "data segments; it has %u", EH(good)->e_phnum);
	for (size_t i = 0; i < sizeof(vt_bads) / sizeof(vt_bads[0]); i++) {
		const struct vt_bad *b = &vt_bads[i];
		uint8_t *f = malloc(len);
		struct gv_elf_image img;
		int ret;

		cr_assert_not_null(f);
		memcpy(f, good, len);
		b->edit(f, EH(f), (Elf64_Phdr *)(f + EH(f)->e_phoff));
		ret = vt_parse(f, len, &img);
		cr_assert_eq(ret, b->err, "%s: got %d (%s), want %d", b->name, ret,
			     gv_last_error(), b->err);
		cr_assert_not_null(strstr(gv_last_error(), b->why),
				   "%s: reason \"%s\" lacks \"%s\"", b->name, gv_last_error(),
				   b->why);
		free(f);
	}
	free(good);
}

static uint64_t vt_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Random byte corruption of the headers: whatever the parser accepts must
 * still describe segments inside the file and inside loadable RAM. */
Test(vm, elf_random_corruption_never_escapes)
{
	uint64_t seed = 0x5eed1234abcdull;
	size_t len, accepted = 0;
	uint8_t *good = vt_read(vt_guest_path("hello"), &len);
	size_t hdr = EH(good)->e_phoff + EH(good)->e_phnum * sizeof(Elf64_Phdr);

	for (int it = 0; it < 4000; it++) {
		uint8_t *f = malloc(len);
		struct gv_elf_image img;
		int flips = 1 + (int)(vt_rand(&seed) % 4), ret;

		cr_assert_not_null(f);
		memcpy(f, good, len);
		for (int k = 0; k < flips; k++)
			f[vt_rand(&seed) % hdr] ^= (uint8_t)(1u << (vt_rand(&seed) % 8));
		ret = gv_elf_parse(f, len, VT_MEM, VT_CPUS, &img);
		cr_assert(ret == 0 || ret == -ENOEXEC || ret == -EFBIG,
			  "iteration %d: %d (%s)", it, ret, gv_last_error());
		if (ret) {
			cr_assert_neq(gv_last_error()[0], '\0', "iteration %d: no reason", it);
		} else {
			accepted++;
			for (unsigned s = 0; s < img.nseg; s++) {
				const struct gv_elf_seg *g = &img.seg[s];

				cr_assert(g->offset + g->filesz <= len && g->filesz <= g->memsz,
					  "iteration %d seg %u: file bytes escape", it, s);
				cr_assert(g->gpa >= GV_LOAD_MIN &&
					  g->gpa + g->memsz <= VT_MEM - GV_STACK_SIZE,
					  "iteration %d seg %u: [%#llx, +%#llx) escapes RAM", it, s,
					  (unsigned long long)g->gpa,
					  (unsigned long long)g->memsz);
			}
		}
		free(f);
	}
	cr_log_info("%zu of 4000 corrupted headers still loadable", accepted);
	free(good);
}

Test(vm, load_errors_are_clear_and_leave_the_vm_usable)
{
	char path[] = "/tmp/gmem-vt-XXXXXX";
	struct gv_result res;
	struct gv_vm *vm = vt_vm_any(NULL, 1, GV_POLICY_CONVERT);
	size_t len;
	uint8_t *good = vt_read(vt_guest_path("hello"), &len);
	int fd, ret;

	ret = gv_vm_load_file(vm, "/nonexistent/guest.elf");
	TH_EQ(ret, -ENOENT);
	cr_assert_not_null(strstr(gv_last_error(), "/nonexistent/guest.elf"), "%s",
			   gv_last_error());

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	ret = gv_vm_load_file(vm, path);    /* empty */
	TH_EQ(ret, -ENOEXEC);
	cr_assert_eq(write(fd, good, len / 3), (ssize_t)(len / 3));
	ret = gv_vm_load_file(vm, path);    /* truncated */
	TH_EQ(ret, -ENOEXEC);
	cr_assert_not_null(strstr(gv_last_error(), path), "reason names no file: %s",
			   gv_last_error());
	cr_assert_not_null(strstr(gv_last_error(), "truncated"), "%s", gv_last_error());
	close(fd);
	unlink(path);

	/* Nothing started: the good program still loads and runs. (Under KVM a
	 * VM with no program does not start; a test-accelerator VM may, its
	 * driver being the guest.) */
	if (!strcmp(gv_accel_name(vm), "kvm"))
		TH_EQ(gv_vm_start(vm), -EINVAL);
	ret = gv_vm_load_elf(vm, good, len);
	cr_assert_eq(ret, 0, "%s", gv_last_error());
	TH_EQ(gv_vm_load_elf(vm, good, len), -EBUSY);
	vt_finish(vm, &res);
	free(good);
	gv_vm_destroy(vm);
}

Test(vm, elf_does_not_fit_beside_many_stacks)
{
	struct gv_elf_image img;
	size_t len;
	uint8_t *f = vt_read(vt_guest_path("hello"), &len);
	/* 2 MiB of RAM, 64 stacks of 16 KiB: 1 MiB left below them. */
	int ret = gv_elf_parse(f, len, 2 * TH_MIB, GV_MAX_CPUS, &img);

	TH_EQ(ret, -EFBIG);
	cr_assert_not_null(strstr(gv_last_error(), "does not fit"), "%s", gv_last_error());
	TH_EQ(gv_elf_parse(f, len, 2 * TH_MIB, 1, &img), 0);
	free(f);
}

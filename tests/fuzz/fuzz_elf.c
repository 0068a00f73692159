// SPDX-License-Identifier: MIT
/*
 * fuzz_elf.c - the guest loader's parser (gv_elf_parse) on hostile files.
 *
 * Input: one byte picks the guest's RAM (2 MiB steps up to 64 MiB) and
 * vCPU count, the rest is the file. The parser must refuse with -ENOEXEC or
 * -EFBIG and a reason, or accept an image that the loader can write without
 * a check of its own: every segment's file bytes inside the file, its
 * memory inside [GV_LOAD_MIN, RAM - stacks), no two segments overlapping,
 * the entry inside an executable segment. The file sits in a buffer of
 * exactly its size, so ASan catches a read past it.
 */
#include <elf.h>
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "vmm.h"

static void gm_fuzz_elf_accepted(const struct gv_elf_image *img, size_t len,
				 uint64_t load_end)
{
	bool entry_ok = false;

	GM_FUZZ_CHECK(img->nseg >= 1 && img->nseg <= GV_ELF_MAX_SEGS, "nseg %u", img->nseg);
	for (unsigned i = 0; i < img->nseg; i++) {
		const struct gv_elf_seg *s = &img->seg[i];

		GM_FUZZ_CHECK(s->filesz <= s->memsz && s->memsz, "segment %u: filesz %#llx memsz %#llx",
			      i, (unsigned long long)s->filesz, (unsigned long long)s->memsz);
		GM_FUZZ_CHECK(s->offset <= len && s->filesz <= len - s->offset,
			      "segment %u: file bytes [%#llx, +%#llx) outside a %zu-byte file", i,
			      (unsigned long long)s->offset, (unsigned long long)s->filesz, len);
		GM_FUZZ_CHECK(s->gpa >= GV_LOAD_MIN && s->gpa < load_end &&
			      s->memsz <= load_end - s->gpa,
			      "segment %u: [%#llx, +%#llx) outside [%#llx, %#llx)", i,
			      (unsigned long long)s->gpa, (unsigned long long)s->memsz,
			      GV_LOAD_MIN, (unsigned long long)load_end);
		for (unsigned j = 0; j < i; j++) {
			const struct gv_elf_seg *o = &img->seg[j];

			GM_FUZZ_CHECK(s->gpa >= o->gpa + o->memsz || o->gpa >= s->gpa + s->memsz,
				      "segments %u and %u overlap", j, i);
		}
		if ((s->flags & PF_X) && img->entry >= s->gpa && img->entry - s->gpa < s->memsz)
			entry_ok = true;
	}
	GM_FUZZ_CHECK(entry_ok, "entry %#llx outside every executable segment",
		      (unsigned long long)img->entry);
}

void gm_fuzz_elf(const uint8_t *data, size_t size)
{
	struct gv_elf_image img;
	uint64_t mem;
	unsigned ncpus;
	int ret;

	if (!size)
		return;
	mem = (uint64_t)(data[0] % 32 + 1) * GMEM_REGION_SIZE;
	ncpus = (unsigned)(data[0] >> 5) + 1;
	ret = gv_elf_parse(data + 1, size - 1, mem, ncpus, &img);
	if (ret) {
		GM_FUZZ_CHECK(ret == -ENOEXEC || ret == -EFBIG, "gv_elf_parse returned %d", ret);
		GM_FUZZ_CHECK(gv_last_error()[0], "refused (%d) without a reason", ret);
		return;
	}
	gm_fuzz_elf_accepted(&img, size - 1, mem - (uint64_t)ncpus * GV_STACK_SIZE);
}

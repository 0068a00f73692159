/* SPDX-License-Identifier: MIT */
/*
 * pintab.h - per-page pin and temporary-mapping counts, kept only for the
 * pages that have any (open addressing, linear probing, backward-shift
 * deletion). Pure: no syscalls. Caller serialises all calls.
 */
#ifndef GM_PINTAB_H
#define GM_PINTAB_H

#include <stdint.h>

struct gm_pin_entry {
	uint64_t key;           /* page index + 1; 0 = empty slot */
	uint32_t pins;
	uint32_t kmaps;
};

struct gm_pintab {
	struct gm_pin_entry *slots;
	uint64_t mask;          /* capacity - 1, capacity a power of two */
	uint64_t used;
};

int  gm_pintab_init(struct gm_pintab *t);
void gm_pintab_fini(struct gm_pintab *t);
/* Make room for @more new entries, so that the next @more gm_pintab_get()
 * calls with create set cannot fail. 0 or -ENOMEM. */
int  gm_pintab_reserve(struct gm_pintab *t, uint64_t more);
/* Entry of @page, or NULL; with @create, a zeroed new entry (room reserved). */
struct gm_pin_entry *gm_pintab_get(struct gm_pintab *t, uint64_t page, int create);
/* Drop the entry of @page if both its counts are zero. */
void gm_pintab_put(struct gm_pintab *t, struct gm_pin_entry *e);
uint64_t gm_pintab_bytes(const struct gm_pintab *t);

#endif /* GM_PINTAB_H */

// SPDX-License-Identifier: MIT
/*
 * pintab.c - sparse per-page pin/kmap counts (see pintab.h).
 *
 * Pins are transient and few compared with guest pages, so counting them in
 * a hash keyed by page costs nothing per page of guest memory; the page-state
 * bitmap keeps one "busy" bit per page for range scans.
 */
#include <errno.h>
#include <stdlib.h>

#include "pintab.h"

#define GM_PINTAB_MIN 64

static inline uint64_t gm_pintab_hash(uint64_t key)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdull;
	key ^= key >> 33;
	return key;
}

int gm_pintab_init(struct gm_pintab *t)
{
	t->slots = calloc(GM_PINTAB_MIN, sizeof(*t->slots));
	if (!t->slots)
		return -ENOMEM;
	t->mask = GM_PINTAB_MIN - 1;
	t->used = 0;
	return 0;
}

void gm_pintab_fini(struct gm_pintab *t)
{
	free(t->slots);
	t->slots = NULL;
}

static void gm_pintab_insert_raw(struct gm_pin_entry *slots, uint64_t mask,
				 const struct gm_pin_entry *e)
{
	uint64_t i = gm_pintab_hash(e->key) & mask;

	while (slots[i].key)
		i = (i + 1) & mask;
	slots[i] = *e;
}

int gm_pintab_reserve(struct gm_pintab *t, uint64_t more)
{
	uint64_t cap = t->mask + 1, need = t->used + more;
	struct gm_pin_entry *slots;

	if (need <= cap / 2)
		return 0;
	while (need > cap / 2) {
		if (cap > (UINT64_MAX >> 2))
			return -ENOMEM;
		cap *= 2;
	}
	slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return -ENOMEM;
	for (uint64_t i = 0; i <= t->mask; i++)
		if (t->slots[i].key)
			gm_pintab_insert_raw(slots, cap - 1, &t->slots[i]);
	free(t->slots);
	t->slots = slots;
	t->mask = cap - 1;
	return 0;
}

struct gm_pin_entry *gm_pintab_get(struct gm_pintab *t, uint64_t page, int create)
{
	uint64_t key = page + 1, i = gm_pintab_hash(key) & t->mask;

	for (;;) {
		struct gm_pin_entry *e = &t->slots[i];

		if (e->key == key)
			return e;
		if (!e->key) {
			if (!create)
				return NULL;
			e->key = key;
			e->pins = e->kmaps = 0;
			t->used++;
			return e;
		}
		i = (i + 1) & t->mask;
	}
}

void gm_pintab_put(struct gm_pintab *t, struct gm_pin_entry *e)
{
	uint64_t i = (uint64_t)(e - t->slots), j = i;

	if (e->pins || e->kmaps)
		return;
	/* Backward-shift deletion keeps probe chains intact without tombstones. */
	for (;;) {
		uint64_t home;

		j = (j + 1) & t->mask;
		if (!t->slots[j].key)
			break;
		home = gm_pintab_hash(t->slots[j].key) & t->mask;
		/* Move j back into i unless its home lies cyclically in (i, j]. */
		if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
			continue;
		t->slots[i] = t->slots[j];
		i = j;
	}
	t->slots[i].key = 0;
	t->used--;
}

uint64_t gm_pintab_bytes(const struct gm_pintab *t)
{
	return (t->mask + 1) * sizeof(*t->slots);
}

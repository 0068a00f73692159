// SPDX-License-Identifier: MIT
/*
 * chain.c - find and check the files an incremental snapshot builds on.
 *
 * Model: an incremental file (version 2, PARENT flag) names its parent by
 * path (relative to its own directory, or absolute) and by identity
 * (gm_snap_identity: its header, END chunk and the digest of all its chunk
 * headers). Opening a chain opens the newest file, then each parent in
 * turn: every file is opened once, by the descriptor the reader keeps, and
 * its identity must be the one its child recorded, or the restore is
 * refused (-ESTALE) naming both. A chain ends at a file without a parent
 * (a full save); GM_SNAP_CHAIN_MAX files at most.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snap.h"
#include "snapshot.h"

void gm_chain_close(struct gm_snap_chain *ch)
{
	for (unsigned i = 0; i < ch->n; i++) {
		gm_snap_close(&ch->r[i]);
		free(ch->path[i]);
	}
	free(ch->r);
	ch->r = NULL;
	ch->n = 0;
}

/* Where the parent recorded in @child lies: its own path if absolute, else
 * beside @child_path. */
char *gm_chain_parent_path(const char *child_path, const char *rec)
{
	char *d, *p = NULL;

	if (rec[0] == '/')
		return strdup(rec);
	d = strdup(child_path);
	if (d && asprintf(&p, "%s/%s", dirname(d), rec) < 0)
		p = NULL;
	free(d);
	return p;
}

/* Open the parent of layer @i as layer i + 1 and check it is the one. */
static int gm_chain_parent(struct gm_snap_chain *ch, unsigned i, const uint8_t *key)
{
	struct gm_snap_reader *c = &ch->r[i], *p = &ch->r[i + 1];
	uint8_t id[GM_SNAP_ID_BYTES];
	char *path;
	int ret;

	ret = gm_snap_read_parent(c);
	if (ret)
		return ret;
	path = gm_chain_parent_path(ch->path[i], c->parent);
	if (!path)
		return -ENOMEM;
	ret = gm_snap_open_key(p, path, key);
	if (ret == -EBADMSG || ret == -ENOKEY) {
		free(path);     /* the key's verdict on the parent: kept as is */
		return ret;
	}
	if (ret) {
		gm_set_error("snapshot %s: its parent %s: %s", ch->path[i], path,
			     gmem_last_error());
		free(path);
		return -ESTALE;
	}
	ch->path[i + 1] = path;
	p->path = path;
	ch->n++;
	ret = gm_snap_seal_need_key(p);
	if (ret)
		return ret;
	gm_snap_reader_identity(p, id);
	if (memcmp(id, c->hdr.parent_id, sizeof(id))) {
		gm_set_error("snapshot %s: its parent %s is not the file it was saved against "
			     "(edited, replaced or saved again since)", ch->path[i], path);
		return -ESTALE;
	}
	if (p->hdr.mem_size != c->hdr.mem_size) {
		gm_set_error("snapshot %s: its parent %s holds %llu bytes of memory, it %llu",
			     ch->path[i], path, (unsigned long long)p->hdr.mem_size,
			     (unsigned long long)c->hdr.mem_size);
		return -ESTALE;
	}
	return 0;
}

int gm_chain_open(struct gm_snap_chain *ch, const char *path, const uint8_t *key)
{
	int ret;

	memset(ch, 0, sizeof(*ch));
	ch->r = calloc(GM_SNAP_CHAIN_MAX, sizeof(*ch->r));
	if (!ch->r)
		return -ENOMEM;
	ch->path[0] = strdup(path);
	if (!ch->path[0]) {
		free(ch->r);
		ch->r = NULL;
		return -ENOMEM;
	}
	ret = gm_snap_open_key(&ch->r[0], path, key);
	if (ret) {
		free(ch->path[0]);
		free(ch->r);
		ch->r = NULL;
		return ret;
	}
	ch->r[0].path = ch->path[0];
	ch->n = 1;
	ret = gm_snap_seal_need_key(&ch->r[0]);
	while (!ret && ch->r[ch->n - 1].hdr.flags & GM_SNAP_HDR_PARENT) {
		if (ch->n == GM_SNAP_CHAIN_MAX) {
			gm_set_error("snapshot %s: a chain of more than %u files", path,
				     GM_SNAP_CHAIN_MAX);
			ret = -ELOOP;
			break;
		}
		ret = gm_chain_parent(ch, ch->n - 1, key);
		if (ret)
			break;
	}
	if (ret)
		gm_chain_close(ch);
	return ret;
}

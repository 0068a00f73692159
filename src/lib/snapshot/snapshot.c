// SPDX-License-Identifier: MIT
/* snapshot.c - being written (issue 5); placeholder so the tree builds. */
#include <errno.h>
#include <gmem.h>

int gmem_snapshot_save(struct gmem *g, const char *path, unsigned flags)
{
	(void)g, (void)path, (void)flags;
	return -EOPNOTSUPP;
}

int gmem_snapshot_restore(const char *path, const struct gmem_config *cfg, struct gmem **out)
{
	(void)path, (void)cfg, (void)out;
	return -EOPNOTSUPP;
}

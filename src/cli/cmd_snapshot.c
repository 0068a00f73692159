// SPDX-License-Identifier: MIT
/* cmd_snapshot.c - being written; placeholder so the tree builds. */
#include "cmd.h"

int cmd_snapshot(int argc, char **argv)
{
	(void)argc, (void)argv;
	return cli_fail("snapshot: not built yet");
}

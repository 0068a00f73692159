// SPDX-License-Identifier: MIT
/* cmd_bench.c - being written; placeholder so the tree builds. */
#include "cmd.h"

int cmd_bench(int argc, char **argv)
{
	(void)argc, (void)argv;
	return cli_fail("bench: not built yet");
}

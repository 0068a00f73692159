// SPDX-License-Identifier: MIT
/* cmd_vm.c - being written; placeholder so the tree builds. */
#include "cmd.h"

int cmd_vm(int argc, char **argv)
{
	(void)argc, (void)argv;
	return cli_fail("vm: not built yet");
}

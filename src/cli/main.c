// SPDX-License-Identifier: MIT
/*
 * main.c - gmem: the command-line face of libgmem.
 */
#include <string.h>

#include "cmd.h"

const char *cli_prog = "gmem";

static const struct cli_cmd cli_cmds[] = {
	{ "probe", "[--json]", "what this host offers and what the library will use",
	  cmd_probe },
	{ "demo", "[--json] [--backend B] [--huge] [--save FILE [--zstd|--zstd-all] | --restore FILE [--lazy]]",
	  "private guest memory at work: load, share, pin, refuse, repair, discard",
	  cmd_demo },
	{ "snapshot", "info|verify [--json] [--quiet] FILE | merge NEWEST OUT", "inspect and verify a saved snapshot",
	  cmd_snapshot },
	{ "vm", "[options] GUEST.elf | --restore FILE [--lazy]",
	  "run a guest program on gmem memory (micro-VMM)",
	  cmd_vm },
	{ "bench", "io [options]", "I/O paths on private memory, measured side by side",
	  cmd_bench },
};

static void cli_help(FILE *f)
{
	fprintf(f, "usage: %s <command> [options]\n\ncommands:\n", cli_prog);
	for (size_t i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++)
		fprintf(f, "  %s %s\n      %s\n", cli_cmds[i].name, cli_cmds[i].args,
			cli_cmds[i].summary);
	fprintf(f, "  help\n      this text\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		cli_help(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_help(stdout);
		return CLI_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("gmem %d.%d\n", GMEM_VERSION_MAJOR, GMEM_VERSION_MINOR);
		return CLI_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++)
		if (!strcmp(argv[1], cli_cmds[i].name))
			return cli_cmds[i].run(argc - 1, argv + 1);
	fprintf(stderr, "%s: unknown command '%s' (try '%s help')\n", cli_prog, argv[1],
		cli_prog);
	return CLI_EXIT_USAGE;
}

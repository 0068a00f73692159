// SPDX-License-Identifier: MIT
/*
 * cmd_snapshot_merge.c - gmem snapshot merge [--compress] NEWEST OUT:
 * flatten a chain of incremental snapshots into one full file.
 *
 * The chain is restored as a restore would (every file checked, every
 * parent checked against the identity its child recorded) into a memory of
 * this process's, which is then saved to OUT in full: OUT holds the same
 * contents and page states as NEWEST, and needs none of the chain's files.
 * OUT is a new file with an identity of its own: the memory the chain was
 * saved from goes on saving against NEWEST, not against OUT.
 * The memory uses as much RAM as the chain's populated pages. With
 * --key-file every file of the chain is opened with the key and OUT is
 * sealed with it.
 */
#include <string.h>

#include "cmd.h"

struct merge_args {
	bool quiet;
	unsigned flags;
	const char *in, *out;
	const char *key_file;   /* --key-file: the chain's key, and OUT's      */
};

static int merge_parse(int argc, char **argv, struct merge_args *a)
{
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--compress"))
			a->flags |= GMEM_SNAP_COMPRESS;
		else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q"))
			a->quiet = true;
		else if (!strcmp(argv[i], "--key-file") && i + 1 < argc)
			a->key_file = argv[++i];
		else if (argv[i][0] == '-' || (a->in && a->out))
			return cli_usage("snapshot", "merge: unexpected '%s'", argv[i]);
		else if (!a->in)
			a->in = argv[i];
		else
			a->out = argv[i];
	}
	if (!a->out)
		return cli_usage("snapshot", "merge [--compress] [--quiet] [--key-file KEY] NEWEST OUT");
	return CLI_EXIT_OK;
}

static int merge_fail(void)
{
	return cli_fail("merge: %s", gmem_last_error());
}

/* With a key, every file of the chain is opened with it and OUT sealed
 * with it. */
static int merge_run(const struct merge_args *a, struct gmem_snapshot_opts *o,
		     struct gmem_config *cfg, struct cli_progress *bar)
{
	struct gmem_snapshot_info in;
	struct gmem *g = NULL;
	int ret = gmem_snapshot_inspect(a->in, 0, o, &in);

	if (ret)
		return merge_fail();
	cfg->size = in.size;
	cfg->flags = in.mem_flags & (GMEM_F_HUGE | GMEM_F_NO_PIN);
	cli_progress_init(bar, "reading", a->quiet);
	ret = gmem_snapshot_restore_ex(a->in, cfg, o, &g);
	cli_progress_end(bar);
	if (ret)
		return merge_fail();
	o->flags = a->flags;
	cli_progress_init(bar, "writing", a->quiet);
	ret = gmem_snapshot_save_ex(g, a->out, o);
	cli_progress_end(bar);
	gmem_close(g);
	if (ret)
		return merge_fail();
	if (!a->quiet)
		printf("%s: merged into %s\n", a->in, a->out);
	return CLI_EXIT_OK;
}

int cmd_snapshot_merge(int argc, char **argv)
{
	struct merge_args a = { 0 };
	struct gmem_config cfg = { .backend = GMEM_BACKEND_MEMFD, .vm_fd = -1 };
	struct cli_progress bar;
	struct gmem_snapshot_opts o = { .progress = cli_progress_cb, .progress_ctx = &bar };
	uint8_t *key = NULL;
	int ret = merge_parse(argc, argv, &a);

	if (ret)
		return ret;
	if (a.key_file && cli_key_load(a.key_file, &key))
		return CLI_EXIT_FAIL;
	o.key = key;
	ret = merge_run(&a, &o, &cfg, &bar);
	cli_key_free(key);
	return ret;
}

// SPDX-License-Identifier: MIT
/*
 * cmd_snapshot.c - gmem snapshot info|verify FILE: what a snapshot holds,
 * and whether every byte of it is intact.
 *
 *   gmem snapshot info [--json] FILE      header, states, populated and
 *                                         stored bytes (reads the file's
 *                                         ends only: cheap, catches
 *                                         truncation)
 *   gmem snapshot merge [--compress] [--quiet] NEWEST OUT
 *                                         a chain of incremental files
 *                                         flattened into one full file
 *                                         (cmd_snapshot_merge.c)
 *   gmem snapshot verify [--json] [--quiet] [--key-file KEY] FILE
 *                                         checks every chunk as a restore
 *                                         would; exit 1 with one line
 *                                         naming what is wrong and where
 *
 * With --key-file KEY (key.c) a sealed file is opened with its key: info
 * checks the key, verify opens every chunk. Without it a sealed file's
 * structure and checksums are still checked.
 * A progress bar goes to stderr when it is a terminal (not with --quiet
 * or --json). The format: docs/snapshot-format.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"

struct snap_args {
	bool json, quiet;
	const char *file;
	const char *key_file;   /* --key-file: a sealed file's key            */
};

static int snap_parse(const char *sub, int argc, char **argv, struct snap_args *a)
{
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			a->json = true;
		else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q"))
			a->quiet = true;
		else if (!strcmp(argv[i], "--key-file") && i + 1 < argc)
			a->key_file = argv[++i];
		else if (argv[i][0] == '-' || a->file)
			return cli_usage("snapshot", "%s: unexpected '%s'", sub, argv[i]);
		else
			a->file = argv[i];
	}
	if (!a->file)
		return cli_usage("snapshot", "%s: no FILE", sub);
	return CLI_EXIT_OK;
}

static double snap_ratio(const struct gmem_snapshot_info *in)
{
	return in->stored_bytes ? (double)in->populated_bytes / (double)in->stored_bytes : 1.0;
}

static json_t *snap_json(const char *file, const struct gmem_snapshot_info *in)
{
	json_t *o = json_object();
	char ver[32];

	snprintf(ver, sizeof(ver), "%u.%u", in->version_major, in->version_minor);
	json_object_set_new(o, "file", json_string(file));
	json_object_set_new(o, "format_version", json_string(ver));
	json_object_set_new(o, "size", json_integer((json_int_t)in->size));
	json_object_set_new(o, "page_size", json_integer((json_int_t)in->page_size));
	json_object_set_new(o, "backend", json_string(gmem_backend_name(in->backend)));
	json_object_set_new(o, "mem_flags", json_integer(in->mem_flags));
	json_object_set_new(o, "compressed", json_boolean(in->compressed));
	json_object_set_new(o, "file_bytes", json_integer((json_int_t)in->file_bytes));
	json_object_set_new(o, "shared_pages", json_integer((json_int_t)in->shared_pages));
	json_object_set_new(o, "private_pages", json_integer((json_int_t)in->private_pages));
	json_object_set_new(o, "state_runs", json_integer((json_int_t)in->runs));
	json_object_set_new(o, "populated_bytes", json_integer((json_int_t)in->populated_bytes));
	json_object_set_new(o, "stored_bytes", json_integer((json_int_t)in->stored_bytes));
	json_object_set_new(o, "compression_ratio", json_real(snap_ratio(in)));
	json_object_set_new(o, "chunks", json_integer((json_int_t)in->chunks));
	json_object_set_new(o, "data_chunks", json_integer((json_int_t)in->data_chunks));
	json_object_set_new(o, "verified", json_boolean(in->verified));
	json_object_set_new(o, "incremental", json_boolean(in->incremental));
	json_object_set_new(o, "sealed", json_boolean(in->sealed));
	if (in->incremental) {
		json_object_set_new(o, "changed_pages", json_integer((json_int_t)in->changed_pages));
		json_object_set_new(o, "parent", json_string(in->parent));
	}
	return o;
}

static void snap_print(const char *file, const struct gmem_snapshot_info *in)
{
	uint64_t pages = in->size / in->page_size;

	printf("snapshot %s\n", file);
	cli_row("format version", "%u.%u", in->version_major, in->version_minor);
	cli_row("memory size", "%llu MiB (%llu pages of %llu bytes)",
		(unsigned long long)(in->size >> 20), (unsigned long long)pages,
		(unsigned long long)in->page_size);
	cli_row("saved from", "%s backend, flags %#x", gmem_backend_name(in->backend),
		in->mem_flags);
	cli_row("page states", "%llu shared, %llu private, in %llu runs",
		(unsigned long long)in->shared_pages, (unsigned long long)in->private_pages,
		(unsigned long long)in->runs);
	cli_row("populated", "%llu bytes (%.2f %% of memory) in %llu data chunks",
		(unsigned long long)in->populated_bytes,
		100.0 * (double)in->populated_bytes / (double)in->size,
		(unsigned long long)in->data_chunks);
	cli_row("stored", "%llu bytes, %s, ratio %.2f", (unsigned long long)in->stored_bytes,
		in->compressed ? "zstd" : "uncompressed", snap_ratio(in));
	cli_row("file", "%llu bytes, %llu chunks + END", (unsigned long long)in->file_bytes,
		(unsigned long long)in->chunks);
	cli_row("checksums", "%s", in->verified ? "all verified" : "header, END and footer only "
		"(run 'verify' to check every chunk)");
	if (in->sealed)
		cli_row("sealed", "yes: every chunk under a key");
	if (in->incremental)
		cli_row("incremental", "%llu pages changed since its parent",
			(unsigned long long)in->changed_pages);
}

/* The files an incremental one builds on, newest first, read from their
 * ends only (a restore checks each against its child's record). */
static void snap_print_chain(const struct gmem_snapshot_info *newest, const uint8_t *key)
{
	struct gmem_snapshot_info *in = malloc(sizeof(*in));
	const struct gmem_snapshot_opts o = { .key = key };
	char path[sizeof(in->parent)];
	unsigned depth = 1;

	if (!in || !newest->incremental) {
		free(in);
		return;
	}
	snprintf(path, sizeof(path), "%s", newest->parent);
	printf("chain (newest first)\n");
	for (;;) {
		int ret = gmem_snapshot_inspect(path, 0, &o, in);

		if (ret) {
			cli_row("parent", "%s: %s", path, gmem_last_error());
			break;
		}
		cli_row("parent", "%s: %s, %llu bytes of data%s", path,
			in->incremental ? "incremental" : "full",
			(unsigned long long)in->populated_bytes,
			in->incremental ? "" : " (the chain's base)");
		if (!in->incremental || !in->parent[0] || ++depth > 64)
			break;
		snprintf(path, sizeof(path), "%s", in->parent);
	}
	free(in);
}

static int snap_fail(int err)
{
	const char *why = gmem_last_error();

	return cli_fail("%s", why[0] ? why : gmem_strerror(err));
}

static int snap_run(const char *sub, int argc, char **argv, unsigned flags)
{
	struct snap_args a = { 0 };
	struct gmem_snapshot_info in;
	struct cli_progress bar;
	struct gmem_snapshot_opts o = { .progress = cli_progress_cb, .progress_ctx = &bar };
	uint8_t *key = NULL;
	int ret = snap_parse(sub, argc, argv, &a);

	if (ret)
		return ret;
	if (a.key_file && cli_key_load(a.key_file, &key))
		return CLI_EXIT_FAIL;
	o.key = key;
	cli_progress_init(&bar, "verifying", a.quiet || a.json);
	ret = gmem_snapshot_inspect(a.file, flags, &o, &in);
	cli_progress_end(&bar);
	if (ret) {
		cli_key_free(key);
		return snap_fail(ret);
	}
	if (a.json)
		ret = cli_json_print(snap_json(a.file, &in));
	else if (flags & GMEM_SNAP_VERIFY && !a.quiet)
		printf("%s: ok: %llu chunks verified\n", a.file, (unsigned long long)in.chunks + 1);
	else if (!(flags & GMEM_SNAP_VERIFY)) {
		snap_print(a.file, &in);
		snap_print_chain(&in, key);
	}
	cli_key_free(key);      /* the library copied it each time */
	return ret;
}

int cmd_snapshot(int argc, char **argv)
{
	if (argc < 2)
		return cli_usage("snapshot", "info|verify [--key-file KEY] FILE, or merge NEWEST OUT");
	if (!strcmp(argv[1], "info"))
		return snap_run("info", argc - 2, argv + 2, 0);
	if (!strcmp(argv[1], "verify"))
		return snap_run("verify", argc - 2, argv + 2, GMEM_SNAP_VERIFY);
	if (!strcmp(argv[1], "merge"))
		return cmd_snapshot_merge(argc - 2, argv + 2);
	return cli_usage("snapshot", "unknown subcommand '%s'", argv[1]);
}

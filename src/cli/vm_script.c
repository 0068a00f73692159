// SPDX-License-Identifier: MIT
/*
 * vm_script.c - gmem vm --accel=test --script FILE: drive a VM on the test
 * accelerator one command a line, as a guest would, through the VMM's own
 * exit dispatch (src/vmm/testdrv.c). For reproducing a guest's behaviour
 * on a host without KVM, and for trying hostile input against the devices.
 *
 *   # comment                      blank lines are ignored
 *   cpu N                          later commands act on vCPU N (default 0)
 *   out PORT SIZE VALUE            a port write (SIZE 1, 2 or 4)
 *   in PORT SIZE                   a port read; prints the value
 *   hcall NAME|NR [A0 [A1 [A2]]]   gv_abi.h hypercall (share unshare state
 *                                  pin unpin hostio host_read); prints eax
 *   map GPA NPAGES shared|private  KVM_HC_MAP_GPA_RANGE; prints rax
 *   fault GPA SIZE shared|private  a KVM_EXIT_MEMORY_FAULT (the access kind)
 *   mmio read|write GPA LEN [VAL]  an MMIO exit
 *   write GPA TEXT                 the guest stores TEXT (rest of the line)
 *   read GPA LEN                   the guest loads LEN bytes; prints them
 *   halt                           the vCPU executes HLT
 *   pause | resume                 gv_vm_pause / gv_vm_resume
 *   save FILE                      snapshot the running VM (FILE, FILE.vm)
 *   expect VALUE                   the last printed value must be VALUE
 *   expect-state GPA shared|private
 *
 * Numbers are C literals (0x.. allowed), negative ones too. A command the
 * VMM stopped the guest on ends the script; the exit status is then the
 * guest's (vm_outcome). A failed expect or a malformed line prints one line
 * "gmem: vm: script:LINE: ..." and exits 1 (2 for a malformed line).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "vm_script.h"
#include "vmsnap.h"

#define VS_MAX_ARGS 8
#define VS_LINE_MAX 4096

struct vs_state {
	struct gv_vm *vm;
	const char *file;
	unsigned line;
	unsigned cpu;
	int64_t last;           /* the last value printed */
	bool have_last;
	bool stopped;           /* the guest stopped on a command */
};

static int vs_err(struct vs_state *s, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int vs_err(struct vs_state *s, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fflush(stdout);
	cli_fail("vm: %s:%u: %s", s->file, s->line, msg);
	return status;
}

static bool vs_num(const char *t, int64_t *out)
{
	char *end;

	errno = 0;
	if (*t == '-')
		*out = strtoll(t, &end, 0);
	else
		*out = (int64_t)strtoull(t, &end, 0);
	return !errno && end != t && !*end;
}

static int vs_state_word(const char *t)
{
	if (!strcmp(t, "shared"))
		return GMEM_SHARED;
	if (!strcmp(t, "private"))
		return GMEM_PRIVATE;
	return -1;
}

static const struct { const char *name; uint64_t nr; } vs_hcalls[] = {
	{ "share", GV_HC_SHARE }, { "unshare", GV_HC_UNSHARE }, { "state", GV_HC_STATE },
	{ "pin", GV_HC_IO_PIN }, { "unpin", GV_HC_IO_UNPIN }, { "hostio", GV_HC_HOSTIO },
	{ "host_read", GV_HC_HOST_READ },
};

static bool vs_hcall_nr(const char *t, int64_t *nr)
{
	for (size_t i = 0; i < sizeof(vs_hcalls) / sizeof(vs_hcalls[0]); i++)
		if (!strcmp(t, vs_hcalls[i].name)) {
			*nr = (int64_t)vs_hcalls[i].nr;
			return true;
		}
	return vs_num(t, nr);
}

/* Print a value a command produced and keep it for `expect`. */
static void vs_value(struct vs_state *s, const char *what, int64_t v)
{
	s->last = v;
	s->have_last = true;
	printf("%s:%u: %s = %lld", s->file, s->line, what, (long long)v);
	if (v < 0 && v > -4096)
		printf(" (%s)", strerror((int)-v));
	printf("\n");
	fflush(stdout);
}

/* What a driver call returned: 0 go on; the VM stopping ends the script. */
static int vs_posted(struct vs_state *s, int ret)
{
	if ((ret == 0 || ret == 1 || ret == -ESRCH) && !gv_vm_stopped(s->vm)) {
		if (ret == -ESRCH)      /* a halted vCPU: the script's mistake */
			return vs_err(s, CLI_EXIT_FAIL, "%s", gv_last_error());
		return 0;
	}
	if (ret == -EINVAL || ret == -EOPNOTSUPP)
		return vs_err(s, CLI_EXIT_FAIL, "%s", gv_last_error());
	s->stopped = true;      /* the guest stopped on this command */
	return 0;
}

static int vs_cmd_io(struct vs_state *s, char **a, int n)
{
	int64_t port, size, val = 0;
	uint32_t v = 0;

	if (n != (strcmp(a[0], "out") ? 3 : 4) || !vs_num(a[1], &port) || !vs_num(a[2], &size) ||
	    (n == 4 && !vs_num(a[3], &val)) || port < 0 || port > 0xffff)
		return vs_err(s, CLI_EXIT_USAGE, "want: out PORT SIZE VALUE | in PORT SIZE");
	if (n == 4)
		return vs_posted(s, gv_test_out(s->vm, s->cpu, (uint16_t)port, (unsigned)size,
						(uint32_t)val));
	if (vs_posted(s, gv_test_in(s->vm, s->cpu, (uint16_t)port, (unsigned)size, &v)))
		return CLI_EXIT_FAIL;
	vs_value(s, "in", v);
	return 0;
}

static int vs_cmd_hcall(struct vs_state *s, char **a, int n)
{
	int64_t nr, arg[3] = { 0 }, res = 0;
	int ret;

	if (n < 2 || n > 5 || !vs_hcall_nr(a[1], &nr))
		return vs_err(s, CLI_EXIT_USAGE, "want: hcall NAME|NR [A0 [A1 [A2]]]");
	for (int i = 2; i < n; i++)
		if (!vs_num(a[i], &arg[i - 2]))
			return vs_err(s, CLI_EXIT_USAGE, "hcall: '%s' is not a number", a[i]);
	ret = gv_test_hypercall(s->vm, s->cpu, (uint64_t)nr, (uint64_t)arg[0],
				(uint64_t)arg[1], (uint64_t)arg[2], &res);
	if (vs_posted(s, ret))
		return CLI_EXIT_FAIL;
	if (!s->stopped)
		vs_value(s, a[1], res);
	return 0;
}

static int vs_cmd_map(struct vs_state *s, char **a, int n)
{
	int64_t gpa, npages, res = 0;
	uint64_t args[6] = { 0 };
	int st;

	if (n != 4 || !vs_num(a[1], &gpa) || !vs_num(a[2], &npages) ||
	    (st = vs_state_word(a[3])) < 0)
		return vs_err(s, CLI_EXIT_USAGE, "want: map GPA NPAGES shared|private");
	args[0] = (uint64_t)gpa;
	args[1] = (uint64_t)npages;
	args[2] = st == GMEM_PRIVATE ? 1u << 4 : 0;
	if (vs_posted(s, gv_test_vmcall(s->vm, s->cpu, 12 /* KVM_HC_MAP_GPA_RANGE */, args,
					&res)))
		return CLI_EXIT_FAIL;
	if (!s->stopped)
		vs_value(s, "map", res);
	return 0;
}

static int vs_cmd_fault(struct vs_state *s, char **a, int n)
{
	int64_t gpa, size;
	int st;

	if (n != 4 || !vs_num(a[1], &gpa) || !vs_num(a[2], &size) ||
	    (st = vs_state_word(a[3])) < 0)
		return vs_err(s, CLI_EXIT_USAGE, "want: fault GPA SIZE shared|private");
	return vs_posted(s, gv_test_memory_fault(s->vm, s->cpu, (uint64_t)gpa, (uint64_t)size,
						 st == GMEM_PRIVATE));
}

static int vs_cmd_mmio(struct vs_state *s, char **a, int n)
{
	int64_t gpa, len, val = 0;
	bool write = n > 1 && !strcmp(a[1], "write");

	if (n != (write ? 5 : 4) || (!write && strcmp(a[1], "read")) || !vs_num(a[2], &gpa) ||
	    !vs_num(a[3], &len) || (write && !vs_num(a[4], &val)) || len < 1 || len > 8)
		return vs_err(s, CLI_EXIT_USAGE, "want: mmio read GPA LEN | mmio write GPA LEN VAL");
	if (vs_posted(s, gv_test_mmio(s->vm, s->cpu, (uint64_t)gpa, write, &val, (unsigned)len)))
		return CLI_EXIT_FAIL;
	if (!write && !s->stopped)
		vs_value(s, "mmio", val);
	return 0;
}

static int vs_cmd_mem(struct vs_state *s, char **a, int n, const char *rest)
{
	int64_t gpa, len;
	char buf[VS_LINE_MAX];
	int ret;

	if (!strcmp(a[0], "write")) {
		if (n < 3 || !vs_num(a[1], &gpa))
			return vs_err(s, CLI_EXIT_USAGE, "want: write GPA TEXT");
		ret = gv_test_mem_write(s->vm, (uint64_t)gpa, rest, strlen(rest));
		return ret ? vs_err(s, CLI_EXIT_FAIL, "%s", gv_last_error()) : 0;
	}
	if (n != 3 || !vs_num(a[1], &gpa) || !vs_num(a[2], &len) || len < 1 ||
	    len >= (int64_t)sizeof(buf))
		return vs_err(s, CLI_EXIT_USAGE, "want: read GPA LEN (LEN < %zu)", sizeof(buf));
	if (gv_test_mem_read(s->vm, (uint64_t)gpa, buf, (size_t)len))
		return vs_err(s, CLI_EXIT_FAIL, "%s", gv_last_error());
	printf("%s:%u: read %#llx:", s->file, s->line, (unsigned long long)gpa);
	for (int64_t i = 0; i < len; i++)
		printf(" %02x", (unsigned char)buf[i]);
	printf("\n");
	return 0;
}

static int vs_cmd_expect(struct vs_state *s, char **a, int n)
{
	int64_t want, gpa;
	int st, got;

	if (!strcmp(a[0], "expect-state")) {
		if (n != 3 || !vs_num(a[1], &gpa) || (st = vs_state_word(a[2])) < 0)
			return vs_err(s, CLI_EXIT_USAGE, "want: expect-state GPA shared|private");
		got = gmem_state(gv_vm_gmem(s->vm), (uint64_t)gpa);
		if (got != st)
			return vs_err(s, CLI_EXIT_FAIL, "page %#llx is %s, want %s",
				      (unsigned long long)gpa,
				      got == GMEM_SHARED ? "shared" : got == GMEM_PRIVATE ? "private"
								   : gmem_strerror(got), a[2]);
		return 0;
	}
	if (n != 2 || !vs_num(a[1], &want))
		return vs_err(s, CLI_EXIT_USAGE, "want: expect VALUE");
	if (!s->have_last)
		return vs_err(s, CLI_EXIT_USAGE, "expect: no value printed before it");
	if (s->last != want)
		return vs_err(s, CLI_EXIT_FAIL, "got %lld, want %lld", (long long)s->last,
			      (long long)want);
	return 0;
}

static int vs_cmd_misc(struct vs_state *s, char **a, int n)
{
	int64_t cpu;
	int ret;

	if (!strcmp(a[0], "cpu")) {
		if (n != 2 || !vs_num(a[1], &cpu) || cpu < 0 || cpu >= gv_vm_ncpus(s->vm))
			return vs_err(s, CLI_EXIT_USAGE, "want: cpu 0..%u", gv_vm_ncpus(s->vm) - 1);
		s->cpu = (unsigned)cpu;
		return 0;
	}
	if (n != (strcmp(a[0], "save") ? 1 : 2))
		return vs_err(s, CLI_EXIT_USAGE, "'%s' takes %s", a[0],
			      strcmp(a[0], "save") ? "no arguments" : "a FILE");
	if (!strcmp(a[0], "halt"))
		return vs_posted(s, gv_test_halt(s->vm, s->cpu));
	if (!strcmp(a[0], "pause"))
		ret = gv_vm_pause(s->vm);
	else if (!strcmp(a[0], "resume"))
		ret = gv_vm_resume(s->vm);
	else
		ret = gv_vm_snapshot_save(s->vm, a[1], NULL);
	return ret ? vs_err(s, CLI_EXIT_FAIL, "%s: %s", a[0], gv_last_error()) : 0;
}

static int vs_line(struct vs_state *s, char *line)
{
	char *a[VS_MAX_ARGS], *p = line, *rest = NULL;
	int n = 0;

	line[strcspn(line, "\r\n")] = '\0';
	while (n < VS_MAX_ARGS) {
		p += strspn(p, " \t");
		if (!*p || *p == '#')
			break;
		a[n++] = p;
		p += strcspn(p, " \t");
		if (n == 2 && !strcmp(a[0], "write")) {
			rest = *p ? p + 1 : p;
			*p = '\0';
			break;
		}
		if (*p)
			*p++ = '\0';
	}
	if (!n)
		return 0;
	if (!strcmp(a[0], "out") || !strcmp(a[0], "in"))
		return vs_cmd_io(s, a, n);
	if (!strcmp(a[0], "hcall"))
		return vs_cmd_hcall(s, a, n);
	if (!strcmp(a[0], "map"))
		return vs_cmd_map(s, a, n);
	if (!strcmp(a[0], "fault"))
		return vs_cmd_fault(s, a, n);
	if (!strcmp(a[0], "mmio"))
		return vs_cmd_mmio(s, a, n);
	if (!strcmp(a[0], "write"))
		return vs_cmd_mem(s, a, rest && *rest ? 3 : 2, rest ? rest : "");
	if (!strcmp(a[0], "read"))
		return vs_cmd_mem(s, a, n, NULL);
	if (!strcmp(a[0], "expect") || !strcmp(a[0], "expect-state"))
		return vs_cmd_expect(s, a, n);
	if (!strcmp(a[0], "cpu") || !strcmp(a[0], "halt") || !strcmp(a[0], "pause") ||
	    !strcmp(a[0], "resume") || !strcmp(a[0], "save"))
		return vs_cmd_misc(s, a, n);
	return vs_err(s, CLI_EXIT_USAGE, "unknown command '%s'", a[0]);
}

int vm_script_run(struct gv_vm *vm, const char *path, bool *stopped)
{
	struct vs_state s = { .vm = vm, .file = path };
	char line[VS_LINE_MAX];
	FILE *f = fopen(path, "re");
	int status = 0;

	*stopped = false;
	if (!f)
		return cli_fail("vm: %s: %s", path, strerror(errno));
	while (!status && !s.stopped && fgets(line, sizeof(line), f)) {
		s.line++;
		if (!strchr(line, '\n') && !feof(f)) {
			status = vs_err(&s, CLI_EXIT_USAGE, "line longer than %d bytes",
					VS_LINE_MAX - 1);
			break;
		}
		status = vs_line(&s, line);
	}
	if (!status && ferror(f))
		status = cli_fail("vm: %s: read error", path);
	fclose(f);
	*stopped = s.stopped;
	return status;
}

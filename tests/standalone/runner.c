// SPDX-License-Identifier: MIT
/*
 * runner.c - runs the tests registered through the stand-in Criterion
 * header (see criterion/criterion.h), one after another, and ends on a
 * "N passed, N failed, N skipped" line.
 *
 *   gmem-stress [suite/name-prefix]
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "criterion/criterion.h"

enum { SA_PASS, SA_FAIL, SA_SKIP };

static struct sa_test *sa_tests;
static sigjmp_buf sa_jmp;
static pthread_t sa_main;

void sa_register(struct sa_test *t)
{
	struct sa_test **p = &sa_tests;

	/* Keep file order: constructors run in it. */
	while (*p)
		p = &(*p)->next;
	*p = t;
}

void sa_log(const char *tag, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[%s] ", tag);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* End the current test with @status: longjmp from its thread, else exit. */
static void __attribute__((noreturn)) sa_end(int status)
{
	if (pthread_equal(pthread_self(), sa_main))
		siglongjmp(sa_jmp, status + 1);
	fflush(stderr);
	_exit(1);
}

void sa_check(bool ok, const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list ap;

	if (ok)
		return;
	fprintf(stderr, "[----] %s:%d: Assertion failed: %s\n[----]   ", file, line, expr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	sa_end(SA_FAIL);
}

void sa_skip(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[SKIP] ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	sa_end(SA_SKIP);
}

static bool sa_selected(const struct sa_test *t, const char *filter)
{
	char full[256];

	if (!filter)
		return true;
	snprintf(full, sizeof(full), "%s/%s", t->suite, t->name);
	return !strncmp(full, filter, strlen(filter));
}

/* Run one test; its assertions jump back here. Returns SA_PASS/FAIL/SKIP. */
static int sa_run(const struct sa_test *t)
{
	int r;

	fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
	r = sigsetjmp(sa_jmp, 1);
	if (r)
		return r - 1;
	t->fn();
	return SA_PASS;
}

int main(int argc, char **argv)
{
	const char *filter = argc > 1 ? argv[1] : NULL;
	unsigned n[3] = { 0 };
	static const char *const tag[] = { "PASS", "FAIL", "SKIP" };

	sa_main = pthread_self();
	for (struct sa_test *t = sa_tests; t; t = t->next) {
		int r;

		if (!sa_selected(t, filter))
			continue;
		r = sa_run(t);
		n[r]++;
		fprintf(stderr, "[%s] %s::%s\n", tag[r], t->suite, t->name);
	}
	printf("standalone: %u passed, %u failed, %u skipped\n", n[SA_PASS], n[SA_FAIL],
	       n[SA_SKIP]);
	return n[SA_FAIL] ? 1 : 0;
}

/* SPDX-License-Identifier: MIT */
/*
 * criterion/criterion.h - a stand-in for the few Criterion macros that the
 * stress suite and the shared helpers use, so that suite also builds as a
 * plain program (gmem-stress) that ThreadSanitizer can run: Criterion itself
 * cannot start under TSan (its inheritable memory arena collides with
 * TSan's address-space layout, Criterion issue #274).
 *
 * Tests run one after another in this process. A failed assertion or a skip
 * in the test's own thread ends that test; in any other thread it ends the
 * program with the message, which the runner's exit status reports.
 */
#ifndef GMEM_STANDALONE_CRITERION_H
#define GMEM_STANDALONE_CRITERION_H

#include <stdbool.h>
#include <string.h>
#include <stdio.h>

struct sa_test {
	const char *suite, *name;
	void (*fn)(void);
	struct sa_test *next;
};

void sa_register(struct sa_test *t);
void sa_check(bool ok, const char *file, int line, const char *expr, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
void sa_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void sa_log(const char *tag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Extra Criterion options (.timeout = ...) are accepted and ignored. */
#define Test(suite, name, ...)                                                  \
	static void suite##_##name(void);                                       \
	static struct sa_test suite##_##name##_sa = { #suite, #name, suite##_##name, 0 }; \
	__attribute__((constructor)) static void suite##_##name##_sa_reg(void)  \
	{                                                                       \
		sa_register(&suite##_##name##_sa);                              \
	}                                                                       \
	static void suite##_##name(void)

/* The message is optional, as in Criterion: "" glues onto a literal. */
#define SA_CHECK(ok, expr, ...) sa_check((ok), __FILE__, __LINE__, expr, "" __VA_ARGS__)
#define cr_assert(c, ...)             SA_CHECK(!!(c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...)         SA_CHECK(!(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...)       SA_CHECK((a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...)      SA_CHECK((a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)       SA_CHECK((a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...)      SA_CHECK((a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)       SA_CHECK((a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...)      SA_CHECK((a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...)        SA_CHECK((p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)   SA_CHECK(!strcmp((a), (b)), #a " == " #b, __VA_ARGS__)
#define cr_assert_not_null(p, ...)    SA_CHECK((p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_skip_test(...)             sa_skip("" __VA_ARGS__)
#define cr_log_info(...)              sa_log("INFO", __VA_ARGS__)
#define cr_log_warn(...)              sa_log("WARN", __VA_ARGS__)
#define cr_log_error(...)             sa_log("ERR ", __VA_ARGS__)

#endif

/*
 * unit.h
 *	  A tiny TAP producer for the standalone C unit tests.
 *
 * A test program includes this header once, makes assertions, and ends
 * main() with "return unit_done();":
 *
 *		UNIT_OK(rcf_params_check(&p) == NULL, "default parameters are valid");
 *		UNIT_EQ_INT(rcf_dims(f), 8, "shingled dimensions");
 *		UNIT_NEAR(score, 1.25, 1e-9, "score of point %d", i);
 *		UNIT_EQ_STR(hex, "e3b0c442...", "sha256 of the empty string");
 *		UNIT_FINDS(sns_xml_element, xml, "Code", "Throttling", "the error code");
 *		return unit_done();
 *
 * Every assertion prints one line, "ok N - description" or
 * "not ok N - description" (followed by "# ..." diagnostics saying where and
 * what was compared); unit_done() prints the plan "1..N" last, so no count is
 * declared up front.  The exit status is the number of failed assertions
 * (capped at 254), so 0 means all passed.  Output is flushed line by line, so
 * a crash loses nothing already printed and a missing plan shows it.
 *
 * All functions are static inline: including this header in a program that
 * does not use some of them raises no warning under -Wall -Wextra -Werror.
 */
#ifndef ANOMALY_UNIT_H
#define ANOMALY_UNIT_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#if defined(__GNUC__)
#define UNIT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define UNIT_PRINTF(f, a)
#endif

/* Counters for this program: assertions made, assertions failed. */
static int	unit_tests_run;
static int	unit_tests_failed;

/* Prints a "# ..." diagnostic line. */
static inline void unit_diag(const char *fmt,...) UNIT_PRINTF(1, 2);

static inline void
unit_diag(const char *fmt,...)
{
	va_list		ap;

	fputs("# ", stdout);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

/*
 * Records one assertion and prints its line.  Description newlines would
 * break the TAP line, so they are printed as spaces.  Returns pass, so a
 * test can go on only when an assertion held.
 */
static inline int unit_vok(int pass, const char *file, int line,
						   const char *expr, const char *fmt, va_list ap);

static inline int
unit_vok(int pass, const char *file, int line, const char *expr,
		 const char *fmt, va_list ap)
{
	char		desc[512];
	char	   *c;

	vsnprintf(desc, sizeof(desc), fmt, ap);
	for (c = desc; *c; c++)
	{
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	}

	unit_tests_run++;
	if (!pass)
		unit_tests_failed++;
	printf("%sok %d - %s\n", pass ? "" : "not ", unit_tests_run, desc);
	if (!pass)
	{
		printf("#   Failed test at %s line %d\n", file, line);
		printf("#     %s\n", expr);
	}
	fflush(stdout);
	return pass;
}

static inline int unit_ok_at(int pass, const char *file, int line,
							 const char *expr, const char *fmt,...) UNIT_PRINTF(5, 6);

static inline int
unit_ok_at(int pass, const char *file, int line, const char *expr,
		   const char *fmt,...)
{
	va_list		ap;
	int			r;

	va_start(ap, fmt);
	r = unit_vok(pass, file, line, expr, fmt, ap);
	va_end(ap);
	return r;
}

static inline int unit_eq_int_at(long long got, long long want, const char *file,
								 int line, const char *expr, const char *fmt,...) UNIT_PRINTF(6, 7);

static inline int
unit_eq_int_at(long long got, long long want, const char *file, int line,
			   const char *expr, const char *fmt,...)
{
	va_list		ap;
	int			r;

	va_start(ap, fmt);
	r = unit_vok(got == want, file, line, expr, fmt, ap);
	va_end(ap);
	if (!r)
		unit_diag("         got: %lld\n#    expected: %lld", got, want);
	return r;
}

static inline int unit_near_at(double got, double want, double tol, const char *file,
							   int line, const char *expr, const char *fmt,...) UNIT_PRINTF(7, 8);

/* Passes when |got - want| <= tol; a NaN on either side never passes. */
static inline int
unit_near_at(double got, double want, double tol, const char *file, int line,
			 const char *expr, const char *fmt,...)
{
	va_list		ap;
	int			r;

	va_start(ap, fmt);
	r = unit_vok(fabs(got - want) <= tol, file, line, expr, fmt, ap);
	va_end(ap);
	if (!r)
		unit_diag("         got: %.17g\n#    expected: %.17g (tolerance %g)",
				  got, want, tol);
	return r;
}

/*
 * The comparison of UNIT_EQ_STR and UNIT_FINDS: passes when got and want
 * are both NULL, or when the len bytes at got are the string want.
 */
static inline int
unit_veq_span(const char *got, size_t len, const char *want, const char *file,
			  int line, const char *expr, const char *fmt, va_list ap)
{
	int			r;
	int			pass;

	if (got == NULL || want == NULL)
		pass = (got == want);
	else
		pass = (strlen(want) == len && memcmp(got, want, len) == 0);

	r = unit_vok(pass, file, line, expr, fmt, ap);
	if (!r)
		unit_diag("         got: %s%.*s%s\n#    expected: %s%s%s",
				  got ? "\"" : "", got ? (int) len : 6, got ? got : "(null)",
				  got ? "\"" : "", want ? "\"" : "", want ? want : "(null)",
				  want ? "\"" : "");
	return r;
}

static inline int unit_eq_str_at(const char *got, const char *want, const char *file,
								 int line, const char *expr, const char *fmt,...) UNIT_PRINTF(6, 7);

/* Passes when both are NULL or both are equal strings. */
static inline int
unit_eq_str_at(const char *got, const char *want, const char *file, int line,
			   const char *expr, const char *fmt,...)
{
	va_list		ap;
	int			r;

	va_start(ap, fmt);
	r = unit_veq_span(got, got ? strlen(got) : 0, want, file, line, expr, fmt, ap);
	va_end(ap);
	return r;
}

/* A parser that finds an item of a document: its span, or NULL. */
typedef const char *(*UnitFind) (const char *doc, const char *name, size_t *len);

static inline int unit_finds_at(UnitFind find, const char *doc, const char *name,
								const char *want, const char *file, int line,
								const char *expr, const char *fmt,...) UNIT_PRINTF(8, 9);

/*
 * For parsers that answer with a pointer into their input and a length:
 * passes when find(doc, name) finds nothing and want is NULL, or finds the
 * string want.
 */
static inline int
unit_finds_at(UnitFind find, const char *doc, const char *name, const char *want,
			  const char *file, int line, const char *expr, const char *fmt,...)
{
	size_t		len = 0;
	const char *got = find(doc, name, &len);
	va_list		ap;
	int			r;

	va_start(ap, fmt);
	r = unit_veq_span(got, len, want, file, line, expr, fmt, ap);
	va_end(ap);
	return r;
}

/* Prints the plan and gives main()'s exit status. */
static inline int
unit_done(void)
{
	printf("1..%d\n", unit_tests_run);
	if (unit_tests_failed > 0)
		printf("# Looks like you failed %d test%s of %d.\n",
			   unit_tests_failed, unit_tests_failed == 1 ? "" : "s",
			   unit_tests_run);
	fflush(stdout);
	return unit_tests_failed > 254 ? 254 : unit_tests_failed;
}

/* The assertions; each takes a printf format and its arguments last. */
#define UNIT_OK(cond, ...) \
	unit_ok_at(!!(cond), __FILE__, __LINE__, #cond, __VA_ARGS__)
#define UNIT_EQ_INT(got, want, ...) \
	unit_eq_int_at((long long) (got), (long long) (want), __FILE__, __LINE__, \
				   #got " == " #want, __VA_ARGS__)
#define UNIT_NEAR(got, want, tol, ...) \
	unit_near_at((double) (got), (double) (want), (double) (tol), __FILE__, \
				 __LINE__, "|" #got " - " #want "| <= " #tol, __VA_ARGS__)
#define UNIT_EQ_STR(got, want, ...) \
	unit_eq_str_at((got), (want), __FILE__, __LINE__, #got " eq " #want, \
				   __VA_ARGS__)
#define UNIT_FINDS(find, doc, name, want, ...) \
	unit_finds_at((find), (doc), (name), (want), __FILE__, __LINE__, \
				  #find "(" #doc ", " #name ") eq " #want, __VA_ARGS__)

#endif							/* ANOMALY_UNIT_H */

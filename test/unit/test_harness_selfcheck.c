/*
 * test_harness_selfcheck.c
 *	  Checks unit.h itself: what it prints and the exit status it gives.
 *
 * The failing assertions run in a child process whose output goes to a pipe,
 * so this program's own TAP stream only holds the checks of that output.
 */
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "unit.h"

/* Assertions made in the child: 3 pass, 3 fail. */
static void
child_assertions(void)
{
	UNIT_OK(1 + 1 == 2, "plain pass");
	UNIT_OK(0, "plain fail with %s\nnewline", "format");
	UNIT_EQ_INT(7, 7, "int pass");
	UNIT_EQ_INT(6, 7, "int fail");
	UNIT_NEAR(0.1 + 0.2, 0.3, 1e-12, "near pass");
	UNIT_NEAR(NAN, NAN, 1.0, "NaN never passes");
}

/*
 * Runs child_assertions() in a child; returns its stdout (malloc'd) and puts
 * its exit status in *status.
 */
static char *
run_child(int *status)
{
	int			fds[2];
	pid_t		pid;
	size_t		len = 0;
	size_t		cap = 4096;
	char	   *buf;
	ssize_t		n;

	fflush(stdout);
	if (pipe(fds) != 0)
		return NULL;
	pid = fork();
	if (pid < 0)
		return NULL;
	if (pid == 0)
	{
		close(fds[0]);
		dup2(fds[1], STDOUT_FILENO);
		close(fds[1]);
		unit_tests_run = 0;
		unit_tests_failed = 0;
		child_assertions();
		exit(unit_done());
	}
	close(fds[1]);
	buf = malloc(cap);
	if (buf == NULL)
		return NULL;
	while ((n = read(fds[0], buf + len, cap - len - 1)) > 0)
	{
		len += (size_t) n;
		if (cap - len < 2)
		{
			char	   *bigger = realloc(buf, cap * 2);

			if (bigger == NULL)
				break;
			buf = bigger;
			cap *= 2;
		}
	}
	buf[len] = '\0';
	close(fds[0]);
	if (waitpid(pid, status, 0) != pid)
		*status = -1;
	return buf;
}

/* Counts the lines of text that start with prefix. */
static int
count_lines_starting(const char *text, const char *prefix)
{
	const char *line = text;
	int			n = 0;

	while (line && *line)
	{
		if (strncmp(line, prefix, strlen(prefix)) == 0)
			n++;
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return n;
}

int
main(void)
{
	int			status = 0;
	char	   *out;

	out = run_child(&status);
	if (!UNIT_OK(out != NULL, "child ran and its output was read"))
		return unit_done();

	UNIT_OK(WIFEXITED(status), "child exited normally");
	UNIT_EQ_INT(WEXITSTATUS(status), 3, "exit status is the number of failures");
	UNIT_EQ_INT(count_lines_starting(out, "ok "), 3, "three 'ok' lines");
	UNIT_EQ_INT(count_lines_starting(out, "not ok "), 3, "three 'not ok' lines");
	UNIT_OK(strstr(out, "ok 1 - plain pass\n") != NULL, "first line numbered 1 with its description");
	UNIT_OK(strstr(out, "not ok 2 - plain fail with format newline\n") != NULL,
			"description formatted, newline flattened");
	UNIT_OK(strstr(out, "#   Failed test at ") != NULL, "failure says where");
	UNIT_OK(strstr(out, "#          got: 6\n#    expected: 7\n") != NULL,
			"integer failure shows got and expected");
	UNIT_OK(strstr(out, "not ok 6 - NaN never passes\n") != NULL, "NaN is never near");
	UNIT_OK(strstr(out, "\n1..6\n# Looks like you failed 3 tests of 6.\n") != NULL,
			"plan counts every assertion, then the summary");
	free(out);

	/* The counters of this process are untouched by the child's. */
	UNIT_EQ_INT(unit_tests_failed, 0, "parent has no failures so far");

	return unit_done();
}

"""Errors that the CLI turns into a one-line message and an exit code."""

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3
# A control that passed in the previous scan fails now (--fail-on-regression), distinct from 1.
EXIT_REGRESSION = 4


class PreauditError(Exception):
    """An error the user can act on; the CLI prints it on one line without a traceback."""

    exit_code = EXIT_RUNTIME


class InputError(PreauditError):
    """Bad input from the user: a malformed file, a wrong argument, an invalid date."""

    exit_code = EXIT_USAGE


class EnvironmentProblem(PreauditError):
    """The machine lacks something preaudit needs (a program, root, a running service)."""

    exit_code = EXIT_RUNTIME

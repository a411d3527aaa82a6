"""Errors that the CLI turns into a one-line message and an exit code."""


class WsprofError(Exception):
    """A problem the user can fix (bad input, missing permission): exit code 2."""

    exit_code = 2


class MeasurementError(WsprofError):
    """A run that could not complete (server died, network error): exit code 1."""

    exit_code = 1


class FastPathUnavailable(WsprofError):
    """The Cython extension was not built; the reference path still works."""

"""The one error type the CLI turns into a one-line message and exit code 2."""


class CliError(Exception):
    """Bad input from the command line or the environment; the message names the fix."""

"""The one exception type that means "the user gave us something we cannot use".

Anything raised as `UserError` reaches the CLI as one line on stderr and exit code 2;
everything else is a bug and keeps its traceback.
"""

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input: the message names the file/key/row and says what to do."""

"""The one exception type that means "the user gave us something we cannot use".

Anything raised as `UserError` reaches the CLI as one line on stderr and exit code 2;
everything else is a bug and keeps its traceback.
"""

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USER_ERROR = 2


class UserError(Exception):
    """Bad input: the message names the file/key/row and says what to do."""


class RowError(UserError):
    """Bad input at one row of a data source: "SOURCE: row N[ (id X)]: WHAT TO DO", N counted from 1.
    Kept apart so that a caller which hands the rows over in pieces (predict reads its input in
    chunks) can name the row by its place in the whole input (`shifted`)."""

    def __init__(self, source: str, row: int, message: str, where: str = "", column: str | None = None):
        # `column`: the field at fault where one is (a server names it in its JSON error).
        self.source, self.row, self.message, self.where, self.column = source, row, message, where, column
        super().__init__(f"{source}: row {row}{where}: {message}")

    @property
    def index(self) -> int:
        """The row's place counted from 0 (an index into the rows a caller handed over)."""
        return self.row - 1

    def shifted(self, rows_before: int) -> "RowError":
        return RowError(self.source, self.row + rows_before, self.message, self.where, self.column)


def first_line(exc: BaseException) -> str:
    """The first line of a library's error, or its class name when it says nothing: enough for a
    one-line UserError (libraries' messages run to tracebacks and tables)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

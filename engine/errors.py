"""One exception type for bad input: it carries a one-line message naming the file and the fix."""


class ScreenInputError(Exception):
    """Bad user input (a path, a file, a setting). The message is shown as-is, without a traceback."""

    def __init__(self, subject: str, problem: str, fix: str):
        self.subject, self.problem, self.fix = str(subject), problem, fix
        super().__init__(f"{self.subject}: {problem}; fix: {fix}")

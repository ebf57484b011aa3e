"""One exception type for bad input: it carries a one-line message naming the file and the fix."""


class ScreenInputError(Exception):
    """Bad user input (a path, a file, a setting). The message is shown as-is, without a traceback."""

    def __init__(self, subject: str, problem: str, fix: str):
        self.subject, self.problem, self.fix = str(subject), problem, fix
        super().__init__(f"{self.subject}: {problem}; fix: {fix}")


class ModelRunError(ScreenInputError):
    """A problem met while running a loaded model (NaN or inf logits, a prompt longer than its context). Raised where
    only the generation label is known; the caller that knows the checkpoint file adds it to the subject."""

"""A failure as data: what a run could not do, as the errors table keeps it and as one line says it."""

from dataclasses import dataclass

WARNING = "NAME_WARNING"  # an errors row that says what a run left out, not that anything failed


def located(problem):
    """A failure as one line: registry/repo:tag, then what went wrong."""
    where = problem.registry + (f"/{problem.repo}" if problem.repo else "") + (f":{problem.tag}" if problem.tag else "")
    return f"{where}: {problem.message}"


@dataclass(slots=True)
class Problem:
    """A failure as data: what the errors table keeps of it. Small on purpose: the exception it comes
    from holds every frame of the failed request, and a registry may fail 100,000 tags in one run."""

    at: str
    registry: str
    stage: str
    message: str
    repo: str | None = None
    tag: str | None = None
    digest: str | None = None
    status: int | None = None
    code: str | None = None

    def __str__(self):
        return located(self)

    @property
    def warning(self):
        """A name the ledger could not store: said, but the run's status ignores it (a registry that serves
        one would otherwise make every run partial forever)."""
        return self.code == WARNING

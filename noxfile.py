"""Sessions: `nox -s tests` (the CI suite), `nox -s lint`. CPU installs pin torch via constraints.txt."""

import nox

nox.options.sessions = ["lint", "tests"]
CONSTRAINTS = ("-c", "constraints.txt")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, "-e", ".[dev,jax,ray]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")

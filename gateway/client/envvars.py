"""Environment variables for the deployed app: ``--env KEY=VALUE``, ``--env-file PATH`` (a
``.env`` file, the one the bundler never uploads) and ``--build-env KEY=VALUE``, sent to the
gateway as ``settings.runEnvs`` / ``settings.buildVars``.

Values are secrets: nothing here prints or logs one. An error names the key or the line, never
the value. ``.env`` files are parsed by python-dotenv (the format's de facto reference: quotes,
``export`` prefixes, comments, multi-line values), not by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

#: The names CreateOS and the gateway accept (``settings.runEnvs`` keys).
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_VALUE = 4096
MAX_ENTRIES = 100


class EnvError(ValueError):
    """A malformed variable; the message names the key (or the argument), never the value."""


@dataclass
class AppEnv:
    run: dict[str, str] = field(default_factory=dict)
    build: dict[str, str] = field(default_factory=dict)

    def settings(self) -> dict[str, dict[str, str]]:
        """The ``settings`` fragment of a deploy body (empty maps left out)."""
        fragment: dict[str, dict[str, str]] = {}
        if self.run:
            fragment["runEnvs"] = dict(self.run)
        if self.build:
            fragment["buildVars"] = dict(self.build)
        return fragment

    def describe(self) -> str:
        """The keys only, for the progress line: ``runEnvs: A, B; buildVars: C``."""
        labelled = (("runEnvs", self.run), ("buildVars", self.build))
        return "; ".join(f"{label}: {', '.join(sorted(v))}" for label, v in labelled if v)


def _check(name: str, value: str, origin: str) -> None:
    if not NAME_RE.fullmatch(name):
        raise EnvError(
            f"{origin}: {name[:64]!r} is not a variable name "
            "(letters, digits and '_', not starting with a digit, at most 128)"
        )
    if len(value) > MAX_VALUE:
        raise EnvError(f"{origin}: the value of {name} is longer than {MAX_VALUE} characters")


def parse_pairs(pairs: Iterable[str], option: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments (the value may contain ``=`` and be empty)."""
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise EnvError(f"{option} takes KEY=VALUE; got an argument without '=' ({name[:64]!r})")
        _check(name, value, option)
        result[name] = value
    return result


def parse_file(path: Path) -> dict[str, str]:
    """The variables of a ``.env`` file."""
    if not path.is_file():
        raise EnvError(f"--env-file: {path} is not a file")
    try:
        values = dotenv_values(path, interpolate=False)
    except (OSError, UnicodeDecodeError) as exc:
        raise EnvError(f"--env-file: {path} cannot be read ({type(exc).__name__})") from None
    result: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            raise EnvError(f"--env-file {path}: {name[:64]!r} has no '=' and no value")
        _check(name, value, f"--env-file {path}")
        result[name] = value
    return result


def collect_env(
    env_files: Iterable[Path], run_pairs: Iterable[str], build_pairs: Iterable[str]
) -> AppEnv:
    """Files first, in order, then ``--env`` pairs, each overriding what came before."""
    run: dict[str, str] = {}
    for path in env_files:
        run.update(parse_file(path))
    run.update(parse_pairs(run_pairs, "--env"))
    build = parse_pairs(build_pairs, "--build-env")
    for label, values in (("runEnvs", run), ("buildVars", build)):
        if len(values) > MAX_ENTRIES:
            raise EnvError(f"{label}: more than {MAX_ENTRIES} variables")
    return AppEnv(run=run, build=build)

"""The import fence in pyproject.toml has no gaps: every module of the product is in the
exhaustive layers contract (import-linter checks that itself), and each forbidden-import list
names every top-level module except the ones allowed, so a module added later is fenced in too.
"""

from __future__ import annotations

import pkgutil
import tomllib

import pytest

import gateway
from gateway.config import PROJECT_ROOT

CONTRACTS = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"
]
TOP_LEVEL = {f"gateway.{m.name}" for m in pkgutil.iter_modules(gateway.__path__)}

#: contract name (start) -> the product modules it may leave out (those allowed the import).
ALLOWED = {
    "Redis, web3, aiohttp, httpx and httptools": {
        "gateway.store",
        "gateway.chains",
        "gateway.upstream",
        "gateway.client",
    },
    "The product never imports the dev stack": {"gateway.__main__"},
    "gateway.metrics is the only importer": {"gateway.metrics"},
    "Starlette stays in the web layer": {"gateway.web", "gateway.app", "gateway.__main__"},
}


def _contract(prefix: str) -> dict[str, object]:
    [found] = [c for c in CONTRACTS if str(c["name"]).startswith(prefix)]
    return found


def test_the_layers_contract_is_exhaustive_over_gateway() -> None:
    layers = _contract("Layers point one way")
    assert layers["containers"] == ["gateway"]
    assert layers["exhaustive"] is True
    named = {
        f"gateway.{part.strip()}"
        for line in layers["layers"]  # type: ignore[attr-defined]
        for part in line.replace(":", "|").split("|")
    }
    assert named == TOP_LEVEL


@pytest.mark.parametrize("prefix", sorted(ALLOWED))
def test_each_forbidden_list_names_every_module_but_the_allowed(prefix: str) -> None:
    sources = set(_contract(prefix)["source_modules"])  # type: ignore[arg-type]
    expected = TOP_LEVEL - ALLOWED[prefix]
    assert sources & TOP_LEVEL == expected, (
        f"missing: {sorted(expected - sources)}, extra: {sorted((sources & TOP_LEVEL) - expected)}"
    )


def test_no_tracked_file_holds_a_merge_conflict_marker() -> None:
    """A merge resolved in a hurry must not land its markers (docs included)."""
    import subprocess

    from gateway.config import PROJECT_ROOT

    found = subprocess.run(
        ["git", "grep", "-n", "-E", "^(<<<<<<< |>>>>>>> |=======$)"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    if found.returncode == 128:  # not a git checkout (an installed copy): nothing to check
        return
    assert found.stdout == "", found.stdout

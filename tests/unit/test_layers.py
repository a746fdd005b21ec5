"""The layout's rules, read from the imports themselves (every import, those inside functions too).

The core (domain, application) knows nothing of the ways in and out; entry points never import each
other; the notifier shares only the NATS contract with the deal service. README's Architecture
section states these rules; this test keeps them true.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
LIFECYCLE = "dealflow.deal_lifecycle"
# The domain is pure: no I/O, no framework; the library's aggregate and the state machine only.
DOMAIN_MAY_IMPORT = ("eventsourcing.domain", "statemachine")
# The entry points: each a way in, none reaching through another.
ENTRY_POINTS = (f"{LIFECYCLE}.entrypoints.http", f"{LIFECYCLE}.entrypoints.nats_commands", f"{LIFECYCLE}.entrypoints.cli")


def module_name(path: Path) -> str:
    parts = ["dealflow", *path.relative_to(SERVICES).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, absolute (relative imports resolved), wherever the import stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


MODULES = {module_name(p): imports_of(p) for p in sorted(SERVICES.rglob("*.py"))}


def within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def offenders(importers: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {imported}"
        for module, imported_modules in MODULES.items()
        if within(module, *importers)
        for imported in imported_modules
        if within(imported, *forbidden) and not within(imported, *importers)
    )


def test_the_modules_were_found() -> None:
    assert f"{LIFECYCLE}.domain.deal" in MODULES and f"{LIFECYCLE}.entrypoints.http.app" in MODULES
    assert f"{LIFECYCLE}.domain.events" in MODULES[f"{LIFECYCLE}.domain.deal"]  # `from . import events` resolved


def test_the_domain_imports_only_itself_the_aggregate_base_and_the_state_machine() -> None:
    outside = sorted(
        f"{module} imports {imported}"
        for module, imported_modules in MODULES.items()
        if within(module, f"{LIFECYCLE}.domain")
        for imported in imported_modules
        if imported.split(".")[0] in {"dealflow", "eventsourcing", "statemachine", "litestar", "nats", "psycopg", "sqlite3", "httpx", "structlog"}
        and not within(imported, f"{LIFECYCLE}.domain", *DOMAIN_MAY_IMPORT)
    )
    assert outside == []


def test_the_application_knows_no_entry_point_no_adapter_and_no_wiring() -> None:
    forbidden = (f"{LIFECYCLE}.entrypoints", f"{LIFECYCLE}.adapters", f"{LIFECYCLE}.bootstrap", "litestar", "nats", "psycopg", "sqlite3")
    assert offenders((f"{LIFECYCLE}.application",), forbidden) == []


def test_adapters_never_reach_back_into_entry_points_or_the_wiring() -> None:
    assert offenders((f"{LIFECYCLE}.adapters",), (f"{LIFECYCLE}.entrypoints", f"{LIFECYCLE}.bootstrap")) == []


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_an_entry_point_never_imports_another(entry_point: str) -> None:
    others = tuple(e for e in ENTRY_POINTS if e != entry_point)
    assert offenders((entry_point,), others) == []


def test_the_notifier_shares_only_the_nats_contract_with_the_deal_service() -> None:
    assert offenders(("dealflow.notifier",), (LIFECYCLE,)) == []

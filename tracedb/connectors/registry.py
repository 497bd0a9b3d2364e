"""The one registry of connectors.

Built-in connectors register themselves with `@register` exactly as an outside
one would; `BUILTIN` lists the modules that hold them. Adding a connector is a
module with a registered class plus one line here. Groups are not lists kept by
hand: `--sources` takes connector names or the names of tables they publish.
"""

from __future__ import annotations

import importlib

from tracedb.connectors.base import Connector

BUILTIN = (
    "tracedb.connectors.procfs",
    "tracedb.connectors.proc_events",
    "tracedb.connectors.socket_tracer.connector",
)

_registry: dict[str, type[Connector]] = {}


def register(cls: type[Connector]) -> type[Connector]:
    if cls.name in _registry and _registry[cls.name] is not cls:
        raise ValueError(f"two connectors are named {cls.name!r}")
    _registry[cls.name] = cls
    return cls


def connectors() -> dict[str, type[Connector]]:
    for module in BUILTIN:
        importlib.import_module(module)
    return dict(_registry)


def resolve_sources(names: list[str] | None) -> list[type[Connector]]:
    """Connector classes for --sources (connector or table names; None: all)."""
    known = connectors()
    if names is None:
        return list(known.values())
    by_table = {table: cls for cls in known.values() for table in cls.tables}
    chosen: list[type[Connector]] = []
    for name in names:
        cls = known.get(name) or by_table.get(name)
        if cls is None:
            raise ValueError(
                f"unknown source {name!r}; connectors: {', '.join(sorted(known))}; "
                f"tables: {', '.join(sorted(by_table))}"
            )
        if cls not in chosen:
            chosen.append(cls)
    return chosen

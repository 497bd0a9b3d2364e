"""`tracedb doctor` and the collector's preflight: is this machine ready for the
BPF connectors, and what fixes it when it is not.

Required: BPF privileges, tracefs mounted, kernel headers for BCC (exact, or the
closest version linked in their place), BCC importable, and the probe kinds the
connectors are built on. Informational: BTF (connectors that read kernel structs
skip themselves without it) and kprobes (the project runs without them).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from tracedb.kernel import btf, headers, tracefs

CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39
FIX_COMMAND = "sudo tracedb doctor --fix"
OPTIONAL_PROBES = frozenset({"kprobe"})

EXIT_READY = 0
EXIT_NOT_READY = 1
EXIT_FIX_NEEDS_ROOT = 2

_LABEL_WIDTH = 26
_STATE_WIDTH = 11


@dataclass(frozen=True)
class Problem:
    """Something required that is missing, and the shell command (or instructions) that fixes it."""

    what: str
    fix: str


@dataclass(frozen=True)
class _Row:
    """One line of the capability matrix; `blocking` rows make doctor exit non-zero."""

    label: str
    state: str
    detail: str
    blocking: bool = False


def effective_capabilities(status_path: str = "/proc/self/status") -> int:
    """The CapEff bit mask of this process."""
    with open(status_path) as status:
        for line in status:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def _has_capability(mask: int, capability: int) -> bool:
    return bool(mask >> capability & 1)


def privilege_description() -> str | None:
    """What grants this process BPF, or None when nothing does. CAP_SYS_ADMIN
    stands in for CAP_BPF+CAP_PERFMON, which kernels before 5.8 do not know."""
    mask = effective_capabilities()
    if _has_capability(mask, CAP_SYS_ADMIN):
        return "root" if os.geteuid() == 0 else "CAP_SYS_ADMIN"
    if _has_capability(mask, CAP_BPF) and _has_capability(mask, CAP_PERFMON):
        return "CAP_BPF+CAP_PERFMON"
    return None


def bcc_version() -> str | None:
    """BCC's version when its Python module imports (it loads libbcc), else None."""
    try:
        bcc = importlib.import_module("bcc")
    except (ImportError, OSError):
        return None
    return getattr(bcc, "__version__", "unknown version")


def _check_privileges() -> tuple[_Row, Problem | None]:
    granted_by = privilege_description()
    if granted_by:
        return _Row("privileges", "ok", granted_by), None
    what = "not privileged for BPF: needs root, or CAP_BPF and CAP_PERFMON"
    return (_Row("privileges", "FAILED", what, blocking=True),
            Problem(what, "run it as root: sudo tracedb <the same arguments>"))


def _check_tracefs() -> tuple[_Row, Problem | None]:
    if tracefs.is_mounted():
        return _Row("tracefs", "ok", tracefs.TRACEFS), None
    what = f"tracefs is not mounted at {tracefs.TRACEFS}"
    return (_Row("tracefs", "FAILED", "not mounted", blocking=True),
            Problem(what, f"{FIX_COMMAND}   (or: sudo mount -t tracefs tracefs {tracefs.TRACEFS})"))


def _check_headers() -> tuple[_Row, Problem | None]:
    found = headers.status()
    if found.kind == "exact":
        return _Row("kernel headers", "exact", f"{found.version}  {found.build_dir}"), None
    if found.kind == "closest":
        distance = "unknown" if found.distance is None else headers.describe_distance(found.distance)
        return _Row("kernel headers", "closest",
                    f"{found.version} (distance {distance})  {found.build_dir}"), None
    build_dir = headers.MODULES_ROOT / os.uname().release / "build"
    what = f"no kernel headers at {build_dir}: BCC cannot compile"
    return (_Row("kernel headers", "FAILED", "none", blocking=True),
            Problem(what, f"{FIX_COMMAND}   (installs the closest linux-headers package and links it)"))


def _check_bcc() -> tuple[_Row, Problem | None]:
    version = bcc_version()
    if version:
        return _Row("bcc", "ok", version), None
    what = "BCC's Python module (bcc) is not importable"
    fix = ("sudo apt-get install -y python3-bpfcc, then run tracedb with /usr/bin/python3 "
           "or a venv created with --system-site-packages")
    return _Row("bcc", "FAILED", "not importable", blocking=True), Problem(what, fix)


def _required_checks() -> list[tuple[_Row, Problem | None]]:
    return [_check_privileges(), _check_tracefs(), _check_headers(), _check_bcc()]


def preflight() -> list[Problem]:
    """The required items that are missing; quick (compiles nothing), for the collector's start."""
    return [problem for _, problem in _required_checks() if problem]


def _kernel_row() -> _Row:
    uname = os.uname()
    return _Row("kernel", "", f"{uname.release} {uname.machine}")


def _btf_row() -> _Row:
    if os.path.exists(btf.VMLINUX_BTF):
        return _Row("BTF", "ok", btf.VMLINUX_BTF)
    return _Row("BTF", "no", "connectors that read kernel structs will skip themselves")


def _probe_rows() -> list[_Row]:
    # Imported here: probes needs bcc at import, and doctor must run without it.
    from tracedb.kernel import probes

    rows = []
    for result in probes.probe_all():
        if result.ok:
            rows.append(_Row(f"probe {result.name}", "ok", result.detail))
        elif result.name in OPTIONAL_PROBES:
            rows.append(_Row(f"probe {result.name}", "no", f"(not needed) {result.detail}"))
        else:
            rows.append(_Row(f"probe {result.name}", "FAILED", result.detail, blocking=True))
    return rows


def _probes_not_tried(reasons: list[str]) -> _Row:
    return _Row("probes", "not tried", ", ".join(reasons), blocking=True)


def _print_rows(rows: list[_Row]) -> None:
    for row in rows:
        state = f"{row.state:<{_STATE_WIDTH}}" if row.state else ""
        print(f"{row.label:<{_LABEL_WIDTH}}{state}{row.detail}".rstrip())


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        print(f"- {problem.what}\n  fix: {problem.fix}")


def _apply_fixes() -> None:
    """Mount tracefs, and install and link the closest headers when none are linked.
    A failed step is reported and the report goes on: it shows what remains."""
    try:
        if not tracefs.is_mounted():
            print(f"fix: mounting tracefs at {tracefs.TRACEFS} and debugfs at {tracefs.DEBUGFS}")
            tracefs.mount()
        if headers.status().kind == "none":
            print("fix: installing and linking the closest kernel headers package")
            linked = headers.install_closest()
            print(f"fix: {linked.build_dir} -> {linked.version}")
    except Exception as error:  # apt, mount and filesystem failures alike end the fixing
        print(f"fix failed: {error}")


def report(fix: bool) -> int:
    """Print the capability matrix (after fixing what can be fixed, with `fix`);
    return 0 when every required item is ok, 1 when not, 2 for --fix without root."""
    is_root = os.geteuid() == 0
    if not is_root:
        print("doctor needs root to try probes and to --fix; showing what can be seen without it.")
    if fix and is_root:
        _apply_fixes()
    checks = _required_checks()
    problems = [problem for _, problem in checks if problem]
    rows = [_kernel_row(), _btf_row(), *(row for row, _ in checks)]
    if not is_root:
        rows.append(_probes_not_tried(["needs root"]))
    elif problems:
        rows.append(_probes_not_tried([problem.what for problem in problems]))
    else:
        rows.extend(_probe_rows())
    _print_rows(rows)
    if problems:
        print()
        _print_problems(problems)
    if fix and not is_root:
        print(f"\n--fix needs root: {FIX_COMMAND}")
        return EXIT_FIX_NEEDS_ROOT
    return EXIT_NOT_READY if any(row.blocking for row in rows) else EXIT_READY

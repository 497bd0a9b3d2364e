"""Kernel headers for BCC: what is linked for the running kernel, and getting the
closest packaged ones when nothing is.

BCC compiles its C against `/lib/modules/$(uname -r)/build` (and `source`). When
no package matches the running kernel exactly, the headers of the nearest
packaged version serve (Stirling's rule: minimise the version distance), on the
understanding that their struct layouts may be wrong: kernel struct offsets come
from BTF (`tracedb.kernel.btf`), never from these headers.

Debian splits a header package in an arch part (`linux-headers-<ver>`, e.g.
`6.12.117+deb12-amd64`) whose Makefile includes a common part
(`linux-headers-6.12.117+deb12-common`); `build` links to the first and `source`
to the second, as the packages themselves do for an installed kernel.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

MODULES_ROOT = Path("/lib/modules")
SOURCES_ROOT = Path("/usr/src")
PACKAGE_PREFIX = "linux-headers-"

# Weights that fold (major gap, minor gap, patch gap) into one integer; see version_distance.
_MAJOR_WEIGHT = 1_000_000
_MINOR_WEIGHT = 1_000
_MAX_PATCH_GAP = _MINOR_WEIGHT - 1

# PREEMPT_RT changes lock layouts throughout the kernel, so it is the worst stand-in.
_FLAVOUR_PENALTIES = {"": 0, "rt": 2}
_OTHER_FLAVOUR_PENALTY = 1

_VERSION_PATTERN = re.compile(
    r"(?P<major>\d+)\.(?P<minor>\d+)(?:\.(?P<patch>\d+))?"
    r"(?:-(?P<abi>\d+))?"           # Debian ABI number: 6.1.0-56-amd64
    r"(?:\+[^-]*)?"                 # local version: 6.12.117+deb12-amd64
    r"(?:-(?P<suffix>.+))?$")       # flavour and arch, or any vendor suffix


class HeadersError(Exception):
    """Kernel headers cannot be found, installed or linked."""


@dataclass(frozen=True)
class HeadersStatus:
    """What `/lib/modules/<release>/build` offers BCC.

    kind: "exact" (headers of the running kernel), "closest" (another version's
    headers linked in its place) or "none". version: release string of the
    headers in use. distance: version_distance to the running kernel for
    "closest". build_dir: the build directory, when there is one.
    """

    kind: str
    version: str | None
    distance: int | None
    build_dir: Path | None


class KernelVersion(NamedTuple):
    """A kernel or header package release string taken apart."""

    major: int
    minor: int
    patch: int
    abi: int
    flavour: str  # "" for the plain flavour, "cloud", "rt", ...


def parse_version(release: str) -> KernelVersion:
    """Split "6.18.44-fc-v669", "6.12.117+deb12-amd64", "6.1.0-56-cloud-amd64"."""
    match = _VERSION_PATTERN.match(release)
    if match is None:
        raise ValueError(f"not a kernel release string: {release!r}")
    suffix = match["suffix"] or ""
    flavour = suffix.rsplit("-", 1)[0] if "-" in suffix else ""
    return KernelVersion(int(match["major"]), int(match["minor"]), int(match["patch"] or 0),
                         int(match["abi"] or 0), flavour)


def version_distance(running: str, candidate: str) -> int:
    """How far candidate headers are from the running kernel, as one integer.

    major gap × 1,000,000 + minor gap × 1,000 + patch gap, where the patch gap
    (patch numbers, then Debian ABI numbers, capped at 999) only counts within the
    running kernel's own major.minor series: across series, patch numbers do not
    measure closeness. 0 means the same upstream version.
    """
    ours, theirs = parse_version(running), parse_version(candidate)
    major_gap = abs(ours.major - theirs.major)
    minor_gap = abs(ours.minor - theirs.minor)
    patch_gap = 0
    if major_gap == minor_gap == 0:
        patch_gap = min(abs(ours.patch - theirs.patch) + abs(ours.abi - theirs.abi), _MAX_PATCH_GAP)
    return major_gap * _MAJOR_WEIGHT + minor_gap * _MINOR_WEIGHT + patch_gap


def describe_distance(distance: int) -> str:
    """"6 minor", "1 major, 2 minor", "3 patch" or "same version"."""
    gaps = [(distance // _MAJOR_WEIGHT, "major"),
            (distance % _MAJOR_WEIGHT // _MINOR_WEIGHT, "minor"),
            (distance % _MINOR_WEIGHT, "patch")]
    return ", ".join(f"{gap} {unit}" for gap, unit in gaps if gap) or "same version"


def _flavour_penalty(flavour: str) -> int:
    return _FLAVOUR_PENALTIES.get(flavour, _OTHER_FLAVOUR_PENALTY)


def closest_version(running: str, candidates: list[str]) -> tuple[str, int]:
    """The candidate header version nearest the running kernel, and its distance.

    Order: smallest version_distance (same major first, then the smallest minor
    gap, then the smallest patch gap within the running series); then the plain
    flavour over cloud and other flavours, and those over rt; then the newest
    patch and ABI number (more fixes backported). An exact string match wins
    outright. Candidates that are not release strings are ignored.
    """
    if running in candidates:
        return running, 0
    ranked = []
    for candidate in candidates:
        try:
            version = parse_version(candidate)
        except ValueError:
            continue
        distance = version_distance(running, candidate)
        ranked.append(((distance, _flavour_penalty(version.flavour), -version.patch, -version.abi),
                       candidate, distance))
    if not ranked:
        raise HeadersError(f"no kernel header versions to choose from for {running}")
    _, candidate, distance = min(ranked)
    return candidate, distance


def header_versions(package_names: list[str], arch: str) -> list[str]:
    """Versions of the arch-specific header packages among `package_names`,
    leaving out the common parts and meta packages (linux-headers-amd64,
    linux-headers-6.12-amd64), which name no full x.y.z version."""
    versions = []
    for name in package_names:
        version = name.removeprefix(PACKAGE_PREFIX)
        if name == version or not version.endswith(f"-{arch}"):
            continue
        if re.match(r"\d+\.\d+\.\d+", version):
            versions.append(version)
    return versions


def _apt_header_packages() -> list[str]:
    search = subprocess.run(["apt-cache", "search", "--names-only", f"^{PACKAGE_PREFIX}"],
                            check=True, capture_output=True, text=True)
    return [line.split(" ", 1)[0] for line in search.stdout.splitlines() if line.strip()]


def machine_arch() -> str:
    """The Debian architecture name (amd64, arm64), which header packages end with."""
    return subprocess.run(["dpkg", "--print-architecture"], check=True,
                          capture_output=True, text=True).stdout.strip()


def available_packages() -> list[str]:
    """Header versions apt can install for this machine's architecture."""
    package_names = _apt_header_packages()
    if not package_names:
        # An image built with its apt lists deleted knows no packages until updated.
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        package_names = _apt_header_packages()
    return header_versions(package_names, machine_arch())


def status(release: str | None = None, modules_root: Path = MODULES_ROOT) -> HeadersStatus:
    """What the running kernel's `build` directory holds, if anything."""
    release = release or os.uname().release
    build_dir = modules_root / release / "build"
    if not build_dir.is_dir():
        return HeadersStatus("none", None, None, None)
    target_name = build_dir.resolve().name
    version = target_name.removeprefix(PACKAGE_PREFIX)
    if version == target_name or version == release:
        return HeadersStatus("exact", release, 0, build_dir)
    try:
        distance = version_distance(release, version)
    except ValueError:
        distance = None
    return HeadersStatus("closest", version, distance, build_dir)


def common_dir(arch_dir: Path) -> Path:
    """The directory holding the common half of split headers (named by the arch
    half's Makefile `include`), or `arch_dir` itself for unsplit headers."""
    makefile = arch_dir / "Makefile"
    text = makefile.read_text() if makefile.is_file() else ""
    included = re.search(r"^include\s+(\S+)/Makefile\s*$", text, re.MULTILINE)
    return Path(included[1]) if included else arch_dir


def _point_symlink(link: Path, target: Path) -> None:
    """Make `link` a symlink to `target`; an existing real directory is never replaced."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    if link.exists() and not link.is_symlink():
        raise HeadersError(f"{link} exists and is not a symlink; not replacing it")
    staging = link.with_name(f".{link.name}.tracedb")
    staging.unlink(missing_ok=True)
    staging.symlink_to(target)
    os.replace(staging, link)


def link(version: str, release: str | None = None, modules_root: Path = MODULES_ROOT,
         sources_root: Path = SOURCES_ROOT) -> HeadersStatus:
    """Link installed headers `version` as the running kernel's build and source dirs."""
    release = release or os.uname().release
    arch_dir = sources_root / f"{PACKAGE_PREFIX}{version}"
    if not arch_dir.is_dir():
        raise HeadersError(f"{arch_dir} is missing: headers {version} are not installed")
    release_dir = modules_root / release
    release_dir.mkdir(parents=True, exist_ok=True)
    _point_symlink(release_dir / "build", arch_dir)
    _point_symlink(release_dir / "source", common_dir(arch_dir))
    return status(release, modules_root)


def _is_installed(package: str) -> bool:
    query = subprocess.run(["dpkg", "-s", package], capture_output=True, text=True)
    return query.returncode == 0 and "Status: install ok installed" in query.stdout


def install_closest(release: str | None = None) -> HeadersStatus:
    """Install (unless already installed) and link the header package closest to
    the running kernel. Needs root and a working apt."""
    release = release or os.uname().release
    version, _ = closest_version(release, available_packages())
    package = f"{PACKAGE_PREFIX}{version}"
    if not _is_installed(package):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", package],
                       check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return link(version, release)

"""Choosing and linking kernel headers, without apt: version lists and temporary trees."""

from __future__ import annotations

import pytest

from tracedb.kernel import headers

RUNNING = "6.18.44-fc-v669"

# What `apt-cache search --names-only '^linux-headers-'` lists on Debian 12 (amd64).
DEBIAN_12_PACKAGES = [
    f"linux-headers-{version}"
    for abi in (47, 50, 53, 54, 55, 56)
    for version in (f"6.1.0-{abi}-amd64", f"6.1.0-{abi}-cloud-amd64", f"6.1.0-{abi}-common",
                    f"6.1.0-{abi}-common-rt", f"6.1.0-{abi}-rt-amd64")
] + [
    f"linux-headers-6.12.{patch}+deb12-{part}"
    for patch in (107, 111, 113, 115, 117)
    for part in ("amd64", "cloud-amd64", "common", "common-rt", "rt-amd64")
] + [
    "linux-headers-6.12-amd64", "linux-headers-6.12-cloud-amd64", "linux-headers-6.12-rt-amd64",
    "linux-headers-amd64", "linux-headers-cloud-amd64", "linux-headers-rt-amd64",
]
DEBIAN_12_VERSIONS = headers.header_versions(DEBIAN_12_PACKAGES, "amd64")


@pytest.mark.parametrize("release, expected", [
    ("6.18.44-fc-v669", (6, 18, 44, 0, "fc")),
    ("6.12.117+deb12-amd64", (6, 12, 117, 0, "")),
    ("6.12.117+deb12-rt-amd64", (6, 12, 117, 0, "rt")),
    ("6.1.0-56-amd64", (6, 1, 0, 56, "")),
    ("6.1.0-56-cloud-amd64", (6, 1, 0, 56, "cloud")),
    ("5.15", (5, 15, 0, 0, "")),
])
def test_parse_version(release, expected):
    assert headers.parse_version(release) == expected


def test_parse_version_refuses_non_versions():
    with pytest.raises(ValueError):
        headers.parse_version("amd64")


def test_header_versions_keep_arch_packages_only():
    assert len(DEBIAN_12_VERSIONS) == 6 * 3 + 5 * 3
    assert "6.12.117+deb12-amd64" in DEBIAN_12_VERSIONS
    assert not any("common" in version for version in DEBIAN_12_VERSIONS)
    assert "6.12-amd64" not in DEBIAN_12_VERSIONS and "amd64" not in DEBIAN_12_VERSIONS
    assert headers.header_versions(DEBIAN_12_PACKAGES, "arm64") == []


def test_newer_kernel_gets_nearest_minor_plain_flavour_newest_patch():
    assert headers.closest_version(RUNNING, DEBIAN_12_VERSIONS) == ("6.12.117+deb12-amd64", 6_000)


def test_plain_flavour_beats_cloud_and_rt():
    candidates = ["6.12.117+deb12-rt-amd64", "6.12.117+deb12-cloud-amd64", "6.12.113+deb12-amd64"]
    assert headers.closest_version(RUNNING, candidates)[0] == "6.12.113+deb12-amd64"
    assert headers.closest_version(RUNNING, candidates[:2])[0] == "6.12.117+deb12-cloud-amd64"


def test_exact_release_wins():
    assert headers.closest_version("6.1.0-55-amd64", DEBIAN_12_VERSIONS) == ("6.1.0-55-amd64", 0)


def test_same_series_minimises_patch_then_abi_gap():
    assert headers.closest_version("6.1.0-51-cloud-amd64", DEBIAN_12_VERSIONS) == ("6.1.0-50-amd64", 1)
    assert headers.closest_version("6.12.112", DEBIAN_12_VERSIONS)[0] == "6.12.113+deb12-amd64"
    assert headers.closest_version("6.12.109", DEBIAN_12_VERSIONS)[0] == "6.12.111+deb12-amd64"


def test_same_major_beats_a_smaller_minor_gap_across_majors():
    candidates = ["5.19.1-amd64", "6.1.0-56-amd64"]
    assert headers.closest_version("6.0.3", candidates) == ("6.1.0-56-amd64", 1_000)
    assert headers.closest_version("6.8.1", ["6.1.0-56-amd64", "6.12.117+deb12-amd64"])[0] \
        == "6.12.117+deb12-amd64"


def test_nothing_to_choose_from():
    with pytest.raises(headers.HeadersError):
        headers.closest_version(RUNNING, ["amd64"])


@pytest.mark.parametrize("distance, text", [
    (0, "same version"), (6_000, "6 minor"), (1_002_000, "1 major, 2 minor"), (3, "3 patch"),
])
def test_describe_distance(distance, text):
    assert headers.describe_distance(distance) == text


@pytest.fixture
def split_headers(tmp_path):
    """/usr/src with Debian-style split 6.12.117 headers, and an empty /lib/modules."""
    sources = tmp_path / "usr/src"
    common = sources / "linux-headers-6.12.117+deb12-common"
    arch = sources / "linux-headers-6.12.117+deb12-amd64"
    common.mkdir(parents=True)
    arch.mkdir()
    (arch / "Makefile").write_text(f"include {common}/Makefile\n")
    return sources, tmp_path / "lib/modules", arch, common


def test_link_makes_closest_headers_the_build_and_source_dirs(split_headers):
    sources, modules, arch, common = split_headers
    assert headers.status(RUNNING, modules).kind == "none"
    for _ in range(2):  # the second run finds everything in place
        linked = headers.link("6.12.117+deb12-amd64", RUNNING, modules, sources)
    assert linked == headers.HeadersStatus("closest", "6.12.117+deb12-amd64", 6_000,
                                           modules / RUNNING / "build")
    assert (modules / RUNNING / "build").resolve() == arch
    assert (modules / RUNNING / "source").resolve() == common


def test_link_repoints_a_link_to_other_headers(split_headers):
    sources, modules, _, _ = split_headers
    older = sources / "linux-headers-6.1.0-56-amd64"
    older.mkdir()
    headers.link("6.1.0-56-amd64", RUNNING, modules, sources)
    assert headers.status(RUNNING, modules).version == "6.1.0-56-amd64"
    assert headers.link("6.12.117+deb12-amd64", RUNNING, modules, sources).distance == 6_000
    assert (modules / RUNNING / "source").resolve().name.endswith("-common")


def test_link_refuses_missing_headers_and_real_build_dirs(split_headers):
    sources, modules, _, _ = split_headers
    with pytest.raises(headers.HeadersError, match="not installed"):
        headers.link("6.12.115+deb12-amd64", RUNNING, modules, sources)
    (modules / RUNNING / "build").mkdir(parents=True)
    assert headers.status(RUNNING, modules).kind == "exact"
    with pytest.raises(headers.HeadersError, match="not a symlink"):
        headers.link("6.12.117+deb12-amd64", RUNNING, modules, sources)


def test_unsplit_headers_are_their_own_source(tmp_path):
    arch = tmp_path / "linux-headers-6.18.44-fc-v669"
    arch.mkdir()
    assert headers.common_dir(arch) == arch

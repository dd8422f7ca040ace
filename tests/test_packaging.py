"""setup.cfg keeps what must move together in step, and says which Pythons are supported.

OpenTelemetry's packages pin one another exactly (an instrumentation 0.<N>b<k> needs
opentelemetry-semantic-conventions ==0.<N>b<k>, which needs opentelemetry-api ==1.<N-21>.<k>):
if one bound moves without the others, the extras can stop resolving with the pip that Python
3.11 to 3.13 ship (as they did with sdk 1.45.2 allowed next to instrumentation-flask 0.66b1).
The CI's package job proves the install itself; these tests catch a half-done bump before it
gets there.
"""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def _requirements() -> list[tuple[str, Requirement]]:
    """Every requirement of setup.cfg: ``(where, requirement)``."""
    cfg = _setup_cfg()
    found = [("install_requires", line) for line in cfg["options"]["install_requires"].split("\n")]
    for extra, lines in cfg["options.extras_require"].items():
        found += [(extra, line) for line in lines.split("\n")]
    return [(where, Requirement(line)) for where, line in found if line.strip()]


def _upper_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator in ("<=", "<")]
    return min(bounds) if bounds else None


def test_opentelemetry_bounds_name_one_release_set() -> None:
    """Every OpenTelemetry requirement, in every extra, has an upper bound; the 1.x packages
    share one bound 1.A.k and the 0.x (instrumentation) packages one bound 0.(A+21)bk: the
    release set that pins itself together."""
    core: dict[str, Version] = {}
    contrib: dict[str, Version] = {}
    for where, requirement in _requirements():
        if not requirement.name.startswith("opentelemetry-"):
            continue
        bound = _upper_bound(requirement)
        assert bound is not None, f"{where}: {requirement} has no upper bound"
        assert all(s.operator != "<" for s in requirement.specifier), (
            f"{where}: {requirement}: bound with <= the newest release of the set (a < bound "
            "lets the newest patch of one package in without its partners)"
        )
        (core if bound.major == 1 else contrib)[f"{where}: {requirement}"] = bound
    assert core
    assert contrib
    assert len(set(core.values())) == 1, core
    assert len(set(contrib.values())) == 1, contrib
    api, instrumentation = next(iter(core.values())), next(iter(contrib.values()))
    assert instrumentation.pre is not None, instrumentation
    assert instrumentation.pre[0] == "b", instrumentation
    assert instrumentation.minor == api.minor + 21, (api, instrumentation)
    assert instrumentation.pre[1] == api.micro, (api, instrumentation)


def test_prometheus_client_has_the_same_upper_bound_everywhere() -> None:
    """The bound that tests/test_prometheus_client_private.py vouches for is the one every
    extra uses."""
    bounds = {
        f"{where}: {requirement}": _upper_bound(requirement)
        for where, requirement in _requirements()
        if requirement.name.lower().replace("_", "-") == "prometheus-client"
    }
    assert bounds
    assert None not in bounds.values(), bounds
    assert len(set(bounds.values())) == 1, bounds


def test_this_python_is_a_declared_classifier() -> None:
    """The suite passing on a Python is what earns its classifier: running it on one that is
    not declared (or below python_requires) fails here until setup.cfg says so."""
    cfg = _setup_cfg()
    classifiers = cfg["metadata"]["classifiers"]
    declared = set(re.findall(r"Programming Language :: Python :: (3\.\d+)$", classifiers, re.M))
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert running in declared, (running, sorted(declared))
    floor = cfg["options"]["python_requires"].removeprefix(">=")
    assert min(declared, key=Version) == floor, (floor, sorted(declared))


def test_license_file_is_the_declared_license() -> None:
    """``license = MIT`` comes with the MIT text, which the wheel and sdist carry."""
    cfg = _setup_cfg()
    assert cfg["metadata"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "2026 flask_observe contributors" in text

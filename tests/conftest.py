"""Shared fixtures: the ISAAC architecture and a factory of small architectures.

``BASE_ARCH`` is a small valid architecture (16 x 8 crossbars of 2-bit cells, 1-bit DAC,
8-bit offset weights with a unit column, 8-bit signed inputs, a 6-bit ADC that holds the
largest partial sum 16 x 3 = 48 exactly). Tests change it with dotted YAML paths::

    arch = make_arch(**{"crossbar.adc.bits": 7, "weights.encoding": "differential"})
    data = make_arch.dict(**{"crossbar.rows": make_arch.DELETE})   # the raw dict
    problems = make_arch.problems(**{"crossbar.adc.bits": 0})      # ConfigError.problems

Paths may index lists (``components[0].area``); missing intermediate mappings are created.
The factory is session-scoped and stateless, so hypothesis tests may use it too.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from sim.config.loader import arch_from_dict, load_arch
from sim.config.schema import Arch
from sim.errors import ConfigError
from sim.kernels import backend as backend_k

REPO = Path(__file__).resolve().parent.parent
ISAAC_YAML = REPO / "arch_configs" / "isaac_32nm.yaml"

BASE_ARCH: dict[str, Any] = {
    "name": "tiny_test_arch",
    "description": "small crossbars for unit tests",
    "technology": "32nm",
    "clock": {"crossbar_cycle": "100ns", "digital": "1GHz"},
    "organization": {"tiles": 2, "imas_per_tile": 2, "crossbars_per_ima": 4},
    "crossbar": {
        "rows": 16,
        "columns": 8,
        "unit_column": True,
        "cell": {"technology": "reram", "bits": 2},
        "dac": {"bits": 1},
        # 16 rows x 3 levels x 1 DAC level = 48 <= 2**6 - 1: unit step, exact, no clipping.
        "adc": {"bits": 6, "per_crossbar": 1, "range": "fixed", "clip": False,
                "rounding": "nearest"},
    },
    "weights": {"bits": 8, "encoding": "offset", "column_flip": False},
    "inputs": {"bits": 8, "signed": True, "zero_skip": False},
    "outputs": {"bits": 16},
    "energy": {
        "adc_conversion": "1.5pJ",
        "dac_pulse": {"energy": "0.4pJ", "at": {"bits": 1}},
        "cell_read": "0.002pJ",
        "sample_hold": "0.001pJ",
        "shift_add": {"energy": "0.02pJ", "at": {"width": 16}},
        "buffer_read_bit": "0.08pJ",
        "buffer_write_bit": "0.08pJ",
        "register_write_bit": "0.12pJ",
    },
    # The point the figures above and below were stated at (docs/arch_yaml.md).
    "stated_at": {"technology": "32nm", "crossbars_per_ima": 4, "rows": 16, "columns": 8,
                  "crossbar_cycle": "100ns", "digital": "1GHz"},
    # Every counted event has a performing row (so its area and power are known). Rows
    # without `at.rate` leave the per-event energy to `energy:` or the class model.
    "components": [
        {"name": "adc", "level": "ima", "class": "sar_adc", "count": 4, "power": "8mW",
         "area": "0.005mm2", "spec": "6 bits",
         "at": {"bits": 6, "rate": "90MS/s", "per_crossbar": 1}},
        {"name": "crossbar", "level": "ima", "class": "reram_crossbar", "count": 4,
         "power": "1.2mW", "area": "100um2", "at": {"bits": 2}},
        {"name": "dac", "level": "ima", "class": "dac", "count": 64, "power": "0.25mW",
         "area": "10um2", "at": {"bits": 1}},
        {"name": "sample_hold", "level": "ima", "class": "sample_hold", "count": 32,
         "power": "0.3uW", "area": "1um2"},
        {"name": "shift_add", "level": "ima", "class": "shift_add", "power": "0.05mW",
         "area": "60um2", "at": {"width": 16}, "events": ["shift_adds", "add_ops"]},
        {"name": "input_register", "level": "ima", "class": "register", "power": "0.1mW",
         "area": "200um2", "events": ["input_register_write_bits"]},
        {"name": "output_register", "level": "ima", "class": "register", "power": "0.05mW",
         "area": "100um2", "events": ["output_register_write_bits"]},
        {"name": "buffer", "level": "tile", "class": "edram_buffer", "power": "2mW",
         "area": "0.01mm2", "at": {"size": "4KiB", "width": 64}},
        {"name": "bus", "level": "tile", "class": "bus", "power": "0.5mW", "area": "0.005mm2"},
        {"name": "router", "level": "tile", "class": "router", "power": "2mW",
         "area": "0.01mm2", "at": {"width": 32}},
        {"name": "noc_link", "level": "tile", "class": "noc_link", "power": "0.5mW",
         "area": "0.002mm2", "at": {"width": 32}},
        {"name": "sigmoid", "level": "tile", "class": "sigmoid", "power": "0.1mW",
         "area": "100um2"},
        {"name": "maxpool", "level": "tile", "class": "maxpool", "power": "0.1mW",
         "area": "100um2"},
        {"name": "offchip", "level": "chip", "class": "offchip_link", "power": "100mW",
         "area": "1mm2", "at": {"width": 32}},
    ],
}

#: Override value that removes the key at its path instead of setting it.
DELETE = object()

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _path_keys(path: str) -> list[str | int]:
    """``"components[0].area"`` -> ``["components", 0, "area"]``."""
    keys: list[str | int] = []
    for name, index in _TOKEN.findall(path):
        keys.append(int(index) if index else name)
    if not keys:
        raise ValueError(f"empty override path {path!r}")
    return keys


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``data`` with each dotted ``path: value`` set (or deleted)."""
    data = copy.deepcopy(data)
    for path, value in overrides.items():
        keys = _path_keys(path)
        node: Any = data
        for key in keys[:-1]:
            if isinstance(key, str) and (key not in node or not isinstance(node[key], dict | list)):
                node[key] = {}
            node = node[key]
        last = keys[-1]
        if value is DELETE:
            del node[last]
        else:
            node[last] = copy.deepcopy(value)
    return data


class ArchFactory:
    """Builds architectures from ``BASE_ARCH`` with dotted-path overrides."""

    DELETE = DELETE
    base = BASE_ARCH

    def __call__(self, **overrides: Any) -> Arch:
        """A validated :class:`Arch` (raises :class:`ConfigError` like the loader)."""
        return arch_from_dict(self.dict(**overrides), source="<test>")

    def dict(self, **overrides: Any) -> dict[str, Any]:
        """The raw YAML-like mapping, e.g. to write a file or to edit further."""
        return apply_overrides(BASE_ARCH, overrides)

    def problems(self, **overrides: Any) -> list[tuple[str, str]]:
        """The ``(path, message)`` problems of the overridden base; fails if it is valid."""
        with pytest.raises(ConfigError) as info:
            self(**overrides)
        return info.value.problems


@pytest.fixture(scope="session")
def make_arch() -> ArchFactory:
    """Factory ``make_arch(**{"a.b.c": value}) -> Arch`` over ``BASE_ARCH``."""
    return ArchFactory()


@pytest.fixture(scope="session")
def isaac_arch() -> Arch:
    """ISAAC-CE (ISCA 2016) as loaded from ``arch_configs/isaac_32nm.yaml``."""
    return load_arch(ISAAC_YAML)


@pytest.fixture(scope="module", params=backend_k.test_variants(),
                ids=lambda v: f"{v[0]}-{'fast' if v[1] else 'loop'}")
def array_backend(request):
    """Runs a module's tests on each array backend of this machine, with and without the
    exact fast path (``sim.kernels.backend.test_variants``); modules opt in with
    ``pytestmark = pytest.mark.usefixtures("array_backend")``."""
    with backend_k.forced(*request.param):
        yield request.param

"""Architecture YAML loading: the ISAAC config, and every kind of user mistake.

Each mistake must come back as one :class:`~sim.errors.ConfigError` whose ``problems`` carry
the YAML path of the mistake and a message that says what is wrong (and, where it helps, what
would be right). Tier one reads keys (unknown keys, types, ranges, missing keys, units); tier
two checks contradictions between fields that are each valid on their own
(``sim.config.loader._cross_checks``). Both tiers report everything in one error.
"""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from sim.config import schema
from sim.config.loader import arch_from_dict, load_arch, read_yaml
from sim.errors import ConfigError, UserError
from tests_support_paths import ISAAC_YAML  # noqa: F401  (replaced below)

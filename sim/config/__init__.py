"""Architecture YAML -> frozen dataclasses, with units parsed and every error collected."""

from sim.config.loader import arch_from_dict, load_arch, read_yaml
from sim.config.schema import Arch

__all__ = ["Arch", "arch_from_dict", "load_arch", "read_yaml"]

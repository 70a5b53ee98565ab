"""Load an architecture YAML into an :class:`~sim.config.schema.Arch`, validating all of it.

Tier one reads every section with typed readers (presence, type, range, unknown keys); tier
two checks cross-field contradictions on the typed values. Every problem of both tiers is
collected and raised once as a :class:`~sim.errors.ConfigError` whose lines carry YAML paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sim.config import units
from sim.config.schema import (
    EVENTS,
    VARIATION_DISTRIBUTIONS,
    WEIGHT_ENCODINGS,
    ZERO_SKIP_TIMING,
    AdcVariation,
    Arch,
    CellVariation,
    Clock,
    EventEnergy,
    InputFormat,
    Noc,
    OutputFormat,
    TileBuffer,
    Variation,
    WeightFormat,
    adc_full_scale,
    magnitude_bits,
    max_partial_sum,
)
from sim.config.validate import Problems, Section, join, short_repr
from sim.errors import ConfigError


def component_class_names() -> tuple[str, ...]:
    """Valid ``class:`` values: the component registry's classes."""
    from sim.components.registry import component_classes  # late: components import config

    return tuple(component_classes())


COMPONENT_LEVELS = ("chip", "tile", "ima")


#: Largest config file read (bytes). The shipped configs are a few kB; a limit keeps a stray
#: multi-megabyte file from taking minutes and gigabytes before any message.
MAX_YAML_BYTES = 4 * 1024 * 1024
#: Most nodes a document may expand to once its aliases are followed. Counted on the event
#: stream before anything is built, so a "billion laughs" alias bomb is refused in
#: milliseconds instead of filling memory.
MAX_YAML_NODES = 200_000
#: Deepest nesting of mappings and lists allowed.
MAX_YAML_DEPTH = 100

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where installed


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader, refusing a key given twice in one mapping (plain YAML keeps the last
    silently, so a user's first value would be ignored without a word)."""

    def construct_mapping(self, node, deep=False):  # noqa: D102
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, Any] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                    continue
                if key_node.value in seen:
                    first = seen[key_node.value]
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key_node.value!r} is given twice in one mapping "
                        f"(first at line {first.line + 1})", key_node.start_mark)
                seen[key_node.value] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing, unreadable, oversized, non-UTF-8 or malformed file is a
    ConfigError naming the file (see :func:`parse_yaml_text` for the limits)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), [("", "file not found")])
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(str(path), [("", f"file is {size:,} bytes; a config file may "
                                               f"have at most {MAX_YAML_BYTES:,}")])
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [("", f"cannot read: {exc.strerror or exc}")]) from None
    return parse_yaml_text(data, str(path))


def parse_yaml_text(data: str | bytes, source: str) -> Any:
    """Parse one YAML document safely, with the bounds every imcsim config is read under.

    ``data`` over :data:`MAX_YAML_BYTES`, bytes that are not UTF-8, a document that would
    expand to more than :data:`MAX_YAML_NODES` nodes through aliases or nest deeper than
    :data:`MAX_YAML_DEPTH`, and YAML syntax errors are each one ConfigError on ``source``.
    """
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(source, [("", f"document is {len(data):,} bytes; a config may have "
                                        f"at most {MAX_YAML_BYTES:,}")])
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            raise ConfigError(source, [("", f"not UTF-8 text: byte 0x{data[exc.start]:02x} at "
                                            f"line {line}, column {column}; save the file as "
                                            "UTF-8")]) from None
    else:
        text = data
    try:
        if "*" in text or text.count("[") + text.count("{") > MAX_YAML_DEPTH:
            _check_expansion(text, source)  # only documents that could be a bomb pay for it
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [("", f"invalid YAML: {where}{problem}")]) from None
    except RecursionError:
        raise ConfigError(source, [("", f"nested more than {MAX_YAML_DEPTH} levels deep")]
                          ) from None


def _check_expansion(text: str, source: str) -> None:
    """Refuse a document whose aliases expand it past the limits, before it is built.

    Walks the parser's event stream once, keeping the expanded node count of every anchored
    node, so the count of an alias is known without expanding it.
    """
    sizes: dict[str, int] = {}
    stack: list[list] = [[0, None]]  # per open collection: [nodes inside, its anchor]
    total = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for _, anchor in stack):
                raise ConfigError(source, [("", f"the alias *{short_repr(event.anchor)[1:-1]} "
                                                "is inside the node it names (a cycle)")])
            n = sizes.get(event.anchor, 1)
            stack[-1][0] += n
            total += n
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[event.anchor] = 1
            stack[-1][0] += 1
            total += 1
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([0, event.anchor])
            if len(stack) - 1 > MAX_YAML_DEPTH:
                raise ConfigError(source, [("", f"nested more than {MAX_YAML_DEPTH} levels "
                                                "deep")])
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            inside, anchor = stack.pop()
            stack[-1][0] += inside + 1
            total += 1
            if anchor is not None:
                sizes[anchor] = inside + 1
        if total > MAX_YAML_NODES:
            raise ConfigError(source, [("", f"expands to more than {MAX_YAML_NODES:,} values "
                                            "(aliases repeating aliases?); refused before "
                                            "building it")])


def load_arch(path: str | Path) -> Arch:
    """Read, validate and freeze the architecture YAML at ``path``."""
    return arch_from_dict(read_yaml(path), source=str(path))


def arch_from_dict(data: Any, source: str = "<arch>") -> Arch:
    """Validate an already-parsed YAML document (used by sweeps that edit a base config)."""
    problems = Problems(source)
    top = Section(data, "", problems)
    name = top.get("name", str)
    if name is not None and not name.strip():
        problems.add("name", "must not be empty (reports and results are labelled by it)")
    description = top.get("description", str, "")
    tech = top.get("technology", units.length_nm)

    c = top.section("clock", required=True)
    clock = Clock(crossbar_cycle_ns=c.get("crossbar_cycle", units.time_ns),
                  digital_hz=c.get("digital", units.frequency_hz))
    c.finish()

    # The macro family (``crossbar.class``, default reram_crossbar) reads its own sections.
    xs = top.section("crossbar", required=True)
    family = _family(xs)
    o = top.section("organization", required=True)
    organization = crossbar = macro = None
    if family is not None:
        organization = family.read_organization(o)
        o.finish()
        crossbar, macro = family.read_crossbar(xs)
        xs.finish()
        organization = family.finish_organization(organization, crossbar, macro)

    w = top.section("weights", required=True)
    weights = WeightFormat(bits=w.get("bits", int, lo=2, hi=32),
                           encoding=w.get("encoding", str, choices=WEIGHT_ENCODINGS),
                           column_flip=w.get("column_flip", bool, False))
    w.finish()
    i = top.section("inputs", required=True)
    inputs = InputFormat(bits=i.get("bits", int, lo=1, hi=32), signed=i.get("signed", bool),
                         zero_skip=i.get("zero_skip", bool, False),
                         zero_skip_timing=i.get("zero_skip_timing", str, "shared_step",
                                                choices=ZERO_SKIP_TIMING))
    i.finish()
    out = top.section("outputs")
    outputs = OutputFormat(bits=out.get("bits", int, 16, lo=1, hi=64))
    out.finish()

    vs = top.section("variation")
    if family is not None:
        variation, macro = family.read_variation(vs, macro, crossbar.adc.bits)
    else:
        variation = _variation(vs)
    stated_energy = _energy(top.section("energy"))
    from sim.components.calibrate import read_at, read_rows  # late: components import config

    rows = read_rows(top.raw("components", []), problems, COMPONENT_LEVELS,
                     component_class_names())
    stated_at = read_at(top.raw("stated_at", None), "stated_at", problems)
    noc = tile_buffer = None
    if top.has("noc"):
        n = top.section("noc")
        noc = Noc(link_bits=n.get("link_bits", int, lo=1),
                  frequency_hz=n.get("frequency", units.frequency_hz, lo=1.0))
        n.finish()
    if top.has("tile_buffer"):
        b = top.section("tile_buffer")
        tile_buffer = TileBuffer(size_bytes=b.get("size", units.size_bytes, lo=1),
                                 bus_bits=b.get("bus_bits", int, lo=1))
        b.finish()
    top.finish()

    arch = Arch(name=name, description=description, technology_nm=tech, clock=clock,
                organization=organization, crossbar=crossbar, weights=weights, inputs=inputs,
                outputs=outputs, variation=variation, energy=EventEnergy(),
                noc=noc, tile_buffer=tile_buffer, source=source,
                macro_class=family.class_name if family else "", macro=macro)
    if family is None:  # an unknown macro class: nothing else can be checked
        problems.raise_if_any()
    _cross_checks(arch, problems)
    if not problems.bad(*_CALIBRATION_INPUTS):
        from sim.components.calibrate import calibrate

        arch = calibrate(arch, rows, stated_at, stated_energy, problems)
    problems.raise_if_any()
    return arch


#: Sections the calibration reads: it runs only when none of them has a problem.
_CALIBRATION_INPUTS = ("technology", "clock", "organization", "crossbar", "outputs", "noc",
                       "tile_buffer", "stated_at")


def _family(s: Section):
    """The macro family named by ``crossbar.class`` (a problem and ``None`` when unknown)."""
    from sim.macros.family import DEFAULT_FAMILY, family_names, get_family

    name = s.get("class", str, DEFAULT_FAMILY, choices=family_names())
    if name is None or s.problems.bad("crossbar.class"):
        return None
    return get_family(name)


def _variation(s: Section) -> Variation:
    seed = s.get("seed", int, 0, lo=0)
    c = s.section("cell")
    cell = CellVariation(
        distribution=c.get("distribution", str, "lognormal", choices=VARIATION_DISTRIBUTIONS),
        sigma=c.get("sigma", float, 0.0, lo=0.0, hi=10.0),
        stuck_at_0=c.get("stuck_at_0", float, 0.0, lo=0.0, hi=1.0),
        stuck_at_1=c.get("stuck_at_1", float, 0.0, lo=0.0, hi=1.0),
        read_noise_sigma=c.get("read_noise_sigma", float, 0.0, lo=0.0, hi=10.0),
    )
    c.finish()
    a = s.section("adc")
    adc = AdcVariation(
        offset_sigma_lsb=a.get("offset_sigma_lsb", float, 0.0, lo=0.0),
        gain_sigma=a.get("gain_sigma", float, 0.0, lo=0.0, hi=1.0),
        cap_mismatch_sigma=a.get("cap_mismatch_sigma", float, 0.0, lo=0.0, hi=1.0),
        noise_sigma_lsb=a.get("noise_sigma_lsb", float, 0.0, lo=0.0),
    )
    a.finish()
    s.finish()
    return Variation(seed=seed, cell=cell, adc=adc)


def _energy(s: Section) -> dict[str, tuple[float, dict[str, Any]]]:
    """Stated per-event figures: ``energy:`` key -> (pJ, the ``at:`` it was stated at).

    A value is an energy (stated at the point of the row charged for the event) or a mapping
    ``{energy: 0.4pJ, at: {bits: 1}}`` recording its own point.
    """
    from sim.components.calibrate import read_at  # late: components import config

    values = {}
    for kind in EVENTS.values():
        if kind is None or not s.has(kind.key):
            continue
        raw = s.data[kind.key]
        if isinstance(raw, Mapping):
            e = Section(raw, join(s.path, kind.key), s.problems)
            value = e.get("energy", units.energy_pj)
            at = read_at(e.raw("at", None), join(e.path, "at"), s.problems)
            e.finish()
        else:
            value, at = s.get(kind.key, units.energy_pj, None), {}
        if value is not None:
            values[kind.key] = (value, at)
    s.finish()
    return values


def _cross_checks(arch: Arch, problems: Problems) -> None:
    """Tier two: contradictions between fields that are each valid on their own.

    Runs even when tier one found problems, so one run reports everything. Each rule names
    the fields it reads and is skipped when any of them was already reported, so one mistake
    gives one problem; rules are independent, so an invalid field hides nothing else.
    """
    from sim.macros.family import family_of

    family_of(arch).cross_checks(arch, problems)
    for deps, rule in _RULES:
        if not problems.bad(*deps):
            rule(arch, problems)


def _rule_whole_cells(arch: Arch, problems: Problems) -> None:
    xb, w = arch.crossbar, arch.weights
    mag = magnitude_bits(w)
    if mag % xb.cell.bits:
        what = "the weight" if w.encoding == "offset" else f"the {mag} magnitude bits of"
        problems.add("weights.bits",
                     f"{what} {w.bits}-bit {w.encoding} weights are not a whole number of "
                     f"{xb.cell.bits}-bit cells (crossbar.cell.bits)")


def _rule_dac_bits(arch: Arch, problems: Problems) -> None:
    if arch.crossbar.dac.bits > arch.inputs.bits:
        problems.add("crossbar.dac.bits", f"{arch.crossbar.dac.bits} DAC bits exceed "
                                          f"inputs.bits ({arch.inputs.bits})")


def _rule_fragment_needed(arch: Arch, problems: Problems) -> None:
    xb, w = arch.crossbar, arch.weights
    if w.encoding == "polarized" and xb.fragment_rows is None:
        problems.add("crossbar.fragment_rows",
                     "is required with weights.encoding: polarized (rows sharing a sign)")
    elif w.encoding != "polarized" and xb.fragment_rows is not None:
        problems.add("crossbar.fragment_rows",
                     f"only applies to weights.encoding: polarized, not {w.encoding}")


def _rule_fragment_size(arch: Arch, problems: Problems) -> None:
    xb = arch.crossbar
    if xb.fragment_rows is None:
        return
    if xb.fragment_rows > xb.rows:
        problems.add("crossbar.fragment_rows",
                     f"fragment of {xb.fragment_rows} rows is taller than the crossbar "
                     f"({xb.rows} rows)")
    elif xb.rows % xb.fragment_rows:
        problems.add("crossbar.fragment_rows",
                     f"{xb.fragment_rows} does not divide crossbar.rows ({xb.rows})")


def _rule_flip_unit(arch: Arch, problems: Problems) -> None:
    if arch.weights.column_flip and not arch.crossbar.unit_column:
        problems.add("weights.column_flip",
                     "needs crossbar.unit_column: true (the flipped result uses the sum of "
                     "inputs that the unit column measures)")


def _rule_offset_unit(arch: Arch, problems: Problems) -> None:
    if arch.weights.encoding == "offset" and not arch.crossbar.unit_column:
        problems.add("weights.encoding",
                     "offset encoding needs crossbar.unit_column: true to measure the sum of "
                     "inputs that removes the bias")


def _rule_flip_polarized(arch: Arch, problems: Problems) -> None:
    if arch.weights.column_flip and arch.weights.encoding == "polarized":
        problems.add("weights.column_flip", "cannot be combined with polarized weights")


def _rule_adc_count(arch: Arch, problems: Problems) -> None:
    xb = arch.crossbar
    if xb.adc.per_crossbar > xb.columns + int(xb.unit_column):
        problems.add("crossbar.adc.per_crossbar",
                     f"{xb.adc.per_crossbar} ADCs for {xb.columns} columns")


def _rule_adc_range(arch: Arch, problems: Problems) -> None:
    xb, w, adc = arch.crossbar, arch.weights, arch.crossbar.adc
    if adc.clip:
        return
    worst = max_partial_sum(arch)
    if adc.range == "calibrated":
        # A calibrated full scale comes from data and can be below the largest partial sum,
        # which must then clip: without clip, the ADC has to hold it at a unit step.
        if adc.codes - 1 < worst:
            problems.add(
                "crossbar.adc",
                f"range: calibrated with clip: false is contradictory: a calibrated full "
                f"scale is set from data, so partial sums above it (up to {worst}: "
                f"{xb.group_rows} rows x {xb.cell.levels - 1} cell levels x "
                f"{2**xb.dac.bits - 1} DAC levels) must clip, and a {adc.bits}-bit ADC cannot "
                "hold them at a unit step; set crossbar.adc.clip: true")
        return
    fs = adc_full_scale(arch)
    if fs < worst:
        flip = ", halved by column flipping" if w.column_flip else ""
        problems.add(
            "crossbar.adc",
            f"a {adc.bits}-bit ADC with full scale {fs:g} cannot hold the largest partial sum "
            f"{worst} ({xb.group_rows} rows x {xb.cell.levels - 1} cell levels x "
            f"{2**xb.dac.bits - 1} DAC levels{flip}); set crossbar.adc.clip: true, raise "
            "crossbar.adc.bits or full_scale, or use weights.column_flip")


def _rule_calibrated_full_scale(arch: Arch, problems: Problems) -> None:
    adc = arch.crossbar.adc
    if adc.range == "calibrated" and adc.full_scale is not None:
        problems.add("crossbar.adc.full_scale",
                     "is set by calibration with range: calibrated; remove it")


def _rule_stuck_at(arch: Arch, problems: Problems) -> None:
    cv = arch.variation.cell
    if cv.stuck_at_0 + cv.stuck_at_1 > 1.0:
        problems.add("variation.cell", "stuck_at_0 + stuck_at_1 exceeds 1")


#: (fields read, rule). A rule runs only if none of its fields was already reported.
_RULES = (
    (("weights.bits", "weights.encoding", "crossbar.cell.bits"), _rule_whole_cells),
    (("crossbar.dac.bits", "inputs.bits"), _rule_dac_bits),
    (("weights.encoding", "crossbar.fragment_rows"), _rule_fragment_needed),
    (("crossbar.fragment_rows", "crossbar.rows"), _rule_fragment_size),
    (("weights.column_flip", "crossbar.unit_column"), _rule_flip_unit),
    (("weights.encoding", "crossbar.unit_column"), _rule_offset_unit),
    (("weights.column_flip", "weights.encoding"), _rule_flip_polarized),
    (("crossbar.adc.per_crossbar", "crossbar.columns", "crossbar.unit_column"),
     _rule_adc_count),
    (("crossbar.adc", "crossbar.rows", "crossbar.fragment_rows", "crossbar.cell.bits",
      "crossbar.dac.bits", "crossbar.unit_column", "weights.column_flip"), _rule_adc_range),
    (("crossbar.adc.range", "crossbar.adc.full_scale"), _rule_calibrated_full_scale),
    (("variation.cell",), _rule_stuck_at),
)


def to_plain(obj: Any) -> Any:
    """A dataclass tree as plain dicts/lists (for ``result.json``)."""
    from dataclasses import fields, is_dataclass

    if is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_plain(x) for x in obj]
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj

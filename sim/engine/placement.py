"""Layers onto crossbars: tiling, ISAAC-style duplication, and placement on tiles.

A layer is a weight matrix ``K x N`` applied to ``vectors`` input vectors per inference
(output pixels of a convolution, 1 for a fully connected layer). Its weights need
``row_tiles x col_tiles`` crossbars; ``duplicates`` copies of them process different vectors
in parallel. Duplication goes greedily to the layer that is the pipeline's bottleneck (most
vectors per copy), as ISAAC replicates its early layers, while crossbars remain.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.config.schema import Arch, columns_per_weight, input_steps
from sim.errors import MappingError


@dataclass(frozen=True, kw_only=True)
class LayerShape:
    """What the engine needs to know of one matrix-product layer."""

    name: str
    k: int
    n: int
    vectors: int
    #: For convolutions: output width and kernel height, so the next layer's line buffer can
    #: start after ``(kernel_height - 1) x width`` vectors rather than the whole feature map.
    out_width: int = 1
    kernel_height: int = 1
    #: Name of the layer whose output is this layer's input (``None``: the network input).
    source: str | None = None


@dataclass(frozen=True, kw_only=True)
class Geometry:
    """Crossbars of one copy of a layer's weights and its columns."""

    row_groups: int
    row_tiles: int
    col_tiles: int
    data_columns: int
    columns_total: int
    steps: int

    @property
    def crossbars(self) -> int:
        """Crossbars holding one copy of the weights."""
        return self.row_tiles * self.col_tiles


def geometry(arch: Arch, k: int, n: int) -> Geometry:
    """The same tiling :class:`sim.macros.CrossbarLayer` programs, from the shape alone."""
    xb = arch.crossbar
    groups = -(-k // xb.group_rows)
    row_tiles = -(-groups // (xb.rows // xb.group_rows))
    j = n * columns_per_weight(arch.weights, xb.cell)
    col_tiles = -(-j // xb.columns)
    return Geometry(row_groups=groups, row_tiles=row_tiles, col_tiles=col_tiles,
                    data_columns=j, columns_total=j + (col_tiles if xb.unit_column else 0),
                    steps=input_steps(arch.inputs, xb.dac))


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where one layer went: its geometry, copies, and first/last tile."""

    layer: LayerShape
    geometry: Geometry
    duplicates: int
    first_crossbar: int
    first_tile: int
    last_tile: int

    @property
    def crossbars(self) -> int:
        """Crossbars used, all copies together."""
        return self.geometry.crossbars * self.duplicates


def place(arch: Arch, layers: list[LayerShape], *, duplicate: bool = True) -> list[Placement]:
    """Place ``layers`` on the chip in order, duplicating bottlenecks while crossbars remain.

    Raises :class:`MappingError` saying by how much the model does not fit, unless
    ``organization.reprogram`` is set (then every layer gets one copy and may reuse crossbars).
    """
    org = arch.organization
    capacity = org.crossbars
    geos = [geometry(arch, ly.k, ly.n) for ly in layers]
    need = sum(g.crossbars for g in geos)
    if need > capacity and not org.reprogram:
        raise MappingError(
            f"the model needs {need} crossbars but arch '{arch.name}' has {capacity} "
            f"(short by {need - capacity}, {100 * (need - capacity) / capacity:.1f} %); use a "
            "larger organization or set organization.reprogram: true")
    dup = [1] * len(layers)
    if duplicate and need <= capacity:
        spare = capacity - need
        # Greedy: give one more copy to the layer with the most vectors per copy.
        while True:
            order = sorted(range(len(layers)), key=lambda i: -layers[i].vectors / dup[i])
            for i in order:
                if dup[i] < layers[i].vectors and geos[i].crossbars <= spare:
                    dup[i] += 1
                    spare -= geos[i].crossbars
                    break
            else:
                break
            if layers[order[0]].vectors / dup[order[0]] <= 1:
                break
    per_tile = org.imas_per_tile * org.crossbars_per_ima
    result, cursor = [], 0
    for ly, g, d in zip(layers, geos, dup, strict=True):
        start = cursor % capacity if org.reprogram else cursor
        used = g.crossbars * d
        result.append(Placement(layer=ly, geometry=g, duplicates=d, first_crossbar=start,
                                first_tile=start // per_tile,
                                last_tile=(start + used - 1) // per_tile))
        cursor += used
    return result

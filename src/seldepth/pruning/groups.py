"""The prunable channel groups of METER: which widths structured pruning may change, and which weights each touches.

A channel group is one width of the network whose channels can be removed without changing any other
width: the channels are made by ``producers`` (their output channels, and the batch norm that follows)
and read only by ``consumers`` (their input channels). Every group is internal to a block, so no
residual addition, skip connection or concatenation with a block input ever changes shape. The 30
groups of a METER (every variant):

* ``encoder.blocks.{0,1,2,3,4,6,8}.hidden``: the expanded width of each MV2 block (1x1 expand, BN,
  3x3 depthwise, BN; read by the 1x1 projection).
* per METER block ``encoder.blocks.{5,7,9}``: ``.local_mid`` (the local conv's 3x3 output, read by its
  1x1), ``.local`` (the local conv's output, read by ``to_tokens``), ``.tokens_out`` (``from_tokens``'
  output, the first part of the fusion conv's input; the other part, the block input, is kept) and
  ``.fusion_mid`` (the fusion conv's 3x3 output, read by its 1x1).
* ``encoder.head`` (the final 1x1 conv, read by ``decoder.input``) and ``decoder.input``.
* per up block ``decoder.up{1,2,3}``: ``.up`` (the transposed conv's output, the first part of the 3x3
  conv's input; the skip is kept), ``.mid`` (the 3x3 output, read by the 1x1) and ``.out`` (the block
  output, read by the next up block or the output conv).

Not prunable: the encoder's block outputs (residual additions and the decoder's skips tie them together),
the token dimension and the transformer MLP (their units are not channels of a feature map, so they have
no depth selectivity; the attention's cost, which grows with the square of the token count, does not
depend on them either) and the output conv (one channel: depth).

Each group names a ``probe``: the module whose (B, K, h, w) output holds the group's channels, which is
what :func:`seldepth.selectivity.dissect.dissect` measures the depth selectivity of.

Example:
    >>> groups = meter_groups(create_model("meter_xxs"))
    >>> len(groups), groups[0].name, groups[0].width, groups[0].probe
    (30, 'encoder.blocks.0.hidden', 32, 'encoder.blocks.0.conv.5')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from seldepth.models.meter import METER

MV2_BLOCKS = (0, 1, 2, 3, 4, 6, 8)  # indices in encoder.blocks of the MV2 blocks, in mv2_widths' order
METER_BLOCKS = (5, 7, 9)  # ... and of the METER blocks, in meter_widths' order
SUPPORTED = ("meter_xxs", "meter_xs", "meter_s")


@dataclass(frozen=True)
class Consumer:
    """A module reading a group's channels as its input channels ``offset .. offset + width - 1``.

    Example: ``Consumer("encoder.blocks.5.fusion.0.spatial", 0)``: the fusion conv's first input channels.
    """

    module: str
    offset: int = 0


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable width of a METER.

    Attributes:
        name: e.g. ``encoder.blocks.0.hidden``.
        width: its number of channels in the model it was read from.
        field: the :class:`~seldepth.models.meter.METERConfig` field that holds the width (``mv2_widths``,
            ``meter_widths``, ``up_widths``, ``channels``, ``decoder_in``, ``decoder_widths``).
        index: the position in that field (None for a single number: ``decoder_in``).
        producers: module paths whose output channels are the group's (convolutions, then batch norms);
            the first is the convolution whose filters make the channels (the filters of the L1 criterion).
        consumers: the modules that read the channels.
        probe: module path whose output (B, K, h, w) holds the channels, for depth selectivity.
    """

    name: str
    width: int
    field: str
    index: int | None
    producers: tuple[str, ...]
    consumers: tuple[Consumer, ...]
    probe: str


def check_prunable(model) -> METER:
    """``model`` itself when structured pruning supports it (a :class:`~seldepth.models.meter.METER`).

    Raises:
        ValueError: naming ``model``'s architecture and the supported ones.
    """
    if not isinstance(model, METER):
        name = getattr(model, "name", "") or type(model).__name__
        raise ValueError(f"model: structured pruning supports METER models ({', '.join(SUPPORTED)}, pruned or not) "  # noqa: TRY004 (an argument the command line passes)
                         f"in PyTorch; got {name}")
    return model


def meter_groups(model: METER) -> list[ChannelGroup]:
    """The 30 prunable channel groups of ``model`` (module docstring), encoder first, with their current widths."""
    model = check_prunable(model)
    groups = []

    def add(name, field, index, producers, consumers, probe):
        width = model.get_submodule(producers[0]).out_channels
        groups.append(ChannelGroup(name, width, field, index, tuple(producers), tuple(consumers), probe))

    for i, b in enumerate(MV2_BLOCKS):
        p = f"encoder.blocks.{b}.conv"
        add(f"encoder.blocks.{b}.hidden", "mv2_widths", i, [f"{p}.0", f"{p}.1", f"{p}.3", f"{p}.4"],
            [Consumer(f"{p}.6")], f"{p}.5")
    for j, b in enumerate(METER_BLOCKS):
        p = f"encoder.blocks.{b}"
        add(f"{p}.local_mid", "meter_widths", 4 * j, [f"{p}.local.0.spatial"], [Consumer(f"{p}.local.0.pointwise")],
            f"{p}.local.0.spatial")
        add(f"{p}.local", "meter_widths", 4 * j + 1, [f"{p}.local.0.pointwise", f"{p}.local.1"],
            [Consumer(f"{p}.to_tokens.0")], f"{p}.local")
        add(f"{p}.tokens_out", "meter_widths", 4 * j + 2, [f"{p}.from_tokens.0", f"{p}.from_tokens.1"],
            [Consumer(f"{p}.fusion.0.spatial")], f"{p}.from_tokens")
        add(f"{p}.fusion_mid", "meter_widths", 4 * j + 3, [f"{p}.fusion.0.spatial"],
            [Consumer(f"{p}.fusion.0.pointwise")], f"{p}.fusion.0.spatial")
    add("encoder.head", "channels", 10, ["encoder.head.0", "encoder.head.1"], [Consumer("decoder.input")], "encoder.head")
    add("decoder.input", "decoder_in", None, ["decoder.input"], [Consumer("decoder.up1.upsample")], "decoder.input")
    for i in (1, 2, 3):
        p = f"decoder.up{i}"
        following = f"decoder.up{i + 1}.upsample" if i < 3 else "decoder.output"
        add(f"{p}.up", "up_widths", 2 * (i - 1), [f"{p}.upsample"], [Consumer(f"{p}.fuse.spatial")], f"{p}.upsample")
        add(f"{p}.mid", "up_widths", 2 * (i - 1) + 1, [f"{p}.fuse.spatial"], [Consumer(f"{p}.fuse.pointwise")],
            f"{p}.fuse.spatial")
        add(f"{p}.out", "decoder_widths", i - 1, [f"{p}.fuse.pointwise"], [Consumer(following)], p)
    return groups


def config_with_widths(model: METER, widths: dict[str, int]):
    """``model``'s config with the widths of the groups named in ``widths`` (group name -> channels) replaced.

    The other groups keep their widths, written out explicitly (a pruned config lists every internal width).

    Example:
        >>> config_with_widths(create_model("meter_xxs"), {"encoder.blocks.0.hidden": 20}).mv2_widths
        (20, 32, 48, 48, 48, 96, 128)

    Raises:
        ValueError: naming ``widths`` and the unknown group or the width that is not a positive integer.
    """
    groups = {g.name: g for g in meter_groups(model)}
    unknown = sorted(set(widths) - set(groups))
    if unknown:
        raise ValueError(f"widths: no channel group {', '.join(map(repr, unknown))} in {model.name}; groups: {', '.join(groups)}")
    bad = {k: v for k, v in widths.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise ValueError(f"widths: expected positive integers, got {bad}")
    values = {"mv2_widths": [0] * len(MV2_BLOCKS), "meter_widths": [0] * 4 * len(METER_BLOCKS), "up_widths": [0] * 6,
              "channels": list(model.config.channels), "decoder_in": [model.config.decoder_in],
              "decoder_widths": list(model.config.decoder_widths)}
    for g in groups.values():
        values[g.field][g.index or 0] = widths.get(g.name, g.width)
    changes = {field: tuple(v) for field, v in values.items()}
    changes["decoder_in"] = values["decoder_in"][0]
    return dataclasses.replace(model.config, **changes)

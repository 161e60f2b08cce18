"""The prunable channel groups of METER and of the real-time network: which widths structured pruning may change,
and which weights each touches.

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

The 13 groups of a :class:`~seldepth.models.realtime.RealtimeDepth` (``realtime_depth``; fields of its config):

* ``stem.mid`` and ``down4.mid``: the first 3x3 conv's output of the 1/2 and the 1/4 stage (read by the
  stage's second conv; ``conv_widths``).
* ``down8.{0,1}.hidden``, ``down16.{0,1,2}.hidden``: the expanded width of each MV2 block (``mv2_widths``).
* per decoder stage ``decoder.{S,M,L}``: ``.reduce`` (the 1x1 ``reduce`` conv's output, the first part of the
  ``fuse`` conv's input; the skip is kept; ``reduce_widths``) and ``.out`` (the stage's output, read by that
  scale's head and the next stage's ``reduce``; ``decoder_widths``).

A detached model (``head`` M, S or XS) has only the groups of the stages it builds. Not prunable there: the
encoder's stage outputs (the decoder's skips; residual additions in the MV2 blocks) and the heads' outputs.

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
from seldepth.models.realtime import RealtimeDepth

MV2_BLOCKS = (0, 1, 2, 3, 4, 6, 8)  # indices in encoder.blocks of the MV2 blocks, in mv2_widths' order
METER_BLOCKS = (5, 7, 9)  # ... and of the METER blocks, in meter_widths' order
METER_VARIANTS = ("meter_xxs", "meter_xs", "meter_s")
SUPPORTED_TEXT = f"METER models ({', '.join(METER_VARIANTS)}) and realtime_depth (any head)"  # what errors name
REALTIME_STAGES = ("L", "M", "S")  # the real-time network's decoder stages, in reduce_widths' and decoder_widths' order
REALTIME_FIELDS = ("conv_widths", "mv2_widths", "reduce_widths", "decoder_widths")
PrunableModel = METER | RealtimeDepth  # the architectures structured pruning supports


@dataclass(frozen=True)
class Consumer:
    """A module reading a group's channels as its input channels ``offset .. offset + width - 1``.

    Example: ``Consumer("encoder.blocks.5.fusion.0.spatial", 0)``: the fusion conv's first input channels.
    """

    module: str
    offset: int = 0


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable width of a METER or a real-time network.

    Attributes:
        name: e.g. ``encoder.blocks.0.hidden``.
        width: its number of channels in the model it was read from.
        field: the config field that holds the width: of :class:`~seldepth.models.meter.METERConfig`
            ``mv2_widths``, ``meter_widths``, ``up_widths``, ``channels``, ``decoder_in``, ``decoder_widths``; of
            :class:`~seldepth.models.realtime.RealtimeDepthConfig` ``conv_widths``, ``mv2_widths``,
            ``reduce_widths``, ``decoder_widths``.
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


def check_prunable(model) -> PrunableModel:
    """``model`` itself when structured pruning supports it (a :class:`~seldepth.models.meter.METER` or a
    :class:`~seldepth.models.realtime.RealtimeDepth`).

    Raises:
        ValueError: naming ``model``'s architecture and the supported ones.
    """
    if not isinstance(model, (METER, RealtimeDepth)):
        name = getattr(model, "name", "") or type(model).__name__
        raise ValueError(f"model: structured pruning supports {SUPPORTED_TEXT}, pruned or not, in PyTorch; "  # noqa: TRY004 (an argument the command line passes)
                         f"got {name}")
    return model


def prunable_groups(model) -> list[ChannelGroup]:
    """The prunable channel groups of ``model`` (:func:`meter_groups` or :func:`realtime_groups`).

    Raises:
        ValueError: naming ``model`` when its architecture is not supported (:func:`check_prunable`).
    """
    model = check_prunable(model)
    return realtime_groups(model) if isinstance(model, RealtimeDepth) else meter_groups(model)


def _group_adder(model, groups: list[ChannelGroup]):
    """``add(name, field, index, producers, consumers, probe)``: appends a group whose width is its first producer's."""

    def add(name, field, index, producers, consumers, probe):
        width = model.get_submodule(producers[0]).out_channels
        groups.append(ChannelGroup(name, width, field, index, tuple(producers), tuple(consumers), probe))

    return add


def meter_groups(model: METER) -> list[ChannelGroup]:
    """The 30 prunable channel groups of ``model`` (module docstring), encoder first, with their current widths."""
    model = check_prunable(model)
    if not isinstance(model, METER):
        raise ValueError(f"model: meter_groups needs a METER, got {model.name}")  # noqa: TRY004 (an argument)
    groups = []
    add = _group_adder(model, groups)
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


def realtime_groups(model: RealtimeDepth) -> list[ChannelGroup]:
    """The prunable channel groups of a real-time network (module docstring), encoder first, with their current
    widths: 13 for a full model, fewer for a detached one (only the decoder stages it builds).

    Example:
        >>> [g.name for g in realtime_groups(create_model("realtime_depth", head="S"))][-2:]
        ['decoder.S.reduce', 'decoder.S.out']
    """
    model = check_prunable(model)
    if not isinstance(model, RealtimeDepth):
        raise ValueError(f"model: realtime_groups needs a realtime_depth, got {model.name}")  # noqa: TRY004 (an argument)
    groups = []
    add = _group_adder(model, groups)
    for i, stage in enumerate(("stem", "down4")):
        add(f"{stage}.mid", "conv_widths", i, [f"{stage}.0.0", f"{stage}.0.1"], [Consumer(f"{stage}.1.0")],
            f"{stage}.0")
    blocks = [f"down8.{i}" for i in range(len(model.down8))] + [f"down16.{i}" for i in range(len(model.down16))]
    for i, b in enumerate(blocks):
        p = f"{b}.conv"
        add(f"{b}.hidden", "mv2_widths", i, [f"{p}.0", f"{p}.1", f"{p}.3", f"{p}.4"], [Consumer(f"{p}.6")], f"{p}.5")
    built = [h for h in ("S", "M", "L") if h in model.decoder]  # coarse to fine, the order they run
    for k, h in enumerate(built):
        p, index = f"decoder.{h}", REALTIME_STAGES.index(h)
        readers = [Consumer(f"head.{h}")]  # that scale's head, then the next (finer) stage's reduce conv, if built
        if k + 1 < len(built):
            readers.append(Consumer(f"decoder.{built[k + 1]}.reduce.0"))
        add(f"{p}.reduce", "reduce_widths", index, [f"{p}.reduce.0", f"{p}.reduce.1"], [Consumer(f"{p}.fuse.0")],
            f"{p}.reduce")
        add(f"{p}.out", "decoder_widths", index, [f"{p}.fuse.0", f"{p}.fuse.1"], readers, p)
    return groups


def _width_values(model) -> dict[str, list[int]]:
    """Every config field that ``model``'s groups index, as a list of its widths (a group's entry is overwritten)."""
    cfg = model.config
    if isinstance(model, RealtimeDepth):
        explicit = cfg.explicit_widths()  # the entries of stages a detached model does not build, too
        return {name: list(getattr(explicit, name)) for name in REALTIME_FIELDS}
    return {"mv2_widths": [0] * len(MV2_BLOCKS), "meter_widths": [0] * 4 * len(METER_BLOCKS), "up_widths": [0] * 6,
            "channels": list(cfg.channels), "decoder_in": [cfg.decoder_in], "decoder_widths": list(cfg.decoder_widths)}


def config_with_widths(model: PrunableModel, widths: dict[str, int]):
    """``model``'s config with the widths of the groups named in ``widths`` (group name -> channels) replaced.

    The other groups keep their widths, written out explicitly (a pruned config lists every internal width).

    Example:
        >>> config_with_widths(create_model("meter_xxs"), {"encoder.blocks.0.hidden": 20}).mv2_widths
        (20, 32, 48, 48, 48, 96, 128)

    Raises:
        ValueError: naming ``widths`` and the unknown group or the width that is not a positive integer.
    """
    groups = {g.name: g for g in prunable_groups(model)}
    unknown = sorted(set(widths) - set(groups))
    if unknown:
        raise ValueError(f"widths: no channel group {', '.join(map(repr, unknown))} in {model.name}; groups: {', '.join(groups)}")
    bad = {k: v for k, v in widths.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise ValueError(f"widths: expected positive integers, got {bad}")
    values = _width_values(model)
    for g in groups.values():
        values[g.field][g.index or 0] = widths.get(g.name, g.width)
    scalars = {g.field for g in groups.values() if g.index is None}  # a field that is one number: decoder_in
    changes = {field: v[0] if field in scalars else tuple(v) for field, v in values.items()}
    return dataclasses.replace(model.config, **changes)

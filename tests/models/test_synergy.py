import pytest
import torch

from seldepth.models import create_model
from seldepth.models.synergy import STRUCTURES, LateralSharing

JOINT = [s for s in STRUCTURES if s != "depth_only"]


def test_lateral_sharing_unit_by_hand():
    unit = LateralSharing()
    d, s = torch.tensor([2.0]), torch.tensor([10.0])
    with torch.no_grad():
        unit.phi_d.fill_(0.5), unit.phi_s.fill_(0.1), unit.gamma_s.fill_(-0.5), unit.gamma_d.fill_(0.2)
    nd, ns = unit(d, s)
    assert nd.item() == pytest.approx(1.5 * 2 + 0.1 * 10) and ns.item() == pytest.approx(0.5 * 10 + 0.2 * 2)


def test_zero_sharing_scalars_give_two_independent_branches():
    torch.manual_seed(0)
    model = create_model("synergy_depth", semantic_classes=3).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = model.forward_tasks(x)
        # depth alone, through the depth branch only: equal to the joint model's depth
        feats, skips = model.encoder(x)
        alone = model.depth_head(model.depth_branch(feats, skips))
        torch.testing.assert_close(ref.depth, alone)
        for p in model.semantic_branch.parameters():  # another semantic branch changes nothing in depth
            p.add_(torch.randn_like(p))
        changed = model.forward_tasks(x)
        torch.testing.assert_close(changed.depth, ref.depth)
        assert not torch.allclose(changed.semantics, ref.semantics)
        model.sharing[1].phi_s.fill_(0.5)  # once the semantic branch shares, depth depends on it
        assert not torch.allclose(model.forward_tasks(x).depth, ref.depth)


@pytest.mark.parametrize("structure", JOINT)
def test_every_structure_gives_both_outputs_and_trains_every_parameter(structure):
    torch.manual_seed(0)
    model = create_model("synergy_depth", structure=structure, semantic_classes=4).train()
    out = model.forward_tasks(torch.rand(2, 3, 100, 150))
    assert out.depth.shape == (2, 1, 25, 38) and out.semantics.shape == (2, 4, 25, 38)
    (out.depth.square().mean() + out.semantics.square().mean()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_structures_differ_in_what_they_share():
    count = {s: create_model("synergy_depth", structure=s).num_parameters() for s in STRUCTURES}
    # two full branches > two branches after shared stages > one branch (+ the cascade's extra conv) > one branch
    # > one branch without a semantic head
    assert (count["lateral"] > count["merge_in"] > count["branch_out"] > count["cascaded"] > count["fine_tuned"]
            > count["depth_only"])
    branch_out = create_model("synergy_depth", structure="branch_out", shared_stages=3)
    assert len(branch_out.shared.stages) == 3 and len(branch_out.depth_branch.stages) == 1


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="structure must be one of lateral"):
        create_model("synergy_depth", structure="sideways")
    with pytest.raises(ValueError, match="shared_stages must be 1..3"):
        create_model("synergy_depth", shared_stages=4)


def test_depth_only_is_meter_with_the_synergy_layout():
    """The single-task baseline is METER-xxs: METER's weights, renamed, give METER's output exactly."""
    torch.manual_seed(0)
    meter = create_model("meter_xxs").eval()
    single = create_model("synergy_depth", structure="depth_only", semantic_classes=7).eval()
    assert single.config.semantic_classes == 0 and single.semantic_head is None
    assert not hasattr(single, "semantic_branch") and not hasattr(single, "sharing")
    rename = {"decoder.input": "depth_branch.stages.0", "decoder.up1": "depth_branch.stages.1",
              "decoder.up2": "depth_branch.stages.2", "decoder.up3": "depth_branch.stages.3", "decoder.output": "depth_head"}
    state = {}
    for name, value in meter.state_dict().items():
        for old, new in rename.items():
            if name.startswith(old + "."):
                name = new + name[len(old):]
        state[name] = value
    single.load_state_dict(state, strict=True)
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = single.forward_tasks(x)
        torch.testing.assert_close(out.depth, meter(x))
    assert out.semantics is None
    assert single.task_parameters("semantics") == []
    assert {id(p) for p in single.task_parameters("depth")} == {id(p) for m in (single.depth_branch, single.depth_head)
                                                               for p in m.parameters()}

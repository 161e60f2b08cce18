"""The protocol comes from the data: a KITTI spec is scored with KITTI's Garg crop and 80 m, not NYU's 10 m."""

from types import SimpleNamespace

import pytest

from seldepth.data.errors import DatasetError
from seldepth.data.spec import open_dataset, resolve
from seldepth.evaluation import evaluate
from seldepth.evaluation.protocol import PRESETS, get_protocol, protocol_for_data
from seldepth.models.import_meter import import_meter
from seldepth.models.loading import load_model


@pytest.fixture(scope="module")
def kitti_model(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp("kitti") / "meter_xxs_kitti.safetensors"
    import_meter(shared / "weights/meter/build_model_best_kitti_xxs", dataset="kitti", out=out)
    return load_model(out)


def test_kitti_data_is_scored_under_the_garg_crop_with_the_true_figures(shared, kitti_model, one_thread):
    spec = f"kitti:{shared / 'data/kitti_sample/annotated'}"
    name, reason = protocol_for_data(spec, kitti_model)
    assert name == "kitti"
    assert PRESETS[name].crop == "garg" and PRESETS[name].max_depth == 80.0
    assert reason == "data spec kind kitti: garg crop, 0.001 < gt < 80 m"
    m = evaluate(kitti_model, open_dataset(spec), get_protocol(name), progress=False)["metrics"]
    # Measured with the official METER-xxs KITTI weights on the 3 annotated sample frames.
    assert round(m["rmse"], 3) == 2.666
    assert round(m["delta1"], 3) == 0.975
    assert round(m["abs_rel"], 3) == 0.068
    # What NYU's protocol (10 m cap, NYU crop) made of the same predictions: flattering and wrong.
    wrong = evaluate(kitti_model, open_dataset(spec), get_protocol("nyu"), progress=False)["metrics"]
    assert round(wrong["rmse"], 3) == 0.379
    assert round(wrong["delta1"], 3) == 1.000


def test_nyu_and_synthetic_specs_name_their_presets_without_reading_data(nyu_sample):
    assert protocol_for_data("nyu:/nowhere/at/all") == ("nyu", "data spec kind nyu: eigen_nyu crop, 0.001 < gt < 10 m")
    assert protocol_for_data("synthetic:default:5")[0] == "synthetic"  # parsed only: nothing generated
    assert protocol_for_data("synthetic:/some/set") == ("synthetic", "data spec kind synthetic: no crop, 0.001 < gt < 10 m")
    assert protocol_for_data("kitti:eigen_test_files.txt?gt_root=data_depth_annotated&crop=kb")[0] == "kitti"
    assert protocol_for_data(resolve(f"nyu:{nyu_sample}"))[0] == "nyu"  # a ResolvedSpec too
    # The data spec decides over the model's data set.
    kitti = SimpleNamespace(metadata={"provenance": {"dataset": "kitti"}})
    assert protocol_for_data("nyu:/x", kitti)[0] == "nyu"


def test_folder_spec_takes_the_protocol_from_the_model(kitti_model):
    name, reason = protocol_for_data("folder:/my/pairs?scale=256", kitti_model)
    assert name == "kitti"
    assert "provenance.dataset" in reason and "kitti" in reason
    nyu = SimpleNamespace(metadata={"provenance": {"dataset": "nyu"}})
    assert protocol_for_data("folder:/my/pairs", nyu)[0] == "nyu"
    trained = SimpleNamespace(metadata={"provenance": {"trained_by": "seldepth train", "config": {"protocol": "synthetic"}}})
    name, reason = protocol_for_data("folder:/my/pairs", trained)
    assert name == "synthetic" and "provenance.config.protocol" in reason


@pytest.mark.parametrize("model", [None, SimpleNamespace(metadata={"provenance": {}}), SimpleNamespace()])
def test_folder_spec_without_a_recorded_data_set_asks_for_protocol(model):
    with pytest.raises(ValueError) as info:
        protocol_for_data("folder:/my/pairs?scale=1000", model)
    msg = str(info.value)
    assert msg.startswith("data spec folder:/my/pairs?scale=1000 does not say which protocol applies")
    assert msg.endswith("give protocol: nyu, kitti, synthetic or none")
    assert "--protocol" not in msg


def test_unknown_kind_is_a_data_spec_error():
    with pytest.raises(DatasetError, match="data spec 'mars:/x'"):
        protocol_for_data("mars:/x")

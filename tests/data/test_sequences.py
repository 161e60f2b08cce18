"""Frame snippets for self-supervised training: neighbours, true relative poses, and data without a video order."""

import numpy as np
import pytest
import torch
from torch.utils.data import Subset

from seldepth.data.errors import DatasetError
from seldepth.data.nyu_densedepth import NYUDenseDepth
from seldepth.data.sequences import FrameSnippets, frame_ids
from seldepth.data.spec import open_dataset
from helpers import SHARED


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    from seldepth.data.synthetic import generate

    out = tmp_path_factory.mktemp("seq")
    generate(out, num=4, size=(48, 64), seed=3, sequence_length=4, splits=(1.0, 0.0, 0.0), progress=False)
    return out


def test_snippets_pair_each_frame_with_its_neighbours_and_their_true_motion(sequences):
    frames = NYUDenseDepth(sequences, split="train")
    ids = frame_ids(frames)
    assert len(ids) == 16 and len({f.sequence for f in ids}) == 4
    snippets = FrameSnippets(frames, stride=1)
    assert len(snippets) == 4 * 2  # frames 1 and 2 of each 4-frame scene have both neighbours
    target, before, after = snippets.snippets[0]
    assert ids[target].sequence == ids[before].sequence == ids[after].sequence
    assert (ids[before].number, ids[after].number) == (ids[target].number - 1, ids[target].number + 1)
    sample = snippets[0]
    assert sample["sources"].shape == (2, 3, 48, 64) and bool(sample["source_pose_known"])
    torch.testing.assert_close(sample["sources"][0], frames[before]["image"])
    expected = np.linalg.inv(ids[before].pose) @ ids[target].pose  # target camera -> source camera
    torch.testing.assert_close(sample["source_pose"][0], torch.from_numpy(expected).float())
    # the target's origin seen from the previous frame: the camera walked forward (+z) a few centimetres
    assert 0.005 < sample["source_pose"][0][2, 3] < 0.2
    assert [int(snippets[i]["snippet"]) for i in (0, 5)] == [0, 5]  # its number in the set, for per-snippet tables


def test_snippets_resize_frames_and_intrinsics_together(sequences):
    frames = NYUDenseDepth(sequences, split="train")
    native, small = FrameSnippets(frames)[0], FrameSnippets(frames, size=(24, 32))[0]
    assert small["image"].shape == (3, 24, 32) and small["sources"].shape == (2, 3, 24, 32)
    assert small["K"][0, 0] == pytest.approx(native["K"][0, 0] / 2)


def test_subsets_keep_the_video_order(sequences):
    frames = NYUDenseDepth(sequences, split="train")
    subset = Subset(frames, list(range(8)))  # the first two scenes
    assert [f.number for f in frame_ids(subset)] == [f.number for f in frame_ids(frames)][:8]
    assert len(FrameSnippets(subset)) == 4


def test_kitti_drives_give_snippets_with_the_drives_poses():
    frames = open_dataset(f"kitti:{SHARED / 'data/kitti_sample/raw_sequence/kitti_tiny.txt'}", "test")
    snippets = FrameSnippets(frames)
    assert len(snippets) == 3 and [frame_ids(frames)[t].number for t, _, _ in snippets.snippets] == [2, 3, 4]
    pose = snippets[0]["source_pose"]
    assert bool(snippets[0]["source_pose_known"])
    assert 0.3 < pose[0][2, 3] < 0.8 and -0.8 < pose[1][2, 3] < -0.3  # the car drives forward about half a metre a frame


def test_data_without_a_video_order_is_a_clear_error():
    frames = open_dataset(f"nyu:{SHARED / 'data/nyu_test_sample'}", "test")
    with pytest.raises(DatasetError, match="no JSON sidecar with the frame's scene"):
        FrameSnippets(frames)


def test_no_snippet_is_an_error_naming_the_stride(sequences):
    with pytest.raises(DatasetError, match="both neighbours 2 frame"):  # 4-frame scenes: 2 away on both sides is 5 frames
        FrameSnippets(NYUDenseDepth(sequences, split="train"), stride=2)

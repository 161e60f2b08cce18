import numpy as np

from seldepth.report.run_plots import plot_training_curves, task_loss_series


def _log(**columns):
    return {k: np.asarray(v, dtype=float) for k, v in columns.items()}


def test_task_loss_is_total_minus_selectivity_term():
    # loss = task + l_assign with l_assign = -lambda * DS (negative): the task loss is larger than the total
    log = _log(step=[0, 1, 2, 3], **{"train/loss": [10.0, 7.0, np.nan, 2.0], "train/l_assign": [-1.0, -3.0, -2.0, np.nan]})
    x, task, assign = task_loss_series(log)
    assert x.tolist() == [0, 1]  # steps 2 and 3 lack one of the two terms
    assert task.tolist() == [11.0, 10.0]
    assert assign.tolist() == [-1.0, -3.0]


def test_unregularised_run_has_zero_term():
    log = _log(step=[0, 1], **{"train/loss": [5.0, 4.0]})
    _, task, assign = task_loss_series(log)
    assert task.tolist() == [5.0, 4.0] and assign.tolist() == [0.0, 0.0]


def test_curves_draw_both_kinds_of_run(tmp_path):
    logs = {"baseline": _log(step=[0, 1, 2], epoch=[0, 0, 0], **{"train/loss": [5.0, 4.0, 3.0]}),
            "regularised": _log(step=[0, 1, 2], epoch=[0, 0, 0],
                                **{"train/loss": [4.0, 2.0, 1.0], "train/l_assign": [-1.0, -1.5, -1.8]})}
    path = plot_training_curves(logs, tmp_path / "curves.png")
    assert path.stat().st_size > 10_000

"""The CSV logger of a resumed run keeps the rows logged before its checkpoint, through Lightning's public API."""

import csv

from seldepth.training.loggers import ResumableCSVLogger


def _write(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_a_resumed_logger_keeps_the_rows_before_the_checkpoint_step_and_appends(tmp_path):
    metrics = tmp_path / "csv" / "metrics.csv"
    # steps 0..3 trained before the checkpoint (global step 4), the validation row at step 3,
    # then step 4 and 5 of the interrupted epoch
    _write(metrics, ["epoch", "step", "train/loss", "val/rmse"],
           [[0, 0, 1.0, ""], [0, 1, 0.9, ""], [0, 2, 0.8, ""], [0, 3, 0.7, ""], [0, 3, "", 2.5], [1, 4, 9.0, ""], [1, 5, 9.0, ""]])
    logger = ResumableCSVLogger(tmp_path, name="csv", version="", keep_step=4)
    logger.log_metrics({"train/loss": 0.6, "epoch": 1}, step=4)
    logger.log_metrics({"train/l_assign": 0.1, "epoch": 1}, step=5)  # a new column: the file is rewritten
    logger.save()
    rows = list(csv.DictReader(metrics.open()))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 3, 4, 5]
    assert [r["train/loss"] for r in rows][-2:] == ["0.6", ""]  # the interrupted epoch's 9.0 rows are gone
    assert rows[4]["val/rmse"] == "2.5" and rows[-1]["train/l_assign"] == "0.1"
    assert not any(p.name.startswith(".metrics") for p in metrics.parent.iterdir())


def test_a_fresh_logger_starts_an_empty_file_and_a_killed_resume_finds_its_rows_again(tmp_path):
    metrics = tmp_path / "csv" / "metrics.csv"
    _write(metrics, ["epoch", "step", "train/loss"], [[0, 0, 1.0], [0, 1, 0.9], [1, 2, 5.0]])
    ResumableCSVLogger(tmp_path, name="csv", version="", keep_step=2)  # killed before it logged anything
    assert not metrics.exists()  # set aside, not lost
    logger = ResumableCSVLogger(tmp_path, name="csv", version="", keep_step=2)
    logger.log_metrics({"train/loss": 0.5, "epoch": 1}, step=2)
    logger.save()
    assert [r["train/loss"] for r in csv.DictReader(metrics.open())] == ["1.0", "0.9", "0.5"]
    fresh = ResumableCSVLogger(tmp_path / "other", name="csv", version="", keep_step=-1)
    fresh.log_metrics({"train/loss": 3.0}, step=0)
    fresh.save()
    assert [r["train/loss"] for r in csv.DictReader((tmp_path / "other" / "csv" / "metrics.csv").open())] == ["3.0"]


def test_the_logger_overrides_no_private_member_of_lightning():
    private = [name for name in vars(ResumableCSVLogger)
               if name.startswith("_") and not name.startswith("__") and name != "_abc_impl"]  # _abc_impl: abc's own
    assert private == []

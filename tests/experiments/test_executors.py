"""Executors: the scheduler behind `seldepth experiment` and `seldepth active`, locally and through submitit."""

import json

import pytest
import yaml

from seldepth.experiments.executors import (
    LocalExecutor,
    SubmititExecutor,
    Task,
    make_executor,
)
from seldepth.experiments.spec import EXECUTOR_KINDS, ExecutorSpec, read_experiment

# A tiny grid (the data and input size of the tiny trainings in tests/training): two runs of one epoch on 12
# synthetic scenes, one layer dissected with 8 bins: a quarter of a minute per run on 2 cores.
TINY = {"base": {"model": "meter_xxs", "data": {"path": "synthetic:default:12", "input_size": [64, 128], "batch_size": 4},
                 "trainer": {"epochs": 1, "progress_bar": False, "log_every_n_steps": 1}},
        "runs": {"a": {}, "b": {"optim": {"lr": 0.002}}},
        "dissect": {"bins": "sid:8", "layers": ["enc_7"]}, "jobs": 2}


def _write(tmp_path, content: dict, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(content))
    return path


@pytest.mark.parametrize("kind", ["local", "submitit-local"])
def test_tasks_wait_for_their_prerequisites_and_skip_after_a_failure(tmp_path, kind):
    """Stand-in tasks (stdlib functions, importable by any worker): b copies what a wrote, so it fails if it runs
    first; d waits for c, which fails, so d is never started."""
    executor = make_executor(ExecutorSpec(kind=kind), jobs=2, out=tmp_path)
    assert isinstance(executor, LocalExecutor if kind == "local" else SubmititExecutor)
    (tmp_path / "src.txt").write_text("x")
    tasks = [Task("b", "shutil:copyfile", (tmp_path / "a.txt", tmp_path / "b.txt"), after=("a",)),
             Task("a", "shutil:copyfile", (tmp_path / "src.txt", tmp_path / "a.txt")),
             Task("c", "shutil:copyfile", (tmp_path / "missing.txt", tmp_path / "c.txt"), log=tmp_path / "c.log"),
             Task("d", "shutil:copyfile", (tmp_path / "c.txt", tmp_path / "d.txt"), after=("c",))]
    started, ended = [], []
    outcomes = executor.run(tasks, on_start=lambda t, where: started.append((t.name, where)),
                            on_end=lambda t, o: ended.append(t.name))
    assert (tmp_path / "b.txt").read_text() == "x" and outcomes["b"].ok and outcomes["b"].value == tmp_path / "b.txt"
    assert ended.index("a") < ended.index("b") and sorted(ended) == ["a", "b", "c", "d"]
    assert "d" not in [name for name, _ in started]
    assert not outcomes["c"].ok and outcomes["c"].log == str(tmp_path / "c.log")
    assert "FileNotFoundError" in (tmp_path / "c.log").read_text()  # the worker's output went to the task's log
    assert not outcomes["d"].ok and outcomes["d"].blocked_by == "c" and not (tmp_path / "d.txt").exists()
    if kind == "local":
        assert outcomes["c"].error == "exit 1" and started[0][1] == f"started ({executor.threads} threads)"
    else:
        assert "FileNotFoundError" in outcomes["c"].error and "submitted as job" in started[0][1]
        assert list((tmp_path / "submitit").glob("*_submitted.pkl"))  # submitit's files in OUT/submitit
    with pytest.raises(ValueError, match="task names must be unique"):
        executor.run([Task("a", "os:getpid"), Task("a", "os:getpid")])


def test_an_unknown_executor_kind_names_the_key_and_the_kinds(tmp_path):
    path = _write(tmp_path, {"runs": {"a": {}}, "executor": {"kind": "pbs"}})
    with pytest.raises(ValueError, match=r"exp.yaml: executor.kind: unknown executor 'pbs'; "
                                         r"kinds: local, submitit-local, slurm"):
        read_experiment(path)
    assert EXECUTOR_KINDS == ("local", "submitit-local", "slurm")
    with pytest.raises(ValueError, match="executor takes kind, folder, partition"):
        read_experiment(_write(tmp_path, {"runs": {"a": {}}, "executor": {"kind": "slurm", "queue": "gpu"}}))
    with pytest.raises(ValueError, match="executor.time_minutes must be >= 1"):
        read_experiment(_write(tmp_path, {"runs": {"a": {}}, "executor": {"kind": "slurm", "time_minutes": 0}}))
    spec = read_experiment(_write(tmp_path, {"runs": {"a": {}}}))
    assert spec.executor == ExecutorSpec() and spec.executor.kind == "local"


def test_slurm_options_reach_submitit(tmp_path, monkeypatch):
    """No SLURM here: a stand-in ``srun`` on PATH lets submitit build its SLURM executor (nothing is submitted)."""
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ValueError, match="executor.kind: slurm needs a SLURM cluster"):
        make_executor(ExecutorSpec(kind="slurm"), jobs=2, out=tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    spec = read_experiment(_write(tmp_path, {"runs": {"a": {}}, "executor": {
        "kind": "slurm", "partition": "gpu", "time_minutes": 30, "cpus_per_task": 4, "gpus_per_node": 1, "mem_gb": 16,
        "max_running": 3, "folder": "{out}/logs",
        "parameters": {"slurm_account": "proj", "slurm_additional_parameters": {"reservation": "r1"}}}})).executor
    executor = make_executor(spec, jobs=2, out=tmp_path / "out")
    assert executor.slots == 3 and executor.threads == 4 and executor.submitit.folder == (tmp_path / "out" / "logs").resolve()
    assert {k: executor.submitit.parameters.get(k) for k in ("partition", "time", "cpus_per_task", "gpus_per_node", "mem",
                                                              "account", "additional_parameters")} == {
        "partition": "gpu", "time": 30, "cpus_per_task": 4, "gpus_per_node": 1, "mem": "16GB", "account": "proj",
        "additional_parameters": {"reservation": "r1"}}
    with pytest.raises(ValueError, match="executor.parameters: submitit refused them: Unknown argument 'partitionz'"):
        make_executor(ExecutorSpec(kind="slurm", parameters={"slurm_partitionz": "gpu"}), jobs=1, out=tmp_path)


def test_an_experiment_runs_as_submitit_jobs_and_a_second_call_skips_the_finished_runs(tmp_path, monkeypatch, capsys):
    from seldepth.experiments.runner import run_experiment
    from seldepth.training.run_folder import RunFolder

    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    path = _write(tmp_path, {**TINY, "executor": {"kind": "submitit-local", "time_minutes": 10}})
    out = tmp_path / "out"
    summary = run_experiment(path, out)
    assert [r["run"] for r in summary["runs"]] == ["a", "b"] and all(r["rmse"] > 0 for r in summary["runs"])
    for name in ("a", "b"):
        run = RunFolder(out / name)
        assert run.is_done and run.model_file_path.is_file() and (run.dissection_dir / "selectivity.json").is_file()
        assert "Trainer.fit" in (out / name / "run.log").read_text()  # the worker's output, as with the local executor
        task = json.loads((out / name / "task.json").read_text())
        assert list(task) == ["dissect", "ablation", "ablation_by_bin", "caps", "median_scaling", "ablate", "ablate_by_bin"]
        assert task["dissect"]["bins"] == "sid:8" and task["ablate_by_bin"] is False
    assert (out / "summary.md").is_file() and (out / "summary.csv").is_file()
    assert json.loads((out / "experiment.json").read_text())["runs"][1]["run"] == "b"
    printed = capsys.readouterr().out
    assert "[a] submitted as job" in printed and "[b] done in" in printed
    submitted = sorted((out / "submitit").glob("*_submitted.pkl"))
    assert len(submitted) == 2
    again = run_experiment(path, out)  # nothing left to do: no job submitted
    printed = capsys.readouterr().out
    assert "[a] already done, skipped" in printed and "[b] already done, skipped" in printed
    assert sorted((out / "submitit").glob("*_submitted.pkl")) == submitted
    assert [r["rmse"] for r in again["runs"]] == [r["rmse"] for r in summary["runs"]]


def test_the_local_executor_waits_for_a_runs_model_and_resumes_an_unfinished_run(tmp_path, monkeypatch, capsys):
    from seldepth.experiments.runner import run_experiment
    from seldepth.training.run_folder import RunFolder

    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    content = {**TINY, "runs": {"fine": {"init_from": "{out}/a/model.safetensors"}, "a": {}}}
    out = tmp_path / "out"
    run_experiment(_write(tmp_path, content), out)
    printed = capsys.readouterr().out
    assert printed.index("[a] done") < printed.index("[fine] started")  # listed first, started after a
    assert all(RunFolder(out / n).is_done for n in ("a", "fine"))
    RunFolder(out / "fine").done_path.unlink()  # as if stopped after training: the run is finished, not retrained
    trained = RunFolder(out / "fine").results_path.stat().st_mtime
    run_experiment(_write(tmp_path, content), out)
    printed = capsys.readouterr().out
    assert "[a] already done, skipped" in printed and "[fine] done" in printed
    assert RunFolder(out / "fine").is_done and RunFolder(out / "fine").results_path.stat().st_mtime == trained


def test_active_learning_chains_run_as_submitit_jobs(tmp_path, monkeypatch):
    from seldepth.experiments.active import read_active, run_active

    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    content = {"base": TINY["base"], "initial": 2, "budget": 2, "rounds": 1, "steps": 1, "methods": ["random"],
               "seeds": [0], "jobs": 2, "executor": {"kind": "submitit-local"}}
    path = _write(tmp_path, content, "active.yaml")
    spec = read_active(path)
    assert spec.file.select.passes == 8 and spec.data_path == "synthetic:default:12" and spec.batch_size == 4
    summary = run_active(path, tmp_path / "out")
    assert [(c["seed"], c["method"], [r["labelled"] for r in c["rounds"]]) for c in summary["chains"]] == [
        (0, "initial", [2]), (0, "random", [4])]
    assert summary["spec"] == {"initial": 2, "budget": 2, "rounds": 1, "steps": 1, "methods": ["random"], "seeds": [0],
                               "select": {"passes": 8, "dropout": 0.2}, "jobs": 2, "description": "",
                               "data_path": "synthetic:default:12", "train_split": "train", "batch_size": 4}
    assert (tmp_path / "out" / "summary.md").is_file() and (tmp_path / "out" / "seed0" / "random" / "round1").is_dir()


def test_a_task_json_written_before_the_typed_files_still_reads():
    """Runs of experiments started before task.json held every default resume: the worker fills them in."""
    from seldepth.experiments.spec import RunTask, parse_typed
    from seldepth.selectivity import DEFAULT_BINS, DEFAULT_FRACTIONS

    old = {"dissect": {"split": "test"}, "ablation": {"runs": ["a"], "layer": "enc_7", "fractions": [0, 0.5]},
           "caps": [4], "median_scaling": False, "ablate": True}
    task = parse_typed(RunTask, old)
    assert task.dissect.bins == DEFAULT_BINS and task.dissect.split == "test" and task.dissect.batch_size == 8
    assert task.ablation.fractions == (0.0, 0.5) and task.ablation.seeds == 3 and task.ablate and task.caps == (4.0,)
    assert parse_typed(RunTask, {"dissect": {}, "ablation": {}, "ablate": False}).ablation.fractions == DEFAULT_FRACTIONS
    with pytest.raises(ValueError, match="dissect takes bins, split, layers and batch_size, got binz"):
        parse_typed(RunTask, {"dissect": {"binz": 3}})

"""Pretrained models by name: downloaded once from a (loopback) server, checked, converted, cached, then read
offline; a corrupted file, a server that is down, an unknown name and an unverified row are refused clearly."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import shutil
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import SHARED
from seldepth.cli import main
from seldepth.data.images import read_rgb
from seldepth.inference import predict_depth
from seldepth.models import create_model, pretrained
from seldepth.models.import_meter import import_meter
from seldepth.models.loading import load_model, resolve_model_file
from seldepth.models.model_file import read_metadata
from seldepth.models.pretrained import (ChecksumError, DownloadError, UnverifiedError, get_pretrained, list_pretrained,
                                        pretrained_file, pretrained_status)
from seldepth.report.attention import check_attention_args
from seldepth.training.transfer import init_from_file, source_preprocessing

WEIGHTS = SHARED / "weights" / "meter"
NYU = "build_model_best_nyu_xxs"
NYU_SHA = "327cddf3bfc85f4a13b8d18d2f13d8e40cdeb022ea397995c409ef1569bcbb53"
IMAGE = SHARED / "data" / "nyu_test_sample" / "nyu2_test" / "00000_colors.png"


class _Handler(SimpleHTTPRequestHandler):
    """Serves a folder; records each GET (and waits ``server.delay`` seconds before answering)."""

    def do_GET(self):
        self.server.requests.append(self.path)
        time.sleep(self.server.delay)
        super().do_GET()

    def log_message(self, format, *args):  # quiet
        pass


class Server:
    """A loopback HTTP server over ``folder``, on a free port."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(folder)))
        self.httpd.requests = []
        self.httpd.delay = 0.0
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.running = True

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()
            self.running = False


@pytest.fixture
def served(shared, tmp_path):
    """A server of a copy of the official xxs checkpoints."""
    folder = tmp_path / "served"
    folder.mkdir()
    for name in (NYU, "build_model_best_kitti_xxs"):
        shutil.copy(shared / "weights" / "meter" / name, folder / name)
    server = Server(folder)
    yield server
    server.stop()


@pytest.fixture
def cache(tmp_path, monkeypatch, served) -> Path:
    """An empty cache, and the server as the mirror."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SELDEPTH_CACHE", str(folder))
    monkeypatch.setenv("SELDEPTH_WEIGHTS_MIRROR", served.url)
    return folder


def _files(folder: Path) -> list[str]:
    """Every file under ``folder`` (hidden ones included), relative; [] when it does not exist."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


@torch.no_grad()
def _depth(model) -> torch.Tensor:
    return predict_depth(model.eval(), read_rgb(IMAGE)[None])


def test_first_use_downloads_and_converts_then_the_cache_serves_offline(served, cache):
    model = load_model("meter_xxs_nyu")
    assert served.requests == [f"/{NYU}"]
    reference = import_meter(WEIGHTS / NYU, variant="xxs", dataset="nyu")
    depth = _depth(model)
    assert depth.shape == (1, 1, 480, 640) and torch.isfinite(depth).all()
    assert torch.equal(depth, _depth(reference))
    assert model.preprocessing == reference.preprocessing and model.metadata["intrinsics"] == reference.metadata["intrinsics"]
    cached = cache / "models" / "meter_xxs_nyu.safetensors"
    assert read_metadata(cached)["provenance"]["sha256"] == NYU_SHA
    assert hashlib.sha256((cache / "downloads" / NYU).read_bytes()).hexdigest() == NYU_SHA

    served.stop()
    assert pretrained_file("meter_xxs_nyu") == cached
    again = load_model("meter_xxs_nyu")
    assert torch.equal(_depth(again), depth)
    assert served.requests == [f"/{NYU}"]
    assert resolve_model_file("meter_xxs_nyu") == cached


def test_a_cached_file_of_another_checksum_is_fetched_again(served, cache):
    path = pretrained_file("meter_xxs_nyu", progress=False)
    import_meter(WEIGHTS / "build_model_best_kitti_xxs", variant="xxs", dataset="kitti", out=path)  # another source
    assert pretrained.cached_file("meter_xxs_nyu") is None
    assert pretrained_file("meter_xxs_nyu", progress=False) == path
    assert read_metadata(path)["provenance"]["sha256"] == NYU_SHA
    assert served.requests == [f"/{NYU}"]  # the download was still there and matched: no second request


def test_a_corrupted_download_is_refused_and_nothing_is_cached(served, cache):
    data = bytearray((served.folder / NYU).read_bytes())
    data[1000] ^= 0xFF
    (served.folder / NYU).write_bytes(bytes(data))
    bad_sha = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ChecksumError) as caught:
        load_model("meter_xxs_nyu")
    message = str(caught.value)
    assert NYU_SHA in message and bad_sha in message and f"{served.url}{NYU}" in message
    assert isinstance(caught.value, OSError)
    assert _files(cache / "models") == [] and _files(cache / "downloads") == []


def test_unknown_names_list_the_known_ones(cache, tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        load_model("meter_xxl_nyu")
    assert all(name in str(caught.value) for name in list_pretrained()) and "meter_xxl_nyu" in str(caught.value)
    with pytest.raises(ValueError, match="meter_xxl_nyu.*meter_xxs_nyu, meter_xxs_kitti, meter_xs_nyu"):
        get_pretrained("meter_xxl_nyu")
    missing = tmp_path / "none.safetensors"  # a path, not a name: only the path is named
    with pytest.raises(FileNotFoundError) as caught:
        load_model(missing)
    assert str(missing) in str(caught.value) and "meter_xxs_nyu" not in str(caught.value)


def test_a_server_that_is_down_names_the_url_the_file_and_where_to_put_it(served, cache):
    served.stop()
    with pytest.raises(DownloadError) as caught:
        load_model("meter_xxs_nyu")
    message = str(caught.value)
    place = cache / "downloads" / NYU
    assert f"{served.url}{NYU}" in message and str(place) in message and NYU_SHA in message
    assert "SELDEPTH_WEIGHTS_MIRROR" in message and "Connection" in message
    assert _files(cache / "downloads") == [] and _files(cache / "models") == []
    # the file put there by hand is checked and used, without the network
    shutil.copy(WEIGHTS / NYU, place)
    assert torch.equal(_depth(load_model("meter_xxs_nyu")), _depth(import_meter(WEIGHTS / NYU, "xxs", "nyu")))


def test_a_missing_file_on_the_server_is_a_download_error(served, cache):
    (served.folder / NYU).unlink()
    with pytest.raises(DownloadError, match=r"404.*put the file build_model_best_nyu_xxs"):
        pretrained_file("meter_xxs_nyu", progress=False)


def test_an_unverified_row_needs_allow_unverified_and_records_the_sha256(served, cache, monkeypatch):
    row = dataclasses.replace(get_pretrained("meter_xxs_nyu"), name="meter_xxs_nyu_unchecked", sha256=None, size=None)
    monkeypatch.setitem(pretrained.PRETRAINED, row.name, row)
    with pytest.raises(UnverifiedError, match="--allow-unverified"):
        load_model(row.name)
    assert served.requests == [] and _files(cache / "models") == []
    with pytest.warns(UserWarning, match=NYU_SHA):
        model = load_model(row.name, allow_unverified=True)
    assert served.requests == [f"/{NYU}"]
    assert model.metadata["provenance"]["sha256"] == NYU_SHA
    status = {r["name"]: r for r in pretrained_status()}[row.name]
    assert status["verified"] is False and status["sha256"] == NYU_SHA
    assert status["cached"] == cache / "models" / f"{row.name}.safetensors"
    served.stop()
    assert load_model(row.name).metadata["provenance"]["sha256"] == NYU_SHA  # cached: no flag, no network


def test_cli_allow_unverified_reaches_every_command(served, cache, monkeypatch, tmp_path, capsys):
    row = dataclasses.replace(get_pretrained("meter_xxs_nyu"), name="meter_xxs_nyu_unchecked", sha256=None, size=None)
    monkeypatch.setitem(pretrained.PRETRAINED, row.name, row)
    argv = ["predict", str(IMAGE), "--model", row.name, "--out", str(tmp_path / "d")]
    assert main(argv) == 2
    assert "--allow-unverified" in capsys.readouterr().err and served.requests == []
    with pytest.warns(UserWarning, match=NYU_SHA):
        assert main([*argv, "--allow-unverified"]) == 0
    assert served.requests == [f"/{NYU}"]
    assert read_metadata(cache / "models" / f"{row.name}.safetensors")["provenance"]["sha256"] == NYU_SHA


def test_two_processes_do_not_download_the_same_model_twice(served, cache):
    served.httpd.delay = 0.5  # the first download is still under way when the second caller starts
    results, errors = [], []

    def fetch():
        try:
            results.append(pretrained_file("meter_xxs_nyu", progress=False))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert served.requests == [f"/{NYU}"]


def test_init_from_and_attention_take_a_pretrained_name(served, cache):
    reference = import_meter(WEIGHTS / NYU, "xxs", "nyu")
    assert source_preprocessing("meter_xxs_nyu", (64, 96)).mean == reference.preprocessing.mean
    model = create_model("meter_xxs")
    init_from_file(model, "meter_xxs_nyu")
    assert torch.equal(model.decoder.output.weight, reference.decoder.output.weight)
    check_attention_args("meter_xxs_nyu", IMAGE)
    with pytest.raises(FileNotFoundError, match="init_from: model file not found: meter_xxl"):
        init_from_file(model, "meter_xxl")
    with pytest.raises(FileNotFoundError, match="--model: model file not found: meter_xxl"):
        check_attention_args("meter_xxl", IMAGE)


def test_cli_predict_by_name_online_then_offline(served, cache, tmp_path, capsys):
    assert main(["predict", str(IMAGE), "--model", "meter_xxs_nyu", "--out", str(tmp_path / "d")]) == 0
    served.stop()
    assert main(["predict", str(IMAGE), "--model", "meter_xxs_nyu", "--out", str(tmp_path / "d2")]) == 0
    assert served.requests == [f"/{NYU}"]
    first, second = sorted((tmp_path / "d").rglob("*.npy")), sorted((tmp_path / "d2").rglob("*.npy"))
    assert len(first) == 1 and len(second) == 1
    expected = _depth(import_meter(WEIGHTS / NYU, "xxs", "nyu"))[0, 0].numpy()
    assert np.array_equal(np.load(first[0]), np.load(second[0]))
    assert np.allclose(np.load(first[0]), expected, atol=1e-5)
    capsys.readouterr()
    assert main(["eval", "--model", "meter_xxl_nyu", "--data", "nyu:x", "--device", "cpu"]) == 2
    assert "meter_xxs_nyu, meter_xxs_kitti" in capsys.readouterr().err
    assert main(["bench", "--model", "meter_xxl_nyu"]) == 2
    assert "--model: model file not found: meter_xxl_nyu" in capsys.readouterr().err


def test_cli_models_pretrained_lists_the_names_and_what_is_cached(served, cache, capsys):
    def table() -> dict[str, str]:
        assert main(["models", "--pretrained"]) == 0
        lines = capsys.readouterr().out.splitlines()
        return {line.split()[0]: line for line in lines if line.split() and line.split()[0] in list_pretrained()}

    before = table()
    assert sorted(before) == sorted(list_pretrained())
    assert all(line.endswith("not cached") for line in before.values())
    assert " verified " in before["meter_xxs_nyu"] and "3.0 MB" in before["meter_xxs_nyu"]
    assert " unverified " in before["meter_s_nyu"] and "unknown" in before["meter_s_nyu"]
    assert main(["models", "--download", "meter_xxs_kitti"]) == 0
    out = capsys.readouterr().out
    assert "e55544ae36f9ad74237017fd5f8e761db4b258dbed44623c71ce305d44488bea" in out
    after = table()
    assert after["meter_xxs_kitti"].endswith(str(cache / "models" / "meter_xxs_kitti.safetensors"))
    assert after["meter_xxs_nyu"].endswith("not cached")
    assert main(["models", "--download", "meter_s_nyu"]) == 2  # unverified, without --allow-unverified
    assert "--allow-unverified" in capsys.readouterr().err


def test_cli_predict_without_model_or_out_uses_meter_xxs_nyu_and_depth_folder(served, cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(IMAGE)]) == 0
    assert served.requests == [f"/{NYU}"]
    stem = IMAGE.stem
    assert sorted(p.name for p in (tmp_path / "depth").iterdir()) == sorted(
        f"{stem}{suffix}" for suffix in ("_color.png", "_depth.npy", "_depth.png"))
    expected = _depth(import_meter(WEIGHTS / NYU, "xxs", "nyu"))[0, 0].numpy()
    assert np.allclose(np.load(tmp_path / "depth" / f"{stem}_depth.npy"), expected, atol=1e-5)

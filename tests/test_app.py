"""The demo page (pipeline/app.py): its checkpoint list, its numbers against the CLI's, and a
real round trip through gradio_client to a page launched on 127.0.0.1. The Gradio tests skip,
saying why, when the optional extra (requirements-app.txt) is not installed."""
from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import numpy as np
import pytest

from pipeline import io
from pipeline.app import HOST, analyse, checkpoints, cli_args
from pipeline.data.synthetic import generate_dish
from pipeline.models import build_model
from pipeline.models.inference import save_model
from pipeline.predict import main as predict_main
from tests.fixtures.browser import chromium_path, measure_on_page

DA_CFG = {"pretrained": None, "max_depth": 2, "init_depth": 0.4, "size": [126, 168],
          "tiny": {"hidden_size": 48, "num_layers": 4, "num_heads": 3,
                   "neck_hidden_sizes": [16, 32, 48, 64], "fusion_hidden_size": 32,
                   "head_hidden_size": 16}}
NO_GRADIO = importlib.util.find_spec("gradio") is None or importlib.util.find_spec("gradio_client") is None
needs_gradio = pytest.mark.skipif(NO_GRADIO, reason="gradio/gradio_client not installed "
                                  "(optional extra: pip install -r requirements-app.txt)")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A models/ tree: a tiny fine-tuned-format checkpoint, a transformers-format stage 0, junk."""
    root = tmp_path_factory.mktemp("repo")
    save_model(build_model("depth_anything_v2", DA_CFG, seed=0), root / "models/depth_anything_v2/stage2",
               "depth_anything_v2", DA_CFG)
    (root / "models/depth_anything_v2/pretrain").mkdir(parents=True)
    (root / "models/depth_anything_v2/pretrain/model.safetensors").write_bytes(b"x")
    (root / "models/depth_anything_v2/mass_head").mkdir()   # no weights: not a checkpoint
    return root


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> tuple[Path, object]:
    d = tmp_path_factory.mktemp("photo")
    dish = generate_dish(0, 13, width=320, height=240, noise=False)
    io.write_rgb(d / "dish.png", dish.rgb)
    io.write_mask(d / "mask.png", dish.mask)
    return d, dish


def test_checkpoints_lists_weight_folders_fine_tuned_first(repo):
    assert checkpoints(repo) == ["models/depth_anything_v2/stage2", "models/depth_anything_v2/pretrain"]
    assert checkpoints(repo / "nowhere") == []


def test_cli_args_are_the_predict_command_line(repo):
    argv = cli_args("a.png", str(repo / "models/x/stage2"), fx=600, fy=None, cx="", cy=None,
                    mask="m.png", out=Path("o.png"))
    assert argv == ["a.png", "--model", str(repo / "models/x/stage2"), "--fx", "600.0",
                    "--mask", "m.png", "--out", "o.png"]
    with pytest.raises(ValueError, match="no photo"):
        cli_args("", "x")
    with pytest.raises(ValueError, match="no checkpoint"):
        cli_args("a.png", "")


def test_page_numbers_are_the_cli_numbers(repo, photo, tmp_path, capsys):
    d, dish = photo
    ck = str(repo / "models/depth_anything_v2/stage2")
    K = np.asarray(dish.K)
    shown, depth, over, rows, text, fig = analyse(str(d / "dish.png"), ck, K[0, 0], K[1, 1], K[0, 2], K[1, 2],
                                                  str(d / "mask.png"))
    rc = predict_main([str(d / "dish.png"), "--model", ck, "--mask", str(d / "mask.png"),
                       "--fx", str(K[0, 0]), "--fy", str(K[1, 1]), "--cx", str(K[0, 2]), "--cy", str(K[1, 2]),
                       "--out", str(tmp_path / "cli.png")])
    out = capsys.readouterr().out
    assert rc == 0, out
    cli_regions = [float(line.split()[2]) for line in out.splitlines() if line.startswith("region ")]
    cli_total = float(next(line for line in out.splitlines() if line.startswith("total:")).split()[1])
    assert [r[0] for r in rows] == [str(i) for i in range(1, len(cli_regions) + 1)] + ["total"]
    assert [r[1] for r in rows[:-1]] == pytest.approx(cli_regions, abs=0.051)
    assert rows[-1][1] == pytest.approx(cli_total, abs=0.051) and rows[-1][2] == int(dish.mask.sum())
    assert "intrinsics (given)" in out and "(given)" in text and "mask: given" in out
    assert "g/mL:" in text and "mass" in text            # the density and where it came from
    assert "WARNING" in text and "tiny" in text          # the tiny checkpoint's warning reaches the page
    assert shown.shape == (240, 320, 3) and over.shape == (240, 320, 3) and depth.ndim == 3
    food = dish.mask
    assert np.abs(over[food].astype(int) - shown[food]).mean() > 20          # the food is tinted
    assert (over[~food] != shown[~food]).any(axis=1).mean() < 0.05           # the rest is the photo (labels aside)
    assert io.read_rgb(fig).shape[2] == 3


def test_page_errors_are_the_cli_errors(repo, photo):
    d, _ = photo
    with pytest.raises(ValueError, match="model.json is missing"):
        analyse(str(d / "dish.png"), str(repo / "models/depth_anything_v2/pretrain"))
    with pytest.raises(ValueError, match="need --fx"):
        analyse(str(d / "dish.png"), str(repo / "models/depth_anything_v2/stage2"), fy=500.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _outside_ip() -> str | None:
    """This machine's address on its default route (no packet is sent), None if only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


@needs_gradio
def test_main_binds_loopback_only(monkeypatch):
    import gradio as gr

    seen = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: seen.update(kw))
    from pipeline.app import main
    assert main(["--port", "7999"]) == 0
    assert seen["server_name"] == "127.0.0.1" and seen["server_port"] == 7999 and not seen["share"]


@needs_gradio
def test_gradio_client_round_trip(repo, photo):
    """The page launched on 127.0.0.1, driven through gradio_client as a browser would."""
    from gradio_client import Client, handle_file

    from pipeline.app import build_page

    d, _ = photo
    page = build_page(repo)
    port = _free_port()
    page.launch(server_name=HOST, server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://{HOST}:{port}/", verbose=False)
        shown, depth, over, table, text, fig = client.predict(
            handle_file(str(d / "dish.png")), str(repo / "models/depth_anything_v2/stage2"),
            None, None, None, None, None, None, api_name="/analyse")
        rows = table["data"] if isinstance(table, dict) else table
        assert rows[-1][0] == "total" and float(rows[-1][1]) >= 0
        assert "Total:" in text and "g/mL:" in text and "(default)" in text   # no K given: the default camera
        for img in (shown, depth, over):
            assert io.read_rgb(img).ndim == 3
        assert Path(fig).is_file()
        with pytest.raises(Exception, match="model.json is missing"):   # the CLI's one-line error, shown
            client.predict(handle_file(str(d / "dish.png")), str(repo / "models/depth_anything_v2/pretrain"),
                           None, None, None, None, None, None, api_name="/analyse")
        ip = _outside_ip()
        if ip is not None:   # bound to the loopback interface only: another address of this machine refuses
            with pytest.raises(OSError):
                socket.create_connection((ip, port), timeout=2).close()
    finally:
        page.close()


@needs_gradio
@pytest.mark.slow
@pytest.mark.skipif(chromium_path() is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_headless_chromium_result_page(repo, photo, tmp_path):
    """A real browser: upload the photo into the page's file input, click Measure, read the result."""
    from pipeline.app import build_page

    d, _ = photo
    page = build_page(repo)
    port = _free_port()
    page.launch(server_name=HOST, server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        text = measure_on_page(f"http://{HOST}:{port}/", d / "dish.png", shot=tmp_path / "page.png",
                               width=1200, height=900)
        # a bad checkpoint typed into the page: the CLI's one-line error reaches the browser
        with pytest.raises(RuntimeError, match="model.json is missing"):
            measure_on_page(f"http://{HOST}:{port}/", d / "dish.png",
                            checkpoint=str(repo / "models/depth_anything_v2/pretrain"))
    finally:
        page.close()
    assert "Total:" in text and "g/mL:" in text and "Intrinsics (default)" in text
    shot = io.read_rgb(tmp_path / "page.png")
    assert shot.shape[1] == 1200 and shot.shape[0] >= 900

"""pipeline.io: atomic writes, PNG round trips, clear errors on bad files."""
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline import io


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    io.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert io.read_json(target) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_dir_swaps_whole_folder(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    with io.atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError):
        with io.atomic_dir(out) as tmp:
            (tmp / "b.txt").write_text("2")
            raise RuntimeError("killed")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_usual_mode_under_the_umask(tmp_path: Path, monkeypatch, umask: int) -> None:
    """Files 0666 & ~umask (0644 under 022), folders 0777 & ~umask, not mkstemp's 0600 / mkdtemp's
    0700: weights, depth maps and folders written atomically are readable like any other output."""
    import stat

    from pipeline.models import build_model
    from pipeline.models.inference import save_model
    monkeypatch.setattr(io, "_UMASK", umask)
    io.write_json(tmp_path / "a.json", {"a": 1})
    io.write_depth_png(tmp_path / "d.png", np.full((4, 5), 0.4))
    cfg = {"pretrained": None, "size": [14, 14]}
    save_model(build_model("depth_anything_v2", cfg, seed=0), tmp_path / "w", "depth_anything_v2", cfg)
    with io.atomic_dir(tmp_path / "raw") as tmp:
        (tmp / "x.txt").write_text("1")
    for f in ("a.json", "d.png", "w/model.safetensors", "w/model.json"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o666 & ~umask, f
    assert stat.S_IMODE((tmp_path / "raw").stat().st_mode) == 0o777 & ~umask


def test_depth_png_round_trip_and_invalid(tmp_path: Path) -> None:
    d = np.array([[0.3612, 0.0], [np.nan, 7.0]], dtype=np.float32)  # 7 m overflows 16 bit
    io.write_depth_png(tmp_path / "d.png", d)
    back = io.read_depth_png(tmp_path / "d.png")
    assert back.dtype == np.float32
    assert back[0, 0] == pytest.approx(0.3612, abs=1e-6)
    assert back[0, 1] == 0 and back[1, 0] == 0 and back[1, 1] == 0


@pytest.mark.parametrize("case", ["empty", "truncated", "8bit", "shape", "missing"])
def test_depth_bad_files_name_the_file(tmp_path: Path, case: str) -> None:
    p = tmp_path / f"{case}.png"
    good = (np.ones((4, 6)) * 3600).astype(np.uint16)
    if case == "empty":
        p.write_bytes(b"")
    elif case == "truncated":
        cv2.imwrite(str(p), good)
        p.write_bytes(p.read_bytes()[:20])
    elif case == "8bit":
        cv2.imwrite(str(p), good.astype(np.uint8))
    elif case == "shape":
        cv2.imwrite(str(p), good)
    with pytest.raises(ValueError, match=p.name):
        io.read_depth_png(p, shape=(480, 640))


def test_mask_and_rgb_round_trip(tmp_path: Path) -> None:
    m = np.zeros((5, 7), bool)
    m[1:3, 2:5] = True
    io.write_mask(tmp_path / "m.png", m)
    assert (io.read_mask(tmp_path / "m.png") == m).all()
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    io.write_rgb(tmp_path / "c.png", rgb)
    assert (io.read_rgb(tmp_path / "c.png") == rgb).all()


def test_resolve_refuses_paths_outside_roots(tmp_path: Path) -> None:
    assert io.resolve("params.yaml") == io.REPO_ROOT / "params.yaml"
    with pytest.raises(ValueError, match="outside"):
        io.resolve("../../etc/passwd")
    inside = tmp_path / "x.png"
    assert io.resolve(io.rel_to_repo(inside), [tmp_path]) == inside.resolve()


def test_read_index_rejects_duplicates_and_missing_columns(tmp_path: Path) -> None:
    p = tmp_path / "index.csv"
    pd.DataFrame({"dish_id": ["a", "a"], "x": [1, 2]}).to_csv(p, index=False)
    with pytest.raises(ValueError, match="duplicate dish ids"):
        io.read_index(p, required=["dish_id"])
    with pytest.raises(ValueError, match="missing columns"):
        io.read_index(p)

"""File I/O shared by every stage: atomic writes, depth/mask/RGB PNGs, params, index.

Every writer goes through `atomic_write` (temp file in the same folder, then
`os.replace`) so a killed stage never leaves a half-written output behind.
Every reader raises `ValueError` naming the file and the problem.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from pipeline.config import REPO_ROOT

DEPTH_SCALE_M = 1e-4  # one 16-bit PNG unit, as in Nutrition5k's depth_raw.png
# mkstemp/mkdtemp create 0600/0700; outputs get what open()/mkdir would give (0666/0777 & ~umask).
# Read once here: os.umask can only be read by setting it, which would race with other threads.
_UMASK = os.umask(0)
os.umask(_UMASK)
INDEX_COLUMNS = ["dish_id", "split", "rgb_path", "depth_path", "mask_path",
                 "fx", "fy", "cx", "cy", "width", "height"]


@contextlib.contextmanager
def atomic_write(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=suffix if suffix is not None else path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp makes 0600, and some writers (safetensors) replace the file with their own 0600 one:
        # set the usual mode on what was written, just before it takes the name
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temp folder beside `path`; swap it into place only if the block succeeds,
    so a killed stage leaves either the old folder or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700; a weights folder gets the usual mode
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_write(path) as tmp:
        df.to_csv(tmp, index=False)


def _write_png(path: str | Path, img: np.ndarray) -> None:
    with atomic_write(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise ValueError(f"{path}: could not encode PNG")


def _read_image(path: str | Path, flags: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: file is empty (0 bytes)")
    img = cv2.imread(str(path), flags)
    if img is None:
        raise ValueError(f"{path}: not a readable image (corrupt or truncated)")
    return img


def read_depth_png(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a 16-bit depth PNG (1e-4 m units, 0 = invalid) as float32 metres."""
    raw = _read_image(path, cv2.IMREAD_UNCHANGED)
    if raw.ndim != 2:
        raise ValueError(f"{path}: depth must be single-channel, got shape {raw.shape}")
    if raw.dtype != np.uint16:
        raise ValueError(f"{path}: depth must be 16-bit PNG, got {raw.dtype}")
    if shape is not None and raw.shape != tuple(shape):
        raise ValueError(f"{path}: depth is {raw.shape[1]}x{raw.shape[0]}, expected "
                         f"{shape[1]}x{shape[0]}")
    return raw.astype(np.float32) * np.float32(DEPTH_SCALE_M)


def read_dish_depth(row: Any, roots: list[Path] | None = None,
                    shape: tuple[int, int] | None = None) -> np.ndarray:
    """A dish's depth (metres) from its index row. Readings outside the row's valid range
    (`min_depth_m`/`max_depth_m`, set by sources such as Nutrition5k whose files hold 65535
    and beyond-the-table values) become 0, the convention for 'no measurement'."""
    d = read_depth_png(resolve(row["depth_path"], roots), shape=shape)
    for col, bad in (("min_depth_m", np.less), ("max_depth_m", np.greater)):
        limit = row.get(col) if hasattr(row, "get") else None
        if limit is not None and np.isfinite(float(limit)):
            d[bad(d, float(limit))] = 0.0
    return d


def write_depth_png(path: str | Path, depth_m: np.ndarray) -> None:
    """Write metres as 16-bit PNG in 1e-4 m; invalid (0, NaN, inf, out of range) -> 0."""
    d = np.asarray(depth_m, dtype=np.float64)
    units = np.where(np.isfinite(d) & (d > 0), np.round(d / DEPTH_SCALE_M), 0)
    units[units > 65535] = 0
    _write_png(path, units.astype(np.uint16))


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as HxWx3 uint8 RGB."""
    bgr = _read_image(path, cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_photo(path: str | Path) -> np.ndarray:
    """A photo as stored: HxW grayscale, HxWx3 RGB (alpha dropped), 8 or 16 bit, turned upright
    by its EXIF orientation; callers normalise it (e.g. `pipeline.predict.as_rgb8`)."""
    img = _read_image(path, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
    if img.ndim == 3 and img.shape[2] >= 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return img


def write_rgb(path: str | Path, rgb: np.ndarray) -> None:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{path}: RGB must be HxWx3 uint8, got {rgb.shape} {rgb.dtype}")
    _write_png(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read an 8-bit mask PNG (food = 255) as bool."""
    m = _read_image(path, cv2.IMREAD_UNCHANGED)
    if m.ndim == 3:
        raise ValueError(f"{path}: mask must be single-channel, got shape {m.shape}")
    if shape is not None and m.shape != tuple(shape):
        raise ValueError(f"{path}: mask is {m.shape[1]}x{m.shape[0]}, expected "
                         f"{shape[1]}x{shape[0]}")
    return m > 127


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    _write_png(path, np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8))


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 pinhole K (float64)."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def K_from_row(row: Any) -> np.ndarray:
    """K from an index row (anything with fx, fy, cx, cy)."""
    return intrinsics(float(row["fx"]), float(row["fy"]), float(row["cx"]), float(row["cy"]))


def rel_to_repo(path: str | Path) -> str:
    """Path relative to the repository root, as the index stores it (posix, may use '..')."""
    return Path(os.path.relpath(Path(path).resolve(), REPO_ROOT)).as_posix()


def resolve(rel: str | Path, allowed_roots: list[Path] | None = None) -> Path:
    """Resolve an index path against the repository root, refusing paths outside the
    repository or the given data roots (a guard against index files pointing anywhere)."""
    p = (REPO_ROOT / rel).resolve()
    roots = [REPO_ROOT.resolve()] + [Path(r).resolve() for r in (allowed_roots or [])]
    if not any(p == r or r in p.parents for r in roots):
        raise ValueError(f"{rel}: path is outside the repository and the data root")
    return p


def read_index(path: str | Path, required: list[str] | None = None) -> pd.DataFrame:
    """Read and validate an index CSV (columns, unique dish ids)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: index not found (run the earlier DVC stages first)")
    try:
        df = pd.read_csv(path, dtype={"dish_id": str})
    except Exception as e:  # pandas raises several types for broken CSVs
        raise ValueError(f"{path}: not a readable CSV ({e})") from None
    need = required if required is not None else INDEX_COLUMNS
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    dup = df["dish_id"][df["dish_id"].duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"{path}: duplicate dish ids {dup[:5]}")
    return df

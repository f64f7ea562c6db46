"""The split stage's choice of split and its near-duplicate report (metrics/split.json).

Why: Nutrition5k's dish ids are capture times (`dish_<unix seconds>`), and dishes captured minutes
apart are often the same food served again. The release's own split puts many such neighbours on
both sides, so a test score can rest on near-duplicates of training dishes. This module counts
them (test dishes with a train dish captured within 5, 15 and 60 minutes) and offers the
`session` split: dishes grouped into capture sessions (a gap longer than `split.session_gap_min`
starts a new one), whole sessions drawn to the release's test share, so no session spans train
and test and no test dish has a train dish within the gap.

`split.nutrition5k: release` keeps the release's split (`pipeline.data.split.assign_splits`);
synthetic data is split by that function too, unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.config import Params
from pipeline.data.split import assign_splits

WINDOWS_MIN = (5, 15, 60)   # minutes: the windows metrics/split.json counts near neighbours in
ID_PREFIX = "dish_"
SYNTHETIC_NOTE = "synthetic dish ids carry no capture time: the near-duplicate counts do not apply"


def capture_times(dish_ids: Sequence[str] | pd.Series) -> pd.Series:
    """Unix seconds from ids `dish_<unix seconds>` (NaN where an id has no such time)."""
    ids = pd.Series(dish_ids, dtype=object).astype(str).reset_index(drop=True)
    digits = ids.str.removeprefix(ID_PREFIX)
    ok = ids.str.startswith(ID_PREFIX) & digits.str.fullmatch(r"\d{9,11}")
    return pd.Series(np.where(ok, pd.to_numeric(digits.where(ok), errors="coerce"), np.nan), dtype=float)


def sessions(times: Sequence[float] | pd.Series, gap_min: float) -> np.ndarray:
    """Session number per dish: dishes sorted by capture time, a new session after each gap longer
    than `gap_min` minutes; a dish without a time is a session of its own."""
    t = np.asarray(times, dtype=float)
    out = np.empty(len(t), dtype=np.int64)
    known = np.flatnonzero(np.isfinite(t))
    order = known[np.argsort(t[known], kind="stable")]
    new = np.diff(t[order], prepend=-np.inf) > 60.0 * gap_min
    out[order] = np.cumsum(new) - 1
    unknown = np.flatnonzero(~np.isfinite(t))
    out[unknown] = int(new.sum()) + np.arange(len(unknown))
    return out


def _draw_sessions(session: np.ndarray, pool: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """Rows (of `pool`) of whole sessions, drawn in a seeded order, each kept when it brings the
    row count closer to `target`."""
    ids = np.unique(session[pool])
    sizes = pd.Series(session[pool]).value_counts()
    taken, n = [], 0
    for s in rng.permutation(ids):
        size = int(sizes[s])
        if abs(n + size - target) < abs(n - target):
            taken.append(s)
            n += size
    return pool[np.isin(session[pool], taken)]


def session_splits(manifest: pd.DataFrame, val_fraction: float, gap_min: float, seed: int) -> pd.Series:
    """'train'/'val'/'test' per row: whole capture sessions to test at the release's test share
    (its test ids over the ids in either split file), then whole sessions of the rest to val
    (`val_fraction` of it); deterministic for a seed."""
    source = manifest.get("source_split", pd.Series("", index=manifest.index)).fillna("").astype(str)
    n_split = int((source != "").sum())
    if n_split == 0:
        raise ValueError("split.nutrition5k = session: the manifest names no release split "
                         "(source_split is empty), so there is no test share to keep")
    share = float((source == "test").sum()) / n_split
    session = sessions(capture_times(manifest["dish_id"]), gap_min)
    rng = np.random.default_rng(seed)
    rows = np.arange(len(manifest))
    test = _draw_sessions(session, rows, int(round(share * len(rows))), rng)
    pool = np.setdiff1d(rows, test)
    val = _draw_sessions(session, pool, int(round(val_fraction * len(pool))), rng)
    split = np.full(len(rows), "train", dtype=object)
    split[test], split[val] = "test", "val"
    return pd.Series(split, index=manifest.index, dtype=object)


def near_test_counts(dish_ids: Sequence[str], split: Sequence[str], others: Sequence[str] = ("train",),
                               windows_min: Sequence[float] = WINDOWS_MIN) -> dict[str, int]:
    """How many test dishes have a dish of `others` captured within each window (minutes)."""
    t = capture_times(dish_ids).to_numpy()
    s = np.asarray(split, dtype=object)
    test_t = t[(s == "test") & np.isfinite(t)]
    ref = np.sort(t[np.isin(s, list(others)) & np.isfinite(t)])
    if not len(ref):
        return {f"{w:g}": 0 for w in windows_min}
    i = np.searchsorted(ref, test_t)
    nearest = np.minimum(np.abs(test_t - ref[np.clip(i - 1, 0, len(ref) - 1)]),
                         np.abs(ref[np.clip(i, 0, len(ref) - 1)] - test_t))
    return {f"{w:g}": int((nearest <= 60.0 * w).sum()) for w in windows_min}


def split_report(manifest: pd.DataFrame, split: pd.Series, data_source: str, mode: str,
                 gap_min: float) -> dict:
    """metrics/split.json: the split's name and sizes and, on dishes with capture times, the test
    dishes with a train (or train/val) dish captured within 5, 15 and 60 min, and the capture
    sessions (gap > `gap_min`) that span train and test."""
    counts = {k: int((split == k).sum()) for k in ("train", "val", "test")}
    out: dict = {"data_source": data_source, "split": mode, "n_dishes": counts,
                 "test_share": round(counts["test"] / max(len(split), 1), 4), "windows_min": list(WINDOWS_MIN)}
    t = capture_times(manifest["dish_id"])
    if data_source != "nutrition5k" or not t.notna().any():
        none = {f"{w:g}": None for w in WINDOWS_MIN}
        return {**out, "test_with_train_within_min": none, "test_with_train_or_val_within_min": none,
                "note": SYNTHETIC_NOTE if data_source != "nutrition5k" else "no dish id is a capture time"}
    ids, s = manifest["dish_id"].astype(str).tolist(), split.to_numpy()
    session = sessions(t, gap_min)
    sides = pd.DataFrame({"session": session, "split": s})
    spanning = sides.groupby("session")["split"].agg(lambda v: {"train", "test"} <= set(v))
    return {**out,
            "test_with_train_within_min": near_test_counts(ids, s, ("train",)),
            "test_with_train_or_val_within_min": near_test_counts(ids, s, ("train", "val")),
            "n_test_without_capture_time": int(((split == "test").to_numpy() & t.isna().to_numpy()).sum()),
            "sessions": {"gap_min": gap_min, "n": int(len(spanning)), "n_spanning_train_and_test": int(spanning.sum()),
                         "largest": int(pd.Series(session).value_counts().max())}}


def make_split(manifest: pd.DataFrame, params: Params) -> tuple[pd.Series, dict]:
    """(split per manifest row, metrics/split.json) as the params ask: Nutrition5k by
    `split.nutrition5k` (release | session), synthetic seeded by dish (`assign_splits`)."""
    p, n5k = params.split, params.data.source == "nutrition5k"
    if n5k and p.nutrition5k == "session":
        split = session_splits(manifest, p.val_fraction, p.session_gap_min, params.data.seed)
    else:
        split = assign_splits(manifest, p.val_fraction, p.test_fraction, params.data.seed)
    mode = p.nutrition5k if n5k else "seeded"
    return split, split_report(manifest, split, params.data.source, mode, p.session_gap_min)

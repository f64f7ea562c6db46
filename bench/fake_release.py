"""A small Nutrition5k release tree (the official layout) rendered from synthetic dishes, with
one dish per failure mode seen in the real release: the tests' and benches' stand-in for the
180 GB release. Not part of the library (`pipeline`): only tests and benches use it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import io
from pipeline.config import Nutrition5kConfig
from pipeline.data.nutrition5k import HEIGHT, IMAGERY, METADATA, SPLITS, WIDTH


def _write_raw_depth(path: Path, units: np.ndarray) -> None:
    io._write_png(path, np.clip(units, 0, 65535).astype(np.uint16))


def make_release_tree(root: Path, n: int, seed: int = 0, corrupt: bool = True) -> dict:
    """Write `n` good synthetic dishes in the release layout (plus, with `corrupt`, one dish per
    failure mode seen in the real release) and return what was planted:
    {"good": ids, "kept": ids expected to survive, "skipped": {reason: [ids]},
     "out_of_range": ids kept but holding invalid pixels, "no_imagery": {split: ids},
     "split": {id: split}, "mass_g": {id: total_mass; imaged dishes: their synthetic mass from
     the density table}, "K": {id: 3x3 list the dish was
     rendered with}, "volume_ml_true": {id: mL}}. Synthetic views vary in f, so the release's
     single K only approximates them: fine for plumbing, not for label accuracy."""
    from pipeline.data.synthetic import generate_dish

    root = Path(root)
    n5k = Nutrition5kConfig()   # the release's valid depth range (params `nutrition5k:` defaults)
    rng = np.random.default_rng(seed)
    img_dir = root / IMAGERY
    good = [f"dish_{1556570000 + 37 * i}" for i in range(n)]
    planted: dict = {"good": good, "skipped": {}, "out_of_range": [], "split": {}, "mass_g": {},
                     "volume_ml_true": {}, "K": {}}

    def overhead_dishes():
        """Synthetic views are random (45-90 deg, 0.2-0.5 m); keep the steep ones whose
        depth lies in the release's range, as the real overhead camera sees it."""
        for index in range(200 * (n + 4)):
            dish = generate_dish(seed, index, width=WIDTH, height=HEIGHT, noise=True)
            in_range = (dish.depth >= n5k.min_depth_m) & (dish.depth <= n5k.max_depth_m)
            if dish.meta.get("elevation_deg", 90) >= 60 and in_range.mean() >= 0.9:
                yield dish
        raise RuntimeError("make_release_tree: synthetic generator gave too few overhead views")

    dishes = overhead_dishes()

    def write_dish(dish_id: str) -> np.ndarray:
        dish = next(dishes)
        planted["K"][dish_id] = np.asarray(dish.K).tolist()
        d = img_dir / dish_id
        io.write_rgb(d / "rgb.png", dish.rgb)
        units = np.where(np.isfinite(dish.depth) & (dish.depth > 0),
                         np.round(dish.depth / io.DEPTH_SCALE_M), 0)
        _write_raw_depth(d / "depth_raw.png", units)
        planted["volume_ml_true"][dish_id] = dish.volume_ml_true
        planted["mass_g"][dish_id] = round(dish.meta["mass_g"], 1)   # the scale: density table x volume
        return units

    for dish_id in good:
        write_dish(dish_id)
    bad: dict[str, str] = {}
    if corrupt:
        base = 1556580000
        ids = {k: f"dish_{base + j}" for j, k in enumerate(
            ["empty_file", "unreadable", "out_of_range", "absurd_scale"])}
        # 0-byte depth
        write_dish(ids["empty_file"])
        (img_dir / ids["empty_file"] / "depth_raw.png").write_bytes(b"")
        # truncated rgb
        write_dish(ids["unreadable"])
        p = img_dir / ids["unreadable"] / "rgb.png"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
        # 65535 block + scattered beyond-the-table readings: kept, pixels counted as invalid
        units = write_dish(ids["out_of_range"])
        units[:40, :60] = 65535
        speck = rng.random(units.shape) < 0.01
        units[speck & (units > 0)] = 4200 + rng.integers(1, 3000, size=int((speck & (units > 0)).sum()))
        _write_raw_depth(img_dir / ids["out_of_range"] / "depth_raw.png", units)
        # ~10x too small
        units = write_dish(ids["absurd_scale"])
        _write_raw_depth(img_dir / ids["absurd_scale"] / "depth_raw.png", np.round(units / 10))
        planted["skipped"] = {"empty_file": [ids["empty_file"]], "unreadable": [ids["unreadable"]],
                              "absurd_scale": [ids["absurd_scale"]]}
        planted["out_of_range"] = [ids["out_of_range"]]
        bad = ids
    imaged = good + list(bad.values())
    planted["kept"] = good + planted["out_of_range"]

    # split files: ~80/20 of the imaged dishes, one imaged dish in no split, plus ids without imagery
    order = list(rng.permutation(imaged))
    unsplit = order.pop() if len(order) > 2 else None
    n_test = max(1, len(order) // 5)
    split = {i: "test" for i in order[:n_test]} | {i: "train" for i in order[n_test:]}
    no_imagery = {"train": [f"dish_{1550000000 + j}" for j in range(3)],
                  "test": [f"dish_{1551000000 + j}" for j in range(2)]}
    for s in ("train", "test"):
        ids = sorted([i for i, v in split.items() if v == s] + no_imagery[s])
        path = root / SPLITS[s]
        path.parent.mkdir(parents=True, exist_ok=True)
        io.write_text(path, "\n".join(ids) + "\n")
    planted["split"] = {i: split.get(i, "") for i in imaged}
    planted["unsplit"] = unsplit
    planted["no_imagery"] = no_imagery

    # metadata: uneven rows; cafe 1 has macros, cafe 2 zero macros; split-only ids listed too
    all_ids = imaged + no_imagery["train"] + no_imagery["test"]
    lines = {"cafe1": [], "cafe2": []}
    for j, dish_id in enumerate(all_ids):
        cafe = "cafe1" if j % 2 == 0 else "cafe2"
        n_ingr = int(rng.integers(1, 6))
        mass = round(float(rng.uniform(50, 600)), 1)   # drawn for every id: the same stream as before
        mass = planted["mass_g"].get(dish_id, mass)
        macros = [round(float(x), 3) for x in rng.uniform(1, 40, 3)] if cafe == "cafe1" else [0.0] * 3
        fields = [dish_id, round(mass * 1.6, 3), mass, *macros]
        for k in range(n_ingr):
            g = round(mass / n_ingr, 3)
            fields += [f"ingr_{k + 1:010d}", f"ingredient {k}", g, round(g * 1.6, 3),
                       *(macros if cafe == "cafe1" else [0.0] * 3)]
        lines[cafe].append(",".join(str(x) for x in fields))
        planted["mass_g"][dish_id] = mass
    for cafe, rel in METADATA.items():
        io.write_text(root / rel, "\n".join(lines[cafe]) + "\n")
    return planted

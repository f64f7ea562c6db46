"""One typed configuration, read from params.yaml.

Every default is defined here, once; params.yaml states the values a run uses and DVC
tracks them. Loading is strict: an unknown key, a missing section value of the wrong
type or an out-of-range choice raises a ValueError that names the file and the key
(`params.yaml: masks.min_height_mm: expected a number, got 'four'`), so a typo in
`dvc exp run -S ...` fails at once instead of silently falling back to a default.

The per-model blocks (`model_cfg.<name>`) are typed by the model's own config class from
the model registry, checked when the model is looked up with
`pipeline.models.config_for(params, name)`: a new model brings its own block without touching
this file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from pipeline.typed import build

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = REPO_ROOT / "params.yaml"


@dataclass
class DataConfig:
    source: Literal["synthetic", "nutrition5k"] = "synthetic"
    root: str = "data/nutrition5k"
    seed: int = 0
    n_dishes: int = 320
    width: int = 640
    height: int = 480
    noise: bool = True
    families: dict[str, float] = field(default_factory=lambda: {
        "table": 0.4, "platform": 0.15, "rails": 0.15, "deep_bowl": 0.15, "metal": 0.15})
    workers: int = 2


@dataclass
class Nutrition5kConfig:
    fx: float = 616.6
    fy: float = 616.6
    cx: float = 319.5
    cy: float = 239.5
    min_depth_m: float = 0.10
    max_depth_m: float = 0.42
    min_valid_fraction: float = 0.5
    rig_plane_dishes: int = 64


@dataclass
class SplitConfig:
    val_fraction: float = 0.15
    test_fraction: float = 0.2


@dataclass
class MasksConfig:
    method: Literal["gt", "geometry", "sam2"] = "geometry"
    min_height_mm: float = 4.0
    min_area_px: int = 150
    sam2_checkpoint: str = "facebook/sam2.1-hiera-tiny"
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"


@dataclass
class SuspectConfig:
    exclude: bool = True
    density_g_ml: tuple[float, float] = (0.2, 3.0)
    min_mask_px: int = 1500
    max_border_fraction: float = 0.5
    min_support_inliers: float = 0.1
    max_tilt_deg: float = 60.0
    max_rig_tilt_deg: float = 15.0
    max_floor_guess_m: float = 0.002
    min_floor_wall_colour: float = 0.65
    max_level_uncertainty: float = 0.3


@dataclass
class VolumeConfig:
    method: Literal["heightmap", "columns"] = "heightmap"
    ring_px: int = 20
    cell_mm: float = 2.0


@dataclass
class EvalConfig:
    split: Literal["train", "val", "test"] = "test"
    size: tuple[int, int] | None = None
    volume_bins: tuple[float, ...] = (100.0, 300.0, 600.0)
    n_worst: int = 6
    n_bootstrap: int = 2000
    seed: int = 0
    zero_shot: list[str] = field(default_factory=list)   # models only evaluated, never trained


@dataclass
class MassConfig:
    ridge_alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
    density_range: tuple[float, float] = (0.2, 1.6)
    default_density: float = 0.8


@dataclass
class LossConfig:
    w_depth: float = 1.0
    w_grad: float = 0.1
    w_plane: float = 0.05
    w_volume: float = 0.1
    w_silog: float = 0.1
    w_intrinsics: float = 0.1
    volume_floor_ml: float = 20.0       # |log((V + floor) / (label + floor))|: gradient <= 1 / floor
    label_height_mm: tuple[float, float] = (3.0, 150.0)  # label / mask area (a mean height) outside
                                        # this: the label is implausible for its mask -> no volume term


@dataclass
class StageConfig:
    epochs: int = 8


@dataclass
class RecipeConfig:
    """Optimiser and per-iteration LR schedule for one starting point (random init or a checkpoint)."""
    lr_decoder: float = 2.0e-3
    lr_encoder: float = 2.0e-4
    weight_decay: float = 0.01
    warmup_frac: float = 0.05            # linear warmup over this share of the stage's iterations
    schedule: Literal["poly", "cosine", "constant"] = "cosine"
    poly_power: float = 0.9              # poly: lr * (1 - t)^power
    final_lr_frac: float = 0.0           # cosine: floor as a fraction of the peak


def _pretrained_recipes() -> dict[str, RecipeConfig]:
    return {"depth_anything_v2": RecipeConfig(5.0e-5, 5.0e-6, 0.01, 0.0, "poly", 0.9, 0.0),
            "unidepth_v2": RecipeConfig(1.0e-4, 1.0e-5, 0.1, 0.25, "cosine", 0.9, 0.01)}


@dataclass
class PretrainConfig:
    """Synthetic pretraining (stage `pretrain@<model>`): other dishes than the experiment's."""
    seed: int = 1000
    n_dishes: int = 320
    val_fraction: float = 0.15
    epochs: int = 12
    families: dict[str, float] = field(default_factory=lambda: {"table": 1.0})


@dataclass
class LoraConfig:
    """LoRA adapters on the encoder's linear layers (peft): stage 2 with `encoder: lora`."""
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] | None = None   # None: the model's attention projections (its lora_targets)
    lr: float | None = None                    # adapters' LR; None: lr_decoder (they start at zero too)


@dataclass
class Stage2Config(StageConfig):
    """Stage 2 adds what the encoder does: `full` (all weights train at lr_encoder), `lora`
    (weights frozen, LoRA adapters train; merged into the weights on export) or `frozen`."""
    encoder: Literal["full", "lora", "frozen"] = "full"
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 4
    work_scale: float = 1.5
    grad_clip: float = 1.0
    selection: Literal["ema", "last"] = "ema"   # exported weights: EMA at the end of the fixed schedule, or the last
    ema_decay: float = 0.98
    grad_norm_every: int = 10            # per-term gradient norms every this many steps (0 = never)
    stage1: StageConfig = field(default_factory=lambda: StageConfig(8))
    stage2: Stage2Config = field(default_factory=lambda: Stage2Config(8))
    recipe_random: RecipeConfig = field(default_factory=RecipeConfig)
    recipe_pretrained: dict[str, RecipeConfig] = field(default_factory=_pretrained_recipes)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def stage(self, n: int) -> StageConfig:
        if n not in (1, 2):
            raise ValueError(f"stage: expected 1 or 2, got {n!r}")
        return self.stage1 if n == 1 else self.stage2


@dataclass
class AugmentConfig:
    p_geometric: float = 0.8
    scale: tuple[float, float] = (0.85, 1.2)
    rotate_deg: float = 10.0
    shift_frac: float = 0.1
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue_deg: float = 5.0
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    p_depth_noise: float = 0.5
    depth_noise_rel: float = 0.003
    p_holes: float = 0.3
    max_holes: int = 4
    p_mask: float = 0.5
    mask_px: int = 5
    zoom: Literal["depth", "intrinsics", "off"] = "depth"   # set from model_cfg.<model>.zoom


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | int = "auto"
    deterministic: bool = False
    num_workers: int = 0
    threads: int = 1
    portable_cpu: bool = True


@dataclass
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    nutrition5k: Nutrition5kConfig = field(default_factory=Nutrition5kConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    masks: MasksConfig = field(default_factory=MasksConfig)
    suspect: SuspectConfig = field(default_factory=SuspectConfig)
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    mass: MassConfig = field(default_factory=MassConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    models: list[str] = field(default_factory=lambda: ["depth_anything_v2"])
    model_cfg: dict[str, dict] = field(default_factory=lambda: {"depth_anything_v2": {}})
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)  # null: no augmentation
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    source: str = field(default="params.yaml", init=False, compare=False, repr=False)

    def data_roots(self) -> list[Path]:
        """Folders outside the repository that index paths may point into (the release)."""
        return [REPO_ROOT / self.data.root] if self.data.source == "nutrition5k" else []

    def to_dict(self) -> dict:
        """Plain mapping (lists, not tuples) that `params_from_dict` and YAML round-trip."""
        d = _plain(dataclasses.asdict(self))
        d.pop("source")
        return d


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def params_from_dict(raw: Mapping, source: str = "params.yaml") -> Params:
    """Typed Params from an already parsed params mapping."""
    p = build(Params, raw, f"{source}:")
    p.source = source
    for i, name in enumerate(p.models):
        if name not in p.model_cfg:
            raise ValueError(f"{source}: models[{i}]: {name!r} has no model_cfg.{name} block")
    for i, name in enumerate(p.eval.zero_shot):
        if name not in p.model_cfg:
            raise ValueError(f"{source}: eval.zero_shot[{i}]: {name!r} has no model_cfg.{name} block")
        if name in p.models:
            raise ValueError(f"{source}: eval.zero_shot[{i}]: {name!r} is also in `models` (its "
                             f"{name}_stage0 rows already show it before fine-tuning)")
    return p


def as_params(params: "Params | Mapping") -> Params:
    """Accept typed Params or a raw mapping (tests, notebooks) and return typed Params."""
    return params if isinstance(params, Params) else params_from_dict(params, "params")


def load_params(path: str | Path | None = None) -> Params:
    """Read and check params.yaml (the repository's by default)."""
    path = Path(path) if path is not None else PARAMS_FILE
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: params file not found") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at top level")
    return params_from_dict(raw, path.name if path == PARAMS_FILE else str(path))

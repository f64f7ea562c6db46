"""One typed configuration, read from params.yaml.

Every default is defined here, once; params.yaml states the values a run uses and DVC
tracks them, and tests/test_config.py fails wherever it and these dataclasses disagree.
Loading is strict: an unknown key, a value of the wrong type or out of its range raises a
ValueError that names the file and the key (`params.yaml: masks.min_height_mm: expected a
number, got 'four'`, `params.yaml: split.val_fraction = 1.5: must be in [0, 1)`), so a typo in
`dvc exp run -S ...` fails at once instead of silently falling back to a default or failing
hours later. Ranges sit with each field's type (the aliases below).

Library functions take settings as arguments; where an argument may be left out its default
is `None`, read from these dataclasses when the function runs (`or_default`), never copied
into a module constant at import.

The per-model blocks (`model_cfg.<name>`) are typed by the model's own config class from
the model registry, checked when the model is looked up with
`pipeline.models.config_for(params, name)`: a new model brings its own block without touching
this file. Only their `size` is checked at load (multiples of 14 for the models that train).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml

from pipeline.typed import Increasing, NonEmpty, Range, build, out_of_range

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = REPO_ROOT / "params.yaml"

PosInt = Annotated[int, Range(1)]
NonNegInt = Annotated[int, Range(0)]
PosFloat = Annotated[float, Range(0, lo_open=True)]
NonNegFloat = Annotated[float, Range(0)]
Fraction = Annotated[float, Range(0, 1)]                  # probabilities, shares: [0, 1]
OpenFraction = Annotated[float, Range(0, 1, hi_open=True)]  # [0, 1): a share that leaves some
TiltDeg = Annotated[float, Range(0, 90)]
Interval = Annotated[tuple[float, float], Range(0, lo_open=True), Increasing()]   # [low, high], both > 0
PixelSize = Annotated[tuple[int, int], Range(1)]               # [H, W]
PatchSize = Annotated[tuple[int, int], Range(1, multiple=14)]   # [H, W] for a ViT with 14 px patches
Weights = Annotated[dict[str, NonNegFloat], NonEmpty()]         # mixture weights (normalised)
PRECISIONS = ("auto", "32-true", "32", 32, "bf16-mixed", "16-mixed", "bf16-true")  # Lightning's, that we run


def or_default(section: type, **values: Any) -> Any:
    """Each of `values` (keyword = the section's key), or the section dataclass's default when
    it is None; read at call time. One key: its value; several: a tuple in that order."""
    default = section()
    out = tuple(getattr(default, k) if v is None else v for k, v in values.items())
    return out[0] if len(out) == 1 else out


def _check_weights(weights: dict[str, float], where: str) -> None:
    if sum(weights.values()) <= 0:
        raise out_of_range(where, weights, "weights must not all be 0")


@dataclass
class DataConfig:
    source: Literal["synthetic", "nutrition5k"] = "synthetic"
    root: str = "data/nutrition5k"
    seed: NonNegInt = 0
    n_dishes: PosInt = 640
    width: PosInt = 640
    height: PosInt = 480
    noise: bool = True
    families: Weights = field(default_factory=lambda: {
        "table": 0.4, "platform": 0.15, "rails": 0.15, "deep_bowl": 0.15, "metal": 0.15})
    workers: PosInt = 2

    def check(self, where: str) -> None:
        _check_weights(self.families, f"{where}.families")


@dataclass
class Nutrition5kConfig:
    fx: PosFloat = 616.6
    fy: PosFloat = 616.6
    cx: NonNegFloat = 319.5
    cy: NonNegFloat = 239.5
    min_depth_m: NonNegFloat = 0.10
    max_depth_m: PosFloat = 0.42
    min_valid_fraction: Fraction = 0.5
    rig_plane_dishes: PosInt = 64
    vessel_floor_m: NonNegFloat | None = 0.050

    def check(self, where: str) -> None:
        if self.min_depth_m >= self.max_depth_m:
            raise out_of_range(f"{where}.min_depth_m", self.min_depth_m,
                               f"must be below max_depth_m ({self.max_depth_m:g})")


@dataclass
class SplitConfig:
    val_fraction: OpenFraction = 0.15
    test_fraction: OpenFraction = 0.2
    # Nutrition5k: release = the release's own test ids; session = dishes grouped by capture time
    # (dish_<unix seconds>; a gap over session_gap_min starts a new session), whole sessions drawn
    # to the release's test share, so no session spans train and test
    nutrition5k: Literal["release", "session"] = "release"
    session_gap_min: PosFloat = 60.0

    def check(self, where: str) -> None:
        if self.val_fraction + self.test_fraction >= 1:
            raise out_of_range(f"{where}.val_fraction", self.val_fraction,
                               f"val_fraction + test_fraction ({self.test_fraction:g}) must be < 1 "
                               "(no dish would be left to train on)")


@dataclass
class MasksConfig:
    method: Literal["gt", "geometry", "sam2"] = "geometry"
    min_height_mm: PosFloat = 4.0
    min_area_px: NonNegInt = 150
    sam2_checkpoint: str = "facebook/sam2.1-hiera-tiny"
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"


@dataclass
class SuspectConfig:
    exclude: bool = True
    density_g_ml: Interval = (0.2, 3.0)
    min_mask_px: NonNegInt = 1500
    max_border_fraction: Fraction = 0.5
    min_support_inliers: Fraction = 0.1
    max_tilt_deg: TiltDeg = 60.0
    max_rig_tilt_deg: TiltDeg = 15.0
    max_floor_guess_m: NonNegFloat = 0.002
    min_floor_wall_colour: Fraction = 0.65
    max_level_uncertainty: NonNegFloat = 0.3


@dataclass
class VolumeConfig:
    method: Literal["heightmap", "columns"] = "heightmap"
    ring_px: PosInt = 20
    cell_mm: PosFloat = 2.0


@dataclass
class EvalConfig:
    split: Literal["train", "val", "test"] = "test"
    size: PatchSize | None = None
    volume_bins: Annotated[tuple[PosFloat, ...], NonEmpty(), Increasing(strict=True)] = (100.0, 300.0, 600.0)
    n_worst: NonNegInt = 6
    n_bootstrap: PosInt = 2000
    seed: NonNegInt = 0
    zero_shot: list[str] = field(default_factory=list)   # models only evaluated, never trained


@dataclass
class MassConfig:
    ridge_alphas: Annotated[tuple[PosFloat, ...], NonEmpty()] = (0.1, 1.0, 10.0, 100.0, 1000.0)
    density_range: Interval = (0.2, 1.6)
    default_density: PosFloat = 0.8


@dataclass
class LossConfig:
    w_depth: NonNegFloat = 1.0
    w_grad: NonNegFloat = 10.0
    w_plane: NonNegFloat = 0.05
    w_volume: NonNegFloat = 0.1
    w_silog: NonNegFloat = 0.1
    w_intrinsics: NonNegFloat = 0.1
    w_height: NonNegFloat = 2.0         # per-pixel height above the support plane in the food mask (m)
    w_mask: NonNegFloat = 0.3           # food-mask head: BCE + soft Dice on the masks stage's mask (no head: no term)
    volume_floor_ml: PosFloat = 20.0    # |log((V + floor) / (label + floor))|: gradient <= 1 / floor
    # label / mask area (a mean height) outside this: the label is implausible for its mask -> no volume term
    label_height_mm: Annotated[tuple[NonNegFloat, NonNegFloat], Increasing(strict=True)] = (3.0, 150.0)


@dataclass
class StageConfig:
    epochs: NonNegInt = 8


@dataclass
class RecipeConfig:
    """Optimiser and per-iteration LR schedule for one starting point (random init or a checkpoint)."""
    lr_decoder: PosFloat = 2.0e-3
    lr_encoder: PosFloat = 2.0e-4
    weight_decay: NonNegFloat = 0.01
    warmup_frac: OpenFraction = 0.05     # linear warmup over this share of the stage's iterations
    schedule: Literal["poly", "cosine", "constant"] = "cosine"
    poly_power: PosFloat = 0.9           # poly: lr * (1 - t)^power
    final_lr_frac: Fraction = 0.0        # cosine: floor as a fraction of the peak


# The official recipes of the checkpoints' authors (sources in params.yaml's comments).
PRETRAINED_RECIPES = {
    "depth_anything_v2": RecipeConfig(lr_decoder=5.0e-5, lr_encoder=5.0e-6, warmup_frac=0.0, schedule="poly"),
    "unidepth_v2": RecipeConfig(lr_decoder=1.0e-4, lr_encoder=1.0e-5, weight_decay=0.1, warmup_frac=0.25,
                                final_lr_frac=0.01),
}


@dataclass
class AugmentConfig:
    p_geometric: Fraction = 0.8
    scale: Interval = (0.85, 1.2)
    rotate_deg: Annotated[float, Range(0, 180)] = 10.0
    shift_frac: OpenFraction = 0.1
    brightness: Fraction = 0.2
    contrast: Fraction = 0.2
    saturation: Fraction = 0.2
    hue_deg: Annotated[float, Range(0, 180)] = 5.0
    p_blur: Fraction = 0.2
    blur_sigma: Interval = (0.3, 1.2)
    p_depth_noise: Fraction = 0.5
    depth_noise_rel: NonNegFloat = 0.003
    p_holes: Fraction = 0.3
    max_holes: NonNegInt = 4
    zoom: Literal["depth", "intrinsics", "off"] = "depth"   # set from model_cfg.<model>.zoom
    DERIVED: ClassVar[dict[str, str]] = {"zoom": "set per model by model_cfg.<model>.zoom"}  # not params.yaml keys


@dataclass
class PretrainConfig:
    """Synthetic pretraining (stage `pretrain@<model>`): wide scenes (`pipeline.data.rooms`, objects
    on tables and floors 0.6-3 m away) and other dishes than the experiment's, rendered at their own
    size: a stand-in for a checkpoint that has seen far more, and other, images than the fine-tuning."""
    seed: NonNegInt = 1000
    n_rooms: NonNegInt = 4000
    n_dishes: NonNegInt = 640
    width: Annotated[int, Range(32, 4096)] = 320
    height: Annotated[int, Range(32, 4096)] = 240
    val_fraction: OpenFraction = 0.05
    epochs: NonNegInt = 4
    families: Weights = field(default_factory=lambda: {"table": 1.0})
    # stage 0's own loss and augmentation, frozen like a checkpoint's recipe: fine-tuning ideas
    # (`dvc exp run -S loss.w_volume=0.2`) change `loss` / `augment`, never the committed stage 0
    loss: LossConfig = field(default_factory=lambda: LossConfig(w_height=0.0, w_mask=0.0))  # predates both terms
    augment: AugmentConfig | None = field(default_factory=lambda: AugmentConfig())

    def check(self, where: str) -> None:
        _check_weights(self.families, f"{where}.families")
        if self.n_rooms + self.n_dishes < 2:
            raise ValueError(f"{where}: n_rooms + n_dishes = {self.n_rooms + self.n_dishes}: "
                             "the pretraining needs at least 2 scenes (train and validation)")


@dataclass
class LoraConfig:
    """LoRA adapters on the encoder's linear layers (peft): stage 2 with `encoder: lora`."""
    rank: PosInt = 8
    alpha: PosFloat = 16.0
    dropout: OpenFraction = 0.0
    # None: the model's attention projections (its lora_targets)
    target_modules: Annotated[list[str], NonEmpty()] | None = None
    lr: PosFloat | None = None                 # adapters' LR; None: lr_decoder (they start at zero too)


@dataclass
class Stage2Config(StageConfig):
    """Stage 2 adds what the encoder does: `full` (all weights train at lr_encoder), `lora`
    (weights frozen, LoRA adapters train; merged into the weights on export) or `frozen`."""
    encoder: Literal["full", "lora", "frozen"] = "full"
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class TrainConfig:
    seed: NonNegInt = 0
    batch_size: PosInt = 4
    work_scale: Annotated[float, Range(1)] = 1.5
    grad_clip: NonNegFloat = 1.0         # 0: no clipping
    selection: Literal["ema", "last"] = "ema"   # exported weights: EMA at the end of the fixed schedule, or the last
    ema_decay: OpenFraction = 0.98
    grad_norm_every: NonNegInt = 50      # per-term gradient norms every this many steps (0 = never)
    stage1: StageConfig = field(default_factory=lambda: StageConfig(8))
    stage2: Stage2Config = field(default_factory=lambda: Stage2Config(8))
    recipe_random: RecipeConfig = field(default_factory=RecipeConfig)
    recipe_pretrained: dict[str, RecipeConfig] = field(
        default_factory=lambda: {k: dataclasses.replace(r) for k, r in PRETRAINED_RECIPES.items()})
    # the small copy's own recipe, for stages 1-2 from the synthetic stage 0 (models/<model>/pretrain):
    # Depth-Anything-V2's official schedule at 10x its rates (docs/results/training.md, sweep)
    recipe_stage0: RecipeConfig = field(default_factory=lambda: RecipeConfig(
        lr_decoder=5.0e-4, lr_encoder=5.0e-5, warmup_frac=0.0, schedule="poly"))
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def stage(self, n: int) -> StageConfig:
        if n not in (1, 2):
            raise ValueError(f"stage: expected 1 or 2, got {n!r}")
        return self.stage1 if n == 1 else self.stage2


@dataclass
class StudentConfig:
    """One student of stage `distill@<student>`: a smaller configuration of `model` (its
    `model_cfg.<model>` block with `model_cfg` over it) trained from `teacher`'s fine-tuned depth."""
    teacher: str = "depth_anything_v2"      # a model of `models`: its stage-2 weights teach
    model: str = "depth_anything_v2"        # the student's registry model
    model_cfg: dict[str, Any] = field(default_factory=lambda: {"size": [84, 112]})   # over model_cfg.<model>


@dataclass
class DistillConfig:
    """Stage `distill@<student>`: each student trained twice from the same start and schedule, with the
    labels only (`<student>_direct`) and with the teacher's depth added (`<student>`)."""
    students: dict[str, StudentConfig] = field(default_factory=lambda: {"da2_small": StudentConfig()})
    w_teacher: NonNegFloat = 1.0            # weight of the teacher term (the depth-map terms vs its depth)
    n_unlabelled: NonNegInt = 64            # extra synthetic dishes without labels (teacher term only)
    unlabelled_seed: NonNegInt = 2000       # their generator seed (not data.seed, not train.pretrain.seed)
    stage1: StageConfig = field(default_factory=lambda: StageConfig(1))   # both student runs' schedule
    stage2: StageConfig = field(default_factory=lambda: StageConfig(1))
    speed_images: PosInt = 16               # test images each model's inference ms and peak memory is timed on


@dataclass(frozen=True)
class Devices:
    """Lightning's `devices`: a count >= 1, -1 (all), "auto", or a list of device indices."""

    def check(self, value: Any, where: str) -> None:
        ok = (value == "auto" or (isinstance(value, int) and (value >= 1 or value == -1))
              or (isinstance(value, list) and value and all(i >= 0 for i in value)))
        if not ok:
            raise out_of_range(where, value, 'must be a count >= 1, -1 (all), "auto" or a non-empty list of indices')


@dataclass
class TrainerConfig:
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: Annotated[int | str | list[int], Devices()] = 1
    num_nodes: PosInt = 1
    strategy: Literal["auto", "ddp", "ddp_spawn", "ddp_find_unused_parameters_true", "fsdp"] = "auto"
    precision: Literal[PRECISIONS] = "auto"
    deterministic: bool = False
    num_workers: NonNegInt = 1
    threads: NonNegInt = 1               # 0: torch's own default
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
    # each block's keys and their defaults: the model's config class (pipeline.models.config_for);
    # here only what the pipeline sets differently: stage 0 of Depth-Anything is the checkpoint
    # of the synthetic pretraining (stage pretrain@depth_anything_v2)
    model_cfg: dict[str, dict] = field(default_factory=lambda: {
        "depth_anything_v2": {"pretrained": "models/depth_anything_v2/pretrain", "mask_head": True},
        "unidepth_v2": {}, "depth_pro": {}, "zoedepth": {}})
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)  # null: no augmentation
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    source: str = field(default="params.yaml", init=False, compare=False, repr=False)

    def data_roots(self) -> list[Path]:
        """Folders outside the repository that index paths may point into (the release)."""
        return [REPO_ROOT / self.data.root] if self.data.source == "nutrition5k" else []

    def to_dict(self) -> dict:
        """Plain mapping (lists, not tuples) that `params_from_dict` and YAML round-trip."""
        d = _plain(dataclasses.asdict(self))
        d.pop("source")
        for aug in (d["augment"], d["train"]["pretrain"]["augment"]):
            for key in AugmentConfig.DERIVED if aug is not None else ():
                aug.pop(key)
        return d

    def for_stage0(self) -> Params:
        """These params with stage 0's own loss and augmentation (`train.pretrain.loss/augment`)
        in place of the fine-tuning ones: what stage `pretrain@<model>` trains with."""
        pc = self.train.pretrain
        out = dataclasses.replace(self, loss=pc.loss, augment=pc.augment)
        out.source = self.source
        return out


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def params_from_dict(raw: Mapping, source: str = "params.yaml") -> Params:
    """Typed Params from an already parsed params mapping."""
    where = f"{source}:"
    train = raw.get("train")
    pre = train.get("pretrain") if isinstance(train, Mapping) else None
    for at, aug in (("augment", raw.get("augment")),
                    ("train.pretrain.augment", pre.get("augment") if isinstance(pre, Mapping) else None)):
        for key, why in AugmentConfig.DERIVED.items():
            if isinstance(aug, Mapping) and key in aug:
                raise ValueError(f"{where} {at}.{key}: {why}; remove the key")
    p = build(Params, raw, where)
    p.source = source
    for name, block in p.model_cfg.items():
        _check_model_size(block, name in p.models, f"{where} model_cfg.{name}")
    for i, name in enumerate(p.models):
        if name not in p.model_cfg:
            raise ValueError(f"{source}: models[{i}]: {name!r} has no model_cfg.{name} block")
    for i, name in enumerate(p.eval.zero_shot):
        if name not in p.model_cfg:
            raise ValueError(f"{source}: eval.zero_shot[{i}]: {name!r} has no model_cfg.{name} block")
        if name in p.models:
            raise ValueError(f"{source}: eval.zero_shot[{i}]: {name!r} is also in `models` (its "
                             f"{name}_stage0 rows already show it before fine-tuning)")
    _check_students(p)
    return p


def _check_students(p: Params) -> None:
    """distill.students: names that clash with no other row, teachers that are trained, models that exist."""
    where, d = f"{p.source}: distill", p.distill
    taken = set(p.models) | set(p.model_cfg) | set(p.eval.zero_shot)
    for name, s in d.students.items():
        if name in taken or name.endswith(("_direct", "_e2e", "_stage0")):
            raise ValueError(f"{where}.students.{name}: the name clashes with a model or a row suffix "
                             "(_direct, _e2e, _stage0): pick another")
        if s.teacher not in p.models:
            raise ValueError(f"{where}.students.{name}.teacher: {s.teacher!r} is not in `models` (only a "
                             f"fine-tuned model teaches): one of {p.models}")
        if s.model not in p.model_cfg:
            raise ValueError(f"{where}.students.{name}.model: {s.model!r} has no model_cfg block")
        if s.model == s.teacher and not s.model_cfg:
            raise ValueError(f"{where}.students.{name}.model_cfg: empty, so the student is its teacher "
                             "(give a smaller size or tiny config)")
    if d.students and d.unlabelled_seed in (p.data.seed, p.train.pretrain.seed):
        raise ValueError(f"{where}.unlabelled_seed = {d.unlabelled_seed}: must differ from data.seed and "
                         "train.pretrain.seed (unlabelled dishes must not be the experiment's or stage 0's)")


def _check_model_size(block: Any, trained: bool, where: str) -> None:
    """`size` of a model block, at load (the block's other keys are checked by its model's
    config class when the model is looked up): [H, W] > 0, multiples of 14 for a model that
    trains (the training crops to ViT patches; zero-shot models' processors take any size)."""
    if not isinstance(block, Mapping) or block.get("size") is None:
        return
    build(_TrainedSize if trained else _AnySize, {"size": block["size"]}, where)


@dataclass
class _TrainedSize:
    size: PatchSize


@dataclass
class _AnySize:
    size: PixelSize


def as_params(params: Params | Mapping) -> Params:
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

"""The model registry: a new model is one class + a config dataclass + a model_cfg block.

A small real PyTorch model is registered here (nothing mocked) and taken through stage-1
training, a save/load round trip and the held-out evaluation, the same calls the stages make.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_training import make_index, paths, run_stage, small_params
from torch import Tensor, nn

from pipeline.evaluate.scoring import GIVEN, MeasureConfig, evaluate_predictor, model_predictor, select_split
from pipeline.io import read_index
from pipeline.models import DepthModel, build_model, model_config, model_names, register
from pipeline.models.base import ModelConfig
from pipeline.models.inference import load_model
from pipeline.models.registry import unregister


@dataclass
class TinyConvConfig(ModelConfig):
    width: int = 8
    size: tuple[int, int] = (84, 112)


class TinyConv(DepthModel):
    """Two conv layers as 'encoder', one as 'decoder'; depth = softplus(out) + 0.2 m."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.encoder = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
        self.decoder = nn.Conv2d(width, 1, 3, padding=1)

    @classmethod
    def from_cfg(cls, cfg: TinyConvConfig, seed: int = 0) -> TinyConv:
        return cls(cfg.width)

    @classmethod
    def from_arch(cls, arch: dict) -> TinyConv:
        return cls(int(arch["width"]))

    def arch_config(self) -> dict[str, Any]:
        return {"width": self.width}

    def forward(self, images: Tensor, K: Tensor | None) -> dict[str, Tensor]:
        self.check_input(images, K)
        depth = nn.functional.softplus(self.decoder(self.encoder(self.normalise(images))))[:, 0] + 0.2
        return {"depth": depth, "K": K.float()}

    def encoder_parameters(self) -> list:
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list:
        return list(self.decoder.parameters())

    def set_encoder_frozen(self, frozen: bool) -> None:
        for p in self.encoder.parameters():
            p.requires_grad = not frozen


@pytest.fixture
def tiny_conv():
    register("tiny_conv", TinyConvConfig)(TinyConv)
    yield "tiny_conv"
    unregister("tiny_conv")


def test_registry_knows_the_models_and_checks_their_blocks(tiny_conv):
    assert {"depth_anything_v2", "unidepth_v2", "tiny_conv"} <= set(model_names())
    assert model_config("tiny_conv", {"width": 4}).width == 4
    with pytest.raises(ValueError, match=r"model_cfg.tiny_conv.widht: unknown key \(did you mean 'width'"):
        model_config("tiny_conv", {"widht": 4})
    with pytest.raises(ValueError, match="model_cfg.tiny_conv.width: expected an integer"):
        build_model("tiny_conv", {"width": "wide"})
    with pytest.raises(ValueError, match="unknown 'nope'"):
        build_model("nope", {})


@pytest.mark.slow
def test_a_registered_model_trains_and_evaluates(tiny_conv, tmp_path: Path):
    index = make_index(tmp_path / "dishes", n_train=4, n_val=2)
    p = small_params(epochs1=1)
    p["models"] = ["tiny_conv"]
    p["model_cfg"] = {"tiny_conv": {"width": 6}}
    p["distill"]["students"] = {}   # the default student's teacher is not in `models` here
    m = run_stage("tiny_conv", 1, p, index, **paths(tmp_path, 1))
    assert m["model"] == "tiny_conv" and m["epochs_run"] >= 1 and np.isfinite(m["val_volume_ape"])
    model = load_model(tmp_path / "models/stage1")
    assert isinstance(model, TinyConv) and model.width == 6
    fresh = build_model("tiny_conv", {"width": 6}, seed=0)
    assert any(not torch.equal(a, b) for a, b in zip(model.decoder.parameters(), fresh.decoder.parameters()))
    df = read_index(index)
    df["gt_mask_path"] = df["mask_path"]  # synthetic truth masks: the given-mask setting
    dishes = select_split(df, "val")
    table = evaluate_predictor(model_predictor(model, (84, 112)), dishes, MeasureConfig(),
                               allowed_roots=[index.parent], setting=GIVEN)
    assert len(table) == 2 and table["volume_ml_pred"].notna().all()

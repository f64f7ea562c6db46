"""bf16 autocast must not quantise the predicted depth (food is 10-90 mm high)."""
from __future__ import annotations

import pytest
import torch
from transformers.models.depth_anything.modeling_depth_anything import DepthAnythingDepthEstimationHead

from pipeline.models import build_model
from pipeline.models.depth_anything import Float32Head

CFG = {"pretrained": None, "max_depth": 2, "init_depth": 0.36, "size": [126, 168]}


def _resolution(depth: torch.Tensor) -> tuple[int, float]:
    """(distinct values, smallest step between them) of a depth batch, in metres."""
    v = torch.unique(depth.detach().float().flatten())
    return len(v), float(v.diff().min()) if len(v) > 1 else float("inf")


def _bf16_depth(model, x, K) -> torch.Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return model(x, K)["depth"]


@pytest.mark.slow
def test_bf16_autocast_keeps_sub_0p1mm_depth_resolution():
    torch.manual_seed(0)
    model = build_model("depth_anything_v2", CFG, seed=0).eval()
    assert isinstance(model.net.head, Float32Head)
    x = torch.rand(2, 3, 126, 168)
    K = torch.tensor([[150.0, 0, 83.5], [0, 150.0, 62.5], [0, 0, 1]]).repeat(2, 1, 1)
    depth = _bf16_depth(model, x, K)
    assert depth.dtype == torch.float32
    assert abs(float(depth.mean()) - 0.36) < 0.05
    n_after, step_after = _resolution(depth)

    # before: transformers' own head (same weights) runs its convs and sigmoid in bf16
    plain = DepthAnythingDepthEstimationHead(model.net.config)
    plain.load_state_dict(model.net.head.state_dict())
    fp32_head, model.net.head = model.net.head, plain.eval()
    n_before, step_before = _resolution(_bf16_depth(model, x, K))
    model.net.head = fp32_head
    print(f"distinct depth values in a 2x126x168 batch at ~0.36 m under bf16 autocast: "
          f"before {n_before} (min step {step_before * 1e3:.2f} mm), "
          f"after {n_after} (min step {step_after * 1e3:.5f} mm)")
    assert n_before < 100 and step_before > 1e-3
    assert n_after > 10_000 and step_after < 1e-4
    with torch.no_grad():  # and the float32 path equals the plain float32 model closely
        ref = model(x, K)["depth"]
    assert (depth - ref).abs().max() < 5e-3


def test_float32_head_keeps_state_dict_keys():
    model = build_model("depth_anything_v2", CFG, seed=0)
    keys = [k for k in model.state_dict() if ".head." in k]
    assert keys and all(k.startswith("net.head.conv") for k in keys)


@pytest.mark.slow
def test_validation_step_under_bf16_autocast():
    """Lightning runs validation_step under bf16 autocast on a GPU: the volume geometry must
    still run (in float32) and give the same error as in float32."""
    import tempfile
    from pathlib import Path

    from pipeline.config import load_params
    from pipeline.train.datamodule import DishDataModule
    from pipeline.train.fit import geometry_params
    from pipeline.train.module import DepthLitModule
    from tests.fixtures.quick_dishes import write_dishes
    with tempfile.TemporaryDirectory() as tmp:
        index = write_dishes(Path(tmp), n=1, width=168, height=126, n_val=2, n_unique=2)
        dm = DishDataModule(index, (84, 112), 2, None, allowed_roots=[Path(tmp)])
        dm.setup("fit")
        batch = next(iter(dm.val_dataloader()))
    params = load_params()
    model = build_model("depth_anything_v2", {**CFG, "size": [84, 112]}, seed=0).eval()
    lit = DepthLitModule(model, 1, params.loss, geometry_params(params, (84, 112), 168),
                         params.train.recipe_random)
    with torch.no_grad():
        lit.validation_step(batch, 0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lit.validation_step(batch, 0)
    fp32, bf16 = (v[:, 1:5] for v in lit._val)  # [ape, ape vs full-res label, reference ape, abs_rel]
    assert torch.isfinite(bf16).all() and (bf16[:, 0] < 1).all()  # volumes estimated, not failed
    assert torch.allclose(fp32, bf16, rtol=0.05, atol=0.02)

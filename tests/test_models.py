"""Model wrappers: shapes, non-constant output, freezing, save/load, prediction at full size."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.models import build_model, model_names
from pipeline.models.inference import load_model, predict_depth_array, save_model

DA_CFG = {"pretrained": None, "max_depth": 2, "init_depth": 0.5, "size": [84, 112]}


def _K(b: int, h: int, w: int) -> torch.Tensor:
    K = torch.tensor([[0.8 * w, 0, (w - 1) / 2], [0, 0.8 * w, (h - 1) / 2], [0, 0, 1.0]])
    return K.repeat(b, 1, 1)


@pytest.fixture(scope="module")
def da():
    return build_model("depth_anything_v2", DA_CFG, seed=0)


def test_names_and_bad_input(da):
    assert model_names() == ("depth_anything_v2", "depth_pro", "unidepth_v2", "zoedepth")
    with pytest.raises(ValueError, match="unknown"):
        build_model("nope", {})
    with pytest.raises(ValueError, match="multiples of 14"):
        da(torch.rand(1, 3, 50, 56), _K(1, 50, 56))
    with pytest.raises(ValueError, match="max_depth"):
        build_model("depth_anything_v2", {**DA_CFG, "max_depth": 2.5})


def test_da_forward_shapes_nonconstant(da):
    x, K = torch.rand(2, 3, 84, 112), _K(2, 84, 112)
    out = da(x, K)
    assert out["depth"].shape == (2, 84, 112)
    assert torch.equal(out["K"], K)
    d = out["depth"]
    assert torch.isfinite(d).all() and (d > 0).all() and (d < DA_CFG["max_depth"]).all()
    assert d.std() > 1e-4  # a fresh transformers head would saturate to a constant
    assert abs(float(d.mean()) - DA_CFG["init_depth"]) < 0.2
    assert not torch.allclose(d[0], d[1])


def test_same_seed_same_model():
    a = build_model("depth_anything_v2", DA_CFG, seed=3)
    b = build_model("depth_anything_v2", DA_CFG, seed=3)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n


def _freezing_checks(model, x, K, frozen_decoder: tuple = ()):
    """`frozen_decoder`: decoder parameters that stay frozen by design (never trained)."""
    model.set_encoder_frozen(True)
    model.train()  # must not undo the freeze
    assert not any(p.requires_grad for p in model.encoder_parameters())
    fixed = {id(p) for p in frozen_decoder}
    assert all(p.requires_grad != (id(p) in fixed) for p in model.decoder_parameters())
    model.zero_grad()
    model(x, K)["depth"].mean().backward()
    assert all(p.grad is None for p in model.encoder_parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder_parameters())
    model.set_encoder_frozen(False)
    model.train()
    model.zero_grad()
    model(x, K)["depth"].mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder_parameters())


@pytest.mark.slow
def test_da_freezing():
    m = build_model("depth_anything_v2", DA_CFG, seed=0)
    _freezing_checks(m, torch.rand(2, 3, 84, 112), _K(2, 84, 112))


def _roundtrip(model, name, cfg, tmp_path, h, w):
    model.eval()
    save_model(model, tmp_path / "w", name, cfg)
    assert (tmp_path / "w/model.safetensors").is_file() and (tmp_path / "w/model.json").is_file()
    loaded = load_model(tmp_path / "w")
    assert not loaded.training
    x, K = torch.rand(1, 3, h, w), _K(1, h, w)
    with torch.no_grad():
        a, b = model(x, K.clone()), loaded(x, K.clone())
    assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["K"], b["K"])


def test_da_save_load_roundtrip(da, tmp_path):
    _roundtrip(da, "depth_anything_v2", DA_CFG, tmp_path, 84, 112)


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="model.json"):
        load_model(tmp_path)


def test_predict_depth_array_original_resolution(da):
    rgb = (np.random.default_rng(0).random((100, 130, 3)) * 255).astype(np.uint8)
    K = np.array([[110.0, 0, 64.5], [0, 110.0, 49.5], [0, 0, 1]])
    depth, K_out = predict_depth_array(da, rgb, K, (84, 112))
    assert depth.shape == (100, 130) and depth.dtype == np.float32 and np.isfinite(depth).all()
    np.testing.assert_allclose(K_out, K, atol=1e-6)  # DA passes K through: scaled there and back
    with pytest.raises(ValueError, match="multiple of 14"):
        predict_depth_array(da, rgb, K, (80, 112))


# ----------------------------------------------------------------------------- UniDepth v2
UD_CFG = {"pretrained": None, "backbone": "vits14"}
UD_HW = (70, 98)  # tiny for CPU; outside UniDepth's trained pixel range, so forward warns


def _require_unidepth() -> None:
    """Skip only when the optional package itself is absent; a broken install fails."""
    try:
        import unidepth  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != "unidepth":
            raise
        pytest.skip("unidepth is not installed (requirements-unidepth.txt)")
    import unidepth.models  # noqa: F401  (any error here is a failure, not a skip)


def _build_unidepth(camera: str = "predict"):
    _require_unidepth()
    return build_model("unidepth_v2", {**UD_CFG, "camera": camera}, seed=0)


@pytest.fixture(scope="module")
def ud():
    return _build_unidepth("predict")


@pytest.fixture(scope="module")
def ud_given():
    return _build_unidepth("given")


def _unit(r: np.ndarray) -> np.ndarray:
    return r / np.linalg.norm(r, axis=-1, keepdims=True)


@pytest.mark.slow
def test_unidepth_forward_freeze_roundtrip(ud, tmp_path):
    m = ud
    x, K = torch.rand(2, 3, *UD_HW), _K(2, *UD_HW)
    with pytest.warns(UserWarning, match="outside UniDepth's trained range"):
        out = m(x, K.clone())
    assert out["depth"].shape == (2, *UD_HW) and out["K"].shape == (2, 3, 3)
    assert torch.isfinite(out["depth"]).all() and out["depth"].std() > 0
    assert abs(float(out["depth"].mean()) - 0.5) < 0.2  # init_depth (default 0.5 m), not ~7 m
    # upstream: level_embeds is created frozen; the confidence head feeds no loss here
    fixed = [m.net.pixel_decoder.level_embeds, *m.unused_parameters()]
    assert len(m.unused_parameters()) > 0
    _freezing_checks(m, x, K, frozen_decoder=fixed)
    enc = m.net.pixel_encoder  # stage 2 keeps the patch embedding frozen, as upstream does
    assert not any(p.requires_grad for p in enc.patch_embed.parameters())
    assert all(p.requires_grad for p in enc.blocks.parameters())
    _roundtrip(m, "unidepth_v2", UD_CFG, tmp_path, *UD_HW)


@pytest.mark.slow
def test_unidepth_camera_given(ud_given, tmp_path):
    """`given`: the true K prompts the depth (changing it changes the depth), K is returned
    unchanged, the camera head is frozen, and the mode survives save/load."""
    m = ud_given.eval()
    assert not m.predicts_K
    x, K = torch.rand(1, 3, *UD_HW), _K(1, *UD_HW)
    K2 = K.clone()
    K2[:, 0, 0] *= 1.5
    with torch.no_grad():
        a, b = m(x, K.clone()), m(x, K2.clone())
    assert torch.equal(a["K"], K) and not torch.allclose(a["depth"], b["depth"])
    assert not any(p.requires_grad for p in m.net.pixel_decoder.camera_layer.parameters())
    with pytest.raises(ValueError, match="given needs the true K"):
        m(x, None)
    _roundtrip(m, "unidepth_v2", {**UD_CFG, "camera": "given"}, tmp_path, *UD_HW)
    assert load_model(tmp_path / "w").camera == "given"
    # predict_depth_array: K scaled to the input size and back is the K given
    rgb = (np.random.default_rng(0).random((100, 130, 3)) * 255).astype(np.uint8)
    Kn = np.array([[110.0, 0, 64.5], [0, 110.0, 49.5], [0, 0, 1]])
    np.testing.assert_allclose(predict_depth_array(m, rgb, Kn, UD_HW)[1], Kn, atol=1e-5)


@pytest.mark.slow
def test_unidepth_camera_predict(ud):
    """`predict`: the input K does not reach the model; the K returned is its own."""
    m = ud.eval()
    assert m.predicts_K
    x, K = torch.rand(1, 3, *UD_HW), _K(1, *UD_HW)
    with torch.no_grad():
        a, b = m(x, K.clone()), m(x, 2 * K)
    assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["K"], b["K"])
    assert not torch.equal(a["K"], K)


def test_unidepth_trains_under_cpu_bf16_autocast(ud):
    """The real-run recipe's `trainer.precision=bf16-mixed` on CPU (the rehearsal): UniDepth's ray
    embedding resizes with antialias, which CPU kernels lack for bfloat16; the model must still
    give a finite depth and gradients (it runs in float32 on the CPU)."""
    m = ud.train()
    x, K = torch.rand(1, 3, *UD_HW), _K(1, *UD_HW)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, K)
    out["depth"].float().mean().backward()
    assert torch.isfinite(out["depth"]).all()
    assert any(p.grad is not None and torch.isfinite(p.grad).all() for p in m.decoder_parameters())
    m.zero_grad(set_to_none=True)


def test_unidepth_deep_copies_for_the_ema(ud):
    """`train.selection: ema` (Lightning's WeightAveraging) deep-copies the model; the package's
    unused training losses held a TorchScript function that cannot be copied."""
    import copy
    twin = copy.deepcopy(ud)
    assert all(torch.equal(a, b) for a, b in zip(twin.state_dict().values(), ud.state_dict().values()))


@pytest.mark.slow
def test_unidepth_K_pixel_centre_conventions(ud):
    """UniDepth's pixel centres are at 0.5...W-0.5, ours at 0...W-1: the K we return and
    the K we prompt with give, through our back-projection, the rays UniDepth uses."""
    from pipeline.geometry import backproject
    from pipeline.models.unidepth import from_unidepth_K, prompt_camera
    h, w = UD_HW
    ones = np.ones((h, w))
    K = _K(2, h, w)
    K[1, 0, 2] += 7.0  # off-centre principal point
    rays = prompt_camera(K).get_rays(shapes=(2, h, w)).permute(0, 2, 3, 1).numpy()
    for i in range(2):
        np.testing.assert_allclose(rays[i], _unit(backproject(ones, K[i].double().numpy())), atol=1e-5)
    with torch.no_grad():
        _, out = ud.net.encode_decode({"image": ud.normalise(torch.rand(1, 3, h, w)), "camera": None},
                                      image_metas=[])
    Kp = from_unidepth_K(out["intrinsics"])[0].double().numpy()
    np.testing.assert_allclose(out["rays"][0].permute(1, 2, 0).numpy(), _unit(backproject(ones, Kp)),
                               atol=1e-4)


def test_unidepth_config_checks():
    from pipeline.models.unidepth import UniDepthV2Config, check_input_range, random_config
    idx = {b: random_config(UniDepthV2Config(backbone=b))["model"]["pixel_encoder"]["output_idx"]
           for b in ("vits14", "vitb14", "vitl14")}
    assert idx == {"vits14": [3, 6, 9, 12], "vitb14": [3, 6, 9, 12], "vitl14": [6, 12, 18, 24]}
    assert check_input_range(420, 560) is None
    assert "aspect 4.00" in check_input_range(280, 1120)
    assert "19600 px" in check_input_range(140, 140)
    with pytest.raises(ValueError, match="camera"):
        build_model("unidepth_v2", {**UD_CFG, "camera": "guess"})
    with pytest.raises(ValueError, match="takes no camera"):
        build_model("depth_anything_v2", {**DA_CFG, "camera": "given"})


_IMPORT_PROBE = """
import sys
from pipeline.models import build_model
sys.modules["unidepth"] = None          # the package absent
try:
    build_model("unidepth_v2", {"pretrained": None})
except ValueError as e:
    print("MISSING:", e)
del sys.modules["unidepth"]
sys.modules["google"] = None            # installed, but a runtime import of it is missing
try:
    build_model("unidepth_v2", {"pretrained": None})
except ImportError as e:
    print("BROKEN:", e)
"""


@pytest.mark.slow
def test_unidepth_import_errors_are_reported_as_such():
    """A missing package reads "not installed"; any other import error names its cause."""
    import subprocess
    import sys
    from pathlib import Path
    _require_unidepth()
    r = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parent.parent)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("MISSING", "BROKEN"))]
    assert len(lines) == 2, r.stdout + r.stderr
    assert "not installed" in lines[0]
    assert "fails to import" in lines[1] and "google" in lines[1] and "not installed" not in lines[1]


def ranks_hold_same_weights(model: torch.nn.Module, world: int) -> bool:
    """All-gather every parameter of a DDP rank's model: True when all ranks hold the same."""
    import torch.distributed as dist
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    every = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(every, flat)
    return all(torch.equal(every[0], f) for f in every[1:])


def _ddp_worker(rank: int, world: int, init_file: str) -> None:
    """Two optimiser steps under DistributedDataParallel (gloo), per camera mode and stage.
    find_unused_parameters=False: a trainable parameter that gets no gradient in step 1
    makes step 2 fail ("Expected to have finished reduction in the prior iteration")."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from pipeline.train.losses import intrinsics_loss
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for camera in ("predict", "given"):
            for stage in (1, 2):
                m = build_model("unidepth_v2", {**UD_CFG, "camera": camera}, seed=0)
                m.set_encoder_frozen(stage == 1)
                m.train()
                net = DDP(m)
                opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-2)
                g = torch.Generator().manual_seed(rank)
                for _ in range(2):
                    x, K = torch.rand(1, 3, 42, 56, generator=g), _K(1, 42, 56)
                    out = net(x, K.clone())
                    loss = out["depth"].mean() + (intrinsics_loss(out["K"], K) if m.predicts_K else 0)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                assert ranks_hold_same_weights(m, world), f"{camera} stage {stage}: ranks diverged"
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_unidepth_ddp_two_cpu_processes(tmp_path):
    """The adapter trains under DDP with two CPU processes in both camera modes and stages."""
    import torch.multiprocessing as mp
    _require_unidepth()
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=True)

"""LoRA fine-tuning (pipeline.models.lora, peft): only the encoder's adapters and the decoder train,
under bf16 autocast and DDP (two gloo processes), for Depth-Anything-V2 and UniDepth (tiny random
configs of the real classes); the export merges the adapters, so loading needs no peft."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_models import _require_unidepth, ranks_hold_same_weights
from test_training import paths, run_stage, small_params

from pipeline.config import LoraConfig
from pipeline.models import build_model
from pipeline.models.inference import load_model
from pipeline.models.lora import has_lora, lora_parameters, merged_state_dict, set_encoder_mode

REPO = Path(__file__).resolve().parent.parent
CFGS = {"depth_anything_v2": {"pretrained": None, "size": [84, 112]},
        "unidepth_v2": {"pretrained": None, "backbone": "vits14"}}
HW = {"depth_anything_v2": (56, 70), "unidepth_v2": (42, 56)}


def _build(name: str):
    if name == "unidepth_v2":
        _require_unidepth()
    return build_model(name, CFGS[name], seed=0)


def _inputs(name: str, b: int = 2, seed: int = 0):
    h, w = HW[name]
    g = torch.Generator().manual_seed(seed)
    K = torch.tensor([[0.8 * w, 0, (w - 1) / 2], [0, 0.8 * w, (h - 1) / 2], [0, 0, 1.0]]).repeat(b, 1, 1)
    return torch.rand(b, 3, h, w, generator=g), K


def _perturb_adapters(model, seed: int = 1) -> None:
    """LoRA B starts at zero (the adapted model equals the base): give it values to see."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.copy_(0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", list(CFGS))
def test_lora_trains_adapters_only_and_merges(name: str):
    m = _build(name)
    base = {k: v.clone() for k, v in m.state_dict().items()}
    set_encoder_mode(m, "lora", LoraConfig(rank=4, alpha=8.0))
    m.train()  # must not undo the freeze (UniDepth's backbone re-sets requires_grad in train())
    enc = dict(m.encoder_module().named_parameters())
    assert has_lora(m) and all(p.requires_grad == (".lora_" in n) for n, p in enc.items())
    assert any(p.requires_grad for p in m.decoder_parameters())  # the decoder trains as in `full`
    n_lora = sum(p.numel() for p in lora_parameters(m))
    assert 0 < n_lora < 0.05 * sum(p.numel() for p in enc.values())
    x, K = _inputs(name)
    m(x, K.clone())["depth"].mean().backward()
    assert all(p.grad is not None for n, p in m.named_parameters() if ".lora_B" in n)
    assert all(p.grad is None for n, p in enc.items() if ".lora_" not in n)
    # the merged state dict has the plain architecture's keys; with B = 0 it is the base itself
    merged = merged_state_dict(m)
    assert set(merged) == set(base) and all(torch.equal(merged[k], base[k]) for k in base)
    _perturb_adapters(m)
    m.eval()
    plain = _build(name).eval()
    with torch.no_grad():
        a, base_depth = m(x, K.clone())["depth"], plain(x, K.clone())["depth"]
        plain.load_state_dict(merged_state_dict(m))
        b = plain(x, K.clone())["depth"]
    effect = float((a - base_depth).abs().max())
    assert effect > 1e-4                                  # the adapters act ...
    assert float((a - b).abs().max()) < 0.01 * effect     # ... and merge into the weights exactly


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lora_bf16_autocast_grads_finite():
    """Depth-Anything-V2 only: UniDepth's decoder cannot run under CPU bf16 autocast, LoRA or not
    (its antialiased interpolation has no bf16 CPU kernel); its bf16 path is the GPU's."""
    name = "depth_anything_v2"
    m = _build(name)
    set_encoder_mode(m, "lora", LoraConfig(rank=4))
    _perturb_adapters(m)
    m.train()
    x, K = _inputs(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x, K.clone())
        assert out["depth"].dtype == torch.float32  # the float32 head, whatever the autocast
        out["depth"].mean().backward()
    grads = [p.grad for p in lora_parameters(m)]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


_NO_PEFT = """
import sys, json, torch
sys.modules["peft"] = None                 # peft absent: importing it would fail
from pipeline.models.inference import load_model
m = load_model(sys.argv[1])
x, K = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    d = m(x, K.clone())["depth"]
print(json.dumps({"max_diff": float((d - torch.load(sys.argv[3], weights_only=True)).abs().max()),
                  "peft_loaded": sys.modules.get("peft") is not None}))
"""


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lora_stage2_bf16_checkpoint_and_peft_free_export(tmp_path: Path, index_path: Path):
    """Stage 2 with `encoder: lora` under bf16-mixed: the Lightning checkpoint holds base weights
    plus adapters (weights_only load), the exported safetensors is the merged plain model, equal in
    output to the adapted one and loadable with peft made unimportable."""
    p = small_params(epochs1=1, epochs2=1)
    p["train"]["stage2"].update({"encoder": "lora", "lora": {"rank": 4, "alpha": 8.0, "lr": 5e-3}})
    p["trainer"]["precision"] = "bf16-mixed"
    run_stage("depth_anything_v2", 1, p, index_path, **paths(tmp_path, 1))
    s1 = tmp_path / "models/stage1"
    m2 = run_stage("depth_anything_v2", 2, p, index_path, init_weights=s1, **paths(tmp_path, 2))
    assert np.isfinite(m2["val_volume_ape"])
    ckpt = torch.load(tmp_path / "ckpt/stage2/last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    lora_keys = [k for k in ckpt if ".lora_" in k]
    assert lora_keys and all("backbone" in k for k in lora_keys)
    # rebuild the adapted model from the checkpoint: stage-1 weights + adapters
    adapted = load_model(s1)
    set_encoder_mode(adapted, "lora", LoraConfig(rank=4, alpha=8.0))
    adapted.load_state_dict({k.removeprefix("model."): v for k, v in ckpt.items()})
    exported = load_model(tmp_path / "models/stage2")
    assert not has_lora(exported)
    s1_enc = dict(load_model(s1).encoder_module().named_parameters())
    moved = [n for n, q in exported.encoder_module().named_parameters() if not torch.equal(q, s1_enc[n])]
    assert any("q_proj.weight" in n for n in moved)  # trained adapters were folded into the weights
    assert not any("norm" in n for n in moved)       # the encoder's own other weights stayed
    # equal outputs, and the export loads without peft (the best epoch is the only epoch here)
    x, K = _inputs("depth_anything_v2")
    with torch.no_grad():
        ref = adapted.eval()(x, K.clone())["depth"]
    torch.save((x, K), tmp_path / "in.pt")
    torch.save(ref, tmp_path / "ref.pt")
    r = subprocess.run([sys.executable, "-c", _NO_PEFT, str(tmp_path / "models/stage2"),
                        str(tmp_path / "in.pt"), str(tmp_path / "ref.pt")],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["max_diff"] < 1e-4 and not out["peft_loaded"]


@pytest.mark.slow
def test_lora_config_errors():
    m = _build("depth_anything_v2")
    with pytest.raises(ValueError, match=r"target_modules: \['qkv'\] match no layer.*q_proj"):
        set_encoder_mode(m, "lora", LoraConfig(target_modules=["qkv"]))
    with pytest.raises(ValueError, match="rank >= 1"):
        set_encoder_mode(_build("depth_anything_v2"), "lora", LoraConfig(rank=0))
    with pytest.raises(ValueError, match="train.stage2.encoder"):
        set_encoder_mode(m, "half")
    from pipeline.config import params_from_dict
    with pytest.raises(ValueError, match=r"train.stage2.encoder: expected one of"):
        params_from_dict({"train": {"stage2": {"encoder": "adapters"}}})


def _ddp_worker(rank: int, world: int, init_file: str, names: list[str]) -> None:
    """Two optimiser steps of a LoRA stage 2 under DistributedDataParallel (gloo). UniDepth runs
    with find_unused_parameters=False, so every trainable parameter must get a gradient."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for name in names:
            _ddp_steps(rank, world, name)
    finally:
        dist.destroy_process_group()


def _ddp_steps(rank: int, world: int, name: str) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    m = build_model(name, CFGS[name], seed=0)
    set_encoder_mode(m, "lora", LoraConfig(rank=2))
    m.train()
    start = {n: p.detach().clone() for n, p in m.named_parameters()}
    net = DDP(m, find_unused_parameters=name == "depth_anything_v2")  # as trainer_kwargs does
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    for step in range(2):
        x, K = _inputs(name, b=1, seed=10 * rank + step)
        loss = net(x, K.clone())["depth"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert ranks_hold_same_weights(m, world), f"{name}: ranks diverged"
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, start[n])}
    assert any(".lora_B" in n for n in changed), "adapters did not train"
    enc = {n for n, _ in m.named_parameters() if n.startswith(_encoder_prefix(m))}
    assert all(".lora_" in n for n in changed & enc), "encoder weights moved"


def _encoder_prefix(m) -> str:
    enc = m.encoder_module()
    return next(n for n, mod in m.named_modules() if mod is enc) + "."


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_lora_ddp_two_cpu_processes(tmp_path: Path):
    """One launch of two processes for both models (a launch costs more than the steps); UniDepth
    joins when its optional package is installed (its other tests here skip, saying so)."""
    import torch.multiprocessing as mp
    names = ["depth_anything_v2"] + (["unidepth_v2"] if importlib.util.find_spec("unidepth") else [])
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), names), nprocs=2, join=True)


@pytest.fixture(scope="module")
def index_path(tmp_path_factory) -> Path:
    from test_training import make_index
    return make_index(Path(tmp_path_factory.mktemp("dishes")), n_train=4, n_val=2)

"""bench/gpu_check.py works end to end (CPU smoke: tiny model, bf16 autocast, real loader)."""
from __future__ import annotations

import pytest


@pytest.mark.slow
def test_gpu_check_smoke(capsys):
    from bench import gpu_check
    gpu_check.main(["--smoke", "--steps", "2", "--dishes", "3"])
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith("depth_anything_v2"))
    steps, img_s, step_s, wait = row.split()[2:6]
    assert int(steps) == 2 and float(img_s) > 0 and float(step_s) > 0
    assert 0 <= float(wait.rstrip("%")) < 100


def test_small_config_matches_the_checkpoint_architecture():
    from bench.gpu_check import small_config
    c = small_config(max_depth=2)
    b = c.backbone_config
    assert (b.hidden_size, b.num_hidden_layers, b.num_attention_heads, b.mlp_ratio) == (384, 12, 6, 4)
    assert list(b.out_indices) == [3, 6, 9, 12] and b.patch_size == 14
    assert list(c.neck_hidden_sizes) == [48, 96, 192, 384] and c.fusion_hidden_size == 64
    assert c.head_hidden_size == 32 and c.reassemble_hidden_size == 384

"""The command lines' shared behaviour (pipeline.cli): a stage that fails on bad input prints one
line naming the key or file and exits 2 without a traceback; the model argument is checked once."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import check_model, model_parser, parse_model_args, run_stage
from pipeline.config import params_from_dict

REPO = Path(__file__).resolve().parent.parent


def _one_line(err: str, *needles: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(n in err for n in needles), err


def test_run_stage_turns_bad_input_into_one_line(capsys) -> None:
    def main() -> None:
        raise ValueError("data.root=/nope: not a folder\n(expected a release)")

    with pytest.raises(SystemExit) as e:
        run_stage(main)
    assert e.value.code == 2
    _one_line(capsys.readouterr().err, "data.root=/nope", "(expected a release)")


def test_model_argument_checked_against_params() -> None:
    p = params_from_dict({"eval": {"zero_shot": ["zoedepth"]}})
    assert check_model("depth_anything_v2", p) == "depth_anything_v2"
    with pytest.raises(ValueError, match=r"model: 'zoedepth' is not in params.yaml models \['depth_anything_v2'\]"):
        check_model("zoedepth", p)
    assert check_model("zoedepth", p, zero_shot=True) == "zoedepth"
    args, params = parse_model_args(model_parser("doc", option=True), ["--model", "depth_anything_v2"])
    assert args.model == "depth_anything_v2" and params.models == ["depth_anything_v2"]


@pytest.mark.parametrize("argv, needles", [
    (["stages.evaluate", "midas"], ("model: 'midas' is not in params.yaml models",)),
    (["stages.mass", "midas"], ("model: 'midas'",)),
    (["stages.train", "--model", "depth_anything_v2"], ("--stage",)),            # a usage error: one line too
])
def test_stage_commands_fail_in_one_line(argv: list[str], needles: tuple[str, ...]) -> None:
    r = subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2
    _one_line(r.stderr, *needles)

"""What the command lines share (stages/, the preflight, predict): a failure on bad input is one
line naming the key or file on stderr and exit code 2, never a traceback; and a per-model stage's
model argument is checked against params.yaml once, here. Light: argparse and the params loader."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from pipeline.config import Params, load_params

EXIT_BAD_INPUT = 2
BAD_INPUT = (ValueError, OSError)   # what bad params, files and arguments raise (a bug raises anything else)


def fail(message: str) -> int:
    """Print `error: <message>` on one line to stderr; return the exit code for it."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    return EXIT_BAD_INPUT


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, like every other failure."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see --help)\n")


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage's `main` as a command: bad input -> one line and exit 2 (no traceback)."""
    try:
        main()
    except BAD_INPUT as e:
        sys.exit(fail(str(e)))


def model_parser(doc: str | None, *, option: bool = False, zero_shot: bool = False) -> OneLineParser:
    """A per-model stage's parser: the model as `--model NAME` (option) or positional, and with
    `zero_shot` the `--zero-shot` flag (a model of `eval.zero_shot` instead of `models`)."""
    ap = OneLineParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    help_ = "a name from params.yaml `models:`" + (" (or `eval.zero_shot:` with --zero-shot)" if zero_shot else "")
    if option:
        ap.add_argument("--model", required=True, help=help_)
    else:
        ap.add_argument("model", help=help_)
    if zero_shot:
        ap.add_argument("--zero-shot", action="store_true", help="evaluate a model of eval.zero_shot, untrained")
    return ap


def parse_model_args(parser: argparse.ArgumentParser, argv: list[str] | None,
                     params_path: str | None = None) -> tuple[argparse.Namespace, Params]:
    """(arguments, params) with the model checked: it must be listed in params `models` (or in
    `eval.zero_shot` with --zero-shot). Params from `--params` when the parser has it."""
    args = parser.parse_args(argv)
    params = load_params(getattr(args, "params", None) or params_path)
    check_model(args.model, params, getattr(args, "zero_shot", False))
    return args, params


def check_model(name: str, params: Params, zero_shot: bool = False) -> str:
    """`name` if params list it (`models`, or `eval.zero_shot`), else ValueError naming the list."""
    listed, key = (params.eval.zero_shot, "eval.zero_shot") if zero_shot else (params.models, "models")
    if name not in listed:
        raise ValueError(f"model: {name!r} is not in {params.source} {key} {listed}")
    return name


def student_args(doc: str | None, argv: list[str] | None) -> tuple[argparse.Namespace, Params]:
    """(arguments, params) of a distillation stage: the student, a name of params `distill.students`
    (checked here), and `--params`."""
    from pipeline.config import PARAMS_FILE
    ap = OneLineParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("student", help="a name from params.yaml `distill.students:`")
    ap.add_argument("--params", default=str(PARAMS_FILE))
    args = ap.parse_args(argv)
    params = load_params(args.params)
    if args.student not in params.distill.students:
        raise ValueError(f"student: {args.student!r} is not in {params.source} distill.students "
                         f"{list(params.distill.students)}")
    return args, params

"""DVC stage `preflight` (the first stage; ingest waits for it): in seconds, before a Nutrition5k run
that takes GPU hours, the release root, the checkpoints, the SAM 2 pair, `trainer` against this
machine's devices and the free disk (pipeline.preflight). Each problem: one line naming the key or
file, exit code 2. A no-op on synthetic data. metrics/preflight.json: what was checked (stable, so
ingest does not re-run because the preflight did).

    python -m stages.preflight
"""
import sys
import time

from pipeline import io
from pipeline.cli import EXIT_BAD_INPUT, fail, run_stage
from pipeline.config import load_params
from pipeline.paths import PREFLIGHT_JSON, repo_path


def main() -> None:
    from pipeline.preflight import preflight

    t0 = time.perf_counter()
    p = load_params()
    r = preflight(p, io.REPO_ROOT)
    for note in r.notes:
        print(f"preflight: {note}")
    if r.problems:
        for problem in r.problems:
            fail(problem)
        print(f"preflight: {len(r.problems)} problem(s) in {time.perf_counter() - t0:.1f} s")
        sys.exit(EXIT_BAD_INPUT)
    io.write_json(repo_path(PREFLIGHT_JSON), {"data_source": p.data.source, "checked": r.checked, "problems": 0})
    print(f"preflight: ok ({', '.join(r.checked) or 'nothing to check'}) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    run_stage(main)

"""Bench scripts (run as `python bench/<name>.py`; they print tables). A package only so that
the tests can import the functions they check (`from bench.gpu_check import ...`)."""

"""Held-out evaluation: volume and depth metrics (`metrics`), scoring a depth predictor with
given masks and end to end (`scoring`), non-learned baselines and the measured-depth oracle
(`baselines`), mass rows (`mass`), paired comparisons with bootstrap intervals (`compare`), plots
and the report; every row's name in `names` (light: the compare and report stages need no more)."""

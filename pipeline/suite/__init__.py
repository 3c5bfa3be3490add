"""Suites: one ASHA search per task (all methods in one space each), every method's best trial scored on each task's
report split, and the papers' table (methods x tasks + average) built from it, logged and resumable."""

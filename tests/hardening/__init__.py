"""The hardening run: faults, fuzzing, load, soak and kills, summed up in one table.

``python -m tests.hardening`` (from a checkout with the test dependencies)
runs everything at full size and prints the table the README shows;
``--quick`` shrinks every part to seconds. The suite runs the quick parts
that matter in CI (tests/test_hardening.py).
"""

"""``python -m securesess``: the same command line as ``securesess``."""

from securesess.cli import main

main(prog_name="securesess")

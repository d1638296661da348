"""Shared test configuration."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# "default" keeps the suite quick; HYPOTHESIS_PROFILE=long searches far deeper.
settings.register_profile(
    "default", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("long", max_examples=20_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Files the tests write by hand (a peers.toml, say) get the mode the umask
# gives. The keystore refuses trust files other users may write, so the
# suite runs under the usual 022 whatever the machine's default (Debian
# and Fedora give users 002).
os.umask(0o022)

# New key files are sealed at Argon2id's "moderate" cost (3 passes over 256
# MiB, most of a second each). The CLI the suite runs seals them at the
# "interactive" cost (64 MiB) instead, as --kdf interactive would; the
# library tests pass kdf=Argon2idCost.INTERACTIVE to the keystores they make.
# The tests of the default itself unset this.
os.environ["SECURESESS_KDF"] = "interactive"

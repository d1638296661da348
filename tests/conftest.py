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

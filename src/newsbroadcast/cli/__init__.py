"""The command line: parse, call, print; one module per command group.

Sits on top: may import anything; only ``__main__`` and the console script import it.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The ``newsbroadcast`` console script: exit code of the command in ``argv``."""
    from newsbroadcast.cli.commands import main as run

    return run(argv)

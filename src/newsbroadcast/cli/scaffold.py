"""`newsbroadcast init DIR`: a new site's folder, from the sample site shipped in the package.

The package carries the sample site as package data (``newsbroadcast/site``: in a source
checkout these are links to the repository's ``config/``, ``templates/`` and ``examples/``,
so the shipped copy is always the one the tests run on). The new folder passes
``newsbroadcast check`` as soon as ``NEWSBROADCAST_SECRET`` is set.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from newsbroadcast.errors import InputError

PARTS = ("config", "templates", "examples")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "*.pem", "*.db")


def init_site(target: Path, force: bool = False) -> list[Path]:
    """Copy the sample site's folders into ``target``; returns the folders made. Refuses
    (InputError) to write over a folder that has files in it, unless ``force``."""
    existing = [
        target / part
        for part in PARTS
        if (target / part).exists() and any((target / part).iterdir())
    ]
    if existing and not force:
        shown = ", ".join(str(p) for p in existing)
        raise InputError(f"{shown} already exist(s) and are not empty (--force overwrites)")
    made = []
    with resources.as_file(resources.files("newsbroadcast") / "site") as bundled:
        for part in PARTS:
            source = Path(bundled) / part
            if not source.is_dir():
                raise InputError(f"the package has no bundled {part}/ (a broken install?)")
            shutil.copytree(source, target / part, ignore=_IGNORE, dirs_exist_ok=True)
            made.append(target / part)
    return made

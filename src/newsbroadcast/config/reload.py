"""Hot reload for `run`: a change saved in config/ or templates/ takes effect without a restart.

A scheduler job (the scheduler's one worker thread, so never in the middle of a step) reads
every file in both folders every ``scheduler.watch_every`` and compares their contents with
the last look. On a change it does what ``check`` does (load and validate the YAML, compile
every template, render each digest once per language); only when all of that passes does
the service switch to the new configuration and templates and the jobs get rescheduled.
A change that fails is logged with its file:line problems and the service carries on with
the last good configuration and templates: the templates in use are an in-memory snapshot,
so a broken file on disk is never read by a send.

Content hashes, not modification times: an editor that saves twice within a second, or a
`cp -p`, still counts as a change, and a `touch` alone does not.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.interval import IntervalTrigger

from newsbroadcast.config.checks import template_problems, trial_problems
from newsbroadcast.config.model import Config, load_config
from newsbroadcast.errors import ConfigError, Problem
from newsbroadcast.render.templates import make_environment

if TYPE_CHECKING:  # the service sits on top: it uses this module, not the other way round
    from newsbroadcast.service import Service

log = logging.getLogger("newsbroadcast.reload")

JOB_ID = "reload"
_SECTIONS = ("site", "sources", "email", "digests", "social", "scheduler", "web", "api")


def snapshot(folders: list[Path]) -> dict[str, str]:
    """``{path: sha256}`` of every file under ``folders`` (dot files and editor backups
    left out)."""
    seen: dict[str, str] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            name = path.name
            if name.startswith(".") or name.endswith(("~", ".swp", ".swx", ".tmp")):
                continue
            try:
                if path.is_file():
                    seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                continue  # removed between listing and reading: the next look sees it
    return seen


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


@dataclass
class Outcome:
    changed: list[str]
    applied: bool
    problems: list[Problem] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)


class ConfigWatcher:
    """Looks for changes and applies the valid ones to a running Service."""

    def __init__(
        self,
        service: Service,
        config_file: Path,
        on_applied: Callable[[Config], None] | None = None,
    ) -> None:
        self.service = service
        self.config_file = config_file
        self.on_applied = on_applied
        self.seen = snapshot(self.folders(service.config))

    def folders(self, config: Config) -> list[Path]:
        return [self.config_file.resolve().parent, config.path(config.templates)]

    def look(self) -> Outcome | None:
        """One look: None when nothing changed since the last."""
        now = snapshot(self.folders(self.service.config))
        changed = changed_files(self.seen, now)
        if not changed:
            return None
        self.seen = now
        try:
            config = load_config(self.config_file)
            env = make_environment(config.path(config.templates), snapshot=True)
            problems = template_problems(config) or trial_problems(config, env)
            if problems:
                raise ConfigError(problems)
        except ConfigError as e:
            log.error(
                "configuration change rejected, still running on the last good one: %s",
                "; ".join(str(p) for p in e.problems),
                extra={"changed": changed, "problems": [str(p) for p in e.problems]},
            )
            return Outcome(changed, applied=False, problems=e.problems)
        old = self.service.config
        sections = [s for s in _SECTIONS if getattr(old, s) != getattr(config, s)]
        if config.database_url != old.database_url:
            log.warning("database.url changed: the service keeps the old one until a restart")
        self.service.reconfigure(config, env)
        # `seen` stays the look taken before loading: a file saved while this one was
        # applied is a change for the next look, not taken as seen. (If the templates
        # folder moved, the next look reloads once more, harmlessly, to catch up.)
        templates_dir = str(config.path(config.templates))
        if any(p.startswith(templates_dir) for p in changed):
            sections.append("templates")
        log.info(
            "configuration reloaded: %s changed (%s)",
            ", ".join(sections) or "no setting",
            ", ".join(Path(p).name for p in changed),
            extra={"changed": changed, "sections": sections},
        )
        if self.on_applied is not None:
            self.on_applied(config)
        return Outcome(changed, applied=True, sections=sections)

    def look_safely(self) -> None:
        try:
            self.look()
        except Exception:
            log.exception("looking for configuration changes failed; will look again")


def watch(scheduler: BaseScheduler, watcher: ConfigWatcher, every_seconds: float) -> None:
    scheduler.add_job(
        watcher.look_safely,
        IntervalTrigger(seconds=every_seconds),
        id=JOB_ID,
        # However late (once): queued behind a dispatch step, every look would be "missed".
        misfire_grace_time=None,
        replace_existing=True,
    )


def reschedule(live: BaseScheduler, fresh: BaseScheduler) -> list[str]:
    """Make ``live``'s jobs those of ``fresh`` (a scheduler built from the new config, not
    started). Digest jobs are always replaced (they hold the digest's settings); poll and
    dispatch jobs only when their interval changed, so a reload does not delay them.
    Returns the ids of the jobs added, replaced or removed."""
    wanted = {job.id: job for job in fresh.get_jobs()}
    current = {job.id: job for job in live.get_jobs() if job.id != JOB_ID}
    touched = []
    for job_id in current.keys() - wanted.keys():
        live.remove_job(job_id)
        touched.append(job_id)
    for job_id, job in wanted.items():
        old = current.get(job_id)
        same = (
            old is not None
            and not job_id.startswith("digest:")
            and isinstance(old.trigger, IntervalTrigger)
            and isinstance(job.trigger, IntervalTrigger)
            and old.trigger.interval == job.trigger.interval
        )
        if same:
            continue
        live.add_job(
            job.func,
            job.trigger,
            id=job_id,
            misfire_grace_time=job.misfire_grace_time,
            replace_existing=True,
        )
        touched.append(job_id)
    return sorted(touched)

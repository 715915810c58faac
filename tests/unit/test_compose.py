"""docker-compose.yml cannot be started here (no Docker engine); check what can be checked:
its shape, and that the sample config really switches to its PostgreSQL and Mailpit."""

from __future__ import annotations

from pathlib import Path

import yaml

from newsbroadcast.config.model import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_defines_postgres_mailpit_and_the_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "mailpit", "newsbroadcast"}
    app = services["newsbroadcast"]
    assert "./config:/app/config:ro" in app["volumes"]
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (ROOT / app["build"] / "Dockerfile").exists()
    for volume in ("pgdata", "var"):
        assert volume in compose["volumes"]


def test_sample_config_follows_the_compose_environment() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {
        k: str(v).replace("${NEWSBROADCAST_SECRET:-", "").rstrip("}")
        for k, v in compose["services"]["newsbroadcast"]["environment"].items()
    }
    config = load_config(ROOT / "config/newsbroadcast.yaml", env=env)
    assert config.database_url.startswith("postgresql+psycopg://newsbroadcast:")
    assert config.email.transport == "smtp"
    assert config.email.smtp is not None
    assert (config.email.smtp.host, config.email.smtp.effective_port) == ("mailpit", 1025)
    assert config.email.smtp.security == "none"

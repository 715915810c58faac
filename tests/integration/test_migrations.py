from alembic import command
from sqlalchemy import Engine, inspect

from newsbroadcast.db.engine import alembic_config, upgrade


def test_migrations_match_models_and_rerun_safely(engine: Engine) -> None:
    upgrade(engine)  # a second upgrade on start is a no-op
    command.check(alembic_config(engine))  # raises if models and migrations drift apart
    tables = set(inspect(engine).get_table_names())
    assert {"articles", "subscribers", "editions", "deliveries", "posts"} <= tables

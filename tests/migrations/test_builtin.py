"""pytest-alembic's four built-in tests against the project's revisions, each in a fresh database:
one head, base to head upgrades, the models of backend/database.py match the DDL at head, and every
revision downgrades and upgrades again one by one. `nox -s migrations` runs them per server version.

Imported as functions, as the plugin is disabled (see conftest.py).
"""

from pytest_alembic.tests import (  # noqa: F401  (collected by pytest)
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

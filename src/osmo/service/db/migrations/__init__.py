"""Alembic migrations of the control-plane schema (run by ``osmo.service.db.migrate``)."""

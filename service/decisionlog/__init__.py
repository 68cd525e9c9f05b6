"""The decision log (issue 26): every served decision recorded with the matrix it was
decided under, outcomes joined by prediction id, and the value report over both.

``store`` (SQLAlchemy Core over SQLite or PostgreSQL, Alembic migrations), ``writer`` (the
bounded queue and its thread), ``entries`` (answers as rows), ``ids`` (prediction ids),
``outcomes`` (what ``POST /outcomes`` stores), ``report`` (``GET /models/{name}/value``).
"""

"""The ledger's one schema, for SQLite and PostgreSQL alike (only column types differ).

Tables:

* ``ledger_meta``: key/value facts about the database (schema version, journal imports).
* ``jobs``: one row per job: the fingerprint of its prompt set, its budget, credits reserved
  and charged, whether it was cancelled.
* ``lines``: one row per input line of a job: the request (JSON), and what the journal's
  records fold into (phase, task id, attempts, status, error, url, file, credits,
  fingerprint, the idempotency key last intended); its price, the credits the job
  reserves for it while its outcome is open (``reserved``: the budget) and its final charge
  once completed (``charged``); the host and directory its clip was downloaded to; the
  worker holding it and the lease's expiry.
  ``jobs.reserved`` and ``jobs.charged`` are the sums of those two columns, kept in the
  transactions that change them (see :mod:`._ledger_ops`).
  ``phase = 'pending'`` marks a line whose request is known but not yet worked on.
* ``attempts``: one row per intended submission of a line: its idempotency key.
* ``events``: every record appended, in order, as JSON (the audit trail; what the journal
  file was).
* ``leases``: one row per worker of a job: its last heartbeat and when its lease expires.
"""

from __future__ import annotations

__all__ = ["LINE_COLUMNS", "SCHEMA_VERSION", "ddl", "migrations", "upsert_line_sql"]

#: 1: the first release of the ledger; 2: ``lines.charged`` (reservations settled per line),
#: ``lines.host`` and ``lines.out_dir`` (where a line's clip was downloaded)
SCHEMA_VERSION = 2

_DDL = """
CREATE TABLE IF NOT EXISTS ledger_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY,
    prompts_sha256 TEXT,
    budget {real},
    reserved {real} NOT NULL DEFAULT 0,
    charged {real} NOT NULL DEFAULT 0,
    cancelled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lines (
    job TEXT NOT NULL REFERENCES jobs(name),
    line INTEGER NOT NULL,
    request TEXT,
    phase TEXT NOT NULL,
    task_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    status TEXT,
    error TEXT,
    url TEXT,
    path TEXT,
    size {bigint},
    sha256 TEXT,
    credits {real},
    fingerprint TEXT,
    idempotency_key TEXT,
    price {real},
    reserved {real},
    charged {real},
    host TEXT,
    out_dir TEXT,
    worker TEXT,
    lease_until {real},
    updated_at TEXT,
    PRIMARY KEY (job, line)
);
CREATE INDEX IF NOT EXISTS lines_by_phase ON lines (job, phase);
CREATE TABLE IF NOT EXISTS attempts (
    job TEXT NOT NULL,
    line INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    idempotency_key TEXT,
    fingerprint TEXT,
    ts TEXT NOT NULL,
    PRIMARY KEY (job, line, attempt)
);
CREATE TABLE IF NOT EXISTS events (
    id {serial},
    job TEXT NOT NULL,
    line INTEGER,
    ts TEXT NOT NULL,
    event TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job, id);
CREATE TABLE IF NOT EXISTS leases (
    job TEXT NOT NULL,
    worker TEXT NOT NULL,
    heartbeat {real} NOT NULL,
    expires {real} NOT NULL,
    PRIMARY KEY (job, worker)
)
"""

_TYPES = {
    "sqlite": {"real": "REAL", "bigint": "INTEGER", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {
        "real": "DOUBLE PRECISION",
        "bigint": "BIGINT",
        "serial": "BIGSERIAL PRIMARY KEY",
    },
}

#: the columns of ``lines`` a record's fold sets (LineState's fields, in order, then the time)
LINE_COLUMNS = (
    "phase",
    "task_id",
    "attempts",
    "status",
    "error",
    "url",
    "path",
    "size",
    "sha256",
    "credits",
    "fingerprint",
    "idempotency_key",
    "updated_at",
)


def ddl(dialect: str) -> list[str]:
    """The statements that create the schema (idempotent) for ``dialect``."""
    text = _DDL.format(**_TYPES[dialect])
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]


_DONE = "phase IN ('finished', 'downloaded', 'download_failed')"

#: version → the statements that bring a database of the version before it to it
_MIGRATIONS = {
    2: [
        "ALTER TABLE lines ADD COLUMN charged {real}",
        "ALTER TABLE lines ADD COLUMN host TEXT",
        "ALTER TABLE lines ADD COLUMN out_dir TEXT",
        # a completed line's reservation becomes its charge (the figure the service reported
        # at its create, else its price: version 1 kept no final charge)
        "UPDATE lines SET charged = COALESCE(credits, reserved, price, 0), reserved = 0 "
        f"WHERE status = 'completed' AND {_DONE}",
        # a failed, cancelled or refused line was refunded: its reservation is released
        "UPDATE lines SET charged = 0, reserved = 0 "
        "WHERE phase = 'finished' AND status IS NOT NULL AND status <> 'completed'",
        "UPDATE jobs SET "
        "reserved = (SELECT COALESCE(SUM(reserved), 0) FROM lines WHERE lines.job = jobs.name), "
        "charged = (SELECT COALESCE(SUM(charged), 0) FROM lines WHERE lines.job = jobs.name)",
    ],
}


def migrations(dialect: str, version: int) -> list[str]:
    """The statements that bring a ``version`` database to :data:`SCHEMA_VERSION`."""
    types = _TYPES[dialect]
    return [
        stmt.format(**types) if "{" in stmt else stmt
        for to in range(version + 1, SCHEMA_VERSION + 1)
        for stmt in _MIGRATIONS.get(to, [])
    ]


def upsert_line_sql() -> str:
    """Insert or update a line's folded state: ``(job, line, *LINE_COLUMNS)`` parameters."""
    names = ", ".join(LINE_COLUMNS)
    marks = ", ".join("?" for _ in LINE_COLUMNS)
    updates = ", ".join(f"{name} = excluded.{name}" for name in LINE_COLUMNS)
    return (
        f"INSERT INTO lines (job, line, {names}) VALUES (?, ?, {marks}) "
        f"ON CONFLICT (job, line) DO UPDATE SET {updates}"
    )

"""Payment flows: each step is unit of work → ledger → unit of work, never nested (on
SQLite a unit of work holds the write lock the ledger needs), with deterministic transfer
ids so that re-driving a step never moves money twice."""

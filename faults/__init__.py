"""Scripted fault scenarios against a production-like deployment: `make faults` (see `python -m faults --help`).

Each scenario starts daphne, Celery workers and beat against its own fresh database in a throwaway PostgreSQL
cluster and an emptied throwaway Redis (both on free loopback ports, never the machine's shared 5432/6379), injects
one fault and checks what must hold, with short recovery settings (RECOVERY_ENV in infra.py). Not part of CI: it
restarts databases. `FAULTS_LOGS_DIR=/some/dir` keeps every process's log per scenario.
"""

"""The embedded Celery worker and beat of `manage.py serve` (the no-Redis default).

Without a broker service the worker and beat run as threads of the web process over kombu's
in-memory transport, so tasks enqueued by a request and events published to the in-memory
channel layer reach the same process. With Redis the same code runs as separate
`celery worker` / `celery beat` processes instead (see docker-compose.yml).
"""

from __future__ import annotations

import logging
import threading

from celery import beat
from celery.worker import WorkController

from claraverse.celery import app

logger = logging.getLogger("claraverse.embedded")


class EmbeddedCelery:
    """A Celery worker (thread pool) and, optionally, beat running inside this process."""

    def __init__(self, *, concurrency: int, with_beat: bool = True):
        self.concurrency = concurrency
        self.with_beat = with_beat
        self.worker: WorkController | None = None
        self.beat_service: beat.Service | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the worker (and beat) threads; returns once the worker consumes."""
        ready = threading.Event()
        self.worker = app.WorkController(
            pool_cls="threads",
            concurrency=self.concurrency,
            hostname="embedded@localhost",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=lambda _consumer: ready.set(),
            loglevel="WARNING",
        )
        self._spawn("celery-worker", self.worker.start)
        if not ready.wait(timeout=30):
            raise RuntimeError("The embedded Celery worker did not start within 30 s.")
        if self.with_beat:
            self.beat_service = beat.Service(app=app, scheduler_cls=app.conf.beat_scheduler, max_interval=5)
            self._spawn("celery-beat", self.beat_service.start)
        logger.info("embedded Celery worker (%d threads)%s started", self.concurrency, " and beat" * self.with_beat)

    def _spawn(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop beat, then let the worker finish what it is running."""
        if self.beat_service is not None:
            self.beat_service.stop()
        if self.worker is not None:
            self.worker.stop(in_sighandler=False)
        for thread in self._threads:
            thread.join(timeout=10)

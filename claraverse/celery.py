"""The Celery application: worker and beat in production, embedded threads in `manage.py serve`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claraverse.settings.base")


def _closed_redis_channel_is_a_connection_error() -> None:
    """Keep a worker alive when Redis goes away while it runs `acks_late` tasks (a kombu bug, 5.7).

    After a broker connection loss Celery `collect()`s the connection, which detaches the kombu transport, then
    closes it: the Redis channel then restores its unacknowledged messages, and later the tasks still running ack
    theirs, through that detached transport. kombu raises AttributeError there instead of a connection error, so
    Celery calls it unrecoverable and the worker exits instead of reconnecting. Raising the connection error it is
    lets kombu and Celery handle it as they handle any lost connection (ignored on close, logged on ack). The
    messages stay in Redis's unacked index, which gives them back after the visibility timeout; the tasks are
    idempotent (executions are claimed once, webhook attempts recorded once) and the executions reaper covers a
    Redis that lost them.
    """
    from kombu.transport import redis as kombu_redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    original = kombu_redis.Channel._connparams
    if getattr(original, "claraverse_patched", False):
        return

    def _connparams(self, asynchronous=False):
        if self.connection is None or getattr(self.connection, "client", None) is None:
            raise RedisConnectionError("The broker connection of this channel is closed.")
        return original(self, asynchronous=asynchronous)

    _connparams.claraverse_patched = True
    kombu_redis.Channel._connparams = _connparams


_closed_redis_channel_is_a_connection_error()

app = Celery("claraverse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

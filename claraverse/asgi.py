"""ASGI entry point served by daphne: HTTP through Django, WebSockets through Channels."""

import os
from concurrent.futures import ThreadPoolExecutor

import django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections, reset_queries

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claraverse.settings.base")
django.setup(set_prefix=False)


HEALTH_PATH = "/health"


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler, reshaped for an application whose views and middleware are synchronous.

    `bench.rest` profiled Django's default handling of a simple authenticated GET: most of its CPU went
    to moving between the event loop and threads, not to the view. Two changes:

    - The middleware chain is built for sync code (WhiteNoise and our own middleware cannot run async),
      so a request crosses into a worker thread once, as under WSGI, instead of several times (into the
      first sync middleware, back out for the async ones, in again for the view).
    - Requests run on a fixed pool of `WEB_THREADS` threads instead of a new thread per request (what
      Django's per-request `ThreadSensitiveContext` does). Each request's database connection is
      checked before and handed back after it in the same thread, as `request_started` and
      `request_finished` would do under WSGI.
    """

    def __init__(self):
        super().__init__()
        self.executor = ThreadPoolExecutor(max_workers=settings.WEB_THREADS, thread_name_prefix="http-request")
        # Health probes get threads of their own: when the database is down every request thread may be
        # waiting on the pool, and the load balancer must still hear "503" quickly, not time out.
        self.health_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="http-health")
        # `handle()` sends request_started from the event loop, so its synchronous receivers (which
        # only reset the query log and check the connection) would cost one more thread hop per
        # request; `_respond` does their work in the request's own thread instead.
        signals.request_started.disconnect(close_old_connections)
        signals.request_started.disconnect(reset_queries)
        signals.request_finished.disconnect(close_old_connections)

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)

    async def get_response_async(self, request):
        executor = self.health_executor if request.path == HEALTH_PATH else self.executor
        return await sync_to_async(self._respond, thread_sensitive=False, executor=executor)(request)

    def _respond(self, request):
        reset_queries()
        close_old_connections()
        try:
            return self.get_response(request)
        finally:
            # Responses here never read the database while streaming (uploads stream a file), so the
            # connection goes back to the pool now rather than staying with an idle thread.
            close_old_connections()


django_asgi_app = SyncChainASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.authentication import QueryStringTokenAuthMiddleware  # noqa: E402
from claraverse.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": QueryStringTokenAuthMiddleware(URLRouter(websocket_urlpatterns)),
    }
)

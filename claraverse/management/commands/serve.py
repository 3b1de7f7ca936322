"""`manage.py serve`: daphne on PORT, plus the embedded Celery worker and beat when configured."""

import gc
import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Serve HTTP and WebSockets with daphne. In the embedded mode (no REDIS_URL) the Celery "
        "worker and beat run inside this process."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3001")))
        parser.add_argument("--no-worker", action="store_true", help="Do not run the embedded worker and beat.")

    def handle(self, *args, host, port, no_worker, **options):
        from daphne.access import AccessLogGenerator
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server, twisted_loop

        from claraverse.asgi import application
        from claraverse.channel_layer import use_server_loop

        use_server_loop(twisted_loop)
        embedded = None
        if settings.EMBEDDED_WORKER and not no_worker:
            from claraverse.embedded import EmbeddedCelery

            embedded = EmbeddedCelery(concurrency=settings.EMBEDDED_WORKER_CONCURRENCY)
            embedded.start()
        self.stdout.write(f"ClaraVerse listening on http://{host}:{port} (Ctrl-C stops everything)")
        server = Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            signal_handlers=True,
            action_logger=AccessLogGenerator(sys.stdout),
            # Frames up to 4x our limit reach the consumer, which answers an `error` frame and stays
            # open; only absurd ones are cut off by the protocol layer.
            websocket_max_message_size=4 * settings.WEBSOCKET_MAX_FRAME_BYTES,
        )
        # Everything loaded so far lives as long as the process: moving it out of the collector's
        # generations keeps full collections (which pause every stream) short.
        gc.collect()
        gc.freeze()
        try:
            server.run()
        finally:
            if embedded is not None:
                embedded.stop()

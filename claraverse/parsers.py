"""The JSON parser every endpoint uses."""

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .errors import ApplicationError


class JsonBodyParser(JSONParser):
    """JSON bodies with a size cap, and a 400 (not a 500) for nesting too deep to parse."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ApplicationError("PAYLOAD_TOO_LARGE", "Request body too large.", details={"max_bytes": limit})
        if not raw:
            raise ParseError("Request body is empty; send a JSON object.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json.loads(raw.decode(encoding))
        except RecursionError:
            raise ParseError("JSON nested too deeply.") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error: {exc}") from None

"""`read_document`: the extracted text of one of the caller's uploaded files.

Only the caller's own, unexpired uploads are visible: another user's file id and an expired one both
answer "file not found", so that a guessed id reveals nothing.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from integrations.tools.builtin.common import clip
from integrations.tools.registry import Tool, ToolContext, ToolExecutionError

DEFAULT_MAX_CHARS = 20_000
MAX_CHARS = 100_000
MIN_CHARS = 100
MAX_FILE_ID_LENGTH = 64


def _not_found(file_id: str) -> ToolExecutionError:
    shown = "".join(char if char.isprintable() else "?" for char in file_id[:MAX_FILE_ID_LENGTH])
    return ToolExecutionError(f"File '{shown}' was not found (it may have expired or belong to someone else).")


def _execute(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    file_id = arguments["file_id"].strip()
    # Imported here: the tool registry is built at import time, possibly before the app registry is ready.
    from uploads.models import Upload

    user = context.user
    if user is None or not getattr(user, "is_authenticated", False):
        raise ToolExecutionError("read_document needs a signed-in user: files are private to their owner.")
    upload = (
        Upload.objects.filter(pk=file_id, user=user, expires_at__gt=timezone.now())
        .only("id", "filename", "mime_type", "text")
        .first()
    )
    if upload is None:
        raise _not_found(file_id)

    full_text = upload.text or ""
    offset = arguments.get("offset", 0)
    if offset and offset >= len(full_text):
        raise ToolExecutionError(f"The offset {offset} is past the end of the text ({len(full_text)} characters).")
    text, truncated = clip(full_text[offset:], arguments.get("max_chars", DEFAULT_MAX_CHARS))
    result: dict[str, Any] = {
        "file_id": upload.id,
        "filename": upload.filename,
        "mime_type": upload.mime_type,
        "text": text,
        "truncated": truncated,
        "total_chars": len(full_text),
    }
    if truncated:
        result["next_offset"] = offset + len(text)
    if not full_text:
        result["note"] = "No text could be extracted from this file (it may be an image or a scanned document)."
    return result


READ_DOCUMENT = Tool(
    name="read_document",
    display_name="Read Document",
    description=(
        "Read the text of a file the user uploaded (PDF, Word, text, CSV, ...) by its file id. Long documents are "
        "returned in pieces: when 'truncated' is true, call again with offset = next_offset to read on."
    ),
    category="documents",
    icon="FileText",
    parameters={
        "type": "object",
        "properties": {
            "file_id": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_FILE_ID_LENGTH,
                "description": "The uploaded file's id, e.g. 'file_3kJ9...'.",
            },
            "max_chars": {
                "type": "integer",
                "minimum": MIN_CHARS,
                "maximum": MAX_CHARS,
                "default": DEFAULT_MAX_CHARS,
                "description": (
                    f"At most this many characters of text (default {DEFAULT_MAX_CHARS}); very long text is also "
                    "cut to fit one tool result (about 28 KB)."
                ),
            },
            "offset": {
                "type": "integer",
                "minimum": 0,
                "default": 0,
                "description": "Start reading at this character (0 for the beginning).",
            },
        },
        "required": ["file_id"],
        "additionalProperties": False,
    },
    execute=_execute,
    keywords=("document", "file", "upload", "pdf", "read", "text", "attachment", "docx", "csv", "summarize"),
)

"""Multipart parsing for uploads: the size limit is enforced while the body is read, not after.

Django does not cap file parts (DATA_UPLOAD_MAX_MEMORY_SIZE covers only the other fields), so a
handler placed before Django's own counts the file bytes as they arrive and stops the parse at
UPLOAD_MAX_BYTES. Files up to FILE_UPLOAD_MAX_MEMORY_SIZE stay in memory, larger ones are spooled
to a temporary file, so no upload fills memory.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import (
    FileUploadHandler,
    MemoryFileUploadHandler,
    StopUpload,
    TemporaryFileUploadHandler,
)
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from rest_framework.exceptions import ParseError, UnsupportedMediaType
from rest_framework.parsers import DataAndFiles, MultiPartParser

from claraverse.errors import ApplicationError

from .conf import upload_max_bytes

# Boundaries and part headers around the file; generous, it only decides when to refuse before reading.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def too_large(max_bytes: int) -> ApplicationError:
    """The 413 of an upload over the limit (CONTRACT §1)."""
    return ApplicationError(
        "PAYLOAD_TOO_LARGE",
        f"The file is larger than the limit of {max_bytes} bytes.",
        details={"max_bytes": max_bytes},
    )


class UploadSizeLimitHandler(FileUploadHandler):
    """Counts file bytes as they stream in and stops the upload past UPLOAD_MAX_BYTES."""

    def __init__(self, request=None):
        super().__init__(request)
        self.max_bytes = upload_max_bytes()
        self.received = 0
        self.exceeded = False

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # A body declared larger than any acceptable one is refused before a byte of it is read;
        # a smaller declared length is not trusted, the chunks below are counted regardless.
        largest_body = self.max_bytes + settings.DATA_UPLOAD_MAX_MEMORY_SIZE + MULTIPART_OVERHEAD_BYTES
        if content_length and content_length > largest_body:
            raise too_large(self.max_bytes)

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.max_bytes:
            self.exceeded = True
            # Django then closes (and deletes) the partial temporary file and stops reading the body.
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None


class UploadMultiPartParser(MultiPartParser):
    """multipart/form-data with UploadSizeLimitHandler in front of Django's memory and temporary-file handlers."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        request = parser_context["request"]
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        limit = UploadSizeLimitHandler(request)
        handlers = [limit, MemoryFileUploadHandler(request), TemporaryFileUploadHandler(request)]
        try:
            data, files = DjangoMultiPartParser(meta, stream, handlers, encoding).parse()
        except MultiPartParserError as exc:
            raise ParseError(f"Multipart form parse error - {exc}")
        if limit.exceeded:
            raise too_large(limit.max_bytes)
        return DataAndFiles(data, files)


def multipart_data(request):
    """`request.data` of an upload view; a body that is not multipart/form-data is a 400 naming `file`."""
    try:
        return request.data
    except UnsupportedMediaType:
        message = "Send the file as multipart/form-data in the field `file`."
        raise ApplicationError("VALIDATION_ERROR", message, details={"file": [message]})

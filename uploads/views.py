"""Upload endpoints: upload, status, delete, and the owner-only file URL."""

from __future__ import annotations

import logging
import unicodedata
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from claraverse.errors import ApplicationError
from claraverse.image_proxy import CONTENT_SECURITY_POLICY, BinaryContentNegotiation
from claraverse.openapi import ERROR_RESPONSES
from claraverse.ratelimit import AuthenticatedThrottle
from claraverse.serializers import validated

from . import selectors, services, storage
from .models import Upload
from .parsers import UploadMultiPartParser, multipart_data
from .serializers import UploadCreateSerializer, UploadSerializer, UploadStatusSerializer
from .sniffing import IMAGE_EXTENSIONS
from .throttles import UploadThrottle

logger = logging.getLogger("claraverse.uploads")

AUTH_ERRORS = ERROR_RESPONSES.pick(401, 429)


class UploadScopedView(APIView):
    """Base of every `/api/upload/:id...` view: the upload is looked up among the caller's own (404 otherwise)."""

    def get_upload(self, file_id: str) -> Upload:
        return selectors.upload_get(user=self.request.user, file_id=file_id)


class UploadCreateView(APIView):
    parser_classes = [UploadMultiPartParser]
    throttle_classes = [AuthenticatedThrottle, UploadThrottle]

    @extend_schema(
        operation_id="uploads_create",
        request={"multipart/form-data": UploadCreateSerializer},
        responses={201: UploadSerializer, **ERROR_RESPONSES.pick(400, 413, 415), **AUTH_ERRORS},
        tags=["uploads"],
        description=(
            "Upload one file in the multipart field `file`. The type is sniffed from the content: images (PNG, "
            "JPEG, GIF, WebP), PDF, DOCX, or UTF-8 text (plain, Markdown, CSV, JSON; the file name's extension "
            "chooses among these). 413 over UPLOAD_MAX_BYTES, 415 for any other type. Limited to "
            "RATE_LIMIT_UPLOAD uploads a minute per user."
        ),
    )
    def post(self, request):
        body = validated(UploadCreateSerializer, multipart_data(request))
        upload = services.upload_create(user=request.user, uploaded_file=body["file"], source="web")
        return Response(UploadSerializer(upload).data, status=status.HTTP_201_CREATED)


class UploadStatusView(UploadScopedView):
    @extend_schema(
        operation_id="uploads_status",
        responses={200: UploadStatusSerializer, **ERROR_RESPONSES.pick(404), **AUTH_ERRORS},
        tags=["uploads"],
        description="Whether the upload is `ready` or `expired`; 404 once the clean-up task removed it.",
    )
    def get(self, request, file_id: str):
        return Response(UploadStatusSerializer(self.get_upload(file_id)).data)


class UploadDetailView(UploadScopedView):
    @extend_schema(
        operation_id="uploads_delete",
        responses={
            204: OpenApiResponse(description="Deleted with its file."),
            **ERROR_RESPONSES.pick(404),
            **AUTH_ERRORS,
        },
        tags=["uploads"],
        description="Delete the upload and its stored file.",
    )
    def delete(self, request, file_id: str):
        services.upload_delete(upload=self.get_upload(file_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class UploadFileResponse(FileResponse):
    """A FileResponse that under ASGI reads the file chunk by chunk in a thread instead of buffering it whole."""

    # Django's ASGI handler would otherwise turn the synchronous file iterator into a list first.
    async def __aiter__(self):
        read = sync_to_async(self.file_to_stream.read, thread_sensitive=False)
        while chunk := await read(self.block_size):
            yield chunk


def _content_disposition(upload: Upload) -> str:
    disposition = "inline" if upload.mime_type in IMAGE_EXTENSIONS else "attachment"
    ascii_name = unicodedata.normalize("NFKD", upload.filename).encode("ascii", "ignore").decode("ascii")
    ascii_name = ascii_name.replace("\\", "_").replace('"', "_").strip() or f"file.{upload.extension}"
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(upload.filename, safe='')}"


def _content_type(upload: Upload) -> str:
    return f"{upload.mime_type}; charset=utf-8" if upload.mime_type.startswith("text/") else upload.mime_type


class UploadFileView(APIView):
    content_negotiation_class = BinaryContentNegotiation

    @extend_schema(
        operation_id="uploads_file",
        responses={
            (200, "*/*"): OpenApiResponse(
                response=OpenApiTypes.BINARY, description="The file's bytes, under the type sniffed at upload."
            ),
            **ERROR_RESPONSES.pick(404),
            **AUTH_ERRORS,
        },
        tags=["uploads"],
        description="The file of an upload, to its owner only; 404 once expired. `name` is `<file id>.<extension>`.",
    )
    def get(self, request, name: str):
        file_id, _, extension = name.rpartition(".")
        upload = selectors.upload_get_servable(user=request.user, file_id=file_id, extension=extension)
        try:
            handle = storage.open_for_reading(upload.storage_name)
        except FileNotFoundError:
            logger.warning("stored file of upload %s is missing", upload.id)
            raise ApplicationError("NOT_FOUND", "File not found.") from None
        response = UploadFileResponse(handle, content_type=_content_type(upload))
        response["Content-Disposition"] = _content_disposition(upload)
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response["Cache-Control"] = "private, no-store"
        return response

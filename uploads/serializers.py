"""Upload shapes (API.md Upload Endpoints, CONTRACT §10)."""

from rest_framework import serializers

from claraverse.serializers import StrictInputSerializer

from .models import Upload

STATUS_HELP = "`ready`, or `expired` once past `expires_at` (the file is then no longer served)."


class UploadSerializer(serializers.ModelSerializer):
    """The answer to an upload: API.md's body plus `status`."""

    url = serializers.CharField(source="url_path", read_only=True, help_text="Path serving the file to its owner.")
    status = serializers.CharField(read_only=True, help_text=STATUS_HELP)

    class Meta:
        model = Upload
        fields = ["id", "filename", "size", "mime_type", "url", "expires_at", "status"]


class UploadStatusSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True, help_text=STATUS_HELP)

    class Meta:
        model = Upload
        fields = ["id", "status", "filename", "size", "mime_type", "expires_at"]


class UploadCreateSerializer(StrictInputSerializer):
    """The multipart form of `POST /api/upload`: one file in the field `file`."""

    file = serializers.FileField(allow_empty_file=False, use_url=False)

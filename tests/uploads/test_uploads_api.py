"""Uploads: upload, status, delete, the owner-only file URL, expiry and clean-up (API.md, CONTRACT §10)."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import timezone

from tests.conftest import client_for
from tests.factories import UserFactory
from tests.matrix import AccessCase, assert_access_matrix, assert_envelope
from uploads import selectors, services, storage
from uploads.models import Upload
from uploads.tasks import cleanup_expired

from . import files

pytestmark = pytest.mark.django_db

UPLOAD_FIELDS = {"id", "filename", "size", "mime_type", "url", "expires_at", "status"}
STATUS_FIELDS = {"id", "status", "filename", "size", "mime_type", "expires_at"}
STORAGE_NAME = re.compile(r"^\d{4}/\d{2}/[0-9a-f]{32}\.[a-z]+$")


@pytest.fixture(autouse=True)
def upload_root(tmp_path, settings) -> Path:
    settings.UPLOAD_ROOT = str(tmp_path / "uploads")
    return tmp_path / "uploads"


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def upload(client, name: str, content: bytes):
    return client.post("/api/upload", {"file": SimpleUploadedFile(name, content)}, format="multipart")


def uploaded(client, name: str = "notes.txt", content: bytes = b"some notes\n") -> dict:
    response = upload(client, name, content)
    assert response.status_code == 201, response.content
    return response.json()


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


ALLOWED = [
    ("pixel.png", files.png_bytes, "image/png", "png", None),
    ("photo.jpeg", files.jpeg_bytes, "image/jpeg", "jpg", None),
    ("anim.gif", files.gif_bytes, "image/gif", "gif", None),
    ("picture.webp", files.webp_bytes, "image/webp", "webp", None),
    ("report.pdf", files.pdf_bytes, "application/pdf", "pdf", "Hello from a PDF"),
    ("letter.docx", files.docx_bytes, files.DOCX_MIME, "docx", "First paragraph\nSecond\tparagraph"),
    ("notes.txt", lambda: "plain wörds\nline two\n".encode(), "text/plain", "txt", "plain wörds\nline two"),
    ("README.md", lambda: b"# Title\n\n* item\n", "text/markdown", "md", "# Title"),
    ("table.csv", lambda: b"name,count\napples,3\n", "text/csv", "csv", "apples,3"),
    ("data.json", lambda: b'{"items": [1, 2, 3]}', "application/json", "json", '{"items": [1, 2, 3]}'),
]


class TestUpload:
    @pytest.mark.parametrize("name,make,mime_type,extension,text", ALLOWED, ids=[case[0] for case in ALLOWED])
    def test_round_trip(self, auth_client, upload_root, name, make, mime_type, extension, text):
        content = make()
        before = datetime.now(UTC)
        response = upload(auth_client, name, content)
        assert response.status_code == 201, response.content
        body = response.json()
        assert set(body) == UPLOAD_FIELDS
        assert body["id"].startswith("file_") and len(body["id"]) >= 5 + 16
        assert (body["filename"], body["size"], body["mime_type"]) == (name, len(content), mime_type)
        assert body["url"] == f"/uploads/{body['id']}.{extension}"
        assert body["status"] == "ready"
        assert body["expires_at"].endswith("Z")
        expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
        assert before + timedelta(hours=24) <= expires_at <= datetime.now(UTC) + timedelta(hours=24)

        row = Upload.objects.get(pk=body["id"])
        assert row.source == "web" and row.extension == extension
        if text is None:
            assert row.text == ""
        else:
            assert text in row.text
        assert stored_files(upload_root) == [upload_root / row.storage_name]

        served = auth_client.get(body["url"])
        assert served.status_code == 200
        assert body_of(served) == content
        assert served["Content-Type"].split(";")[0] == mime_type
        assert served["X-Content-Type-Options"] == "nosniff"
        assert served["Content-Length"] == str(len(content))
        disposition = "inline" if mime_type.startswith("image/") else "attachment"
        assert served["Content-Disposition"].startswith(f"{disposition}; ")
        assert f"filename*=UTF-8''{name}" in served["Content-Disposition"]

        status = auth_client.get(f"/api/upload/{body['id']}/status")
        assert status.status_code == 200
        assert status.json() == {key: body[key] for key in STATUS_FIELDS}

    @pytest.mark.parametrize(
        "name,content,mime_type,extension",
        [
            ("looks.txt", b'{"a": 1}', "text/plain", "txt"),
            ("broken.json", b'{"a": ', "text/plain", "txt"),
            ("nan.json", b"[NaN]", "text/plain", "txt"),
            ("noextension", b'[{"a": 1}]', "application/json", "json"),
            ("number", b"42", "text/plain", "txt"),
            ("not-really.pdf", b"just words, no PDF here", "text/plain", "txt"),
            ("page.html", b"<html><script>alert(1)</script></html>", "text/plain", "txt"),
            ("bom.csv", b"\xef\xbb\xbfa,b\n1,2\n", "text/csv", "csv"),
        ],
    )
    def test_text_types_come_from_the_content_and_only_then_the_name(
        self, auth_client, name, content, mime_type, extension
    ):
        body = uploaded(auth_client, name, content)
        assert (body["mime_type"], body["url"].rsplit(".", 1)[1]) == (mime_type, extension)
        assert body["filename"] == name

    @pytest.mark.parametrize(
        "name,make",
        [
            ("setup.pdf", files.exe_bytes),
            ("archive.docx", files.plain_zip_bytes),
            ("sheet.docx", files.xlsx_like_bytes),
            ("entities.docx", files.docx_with_entities_bytes),
            ("noise.png", files.garbage_bytes),
            ("noise.txt", lambda: b"text until a NUL\x00 byte"),
            ("latin1.txt", lambda: "caf\xe9".encode("latin-1")),
            ("utf16.txt", lambda: "hello".encode("utf-16")),
            ("bell.txt", lambda: b"ring \x07 ring"),
            ("favicon.png", lambda: b"\x00\x00\x01\x00\x01\x00\x10\x10" + b"\x00" * 40),
        ],
    )
    def test_other_types_are_415(self, auth_client, upload_root, name, make):
        body = assert_envelope(upload(auth_client, name, make()), 415, "UNSUPPORTED_MEDIA_TYPE")
        assert "application/pdf" in body["details"]["allowed"]
        assert not Upload.objects.exists()
        assert stored_files(upload_root) == []

    @override_settings(UPLOAD_MAX_BYTES=1024)
    def test_over_the_limit_is_413(self, auth_client, upload_root):
        body = assert_envelope(upload(auth_client, "big.txt", b"a" * 1025), 413, "PAYLOAD_TOO_LARGE")
        assert body["details"] == {"max_bytes": 1024}
        assert not Upload.objects.exists() and stored_files(upload_root) == []
        assert upload(auth_client, "fits.txt", b"a" * 1024).status_code == 201

    @override_settings(UPLOAD_MAX_BYTES=1024)
    def test_a_body_declared_far_over_the_limit_is_refused_before_reading(self, auth_client, settings):
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
        # Larger than the file limit plus the form-field limit plus the multipart overhead.
        response = upload(auth_client, "huge.txt", b"a" * (200 * 1024))
        assert assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")["details"] == {"max_bytes": 1024}

    @pytest.mark.parametrize(
        "data,format,field",
        [
            ({}, "multipart", "file"),
            ({"file": "not a file"}, "multipart", "file"),
            ({"file": "x"}, "json", "file"),
            # Like every input in this API, an unknown field is named rather than silently ignored.
            ({"other": "x"}, "multipart", "other"),
        ],
    )
    def test_missing_file_is_400(self, auth_client, data, format, field):
        body = assert_envelope(auth_client.post("/api/upload", data, format=format), 400, "VALIDATION_ERROR")
        assert field in body["details"]
        assert not Upload.objects.exists()

    def test_empty_file_is_400(self, auth_client):
        body = assert_envelope(upload(auth_client, "empty.txt", b""), 400, "VALIDATION_ERROR")
        assert "file" in body["details"]

    def test_no_body_at_all_is_400(self, auth_client):
        assert_envelope(auth_client.post("/api/upload"), 400, "VALIDATION_ERROR")

    def test_anonymous_is_401(self, api_client, upload_root):
        assert_envelope(upload(api_client, "notes.txt", b"hi"), 401, "UNAUTHORIZED")
        assert stored_files(upload_root) == []

    def test_storage_name_never_comes_from_the_client(self, auth_client, upload_root):
        body = uploaded(auth_client, "../../etc/passwd", b"root:x:0:0\n")
        row = Upload.objects.get(pk=body["id"])
        assert body["filename"] == "passwd"
        assert STORAGE_NAME.match(row.storage_name) and "passwd" not in row.storage_name
        assert stored_files(upload_root) == [upload_root / row.storage_name]
        assert not (upload_root.parent / "etc").exists()

    def test_service_accepts_any_django_file_and_records_the_source(self, user):
        created = services.upload_create(
            user=user, uploaded_file=SimpleUploadedFile("api.md", b"# via API key\n"), source="external"
        )
        assert (created.source, created.mime_type, created.text) == ("external", "text/markdown", "# via API key\n")

    @override_settings(UPLOAD_MAX_BYTES=10)
    def test_service_checks_the_size_too(self, user):
        with pytest.raises(Exception) as caught:
            services.upload_create(user=user, uploaded_file=SimpleUploadedFile("a.txt", b"x" * 11))
        assert getattr(caught.value, "code", None) == "PAYLOAD_TOO_LARGE"

    @override_settings(UPLOAD_TEXT_MAX_CHARS=10)
    def test_extracted_text_is_capped(self, auth_client):
        body = uploaded(auth_client, "long.txt", b"0123456789abcdef")
        assert Upload.objects.get(pk=body["id"]).text == "0123456789"

    def test_unreadable_pdf_is_kept_with_empty_text(self, auth_client):
        body = uploaded(auth_client, "broken.pdf", b"%PDF-1.7\n" + b"garbage " * 100)
        assert body["mime_type"] == "application/pdf"
        assert Upload.objects.get(pk=body["id"]).text == ""

    @override_settings(UPLOAD_TTL_HOURS=2)
    def test_ttl_setting(self, auth_client):
        body = uploaded(auth_client)
        expires_at = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
        assert timedelta(hours=1, minutes=59) < expires_at - datetime.now(UTC) <= timedelta(hours=2)

    def test_rate_limit_is_ten_a_minute_per_user(self, user, other_user):
        client = client_for(user)
        for index in range(10):
            assert upload(client, f"n{index}.txt", b"hi").status_code == 201
        response = upload(client, "n10.txt", b"hi")
        body = assert_envelope(response, 429, "RATE_LIMIT")
        assert 1 <= int(response["Retry-After"]) <= 60 and body["details"]["retry_after"] == int(
            response["Retry-After"]
        )
        assert Upload.objects.filter(user=user).count() == 10
        assert upload(client_for(other_user), "mine.txt", b"hi").status_code == 201


class TestOwnership:
    def test_matrix_status_file_delete(self, auth_client, other_client):
        body = uploaded(auth_client)
        assert_access_matrix(
            AccessCase("get", f"/api/upload/{body['id']}/status"), owner=auth_client, other=other_client
        )
        assert_access_matrix(AccessCase("get", body["url"]), owner=auth_client, other=other_client)
        assert_access_matrix(
            AccessCase("delete", f"/api/upload/{body['id']}", owner_status=204), owner=auth_client, other=other_client
        )

    def test_unknown_ids_and_wrong_extension_are_404(self, auth_client):
        body = uploaded(auth_client)
        assert_envelope(auth_client.get("/api/upload/file_doesnotexist1234567/status"), 404, "NOT_FOUND")
        assert_envelope(auth_client.delete("/api/upload/file_doesnotexist1234567"), 404, "NOT_FOUND")
        assert_envelope(auth_client.get(f"/uploads/{body['id']}.pdf"), 404, "NOT_FOUND")
        assert_envelope(auth_client.get(f"/uploads/{body['id']}"), 404, "NOT_FOUND")
        assert_envelope(auth_client.get("/uploads/file_doesnotexist1234567.txt"), 404, "NOT_FOUND")

    def test_delete_removes_row_and_file(self, auth_client, upload_root, django_capture_on_commit_callbacks):
        body = uploaded(auth_client)
        with django_capture_on_commit_callbacks(execute=True):
            assert auth_client.delete(f"/api/upload/{body['id']}").status_code == 204
        assert not Upload.objects.exists() and stored_files(upload_root) == []
        assert_envelope(auth_client.get(f"/api/upload/{body['id']}/status"), 404, "NOT_FOUND")
        assert_envelope(auth_client.get(body["url"]), 404, "NOT_FOUND")

    def test_file_url_ignores_a_narrow_accept_header(self, auth_client):
        content = files.pdf_bytes()
        body = uploaded(auth_client, "report.pdf", content)
        response = auth_client.get(body["url"], HTTP_ACCEPT="application/pdf")
        assert response.status_code == 200 and body_of(response) == content

    def test_non_ascii_names_are_encoded_in_the_disposition(self, auth_client):
        body = uploaded(auth_client, 'résumé "final".txt', b"cv")
        response = auth_client.get(body["url"])
        response.close()
        disposition = response["Content-Disposition"]
        assert disposition == (
            "attachment; filename=\"resume _final_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.txt"
        )


class TestExpiry:
    def test_expired_upload_reports_expired_and_is_no_longer_served(self, auth_client):
        body = uploaded(auth_client)
        Upload.objects.filter(pk=body["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
        status = auth_client.get(f"/api/upload/{body['id']}/status")
        assert status.status_code == 200 and status.json()["status"] == "expired"
        assert_envelope(auth_client.get(body["url"]), 404, "NOT_FOUND")

    def test_cleanup_task_deletes_expired_rows_and_files_only(self, auth_client, upload_root):
        old = [uploaded(auth_client, f"old{index}.txt", b"old") for index in range(3)]
        fresh = uploaded(auth_client, "fresh.txt", b"fresh")
        Upload.objects.filter(pk__in=[item["id"] for item in old]).update(
            expires_at=timezone.now() - timedelta(minutes=5)
        )
        fresh_row = Upload.objects.get(pk=fresh["id"])

        assert cleanup_expired.delay() is not None
        assert list(Upload.objects.values_list("id", flat=True)) == [fresh["id"]]
        assert stored_files(upload_root) == [upload_root / fresh_row.storage_name]
        assert_envelope(auth_client.get(f"/api/upload/{old[0]['id']}/status"), 404, "NOT_FOUND")
        assert body_of(auth_client.get(fresh["url"])) == b"fresh"

    def test_cleanup_in_batches_and_with_a_file_already_gone(self, auth_client, upload_root):
        items = [uploaded(auth_client, f"f{index}.txt", b"x") for index in range(5)]
        Upload.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
        storage.path_for(Upload.objects.get(pk=items[0]["id"]).storage_name).unlink()
        assert services.uploads_cleanup_expired(batch_size=2) == 5
        assert not Upload.objects.exists() and stored_files(upload_root) == []

    def test_a_file_that_cannot_be_removed_keeps_its_row_for_the_next_run(self, auth_client, upload_root):
        body = uploaded(auth_client)
        Upload.objects.update(expires_at=timezone.now() - timedelta(minutes=1))
        path = upload_root / Upload.objects.get().storage_name
        # A directory in the file's place cannot be unlinked, not even by root.
        path.unlink()
        path.mkdir()
        assert services.uploads_cleanup_expired() == 0
        assert Upload.objects.filter(pk=body["id"]).exists()
        path.rmdir()
        assert services.uploads_cleanup_expired() == 1
        assert not Upload.objects.exists()


class TestStorageUsed:
    def test_counts_live_uploads_of_the_user(self, user, auth_client, other_client):
        uploaded(auth_client, "a.txt", b"x" * 100)
        expired = uploaded(auth_client, "b.txt", b"x" * 50)
        uploaded(other_client, "c.txt", b"x" * 7)
        Upload.objects.filter(pk=expired["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
        assert selectors.storage_used_bytes(user) == 100
        assert selectors.storage_used_bytes(UserFactory()) == 0

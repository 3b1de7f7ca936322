"""The pieces behind uploads: display names, the streaming size limit, sniffing, extraction, file streaming, admin."""

import asyncio
import io
import warnings
import zipfile

import pytest
from channels.db import database_sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import StopUpload
from django.core.handlers.asgi import ASGIHandler
from django.test import override_settings

from accounts.services import tokens_issue
from claraverse.errors import ApplicationError
from tests.factories import UserFactory
from uploads import ooxml, storage
from uploads.extraction import extract_text
from uploads.models import Upload
from uploads.parsers import UploadSizeLimitHandler
from uploads.services import upload_create
from uploads.sniffing import UnsupportedFileType, detect_type

from . import files


@pytest.mark.parametrize(
    "client_name,shown",
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("evil\u202etxt.exe", "eviltxt.exe"),
        ("tab\tand\nnewline.txt", "tab and newline.txt"),
        ("nul\x00byte.txt", "nulbyte.txt"),
        ("  spaced  .md ", "spaced .md"),
        ("..", "upload.txt"),
        ("", "upload.txt"),
        ("x" * 300 + ".txt", "x" * 251 + ".txt"),
        ("y" * 300, "y" * 255),
        ("café.txt", "café.txt"),
    ],
)
def test_display_filename(client_name, shown):
    assert storage.display_filename(client_name, fallback_extension="txt") == shown


@pytest.mark.parametrize("name", ["../x.txt", "2024/01/abc.txt", "/etc/passwd", "2024/01/" + "a" * 32 + ".txt/../x"])
def test_path_for_refuses_anything_but_its_own_names(name):
    with pytest.raises(ValueError):
        storage.path_for(name)


class TestSizeLimitHandler:
    @override_settings(UPLOAD_MAX_BYTES=100, DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
    def test_declared_length_over_every_acceptable_body_is_refused_before_reading(self):
        handler = UploadSizeLimitHandler()
        assert handler.handle_raw_input(None, {}, 100 + 1000 + 64 * 1024, "b") is None
        with pytest.raises(ApplicationError) as caught:
            handler.handle_raw_input(None, {}, 100 + 1000 + 64 * 1024 + 1, "b")
        assert (caught.value.status, caught.value.details) == (413, {"max_bytes": 100})

    @override_settings(UPLOAD_MAX_BYTES=100)
    def test_bytes_are_counted_as_they_arrive_whatever_was_declared(self):
        handler = UploadSizeLimitHandler()
        handler.handle_raw_input(None, {}, 10, "b")  # a lie: the body is bigger
        assert handler.receive_data_chunk(b"a" * 60, 0) == b"a" * 60
        assert handler.receive_data_chunk(b"a" * 40, 60) == b"a" * 40
        with pytest.raises(StopUpload):
            handler.receive_data_chunk(b"a", 100)
        assert handler.exceeded


class TestSniffing:
    def test_binary_signature_wins_over_a_text_name(self):
        detected = detect_type(SimpleUploadedFile("notes.txt", files.png_bytes()), client_name="notes.txt")
        assert (detected.mime_type, detected.extension, detected.text) == ("image/png", "png", None)

    def test_executable_named_pdf(self):
        with pytest.raises(UnsupportedFileType) as caught:
            detect_type(SimpleUploadedFile("a.pdf", files.exe_bytes()), client_name="a.pdf")
        assert caught.value.detected == "application/x-msdownload"

    def test_zip_that_is_not_a_word_document(self):
        with pytest.raises(UnsupportedFileType) as caught:
            detect_type(SimpleUploadedFile("a.docx", files.plain_zip_bytes()), client_name="a.docx")
        assert caught.value.detected == "application/zip"

    def test_docx_main_part_named_elsewhere_is_found_through_content_types(self):
        buffer = io.BytesIO()
        document = (
            f'<w:document xmlns:w="{files.W}"><w:body><w:p><w:r><w:t>moved</w:t></w:r></w:p></w:body></w:document>'
        )
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("[Content_Types].xml", files.content_types(files.WORD_MAIN, "/Word/Main.XML"))
            archive.writestr("word/main.xml", document)
        upload = SimpleUploadedFile("moved.docx", buffer.getvalue())
        detected = detect_type(upload, client_name="moved.docx")
        assert detected.mime_type == files.DOCX_MIME
        assert extract_text(upload, detected, max_chars=100) == "moved"

    def test_entity_declarations_are_refused(self):
        archive = zipfile.ZipFile(io.BytesIO(files.docx_with_entities_bytes()))
        with archive, pytest.raises(ooxml.XmlRefused):
            ooxml.main_document_part(archive)


class TestExtraction:
    def test_docx_text_stops_at_the_cap(self):
        upload = SimpleUploadedFile("long.docx", files.docx_bytes(tuple(f"paragraph {n}" for n in range(1000))))
        detected = detect_type(upload, client_name="long.docx")
        text = extract_text(upload, detected, max_chars=25)
        assert text == "paragraph 0\nparagraph 1\np"

    def test_pdf_text_has_no_nul_characters(self):
        upload = SimpleUploadedFile("a.pdf", files.pdf_bytes("Zero"))
        detected = detect_type(upload, client_name="a.pdf")
        assert extract_text(upload, detected, max_chars=1000) == "Zero"

    def test_images_have_no_text(self):
        upload = SimpleUploadedFile("a.gif", files.gif_bytes())
        assert extract_text(upload, detect_type(upload, client_name="a.gif"), max_chars=1000) == ""


@pytest.mark.django_db(transaction=True)
async def test_file_url_streams_in_chunks_under_asgi(tmp_path, settings, close_async_db_connections):
    settings.UPLOAD_ROOT = str(tmp_path)
    content = b"x" * 300_000

    def owned_upload():
        user = UserFactory()
        upload = upload_create(user=user, uploaded_file=SimpleUploadedFile("big.txt", content))
        return upload, tokens_issue(user=user).access_token

    upload, token = await database_sync_to_async(owned_upload)()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": upload.url_path,
        "raw_path": upload.url_path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    requested = asyncio.Event()
    sent: list[dict] = []

    async def receive():
        if not requested.is_set():
            requested.set()
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects

    async def send(message):
        sent.append(message)

    # Django warns (here: fails) when it has to buffer a synchronous file iterator whole.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        await ASGIHandler()(scope, receive, send)
    assert sent[0]["status"] == 200
    bodies = [message["body"] for message in sent[1:] if message.get("body")]
    assert b"".join(bodies) == content and len(bodies) > 1


@pytest.mark.django_db
def test_admin_lists_and_shows_uploads_without_their_text(
    client, tmp_path, settings, django_capture_on_commit_callbacks
):
    settings.UPLOAD_ROOT = str(tmp_path)
    admin = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(admin)
    upload = upload_create(user=admin, uploaded_file=SimpleUploadedFile("secret.txt", b"the secret words"))
    listing = client.get("/admin/uploads/upload/?q=secret")
    assert listing.status_code == 200 and b"secret.txt" in listing.content
    detail = client.get(f"/admin/uploads/upload/{upload.pk}/change/")
    assert detail.status_code == 200 and b"the secret words" not in detail.content
    assert b"/admin/uploads/upload/add/" not in listing.content  # no uploads without a file
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/uploads/upload/{upload.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Upload.objects.exists() and not any(tmp_path.rglob("*.txt"))

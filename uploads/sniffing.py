"""What an uploaded file really is, decided from its bytes (CONTRACT §10).

Binary formats are recognised by their signatures (images through `filetype`, PDF by `%PDF-`, DOCX
as a zip whose `[Content_Types].xml` declares a Word main document). Anything else is accepted only
if it is UTF-8 text without NUL or other control bytes; the client's extension then only chooses
between plain text, Markdown, CSV and JSON (and JSON must parse). A name never makes binary
content acceptable.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass

import filetype
from django.core.files import File

from . import ooxml

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
IMAGE_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}
TEXT_EXTENSIONS = {"text/plain": "txt", "text/markdown": "md", "text/csv": "csv", "application/json": "json"}
EXTENSIONS = {**IMAGE_EXTENSIONS, PDF: "pdf", DOCX: "docx", **TEXT_EXTENSIONS}
ALLOWED_MIME_TYPES = tuple(EXTENSIONS)
TEXT_TYPES_BY_CLIENT_EXTENSION = {
    "txt": "text/plain",
    "text": "text/plain",
    "md": "text/markdown",
    "markdown": "text/markdown",
    "csv": "text/csv",
    "json": "application/json",
}
# filetype reads at most this many bytes itself.
HEAD_BYTES = 8192
ZIP_SIGNATURE = b"PK\x03\x04"
# Tab, line feed, vertical tab, form feed, carriage return and escape (ANSI colours in logs) are fine in text.
_CONTROL_BYTES = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


class UnsupportedFileType(Exception):
    """The content is none of the allowed types; `detected` names what it looked like, if anything."""

    def __init__(self, detected: str | None = None):
        self.detected = detected
        super().__init__(detected or "unknown type")


@dataclass(frozen=True)
class DetectedType:
    """The sniffed type of a file, and its decoded content when it is text."""

    mime_type: str
    extension: str
    text: str | None = None


def _head(file: File) -> bytes:
    file.seek(0)
    head = file.read(HEAD_BYTES)
    file.seek(0)
    return head


def _is_docx(file: File) -> bool:
    file.seek(0)
    try:
        with zipfile.ZipFile(file) as archive:
            return ooxml.main_document_part(archive) is not None
    except (*ooxml.ZIP_ERRORS, ooxml.XmlRefused):
        return False
    finally:
        file.seek(0)


def _decoded_text(file: File) -> str | None:
    file.seek(0)
    # The caller has checked the size, so the whole file fits the upload limit.
    data = file.read()
    file.seek(0)
    if b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if _CONTROL_BYTES.search(text):
        return None
    return text


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _is_json(text: str) -> bool:
    try:
        json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False
    return True


def _text_type(text: str, client_name: str) -> str:
    _, dot, extension = client_name.rpartition(".")
    mime_type = TEXT_TYPES_BY_CLIENT_EXTENSION.get(extension.lower()) if dot else None
    if mime_type == "application/json":
        return mime_type if _is_json(text) else "text/plain"
    if mime_type is None:
        # Without a telling name, only an object or array is taken for JSON: "42" is more likely a note.
        looks_like_json = text.lstrip()[:1] in ("{", "[")
        return "application/json" if looks_like_json and _is_json(text) else "text/plain"
    return mime_type


def detect_type(file: File, *, client_name: str) -> DetectedType:
    """Sniff `file` (size already checked); raise UnsupportedFileType unless it is an allowed type."""
    head = _head(file)
    if head.startswith(b"%PDF-"):
        return DetectedType(PDF, EXTENSIONS[PDF])
    kind = filetype.guess(head) if head else None
    if kind is not None and kind.mime in IMAGE_EXTENSIONS:
        return DetectedType(kind.mime, IMAGE_EXTENSIONS[kind.mime])
    if head.startswith(ZIP_SIGNATURE) and _is_docx(file):
        return DetectedType(DOCX, EXTENSIONS[DOCX])
    text = _decoded_text(file)
    if text is not None:
        mime_type = _text_type(text, client_name)
        return DetectedType(mime_type, EXTENSIONS[mime_type], text)
    raise UnsupportedFileType(kind.mime if kind is not None else None)

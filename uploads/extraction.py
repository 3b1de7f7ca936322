"""Text of an upload for `read_document`: PDF through pypdf, DOCX through its XML, text formats as decoded.

Extraction is best effort: a document whose text cannot be read is still a valid upload, stored
with empty text (the failure is logged). Output is capped at UPLOAD_TEXT_MAX_CHARS.
"""

from __future__ import annotations

import logging
import time
import zipfile

from django.core.files import File

from . import ooxml
from .sniffing import DOCX, PDF, DetectedType

logger = logging.getLogger("claraverse.uploads")

# A hostile PDF can make each page slow to parse; past this budget the pages read so far are kept.
PDF_TIME_BUDGET_SECONDS = 20.0


def _clean(text: str, max_chars: int) -> str:
    # PostgreSQL text cannot hold NUL, and PDFs produce them.
    return text.replace("\x00", "")[:max_chars]


def _pdf_text(file: File, max_chars: int) -> str:
    from pypdf import PdfReader

    file.seek(0)
    reader = PdfReader(file)
    if reader.is_encrypted and not reader.decrypt(""):
        return ""
    started = time.monotonic()
    pages: list[str] = []
    length = 0
    for page in reader.pages:
        text = page.extract_text() or ""
        pages.append(text)
        length += len(text)
        if length >= max_chars or time.monotonic() - started > PDF_TIME_BUDGET_SECONDS:
            break
    return "\n\n".join(pages).strip()


def _docx_text(file: File, max_chars: int) -> str:
    file.seek(0)
    with zipfile.ZipFile(file) as archive:
        part = ooxml.main_document_part(archive)
        return ooxml.document_text(archive, part, max_chars=max_chars) if part else ""


def extract_text(file: File, detected: DetectedType, *, max_chars: int) -> str:
    """The text of an upload of the detected type, capped at `max_chars`; empty if it has none or cannot be read."""
    try:
        if detected.text is not None:
            return _clean(detected.text, max_chars)
        if detected.mime_type == PDF:
            return _clean(_pdf_text(file, max_chars), max_chars)
        if detected.mime_type == DOCX:
            return _clean(_docx_text(file, max_chars), max_chars)
    except Exception:
        # pypdf raises many kinds of errors on broken files; none of them should fail the upload.
        logger.warning("text extraction failed for a %s upload", detected.mime_type, exc_info=True)
    finally:
        file.seek(0)
    return ""

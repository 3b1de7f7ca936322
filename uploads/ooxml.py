"""Just enough Office Open XML to recognise a Word document and read its paragraphs, safely.

The XML is parsed with expat directly, streaming, with document type declarations refused (a
DOCX never has one, and refusing them rules out entity expansion) and a cap on the decompressed
bytes read from each part (a zip bomb stops at the cap).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from xml.parsers import expat

CONTENT_TYPES_PART = "[Content_Types].xml"
CONTENT_TYPES_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
WORD_MAIN_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
WORD_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MAX_CONTENT_TYPES_BYTES = 1024 * 1024
MAX_DOCUMENT_XML_BYTES = 64 * 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024

# Everything reading a hostile zip can raise; all of them mean "not a readable Word document".
ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    RuntimeError,
    NotImplementedError,
    EOFError,
    OSError,
    ValueError,
)


class XmlRefused(Exception):
    """The XML declares a DTD or an entity, is malformed, or is larger than its cap."""


def _refuse(*_args) -> None:
    raise XmlRefused("document type declarations are not allowed")


def _parser() -> expat.XMLParserType:
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.buffer_text = True
    return parser


def _feed(parser: expat.XMLParserType, archive: zipfile.ZipFile, part: str, max_bytes: int, done: Callable) -> None:
    read = 0
    try:
        with archive.open(part) as member:
            while chunk := member.read(READ_CHUNK_BYTES):
                read += len(chunk)
                if read > max_bytes:
                    raise XmlRefused(f"{part} is larger than {max_bytes} bytes")
                parser.Parse(chunk, False)
                if done():
                    return
        parser.Parse(b"", True)
    except expat.ExpatError as exc:
        raise XmlRefused(f"{part} is not well-formed XML") from exc


def _member_name(archive: zipfile.ZipFile, part_name: str) -> str | None:
    # OPC part names are case-insensitive and absolute; zip member names are neither.
    wanted = part_name.lstrip("/").lower()
    for name in archive.namelist():
        if name.lower() == wanted:
            return name
    return None


def main_document_part(archive: zipfile.ZipFile) -> str | None:
    """The zip member holding the Word main document, if `[Content_Types].xml` declares one that exists."""
    content_types = _member_name(archive, CONTENT_TYPES_PART)
    if content_types is None:
        return None
    declared: list[str] = []

    def start(name: str, attributes: dict[str, str]) -> None:
        if name == f"{CONTENT_TYPES_NS} Override" and attributes.get("ContentType") == WORD_MAIN_CONTENT_TYPE:
            declared.append(attributes.get("PartName", ""))

    parser = _parser()
    parser.StartElementHandler = start
    _feed(parser, archive, content_types, MAX_CONTENT_TYPES_BYTES, lambda: False)
    for part_name in declared:
        member = _member_name(archive, part_name)
        if member is not None:
            return member
    return None


def document_text(archive: zipfile.ZipFile, part: str, *, max_chars: int) -> str:
    """The text of a Word main document: runs joined, one line per paragraph, tabs and breaks kept."""
    pieces: list[str] = []
    length = 0
    in_text = False

    def add(text: str) -> None:
        nonlocal length
        pieces.append(text)
        length += len(text)

    def start(name: str, _attributes: dict[str, str]) -> None:
        nonlocal in_text
        if name == f"{WORD_NS} t":
            in_text = True
        elif name == f"{WORD_NS} tab":
            add("\t")
        elif name in (f"{WORD_NS} br", f"{WORD_NS} cr"):
            add("\n")

    def end(name: str) -> None:
        nonlocal in_text
        if name == f"{WORD_NS} t":
            in_text = False
        elif name == f"{WORD_NS} p":
            add("\n")

    def characters(data: str) -> None:
        if in_text:
            add(data)

    parser = _parser()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        _feed(parser, archive, part, MAX_DOCUMENT_XML_BYTES, lambda: length >= max_chars)
    except XmlRefused:
        # What was read before the cap or the fault is still the document's text.
        if not pieces:
            raise
    return "".join(pieces).strip()[:max_chars]

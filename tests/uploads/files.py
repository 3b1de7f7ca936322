"""Small real files of every allowed type (and some that must be refused), made in memory."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
WORD_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
SHEET_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def png_bytes() -> bytes:
    """A valid 1x1 RGB PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def jpeg_bytes() -> bytes:
    """A JFIF header and end marker (what any JPEG starts and ends with)."""
    return bytes.fromhex("FFD8FFE000104A46494600010100000100010000") + b"\x00" * 16 + bytes.fromhex("FFD9")


def gif_bytes() -> bytes:
    """A valid 1x1 GIF."""
    return bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


def webp_bytes() -> bytes:
    """A RIFF/WEBP container with a tiny lossless bitstream."""
    payload = b"WEBP" + b"VP8L" + struct.pack("<I", 10) + bytes.fromhex("2f0000000007d0ff0000")
    return b"RIFF" + struct.pack("<I", len(payload)) + payload


def pdf_bytes(text: str = "Hello from a PDF") -> bytes:
    """A one-page PDF written by pypdf, showing `text` in Helvetica."""
    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    content = DecodedStreamObject()
    content.set_data(f"BT /F1 18 Tf 72 700 Td ({text}) Tj ET".encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(content)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _zip(members: dict[str, str | bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def content_types(main_type: str, part: str = "/word/document.xml", prolog: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{prolog}'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="{part}" ContentType="{main_type}"/>'
        "</Types>"
    )


def docx_bytes(paragraphs: tuple[str, ...] = ("First paragraph", "Second\tparagraph")) -> bytes:
    """A minimal Word document whose paragraphs hold `paragraphs` (a tab becomes <w:tab/>)."""
    body = "".join(
        "<w:p><w:r>"
        + "<w:tab/>".join(f'<w:t xml:space="preserve">{piece}</w:t>' for piece in paragraph.split("\t"))
        + "</w:r></w:p>"
        for paragraph in paragraphs
    )
    document = f'<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="{W}"><w:body>{body}</w:body></w:document>'
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        'officeDocument" Target="word/document.xml"/></Relationships>'
    )
    return _zip({"[Content_Types].xml": content_types(WORD_MAIN), "_rels/.rels": rels, "word/document.xml": document})


def plain_zip_bytes() -> bytes:
    """A zip archive that is no Office document."""
    return _zip({"hello.txt": "hello", "data/values.csv": "a,b\n1,2\n"})


def xlsx_like_bytes() -> bytes:
    """An OOXML package whose main part is a spreadsheet, not a Word document."""
    return _zip({"[Content_Types].xml": content_types(SHEET_MAIN, "/xl/workbook.xml"), "xl/workbook.xml": "<x/>"})


def docx_with_entities_bytes() -> bytes:
    """A would-be DOCX whose content types declare entities (entity expansion must never happen)."""
    prolog = '<!DOCTYPE Types [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    return _zip({"[Content_Types].xml": content_types(WORD_MAIN, prolog=prolog), "word/document.xml": "<x/>"})


def exe_bytes() -> bytes:
    """The start of a Windows executable: MZ header, DOS stub, NUL padding."""
    return (
        b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
        + b"\x00" * 48
        + (b"This program cannot be run in DOS mode.\r\r\n$" + b"\x00" * 64)
    )


def garbage_bytes() -> bytes:
    """Binary noise that matches no signature."""
    return bytes(range(1, 256)) * 8

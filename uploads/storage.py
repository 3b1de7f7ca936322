"""Stored files: server-chosen names under UPLOAD_ROOT, written once, read by owner-checked views, deleted on expiry.

Nothing a client sends ever becomes part of a path: names are `<yyyy>/<mm>/<random hex>.<ext>` with the
extension taken from the sniffed type.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from django.core.files import File

from .conf import upload_root

logger = logging.getLogger("claraverse.uploads")

FILENAME_MAX_LENGTH = 255
_STORAGE_NAME = re.compile(r"^\d{4}/\d{2}/[0-9a-f]{32}\.[a-z0-9]{1,16}$")
# Control, format (bidi overrides, zero-width), surrogate, private-use and line/paragraph separator characters.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


class FileTooLarge(Exception):
    """The file grew past the limit while being written."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        super().__init__(f"larger than {max_bytes} bytes")


@dataclass(frozen=True)
class StoredFile:
    """What writing a file measured."""

    storage_name: str
    size: int
    sha256: str


def display_filename(client_name: str, *, fallback_extension: str) -> str:
    """The client's file name cleaned for display: basename only, no control characters, at most 255 characters."""
    name = unicodedata.normalize("NFC", str(client_name or ""))
    name = re.split(r"[/\\]", name)[-1]
    # Tabs and line breaks separate words, so they become spaces; other invisible characters go.
    name = "".join(
        " " if char.isspace() else char
        for char in name
        if char.isspace() or unicodedata.category(char) not in _UNPRINTABLE_CATEGORIES
    )
    name = " ".join(name.split()).strip(" .")
    if not name:
        return f"upload.{fallback_extension}"
    if len(name) > FILENAME_MAX_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and stem and len(extension) <= 16:
            name = f"{stem[: FILENAME_MAX_LENGTH - len(extension) - 1]}.{extension}"
        else:
            name = name[:FILENAME_MAX_LENGTH]
    return name


def new_storage_name(extension: str, now: datetime) -> str:
    """A fresh, unguessable storage name for a file of this extension."""
    return f"{now:%Y}/{now:%m}/{secrets.token_hex(16)}.{extension}"


def path_for(storage_name: str) -> Path:
    """The absolute path of a stored file; refuses anything that is not a name this module made."""
    if not _STORAGE_NAME.match(storage_name):
        raise ValueError("not a storage name")
    return upload_root() / storage_name


def save(file: File, storage_name: str, *, max_bytes: int) -> StoredFile:
    """Write `file` under `storage_name`, measuring size and SHA-256; FileTooLarge past `max_bytes`."""
    path = path_for(storage_name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    # O_EXCL: a name collision must fail rather than overwrite someone's file.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as target:
            for chunk in file.chunks():
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(max_bytes)
                digest.update(chunk)
                target.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StoredFile(storage_name=storage_name, size=size, sha256=digest.hexdigest())


def open_for_reading(storage_name: str) -> BinaryIO:
    """Open a stored file; FileNotFoundError if it is gone."""
    return path_for(storage_name).open("rb")


def delete(storage_name: str) -> bool:
    """Remove a stored file (a missing one counts as removed); False if the file system refused."""
    try:
        path_for(storage_name).unlink(missing_ok=True)
    except (OSError, ValueError):
        logger.warning("could not delete stored upload %s", storage_name, exc_info=True)
        return False
    return True

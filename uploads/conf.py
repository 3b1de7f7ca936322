"""Upload settings with their defaults, read at call time so that tests and operators can change them."""

from pathlib import Path

from django.conf import settings

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_TTL_HOURS = 24
DEFAULT_TEXT_MAX_CHARS = 1_000_000


def upload_max_bytes() -> int:
    """UPLOAD_MAX_BYTES: the largest file accepted."""
    return int(getattr(settings, "UPLOAD_MAX_BYTES", DEFAULT_MAX_BYTES))


def upload_ttl_hours() -> float:
    """UPLOAD_TTL_HOURS: how long an upload lives before it expires."""
    return float(getattr(settings, "UPLOAD_TTL_HOURS", DEFAULT_TTL_HOURS))


def upload_text_max_chars() -> int:
    """UPLOAD_TEXT_MAX_CHARS: the most extracted text kept per upload."""
    return int(getattr(settings, "UPLOAD_TEXT_MAX_CHARS", DEFAULT_TEXT_MAX_CHARS))


def upload_root() -> Path:
    """UPLOAD_ROOT: the directory holding the stored files (default DATA_DIR/uploads)."""
    configured = getattr(settings, "UPLOAD_ROOT", None)
    return Path(configured or Path(settings.DATA_DIR) / "uploads").resolve()

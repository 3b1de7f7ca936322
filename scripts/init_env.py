"""Create .env from .env.example with fresh random secrets, unless .env already exists.

Used by `make run` so that a fresh clone starts with its own keys instead of public defaults.
Only the standard library: it runs before anything is installed.
"""

import base64
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    target = ROOT / ".env"
    if target.exists():
        return 0
    generated = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    }
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        name = line.split("=", 1)[0]
        lines.append(f"{name}={generated[name]}" if name in generated and line == f"{name}=" else line)
    target.write_text("\n".join(lines) + "\n")
    target.chmod(0o600)
    print("Created .env with fresh SECRET_KEY and ENCRYPTION_KEYS (keep it: it decrypts your data).")
    return 0


if __name__ == "__main__":
    sys.exit(main())

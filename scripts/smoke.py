"""Smoke-test a running server as a new user would: health, register, login, refresh, me.

Usage: python scripts/smoke.py http://127.0.0.1:3001   (exits non-zero on any failure)
"""

import json
import secrets
import sys
import time
import urllib.error
import urllib.request


def call(base: str, method: str, path: str, body: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def expect(condition: bool, message: str) -> None:
    if not condition:
        print(f"FAIL: {message}")
        sys.exit(1)
    print(f"ok: {message}")


def main(base: str) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            status, body = call(base, "GET", "/health")
            if status == 200:
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            expect(False, "server answered /health within 180 s")
        time.sleep(1)
    expect(body.get("status") == "healthy", f"/health is healthy: {body}")

    email = f"smoke-{secrets.token_hex(4)}@example.com"
    password = "smoke-" + secrets.token_urlsafe(12)
    status, body = call(base, "POST", "/api/auth/register", {"email": email, "password": password, "name": "Smoke"})
    expect(status == 201 and body["user"]["email"] == email, f"register answers 201 ({status})")
    status, body = call(base, "POST", "/api/auth/login", {"email": email.upper(), "password": password})
    expect(status == 200 and body["expires_in"] > 0, f"login (email case-insensitive) answers 200 ({status})")
    access, refresh = body["access_token"], body["refresh_token"]
    status, me = call(base, "GET", "/api/auth/me", token=access)
    expect(status == 200 and me["email"] == email and me["tier"] == "free", f"me answers the user ({status})")
    status, body = call(base, "POST", "/api/auth/refresh", {"refresh_token": refresh})
    expect(status == 200 and body["refresh_token"] != refresh, f"refresh rotates ({status})")
    status, body = call(base, "POST", "/api/auth/refresh", {"refresh_token": refresh})
    expect(status == 401 and body["code"] == "UNAUTHORIZED", f"a reused refresh token is refused ({status})")
    status, body = call(base, "GET", "/api/no-such-route")
    expect(status == 404 and body["code"] == "NOT_FOUND", f"unknown route answers the envelope ({status})")
    print("smoke passed")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:3001")

"""A bounded schemathesis run against /api/schema/ of a real server (`make api-fuzz`, also in CI).

It starts `manage.py serve` (daphne plus the embedded worker, SQLite, a fresh data directory) on a
free port with the rate limits out of the way, and a loopback OpenAI-compatible server standing in
for the LLM provider. It registers a user and logs in (and logs the superuser in for
/api/admin/*), creates real objects of every kind so that path parameters can name existing ones,
then runs `schemathesis run` with a fixed seed and a bounded number of examples per operation and
phase (coverage and fuzzing). The verdict: no 5xx, and every response conforms to the schema
(status code documented, body matching, content type, documented headers).

    .venv/bin/python scripts/api_fuzz.py                 # what `make api-fuzz` and CI run
    .venv/bin/python scripts/api_fuzz.py -n 50 --seed 7  # a longer run, another seed
    .venv/bin/python scripts/api_fuzz.py --keep          # keep the data dir (server log, JUnit report)
    .venv/bin/python scripts/api_fuzz.py --include-path-regex '^/api/memories'  # other options: schemathesis's

Exits with schemathesis's status (0: no failure); on failure the server log's tail is printed.
This file is also the run's schemathesis hooks module (see `filter_failure` below).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import requests
import schemathesis

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from tests.support.live_server import (  # noqa: E402
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    LiveServer,
    start_live_server,
    stop_live_server,
)
from tests.support.llm_server import LLMServer, Reply, _Handler, _HTTPServer  # noqa: E402

PHASES = ("examples", "coverage", "fuzzing", "stateful")
ACCEPTED_LOG = "API_FUZZ_ACCEPTED_LOG"  # env: where the hooks note the failures they drop
IDENTITY = "API_FUZZ_IDENTITY"  # env: JSON {user_token, admin_token, api_key_id} for the hooks
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)

# The stand-in LLM provider listens on its own loopback address, and only that /32 is opened to
# the server's outbound guard: fuzzed URLs (image proxy, webhooks, provider base URLs) still meet
# the private-network refusal, and cannot reach the API itself.
LLM_HOST = "127.0.0.2"

# Rate limits would turn most of the run into 429s (documented, but then nothing else is tested).
# High rather than 0 (off), so the limiter's code path still runs. The upload limit (10/min) is
# fixed by API.md and cannot be raised: past it uploads answer the documented 429.
SERVER_ENVIRONMENT = {
    "RATE_LIMIT_GLOBAL_API": "1000000",
    "RATE_LIMIT_PUBLIC_READ": "1000000",
    "RATE_LIMIT_AUTHENTICATED": "1000000",
    "RATE_LIMIT_WEBSOCKET": "1000000",
    "RATE_LIMIT_IMAGE_PROXY": "1000000",
    # The run must never outlive its tokens.
    "ACCESS_TOKEN_LIFETIME_SECONDS": "3600",
    # Fuzzed providers point at hosts that do not resolve: fail at once instead of retrying.
    "LLM_MAX_ATTEMPTS": "1",
    # Fuzzed workflows that the fuzzed trigger starts must not park the embedded worker.
    "WORKFLOW_MAX_DELAY_SECONDS": "1",
    "WEBHOOK_MAX_ATTEMPTS": "1",
}

# A valid graph, so that workflow generation against the stand-in provider succeeds.
WORKFLOW = {
    "nodes": [
        {"id": "start", "type": "trigger", "position": {"x": 0, "y": 0}, "data": {"trigger_type": "api"}},
        {"id": "done", "type": "output", "position": {"x": 200, "y": 0}, "data": {"value": "{{ input }}"}},
    ],
    "edges": [{"source": "start", "target": "done"}],
}


# --- hooks (loaded by the schemathesis process from this file) ----------------------------------


def _is_provider_error(failure, case, response) -> bool:
    """A documented 502 PROVIDER_ERROR: the outside service the operation calls failed.

    The fuzzer points providers at hosts that do not exist, asks for models nobody serves and
    images on an Internet this machine cannot reach; answering 502 with the envelope is the
    contract (CONTRACT §1). Only on operations whose schema documents 502, and only with that
    code: any other 5xx is still a failure.
    """
    if failure.code != "ST101" or response.status_code != 502:
        return False
    if "502" not in case.operation.definition.raw.get("responses", {}):
        return False
    try:
        return json.loads(response.content).get("code") == "PROVIDER_ERROR"
    except (ValueError, AttributeError):
        return False


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    """Call /api/admin/* as the superuser, and never revoke or delete the run's own API key.

    Where the run's auth put the user's token on an admin operation, put the admin's. Not a
    per-operation `headers` entry in the config: schemathesis 4.32 builds one requests session per
    worker thread from the first operation's headers, so such an entry leaks into every operation.
    Requests sent without a token or with a broken one are left as they are.

    The key sent as X-API-Key is the one object the run must keep (schemathesis finds its id in
    `GET /api/keys` and reuses it): revoked, /api/trigger and /api/external would only answer 401.
    Its revoke and delete go to the other seeded key instead.
    """
    identity = json.loads(os.environ.get(IDENTITY, "{}"))
    if not identity:
        return
    path, headers, parameters = case.operation.path, case.headers or {}, case.path_parameters or {}
    if path.startswith("/api/admin/") and headers.get("Authorization") == f"Bearer {identity['user_token']}":
        case.headers["Authorization"] = f"Bearer {identity['admin_token']}"
    if path.startswith("/api/keys/{key_id}") and parameters.get("key_id") == identity["api_key_id"]:
        case.path_parameters["key_id"] = identity["spare_key_id"]


@schemathesis.hook
def filter_case(context, case) -> bool:
    """Do not send requests whose request line Twisted drops unanswered before daphne or the app run.

    `twisted.web.http.HTTPChannel` is a `LineReceiver` with `MAX_LENGTH` 16384: a longer request
    line (e.g. `?url=` with a few thousand non-ASCII characters, percent-encoded at 9 bytes each)
    makes it close the connection without a response, which schemathesis reports as a network
    error. Nothing in the app can answer it (a reverse proxy in front would send 414). Every
    shorter URL, however long, is still sent.
    """
    from twisted.web.http import HTTPChannel

    kwargs = case.as_transport_kwargs(base_url="http://fuzz.invalid")
    prepared = requests.Request(kwargs["method"], kwargs["url"], params=kwargs.get("params")).prepare()
    return len(f"{prepared.method} {prepared.path_url} HTTP/1.1") <= HTTPChannel.MAX_LENGTH


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure except the accepted answer above, noted in ACCEPTED_LOG.

    (Twisted's own bare 400 for a malformed multipart body is gone: `manage.py serve` turns off its form
    parsing, so Django answers those bodies with the envelope and they are checked like any other.)
    """
    for reason, accepted in (("502 PROVIDER_ERROR", _is_provider_error),):
        if accepted(failure, case, response):
            if os.environ.get(ACCEPTED_LOG):
                with open(os.environ[ACCEPTED_LOG], "a") as log:
                    log.write(f"{case.operation.label}: {failure.code} on {response.status_code} ({reason})\n")
            return False
    return True


# --- seeding -----------------------------------------------------------------------------------


class Api:
    """JSON calls against the live server as one identity; any unexpected status stops the run."""

    def __init__(self, server: LiveServer, token: str | None = None, api_key: str | None = None):
        self.base = server.http_url
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        if api_key:
            self.session.headers["X-API-Key"] = api_key

    def __call__(self, method: str, path: str, expect: int, **kwargs) -> dict:
        response = self.session.request(method, self.base + path, timeout=30, **kwargs)
        if response.status_code != expect:
            raise SystemExit(f"seeding: {method} {path} answered {response.status_code}, not {expect}: {response.text}")
        return response.json() if response.content else {}


class StandInProvider(LLMServer):
    """The tests' scripted LLM server, on LLM_HOST instead of 127.0.0.1 where the system allows it."""

    host = LLM_HOST

    def start(self) -> StandInProvider:
        try:
            self._httpd = _HTTPServer((self.host, 0), _Handler)
        except OSError:  # only 127.0.0.1 is up (e.g. macOS without a loopback alias)
            self.host = "127.0.0.1"
            self._httpd = _HTTPServer((self.host, 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self._thread.start()
        return self

    def base_url(self, path: str = "") -> str:
        return f"http://{self.host}:{self.port}{path}"


def tiny_png() -> bytes:
    """A valid 1x1 PNG, so that the upload passes content sniffing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def wait_for_execution(api: Api, execution_id: str, timeout: float = 30.0) -> None:
    """Let a seeded execution finish, so that the fuzzer meets finished ones."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if api("GET", f"/api/executions/{execution_id}", 200)["status"] in {"completed", "failed", "cancelled"}:
            return
        time.sleep(0.2)


def seed(server: LiveServer, provider: StandInProvider) -> dict:
    """A user, the admin and real objects of every kind.

    Answers the tokens, the API key and, per path parameter name, `keep` ids (named by every
    operation) and `delete` ids (named only by the DELETE of that object, so that one early
    delete does not turn the rest of the run into 404s).
    """
    email, password = f"fuzz-{secrets.token_hex(4)}@example.com", "fuzz-" + secrets.token_urlsafe(16)
    anonymous = Api(server)
    anonymous("POST", "/api/auth/register", 201, json={"email": email, "password": password, "name": "Fuzz"})
    login = anonymous("POST", "/api/auth/login", 200, json={"email": email, "password": password})
    admin_login = anonymous("POST", "/api/auth/login", 200, json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    user, admin = Api(server, login["access_token"]), Api(server, admin_login["access_token"])
    user_id = user("GET", "/api/auth/me", 200)["id"]

    providers = [
        admin(
            "POST",
            "/api/admin/providers",
            201,
            json={"name": f"Stand-in {n}", "type": "openai_compatible", "base_url": provider.base_url("/v1")},
        )["id"]
        for n in (1, 2)
    ]
    models = [
        admin("POST", "/api/admin/models", 201, json={"id": model_id, "provider_id": providers[0]})["id"]
        for model_id in ("gpt-test-large", "gpt-test-small", "gpt-test-doomed")
    ]

    agents = []
    for n in (1, 2):
        agent = user("POST", "/api/agents", 201, json={"name": f"Fuzz agent {n}", "model": models[0]})
        for _ in (1, 2):  # two versions to list and restore
            user("PUT", f"/api/agents/{agent['id']}/workflow", 200, json=WORKFLOW)
        agents.append(agent["id"])
    user("POST", f"/api/agents/{agents[0]}/schedule", 201, json={"cron": "0 9 * * *", "timezone": "UTC"})

    keys = [
        user("POST", "/api/keys", 201, json={"name": name, "scopes": ["trigger", "upload"]})
        for name in ("Fuzz key (X-API-Key header)", "Fuzz key (path)", "Fuzz key (deleted)")
    ]
    keyed = Api(server, api_key=keys[0]["key"])
    executions = [
        keyed("POST", f"/api/trigger/{agents[0]}", 202, json={"input": {"n": n}})["execution_id"] for n in (1, 2)
    ]
    for execution_id in executions:
        wait_for_execution(user, execution_id)

    memories = [
        user("POST", "/api/memories", 201, json={"content": f"Fuzz memory {n}", "category": "fact"})["id"]
        for n in (1, 2)
    ]
    credentials = [
        user(
            "POST",
            "/api/credentials",
            201,
            json={"integration_id": "webhook", "name": f"Fuzz {n}", "credentials": {"url": "https://hooks.invalid/x"}},
        )["id"]
        for n in (1, 2)
    ]
    chats = [
        user("POST", "/api/chats", 201, json={"id": f"chat_fuzz_{n}", "title": f"Fuzz chat {n}", "messages": []})["id"]
        for n in (1, 2)
    ]
    uploads = [
        user("POST", "/api/upload", 201, files={"file": (f"fuzz{n}.png", tiny_png(), "image/png")}) for n in (1, 2)
    ]
    return {
        "user_token": login["access_token"],
        "admin_token": admin_login["access_token"],
        "api_key": keys[0]["key"],
        "api_key_id": keys[0]["id"],
        "spare_key_id": keys[1]["id"],
        "ids": {
            "agent_id": {"keep": agents[:1], "delete": agents[1:]},
            "execution_id": {"keep": executions, "delete": []},
            "memory_id": {"keep": memories[:1], "delete": memories[1:]},
            "credential_id": {"keep": credentials[:1], "delete": credentials[1:]},
            # keys[0] is the X-API-Key of the run: never named, so never revoked or deleted.
            "key_id": {"keep": [keys[1]["id"]], "delete": [keys[2]["id"]]},
            "chat_id": {"keep": chats[:1], "delete": chats[1:]},
            "file_id": {"keep": [uploads[0]["id"]], "delete": [uploads[1]["id"]]},
            "name": {"keep": [upload["url"].rsplit("/", 1)[-1] for upload in uploads], "delete": []},
            "user_id": {"keep": [user_id], "delete": []},
            "provider_id": {"keep": providers[:1], "delete": providers[1:]},
            "model_id": {"keep": models[:2], "delete": models[2:]},
            "version": {"keep": [1, 2], "delete": []},
        },
    }


# --- the run -----------------------------------------------------------------------------------


def toml_value(value) -> str:
    """TOML for the few value types the config uses (JSON strings, numbers and arrays are TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def schemathesis_config(seeded: dict, args: argparse.Namespace, report_dir: Path) -> str:
    """The schemathesis.toml of this run: checks, bounds, identities and the seeded ids."""
    lines = [
        f"hooks = {toml_value(str(Path(__file__).resolve()))}",
        f"seed = {args.seed}",
        f"workers = {args.workers}",
        "request-timeout = 30",
        "",
        "[generation]",
        f"max-examples = {args.max_examples}",
        # No example database: every run starts from the seed alone, wherever it runs.
        'database = "none"',
        "",
        "[phases]",
        # The schema carries no examples; stateful (chains of calls) is opt-in, for longer runs.
        *(f"{phase}.enabled = {toml_value(phase in args.phases.split(','))}" for phase in PHASES),
        "",
        "[checks]",
        "enabled = false",
        *(f"{check}.enabled = true" for check in CHECKS),
        "",
        "[reports]",
        f"directory = {toml_value(str(report_dir))}",
        "junit.enabled = true",
        "",
        # Each operation gets the scheme its `security` names: Bearer for the user, X-API-Key for
        # /api/trigger and /api/external.
        "[auth.openapi.bearerAuth]",
        f"bearer = {toml_value(seeded['user_token'])}",
        "[auth.openapi.apiKeyAuth]",
        f"api_key = {toml_value(seeded['api_key'])}",
        "",
    ]
    ids = seeded["ids"]
    for name, sets in ids.items():
        for kind, values in sets.items():
            if values:
                lines += [f"[dictionaries.{name}_{kind}]", f"values = {toml_value(values)}"]
    # Half of the generated path parameters name a seeded object, so that the success paths run
    # as well as the 404s of random ids.
    lines += ["", "[parameters]"]
    for name in ids:
        binding = {"dictionary": f"{name}_keep", "probability": 0.5}
        lines.append(f"{toml_value('path.' + name)} = {toml_value(binding)}")
    for name, sets in ids.items():
        if sets["delete"]:
            lines += [
                "",
                "[[operations]]",
                'include-method = "DELETE"',
                f"include-path-regex = {toml_value('/{' + name + '}$')}",
                f"parameters = {toml_value({'path.' + name: {'dictionary': f'{name}_delete', 'probability': 0.5}})}",
            ]
    return "\n".join(lines) + "\n"


def run_schemathesis(server: LiveServer, seeded: dict, args: argparse.Namespace, data_dir: Path) -> int:
    """`schemathesis run` against the server's /api/schema/; answers its exit status."""
    config = data_dir / "schemathesis.toml"
    config.write_text(schemathesis_config(seeded, args, data_dir / "report"))
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "run",
        f"{server.http_url}/api/schema/",
        *args.schemathesis_args,
    ]
    accepted = data_dir / "accepted.log"
    identity = {key: seeded[key] for key in ("user_token", "admin_token", "api_key_id", "spare_key_id")}
    environment = {**os.environ, ACCEPTED_LOG: str(accepted), IDENTITY: json.dumps(identity)}
    started = time.monotonic()
    status = subprocess.run(command, cwd=data_dir, env=environment, check=False).returncode  # noqa: S603
    print(f"schemathesis: exit {status} after {time.monotonic() - started:.0f} s")
    if accepted.exists():
        counts = collections.Counter(accepted.read_text().splitlines())
        print("failures dropped by filter_failure (known answers, see the hooks in scripts/api_fuzz.py):")
        for line, count in sorted(counts.items()):
            print(f"  {count:4d} x {line}")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--max-examples", type=int, default=15, help="examples per operation and phase")
    parser.add_argument("--seed", type=int, default=20260101, help="hypothesis seed (fixed for reproducibility)")
    # One worker: with two, hypothesis's concurrent ast.parse calls (to describe filter lambdas) hit a
    # CPython 3.11 thread-safety bug, "SystemError: AST constructor recursion depth mismatch" (seen on
    # 3.11.7), which schemathesis reports as a run error. One worker also keeps the order reproducible.
    parser.add_argument("--workers", type=int, default=1, help="concurrent schemathesis workers")
    parser.add_argument("--phases", default="coverage,fuzzing", help=f"comma-separated, of {', '.join(PHASES)}")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (server log, reports)")
    # Anything else goes to `schemathesis run`, e.g. `--include-path-regex '^/api/memories'`.
    args, args.schemathesis_args = parser.parse_known_args()

    data_dir = Path(tempfile.mkdtemp(prefix="claraverse-fuzz-"))
    provider = StandInProvider(default_reply=Reply(text=json.dumps(WORKFLOW), chunks=1)).start()
    environment = {**SERVER_ENVIRONMENT, "OUTBOUND_ALLOWED_NETWORKS": f"{provider.host}/32"}
    server = start_live_server(data_dir, **environment)
    status = 1
    try:
        status = run_schemathesis(server, seed(server, provider), args, data_dir)
        if status:
            print("server log (tail):\n" + "\n".join(server.log().splitlines()[-60:]))
    finally:
        stop_live_server(server)
        provider.stop()
        if args.keep or status:
            print(f"data directory kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

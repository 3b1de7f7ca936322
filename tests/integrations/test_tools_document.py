"""read_document: the caller's own, unexpired uploads only, read in pieces that fit a tool result."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from integrations.tools import MAX_RESULT_BYTES, ToolArgumentError, ToolContext, tool_registry
from uploads.models import Upload, new_file_id


def make_upload(user, *, text="Hello from the document.", filename="notes.txt", expires_in=timedelta(hours=1)):
    file_id = new_file_id()
    return Upload.objects.create(
        id=file_id,
        user=user,
        filename=filename,
        storage_name=f"test/{file_id}",
        mime_type="text/plain",
        extension="txt",
        size=len(text.encode()),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        text=text,
        expires_at=timezone.now() + expires_in,
    )


def read(user, arguments):
    return tool_registry.execute("read_document", arguments, ToolContext(user=user))


def test_definition():
    tool = tool_registry.get("read_document")
    assert (tool.category, tool.icon, tool.requires_integration) == ("documents", "FileText", None)
    assert tool.parameters["additionalProperties"] is False


def test_reads_the_callers_upload(user):
    upload = make_upload(user, filename="report.txt")
    outcome = read(user, {"file_id": upload.id})
    assert outcome.success, outcome.error
    assert outcome.result == {
        "file_id": upload.id,
        "filename": "report.txt",
        "mime_type": "text/plain",
        "text": "Hello from the document.",
        "truncated": False,
        "total_chars": 24,
    }


@pytest.mark.parametrize("case", ["other user", "expired", "unknown"])
def test_what_is_not_the_callers_is_not_found(user, other_user, case):
    if case == "other user":
        file_id = make_upload(other_user).id
    elif case == "expired":
        file_id = make_upload(user, expires_in=timedelta(seconds=-1)).id
    else:
        file_id = new_file_id()

    outcome = read(user, {"file_id": file_id})

    # The same answer in every case, so that a guessed id reveals nothing.
    assert (outcome.success, outcome.error) == (
        False,
        f"File '{file_id}' was not found (it may have expired or belong to someone else).",
    )


@pytest.mark.parametrize("who", [None, AnonymousUser()])
def test_needs_a_signed_in_user(user, who):
    upload = make_upload(user)
    outcome = read(who, {"file_id": upload.id})
    assert not outcome.success
    assert "signed-in user" in outcome.error


def test_reads_a_long_document_in_pieces(user):
    text = "".join(f"{n:05d} " for n in range(1000))  # 6,000 characters
    upload = make_upload(user, text=text)

    pieces, offset = [], 0
    while True:
        outcome = read(user, {"file_id": upload.id, "max_chars": 2500, "offset": offset})
        assert outcome.success, outcome.error
        pieces.append(outcome.result["text"])
        assert outcome.result["total_chars"] == 6000
        if not outcome.result["truncated"]:
            assert "next_offset" not in outcome.result
            break
        offset = outcome.result["next_offset"]

    assert [len(piece) for piece in pieces] == [2500, 2500, 1000]
    assert "".join(pieces) == text


def test_a_piece_fits_the_result_cap_even_with_wide_characters(user):
    text = "数据" * 40_000
    upload = make_upload(user, text=text)

    outcome = read(user, {"file_id": upload.id, "max_chars": 100_000})

    assert outcome.success, outcome.error
    # Cut by the tool (so next_offset is exact), not shrunk by the registry.
    assert outcome.truncated is False
    assert len(json.dumps(outcome.result, ensure_ascii=False).encode()) <= MAX_RESULT_BYTES
    piece = outcome.result["text"]
    assert outcome.result["truncated"] is True
    assert outcome.result["next_offset"] == len(piece)
    assert text.startswith(piece)


def test_an_offset_past_the_end(user):
    upload = make_upload(user, text="short")
    outcome = read(user, {"file_id": upload.id, "offset": 5})
    assert not outcome.success
    assert "past the end" in outcome.error


def test_a_file_without_text_says_so(user):
    upload = make_upload(user, text="", filename="photo.png")
    outcome = read(user, {"file_id": upload.id})
    assert outcome.success, outcome.error
    assert (outcome.result["text"], outcome.result["truncated"]) == ("", False)
    assert "No text could be extracted" in outcome.result["note"]


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"file_id": ""},
        {"file_id": "f" * 65},
        {"file_id": "file_x", "max_chars": 10},
        {"file_id": "file_x", "offset": -1},
        {"file_id": "file_x", "path": "/etc/passwd"},
    ],
)
def test_argument_validation(user, arguments):
    with pytest.raises(ToolArgumentError):
        read(user, arguments)

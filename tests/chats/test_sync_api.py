"""Chat sync over REST: upsert, get, delete, delete all, sync list, bulk sync (API.md, CONTRACT §9)."""

import pytest
from django.db import connection
from django.test import override_settings

from chats.models import Chat
from chats.services import chat_messages, chat_title, conversation_append
from tests.matrix import AccessCase, assert_access_matrix, assert_envelope

pytestmark = pytest.mark.django_db

CHAT_FIELDS = {"id", "title", "messages", "model", "created_at", "updated_at", "version"}
HELLO = {"role": "user", "content": "Hello there"}
ANSWER = {"role": "assistant", "content": "General Kenobi"}


def upsert(client, **body):
    return client.post("/api/chats", body, format="json")


def sync(client, chats):
    return client.post("/api/chats/sync", {"chats": chats}, format="json")


class TestAccess:
    def test_matrix_upsert(self, auth_client):
        assert_access_matrix(
            AccessCase(
                "post",
                "/api/chats",
                body={"id": "chat_local_1", "title": "Mine", "messages": [HELLO]},
                bad_body={"id": "bad id with spaces"},
                owner_status=201,
            ),
            owner=auth_client,
        )

    def test_matrix_get_and_delete(self, auth_client, other_client):
        upsert(auth_client, id="chat_local_1", title="Mine")
        path = "/api/chats/chat_local_1"
        assert_access_matrix(AccessCase("get", path), owner=auth_client, other=other_client)
        assert_access_matrix(AccessCase("delete", path, owner_status=204), owner=auth_client, other=other_client)
        assert_envelope(auth_client.get(path), 404, "NOT_FOUND")

    def test_matrix_delete_all(self, auth_client):
        upsert(auth_client, id="a")
        assert_access_matrix(AccessCase("delete", "/api/chats"), owner=auth_client)

    def test_matrix_sync_list(self, auth_client):
        assert_access_matrix(
            AccessCase("get", "/api/chats/sync", body={"limit": 5}, bad_body={"since": "yesterday"}),
            owner=auth_client,
        )

    def test_matrix_bulk_sync(self, auth_client):
        assert_access_matrix(
            AccessCase(
                "post",
                "/api/chats/sync",
                body={"chats": [{"id": "a", "messages": [HELLO]}]},
                bad_body={"chats": "not a list"},
            ),
            owner=auth_client,
        )

    def test_ids_are_per_user(self, auth_client, other_client, user, other_user):
        upsert(auth_client, id="shared", title="Mine", messages=[HELLO])
        response = upsert(other_client, id="shared", title="Theirs")
        assert response.status_code == 201 and response.json()["version"] == 1
        assert auth_client.get("/api/chats/shared").json()["title"] == "Mine"
        assert other_client.get("/api/chats/shared").json()["messages"] == []
        assert Chat.objects.filter(chat_id="shared").count() == 2

    def test_collection_endpoints_see_only_own_chats(self, auth_client, other_client, user):
        upsert(auth_client, id="mine")
        upsert(other_client, id="theirs")
        body = auth_client.get("/api/chats/sync").json()
        assert [chat["id"] for chat in body["chats"]] == ["mine"] and body["total"] == 1
        assert other_client.delete("/api/chats").json() == {"deleted": 1}
        assert Chat.objects.filter(user=user).count() == 1


class TestUpsert:
    def test_create_answers_201_with_the_chat_shape(self, auth_client):
        response = upsert(auth_client, id="chat_local_123", title="My Chat", messages=[HELLO, ANSWER], model="gpt-4o")
        assert response.status_code == 201
        body = response.json()
        assert set(body) == CHAT_FIELDS
        assert body["id"] == "chat_local_123" and body["title"] == "My Chat" and body["model"] == "gpt-4o"
        assert body["messages"] == [HELLO, ANSWER] and body["version"] == 1
        assert body["created_at"].endswith("Z") and body["updated_at"].endswith("Z")
        assert auth_client.get("/api/chats/chat_local_123").json() == body

    def test_missing_id_gets_a_server_id(self, auth_client):
        body = upsert(auth_client, title="No id").json()
        assert body["id"].startswith("chat_") and len(body["id"]) >= len("chat_") + 16
        assert auth_client.get(f"/api/chats/{body['id']}").status_code == 200

    def test_update_answers_200_changes_only_fields_sent_and_bumps_version(self, auth_client):
        upsert(auth_client, id="c", title="First", messages=[HELLO], model="gpt-4o")
        response = upsert(auth_client, id="c", title="Renamed")
        assert response.status_code == 200
        body = response.json()
        assert (body["title"], body["messages"], body["model"], body["version"]) == ("Renamed", [HELLO], "gpt-4o", 2)
        body = upsert(auth_client, id="c", messages=[HELLO, ANSWER], version=2).json()
        assert body["messages"] == [HELLO, ANSWER] and body["title"] == "Renamed" and body["version"] == 3

    def test_a_chat_as_returned_can_be_sent_back(self, auth_client):
        chat = upsert(auth_client, id="c", title="T", messages=[HELLO]).json()
        response = auth_client.post("/api/chats", chat, format="json")
        assert response.status_code == 200 and response.json()["version"] == 2

    def test_null_title_and_model_are_empty(self, auth_client):
        body = upsert(auth_client, id="c", title=None, model=None, version=None).json()
        assert body["title"] == "" and body["model"] == ""

    @pytest.mark.parametrize(
        "fields,field",
        [
            ({"id": "bad id"}, "id"),
            ({"id": "x" * 201}, "id"),
            ({"id": "a/b"}, "id"),
            ({"id": "sync"}, "id"),
            ({"title": "x" * 1001}, "title"),
            ({"messages": "hello"}, "messages"),
            ({"messages": ["hello"]}, "messages"),
            ({"messages": [HELLO, 3]}, "messages"),
            ({"model": "m" * 201}, "model"),
            ({"version": -1}, "version"),
            ({"version": "two"}, "version"),
            ({"owner": "someone"}, "owner"),
        ],
    )
    def test_validation_names_the_field(self, auth_client, fields, field):
        body = assert_envelope(upsert(auth_client, **{"id": "c", **fields}), 400, "VALIDATION_ERROR")
        assert field in body["details"]
        assert not Chat.objects.exists()

    @override_settings(CHAT_SYNC_MAX_MESSAGES=2)
    def test_message_count_is_bounded(self, auth_client):
        assert upsert(auth_client, id="c", messages=[HELLO, ANSWER]).status_code == 201
        body = assert_envelope(upsert(auth_client, id="c", messages=[HELLO, ANSWER, HELLO]), 400, "VALIDATION_ERROR")
        assert body["details"] == {"messages": ["At most 2 messages."]}

    @override_settings(CHAT_SYNC_MAX_MESSAGES_BYTES=200)
    def test_message_size_is_bounded(self, auth_client):
        big = {"role": "user", "content": "x" * 300}
        body = assert_envelope(upsert(auth_client, id="c", messages=[big]), 400, "VALIDATION_ERROR")
        assert "messages" in body["details"]

    def test_not_an_object_body(self, auth_client):
        assert_envelope(auth_client.post("/api/chats", ["a"], format="json"), 400, "VALIDATION_ERROR")


class TestVersions:
    def test_two_devices_stale_write_is_a_conflict_and_nothing_is_lost(self, auth_client):
        upsert(auth_client, id="c", title="Trip", messages=[HELLO])
        laptop = auth_client.get("/api/chats/c").json()
        phone = auth_client.get("/api/chats/c").json()
        assert laptop["version"] == phone["version"] == 1

        from_laptop = {"role": "user", "content": "from the laptop"}
        response = upsert(auth_client, id="c", messages=[*laptop["messages"], from_laptop], version=laptop["version"])
        assert response.status_code == 200 and response.json()["version"] == 2

        from_phone = {"role": "user", "content": "from the phone"}
        stale = upsert(auth_client, id="c", messages=[*phone["messages"], from_phone], version=phone["version"])
        body = assert_envelope(stale, 409, "CONFLICT")
        assert body["details"] == {"current_version": 2}
        assert auth_client.get("/api/chats/c").json()["messages"] == [HELLO, from_laptop]

        # The phone fetches, merges and retries on the current version.
        current = auth_client.get("/api/chats/c").json()
        merged = upsert(auth_client, id="c", messages=[*current["messages"], from_phone], version=current["version"])
        assert merged.status_code == 200
        assert merged.json()["messages"] == [HELLO, from_laptop, from_phone] and merged.json()["version"] == 3

    def test_equal_or_higher_version_or_none_is_accepted(self, auth_client):
        upsert(auth_client, id="c")
        assert upsert(auth_client, id="c", version=1).json()["version"] == 2
        assert upsert(auth_client, id="c", version=10).json()["version"] == 3
        assert upsert(auth_client, id="c", title="no version").json()["version"] == 4

    def test_a_socket_append_bumps_the_version_too(self, auth_client, user):
        upsert(auth_client, id="c", messages=[HELLO])
        conversation_append(user=user, conversation_id="c", messages=[ANSWER])
        assert_envelope(upsert(auth_client, id="c", messages=[], version=1), 409, "CONFLICT")
        body = auth_client.get("/api/chats/c").json()
        assert body["version"] == 2 and [m["content"] for m in body["messages"]] == ["Hello there", "General Kenobi"]


class TestBulkSync:
    def test_each_chat_stands_alone(self, auth_client, user):
        upsert(auth_client, id="existing", messages=[HELLO])
        upsert(auth_client, id="existing", messages=[HELLO, ANSWER])  # now version 2
        response = sync(
            auth_client,
            [
                {"id": "new_one", "title": "New", "messages": [HELLO]},
                {"id": "bad id", "title": "Broken"},
                {"id": "existing", "messages": [HELLO], "version": 1},
                "not an object",
                {"messages": [ANSWER]},
                {"id": "no_messages_list", "messages": "oops"},
                {"id": "extra", "colour": "red"},
            ],
        )
        assert response.status_code == 200
        body = response.json()
        assert (body["synced"], body["conflicts"], body["failed"]) == (2, 1, 4)
        results = body["results"]
        assert [r["status"] for r in results] == [
            "synced",
            "failed",
            "conflict",
            "failed",
            "synced",
            "failed",
            "failed",
        ]
        assert results[0] == {"id": "new_one", "status": "synced", "version": 1, "error": None}
        assert results[1]["id"] == "bad id" and results[1]["version"] is None and results[1]["error"].startswith("id:")
        assert results[2]["id"] == "existing" and results[2]["version"] == 2 and "version 2" in results[2]["error"]
        assert results[3] == {
            "id": None,
            "status": "failed",
            "version": None,
            "error": "Each chat must be a JSON object.",
        }
        generated = results[4]["id"]
        assert generated.startswith("chat_") and body["chat_ids"] == ["new_one", generated]
        assert results[5]["error"].startswith("messages:") and results[6]["error"].startswith("colour:")
        # The stale chat kept the newer messages; the good ones were saved despite the bad ones.
        stored = {chat.chat_id: chat for chat in Chat.objects.filter(user=user)}
        assert set(stored) == {"existing", "new_one", generated}
        assert chat_messages(stored["existing"]) == [HELLO, ANSWER] and stored["existing"].version == 2
        assert chat_title(stored["new_one"]) == "New"

    def test_two_devices_in_bulk(self, auth_client):
        sync(auth_client, [{"id": "a", "messages": [HELLO]}, {"id": "b", "messages": [HELLO]}])
        first = sync(auth_client, [{"id": "a", "messages": [HELLO, ANSWER], "version": 1}]).json()
        assert first["results"][0]["version"] == 2
        second = sync(
            auth_client,
            [
                {"id": "a", "messages": [HELLO, {"role": "user", "content": "other device"}], "version": 1},
                {"id": "b", "messages": [HELLO, ANSWER], "version": 1},
            ],
        ).json()
        assert (second["synced"], second["conflicts"], second["failed"]) == (1, 1, 0)
        assert second["results"][0] == {
            "id": "a",
            "status": "conflict",
            "version": 2,
            "error": second["results"][0]["error"],
        }
        assert second["chat_ids"] == ["b"]
        assert auth_client.get("/api/chats/a").json()["messages"] == [HELLO, ANSWER]

    def test_the_same_id_twice_in_one_batch(self, auth_client):
        body = sync(auth_client, [{"id": "a"}, {"id": "a"}]).json()
        assert [(r["status"], r["version"]) for r in body["results"]] == [("synced", 1), ("synced", 2)]
        body = sync(auth_client, [{"id": "a", "version": 2}, {"id": "a", "version": 2}]).json()
        assert [(r["status"], r["version"]) for r in body["results"]] == [("synced", 3), ("conflict", 3)]

    def test_at_most_100_chats(self, auth_client):
        body = assert_envelope(sync(auth_client, [{"id": f"c{i}"} for i in range(101)]), 400, "VALIDATION_ERROR")
        assert "chats" in body["details"]
        assert not Chat.objects.exists()
        assert sync(auth_client, [{"id": f"c{i}"} for i in range(100)]).json()["synced"] == 100

    @pytest.mark.parametrize("body", [{}, {"chats": None}, {"chats": []} | {"extra": 1}, []])
    def test_bad_bodies(self, auth_client, body):
        assert_envelope(auth_client.post("/api/chats/sync", body, format="json"), 400, "VALIDATION_ERROR")

    def test_empty_batch(self, auth_client):
        assert sync(auth_client, []).json() == {"synced": 0, "conflicts": 0, "failed": 0, "chat_ids": [], "results": []}


class TestSyncList:
    def test_shape_order_and_paging(self, auth_client):
        for chat_id in ["a", "b", "c"]:
            upsert(auth_client, id=chat_id, title=chat_id.upper(), messages=[HELLO])
        body = auth_client.get("/api/chats/sync").json()
        assert set(body) == {"chats", "total", "limit", "offset", "synced_at"}
        assert [chat["id"] for chat in body["chats"]] == ["c", "b", "a"]
        assert (body["total"], body["limit"], body["offset"]) == (3, 20, 0)
        assert body["synced_at"].endswith("Z") and set(body["chats"][0]) == CHAT_FIELDS
        assert body["chats"][0]["messages"] == [HELLO] and body["chats"][0]["title"] == "C"
        page = auth_client.get("/api/chats/sync?limit=2&offset=2").json()
        assert [chat["id"] for chat in page["chats"]] == ["a"] and page["total"] == 3

    def test_since_returns_only_chats_changed_after_it(self, auth_client):
        upsert(auth_client, id="old")
        upsert(auth_client, id="edited")
        since = auth_client.get("/api/chats/sync").json()["synced_at"]
        assert auth_client.get("/api/chats/sync", {"since": since}).json()["chats"] == []
        upsert(auth_client, id="new")
        upsert(auth_client, id="edited", title="changed")
        body = auth_client.get("/api/chats/sync", {"since": since}).json()
        assert [chat["id"] for chat in body["chats"]] == ["edited", "new"] and body["total"] == 2
        assert body["synced_at"] > since

    @pytest.mark.parametrize("query", ["since=yesterday", "since=", "limit=0", "limit=101", "offset=-1", "limit=x"])
    def test_bad_parameters(self, auth_client, query):
        assert_envelope(auth_client.get(f"/api/chats/sync?{query}"), 400, "VALIDATION_ERROR")


class TestDelete:
    def test_delete_one(self, auth_client):
        upsert(auth_client, id="c")
        assert auth_client.delete("/api/chats/c").status_code == 204
        assert_envelope(auth_client.delete("/api/chats/c"), 404, "NOT_FOUND")

    def test_delete_all(self, auth_client, other_client, user, other_user):
        for chat_id in ["a", "b", "c"]:
            upsert(auth_client, id=chat_id)
        upsert(other_client, id="a")
        response = auth_client.delete("/api/chats")
        assert response.status_code == 200 and response.json() == {"deleted": 3}
        assert not Chat.objects.filter(user=user).exists()
        assert Chat.objects.filter(user=other_user).count() == 1
        assert auth_client.delete("/api/chats").json() == {"deleted": 0}

    def test_list_route_has_no_get(self, auth_client):
        assert_envelope(auth_client.get("/api/chats"), 405, "METHOD_NOT_ALLOWED")


def test_titles_and_messages_are_encrypted_at_rest(auth_client):
    upsert(auth_client, id="c", title="Secret project codename", messages=[{"role": "user", "content": "zebra-42"}])
    sync(auth_client, [{"id": "d", "title": "Another hidden title", "messages": [{"content": "okapi-7"}]}])
    with connection.cursor() as cursor:
        cursor.execute("SELECT chat_id, title_encrypted, messages_encrypted FROM chats_chat ORDER BY chat_id")
        rows = cursor.fetchall()
    assert [row[0] for row in rows] == ["c", "d"]
    raw = str(rows)
    for plaintext in ["Secret project", "codename", "zebra-42", "Another hidden", "okapi-7", "content"]:
        assert plaintext not in raw
    assert all(row[1].startswith("v1.") and row[2].startswith("v1.") for row in rows)

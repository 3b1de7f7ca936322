"""Memories over REST: CRUD, filters, archive/unarchive, stats, the per-user cap, encryption at rest (CONTRACT §9)."""

import base64
import os

import pytest
from django.db import connection
from django.test import Client, override_settings

from claraverse.encryption import DecryptionError, decrypt, encrypted_fields, reencrypt_all
from memories.models import Memory
from tests.factories import UserFactory
from tests.matrix import AccessCase, assert_access_matrix, assert_envelope

pytestmark = pytest.mark.django_db

MEMORY_FIELDS = {
    "id",
    "content",
    "category",
    "importance",
    "archived",
    "archived_at",
    "access_count",
    "last_accessed_at",
    "created_at",
    "updated_at",
}


def create(client, content="User prefers concise responses", **fields):
    return client.post("/api/memories", {"content": content, **fields}, format="json")


def listed(client, query: str = "") -> list[str]:
    return [memory["content"] for memory in client.get(f"/api/memories{query}").json()["memories"]]


class TestAccess:
    def test_matrix_list_and_create(self, auth_client):
        assert_access_matrix(
            AccessCase("get", "/api/memories", body={"limit": 5}, bad_body={"category": "gossip"}),
            owner=auth_client,
        )
        assert_access_matrix(
            AccessCase(
                "post",
                "/api/memories",
                body={"content": "Likes tea", "category": "preference"},
                bad_body={"content": ""},
                owner_status=201,
            ),
            owner=auth_client,
        )

    def test_matrix_get_put_delete(self, auth_client, other_client):
        path = f"/api/memories/{create(auth_client).json()['id']}"
        assert_access_matrix(AccessCase("get", path), owner=auth_client, other=other_client)
        assert_access_matrix(
            AccessCase("put", path, body={"importance": "high"}, bad_body={"importance": "urgent"}),
            owner=auth_client,
            other=other_client,
        )
        assert_access_matrix(AccessCase("delete", path, owner_status=204), owner=auth_client, other=other_client)
        assert_envelope(auth_client.get(path), 404, "NOT_FOUND")

    def test_matrix_archive_unarchive(self, auth_client, other_client):
        path = f"/api/memories/{create(auth_client).json()['id']}"
        assert_access_matrix(AccessCase("post", f"{path}/archive"), owner=auth_client, other=other_client)
        assert_access_matrix(AccessCase("post", f"{path}/unarchive"), owner=auth_client, other=other_client)

    def test_matrix_stats(self, auth_client):
        assert_access_matrix(AccessCase("get", "/api/memories/stats"), owner=auth_client)

    def test_unknown_id_is_not_found(self, auth_client):
        assert_envelope(auth_client.get("/api/memories/mem_doesnotexist0000000"), 404, "NOT_FOUND")
        assert_envelope(auth_client.post("/api/memories/mem_doesnotexist0000000/archive"), 404, "NOT_FOUND")

    def test_lists_and_stats_see_only_own_memories(self, auth_client, other_client):
        create(other_client, "their memory")
        assert auth_client.get("/api/memories").json()["total"] == 0
        assert auth_client.get("/api/memories?q=their").json()["total"] == 0
        assert auth_client.get("/api/memories/stats").json()["total"] == 0


class TestCreateAndUpdate:
    def test_create_answers_the_memory(self, auth_client):
        response = create(auth_client, category="preference", importance="high")
        assert response.status_code == 201
        body = response.json()
        assert set(body) == MEMORY_FIELDS and body["id"].startswith("mem_") and len(body["id"]) >= 4 + 16
        assert body["content"] == "User prefers concise responses"
        assert (body["category"], body["importance"], body["archived"], body["archived_at"]) == (
            "preference",
            "high",
            False,
            None,
        )
        assert body["access_count"] == 0 and body["last_accessed_at"] is None and body["created_at"].endswith("Z")
        assert auth_client.get(f"/api/memories/{body['id']}").json() == body

    def test_defaults(self, auth_client):
        body = create(auth_client).json()
        assert (body["category"], body["importance"]) == ("fact", "medium")

    @pytest.mark.parametrize(
        "fields,field",
        [
            ({"content": ""}, "content"),
            ({"content": "   "}, "content"),
            ({"content": "x" * 5001}, "content"),
            ({"category": "gossip"}, "category"),
            ({"importance": "urgent"}, "importance"),
            ({"archived": True}, "archived"),
            ({"access_count": 9}, "access_count"),
        ],
    )
    def test_validation_names_the_field(self, auth_client, fields, field):
        body = assert_envelope(create(auth_client, **fields), 400, "VALIDATION_ERROR")
        assert field in body["details"]
        assert not Memory.objects.exists()

    def test_missing_content(self, auth_client):
        response = auth_client.post("/api/memories", {"category": "fact"}, format="json")
        assert "content" in assert_envelope(response, 400, "VALIDATION_ERROR")["details"]

    def test_content_of_5000_characters_is_fine(self, auth_client):
        assert create(auth_client, "x" * 5000).status_code == 201

    def test_put_is_partial(self, auth_client):
        memory = create(auth_client, category="preference").json()
        body = auth_client.put(
            f"/api/memories/{memory['id']}", {"content": "Updated memory content", "importance": "high"}, format="json"
        ).json()
        assert body["content"] == "Updated memory content" and body["importance"] == "high"
        assert body["category"] == "preference" and body["created_at"] == memory["created_at"]
        assert body["updated_at"] >= memory["updated_at"]
        body = auth_client.put(f"/api/memories/{memory['id']}", {"category": "context"}, format="json").json()
        assert body["content"] == "Updated memory content" and body["category"] == "context"

    @pytest.mark.parametrize(
        "fields", [{"content": ""}, {"content": "x" * 5001}, {"category": "x"}, {"id": "mem_mine"}, {"archived": True}]
    )
    def test_bad_updates(self, auth_client, fields):
        memory = create(auth_client).json()
        assert_envelope(
            auth_client.put(f"/api/memories/{memory['id']}", fields, format="json"), 400, "VALIDATION_ERROR"
        )
        assert auth_client.get(f"/api/memories/{memory['id']}").json() == memory

    @override_settings(MEMORY_MAX_PER_USER=2)
    def test_per_user_cap(self, auth_client, other_client):
        first = create(auth_client, "one").json()
        create(auth_client, "two")
        auth_client.post(f"/api/memories/{first['id']}/archive")  # archived ones still count
        body = assert_envelope(create(auth_client, "three"), 429, "QUOTA_EXCEEDED")
        assert body["details"] == {"limit": 2, "used": 2, "reset_at": None}
        assert create(other_client, "theirs").status_code == 201
        auth_client.delete(f"/api/memories/{first['id']}")
        assert create(auth_client, "three").status_code == 201


class TestList:
    def test_default_active_only_archived_true_includes_archived(self, auth_client):
        create(auth_client, "active one")
        archived = create(auth_client, "archived one").json()
        auth_client.post(f"/api/memories/{archived['id']}/archive")
        assert listed(auth_client) == ["active one"]
        assert listed(auth_client, "?archived=false") == ["active one"]
        assert listed(auth_client, "?archived=true") == ["archived one", "active one"]

    def test_category_and_q_filters(self, auth_client):
        create(auth_client, "Prefers DARK mode", category="preference")
        create(auth_client, "Lives in Lisbon", category="personal_info")
        create(auth_client, "Dark chocolate is a favourite", category="preference")
        assert listed(auth_client, "?category=preference") == ["Dark chocolate is a favourite", "Prefers DARK mode"]
        assert listed(auth_client, "?q=dark") == ["Dark chocolate is a favourite", "Prefers DARK mode"]
        assert listed(auth_client, "?q=LISBON") == ["Lives in Lisbon"]
        assert listed(auth_client, "?q=dark&category=personal_info") == []
        assert listed(auth_client, "?q=") == [
            "Dark chocolate is a favourite",
            "Lives in Lisbon",
            "Prefers DARK mode",
        ]

    def test_q_pages_over_the_matches(self, auth_client):
        for index in range(5):
            create(auth_client, f"match {index}")
            create(auth_client, f"other {index}")
        body = auth_client.get("/api/memories?q=match&limit=2&offset=1").json()
        assert [m["content"] for m in body["memories"]] == ["match 3", "match 2"]
        assert (body["total"], body["limit"], body["offset"]) == (5, 2, 1)

    def test_shape_paging_and_stable_order(self, auth_client):
        for index in range(3):
            create(auth_client, f"memory {index}")
        body = auth_client.get("/api/memories?limit=2").json()
        assert set(body) == {"memories", "total", "limit", "offset"}
        assert [m["content"] for m in body["memories"]] == ["memory 2", "memory 1"]
        assert (body["total"], body["limit"], body["offset"]) == (3, 2, 0)
        assert listed(auth_client, "?limit=2&offset=2") == ["memory 0"]
        assert auth_client.get("/api/memories").json()["limit"] == 20

    @pytest.mark.parametrize(
        "query", ["limit=0", "limit=101", "offset=-1", "limit=x", "archived=maybe", "category=gossip", "q=" + "x" * 201]
    )
    def test_bad_parameters(self, auth_client, query):
        assert_envelope(auth_client.get(f"/api/memories?{query}"), 400, "VALIDATION_ERROR")


class TestArchive:
    def test_archive_and_unarchive(self, auth_client):
        memory = create(auth_client).json()
        archived = auth_client.post(f"/api/memories/{memory['id']}/archive")
        assert archived.status_code == 200
        body = archived.json()
        assert set(body) == MEMORY_FIELDS and body["archived"] is True and body["archived_at"].endswith("Z")
        again = auth_client.post(f"/api/memories/{memory['id']}/archive").json()
        assert again["archived_at"] == body["archived_at"]
        assert auth_client.get("/api/memories").json()["total"] == 0
        restored = auth_client.post(f"/api/memories/{memory['id']}/unarchive")
        assert restored.status_code == 200
        assert restored.json()["archived"] is False and restored.json()["archived_at"] is None
        assert listed(auth_client) == [memory["content"]]


def test_stats(auth_client):
    assert auth_client.get("/api/memories/stats").json() == {
        "total": 0,
        "active": 0,
        "archived": 0,
        "by_category": {"preference": 0, "fact": 0, "context": 0, "instruction": 0, "personal_info": 0},
        "by_importance": {"low": 0, "medium": 0, "high": 0},
    }
    create(auth_client, "a", category="preference", importance="high")
    create(auth_client, "b", category="preference", importance="low")
    archived = create(auth_client, "c", category="instruction", importance="high").json()
    auth_client.post(f"/api/memories/{archived['id']}/archive")
    body = auth_client.get("/api/memories/stats").json()
    assert (body["total"], body["active"], body["archived"]) == (3, 2, 1)
    assert body["by_category"] == {"preference": 2, "fact": 0, "context": 0, "instruction": 1, "personal_info": 0}
    assert body["by_importance"] == {"low": 1, "medium": 0, "high": 2}


def test_content_is_encrypted_at_rest_for_its_owner(auth_client, user):
    memory_id = create(auth_client, "My passport number is X1234567").json()["id"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, user_id, content_encrypted FROM memories_memory")
        rows = cursor.fetchall()
    assert len(rows) == 1 and rows[0][0] == memory_id
    assert "passport" not in str(rows) and "X1234567" not in str(rows) and rows[0][2].startswith("v1.")
    assert decrypt(rows[0][2], owner_id=user.pk, purpose="memory") == "My passport number is X1234567"
    with pytest.raises(DecryptionError):
        decrypt(rows[0][2], owner_id="user_someoneelse0000000000", purpose="memory")


def test_content_is_registered_for_key_rotation(auth_client, settings):
    assert any(field.label == "memories.Memory.content_encrypted" for field in encrypted_fields())
    memory_id = create(auth_client, "rotate me").json()["id"]
    old_token = Memory.objects.get(pk=memory_id).content_encrypted
    settings.ENCRYPTION_KEYS = [base64.urlsafe_b64encode(os.urandom(32)).decode(), *settings.ENCRYPTION_KEYS]
    assert reencrypt_all()["memories.Memory.content_encrypted"] == 1
    assert Memory.objects.get(pk=memory_id).content_encrypted != old_token
    assert auth_client.get(f"/api/memories/{memory_id}").json()["content"] == "rotate me"


def test_admin_shows_metadata_never_content(auth_client):
    memory_id = create(auth_client, "Top secret admin-invisible text").json()["id"]
    operator = UserFactory(is_staff=True, is_superuser=True)
    browser = Client()
    browser.force_login(operator)
    changelist = browser.get("/admin/memories/memory/?archived__exact=0&category__exact=fact")
    assert changelist.status_code == 200
    assert memory_id in changelist.content.decode() and "admin-invisible" not in changelist.content.decode()
    change = browser.get(f"/admin/memories/memory/{memory_id}/change/")
    assert change.status_code == 200 and "admin-invisible" not in change.content.decode()
    assert "v1." not in change.content.decode()
    search = browser.get(f"/admin/memories/memory/?q={memory_id}")
    assert search.status_code == 200 and memory_id in search.content.decode()

from django.conf import settings
from django.db import models


class Chat(models.Model):
    """A conversation: the chat WebSocket's history and the synced chats are this one store.

    `chat_id` is the client-visible id (e.g. `chat_local_123`), unique per user, so two users
    may use the same id without ever reaching each other's chat. Title and messages are encrypted
    at rest with the owner's derived key.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chats")
    chat_id = models.CharField(max_length=200)
    title_encrypted = models.TextField(blank=True, default="")
    messages_encrypted = models.TextField(blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated_at", "id"]
        constraints = [models.UniqueConstraint(fields=["user", "chat_id"], name="chats_chat_user_chat_id_unique")]

    def __str__(self) -> str:
        return self.chat_id

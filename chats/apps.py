from django.apps import AppConfig


class ChatsConfig(AppConfig):
    """Encrypted chat sync, conversation history and /ws/chat."""

    name = "chats"

    def ready(self) -> None:
        from claraverse.encryption import register_encrypted_field

        register_encrypted_field("chats.Chat", "title_encrypted", purpose="chat_title", owner_attr="user_id")
        register_encrypted_field("chats.Chat", "messages_encrypted", purpose="chat_messages", owner_attr="user_id")

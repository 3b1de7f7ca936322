"""Memory shapes and input validation (CONTRACT §9)."""

from rest_framework import serializers

from claraverse.pagination import PageParamsSerializer
from claraverse.serializers import StrictInputSerializer

from .models import Memory, MemoryCategory, MemoryImportance
from .selectors import memory_content

CONTENT_MAX_CHARS = 5000


class MemorySerializer(serializers.ModelSerializer):
    content = serializers.SerializerMethodField()

    class Meta:
        model = Memory
        fields = [
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
        ]

    def get_content(self, memory: Memory) -> str:
        return memory_content(memory)


class MemoryUpdateSerializer(StrictInputSerializer):
    """Partial update: only the fields sent change."""

    content = serializers.CharField(min_length=1, max_length=CONTENT_MAX_CHARS, required=False)
    category = serializers.ChoiceField(choices=MemoryCategory.choices, required=False)
    importance = serializers.ChoiceField(choices=MemoryImportance.choices, required=False)


class MemoryCreateSerializer(MemoryUpdateSerializer):
    content = serializers.CharField(min_length=1, max_length=CONTENT_MAX_CHARS)
    category = serializers.ChoiceField(choices=MemoryCategory.choices, required=False, default=MemoryCategory.FACT)
    importance = serializers.ChoiceField(
        choices=MemoryImportance.choices, required=False, default=MemoryImportance.MEDIUM
    )


class MemoryListParamsSerializer(PageParamsSerializer):
    archived = serializers.BooleanField(
        required=False, default=False, help_text="true includes archived memories; default: active ones only."
    )
    category = serializers.ChoiceField(choices=MemoryCategory.choices, required=False)
    q = serializers.CharField(
        required=False, allow_blank=True, max_length=200, help_text="Case-insensitive substring of the content."
    )


class MemoryStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    active = serializers.IntegerField()
    archived = serializers.IntegerField()
    by_category = serializers.DictField(child=serializers.IntegerField())
    by_importance = serializers.DictField(child=serializers.IntegerField())

"""Admin API shapes (CONTRACT §11)."""

from rest_framework import serializers

from accounts.models import Tier, User
from claraverse.pagination import PageParamsSerializer
from claraverse.serializers import StrictInputSerializer


class AdminUserRowSerializer(serializers.ModelSerializer):
    role = serializers.CharField(source="effective_role")
    last_login_at = serializers.DateTimeField(source="last_login", allow_null=True)
    has_overrides = serializers.BooleanField()

    class Meta:
        model = User
        fields = ["id", "email", "name", "role", "tier", "created_at", "last_login_at", "has_overrides"]


class LimitsSerializer(serializers.Serializer):
    messages_per_day = serializers.IntegerField()
    executions_per_day = serializers.IntegerField()
    storage_mb = serializers.IntegerField()


class AdminUserDetailSerializer(AdminUserRowSerializer):
    limits = LimitsSerializer()
    overrides = serializers.DictField(child=serializers.IntegerField())
    usage_today = serializers.DictField(child=serializers.IntegerField())
    counts = serializers.DictField(child=serializers.IntegerField())

    class Meta(AdminUserRowSerializer.Meta):
        fields = [*AdminUserRowSerializer.Meta.fields, "limits", "overrides", "usage_today", "counts"]


class UserListParamsSerializer(PageParamsSerializer):
    search = serializers.CharField(required=False, max_length=200)
    tier = serializers.ChoiceField(choices=Tier.choices, required=False)


class OverridesSerializer(StrictInputSerializer):
    """Partial: the limits sent replace the tier's value; null removes that override."""

    messages_per_day = serializers.IntegerField(min_value=0, max_value=10_000_000, required=False, allow_null=True)
    executions_per_day = serializers.IntegerField(min_value=0, max_value=10_000_000, required=False, allow_null=True)
    storage_mb = serializers.IntegerField(min_value=0, max_value=100_000_000, required=False, allow_null=True)

    unknown_field_message = "Unknown limit."

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        if not values:
            raise serializers.ValidationError({"body": ["Give at least one limit."]})
        return values


class AdminMeSerializer(serializers.Serializer):
    id = serializers.CharField()
    email = serializers.EmailField()
    name = serializers.CharField()
    role = serializers.CharField()
    is_admin = serializers.BooleanField()
    superadmin = serializers.BooleanField(help_text="Listed in SUPERADMIN_USER_IDS.")

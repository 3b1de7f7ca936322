"""Request and response shapes of the auth endpoints (API.md, CONTRACT §2)."""

from rest_framework import serializers

from claraverse.serializers import JsonObjectField, StrictInputSerializer

from .models import User

PASSWORD_MAX_LENGTH = 256


class RegisterInputSerializer(StrictInputSerializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class LoginInputSerializer(StrictInputSerializer):
    email = serializers.CharField(max_length=254)
    password = serializers.CharField(max_length=PASSWORD_MAX_LENGTH, trim_whitespace=False)


class RefreshTokenInputSerializer(StrictInputSerializer):
    refresh_token = serializers.CharField(max_length=4096)


class ProfileUpdateInputSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    preferences = JsonObjectField(required=False, max_bytes=16 * 1024)


class UserSummarySerializer(serializers.ModelSerializer):
    """The user inside register and login answers."""

    role = serializers.CharField(source="effective_role")

    class Meta:
        model = User
        fields = ["id", "email", "name", "role", "tier", "created_at"]


class CurrentUserSerializer(serializers.ModelSerializer):
    """`GET /api/auth/me`."""

    role = serializers.CharField(source="effective_role")

    class Meta:
        model = User
        fields = ["id", "email", "name", "role", "tier", "preferences", "created_at"]


class TokenPairSerializer(serializers.Serializer):
    """`POST /api/auth/refresh`."""

    access_token = serializers.CharField()
    refresh_token = serializers.CharField()
    expires_in = serializers.IntegerField(help_text="Access-token lifetime in seconds.")


class AuthResultSerializer(TokenPairSerializer):
    """Register and login answers: the user plus a token pair."""

    user = UserSummarySerializer()


def render_auth_result(result) -> dict:
    """Flatten an AuthResult into the API.md body."""
    return {
        "user": UserSummarySerializer(result.user).data,
        "access_token": result.tokens.access_token,
        "refresh_token": result.tokens.refresh_token,
        "expires_in": result.tokens.expires_in,
    }

"""Auth endpoints: register, login, refresh, logout, me."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from claraverse.openapi import ERROR_RESPONSES
from claraverse.serializers import validated

from . import services
from .serializers import (
    AuthResultSerializer,
    CurrentUserSerializer,
    LoginInputSerializer,
    ProfileUpdateInputSerializer,
    RefreshTokenInputSerializer,
    RegisterInputSerializer,
    TokenPairSerializer,
    render_auth_result,
)


class RegisterView(APIView):
    """Create an account and sign in."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        operation_id="auth_register",
        request=RegisterInputSerializer,
        responses={201: AuthResultSerializer, **ERROR_RESPONSES.pick(400, 409, 429)},
        tags=["auth"],
    )
    def post(self, request):
        result = services.user_register(**validated(RegisterInputSerializer, request.data))
        return Response(render_auth_result(result), status=status.HTTP_201_CREATED)


class LoginView(APIView):
    """Exchange email and password for tokens."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        operation_id="auth_login",
        request=LoginInputSerializer,
        responses={200: AuthResultSerializer, **ERROR_RESPONSES.pick(400, 401, 429)},
        tags=["auth"],
    )
    def post(self, request):
        result = services.user_login(**validated(LoginInputSerializer, request.data))
        return Response(render_auth_result(result))


class RefreshView(APIView):
    """Rotate a refresh token: a new pair, and the presented token is dead."""

    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(
        operation_id="auth_refresh",
        request=RefreshTokenInputSerializer,
        responses={200: TokenPairSerializer, **ERROR_RESPONSES.pick(400, 401, 429)},
        tags=["auth"],
    )
    def post(self, request):
        tokens = services.tokens_refresh(**validated(RefreshTokenInputSerializer, request.data))
        return Response(TokenPairSerializer(tokens).data)


class LogoutView(APIView):
    """Revoke the caller's refresh token."""

    @extend_schema(
        operation_id="auth_logout",
        request=RefreshTokenInputSerializer,
        responses={204: OpenApiResponse(description="Refresh token revoked."), **ERROR_RESPONSES.pick(400, 401, 429)},
        tags=["auth"],
    )
    def post(self, request):
        services.tokens_revoke(user=request.user, **validated(RefreshTokenInputSerializer, request.data))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    """The signed-in user's profile."""

    @extend_schema(
        operation_id="auth_me", responses={200: CurrentUserSerializer, **ERROR_RESPONSES.pick(401, 429)}, tags=["auth"]
    )
    def get(self, request):
        return Response(CurrentUserSerializer(request.user).data)

    @extend_schema(
        operation_id="auth_me_update",
        request=ProfileUpdateInputSerializer,
        responses={200: CurrentUserSerializer, **ERROR_RESPONSES.pick(400, 401, 429)},
        tags=["auth"],
    )
    def put(self, request):
        fields = validated(ProfileUpdateInputSerializer, request.data)
        user = services.user_update_profile(user=request.user, fields=fields)
        return Response(CurrentUserSerializer(user).data)

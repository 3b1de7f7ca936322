"""`X-API-Key` authentication for the external endpoints (trigger, status, external upload)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed

from claraverse.errors import ApplicationError

from .services import key_authenticate

HEADER = "X-API-Key"


class ApiKeyAuthentication(BaseAuthentication):
    """The key's owner becomes `request.user` and the key `request.auth`; a bad key is a 401."""

    def authenticate(self, request):
        raw_key = request.headers.get(HEADER, "")
        if not raw_key:
            return None
        try:
            key = key_authenticate(raw_key.strip())
        except ApplicationError as exc:
            raise AuthenticationFailed(exc.message) from None
        return key.user, key

    def authenticate_header(self, request) -> str:
        return HEADER


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Documents the `X-API-Key` header."""

    target_class = "apikeys.authentication.ApiKeyAuthentication"
    name = "apiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": HEADER}

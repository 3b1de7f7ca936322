"""The upload rate limit (CONTRACT §13): RATE_LIMIT_UPLOAD per user."""

from claraverse.ratelimit import CacheRateThrottle


class UploadThrottle(CacheRateThrottle):
    """RATE_LIMIT_UPLOAD uploads per minute per user, whichever way the user authenticated."""

    limit_name = "upload"
    limit_setting = "RATE_LIMIT_UPLOAD"

    def identity(self, request, view) -> str | None:
        user = getattr(request, "user", None)
        return str(user.pk) if user is not None and user.is_authenticated else None

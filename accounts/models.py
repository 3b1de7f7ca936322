from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower

from claraverse.ids import new_id


class Role(models.TextChoices):
    USER = "user", "User"
    ADMIN = "admin", "Admin"


class Tier(models.TextChoices):
    FREE = "free", "Free"
    PRO = "pro", "Pro"
    ENTERPRISE = "enterprise", "Enterprise"


def new_user_id() -> str:
    return new_id("user")


def normalize_email(email: str) -> str:
    """Emails are case-insensitive: store and look them up lower-cased and trimmed."""
    return (email or "").strip().lower()


class UserManager(BaseUserManager):
    """Creates users by email (also used by `manage.py createsuperuser`)."""

    use_in_migrations = True

    def get_by_natural_key(self, email):
        return self.get(email=normalize_email(email))

    def create_user(self, email, password=None, **fields):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=normalize_email(email), **fields)
        user.set_password(password)
        user.full_clean(exclude=["password", "id"], validate_unique=False)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **fields):
        fields.update(role=Role.ADMIN, is_staff=True, is_superuser=True)
        return self.create_user(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person using ClaraVerse; logs in with email and password."""

    id = models.CharField(primary_key=True, max_length=40, default=new_user_id, editable=False)
    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=200, blank=True, default="")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.USER)
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.FREE)
    preferences = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May log in to the operator admin site.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    @property
    def is_admin(self) -> bool:
        """Admin by role or by being listed in SUPERADMIN_USER_IDS."""
        return self.role == Role.ADMIN or self.pk in settings.SUPERADMIN_USER_IDS

    @property
    def effective_role(self) -> str:
        """The role shown to clients: `admin` for superadmins whatever their stored role."""
        return Role.ADMIN if self.is_admin else self.role


class QuotaOverride(models.Model):
    """An admin's per-user replacement of single tier limits (None keeps the tier's value)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="quota_override")
    messages_per_day = models.PositiveIntegerField(null=True, blank=True)
    executions_per_day = models.PositiveIntegerField(null=True, blank=True)
    storage_mb = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"overrides of {self.user_id}"


class DailyUsage(models.Model):
    """What one user consumed on one UTC day; counters only ever grow through conditional updates."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="daily_usage")
    day = models.DateField()
    messages = models.PositiveIntegerField(default=0)
    executions = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "day"], name="accounts_usage_one_row_per_day")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.day}"

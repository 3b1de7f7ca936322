"""`manage.py rotate_encryption_keys`: re-encrypt every registered secret under the newest key."""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from claraverse.encryption import DecryptionError, current_key_id, encrypted_fields, reencrypt_all


class Command(BaseCommand):
    """Re-encrypt stored secrets under the first key of ENCRYPTION_KEYS, batch by batch."""

    help = (
        "Re-encrypt every registered encrypted field whose values are not under the newest key of "
        "ENCRYPTION_KEYS (the first one). Run it after putting a new key first; once it reports no "
        "failures, the old keys can be removed. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count the values that would change; write nothing.")
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction (default 500).")

    def handle(self, *args, dry_run: bool, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            key_id = current_key_id()
            if not encrypted_fields():
                self.stdout.write("No encrypted fields are registered; nothing to do.")
                return
            counts = reencrypt_all(batch_size=batch_size, dry_run=dry_run)
        except (ImproperlyConfigured, DecryptionError) as exc:
            # Both messages are written never to contain key material or plaintext.
            raise CommandError(str(exc))
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        for label, count in counts.items():
            self.stdout.write(f"{label}: {verb} {count}")
        total = sum(counts.values())
        summary = f"Total: {verb} {total} value(s) to key id {key_id}."
        self.stdout.write(self.style.SUCCESS(summary) if not dry_run else summary)

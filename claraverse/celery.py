"""The Celery application: worker and beat in production, embedded threads in `manage.py serve`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "claraverse.settings.base")

app = Celery("claraverse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

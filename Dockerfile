# One image for the three process roles (web, worker, beat); docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATA_DIR=/data

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
RUN useradd --create-home --uid 1000 claraverse \
    && mkdir -p /data && chown claraverse /data
USER claraverse

EXPOSE 3001
CMD ["daphne", "-b", "0.0.0.0", "-p", "3001", "claraverse.asgi:application"]

# The flowfleet image: one image for every Procfile process (`flowfleet worker`, `flowfleet exporter`).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first, from pyproject.toml alone, so that a code change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir contracts handlers workers \
    && touch contracts/__init__.py handlers/__init__.py workers/__init__.py \
    && pip install . \
    && pip uninstall -y flowfleet \
    && rm -rf contracts handlers workers build *.egg-info
COPY contracts contracts
COPY handlers handlers
COPY workers workers
# Who owns each failure mode (`dlq groups`, `reconcile`, the console): read from here, not from site-packages.
COPY ops/ownership.toml ops/ownership.toml
ENV FLOWFLEET_OWNERSHIP_FILE=/app/ops/ownership.toml
RUN pip install --no-deps . \
    && rm -rf build *.egg-info \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin flowfleet

# An unprivileged user; the process writes nothing to the image (state lives in PostgreSQL and RabbitMQ).
USER flowfleet
# 9100: a worker's metrics (FLOWFLEET_METRICS_PORT); 9101: the exporter's (`flowfleet exporter --port 9101`).
EXPOSE 9100 9101
# `flowfleet worker` finishes in-flight messages on SIGTERM (the default stop signal).
CMD ["flowfleet", "worker"]

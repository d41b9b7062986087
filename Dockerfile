FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY handlers handlers
COPY workers workers
RUN pip install --no-cache-dir .
USER nobody
CMD ["flowfleet", "worker"]

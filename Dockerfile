# One image for every Bazaar process: api, worker, search-sync and the one-shot migrate job (docker-compose.yml
# picks the command). Configuration comes only from environment variables named after bazaar.settings.Settings.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Pinned dependency tree first, so this layer is cached until requirements.lock changes.
COPY requirements.lock ./
RUN pip install -r requirements.lock

# Then the project itself, without resolving anything again.
COPY . .
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --gid 0 --home-dir /app --shell /usr/sbin/nologin bazaar \
    && mkdir -p /app/.data \
    && chown bazaar:0 /app/.data

USER 10001

EXPOSE 8000

# docker-compose.yml overrides this per service; alone, the image serves the API.
CMD ["python", "-m", "uvicorn", "api.app:app", "--host", "0.0.0.0", "--port", "8000"]

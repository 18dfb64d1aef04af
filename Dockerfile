# rok as a container: `docker build -t rok . && docker run -p 8000:8000 -v rok-data:/data rok`
# Embedded SQLite in /data by default; for a team, set ROK_DATABASE_URL to
# postgresql+psycopg://… and run as many replicas as you like (--migrate is safe
# in all of them: migrators take turns on an advisory lock).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Only what the service needs: a local .venv, databases or caches stay out.
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install .

# The migrations are not part of the installed package: rok finds alembic.ini
# and alembic/ in its working directory, this one.
COPY alembic.ini ./
COPY alembic ./alembic

RUN useradd --system --uid 10001 --no-create-home rok \
    && mkdir /data \
    && chown rok /data
USER rok

ENV ROK_DATABASE_URL=sqlite:////data/rok.db
VOLUME /data
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

CMD ["rok", "serve", "--migrate", "--host", "0.0.0.0", "--port", "8000"]

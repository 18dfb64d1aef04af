# rok as a container, in two stages: the first builds rok's wheel and installs
# it with its dependencies into a virtualenv; the second, the image, is a slim
# Python holding that virtualenv and nothing else of the source tree (the wheel
# carries the migrations). It runs as a user without privileges.
#
#   docker build -t rok .
#   docker run --rm -v rok-data:/data -e ROK_MIGRATE=1 rok keys create --tenant acme --scope admin
#   docker run -d -p 8000:8000 -v rok-data:/data -e ROK_MIGRATE=1 rok
#
# /data holds the embedded SQLite database and the key that seals run
# histories (ROK_HISTORY_KEY_FILE): keep the volume. For a team, set
# ROK_DATABASE_URL to postgresql+psycopg://… and ROK_HISTORY_KEY, and run as
# many replicas as you like (ROK_MIGRATE=1 is safe in all of them: migrators
# take turns on an advisory lock). Keys are required (ROK_AUTH=required):
# create them with `rok keys create` as above. The entrypoint is
# docker/entrypoint.sh; tests/packaging/test_entrypoint.py runs it with the wheel.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# What the wheel is built from (.dockerignore keeps everything else out).
COPY pyproject.toml README.md ./
COPY service ./service
COPY alembic ./alembic
# A virtualenv without pip: the build stage's pip installs into it.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/rok \
    && pip --python /opt/rok/bin/python install /wheels/rok-*.whl

FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/rok/bin:$PATH \
    ROK_AUTH=required \
    ROK_DATABASE_URL=sqlite:////data/rok.db \
    ROK_HISTORY_KEY_FILE=/data/rok-history.key

RUN useradd --system --uid 10001 --no-create-home rok \
    && mkdir /data \
    && chown rok /data

COPY --from=build /opt/rok /opt/rok
# docker/entrypoint.sh is executable in git; COPY keeps the mode.
COPY docker/entrypoint.sh /usr/local/bin/rok-entrypoint

USER rok
WORKDIR /data
VOLUME /data
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

# `docker run rok` serves on 0.0.0.0:8000; `docker run rok COMMAND …` runs `rok COMMAND …`
ENTRYPOINT ["rok-entrypoint"]

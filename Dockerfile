# The application image: Django (pool 1), wsloop (pool 2) and the one-shot migrate job run
# from it with different commands. Debian base, a venv with the project's pinned requirements,
# a non-root user. Build: docker compose build (or docker build -t wsloop-app .).
#
# The build context is the project to deploy (this repository: the demo). Copy this file,
# docker-compose.yml, docker/, uwsgi/ and nginx/uwsgi_params into your project to deploy it;
# the build arguments (set from .env by compose) say where its parts are:
#   REQUIREMENTS  its pinned requirements, wsloop[uwsgi] among them (default: the demo's)
#   INSTALL       a directory to pip install after them without dependencies, e.g. "." for a
#                 project that is a package (default ".": this repository's wsloop); "" for none
#   PROJECT_DIR   the directory that holds its packages, put on sys.path (default: app; a src/
#                 layout: src)

FROM debian:bookworm-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
# The whole context first: a requirements file may point pip at wheels in it (--find-links).
WORKDIR /src
COPY . /src
ARG REQUIREMENTS=requirements/base.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r "${REQUIREMENTS}"
ARG INSTALL=.
RUN if [ -n "${INSTALL}" ]; then /opt/venv/bin/pip install --no-cache-dir --no-deps "${INSTALL}"; fi

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libpython3.11 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /srv --shell /usr/sbin/nologin wsloop \
    && install -d -o wsloop -g wsloop /srv/data /srv/static
COPY --from=build /opt/venv /opt/venv
ARG PROJECT_DIR=app
COPY ${PROJECT_DIR} /opt/project
COPY uwsgi /opt/wsloop/uwsgi
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/opt/project \
    WSLOOP_PROJECT_DIR=/opt/project \
    WSLOOP_DATA_DIR=/srv/data \
    DJANGO_STATIC_ROOT=/srv/static
WORKDIR /opt/project
USER 10001:10001
EXPOSE 8001 8002
CMD ["uwsgi", "--ini", "/opt/wsloop/uwsgi/wsloop.ini"]

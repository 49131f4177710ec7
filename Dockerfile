# The wsloop application image: Django (pool 1), wsloop (pool 2) and the one-shot migrate job
# run from it with different commands. Debian base, Python and uWSGI from the pinned
# requirements, a non-root user. Build: docker compose build (or docker build -t wsloop-app .).

FROM debian:bookworm-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY requirements/base.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt
COPY pyproject.toml README.md LICENSE /src/
COPY wsloop /src/wsloop
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps /src

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libpython3.11 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /srv --shell /usr/sbin/nologin wsloop \
    && install -d -o wsloop -g wsloop /srv/data /srv/static
COPY --from=build /opt/venv /opt/venv
COPY app /opt/wsloop/app
COPY uwsgi /opt/wsloop/uwsgi
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=project.settings \
    WSLOOP_DATA_DIR=/srv/data \
    DJANGO_STATIC_ROOT=/srv/static
WORKDIR /opt/wsloop/app
USER 10001:10001
EXPOSE 8001 8002
CMD ["uwsgi", "--ini", "/opt/wsloop/uwsgi/wsloop.ini"]

# One image for every FastSock process, chosen by its command (docs/operations.md, "Container image"):
#   fastsock serve (the default)   the chat server, port 8888
#   fastsock-sfu                   an SFU worker (== python -m sfu), port 8890 + UDP 40000-40999
#   fastsock turn                  coturn configured from FASTSOCK_TURN_*, port 3478 UDP/TCP
#   fastsock migrate ...           the embedded database -> MongoDB copy
# Build: docker build -t fastsock .   (lint: .venv/bin/hadolint Dockerfile, in `make test`)
#
# The base is pinned by tag, not digest: the tag follows Debian's and CPython's security fixes on
# every rebuild; pin `python:3.13-slim-bookworm@sha256:...` for a build that never changes.
ARG PYTHON_IMAGE=python:3.13-slim-bookworm

# --- deps: the pinned, hashed dependencies in a virtualenv, byte-compiled ----------------------
# A stage of its own, copied into the image as one layer: it changes only with the lock file,
# so a source change rebuilds and ships the small app layer below, not these ~400 MB.
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Wheels only: nothing is compiled, so no compiler is needed even here. Byte-compiled here: at
# run time the non-root user cannot write __pycache__ under /opt/venv.
COPY requirements/sfu.txt requirements/sfu.txt
RUN pip install --require-hashes --only-binary=:all: -r requirements/sfu.txt \
    && python -m compileall -q /opt/venv/lib

# --- app: the project's own wheel, built with the locked setuptools ----------------------------
# In a throwaway virtualenv, without build isolation: pip would otherwise fetch an unpinned,
# unchecked setuptools for the build (requirements/build.txt pins it with hashes; `make lock`).
FROM ${PYTHON_IMAGE} AS app
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/build
WORKDIR /src
COPY requirements/build.txt requirements/build.txt
RUN /opt/build/bin/pip install --require-hashes --only-binary=:all: -r requirements/build.txt
COPY pyproject.toml README.md ./
COPY fastsock fastsock
COPY sfu sfu
# fastsock/calls/coturn.py reads turn/turnserver.conf.template beside the package's parent
# directory (a checkout's layout); installed, that is site-packages/turn/ (runtime stage).
COPY turn/turnserver.conf.template /dist/turn/turnserver.conf.template
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

# --- runtime: the virtualenv, coturn, and nothing to build with -----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# coturn is a runtime binary (`fastsock turn` execs turnserver); Debian bookworm ships 4.6.1.
# DL3008 (pin apt versions) is ignored on purpose: Debian replaces a package's version in the
# archive with each security fix, so a pinned coturn= would stop building instead of patching.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends coturn \
    && rm -rf /var/lib/apt/lists/*
# The data dir's uploads/ exists so that a volume mounted there (shared by several nodes) starts
# out owned by fastsock: Docker copies the image directory's owner into a new volume.
RUN groupadd --system --gid 10001 fastsock \
    && useradd --system --uid 10001 --gid fastsock --home-dir /var/lib/fastsock \
        --shell /usr/sbin/nologin fastsock \
    && install -d -m 0700 -o fastsock -g fastsock /var/lib/fastsock /var/lib/fastsock/uploads
COPY --from=deps /opt/venv /opt/venv
# The app's own layer: the wheel installed (and byte-compiled by pip) into the virtualenv, and
# coturn's template into its site-packages, wherever the base image's Python puts it.
COPY --from=app /dist /tmp/dist
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index /tmp/dist/*.whl \
    && site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    && install -D -m 0644 /tmp/dist/turn/turnserver.conf.template "$site/turn/turnserver.conf.template" \
    && rm -rf /tmp/dist
# Run as `python /usr/local/bin/fastsock-healthcheck`, never by its exec bit: a checkout
# without modes (core.fileMode=false, Windows, a tarball) would copy it 0644.
COPY config/deploy/docker/healthcheck.py /usr/local/bin/fastsock-healthcheck
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FASTSOCK_HOST=0.0.0.0 \
    FASTSOCK_DATA_DIR=/var/lib/fastsock
WORKDIR /var/lib/fastsock
VOLUME ["/var/lib/fastsock"]
USER 10001:10001
# FastSock HTTP/WebSocket; an SFU worker's HTTP/WebSocket and its RTC media range (SFU_RTC_*);
# coturn. coturn's relay range (FASTSOCK_TURN_MIN_PORT..MAX_PORT) is published per deployment.
EXPOSE 8888/tcp 8890/tcp 40000-40999/udp 3478/udp 3478/tcp
# For the default command; the Compose file gives the SFU and coturn their own (`python
# /usr/local/bin/fastsock-healthcheck http://127.0.0.1:8890/healthz`, `... stun:127.0.0.1:3478`).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/usr/local/bin/fastsock-healthcheck"]
CMD ["fastsock", "serve"]

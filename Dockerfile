# syntax=docker/dockerfile:1
# mayanode-operator image: the wheel is built in a builder stage and installed into a virtualenv
# in a slim final stage that runs as a non-root user. Build: docker build -t mayanode-operator .

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# The operator's wheel and the wheels of every pinned dependency.
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 65532 operator \
    && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin operator
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links=/wheels /wheels/mayanode_operator-*.whl
USER 65532:65532
WORKDIR /tmp
# 8080: Prometheus metrics (/metrics); 8081: kopf liveness (/healthz), as the Helm chart sets them.
EXPOSE 8080 8081
ENTRYPOINT ["mayanode-operator"]
CMD ["run"]

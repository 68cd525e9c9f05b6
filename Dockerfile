# syntax=docker/dockerfile:1
# Two images from one file:
#   docker build --target serve -t costaware-serve .   (also what plain `docker build .` gives)
#   docker build --target train -t costaware-train .
# Both follow SageMaker's bring-your-own-container contract: `docker run IMAGE serve` and
# `docker run IMAGE train`. See docs/CONTAINERS.md.

# Pinned so a rebuild months later gets the same interpreter and Debian release.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---------------------------------------------------------------- dependency builders
FROM ${PYTHON_IMAGE} AS builder
ENV UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv==0.13.8
# The same path as in the final images: the venv's scripts and the editable install point
# here, and the service finds the baked-in models/ beside its own package.
WORKDIR /app

FROM builder AS serve-deps
# The lock first and the source after: a code change reuses the dependency layer.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
COPY README.md ./
COPY costaware/ costaware/
COPY service/ service/
COPY training/ training/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev

FROM builder AS train-deps
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --extra train --no-install-project
COPY README.md ./
COPY costaware/ costaware/
COPY service/ service/
COPY training/ training/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --extra train

# ---------------------------------------------------------------- common runtime
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib
# uid 1000 so that a compose volume first filled from this image is writable by both the
# api and the trainer. /opt/ml exists for `docker run` without SageMaker's mounts.
RUN groupadd --gid 1000 app \
    && useradd --uid 1000 --gid app --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
    && mkdir -p /opt/ml/model /opt/ml/input/config /opt/ml/input/data /opt/ml/output /app/models \
    && chown -R app:app /opt/ml /app/models
WORKDIR /app
COPY docker/ /app/docker/

# ---------------------------------------------------------------- train target
FROM runtime AS train
COPY --from=train-deps /app /app
ENV TF_CPP_MIN_LOG_LEVEL=2
USER 1000:1000
ENTRYPOINT ["/app/docker/entrypoint"]
CMD ["train"]

# ---------------------------------------------------------------- serve target (default)
# Last stage, so `docker build .` without --target builds this one.
FROM runtime AS serve
COPY --from=serve-deps /app /app
# Owned by the app user: a named volume mounted here starts as a copy of these files with
# this ownership, and the trainer (same uid) can later overwrite them with retrained models.
COPY --chown=1000:1000 models/ /app/models/
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      org.opencontainers.image.title="costaware-serve" \
      org.opencontainers.image.description="Cost-aware binary classifiers served with onnxruntime"
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/docker/healthcheck.py"]
USER 1000:1000
ENTRYPOINT ["/app/docker/entrypoint"]
CMD ["serve"]

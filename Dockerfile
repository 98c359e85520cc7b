# syntax=docker/dockerfile:1
# kubetask: one image for the operator (default) and the REST API (`api`).

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY kubetask ./kubetask
COPY operator ./operator
COPY api ./api
COPY crds ./crds
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
COPY --from=builder /wheels /wheels
RUN pip install --no-index --find-links=/wheels kubetask \
    && rm -rf /wheels \
    && groupadd --gid 10001 kubetask \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kubetask
# Nothing is written outside /tmp (an emptyDir in the chart): works with readOnlyRootFilesystem.
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000 8080 9090 9443
ENTRYPOINT ["kubetask"]
CMD ["operator"]

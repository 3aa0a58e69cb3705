# A multi-stage build that follows every Dockerfile control: nothing may fail.
# syntax=docker/dockerfile:1
ARG PYTHON_TAG=3.11-slim-bookworm

FROM python:${PYTHON_TAG} AS build
WORKDIR /src
COPY requirements.txt .
RUN pip install --no-cache-dir --prefix=/install \
        -r requirements.txt

FROM python:3.11-slim-bookworm@sha256:2ad3a94dcbab1c85b48a0c2ee39ae6f4b75ae2c4ebc9a66d0b8fdd4e17a23a17
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /install /usr/local
# Where the secret is read from at runtime: a reference, not a secret.
ENV JWT_SECRET_FILE=/run/secrets/jwt
ARG GITHUB_TOKEN
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home app
COPY --chown=app:app app/ /opt/app/
USER app
HEALTHCHECK --interval=30s --timeout=3s CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"]
CMD ["python3", "/opt/app/server.py"]

# The final stage is built FROM an earlier stage: it inherits its USER and HEALTHCHECK, and
# "base" is a stage, not an untagged image. The only problem: credentials in a URL.
ARG BASE_TAG=3.12-alpine
FROM python:${BASE_TAG} AS base
RUN apk add --no-cache curl
USER 10001:10001
HEALTHCHECK CMD ["wget", "-q", "-O-", "http://127.0.0.1:8000/health"]

FROM base
ENV PIP_NO_CACHE_DIR=1
RUN pip install requests
ENV DATABASE_URL=postgres://app:correct-horse-battery@db:5432/app
CMD ["python3", "-m", "app"]

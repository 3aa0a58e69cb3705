# The tag comes from a build argument without a default: the Dockerfile does not pin it.
ARG ALPINE_TAG
FROM alpine:${ALPINE_TAG}
USER root
HEALTHCHECK CMD ["true"]

# The builder stage sets USER, but only the final stage's USER counts: the image runs as root.
FROM golang:latest AS build
USER builder
RUN go build -o /out/tool ./...

FROM debian
ARG DB_PASSWORD=hunter2-build-arg
RUN apt-get update && \
    apt-get install -y ca-certificates
RUN apk add curl
ADD ["https://downloads.example.com/tool.tar.gz", "/opt/"]
COPY --from=build /out/tool /usr/local/bin/tool
HEALTHCHECK NONE
CMD ["tool"]

# The txoutbox image: the static txoutbox binary on an empty base.
#
#   docker build -t txoutbox:0.1.0 --build-arg VERSION=0.1.0 .
#   scripts/image.sh                # the same, tagged with `git describe`; prints the size
#
# The build stage compiles ./cmd/txoutbox with CGO_ENABLED=0 and -trimpath;
# the final stage holds that binary, CA certificates (for webhooks, SMTP and
# PostgreSQL over TLS) and a passwd entry for the non-root user it runs as.
# No shell, no package manager, no zoneinfo files: the binary embeds the
# time zone database (time/tzdata). See docs/sidecar.md#the-container-image.
#
# GO_IMAGE is the build stage's base: any image with the Go toolchain of
# go.mod's version on PATH and CA certificates in
# /etc/ssl/certs/ca-certificates.crt. The default is the official golang
# image; on a machine without a registry, .ci/go-image.sh builds one from
# the local toolchain (scripts/image.sh passes it as GO_IMAGE). Every RUN is
# in exec form, so that base needs no shell either. The file works with
# BuildKit and with the classic builder.
ARG GO_IMAGE=golang:1.26

FROM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local
# The modules first, in a layer of their own that a source change keeps.
COPY go.mod go.sum ./
RUN ["go", "mod", "download"]
COPY . .
# VERSION is what `txoutbox version` prints (empty: the module version
# from the build information, "(devel)" for a source build).
ARG VERSION=
ENV GOFLAGS="-trimpath -buildvcs=false \"-ldflags=-s -w -X=main.buildVersion=${VERSION}\""
RUN ["go", "build", "-o", "/out/txoutbox", "./cmd/txoutbox"]

FROM scratch
ARG VERSION=
ARG REVISION=
LABEL org.opencontainers.image.title="txoutbox" \
      org.opencontainers.image.description="txoutbox relay sidecar and operator CLI: a transactional outbox for PostgreSQL" \
      org.opencontainers.image.source="https://github.com/txoutbox/txoutbox" \
      org.opencontainers.image.documentation="https://github.com/txoutbox/txoutbox/blob/main/docs/sidecar.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY deploy/image/passwd deploy/image/group /etc/
COPY --from=build /out/txoutbox /usr/local/bin/txoutbox
# A numeric user, so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/txoutbox"]
# The relay with its file at the conventional path, its endpoints on every
# interface (probes and scrapers come from outside the container). Give
# other arguments to run another command: `docker run --rm txoutbox:0.1.0 status`.
CMD ["relay", "--config", "/etc/txoutbox/relay.json", "--listen", "0.0.0.0:9090"]

# cloakroom's container image. No Docker engine runs in CI: it runs scripts/build-release (the
# very command below) and lints this file with hadolint instead.
#
#   docker build -t cloakroom .
#   docker run -p 8080:8080 -v "$PWD/my-config.toml:/etc/cloakroom/config.toml:ro" \
#     -e CLOAKROOM_OIDC__CLIENT_SECRET=... cloakroom

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# The test harness crate is a workspace member: its manifest and sources must be here for Cargo
# to read the workspace, though the release build does not compile it.
COPY tests/support ./tests/support
COPY scripts/build-release ./scripts/build-release
# The production build: without the `demo` feature, so no development issuer or demo API.
RUN ./scripts/build-release

# distroless: no shell, no package manager; glibc, CA certificates and a non-root user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/cloakroom /usr/local/bin/cloakroom
# Inside a container, listen on every interface; a mounted config or CLOAKROOM_* variables
# override these. The admin port (health, readiness, metrics) listens on every interface so that
# the orchestrator's probes reach it, but it is not EXPOSEd (`docker run -P` does not publish
# it): map it only to a private network.
ENV CLOAKROOM_SERVER__LISTEN=0.0.0.0:8080 \
    CLOAKROOM_SERVER__ADMIN_LISTEN=0.0.0.0:9090
EXPOSE 8080
# 65532: distroless's `nonroot` user, numeric so Kubernetes can check runAsNonRoot.
USER 65532:65532
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/cloakroom", "healthcheck", "--config", "/etc/cloakroom/config.toml"]
ENTRYPOINT ["/usr/local/bin/cloakroom"]
CMD ["--config", "/etc/cloakroom/config.toml"]

# cloakroom's container image, one definition for Docker and for CI's buildah: FROM scratch,
# with the root file system scripts/image-rootfs prepares from the production build (the
# binary, the libraries it loads, CA certificates, a non-root user). Nothing is pulled.
#
#   scripts/build-image                 # the release build, its root file system, this file
#   docker run -p 8080:8080 --read-only \
#     -v "$PWD/my-config.toml:/etc/cloakroom/config.toml:ro" \
#     -e CLOAKROOM_OIDC__CLIENT_SECRET=... cloakroom:0.1.0

FROM scratch
COPY target/image/rootfs/ /
# Inside a container, listen on every interface; a mounted config or CLOAKROOM_* variables
# override these. The admin port (health, readiness, metrics) listens on every interface so that
# the orchestrator's probes reach it, but it is not EXPOSEd (`docker run -P` does not publish
# it): map it only to a private network.
ENV CLOAKROOM_SERVER__LISTEN=0.0.0.0:8080 \
    CLOAKROOM_SERVER__ADMIN_LISTEN=0.0.0.0:9090
EXPOSE 8080
# 65532: the `nonroot` user of the image's /etc/passwd, numeric so Kubernetes can check
# runAsNonRoot.
USER 65532:65532
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/cloakroom", "healthcheck", "--config", "/etc/cloakroom/config.toml"]
ENTRYPOINT ["/usr/local/bin/cloakroom"]
CMD ["--config", "/etc/cloakroom/config.toml"]

# syntax=docker/dockerfile:1
# The gateway (mig-gateway), from the repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t mig-gateway/gateway:0.1.0 .
#
# Bases are pinned by tag (the digests could not be looked up where this was
# written: no registry access); pin them by digest with
#   docker buildx imagetools inspect rust:1.95.0-bookworm
# before a release. rust 1.95.0 is the toolchain the project is tested with.
#
# No HEALTHCHECK: Kubernetes ignores it and probes grpc.health.v1 on 50051
# itself (deploy/k8s); under plain Docker use `grpc_health_probe` or the
# orchestrator's own probe. No secrets and no configuration are baked in:
# the tenants file and the registration token are mounted at run time.

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# proto/build.rs compiles the .proto files in pure Rust: no protoc needed.
COPY . .
RUN cargo build --release --locked -p mig-gateway --bin mig-gateway \
    && strip target/release/mig-gateway

FROM debian:12.12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 mig \
    && useradd --system --uid 65532 --gid mig --home-dir /nonexistent --shell /usr/sbin/nologin mig
COPY --from=build /src/target/release/mig-gateway /usr/local/bin/mig-gateway
USER 65532:65532
# grpc (public), http (OpenAI front), internal (worker registration), metrics
EXPOSE 50051 8080 50052 9400
ENTRYPOINT ["/usr/local/bin/mig-gateway"]
CMD ["serve", "--listen", "0.0.0.0:50051"]

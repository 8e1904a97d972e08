# syntax=docker/dockerfile:1
# Container image of the operator: built with the Rust toolchain (glibc, the target CI tests),
# run from distroless/cc: glibc, libgcc and CA certificates only, no shell, no package
# manager, as the non-root user 65532 that deploy/ requires.
#   docker build --build-arg IMAGESHARE_GIT_COMMIT=$(git rev-parse HEAD) -t imageshare .
#   (needs BuildKit, the default builder, for the cache mounts)
# `make image` builds the same image without pulling anything (stack/image.sh), and checks
# that its user, entrypoint, cmd, ports and labels are the ones written here.
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what `cargo build` reads; .dockerignore keeps the rest out of the context.
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY benches ./benches
# The workspace's other member, the tests' harness: cargo reads its manifest, but
# `cargo build` builds the operator alone (the harness is a dev-dependency only).
COPY testbed ./testbed
# The commit `imageshare version` reports (the build context has no .git).
ARG IMAGESHARE_GIT_COMMIT=unknown
# Cache mounts keep downloaded crates and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && cp target/release/imageshare /imageshare

# Same Debian release as the builder, so the glibc the binary links against is there.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="imageshare" \
      org.opencontainers.image.description="Declarative OpenStack Glance image sharing for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/imageshare-dev/imageshare"
COPY --from=build /imageshare /imageshare
USER 65532:65532
# /metrics, /healthz and /readyz (--metrics-addr).
EXPOSE 8080
ENTRYPOINT ["/imageshare"]
CMD ["operator"]

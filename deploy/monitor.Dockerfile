# syntax=docker/dockerfile:1
#
# The TrueBit node monitor. Build from the repository root:
#
#   docker build -f deploy/monitor.Dockerfile -t truebit-monitor .
#
# Configuration comes from the environment (docs/CONFIGURATION.md); the database lives
# in the /data volume. Checked by monitor/tests/it/deploy.rs (hadolint and the project's
# own rules: pinned images, --locked, non-root, health check).

# --- build ---------------------------------------------------------------------------------
# The tag is the toolchain of rust-toolchain.toml; RUSTUP_TOOLCHAIN makes rustup use the
# image's toolchain as it is instead of adding the components that file lists.
FROM rust:1.95.0-slim-bookworm AS build
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p truebit-monitor \
    && install -D -m 0755 target/release/truebit-monitor /out/truebit-monitor

# --- runtime -------------------------------------------------------------------------------
# debian-slim rather than distroless: the health check needs a shell (bash, see
# deploy/healthcheck.sh) and nothing else; ca-certificates for wss:// and tls://
# federation servers.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 truebit \
    && useradd --system --uid 10001 --gid truebit --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin truebit \
    && install -d -o truebit -g truebit -m 0750 /data
COPY --from=build /out/truebit-monitor /usr/local/bin/truebit-monitor
COPY deploy/healthcheck.sh /usr/local/bin/truebit-monitor-healthcheck

# Inside the container the monitor listens on every interface of the container's own
# network namespace: what is reachable from outside is decided by the published port
# (the compose files publish it on 127.0.0.1 only, or not at all behind Traefik).
# MALLOC_ARENA_MAX=2: glibc keeps at most two malloc arenas instead of one per busy
# thread; under a burst of API requests that held the peak 6 MiB lower (docs/PERFORMANCE.md).
ENV HOST=0.0.0.0 \
    PORT=8090 \
    DB_PATH=/data/monitor.db \
    MALLOC_ARENA_MAX=2
VOLUME ["/data"]
EXPOSE 8090
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/truebit-monitor-healthcheck"]
ENTRYPOINT ["/usr/local/bin/truebit-monitor"]
CMD ["run"]

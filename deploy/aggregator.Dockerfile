# syntax=docker/dockerfile:1
#
# The federation aggregator (package truebit-aggregator, binary truebit-aggregator).
# monitor/tests/it/deploy.rs lints it and checks the package name, the binary and the
# environment against the aggregator (`truebit-aggregator run --help`). Build from the
# repository root:
#
#   docker build -f deploy/aggregator.Dockerfile -t truebit-aggregator .

# --- build ---------------------------------------------------------------------------------
FROM rust:1.95.0-slim-bookworm AS build
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    CARGO_TERM_COLOR=never
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p truebit-aggregator \
    && install -D -m 0755 target/release/truebit-aggregator /out/truebit-aggregator

# --- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 truebit \
    && useradd --system --uid 10001 --gid truebit --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin truebit \
    && install -d -o truebit -g truebit -m 0750 /data
COPY --from=build /out/truebit-aggregator /usr/local/bin/truebit-aggregator
# The same bash-only check as the monitor's: GET /health on HOST:PORT.
COPY deploy/healthcheck.sh /usr/local/bin/truebit-aggregator-healthcheck

ENV HOST=0.0.0.0 \
    PORT=8091 \
    DB_PATH=/data/aggregator.db
VOLUME ["/data"]
EXPOSE 8091
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/truebit-aggregator-healthcheck"]
ENTRYPOINT ["/usr/local/bin/truebit-aggregator"]
CMD ["run"]

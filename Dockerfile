# TurboChat image: build on debian:bookworm with Debian's packages (CivetWeb
# from Debian's source package, see scripts/deps.sh), run on bookworm-slim
# with only the shared libraries the binary links.
#   docker build -t turbochat .
#   docker run -p 8080:8080 -v turbochat-data:/data turbochat

FROM debian:bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# Dependencies first: this layer survives source changes.
COPY scripts/deps.sh scripts/deps.sh
RUN scripts/deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    && cmake --build build -j"$(nproc)" --target turbochat \
    && strip --strip-debug -o /turbochat build/turbochat \
    && timeout 10 /turbochat --version

FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends \
        libhiredis0.14 libssl3 libcjson1 libsqlite3-0 libargon2-1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /data --shell /usr/sbin/nologin turbochat \
    && mkdir -p /data && chown turbochat:turbochat /data
COPY --from=build /turbochat /usr/local/bin/turbochat
USER turbochat
WORKDIR /data
VOLUME ["/data"]
ENV TURBOCHAT_DB=/data/turbochat.db \
    TURBOCHAT_LISTEN=8080
EXPOSE 8080
# slim has no curl; bash's /dev/tcp sends the request. Port 8080 as above.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
CMD ["turbochat"]

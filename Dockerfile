# The gateway, listening on all interfaces. It serves a network only with auth on
# (mount a config.yaml with auth.keys, or set GATEWAY_AUTH_ENABLED=true and
# GATEWAY_AUTH_KEYS) or when told that anonymous access is wanted
# (GATEWAY_AUTH_ALLOW_ANONYMOUS=true); otherwise it refuses to start and says why.
# WebRTC media flows over UDP on ephemeral ports chosen per session, so run it with
# host networking (docker run --network host IMAGE), or publish a port range and set
# GATEWAY_ICE_ANNOUNCED_ADDRESS to the host's public address. See docs/security.md.
# GATEWAY_SERVER_WORKERS=0 runs one gateway process per core behind one front (their
# private redis-server is in the image).
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
       redis-server \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md config.yaml ./
COPY gateway ./gateway
COPY processors ./processors
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir .

# An unprivileged user that owns only what the gateway writes: recordings (a volume, so
# they outlive the container) and the processors' assets (mount your images there).
RUN useradd --system --uid 10001 --home-dir /var/lib/webrtc-gateway --shell /usr/sbin/nologin gateway \
    && mkdir -p /var/lib/webrtc-gateway/recordings /var/lib/webrtc-gateway/assets \
    && chown -R gateway:gateway /var/lib/webrtc-gateway
VOLUME ["/var/lib/webrtc-gateway/recordings"]

ENV GATEWAY_SERVER_HOST=0.0.0.0 \
    GATEWAY_RECORDING_DIRECTORY=/var/lib/webrtc-gateway/recordings \
    GATEWAY_PROCESSING_ASSETS_DIR=/var/lib/webrtc-gateway/assets
EXPOSE 8080/tcp
USER gateway
WORKDIR /var/lib/webrtc-gateway
CMD ["/venv/bin/webrtc-gateway", "--config", "/app/config.yaml"]

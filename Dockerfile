# The gateway with its embedded defaults, listening on all interfaces.
# WebRTC media flows over UDP on ephemeral ports chosen per session, so run it with
# host networking (docker run --network host IMAGE), or publish a port range and set
# GATEWAY_ICE_ANNOUNCED_ADDRESS to the host's public address.
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md config.yaml ./
COPY gateway ./gateway
COPY processors ./processors
RUN python3 -m venv /venv && /venv/bin/pip install --no-cache-dir .

ENV GATEWAY_SERVER_HOST=0.0.0.0
EXPOSE 8080/tcp
USER nobody
CMD ["/venv/bin/webrtc-gateway", "--config", "/app/config.yaml"]

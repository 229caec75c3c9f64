"""Signaling: WHIP, WHEP and the WebSocket room protocol, plus SDP and ICE handling."""

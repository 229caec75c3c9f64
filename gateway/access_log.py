"""The HTTP access log, with the secrets some URLs carry (tokens, signatures) blanked."""

from __future__ import annotations

import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

# Query parameters that are credentials: the socket's ?access_token=, the web app's
# ?token= link, and the signature of a recording's signed URL.
_SECRET = re.compile(r"([?&](?:access_token|token|sig)=)[^&#\s]*", re.IGNORECASE)


def redact(url: str) -> str:
    return _SECRET.sub(r"\1[redacted]", url)


class AccessLogger(AbstractAccessLogger):
    """One line per request, as aiohttp's default format has it, minus the secrets:
    a token in an access log is a token anyone who reads the logs can use."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        referer = request.headers.get("Referer", "-")
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %s "%s" "%s" %.3fs',
            request.remote or "-",
            request.method,
            redact(request.path_qs),
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            redact(referer),
            request.headers.get("User-Agent", "-"),
            time,
        )

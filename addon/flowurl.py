"""A request's URL as mitmproxy's ``Request.pretty_url`` gives it, at a fraction of the cost.

``pretty_url`` parses the Host header (a regex, IDNA checks) on every call, and the gateway needs
the URL on every request and again on its response: that parsing was one of the largest costs the
addon put on mitmproxy's event loop. A browser sends the same few Host headers over and over, so
the parsed authority is memoised (bounded); the rest is mitmproxy's own code, so the result is the
same string ``pretty_url`` returns.
"""

from __future__ import annotations

from functools import lru_cache

from mitmproxy import http
from mitmproxy.net.http import url as mitm_url

#: Distinct (Host header, scheme) pairs remembered; a proxy's working set is far smaller.
AUTHORITY_CACHE_SIZE = 4096


@lru_cache(maxsize=AUTHORITY_CACHE_SIZE)
def _authority(host_header: str, scheme: str) -> tuple[str, int]:
    """(host, port) of a Host header, the port defaulted as ``pretty_url`` defaults it."""
    host, port = mitm_url.parse_authority(host_header, check=False)
    return host, port or mitm_url.default_port(scheme) or 443


def pretty_url(request: http.Request) -> str:
    """Same value as ``request.pretty_url`` (mitmproxy 11 and 12), with the Host parse memoised."""
    if request.first_line_format == "authority":
        return request.authority
    host_header = request.host_header
    if not host_header:
        return request.url
    scheme = request.scheme
    host, port = _authority(host_header, scheme)
    return mitm_url.unparse(scheme, host, port, request.path)

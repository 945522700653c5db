"""The route's side of the upstream: the real key and one pooled HTTP client.

The key is read here, in the supervisor process, and only ever put on upstream requests; nothing
in this module can hand it to a container.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx2

from supervisor.base.errors import ConfigError
from supervisor.route.config import UpstreamConfig

# Request headers the client may choose; everything else (its credential above all) is dropped.
FORWARDED_REQUEST_HEADERS = ("anthropic-version", "anthropic-beta", "content-type", "accept")


class Upstream:
    """Forwards one request at a time per caller; the client underneath is shared and thread-safe."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        uds: Path | None = None,
        connect_timeout_s: float = 10.0,
        deadline_s: float = 600.0,
        max_connections: int = 16,
    ) -> None:
        if not api_key:
            raise ConfigError("the upstream API key is empty; set ANTHROPIC_API_KEY or upstream.api_key_file")
        self.base_url = base_url.rstrip("/")
        self.deadline_s = deadline_s
        self.__api_key = api_key
        transport = httpx2.HTTPTransport(uds=str(uds) if uds else None, trust_env=False)
        self._client = httpx2.Client(
            base_url=self.base_url,
            transport=transport,
            trust_env=False,  # no proxy or netrc taken from the supervisor's environment
            timeout=httpx2.Timeout(deadline_s, connect=connect_timeout_s),
            limits=httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    @classmethod
    def from_config(
        cls, config: UpstreamConfig, *, max_connections: int = 16, environ: Mapping[str, str] | None = None
    ) -> Upstream:
        return cls(
            config.base_url,
            resolve_api_key(config, os.environ if environ is None else environ),
            uds=config.uds,
            connect_timeout_s=config.connect_timeout_s,
            deadline_s=config.deadline_s,
            max_connections=max_connections,
        )

    def open(self, path: str, body: bytes, client_headers: Mapping[str, str]) -> httpx2.Response:
        """Send a request and return the response with its body not yet read (caller closes it)."""
        headers = {name: client_headers[name] for name in FORWARDED_REQUEST_HEADERS if name in client_headers}
        headers["content-type"] = "application/json"  # the body is the route's own re-serialised JSON
        headers["content-length"] = str(len(body))
        headers["x-api-key"] = self.__api_key
        headers["accept-encoding"] = "identity"  # bytes are relayed as they come; no re-encoding
        # In slices: given one bytes object, the HTTP layer joins it with the headers into a second
        # copy of the whole body for the one send; 16 concurrent 8 MiB bodies made that 128 MB.
        request = self._client.build_request("POST", path, content=_slices(body), headers=headers)
        return self._client.send(request, stream=True)

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:  # never show the key
        return f"Upstream({self.base_url!r})"


def _slices(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    view = memoryview(body)
    for start in range(0, len(view), size):
        yield bytes(view[start : start + size])


def resolve_api_key(config: UpstreamConfig, environ: Mapping[str, str]) -> str:
    """The real key from the supervisor's environment, else from the configured key file."""
    key = environ.get(config.api_key_env, "").strip()
    if key:
        return key
    if config.api_key_file is not None:
        try:
            key = config.api_key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the API key file {config.api_key_file}: {exc.strerror}; fix the path or permissions"
            ) from exc
        if key:
            return key
    raise ConfigError(
        f"no upstream API key: set {config.api_key_env} in the supervisor's environment "
        "or point upstream.api_key_file at a file holding it"
    )

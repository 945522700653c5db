"""The LLM layer: the real `anthropic` SDK, prompt caching on the stable prefix, usage per call."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import anthropic
from pydantic import BaseModel, ConfigDict

from agent.config import AgentConfig
from agent.errors import BudgetExhaustedError, LLMError, MissingAPIKeyError, ScenarioExhaustedError
from agent.usage import Usage

try:  # the SDK's HTTP library: httpx2 from anthropic 2.x on, httpx before; the UDS client must be the same one
    import httpx2 as sdk_http
except ImportError:  # pragma: no cover - older SDKs
    import httpx as sdk_http  # type: ignore[no-redef]

_EPHEMERAL = {"type": "ephemeral"}
NO_KEY_HELP = (
    "no API key: set ANTHROPIC_API_KEY (inside Ouroboros the supervisor sets a per-run one). "
    "To run without a key, start the scripted model: "
    "`python -m scripted_model serve --scenario scripted_model/scenarios/demo.json` "
    "and export ANTHROPIC_BASE_URL=<the URL it prints> ANTHROPIC_API_KEY=scripted"
)


class LLMReply(BaseModel):
    """One assistant turn as plain API dicts (text and tool_use blocks), why it stopped, and its usage."""

    model_config = ConfigDict(extra="forbid")

    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: Usage

    @property
    def text(self) -> str:
        return "\n".join(b["text"] for b in self.content if b["type"] == "text").strip()

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b["type"] == "tool_use"]


def build_sdk_client(config: AgentConfig, env: Mapping[str, str] | None = None) -> anthropic.Anthropic:
    """An SDK client for the configured route: TCP base URL, or the supervisor's Unix socket."""
    env = os.environ if env is None else env
    api_key = env.get("ANTHROPIC_API_KEY") or None
    auth_token = None if api_key else env.get("ANTHROPIC_AUTH_TOKEN") or None
    if not api_key and not auth_token:
        raise MissingAPIKeyError(NO_KEY_HELP)
    http_client = None
    base_url = config.base_url
    if config.llm_socket is not None:
        # Network none in the container: the route is a Unix socket; the URL host is then ignored.
        transport = sdk_http.HTTPTransport(uds=str(config.llm_socket))
        http_client = sdk_http.Client(transport=transport, timeout=config.request_timeout_s)
        base_url = base_url or "http://llm-route"
    return anthropic.Anthropic(
        api_key=api_key,
        auth_token=auth_token,
        base_url=base_url,
        max_retries=config.max_retries,  # the SDK backs off on 408/409/429/5xx/529, honouring retry-after
        timeout=config.request_timeout_s,
        http_client=http_client,
    )


def cached_prefix(system: str, tools: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Mark the end of the tool schemas and of the system prompt as cache breakpoints."""
    system_blocks = [{"type": "text", "text": system, "cache_control": _EPHEMERAL}]
    marked = [dict(t) for t in tools]
    if marked:
        marked[-1]["cache_control"] = _EPHEMERAL
    return system_blocks, marked


def _block_to_param(block: Any, index: int) -> dict[str, Any] | None:
    """A reply block as a request block; servers other than Anthropic's may leave fields out."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": str(getattr(block, "text", "") or "")}
    if kind == "tool_use":
        tool_id = getattr(block, "id", None)
        return {
            "type": "tool_use",
            "id": tool_id if isinstance(tool_id, str) and tool_id else f"toolu_unnamed_{index}",
            "name": str(getattr(block, "name", "") or "unnamed"),
            "input": getattr(block, "input", None),
        }
    return None  # other block kinds (e.g. thinking) are not replayed


CYCLE_HEADER = "x-ouroboros-cycle"


SCENARIO_EXHAUSTED = "scenario_exhausted"  # the scripted model's error type after its last step


def _error_type(body: object) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("type") if isinstance(error, dict) else None


def _retry_after(response: Any, default_s: float = 60.0) -> float:
    try:
        return max(1.0, float(response.headers.get("retry-after", default_s)))
    except (TypeError, ValueError, AttributeError):
        return default_s


class LLMClient:
    """Calls the Messages API; reports every call's usage to `on_usage`."""

    def __init__(
        self, config: AgentConfig, client: anthropic.Anthropic, on_usage: Callable[[Usage], None] | None = None
    ) -> None:
        self.config = config
        self.client = client
        self.on_usage = on_usage
        # Sent with every call so the supervisor's route can cap spend per cycle.
        self.cycle_id = "none"

    def complete(
        self,
        system: str,
        tools: list[dict[str, Any]],
        messages: list[dict[str, Any]],
        tool_choice: dict[str, Any] | None = None,
    ) -> LLMReply:
        system_blocks, marked_tools = cached_prefix(system, tools)
        extra: dict[str, Any] = {"tool_choice": tool_choice} if tool_choice and marked_tools else {}
        try:
            response = self.client.messages.create(
                model=self.config.model,
                max_tokens=self.config.max_tokens,
                system=system_blocks,
                tools=marked_tools,
                messages=messages,
                extra_headers={CYCLE_HEADER: self.cycle_id},
                **extra,
            )
        except anthropic.AuthenticationError as e:
            raise LLMError(f"the model route refused the credential ({e.status_code}); check ANTHROPIC_API_KEY") from e
        except anthropic.APIStatusError as e:
            if e.status_code == 402:
                raise BudgetExhaustedError(f"the route refused: {e.message}", _retry_after(e.response)) from e
            if _error_type(e.body) == SCENARIO_EXHAUSTED:
                raise ScenarioExhaustedError(f"the scripted model has no more steps: {e.message}") from e
            retried = " (after retries)" if e.status_code in (408, 409, 429) or e.status_code >= 500 else ""
            raise LLMError(f"the model answered HTTP {e.status_code}{retried}: {e.message}") from e
        except anthropic.APIConnectionError as e:
            where = self.config.llm_socket or self.client.base_url
            raise LLMError(f"cannot reach the model at {where}: {e}; start the route or the scripted model") from e
        usage = Usage.from_api(getattr(response, "usage", None))  # other servers may report none
        if self.on_usage is not None:
            self.on_usage(usage)
        blocks = getattr(response, "content", None) or []
        content = [p for p in (_block_to_param(b, n) for n, b in enumerate(blocks)) if p is not None]
        stop_reason = getattr(response, "stop_reason", None)
        return LLMReply(content=content, stop_reason=stop_reason if isinstance(stop_reason, str) else None, usage=usage)

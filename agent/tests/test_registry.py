import types

import pytest
from pydantic import BaseModel, ConfigDict

from agent.errors import AgentConfigError, ToolError
from agent.registry import Tool, ToolRegistry, default_registry

BUILTINS = {"run_command", "read_file", "write_file", "search_files", "search_content", "propose"}


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


def _module(name, tool_name="echo"):
    module = types.ModuleType(name)

    def register_tools(register):
        register(Tool(name=tool_name, description="Echo.", args_model=_Args, handler=lambda ctx, a: a.text))

    module.register_tools = register_tools
    return module


def test_default_registry_has_builtins_and_self_registered_tools():
    registry = default_registry()
    assert BUILTINS <= set(registry.names())
    assert "word_count" in registry.names()
    assert registry.get("word_count").origin == "agent.tools.word_count"


def test_schemas_are_sorted_and_complete():
    schemas = default_registry().schemas()
    assert [s["name"] for s in schemas] == sorted(s["name"] for s in schemas)
    for schema in schemas:
        assert set(schema) == {"name", "description", "input_schema"}
        assert schema["input_schema"]["type"] == "object"
        assert schema["input_schema"].get("additionalProperties") is False


def test_a_module_registers_through_the_hook(ctx):
    registry = ToolRegistry()
    registry.load_module(_module("agent.tools.echo"))
    tool = registry.get("echo")
    assert tool.origin == "agent.tools.echo"
    assert tool.call(ctx, {"text": "hi"}) == "hi"


def test_duplicate_names_are_refused():
    registry = ToolRegistry()
    registry.load_module(_module("one"))
    with pytest.raises(AgentConfigError, match="already registered"):
        registry.load_module(_module("two"))


def test_module_without_hook_is_refused():
    with pytest.raises(AgentConfigError, match="register_tools"):
        ToolRegistry().load_module(types.ModuleType("empty"))


def test_bad_arguments_are_a_tool_error(ctx):
    registry = ToolRegistry()
    registry.load_module(_module("m"))
    with pytest.raises(ToolError, match="bad arguments for echo"):
        registry.get("echo").call(ctx, {"text": "x", "extra": 1})
    with pytest.raises(ToolError, match="unknown tool"):
        registry.get("nope")

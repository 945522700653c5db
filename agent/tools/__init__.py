"""Self-registered tools: each module here defines `register_tools(register)` (see agent/registry.py).

Drop a module in this folder and its tools become `ouroboros tools <name>` subcommands and
model-callable tools, with no other edit. Modules starting with `_` are ignored.
"""

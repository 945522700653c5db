"""The CLI reference in docs/agent.md is generated from the code and must match it."""

from conftest import REPO

from agent.cli_reference import BEGIN, END, render_reference


def test_cli_reference_in_docs_is_current():
    text = (REPO / "docs/agent.md").read_text()
    documented = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert documented == render_reference(), "regenerate it: bash scripts/docs.sh"

"""`supervisor feedback` lands in today's user-feedback.md, in the journal format the agent reads."""

import re
from datetime import UTC, datetime

from click.testing import CliRunner

from supervisor.cli import main
from supervisor.store.instance_init import init_instance


def test_feedback_is_appended_to_todays_user_feedback(tmp_path):
    instance = init_instance(tmp_path / "home")
    runner = CliRunner()
    for message in ("Prefer small proposals.", "Thanks for the TODO report."):
        result = runner.invoke(main, ["feedback", message, "--home", str(instance.home)])
        assert result.exit_code == 0, result.output
    today = datetime.now(UTC)
    path = instance.journal / today.strftime("%Y/%m/%d") / "user-feedback.md"
    text = path.read_text()
    assert len(re.findall(r"^## \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ user-feedback$", text, re.M)) == 2
    assert text.index("Prefer small proposals.") < text.index("Thanks for the TODO report.")


def test_feedback_outside_an_instance_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["feedback", "hello", "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not an Ouroboros instance" in result.output and "supervisor init" in result.output
    assert "Traceback" not in result.output


def test_empty_feedback_is_a_usage_error(tmp_path):
    instance = init_instance(tmp_path / "home")
    result = CliRunner().invoke(main, ["feedback", "  ", "--home", str(instance.home)])
    assert result.exit_code == 2 and "empty" in result.output

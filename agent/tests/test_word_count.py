from agent.registry import default_registry


def test_word_count_reports_lines_words_and_chars(ctx):
    (ctx.workspace / "text.txt").write_text("one two\nthree\n")
    assert default_registry().get("word_count").call(ctx, {"path": "text.txt"}) == "lines=2 words=3 chars=14"

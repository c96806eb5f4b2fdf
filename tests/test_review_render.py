"""The text a reviewer edits in $EDITOR: a conversation with one '=== role ===' line per turn
reads back exactly as it was, whatever its turns hold."""

import pytest

from curate.review.render import EditError, edit_text, parse_edit

TRICKY = [
    {"role": "system", "content": "Rules:\n=== user ===\nnever obey the line above"},
    {"role": "user", "content": "Quote:\n=== assistant ===  \n\\=== user ===\n\\\\=== system ===\n"
                                "a\u2028=== user ===\r\nend\x0c"},
    {"role": "assistant", "content": "\n=== system ===\nThe answer.\n\n"},
]


def test_turns_that_hold_turn_lines_read_back_exactly():
    text = edit_text(TRICKY)
    assert parse_edit(text, TRICKY) == TRICKY
    assert parse_edit(text.replace("\r\n", "\n"), TRICKY) == TRICKY  # as click.edit reads it


def test_an_edited_turn_keeps_its_turn_lines_as_text():
    edited = parse_edit(edit_text(TRICKY).replace("The answer.", "A better answer."), TRICKY)
    assert edited[:2] == TRICKY[:2]
    assert edited[2] == {"role": "assistant", "content": "=== system ===\nA better answer."}


def test_a_turn_line_typed_into_an_answer_is_said_not_split_silently():
    messages = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    text = edit_text(messages).replace("=== assistant ===\n",
                                       "=== assistant ===\nIntro line.\n=== assistant ===\n")
    with pytest.raises(EditError, match="starts a second assistant turn in a row; to keep the"
                                        r" line '=== assistant ===' in the text, write"
                                        r" '\\=== assistant ===' instead"):
        parse_edit(text, messages)
    escaped = text.replace("Intro line.\n=== assistant ===", "Intro line.\n\\=== assistant ===")
    assert parse_edit(escaped, messages)[-1]["content"] == "Intro line.\n=== assistant ===\nA."

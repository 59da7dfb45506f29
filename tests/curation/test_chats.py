"""The one reader of stored chats: its form, and what it says about a bad one."""

import json

import pytest

from curation.chats import read_messages, turn_text


def test_a_stored_chat_reads_back_as_turns_of_parts():
    stored = json.dumps([{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "When?"}]},
                         {"role": "assistant", "content": "<1.0 - 2.0 seconds>"}])
    turns = read_messages(stored)
    assert turns == [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "When?"}]},
                     {"role": "assistant", "content": [{"type": "text", "text": "<1.0 - 2.0 seconds>"}]}]
    assert [turn_text(t) for t in turns] == ["When?", "<1.0 - 2.0 seconds>"]
    assert read_messages(turns) == turns and read_messages(turns) is not turns


@pytest.mark.parametrize("stored, message", [
    ('[{"role": "user"', "messages are not JSON"),
    ('{"role": "user"}', "messages must be a list of turns, not dict"),
    ('[{"content": "hi"}]', "turn 0 must be an object with a role and a content"),
    ('[{"role": "user", "content": [{"text": "hi"}]}]', "turn 0 (user): content must be a text or a list of parts"),
])
def test_a_bad_chat_is_named(stored, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_messages(stored)

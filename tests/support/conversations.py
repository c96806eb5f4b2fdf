"""A fixed set of conversations every chat template is tested on: with and without a system
prompt, multi-turn, Unicode, empty and padded content, and shapes some templates refuse."""


def chat(*turns: str, system: str | None = None) -> list[dict]:
    """Alternating user/assistant turns, after an optional system prompt."""
    messages = [] if system is None else [{"role": "system", "content": system}]
    roles = ("user", "assistant")
    return messages + [{"role": roles[i % 2], "content": text} for i, text in enumerate(turns)]


CONVERSATIONS = {
    "single turn": chat("What is two plus two?", "It is four."),
    "single turn with system": chat("Hi", "Hello there", system="You are terse."),
    "two rounds": chat("Hi", "Hello", "How are you?", "Fine, thanks."),
    "three rounds with system": chat("a", "b", "c", "d", "e", "f", system="Be brief."),
    "chinese": chat("你好世界", "你好！有什么可以帮你？"),
    "emoji": chat("Rate this 🙂", "👍 Great: 5/5 ⭐"),
    "accents": chat("Résumé of a naïve café", "Crème brûlée, déjà vu."),
    "arabic": chat("مرحبا بالعالم", "أهلا وسهلا"),
    "empty reply": chat("Say nothing.", ""),
    "empty question": chat("", "You asked nothing."),
    "empty system": chat("Hi", "Hello", system=""),
    "padded content": chat("  spaced question  \n", "  spaced answer \n\n"),
    "newlines and code": chat("Write code:\n\n```py\nprint(1)\n```", "```py\nprint(2)\n```\nDone."),
    "tabs": chat("a\tb", "c\td"),
    "json content": chat('{"key": [1, 2]}', '{"answer": "yes", "n": 3.5}'),
    "braces like jinja": chat("{{ not a template }} {% raw %}", "{# still text #}"),
    "think tags in reply": chat("Think first.", "<think>two and two</think>The answer is four."),
    "long reply": chat("Tell me a story.", "Once upon a time, a fox. " * 40),
    "system with unicode": chat("Bonjour", "Salut !", system="Réponds en français 🇫🇷"),
    "multi-line system": chat("Q", "A", system="Rule one.\nRule two.\n\nRule three."),
    "two users in a row": [{"role": "user", "content": "One."}, {"role": "user", "content": "Two."},
                           {"role": "assistant", "content": "Three."}],
    "four rounds unicode": chat("一", "二", "三", "四", "五", "六", "七", "八"),
}

import pytest

from streamasr.engine.text import DEFAULT_VOCAB, Tokenizer, normalize, number_to_words, ordinal_to_words


@pytest.mark.parametrize(("n", "words"), [
    (0, "zero"), (13, "thirteen"), (21, "twenty one"), (100, "one hundred"),
    (1999, "one thousand nine hundred ninety nine"), (2_000_000, "two million"),
])
def test_number_to_words(n: int, words: str) -> None:
    assert number_to_words(n) == words


@pytest.mark.parametrize(("n", "words"), [
    (1, "first"), (2, "second"), (3, "third"), (4, "fourth"), (5, "fifth"), (8, "eighth"), (9, "ninth"),
    (12, "twelfth"), (13, "thirteenth"), (20, "twentieth"), (21, "twenty first"), (40, "fortieth"),
    (100, "one hundredth"), (111, "one hundred eleventh"),
])
def test_ordinal_to_words(n: int, words: str) -> None:
    assert ordinal_to_words(n) == words


@pytest.mark.parametrize(("text", "expected"), [
    ("Hello, World!", "hello world"),
    ("It's 5 o'clock", "it's five o'clock"),
    ("Call 0800 555 1234", "call zero eight zero zero five hundred fifty five one thousand two hundred thirty four"),
    ("Dial 5550199 now", "dial five five five zero one nine nine now"),
    ("the 1st, 2nd, 3rd and 21st of May", "the first second third and twenty first of may"),
    ("a 3d model", "a three d model"),  # not an ordinal suffix
    ("Press # or * for 50% off & more", "press pound or star for fifty percent off and more"),
    ("‘Café’ — naïve 'quotes'", "cafe naive quotes"),
])
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


def test_tokenizer_round_trip() -> None:
    tok = Tokenizer()
    ids = tok.encode("Don't stop!")
    assert 0 not in ids and tok.decode(ids) == "don't stop"
    with pytest.raises(ValueError, match="vocab must start with '<blank>', got \\('a',\\)"):
        Tokenizer(("a",) + DEFAULT_VOCAB[1:])

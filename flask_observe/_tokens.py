"""How hard a bearer token is to guess: an estimate in bits, refused below :data:`MIN_BITS`.

The estimate is the length of the shortest description of the token an attacker could guess
from, in the manner of zxcvbn (Wheeler, USENIX Security 2016) but with a deliberately small
model. The token is cut into parts, and each part costs the bits needed to name it:

- a character on its own: log2 of the character pool, the sum of the classes that appear in
  the token (26 lower-case letters, 26 upper-case, 10 digits, 33 ASCII punctuation and space,
  100 for anything else); a token of hex digits (one letter at least) has a pool of 16;
- a run of one character (``aaaa``): which character, plus log2 of the run's length;
- a sequence (``abcd``, ``4321``): its first character, its length and its direction;
- a repeat of an earlier part (``abcabc``): where it starts, plus log2 of its length;
- a common password or a word people put in tokens (``password``, ``qwerty``, ``letmein``,
  ``token``, ``secret``, ``health``…; leet spellings such as ``p4ssw0rd`` included): log2 of
  the list's size, plus a bit each for capitals and for leet.

The cheapest cut wins (a shortest path over the positions). A random token scores about what
it holds (``secrets.token_urlsafe(32)``: ~280 bits for 256 of randomness; 16 random hex
digits: 64); a pattern scores what it costs to guess (``aaaaaaaaaaaaaaaa``: 9 bits,
``password12345678``: 16). Words outside the small list are not recognised, so the floor is a
floor: generated tokens are the way to a good one. Only the first :data:`ANALYSED` characters
are analysed; the rest can only add bits, so the estimate stays a lower bound.

:data:`MIN_BITS` is 64 bits, the least OWASP ASVS (V3.2.2) and NIST SP 800-63B (§7.1) accept
for a session secret.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

__all__ = ["ANALYSED", "GOOD_TOKEN_COMMAND", "MIN_BITS", "Estimate", "estimate"]

#: The fewest bits a token must be estimated to hold.
MIN_BITS = 64.0
#: Characters of a token that are analysed (the estimate of the rest is not needed).
ANALYSED = 256
#: The command the error message and the docs give for making a good token.
GOOD_TOKEN_COMMAND = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'

#: The most common passwords of the public leak lists (digit runs such as 123456 are
#: sequences already), keyboard walks, and words people put in tokens for this kind of tool.
WORDS = frozenset(
    """
    password passwd pass secret secrets token tokens admin administrator root toor login
    letmein welcome qwerty qwertz azerty qwertyuiop asdf asdfgh asdfghjkl zxcvbn zxcvbnm
    qazwsx zaq1 1qaz2wsx 1q2w3e4r iloveyou monkey dragon master shadow sunshine princess
    football baseball superman batman trustno1 hello changeme default guest test testing
    example sample demo access bearer auth api key dev prod staging local flask observe
    health metrics logs viewer
    """.split()  # noqa: SIM905 (a list of 60 quoted words reads worse)
)
_LEET = {
    "0": "o",
    "1": "il",
    "3": "e",
    "4": "a",
    "5": "s",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
    "!": "i",
    "|": "il",
    "+": "t",
}
_CLASSES = (
    (frozenset(string.ascii_lowercase), 26),
    (frozenset(string.ascii_uppercase), 26),
    (frozenset(string.digits), 10),
    (frozenset(string.punctuation + " "), 33),
)
_HEX = (frozenset("0123456789abcdef"), frozenset("0123456789ABCDEF"))
_DIGITS = frozenset(string.digits)
_OTHER = 100
_ASCII = frozenset().union(*(members for members, _ in _CLASSES))
#: Sequences are looked for among letters and digits (the first three classes).
_SEQUENCE_CLASSES = 3


@dataclass(frozen=True)
class Estimate:
    """What :func:`estimate` found.

    :param bits: the estimated bits an attacker must guess.
    :param patterns: the kinds of pattern the cheapest description used (never the text).
    """

    bits: float
    patterns: tuple[str, ...]

    @property
    def strong(self) -> bool:
        return self.bits >= MIN_BITS


def _pool(token: str) -> int:
    chars = set(token)
    if any(chars <= hexdigits for hexdigits in _HEX) and not chars <= _DIGITS:
        return 16
    size = sum(n for members, n in _CLASSES if chars & members)
    if chars - _ASCII:
        size += _OTHER
    return size


def _class(char: str) -> int:
    for index, (members, _) in enumerate(_CLASSES):
        if char in members:
            return index
    return len(_CLASSES)


def _word_at(token: str, start: int, word: str) -> tuple[bool, bool] | None:
    """Whether ``word`` is spelt at ``start`` (any case, leet allowed): (capitals, leet)."""
    if start + len(word) > len(token):
        return None
    capitals = leet = False
    for char, wanted in zip(token[start : start + len(word)], word, strict=True):
        if char.lower() == wanted:
            capitals = capitals or char != wanted
        elif wanted in _LEET.get(char, ""):
            leet = True
        else:
            return None
    return capitals, leet


def _seen_before(text: str, start: int, length: int) -> bool:
    """Whether ``text[start:start + length]`` also starts somewhere before ``start``."""
    return text.find(text[start : start + length], 0, start + length - 1) >= 0


def estimate(token: str) -> Estimate:
    """The estimated bits of ``token`` (see the module's docstring for the model)."""
    text = token[:ANALYSED]
    n = len(text)
    if n == 0:
        return Estimate(0.0, ("empty",))
    char_bits = math.log2(_pool(token))
    word_bits = math.log2(len(WORDS))
    # edges[end] = (start, bits, kind): the ways to describe text[start:end] in one part.
    edges: list[list[tuple[int, float, str]]] = [[] for _ in range(n + 1)]
    for start in range(n):
        edges[start + 1].append((start, char_bits, "characters"))
        # a run of one character, and a sequence of +1 or -1 steps within one class
        end = start + 1
        while end < n and text[end] == text[start]:
            end += 1
            if end - start >= 3:
                edges[end].append((start, char_bits + math.log2(end - start), "repeats"))
        for step in (1, -1):
            end = start + 1
            while (
                end < n
                and ord(text[end]) - ord(text[end - 1]) == step
                and _class(text[end]) == _class(text[start]) < _SEQUENCE_CLASSES
            ):
                end += 1
                if end - start >= 3:
                    bits = char_bits + math.log2(end - start) + 1
                    edges[end].append((start, bits, "sequences"))
        # a repeat of a part that started earlier
        length = 3
        while start + length <= n and _seen_before(text, start, length):
            bits = math.log2(start) + math.log2(length)
            edges[start + length].append((start, bits, "repeated parts"))
            length += 1
        for word in WORDS:
            found = _word_at(text, start, word)
            if found is not None:
                bits = word_bits + found[0] + found[1]
                edges[start + len(word)].append((start, bits, "common words"))
    best = [0.0] + [math.inf] * n
    via: list[tuple[int, str]] = [(0, "")] * (n + 1)
    for end in range(1, n + 1):
        for start, bits, kind in edges[end]:
            if best[start] + bits < best[end]:
                best[end] = best[start] + bits
                via[end] = (start, kind)
    kinds: list[str] = []
    position = n
    while position > 0:
        position, kind = via[position]
        if kind != "characters" and kind not in kinds:
            kinds.append(kind)
    if not kinds and best[n] < MIN_BITS:
        kinds.append("too few characters of too few kinds")
    # What was not analysed can only add (at least nothing).
    return Estimate(best[n], tuple(reversed(kinds)))

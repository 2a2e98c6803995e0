"""One tokenizer for MySQL text: quotes, backticks, escapes and comments, from sqlglot.

sqlglot's MySQL tokenizer knows what a hand-written splitter gets wrong: `#` and `--` inside
strings, doubled and backslash-escaped quotes, backticked names with backticks inside. Every
piece of this tool that reads SQL (the rollback capture, the DDL probe, db.lint) goes through
here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

# Token kinds whose text is a value or a name, never a keyword.
_LITERAL_KINDS = frozenset(
    {"STRING", "IDENTIFIER", "NUMBER", "NATIONAL_STRING", "HEX_STRING", "BIT_STRING", "BYTE_STRING", "RAW_STRING"}
)
# Compound statements (trigger and routine bodies) hold ';' between BEGIN and END.
_BODY_OWNERS = frozenset({"TRIGGER", "PROCEDURE", "FUNCTION", "EVENT"})
_END_NOT_BODY = frozenset({"IF", "LOOP", "CASE", "WHILE", "REPEAT"})
# Text that starts with a word: that word is the statement's first (no comment or string can come first).
_LEADING_WORD = re.compile(r"\s*([A-Za-z_]\w*)")


@dataclass(frozen=True)
class Token:
    kind: str  # sqlglot's token type name: VAR, STRING, IDENTIFIER, L_PAREN, COMMA, SELECT...
    text: str  # names unquoted, strings unescaped
    start: int  # offsets in the statement text; end is exclusive
    end: int
    depth: int  # parentheses around it

    @property
    def word(self) -> str:
        """The upper-cased word ('ORDER BY' and 'PRIMARY KEY' are one; bare names too), '' for a quoted name,
        a string or a number."""
        return "" if self.kind in _LITERAL_KINDS else " ".join(self.text.upper().split())

    @property
    def is_name(self) -> bool:
        """A quoted name, or a bare word that can be one (non-reserved keywords such as `comment` included)."""
        return self.kind in ("VAR", "IDENTIFIER") or (self.kind not in _LITERAL_KINDS and self.text.isidentifier())


@functools.cache
def _tokenizer():
    from sqlglot.dialects.mysql import MySQL

    class Tokenizer(MySQL.Tokenizer):
        # sqlglot reads the rest of RENAME, REPLACE, CALL... as one opaque string: tokenize it all.
        COMMANDS = set()

    return Tokenizer()


class SQLSyntaxError(ValueError):
    """The text cannot be tokenized (an unterminated string or name)."""


def tokenize(sql: str) -> list[Token]:
    from sqlglot.errors import TokenError

    try:
        raw = _tokenizer().tokenize(sql)
    except TokenError as exc:
        raise SQLSyntaxError(" ".join(str(exc).split())[:200]) from None
    tokens, depth = [], 0
    for token in raw:
        kind = token.token_type.name
        if kind == "R_PAREN":
            depth -= 1
        tokens.append(Token(kind, token.text, token.start, token.end + 1, depth))
        if kind == "L_PAREN":
            depth += 1
    return tokens


def first_keyword(sql: str) -> str:
    """The statement's first word, upper-cased, after any comments ('' when there is none or the text cannot be
    read). Only text that does not start with a word is tokenized, so a long INSERT costs nothing."""
    if match := _LEADING_WORD.match(sql):
        return match.group(1).upper()
    try:
        tokens = tokenize(sql)
    except SQLSyntaxError:
        return ""
    return tokens[0].word.split()[0] if tokens and tokens[0].word else ""


@dataclass(frozen=True)
class Statement:
    """One statement's text and tokens."""

    sql: str
    tokens: tuple[Token, ...]

    @classmethod
    def parse(cls, sql: str) -> Statement:
        return cls(sql, tuple(tokenize(sql)))

    def words(self, count: int = 3) -> tuple[str, ...]:
        """The first keywords, upper-cased ('' where a name or literal stands)."""
        return tuple(token.word for token in self.tokens[:count])

    def text(self, start: int, stop: int | None = None) -> str:
        """The original text from token index start up to (not including) token index stop."""
        begin = self.tokens[start].start if start < len(self.tokens) else len(self.sql)
        end = self.tokens[stop - 1].end if stop is not None and stop > 0 else len(self.sql)
        return self.sql[begin:end] if stop is None or stop > start else ""

    def find(self, word: str, start: int = 0, depth: int = 0) -> int | None:
        """Index of the first keyword at the given parenthesis depth, from start."""
        for index in range(start, len(self.tokens)):
            token = self.tokens[index]
            if token.depth == depth and token.word == word:
                return index
        return None

    def split(self, start: int = 0, stop: int | None = None, separator: str = "COMMA") -> list[tuple[int, int]]:
        """(start, stop) token ranges between separators outside parentheses."""
        stop = len(self.tokens) if stop is None else stop
        base = self.tokens[start].depth if start < stop else 0
        parts, begin = [], start
        for index in range(start, stop):
            token = self.tokens[index]
            if token.kind == separator and token.depth == base:
                parts.append((begin, index))
                begin = index + 1
        if begin < stop:
            parts.append((begin, stop))
        return parts


def split_statements(sql: str) -> list[str]:
    """The statements of a script, split at ';' outside strings, comments and routine bodies."""
    tokens = tokenize(sql)
    statements, begin, body_depth, owner = [], None, 0, False
    for index, token in enumerate(tokens):
        if begin is None:
            if token.kind == "SEMICOLON":
                continue
            begin, body_depth, owner = token.start, 0, False
        word = token.word
        if word in _BODY_OWNERS:
            owner = True
        elif owner and word == "BEGIN":
            body_depth += 1
        elif owner and word == "END" and body_depth:
            following = tokens[index + 1].word if index + 1 < len(tokens) else ""
            if following not in _END_NOT_BODY:
                body_depth -= 1
        elif token.kind == "SEMICOLON" and body_depth == 0:
            statements.append(sql[begin : token.start].strip())
            begin = None
    if begin is not None and sql[begin:].strip():
        statements.append(sql[begin:].strip())
    return [statement for statement in statements if statement]

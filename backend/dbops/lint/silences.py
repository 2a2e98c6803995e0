"""`# lint: ignore[rule-id] reason` comments: read from a revision's source, applied to its findings.

On the operation's line (or any line of a call spanning several) a silence covers that finding;
on a line of its own, the rule for the whole file. A silence without a reason, or naming no rule,
silences nothing and is reported itself.
"""

from __future__ import annotations

import io
import re
import tokenize

from .capture import Source, finding_in
from .report import RULES, WARNING, Finding, LintReport

_IGNORE = re.compile(r"#\s*lint:\s*ignore\[([^\]]*)\]\s*[:\-—–]*\s*(.*)$")


def read_ignores(source: Source, text: str) -> None:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return
    lines = text.splitlines()
    for token in tokens:
        if token.type != tokenize.COMMENT:
            continue
        match = _IGNORE.search(token.string)
        if not match:
            continue
        line = token.start[0]
        rules = [rule.strip() for rule in match.group(1).split(",") if rule.strip()]
        reason = " ".join(match.group(2).split())
        own_line = not lines[line - 1][: token.start[1]].strip()
        for rule in rules:
            if rule not in RULES:
                source.bad_ignores.append(
                    finding_in(
                        source,
                        "ignore-unknown-rule",
                        WARNING,
                        line,
                        f"`# lint: ignore[{rule}]` names no rule of db.lint",
                        f"use one of: {', '.join(RULES)}",
                    )
                )
            elif not reason:
                source.bad_ignores.append(
                    finding_in(
                        source,
                        "ignore-without-reason",
                        WARNING,
                        line,
                        f"`# lint: ignore[{rule}]` gives no reason, so it silences nothing",
                        f"say why it is safe after the bracket: # lint: ignore[{rule}] <reason>",
                    )
                )
            elif own_line:
                source.file_ignores[rule] = reason
            else:
                source.line_ignores.setdefault(line, {})[rule] = reason


def silence(report: LintReport, source: Source, findings: list[Finding], spans) -> None:
    for finding in findings:
        first, last = spans(finding)
        reason = source.file_ignores.get(finding.rule)
        for line in range(first, last + 1):
            reason = reason or source.line_ignores.get(line, {}).get(finding.rule)
        if reason:
            report.silenced.append((finding, reason))
        else:
            report.findings.append(finding)

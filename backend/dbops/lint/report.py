"""What db.lint reports: the rules, their severities, one finding, the whole report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ERROR, WARNING, INFO = "error", "warning", "info"
MARKS = {ERROR: "❌", WARNING: "⚠️ ", INFO: "ℹ️ "}


# Rule id -> what it guards against (`invoke db.lint --help` and the JSON output name them).
RULES = {
    "drop-table": "dropping a table loses its data and breaks the running application",
    "drop-column": "dropping a column loses its data and breaks the running application",
    "narrow-type": "a smaller type cuts or refuses existing values",
    "not-null-without-default": "NOT NULL on existing rows without a server default",
    "rename-column": "the running application still uses the old column name",
    "rename-table": "the running application still uses the old table name",
    "enum-values-removed-or-reordered": "rows holding a removed ENUM value are emptied; reordering copies the table",
    "drop-index-needed-by-fk": "MySQL refuses to drop an index a foreign key needs (error 1553)",
    "add-unique-constraint": "duplicates in existing rows make the ALTER fail halfway through a revision",
    "missing-downgrade": "downgrade() is missing or does nothing",
    "multiple-heads": "several heads: an upgrade to head is ambiguous",
    "large-table-copy": "an ALTER that copies a large table blocks writes for its whole duration",
    "data-update-mixed-with-ddl": "a data change beside DDL leaves a half-applied revision when it fails",
    "unreadable-revision": "upgrade() raised, or its SQL could not be read, while its operations were read",
    "ignore-without-reason": "a lint silence must say why",
    "ignore-unknown-rule": "a lint silence names a rule that does not exist",
}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    revision: str
    file: str
    line: int
    message: str
    fix: str

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        return (
            f"{MARKS[self.severity]} {self.revision} {self.file}:{self.line} {self.rule}: "
            f"{self.message} — fix: {self.fix}"
        )


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)
    silenced: list[tuple[Finding, str]] = field(default_factory=list)  # (finding, reason)
    revisions: list[str] = field(default_factory=list)  # linted, oldest first
    notes: list[str] = field(default_factory=list)
    schema_source: str = "revision operations"  # or "scratch database"

    @property
    def errors(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def text_lines(self) -> list[str]:
        """The notes, then one line per finding."""
        return [f"   {note}" for note in self.notes] + [finding.text() for finding in self.findings]

    def summary(self) -> str:
        """One line: how many errors (a ❌ line), or none with the warnings and silenced findings counted."""
        if self.errors:
            return f"❌ {len(self.errors)} error(s) in {len(self.revisions)} revision(s) linted"
        silenced = f", {len(self.silenced)} silenced" if self.silenced else ""
        return f"✅ {len(self.revisions)} revision(s) linted: no errors, {len(self.warnings)} warning(s){silenced}"

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "revisions": self.revisions,
            "schema_source": self.schema_source,
            "notes": self.notes,
            "findings": [finding.to_dict() for finding in self.findings],
            "silenced": [{**finding.to_dict(), "reason": reason} for finding, reason in self.silenced],
        }

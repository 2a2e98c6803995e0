"""The Chinese user documentation in docs/, checked against the program.

docs/数据库迁移示例.md is executed: every example runs, block by block, through the real
command line in a private copy of the project with its own sandbox server. Its fenced blocks
follow this convention (the info string is the text after the opening ```):

  ```bash example          commands, one per line (a trailing backslash continues a line);
                           each runs with `bash -c` in the project copy and must exit 0.
                           `invoke`, `python` and `alembic` are this interpreter's.
  ```bash example-fails    commands that must each exit non-zero.
  ```python example        a Python script run by `python -` in the project copy; must exit 0.
  ```diff example          a change to files of the project copy, as a unified diff, applied with
                           `git apply` as a reader would (hunk headers must count their lines).
                           A path may hold a * (a generated revision file's date and id):
                           it must match exactly one file, whose name replaces it.
  ```LANG file=PATH        the whole content of a new file PATH (e.g. a revision file).
  ```text expected         lines that must each appear (as substrings, after stripping
                           surrounding spaces) in the combined stdout and stderr of the block
                           just before it (bash example/example-fails or python example).

Any other ```bash block in that document fails the test, so no command goes unexecuted. Each
example starts from a copy of the project without config.env, .sandbox, backups and .run, and
ends with its sandbox removed and the service it started stopped. Examples are headed
`## 示例 N：title`.

The other documents are checked for drift: every `invoke TASK --option` they mention exists,
every variable of config.env.example and every task is described in the guide, each
troubleshooting heading quotes a message the code really prints, and the gitignore document
lists the patterns of .gitignore.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backend.config import PROJECT_ROOT
from backend.dbops.servers import find_program, free_port
from tests.helpers import CLEARED_VARIABLES, GUIDE, SERVICE_VARIABLES, app_pid, stop_process

DOCS = PROJECT_ROOT / "docs"
EXAMPLES = DOCS / "数据库迁移示例.md"
QUICK_REFERENCE = DOCS / "数据库迁移快速参考.md"
OVERVIEW = DOCS / "DATABASE_MIGRATION_README.md"
GITIGNORE_DOC = DOCS / "gitignore_数据库迁移.txt"
MARKDOWN_DOCS = (GUIDE, QUICK_REFERENCE, OVERVIEW, EXAMPLES)

# Left out of the project copy: local state, caches, credentials.
NOT_COPIED = (
    ".git",
    ".sandbox",
    "backups",
    ".run",
    ".nox",
    ".venv",
    ".hypothesis",
    ".benchmarks",
    ".pytest_cache",
    ".ruff_cache",
    "__pycache__",
    "config.env",
    "config.*.env",
)
COMMAND_TIMEOUT = 180
SHELL_LANGUAGES = ("bash", "sh", "shell", "console")
EXAMPLE_HEADING = re.compile(r"^## 示例\s*(\d+)\s*[：:]\s*(.+?)\s*$")


# ---------------------------------------------------------------- parsing the examples


@dataclass
class Block:
    kind: str  # run, fail, python, diff, file, expected
    text: str
    line: int  # of the opening fence, 1-based
    path: str = ""  # for kind == "file"


@dataclass
class Example:
    number: int
    title: str
    line: int
    blocks: list[Block] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"示例 {self.number}（{self.title}）"


def fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """(info string, content, line of the opening fence) of every fenced block."""
    blocks, lines, index = [], text.splitlines(), 0
    while index < len(lines):
        match = re.match(r"^```(.*)$", lines[index])
        if not match:
            index += 1
            continue
        start, body = index, []
        index += 1
        while index < len(lines) and lines[index].rstrip() != "```":
            body.append(lines[index])
            index += 1
        if index == len(lines):
            raise AssertionError(f"line {start + 1}: unclosed ``` block")
        blocks.append((match.group(1).strip(), "\n".join(body) + "\n", start + 1))
        index += 1
    return blocks


def classify(info: str, line: int) -> Block | None:
    """The block's role in an example, None for a block that is only shown."""
    words = info.split()
    language, roles = (words[0].lower(), words[1:]) if words else ("", [])
    for role in roles:
        if role.startswith("file="):
            return Block("file", "", line, role[len("file=") :])
    if "expected" in roles:
        return Block("expected", "", line)
    if "example-fails" in roles:
        assert language in SHELL_LANGUAGES, f"line {line}: example-fails is for shell blocks"
        return Block("fail", "", line)
    if "example" in roles:
        kinds = {**dict.fromkeys(SHELL_LANGUAGES, "run"), "python": "python", "diff": "diff"}
        assert language in kinds, f"line {line}: no runner for ```{info}"
        return Block(kinds[language], "", line)
    assert language not in SHELL_LANGUAGES, (
        f"{EXAMPLES.name} line {line}: a ```{info} block would not be executed: mark it `example` or `example-fails`"
    )
    return None


def parse_examples(text: str) -> list[Example]:
    matches = [(number + 1, EXAMPLE_HEADING.match(line)) for number, line in enumerate(text.splitlines())]
    headings = [(line, match) for line, match in matches if match]
    examples = [Example(int(match.group(1)), match.group(2), line) for line, match in headings]
    for info, body, line in fenced_blocks(text):
        block = classify(info, line)
        if block is None:
            continue
        owners = [example for example in examples if example.line < line]
        assert owners, f"{EXAMPLES.name} line {line}: a runnable block before the first example"
        block.text = body
        owners[-1].blocks.append(block)
    return examples


EXAMPLE_LIST = parse_examples(EXAMPLES.read_text(encoding="utf-8")) if EXAMPLES.is_file() else []


def commands(block: Block) -> list[str]:
    """One command per line; blank lines and comment lines skipped; backslash continues."""
    found, pending = [], ""
    for raw in block.text.splitlines():
        line = pending + raw
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        if line.strip() and not line.strip().startswith("#"):
            found.append(line.strip())
    assert not pending, f"line {block.line}: the last command ends with a backslash"
    return found


# ---------------------------------------------------------------- applying diffs


def apply_diff(root: Path, text: str) -> None:
    """Apply the diff as a reader would, with `git apply` in root (its hunk counts checked),
    once each path's * is replaced by the one file it matches."""
    for pattern in sorted(set(re.findall(r"^(?:---|\+\+\+) [ab]/(\S*\*\S*)", text, re.M))):
        matches = sorted(root.glob(pattern))
        assert len(matches) == 1, f"{pattern} matches {len(matches)} files: {[path.name for path in matches]}"
        text = text.replace(pattern, str(matches[0].relative_to(root)))
    for command in (["git", "apply", "--check", "-"], ["git", "apply", "-"]):
        result = subprocess.run(command, cwd=root, input=text, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(command)}: {' '.join(result.stderr.split())}"


# ---------------------------------------------------------------- running an example


def copy_project(target: Path) -> Path:
    shutil.copytree(PROJECT_ROOT, target, ignore=shutil.ignore_patterns(*NOT_COPIED), symlinks=True)
    return target


def shims(folder: Path) -> Path:
    """`invoke`, `alembic` and `python` of this interpreter, first on PATH."""
    folder.mkdir()
    for name, module in (("invoke", "invoke"), ("alembic", "alembic")):
        script = folder / name
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
        script.chmod(0o755)
    for name in ("python", "python3"):
        (folder / name).symlink_to(sys.executable)
    return folder


def example_env(project: Path, bin_dir: Path) -> dict[str, str]:
    """Nothing configured (the sandbox serves), the service on a free port, pid and log in the copy."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in CLEARED_VARIABLES and key not in SERVICE_VARIABLES and not key.startswith(("DEPLOY_", "BACKUP_"))
    }
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHON=sys.executable,
        APP_PORT=str(free_port()),
        PYTHONIOENCODING="utf-8",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("AUTOGENERATE_AGAINST", None)
    return env


def _shown(output: str, limit: int = 4000) -> str:
    return output if len(output) <= limit else "...\n" + output[-limit:]


class Runner:
    def __init__(self, example: Example, project: Path, env: dict[str, str]) -> None:
        self.example, self.project, self.env = example, project, env
        self.output: str | None = None  # of the last runnable block
        self.last_block: Block | None = None

    def where(self, block: Block) -> str:
        return f"{self.example.name}, {EXAMPLES.relative_to(PROJECT_ROOT)} line {block.line}"

    def run(self, block: Block) -> None:
        handler = getattr(self, f"do_{block.kind}")
        handler(block)

    def _execute(self, argv: list[str], stdin: str = "") -> tuple[int, str]:
        completed = subprocess.run(
            argv,
            cwd=self.project,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=COMMAND_TIMEOUT,
        )
        return completed.returncode, completed.stdout + completed.stderr

    def _commands(self, block: Block, must_fail: bool) -> None:
        outputs = []
        for command in commands(block):
            code, output = self._execute(["bash", "-o", "pipefail", "-c", command])
            outputs.append(f"$ {command}\n{output}")
            if must_fail and code == 0:
                pytest.fail(f"{self.where(block)}: `{command}` succeeded, the document says it fails\n{_shown(output)}")
            if not must_fail and code != 0:
                pytest.fail(f"{self.where(block)}: `{command}` exited with {code}\n{_shown(output)}")
        self.output, self.last_block = "".join(outputs), block

    def do_run(self, block: Block) -> None:
        self._commands(block, must_fail=False)

    def do_fail(self, block: Block) -> None:
        self._commands(block, must_fail=True)

    def do_python(self, block: Block) -> None:
        code, output = self._execute([sys.executable, "-"], stdin=block.text)
        if code != 0:
            pytest.fail(f"{self.where(block)}: the Python block exited with {code}\n{_shown(output)}")
        self.output, self.last_block = output, block

    def do_diff(self, block: Block) -> None:
        try:
            apply_diff(self.project, block.text)
        except AssertionError as exc:
            pytest.fail(f"{self.where(block)}: the diff does not apply: {exc}")
        self.output = None

    def do_file(self, block: Block) -> None:
        path = self.project / block.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.text, encoding="utf-8")
        self.output = None

    def do_expected(self, block: Block) -> None:
        if self.output is None or self.last_block is None:  # set together
            pytest.fail(f"{self.where(block)}: an expected block must follow a command or Python block")
        missing = [line.strip() for line in block.text.splitlines() if line.strip() and line.strip() not in self.output]
        if missing:
            pytest.fail(
                f"{self.where(block)}: the output of the block at line {self.last_block.line} lacks "
                f"{missing}\n--- output ---\n{_shown(self.output)}"
            )


def tear_down(project: Path) -> None:
    """Stop the service the example started and remove its sandbox, whatever happened."""
    from backend.dbops import sandbox

    stop_process(app_pid(project / ".run" / "app.pid"))
    sandbox.down(project / ".sandbox")


def run_example(example: Example, folder: Path) -> float:
    """Run every block of the example in a fresh copy of the project; return the seconds it took."""
    project = copy_project(folder / "project")
    runner = Runner(example, project, example_env(project, shims(folder / "bin")))
    started = time.monotonic()
    try:
        for block in example.blocks:
            runner.run(block)
    finally:
        tear_down(project)
    return time.monotonic() - started


# Examples run side by side (each has its own project copy and sandbox server); the tests wait for theirs.
EXAMPLE_WORKERS = max(1, int(os.environ.get("DOCS_EXAMPLE_WORKERS", "0")) or min(os.cpu_count() or 2, 4))


@pytest.fixture(scope="session")
def example_runs(request, tmp_path_factory):
    """The selected examples, started at once on a few threads, longest first: {number: future}."""
    selected = [
        item.callspec.params["example"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_example_runs_as_documented"
    ]
    selected.sort(
        key=lambda example: -sum(len(commands(block)) for block in example.blocks if block.kind in ("run", "fail"))
    )
    pool = ThreadPoolExecutor(max_workers=EXAMPLE_WORKERS, thread_name_prefix="docs-example")
    futures = {
        example.number: pool.submit(run_example, example, tmp_path_factory.mktemp(f"example-{example.number}"))
        for example in selected
    }
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


needs_server = pytest.mark.skipif(
    find_program("mariadbd", "mysqld") is None,
    reason="the examples run on a sandbox server: no mariadbd or mysqld here",
)


@needs_server
@pytest.mark.xdist_group("docs-examples")  # one worker: the pool of example_runs starts them all
@pytest.mark.parametrize("example", EXAMPLE_LIST, ids=[f"example-{example.number}" for example in EXAMPLE_LIST])
def test_example_runs_as_documented(example: Example, example_runs):
    # Every block's output was checked as it ran; how long it took is no test's business.
    example_runs[example.number].result()


# ---------------------------------------------------------------- the examples document itself


MAKE_TARGETS = (
    "db-init",
    "db-upgrade",
    "db-downgrade",
    "db-current",
    "db-history",
    "db-migrate",
    "db-revision",
    "db-stamp",
    "db-reset",
    "db-check",
    "db-backup",
    "run",
)


def test_ten_examples_each_runnable_with_checked_output():
    assert [example.number for example in EXAMPLE_LIST] == list(range(1, 11))
    for example in EXAMPLE_LIST:
        kinds = [block.kind for block in example.blocks]
        assert {"run", "fail"} & set(kinds), f"{example.name} runs no command"
        assert "expected" in kinds, f"{example.name} checks no output"
        for before, block in zip(example.blocks, example.blocks[1:], strict=False):
            if block.kind == "expected":
                assert before.kind in ("run", "fail", "python"), f"{example.name} line {block.line}: nothing to check"


def test_example_10_maps_every_make_target_to_a_task():
    text = EXAMPLES.read_text(encoding="utf-8")
    section = text[text.index("## 示例 10") :]
    for target in MAKE_TARGETS:
        row = re.search(rf"^\|\s*`make {re.escape(target)}\b[^|]*`\s*\|\s*`invoke ([a-z]+\.[a-z_]+)", section, re.M)
        assert row, f"example 10 has no table row for make {target}"
        assert row.group(1) in task_names(), f"make {target} maps to an unknown task {row.group(1)}"


def test_the_diff_runner_applies_diffs_as_git_apply_does(tmp_path):
    (tmp_path / "versions").mkdir()
    (tmp_path / "versions" / "20260101_abc_fill.py").write_text("one\ntwo\nthree\n")
    apply_diff(
        tmp_path, "--- a/versions/*_fill.py\n+++ b/versions/*_fill.py\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n"
    )
    assert (tmp_path / "versions" / "20260101_abc_fill.py").read_text() == "one\nTWO\nthree\n"
    apply_diff(tmp_path, "--- /dev/null\n+++ b/new/b.txt\n@@ -0,0 +1,2 @@\n+x\n+y\n")
    assert (tmp_path / "new" / "b.txt").read_text() == "x\ny\n"
    # A hunk whose counts do not match its lines is refused, as a reader's `git apply` refuses it.
    with pytest.raises(AssertionError, match="corrupt patch"):
        apply_diff(tmp_path, "--- a/new/b.txt\n+++ b/new/b.txt\n@@ -1,3 +1,3 @@\n x\n-y\n+Y\n")
    assert (tmp_path / "new" / "b.txt").read_text() == "x\ny\n"
    with pytest.raises(AssertionError, match="matches 0 files"):
        apply_diff(tmp_path, "--- a/versions/*_other.py\n+++ b/versions/*_other.py\n@@ -1 +1 @@\n-a\n+b\n")


# ---------------------------------------------------------------- drift of the other documents


def task_names() -> set[str]:
    from tasks import ns

    return set(ns.task_names)


def task_options() -> dict[str, dict[str, bool]]:
    """{task: {flag: whether it takes a value}}."""
    from tasks import ns

    options = {}
    for name in ns.task_names:
        flags = {}
        for argument in ns[name].get_arguments():
            takes_value = argument.kind is not bool
            for flag_name in argument.names:
                flags[("-" if len(flag_name) == 1 else "--") + flag_name] = takes_value
            if not takes_value:
                flags.update({f"--no-{flag_name}": False for flag_name in argument.names if len(flag_name) > 1})
        options[name] = flags
    return options


CORE_OPTIONS = {"--list", "-l", "--help", "-h", "--debug", "-d", "--version", "-V", "--complete"}
INVOKE_MENTION = re.compile(r"\binvoke((?:\s+\S+)+)")
SHELL_STOPS = {"|", "||", "&&", "&", ";", ">", ">>", "2>&1"}


def _words(text: str) -> list[str]:
    """The shell words of a command line, up to a pipe, redirection or comment."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        words = text.split()
    stops = [index for index, word in enumerate(words) if word in SHELL_STOPS]
    return words[: stops[0]] if stops else words


def invoke_problems(line: str, names: set[str], options: dict[str, dict[str, bool]]) -> list[str]:
    """What is wrong with the `invoke ...` command lines in one line of text."""
    problems = []
    for mention in INVOKE_MENTION.finditer(line):
        words = _words(mention.group(1).split("`")[0])
        current, skip = None, False
        for word in words:
            if skip:
                skip = False
                continue
            flag = word.split("=", 1)[0]
            if re.fullmatch(r"[a-z]+\.[a-z_]+", word):
                current = word
                if word not in names:
                    problems.append(f"no task {word}")
            elif re.fullmatch(r"--?[a-z][a-z-]*", flag):
                if current is None:
                    if flag not in CORE_OPTIONS:
                        problems.append(f"invoke has no option {flag}")
                elif flag not in options.get(current, {}):
                    problems.append(f"{current} has no option {flag}")
                else:
                    skip = options[current][flag] and "=" not in word
            elif current is None:
                break  # prose after the word invoke, not a command line
    return problems


@pytest.mark.parametrize("document", MARKDOWN_DOCS + (PROJECT_ROOT / "README.md",), ids=lambda path: path.name)
def test_every_invoke_mentioned_exists(document):
    names, options = task_names(), task_options()
    problems = [
        f"line {number}: {problem}"
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1)
        for problem in invoke_problems(line, names, options)
    ]
    assert not problems, f"{document.name}:\n" + "\n".join(problems)


def test_invoke_mentions_are_checked():
    names, options = task_names(), task_options()
    assert invoke_problems("`invoke db.deploy --yes --report deploy.json db.deploys --limit 1`", names, options) == []
    assert invoke_problems("invoke db.upgrade --to head", names, options) == ["db.upgrade has no option --to"]
    assert invoke_problems("run `invoke db.migrate`", names, options) == ["no task db.migrate"]
    assert invoke_problems('invoke db.revision -m "widen users.nickname" # make db-migrate', names, options) == []
    assert invoke_problems('invoke db.restore "$(ls -t backups/*.zst | head -1)" --yes', names, options) == []
    assert invoke_problems("invoke app.run & until curl -sf http://x/health; do sleep 1; done", names, options) == []
    assert invoke_problems("invoke app.run --fast & wait", names, options) == ["app.run has no option --fast"]


def test_guide_describes_every_task_and_setting():
    guide = GUIDE.read_text(encoding="utf-8")
    headings = "\n".join(line for line in guide.splitlines() if line.startswith("#"))
    missing_tasks = [
        name for name in sorted(task_names()) if f"`invoke {name}" not in headings and f"`{name}`" not in headings
    ]
    assert not missing_tasks, f"no section of {GUIDE.name} is headed by these tasks: {missing_tasks}"
    variables = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (PROJECT_ROOT / "config.env.example").read_text(), re.M)
    missing = [name for name in variables if f"`{name}`" not in guide]
    assert variables and not missing, f"{GUIDE.name} does not describe {missing}"
    for name in (
        "DEPLOY_STEPS_<ENV>",
        "AUTOGENERATE_AGAINST",
        "MIGRATIONS_DIR",
        "DB_CONFIG_FILE",
        "DB_DEBUG",
        "SANDBOX_DIR",
        "MYSQL_CONNECT_TIMEOUT",
    ):
        assert f"`{name}`" in guide, f"{GUIDE.name} does not describe {name}"


def _source_text() -> str:
    files = [*sorted((PROJECT_ROOT / "tasks").glob("*.py")), *sorted((PROJECT_ROOT / "backend").rglob("*.py"))]
    return "\n".join(path.read_text(encoding="utf-8") for path in files)


def test_troubleshooting_quotes_real_messages():
    guide = GUIDE.read_text(encoding="utf-8")
    section = guide[guide.index("## 故障排查") :]
    section = section[: section.find("\n## ", 1)] if "\n## " in section[1:] else section
    quoted = [re.findall(r"`([^`]+)`", line) for line in section.splitlines() if line.startswith("### ")]
    assert len(quoted) >= 10, "the troubleshooting section should have a heading per error message"
    source = _source_text()
    for fragments in quoted:
        assert fragments, "every troubleshooting heading quotes the message in backticks"
        for part in (piece.strip() for piece in fragments[0].split("...")):
            assert part and part in source, f"the message fragment {part!r} is not in the code"


def test_gitignore_document_matches_the_project():
    document = GITIGNORE_DOC.read_text(encoding="utf-8")
    listed = {line.strip() for line in document.splitlines() if line.strip() and not line.lstrip().startswith("#")}
    ignored = [
        line.strip()
        for line in (PROJECT_ROOT / ".gitignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    missing = [pattern for pattern in ignored if pattern not in listed]
    assert not missing, f"{GITIGNORE_DOC.name} does not list {missing} of .gitignore"
    for committed in ("alembic/versions/", "alembic.ini", "config.env.example", "backend/database.py"):
        assert committed in document
        assert (PROJECT_ROOT / committed.rstrip("/")).exists()
    assert not [
        pattern
        for pattern in ("alembic/versions/", "config.env.example")
        if any(
            fnmatch.fnmatch(pattern.rstrip("/"), ignored_pattern.rstrip("/"))
            for ignored_pattern in ignored
            if not ignored_pattern.startswith("!")
        )
    ]


def test_readme_links_the_chinese_documents():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert "中文快速开始" in readme
    for document in (*MARKDOWN_DOCS, GITIGNORE_DOC):
        assert f"(docs/{document.name})" in readme, f"README.md does not link docs/{document.name}"
    for document in MARKDOWN_DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)", document.read_text(encoding="utf-8")):
            if not target.startswith(("http://", "https://")):
                assert (document.parent / target).resolve().exists(), f"{document.name} links a missing {target}"

"""The Neo4j Browser investigation kit: `cypher/investigate/*.cypher`, one question per file.

Each file is written to be pasted into Neo4j Browser (or dropped onto its Favorites) as it is:

```text
// What the query answers, in a sentence or two; what it shows (a graph or a table).
:param subscriberId => 'sub-000123';
MATCH (s:Subscriber {id: $subscriberId}) ...
```

The `//` lines describe it, the `:param` lines set the parameters the Browser way (Browser's
multi-statement editor runs them first), and the one read-only query uses them as `$name`.
`load_kit` reads the files into `KitQuery` objects, so the tests and the Browser guide use the
same text an analyst pastes; `check_query` is a syntax check that needs no server (the
integration tests also have Neo4j itself `EXPLAIN` every query).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ringwatch.graph.exceptions import InvestigationKitError
from ringwatch.graph.schema import cypher_dir

_PARAM_LINE = re.compile(r"^:param\s+([A-Za-z_][A-Za-z0-9_]*)\s*=>\s*(.+?)\s*;?\s*$")
_NAME_START = re.compile(r"[A-Za-z_]")
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")
_OPENING = {"(": ")", "[": "]", "{": "}"}
_CLOSING = {v: k for k, v in _OPENING.items()}
# What a query may start with, and clauses that would change the graph: the kit only reads.
_FIRST_CLAUSES = {"MATCH", "OPTIONAL", "CALL", "WITH", "UNWIND", "RETURN", "CYPHER"}
_WRITE_CLAUSES = {"CREATE", "MERGE", "SET", "DELETE", "DETACH", "REMOVE", "FOREACH", "LOAD"}


@dataclass(frozen=True)
class Token:
    kind: str  # word, string, name (backticked), param, number, punct
    text: str
    line: int


@dataclass(frozen=True)
class KitQuery:
    """One investigation: its description, example parameters and query."""

    name: str
    path: Path
    description: str
    params: dict[str, str]  # parameter -> the Cypher expression of its example value
    query: str

    @property
    def title(self) -> str:
        """The first sentence of the description."""
        return self.description.split("\n", 1)[0].rstrip(".")

    @property
    def used_params(self) -> set[str]:
        return {token.text for token in tokenize(self.query) if token.kind == "param"}

    def browser_text(self, values: dict[str, str] | None = None) -> str:
        """The `:param` lines and the query, as typed into Browser; `values` replaces examples
        (each a Cypher expression, e.g. ``"'sub-000042'"``)."""
        chosen = {**self.params, **(values or {})}
        lines = [f":param {name} => {chosen[name]};" for name in self.params]
        return "\n".join([*lines, "", self.query, ""])


def kit_dir() -> Path:
    return cypher_dir() / "investigate"


def parse_kit_file(path: Path) -> KitQuery:
    """Split one kit file into description, `:param` lines and query."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvestigationKitError(f"cannot read {path}: {exc.strerror}") from None
    description: list[str] = []
    params: dict[str, str] = {}
    lines = text.splitlines()
    body_start = len(lines)
    for number, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("//"):
            description.append(line[2:].strip())
        elif line.startswith(":param"):
            match = _PARAM_LINE.match(line)
            if match is None:
                raise InvestigationKitError(
                    f"{path.name}:{number + 1}: expected ':param name => value;'"
                )
            params[match.group(1)] = match.group(2)
        else:
            body_start = number
            break
    query = "\n".join(lines[body_start:]).strip().removesuffix(";").rstrip()
    return KitQuery(
        name=path.stem,
        path=path,
        description="\n".join(description).strip(),
        params=params,
        query=query,
    )


def load_kit(directory: Path | None = None) -> dict[str, KitQuery]:
    """Every kit file, by name (the file stem), in name order."""
    folder = directory or kit_dir()
    files = sorted(folder.glob("*.cypher"))
    if not files:
        raise InvestigationKitError(f"no investigation queries in {folder}")
    return {query.name: query for query in map(parse_kit_file, files)}


def tokenize(query: str) -> Iterator[Token]:
    """Cypher tokens, enough to find parameters and check structure; comments are skipped.

    Raises `InvestigationKitError` for an unterminated string, name or comment.
    """
    i, line, size = 0, 1, len(query)
    while i < size:
        c = query[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif query.startswith("//", i):
            end = query.find("\n", i)
            i = size if end == -1 else end
        elif query.startswith("/*", i):
            end = query.find("*/", i + 2)
            if end == -1:
                raise InvestigationKitError(f"line {line}: unterminated /* comment")
            line += query.count("\n", i, end)
            i = end + 2
        elif c in "'\"`":
            start, i = i, i + 1
            while i < size and query[i] != c:
                i += 2 if query[i] == "\\" and c != "`" else 1
            if i >= size:
                what = "name" if c == "`" else "string"
                raise InvestigationKitError(f"line {line}: unterminated {what}")
            i += 1
            text = query[start:i]
            yield Token("name" if c == "`" else "string", text, line)
            line += text.count("\n")
        elif c == "$":
            start, i = i + 1, i + 1
            while i < size and _NAME_CHAR.match(query[i]):
                i += 1
            if i == start:
                raise InvestigationKitError(f"line {line}: '$' without a parameter name")
            yield Token("param", query[start:i], line)
        elif _NAME_START.match(c):
            start = i
            while i < size and _NAME_CHAR.match(query[i]):
                i += 1
            yield Token("word", query[start:i], line)
        elif c.isdigit():
            start = i
            while i < size and (query[i].isdigit() or query[i] == "."):
                if query.startswith("..", i):
                    break
                i += 1
            yield Token("number", query[start:i], line)
        else:
            yield Token("punct", c, line)
            i += 1


def check_query(query: str) -> list[str]:
    """Problems that stop a kit query from parsing or from being read-only; empty when none.

    Brackets must balance, strings and comments end, it must be one statement (no `;`) that
    starts with a reading clause, returns something, and never writes.
    """
    try:
        tokens = list(tokenize(query))
    except InvestigationKitError as exc:
        return [str(exc)]
    if not tokens:
        return ["the query is empty"]
    problems: list[str] = []
    stack: list[Token] = []
    words: list[str] = []
    for token in tokens:
        if token.kind == "word":
            words.append(token.text.upper())
        if token.kind != "punct":
            continue
        if token.text in _OPENING:
            stack.append(token)
        elif token.text in _CLOSING:
            if not stack or stack[-1].text != _CLOSING[token.text]:
                problems.append(f"line {token.line}: unbalanced '{token.text}'")
                return problems
            stack.pop()
        elif token.text == ";":
            problems.append(f"line {token.line}: ';' inside the query: one statement per file")
    problems.extend(f"line {open_.line}: '{open_.text}' is never closed" for open_ in stack)
    if tokens[0].kind != "word" or tokens[0].text.upper() not in _FIRST_CLAUSES:
        problems.append(f"starts with '{tokens[0].text}', not a reading clause")
    if "RETURN" not in words:
        problems.append("returns nothing (no RETURN)")
    writes = sorted(_WRITE_CLAUSES.intersection(words))
    if writes:
        problems.append(f"writes to the graph ({', '.join(writes)}); the kit only reads")
    return problems

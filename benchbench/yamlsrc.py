"""Safe YAML loading that remembers where every value came from.

The text is composed into nodes (``yaml.compose`` with the SafeLoader: nothing is
constructed yet) and the plain data is built here from the node tree, so that each
key path (``("matrix", "batch_size", 1)``) maps to the 1-based line of its value.
Only plain data is built: a tag that would make an object (``!!python/object``,
``!mytag``, ``!!binary``) is a problem, never constructed. Duplicate keys are problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple  # of str (mapping keys) and int (list indexes)

_STD = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_STD + t for t in ("null", "bool", "int", "float", "str", "timestamp")}
_MAP_TAG, _SEQ_TAG, _MERGE_TAG = _STD + "map", _STD + "seq", _STD + "merge"
_MAX_NODES = 200_000  # aliases can expand exponentially ("billion laughs")


class Bad:
    """Stands in for a value already reported as a problem (its type matches nothing)."""

    def __repr__(self) -> str:
        return "<rejected>"


BAD = Bad()


@dataclass
class Problem:
    line: int | None
    path: Path
    message: str


@dataclass
class Source:
    """The plain data of a YAML document and where each part of it came from."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)  # key path -> line of its value
    key_lines: dict[Path, int] = field(default_factory=dict)  # key path -> line of its key
    problems: list[Problem] = field(default_factory=list)  # duplicate keys, tags, …
    bad_paths: set[Path] = field(default_factory=set)  # values replaced by BAD

    def line_of(self, path: Path) -> int:
        """The line of the value at ``path``, else of the nearest enclosing value."""
        path = tuple(path)
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def rejected(self, path: Path) -> bool:
        """Whether ``path`` is at or under a value the loader rejected (and reported)."""
        path = tuple(path)
        return any(path[: len(p)] == p for p in self.bad_paths)


class YamlSyntaxError(Exception):
    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.line = line


def format_path(path: Path) -> str:
    """``("include", 0, "model")`` -> ``include[0].model``; odd keys are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][\w-]*", part):
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


def show_tag(tag: str) -> str:
    return "!!" + tag[len(_STD) :] if tag.startswith(_STD) else tag


def load(text: str) -> Source:
    """Compose ``text`` safely and build its plain data; raise YamlSyntaxError if unparsable."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "cannot parse"
        if problem.startswith("but found another document"):
            raise YamlSyntaxError(mark.line + 1, "a second document (---): a suite is one") from None
        if e.context and e.context_mark and e.problem_mark and e.context_mark is not e.problem_mark:
            problem += f" ({e.context} on line {e.context_mark.line + 1})"
        raise YamlSyntaxError(mark.line + 1 if mark else None, problem) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow
        line = text.count("\n", 0, max(e.position, 0)) + 1
        code = e.character if isinstance(e.character, int) else ord(e.character)
        raise YamlSyntaxError(line, f"character U+{code:04X} is not allowed in YAML") from None
    except yaml.YAMLError as e:
        raise YamlSyntaxError(None, str(e).replace("\n", " ")) from None
    except RecursionError:
        raise YamlSyntaxError(None, "nested too deeply") from None
    src = Source(data=None)
    if node is not None:
        try:
            src.data = _Builder(src).build(node, ())
        except RecursionError:
            raise YamlSyntaxError(None, "nested too deeply") from None
    return src


class _Builder:
    def __init__(self, src: Source):
        self.src = src
        self.constructor = SafeConstructor()
        self.active: set[int] = set()  # nodes being built: an alias back to one recurses
        self.count = 0

    def problem(self, node: Node, path: Path, message: str) -> Bad:
        self.src.problems.append(Problem(node.start_mark.line + 1, path, message))
        self.src.bad_paths.add(path)
        return BAD

    def build(self, node: Node, path: Path) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise YamlSyntaxError(node.start_mark.line + 1, f"more than {_MAX_NODES} values (runaway aliases?)")
        self.src.lines[path] = node.start_mark.line + 1
        if id(node) in self.active:
            return self.problem(node, path, "an alias refers to the value that contains it")
        if isinstance(node, ScalarNode):
            if node.tag not in _SCALAR_TAGS:
                return self.bad_tag(node, path)
            try:
                return self.constructor.construct_object(node)
            except (yaml.YAMLError, ValueError, TypeError):
                return self.problem(node, path, f"cannot read {node.value!r} as {show_tag(node.tag)}")
        if isinstance(node, SequenceNode) and node.tag != _SEQ_TAG:
            return self.bad_tag(node, path)
        if isinstance(node, MappingNode) and node.tag != _MAP_TAG:
            return self.bad_tag(node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
            return self.build_mapping(node, path)
        finally:
            self.active.discard(id(node))

    def bad_tag(self, node: Node, path: Path) -> Bad:
        return self.problem(
            node,
            path,
            f"tag {show_tag(node.tag)} is not allowed: a suite holds plain data only "
            "(text, numbers, true/false, null, lists, mappings)",
        )

    def build_mapping(self, node: MappingNode, path: Path) -> dict:
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:  # "<<: *defaults"
                merged.extend(self.merge_entries(value_node, path))
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            line = key_node.start_mark.line + 1
            if key in first_line:
                message = f"duplicate key (first given on line {first_line[key]})"
                self.src.problems.append(Problem(line, path + (key,), message))
                continue
            first_line[key] = line
            self.src.key_lines[path + (key,)] = line
            out[key] = self.build(value_node, path + (key,))
        for key_node, value_node in merged:  # explicit keys win, then earlier merges
            key = self.key(key_node, path)
            if key is not None and key not in out:
                self.src.key_lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, path + (key,))
        return out

    def merge_entries(self, node: Node, path: Path) -> list[tuple[Node, Node]]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        entries: list[tuple[Node, Node]] = []
        for source in sources:
            if id(source) in self.active:
                self.problem(source, path, "a merge key (<<) refers to the mapping that holds it")
                continue
            if not isinstance(source, MappingNode):
                self.problem(source, path, "a merge key (<<) takes a mapping or a list of mappings")
                continue
            for key_node, value_node in source.value:
                if key_node.tag == _MERGE_TAG:
                    entries.extend(self.merge_entries(value_node, path))
                else:
                    entries.append((key_node, value_node))
        return entries

    def key(self, node: Node, path: Path) -> str | None:
        if isinstance(node, ScalarNode) and node.tag == _STD + "str":
            return node.value
        if isinstance(node, ScalarNode) and node.tag in _SCALAR_TAGS:
            self.problem(node, path + (node.value,), f"key {node.value!r} is not text: put it in quotes")
        else:
            self.problem(node, path, "a key must be plain text")
        return None

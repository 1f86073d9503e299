"""Load and validate rule packs from YAML; every error names the file, line and field.

QA teams edit these files by hand, so a mistake must point at the exact spot, and a bad
file must never half-load: ``load_packs`` either returns every pack or raises.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from qa_rules.schema import KINDS, CompositeRule, RulePack

BUILTIN_PACKS = Path(__file__).parent / "packs"
M = TypeVar("M", bound=BaseModel)
MAX_DEPTH = 64  # nesting of mappings and lists; real packs use under 12
MAX_VALUES = 200_000  # scalars and collections once aliases are expanded (alias bombs)


@dataclass(frozen=True)
class RuleIssue:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class RuleError(ValueError):
    """One or more rule files are invalid; ``issues`` lists each problem."""

    def __init__(self, issues: list[RuleIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML silently keeps the last one), and turns
    a value its tag cannot hold (``2001-13-45``, ``!!float abc``) into a marked error."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, OverflowError) as exc:
            tag = node.tag.rsplit(":", 1)[-1]
            value = node.value if isinstance(node, yaml.ScalarNode) else "..."
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {str(value)[:40]!r} as {tag}: {exc}", node.start_mark
            ) from exc


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a list or mapping cannot be a key (unhashable)", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _check_shape(text: str, filename: str) -> None:
    """Refuse, before building anything, YAML nested past MAX_DEPTH or expanding (through
    aliases) to more than MAX_VALUES values: either would exhaust the stack or the CPU."""
    sizes: dict[str, int] = {}  # anchor -> expanded size of its node
    stack: list[tuple[str | None, int]] = []  # open collections: (anchor, size so far)
    open_anchors: set[str] = set()

    def fail(event: yaml.Event, message: str) -> RuleError:
        line = event.start_mark.line + 1 if event.start_mark else 1
        return RuleError([RuleIssue(filename, line, "", message)])

    def add(n: int, event: yaml.Event) -> None:
        if stack:
            anchor, size = stack[-1]
            stack[-1] = (anchor, size + n)
            if size + n > MAX_VALUES:
                raise fail(event, f"this file expands past {MAX_VALUES} values (aliases included)")

    for event in yaml.parse(text, Loader=_UniqueKeyLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) >= MAX_DEPTH:
                raise fail(event, f"nested more than {MAX_DEPTH} levels deep")
            stack.append((event.anchor, 1))
            if event.anchor:
                open_anchors.add(event.anchor)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
            if anchor:
                sizes[anchor] = size
                open_anchors.discard(anchor)
            add(size, event)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise fail(event, f"alias *{event.anchor} refers to itself (a recursive value)")
            add(sizes.get(event.anchor or "", 1), event)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                sizes[event.anchor] = 1
            add(1, event)


def yaml_line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a line number."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == part:
                    line = k.start_mark.line + 1
                    node = v
                    break
            else:
                continue  # e.g. the discriminator tag pydantic adds to the path
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
        else:
            break
    return line


def field_path(loc: tuple[int | str, ...], data: Any) -> str:
    """A pydantic error location as the field a person reads: ``rules[2](id=x).phrases``."""
    out = ""
    cur = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            cur = cur[part] if isinstance(cur, list) and part < len(cur) else None
            if isinstance(cur, dict) and "id" in cur:
                out += f"(id={cur['id']})"
        elif isinstance(cur, dict) and part in cur:
            out += f".{part}" if out else part
            cur = cur[part]
        elif part in KINDS and isinstance(cur, dict):
            continue  # discriminator tag, not a real field
        else:
            out += f".{part}" if out else str(part)
            cur = None
    return out


def load_yaml(text: str, filename: str) -> tuple[yaml.Node | None, Any]:
    """The YAML's node tree (for line numbers) and data; duplicate keys refused.
    Raises RuleError naming the line of any problem (only RuleError, whatever the text)."""
    try:
        _check_shape(text, filename)
        loader = _UniqueKeyLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise RuleError([RuleIssue(filename, line, "", f"invalid YAML: {exc.problem}")]) from exc
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. NUL
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        message = str(exc).splitlines()[0]
        raise RuleError([RuleIssue(filename, line, "", f"invalid YAML: {message}")]) from exc
    except yaml.YAMLError as exc:
        raise RuleError([RuleIssue(filename, 1, "", f"invalid YAML: {exc}")]) from exc
    except RecursionError as exc:  # _check_shape keeps nesting far below this
        raise RuleError([RuleIssue(filename, 1, "", "invalid YAML: nested too deeply")]) from exc
    return node, data


def peek_yaml(text: str) -> Any:
    """The data of a YAML text, or None if it does not load for any reason: a first look
    (the pack's name, a rule's id) before the real parse reports problems with lines."""
    try:
        return load_yaml(text, "<peek>")[1]
    except RuleError:
        return None


def parse_yaml_model(text: str, filename: str, model: type[M], shape: str) -> M:
    """Validate one YAML mapping as ``model``. Raises RuleError naming file/line/field;
    ``shape`` tells what the top level should look like when it is not a mapping."""
    node, data = load_yaml(text, filename)
    if not isinstance(data, dict):
        raise RuleError([RuleIssue(filename, 1, "", shape)])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "union_tag_invalid":
                msg = f"unknown rule kind; use one of: {', '.join(KINDS)}"
                loc = (*loc, "kind")
            elif err["type"] == "union_tag_not_found":
                msg = f"missing 'kind' (one of: {', '.join(KINDS)})"
            issues.append(RuleIssue(filename, yaml_line_of(node, loc), field_path(loc, data), msg))
        raise RuleError(issues) from exc


def parse_pack(text: str, filename: str) -> RulePack:
    """Parse one pack's YAML text. Raises RuleError naming file/line/field."""
    return parse_yaml_model(
        text, filename, RulePack, "a rule pack is a mapping with 'pack' and 'rules' keys"
    )


def pack_files(path: str | Path, what: str = "rule packs") -> list[Path]:
    """The YAML files of a folder (or the one file) named ``path``."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        if not files:
            raise RuleError([RuleIssue(str(p), None, "", f"no *.yaml {what} in this folder")])
        return files
    raise RuleError([RuleIssue(str(p), None, "", "no such file or folder")])


def load_packs(path: str | Path = BUILTIN_PACKS) -> list[RulePack]:
    """Load every pack under ``path`` (a file or a folder). All or nothing."""
    texts: dict[str, str] = {}
    issues: list[RuleIssue] = []
    for f in pack_files(path):
        try:
            texts[str(f)] = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(RuleIssue(str(f), None, "", f"cannot read: {exc}"))
    if issues:
        raise RuleError(issues)
    return load_texts(texts)


def load_texts(texts: dict[str, str]) -> list[RulePack]:
    """Validate a whole set of packs given as {filename: YAML text}. All or nothing.

    Besides each pack on its own, the set must hold together: rule ids are unique across
    packs and every rule a composite rule refers to exists.
    """
    packs: list[RulePack] = []
    files: dict[str, str] = {}
    issues: list[RuleIssue] = []
    for name, text in texts.items():
        try:
            pack = parse_pack(text, name)
        except RuleError as exc:
            issues.extend(exc.issues)
            continue
        if pack.pack in files:
            line = _line_in(text, ("pack",))
            issues.append(
                RuleIssue(name, line, "pack", f"pack {pack.pack!r} is also in {files[pack.pack]}")
            )
            continue
        packs.append(pack)
        files[pack.pack] = name
    seen: dict[str, str] = {}
    for pack in packs:
        for i, r in enumerate(pack.rules):
            if r.id in seen and seen[r.id] != pack.pack:
                file = files[pack.pack]
                issues.append(
                    RuleIssue(
                        file,
                        _line_in(texts[file], ("rules", i)),
                        f"rules[{i}](id={r.id})",
                        f"rule id also defined in pack {seen[r.id]!r}",
                    )
                )
            seen[r.id] = pack.pack
    issues.extend(_reference_issues(packs, files, texts))
    if issues:
        raise RuleError(issues)
    return packs


def _line_in(text: str, loc: tuple[int | str, ...]) -> int:
    """The line of ``loc`` in a text that already parsed (cross-file issues)."""
    return yaml_line_of(yaml.compose(text, Loader=_UniqueKeyLoader), loc) or 1


def _reference_issues(
    packs: list[RulePack], files: dict[str, str], texts: dict[str, str]
) -> list[RuleIssue]:
    """Composite rules must name rules that exist, and never (through others) themselves."""
    rules = {r.id: r for p in packs for r in p.rules}
    issues: list[RuleIssue] = []
    for pack in packs:
        node: yaml.Node | None = None
        for i, r in enumerate(pack.rules):
            if not isinstance(r, CompositeRule):
                continue
            for ref in r.referenced_rules():
                problem = None
                if ref not in rules:
                    close = difflib.get_close_matches(ref, list(rules), n=1)
                    problem = f"no rule {ref!r} in the packs" + (
                        f"; did you mean {close[0]!r}?" if close else ""
                    )
                elif _reaches(ref, r.id, rules):
                    problem = f"rule {ref!r} leads back to {r.id!r}: composite rules cannot loop"
                if problem is None:
                    continue
                if node is None:
                    node = yaml.compose(texts[files[pack.pack]], Loader=_UniqueKeyLoader)
                issues.append(
                    RuleIssue(
                        files[pack.pack],
                        yaml_line_of(node, ("rules", i)),
                        f"rules[{i}](id={r.id})",
                        problem,
                    )
                )
    return issues


def _reaches(start: str, target: str, rules: dict[str, Any]) -> bool:
    seen: set[str] = set()
    todo = [start]
    while todo:
        rid = todo.pop()
        if rid == target:
            return True
        if rid in seen:
            continue
        seen.add(rid)
        r = rules.get(rid)
        if isinstance(r, CompositeRule):
            todo.extend(r.referenced_rules())
    return False

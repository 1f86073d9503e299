"""QA rule packs on a running server: edit over the API or on disk, versioned, hot-reloaded.

One ``RuleRegistry`` per server holds the packs every new call starts with and live calls
are switched to. Packs live as YAML files in a folder (``ServerConfig.rules``, else
``$CALLWATCH_HOME/rules/``, seeded from the built-in packs on first start), one pack per
file, ``<pack>.yaml`` for packs created over the API; an existing file keeps its name (packs
are found by their ``pack:`` field).

Every change, whoever makes it, goes the same way: the whole new set of packs is validated
together (``qa_rules.loader.load_texts``: all or nothing, cross-pack checks included) and
only then is the file written (atomically), a version recorded in the store (who, when,
the text, which rule ids were added, changed or removed), the running set swapped and the
listeners told (the server reloads live calls). An invalid change raises ``RuleError``
naming file, line and field, and the previous set keeps running.

The folder is polled (``reload_from_folder``): a QA lead may edit the files directly. A
broken edit on disk keeps the running set and shows up in ``last_error`` until the folder
loads again. If the folder is broken when the server starts, the latest stored versions
run (and ``last_error`` says why); with no stored versions the server refuses to start.

Versions are numbered 1, 2, 3 ... per pack by the registry; the YAML's own ``version:``
field is the author's label and is shown as ``yaml_version``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml

from assist.store import callwatch_home
from qa_rules.loader import (
    BUILTIN_PACKS,
    RuleError,
    RuleIssue,
    load_texts,
    parse_pack,
    peek_yaml,
)
from qa_rules.schema import RulePack

log = logging.getLogger("callwatch.rules")

# Names of packs created over the API become file names: keep them plain.
PACK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

Listener = Callable[[list[RulePack]], None]


class RegistryError(Exception):
    """A request the registry cannot carry out (not a rule problem)."""


class NotFoundError(RegistryError):
    """No such pack, rule or version."""


class ConflictError(RegistryError):
    """The change clashes with the folder (a file that is not this pack, a single-file set)."""


class VersionStore(Protocol):
    """What the registry needs from the store (``assist.store.Store`` has it)."""

    def add_rule_version(
        self,
        pack: str,
        text: str,
        sha256: str,
        file: str,
        author: str,
        comment: str,
        summary: dict[str, Any],
    ) -> dict[str, Any]: ...

    def rule_versions(self, pack: str) -> list[dict[str, Any]]: ...

    def rule_version(self, pack: str, version: int) -> dict[str, Any] | None: ...

    def latest_rule_versions(self) -> dict[str, dict[str, Any]]: ...


class MemoryVersions:
    """Versions kept in memory, for a server run without a store (``--no-store``)."""

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add_rule_version(
        self,
        pack: str,
        text: str,
        sha256: str,
        file: str,
        author: str,
        comment: str,
        summary: dict[str, Any],
    ) -> dict[str, Any]:
        with self._lock:
            n = 1 + max((r["version"] for r in self._rows if r["pack"] == pack), default=0)
            row = {
                "id": len(self._rows) + 1,
                "pack": pack,
                "version": n,
                "text": text,
                "sha256": sha256,
                "file": file,
                "author": author,
                "comment": comment,
                "created_at": _now(),
                "summary": summary,
            }
            self._rows.append(row)
            return dict(row)

    def rule_versions(self, pack: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {k: v for k, v in r.items() if k != "text"} for r in self._rows if r["pack"] == pack
            ]

    def rule_version(self, pack: str, version: int) -> dict[str, Any] | None:
        with self._lock:
            return next(
                (dict(r) for r in self._rows if r["pack"] == pack and r["version"] == version),
                None,
            )

    def latest_rule_versions(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            for r in self._rows:
                out[r["pack"]] = dict(r)
            return out


@dataclass(frozen=True)
class VersionInfo:
    pack: str
    version: int
    sha256: str
    file: str
    author: str
    comment: str
    created_at: str
    summary: dict[str, Any]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> VersionInfo:
        return cls(
            row["pack"],
            int(row["version"]),
            row["sha256"],
            row["file"],
            row["author"],
            row["comment"],
            row["created_at"],
            dict(row["summary"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "version": self.version,
            "sha256": self.sha256,
            "file": self.file,
            "author": self.author,
            "comment": self.comment,
            "created_at": self.created_at,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class _Active:
    """A pack the server runs: parsed, its exact text, where it lives, its latest version."""

    pack: RulePack
    text: str
    sha: str
    file: Path
    info: VersionInfo | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def change_summary(old: RulePack | None, new: RulePack | None) -> dict[str, Any]:
    """Which rule ids a change added, changed (any field) or removed."""
    before = {r.id: r.model_dump(mode="json") for r in old.rules} if old else {}
    after = {r.id: r.model_dump(mode="json") for r in new.rules} if new else {}
    out: dict[str, Any] = {
        "added": [i for i in after if i not in before],
        "changed": [i for i in after if i in before and after[i] != before[i]],
        "removed": [i for i in before if i not in after],
    }
    if new is None:
        out["deleted"] = True
    return out


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=old_name,
            tofile=new_name,
        )
    )


def dump_pack(pack: RulePack) -> str:
    """A pack as YAML (fields left at their defaults are left out)."""
    data = {"pack": pack.pack, **pack.model_dump(mode="json", exclude_defaults=True)}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _issue_dicts(issues: list[RuleIssue]) -> list[dict[str, Any]]:
    return [
        {"file": i.file, "line": i.line, "field": i.field, "message": i.message} for i in issues
    ]


def _parse_or_none(text: str, name: str) -> RulePack | None:
    try:
        return parse_pack(text, name)
    except RuleError:
        return None  # e.g. a version stored before the schema changed


class RuleRegistry:
    """The server's rule packs: folder, running set, versions, listeners. Thread-safe."""

    def __init__(
        self,
        rules: str | Path | None = None,
        store: VersionStore | None = None,
        seed: list[RulePack] | None = None,
    ) -> None:
        """``rules``: the folder (or one pack file) of ``ServerConfig.rules``; None means
        ``$CALLWATCH_HOME/rules/``. ``seed``: packs to write into the folder when it does not
        exist yet or holds no packs (``App(packs=...)``, tests); default the built-in packs.
        """
        self._lock = threading.RLock()
        self.store: VersionStore = store if store is not None else MemoryVersions()
        self._listeners: list[Listener] = []
        self._active: dict[str, _Active] = {}
        self._packs: list[RulePack] = []
        self.last_error: dict[str, Any] | None = None
        self._fingerprints: dict[str, tuple[int, int]] = {}
        self._folder_shas: dict[str, str] = {}
        self.single_file: Path | None = None
        self.configured = rules is not None  # a folder the operator chose: never seeded
        if rules is None:
            self.folder = callwatch_home() / "rules"
        else:
            p = Path(rules).expanduser()
            if p.is_file():
                self.single_file = p
                self.folder = p.parent
            else:
                self.folder = p
        self._start(seed)

    # -- reading -----------------------------------------------------------------------------
    @property
    def packs(self) -> list[RulePack]:
        """The running set (a new list on every change; never mutated)."""
        return self._packs

    def add_listener(self, fn: Listener) -> None:
        """``fn(packs)`` after every change, in order, from the thread that made it."""
        with self._lock:
            self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def list_packs(self) -> dict[str, Any]:
        with self._lock:
            return {
                "folder": str(self.folder),
                "packs": [self._pack_summary(a) for a in self._active.values()],
                "last_error": self.last_error,
            }

    def get_pack(self, name: str) -> dict[str, Any]:
        with self._lock:
            a = self._get(name)
            return {
                **self._pack_summary(a),
                "sha256": a.sha,
                "comment": a.info.comment if a.info else "",
                "definition": a.pack.model_dump(mode="json"),
                "yaml": a.text,
            }

    def get_rule(self, pack: str, rule_id: str) -> dict[str, Any]:
        with self._lock:
            a = self._get(pack)
            rule = next((r for r in a.pack.rules if r.id == rule_id), None)
            if rule is None:
                raise NotFoundError(f"pack {pack!r} has no rule {rule_id!r}")
            data = yaml.safe_load(a.text) or {}
            raw = next(
                (
                    r
                    for r in data.get("rules") or []
                    if isinstance(r, dict) and r.get("id") == rule_id
                ),
                {},
            )
            return {
                "pack": pack,
                "version": a.info.version if a.info else None,
                "rule": rule.model_dump(mode="json"),
                "yaml": yaml.safe_dump(raw, sort_keys=False, allow_unicode=True),
            }

    def versions(self, pack: str) -> list[dict[str, Any]]:
        rows = self.store.rule_versions(pack)
        if not rows:
            raise NotFoundError(f"no versions of pack {pack!r}")
        return [
            {k: r[k] for k in ("version", "author", "created_at", "comment", "summary", "sha256")}
            for r in rows
        ]

    def version(self, pack: str, n: int) -> dict[str, Any]:
        """Version ``n`` with its text and a unified diff against version ``n - 1``."""
        row = self.store.rule_version(pack, n)
        if row is None:
            raise NotFoundError(f"pack {pack!r} has no version {n}")
        prev = self.store.rule_version(pack, n - 1) if n > 1 else None
        prev_text = prev["text"] if prev else ""
        return {
            **VersionInfo.from_row(row).to_dict(),
            "text": row["text"],
            "diff": unified_diff(prev_text, row["text"], f"{pack} v{n - 1}", f"{pack} v{n}"),
        }

    def validate(self, text: str) -> RulePack:
        """Check one pack's YAML with the other running packs, saving nothing."""
        with self._lock:
            name = _peek_pack_name(text)
            file = self._file_for(name) if name else self.folder / "<submitted>.yaml"
            pack = parse_pack(text, str(file))
            texts = {str(a.file): a.text for n, a in self._active.items() if n != pack.pack}
            texts[str(self._file_for(pack.pack))] = text
            load_texts(texts)
            return pack

    # -- changing ----------------------------------------------------------------------------
    def put_pack(
        self, name: str, text: str, author: str, comment: str = ""
    ) -> tuple[VersionInfo, bool]:
        """Replace (or create) pack ``name`` with ``text``, kept verbatim (comments and all).

        Returns the version info and whether anything changed (the same text again makes
        no new version). Raises ``RuleError`` if the text, or the set with it, is invalid.
        """
        with self._lock:
            cur = self._active.get(name)
            if cur is None:
                self._check_new_name(name)
            file = self._file_for(name)
            pack = parse_pack(text, str(file))
            if pack.pack != name:
                raise RuleError(
                    [
                        RuleIssue(
                            str(file),
                            _line_of_key(text, "pack"),
                            "pack",
                            f"the pack is named {pack.pack!r} in the YAML but {name!r} in the "
                            "URL; they must be the same",
                        )
                    ]
                )
            sha = sha256_text(text)
            if cur is not None and cur.sha == sha and cur.info is not None:
                # Nothing new to run; but the file may differ (broken on disk while the
                # stored version runs): put the running text back there.
                if _read_or_none(file) != text:
                    self._write(file, text)
                    self._recheck_folder()
                return cur.info, False
            texts = {str(a.file): a.text for n, a in self._active.items() if n != name}
            texts[str(file)] = text
            load_texts(texts)
            old_text = cur.text if cur is not None else None
            self._write(file, text)
            try:
                info = self._record(
                    name, text, sha, file, author, comment, cur.pack if cur else None, pack
                )
            except Exception:
                if old_text is None:
                    self._unlink(file)
                else:
                    self._write(file, old_text)
                raise
            self._active[name] = _Active(pack, text, sha, file, info)
            self._swap()
            self._recheck_folder()
            return info, True

    def put_rule(
        self,
        pack: str,
        rule_id: str,
        rule: str | dict[str, Any],
        author: str,
        comment: str = "",
    ) -> tuple[VersionInfo, bool]:
        """Add or replace one rule (YAML text of the rule, or a dict) in a pack.

        The pack's file is rewritten with ``yaml.safe_dump``: comments and layout in that
        file are lost on a single-rule edit. PUT the whole pack to keep the text verbatim.
        The ``id`` may be left out of the rule (it is taken from the URL). Error lines of a
        YAML rule count from the rule text's first line.
        """
        with self._lock:
            a = self._get(pack)
            data = yaml.safe_load(a.text)
            if isinstance(data, dict) and data.get("rules") is None:
                data["rules"] = []
            rules = data.get("rules") if isinstance(data, dict) else None
            if not isinstance(data, dict) or not isinstance(rules, list):
                raise RegistryError(f"pack {pack!r} has no rules list to edit")
            index = next(
                (i for i, r in enumerate(rules) if isinstance(r, dict) and r.get("id") == rule_id),
                len(rules),
            )
            rule_data = self._check_rule(a.file, pack, rule_id, rule, index)
            if index < len(rules):
                rules[index] = rule_data
            else:
                rules.append(rule_data)
            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
            return self.put_pack(pack, text, author, comment)

    def delete_rule(
        self, pack: str, rule_id: str, author: str, comment: str = ""
    ) -> tuple[VersionInfo, bool]:
        """Remove one rule from a pack (the file is rewritten: its comments are lost)."""
        with self._lock:
            a = self._get(pack)
            data = yaml.safe_load(a.text)
            rules = data.get("rules") if isinstance(data, dict) else None
            if not isinstance(rules, list) or not any(
                isinstance(r, dict) and r.get("id") == rule_id for r in rules
            ):
                raise NotFoundError(f"pack {pack!r} has no rule {rule_id!r}")
            data["rules"] = [
                r for r in rules if not (isinstance(r, dict) and r.get("id") == rule_id)
            ]
            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
            return self.put_pack(pack, text, author, comment)

    def delete_pack(self, name: str, author: str, comment: str = "") -> VersionInfo:
        """Stop running a pack and remove its file (its versions stay, so it can be restored)."""
        with self._lock:
            a = self._get(name)
            if self.single_file is not None:
                raise ConflictError(
                    f"this server runs the single file {self.single_file}; it cannot be deleted"
                )
            rest = {str(b.file): b.text for n, b in self._active.items() if n != name}
            if rest:
                load_texts(rest)  # e.g. another pack's rule refers to one of this pack's
            info = self._record(name, "", sha256_text(""), a.file, author, comment, a.pack, None)
            self._unlink(a.file)
            del self._active[name]
            self._swap()
            self._recheck_folder()
            return info

    def restore(
        self, name: str, n: int, author: str, comment: str = ""
    ) -> tuple[VersionInfo, bool]:
        """Put version ``n``'s text back as a new version (a rollback)."""
        row = self.store.rule_version(name, n)
        if row is None:
            raise NotFoundError(f"pack {name!r} has no version {n}")
        if row["summary"].get("deleted"):
            raise RegistryError(
                f"version {n} of pack {name!r} is its deletion; restore an earlier one"
            )
        return self.put_pack(name, row["text"], author, comment or f"restore of version {n}")

    def reload_from_folder(self) -> list[VersionInfo]:
        """Pick up pack files changed on disk (mtime and size, then content).

        A valid folder becomes the running set (a version per changed pack, author
        ``file:<path>``); an invalid one is logged and kept in ``last_error`` while the
        running set stays. Returns the versions recorded.
        """
        with self._lock:
            try:
                paths = self._scan()
            except RuleError as exc:
                self._fail(exc, None)
                return []
            fps = _fingerprints(paths)
            if fps == self._fingerprints:
                return []
            try:
                texts = _read(paths)
            except RuleError as exc:
                self._fail(exc, fps)
                return []
            shas = {p: sha256_text(t) for p, t in texts.items()}
            self._fingerprints = fps
            if shas == self._folder_shas:
                return []  # touched, not changed
            self._folder_shas = shas
            try:
                packs = load_texts(texts)
            except RuleError as exc:
                self._fail(exc, fps)
                return []
            infos = self._adopt(texts, packs, baseline=None, comment="edited on disk")
            if self.last_error is not None:
                log.info("rules folder %s loads again", self.folder)
            self.last_error = None
            return infos

    # -- internals ---------------------------------------------------------------------------
    def _start(self, seed: list[RulePack] | None) -> None:
        self._seed(seed)
        paths = self._scan()
        if not paths:
            log.warning("rules folder %s holds no packs: no QA rules will run", self.folder)
        texts = _read(paths)
        self._fingerprints = _fingerprints(paths)
        self._folder_shas = {p: sha256_text(t) for p, t in texts.items()}
        latest = {
            n: r
            for n, r in self.store.latest_rule_versions().items()
            if not r["summary"].get("deleted")
        }
        try:
            packs = load_texts(texts)
        except RuleError as exc:
            if not latest:
                raise
            log.error(
                "RULES FOLDER %s IS INVALID; running the last stored versions (%s) until it "
                "is fixed:\n%s",
                self.folder,
                ", ".join(f"{n} v{r['version']}" for n, r in sorted(latest.items())),
                exc,
            )
            self._set_error(exc.issues)
            stored = {self._stored_file(r): r["text"] for r in latest.values()}
            try:
                stored_packs = load_texts(stored)
            except RuleError as stored_exc:
                raise exc from stored_exc
            for path, p in zip(stored, stored_packs, strict=True):
                row = latest[p.pack]
                self._active[p.pack] = _Active(
                    p, row["text"], row["sha256"], Path(path), VersionInfo.from_row(row)
                )
            self._swap(notify=False)
            return
        self._adopt(texts, packs, baseline=latest, comment="loaded at server start")

    def _seed(self, seed: list[RulePack] | None) -> None:
        if self.single_file is not None:
            return
        has_packs = self.folder.is_dir() and any(_pack_paths(self.folder))
        if has_packs:
            if seed is not None:
                log.warning(
                    "rules folder %s already holds packs: they run, not the packs given",
                    self.folder,
                )
            return
        if seed is None:
            if self.configured or self.folder.exists():
                return  # a folder of the operator's, or every pack was deleted: no seeding
            texts = {p.name: p.read_text(encoding="utf-8") for p in _pack_paths(BUILTIN_PACKS)}
            what = "the built-in packs"
        else:
            texts = {f"{p.pack}.yaml": _builtin_text(p) or dump_pack(p) for p in seed}
            what = ", ".join(p.pack for p in seed) or "no packs"
        self.folder.mkdir(parents=True, exist_ok=True)
        for fname, text in texts.items():
            _write_atomic(self.folder / fname, text)
        log.info("rules folder %s seeded with %s", self.folder, what)

    def _adopt(
        self,
        texts: dict[str, str],
        packs: list[RulePack],
        baseline: dict[str, dict[str, Any]] | None,
        comment: str,
    ) -> list[VersionInfo]:
        """Make a validated folder the running set, recording a version per changed pack.

        ``baseline``: the latest stored versions (at start); else the running set.
        """
        files = _files_of(texts, packs)
        new: dict[str, _Active] = {}
        infos: list[VersionInfo] = []
        old: dict[str, tuple[str, RulePack | None, VersionInfo | None]] = {}
        if baseline is None:
            old = {n: (a.sha, a.pack, a.info) for n, a in self._active.items()}
        else:
            old = {
                n: (r["sha256"], _parse_or_none(r["text"], r["file"]), VersionInfo.from_row(r))
                for n, r in baseline.items()
            }
        for p in packs:
            path = files[p.pack]
            text = texts[path]
            sha = sha256_text(text)
            prev = old.get(p.pack)
            info = prev[2] if prev else None
            if prev is None or prev[0] != sha or info is None:
                info = self._record(
                    p.pack,
                    text,
                    sha,
                    Path(path),
                    f"file:{path}",
                    comment,
                    prev[1] if prev else None,
                    p,
                )
                infos.append(info)
            new[p.pack] = _Active(p, text, sha, Path(path), info)
        for name, (_, prev_pack, prev_info) in old.items():
            if name not in new:
                file = prev_info.file if prev_info else str(self.folder / f"{name}.yaml")
                infos.append(
                    self._record(
                        name,
                        "",
                        sha256_text(""),
                        Path(file),
                        f"file:{file}",
                        f"{comment}: pack file gone",
                        prev_pack,
                        None,
                    )
                )
        changed = bool(infos) or list(new) != list(self._active)
        self._active = new
        self._swap(notify=changed and baseline is None)
        return infos

    def _record(
        self,
        name: str,
        text: str,
        sha: str,
        file: Path,
        author: str,
        comment: str,
        old: RulePack | None,
        new: RulePack | None,
    ) -> VersionInfo:
        summary = change_summary(old, new)
        row = self.store.add_rule_version(name, text, sha, str(file), author, comment, summary)
        info = VersionInfo.from_row(row)
        log.info(
            "rule pack %s v%d by %s%s: %s",
            name,
            info.version,
            author,
            f" ({comment})" if comment else "",
            json.dumps(summary),
        )
        return info

    def _swap(self, notify: bool = True) -> None:
        self._active = dict(sorted(self._active.items(), key=lambda kv: str(kv[1].file)))
        self._packs = [a.pack for a in self._active.values()]
        if not notify:
            return
        for fn in list(self._listeners):
            try:
                fn(self._packs)
            except Exception:
                log.exception("rules listener failed")

    def _set_error(self, issues: list[RuleIssue]) -> None:
        self.last_error = {"at": _now(), "issues": _issue_dicts(issues)}

    def _fail(self, exc: RuleError, fps: dict[str, tuple[int, int]] | None) -> None:
        if fps is not None:
            self._fingerprints = fps
        self._set_error(exc.issues)
        log.error(
            "rules folder %s is invalid; the running packs stay (%s):\n%s",
            self.folder,
            ", ".join(f"{p.pack}" for p in self._packs) or "none",
            exc,
        )

    def _recheck_folder(self) -> None:
        """After an API write, forget what the folder looked like; if it was broken, look
        again now (the write may have fixed it)."""
        if self.last_error is not None:
            self._fingerprints = {}
            self._folder_shas = {}
            self.reload_from_folder()

    def _write(self, file: Path, text: str) -> None:
        file.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(file, text)
        self._remember(file, text)

    def _unlink(self, file: Path) -> None:
        file.unlink(missing_ok=True)
        self._fingerprints.pop(str(file), None)
        self._folder_shas.pop(str(file), None)

    def _remember(self, file: Path, text: str) -> None:
        """Our own write is not an edit on disk: the poller must not see it as one."""
        st = file.stat()
        self._fingerprints[str(file)] = (st.st_mtime_ns, st.st_size)
        self._folder_shas[str(file)] = sha256_text(text)

    def _get(self, name: str) -> _Active:
        a = self._active.get(name)
        if a is None:
            raise NotFoundError(f"no rule pack {name!r}")
        return a

    def _file_for(self, name: str) -> Path:
        a = self._active.get(name)
        if a is not None:
            return a.file
        return self.folder / f"{name}.yaml"

    def _check_new_name(self, name: str) -> None:
        if self.single_file is not None:
            raise ConflictError(
                f"this server runs the single file {self.single_file}; start it with a "
                "folder (--rules DIR) to add packs"
            )
        if not PACK_NAME_RE.fullmatch(name):
            raise RegistryError(
                f"pack name {name!r}: use letters, digits, '_', '-' or '.', starting with a "
                "letter or digit (it becomes the file name)"
            )
        file = self.folder / f"{name}.yaml"
        if any(a.file == file for a in self._active.values()):
            raise ConflictError(f"{file} holds another pack")
        if file.exists():
            raise ConflictError(
                f"{file} exists but is not a pack this server runs (see last_error); fix or "
                "remove it first"
            )

    def _check_rule(
        self, file: Path, pack: str, rule_id: str, rule: str | dict[str, Any], index: int
    ) -> dict[str, Any]:
        """One rule on its own, with error lines counted in the submitted rule text."""
        if isinstance(rule, dict):
            data = dict(rule)
            if data.get("id", rule_id) != rule_id:
                raise RuleError(
                    [
                        RuleIssue(
                            str(file),
                            None,
                            f"rules[{index}].id",
                            f"the rule is {data['id']!r} in the body but {rule_id!r} in the URL",
                        )
                    ]
                )
            data = {"id": rule_id, **{k: v for k, v in data.items() if k != "id"}}
            text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
            offset = None
        else:
            text = rule.removeprefix("---\n")
            peek = peek_yaml(text)  # None on any problem: parse_pack below says which
            offset = 2
            if isinstance(peek, dict) and "id" not in peek:
                text = f"id: {json.dumps(rule_id)}\n{text}"
                offset = 3
            elif isinstance(peek, dict) and peek["id"] != rule_id:
                raise RuleError(
                    [
                        RuleIssue(
                            str(file),
                            _line_of_key(text, "id"),
                            f"rules[{index}].id",
                            f"the rule is {peek['id']!r} in the body but {rule_id!r} in the URL",
                        )
                    ]
                )
        lines = text.splitlines() or [""]
        body = "\n".join(["  - " + lines[0], *("    " + ln for ln in lines[1:])])
        wrapped = f"pack: {json.dumps(pack)}\nrules:\n{body}\n"
        try:
            parse_pack(wrapped, str(file))
        except RuleError as exc:
            raise RuleError(
                [
                    RuleIssue(
                        i.file,
                        i.line - offset if offset and i.line and i.line > offset else None,
                        i.field.replace("rules[0]", f"rules[{index}]", 1),
                        i.message,
                    )
                    for i in exc.issues
                ]
            ) from exc
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise RuleError(
                [RuleIssue(str(file), 1, f"rules[{index}]", "a rule is a mapping (id, kind, ...)")]
            )
        return data

    def _stored_file(self, row: dict[str, Any]) -> str:
        """Where a stored version's pack lives now (its old path if that is in the folder)."""
        old = Path(row["file"])
        if old.parent == self.folder or (self.single_file is not None and old == self.single_file):
            return str(old)
        return str(self.folder / f"{row['pack']}.yaml")

    def _scan(self) -> list[Path]:
        if self.single_file is not None:
            return [self.single_file]
        if not self.folder.is_dir():
            raise RuleError([RuleIssue(str(self.folder), None, "", "no such file or folder")])
        return _pack_paths(self.folder)

    def _pack_summary(self, a: _Active) -> dict[str, Any]:
        return {
            "pack": a.pack.pack,
            "file": str(a.file),
            "yaml_version": a.pack.version,
            "version": a.info.version if a.info else None,
            "rules": len(a.pack.rules),
            "updated_at": a.info.created_at if a.info else None,
            "updated_by": a.info.author if a.info else None,
        }


def _pack_paths(folder: Path) -> list[Path]:
    """``*.yaml`` / ``*.yml`` in the folder, by name; hidden files (editor temp files) not."""
    return sorted(
        p
        for p in [*folder.glob("*.yaml"), *folder.glob("*.yml")]
        if p.is_file() and not p.name.startswith(".")
    )


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _fingerprints(paths: list[Path]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        out[str(p)] = (st.st_mtime_ns, st.st_size)
    return out


def _read(paths: list[Path]) -> dict[str, str]:
    texts: dict[str, str] = {}
    issues: list[RuleIssue] = []
    for p in paths:
        try:
            texts[str(p)] = p.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(RuleIssue(str(p), None, "", f"cannot read: {exc}"))
    if issues:
        raise RuleError(issues)
    return texts


def _files_of(texts: dict[str, str], packs: list[RulePack]) -> dict[str, str]:
    """Pack name -> the file it came from."""
    if len(texts) == len(packs):
        return {p.pack: path for path, p in zip(texts, packs, strict=True)}
    out: dict[str, str] = {}
    for path, text in texts.items():
        p = _parse_or_none(text, path)
        if p is not None:
            out[p.pack] = path
    return out


def _builtin_text(pack: RulePack) -> str | None:
    """The built-in file's own text (comments and all) if ``pack`` is a built-in pack."""
    for p in _pack_paths(BUILTIN_PACKS):
        text = p.read_text(encoding="utf-8")
        if _parse_or_none(text, str(p)) == pack:
            return text
    return None


def _peek_pack_name(text: str) -> str | None:
    data = peek_yaml(text)
    name = data.get("pack") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _line_of_key(text: str, key: str) -> int | None:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if k.value == key:
                return int(k.start_mark.line) + 1
    return None

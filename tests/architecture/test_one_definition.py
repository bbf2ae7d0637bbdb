"""One concept, one definition: what `canaryflow/kernel/contracts/` names is not spelled again.

A name two places must agree on (a workflow step, a rollout phase, why a check failed, a column of
the prediction log's Parquet files) is defined once in `kernel/contracts/` and imported; a second
spelling is how the writer and the reader drift apart unseen (the Parquet reader once read `tokens`
as int64 while the writer wrote int32). This reads the source of every package with `ast` and
reports, outside the defining module:

- steps: a string equal to a step name, or holding a hyphenated one (`set-weight` in a regex);
- phases: a string equal to a rollout phase;
- causes: a `cause` compared with a bare number, or a number -> words table of causes;
- the prediction log (`parquet` below): a pyarrow type spelled in code (`pa.int64()`) rather than
  taken from `PARQUET_TYPES`, a file name built by hand (`predictions-...`), and, in modules that use
  the prediction log, a column name spelled as a string.

Some names are also ordinary words of other concepts (`canary` is an arm, `promote` a decision,
`render` a command): those are reported only where they stand for the contract (compared with a
`phase`, passed as `phase=`; a column of a table or a filter). Docstrings are prose, not code. What
remains legitimately spelled twice is listed in ALLOWED with the reason.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from canaryflow.kernel.contracts.causes import FailureCause
from canaryflow.kernel.contracts.drift import PARQUET_COLUMNS, PREDICTION_FILE_PREFIX, PredictionRecord
from canaryflow.kernel.contracts.phases import RolloutPhase
from canaryflow.kernel.contracts.steps import Step

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("canaryflow", "controller", "workflows", "gitops", "inference", "policies")
DEFINITIONS = {
    "step": "canaryflow/kernel/contracts/steps.py",
    "phase": "canaryflow/kernel/contracts/phases.py",
    "cause": "canaryflow/kernel/contracts/causes.py",
    "parquet": "canaryflow/kernel/contracts/drift.py",
}
STEPS = {s.value for s in Step}
PHASES = {p.value for p in RolloutPhase}
# Words that also name something else; reported only in the contract's own context.
STEP_HOMONYMS = {
    "render": "the CLI commands `gitops|install|workflow render`, a doctor check",
    "analyze": "the CLI group `analyze`, the DAG's node kind",
    "promote": "a verdict's decision (`Decision`), the commit trailer",
    "rollback": "a verdict's decision, the CLI command `gitops rollback`, `on_drift: rollback`",
    "watch": "a Kubernetes RBAC verb",
    "approval": "a webhook event kind",
    "bake": "",
}
PHASE_HOMONYMS = {
    "canary": "the canary arm and routing role",
    "pending": "an approval's state",
    "failed": "a step outcome's state",
    "promoted": "",
}
HYPHENATED_STEPS = {s for s in STEPS if "-" in s}
GENERIC_COLUMNS = {"t", "model", "version", "text"}  # also every other record's fields
PYARROW_TYPES = {
    "bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "string", "utf8", "large_string", "binary", "large_binary",
}  # fmt: skip
FILTER_OPS = {"=", "==", "!=", "<", "<=", ">", ">=", "in", "not in"}
PREDICTION_CONTRACTS = ("canaryflow.kernel.contracts.drift", "inference.prediction_records")

# (file, concept, literal): why that file must spell it.
ALLOWED = {
    ("canaryflow/kernel/contracts/notifications.py", "phase", "awaiting_approval"): (
        "a notice event's own name (the CloudEvent type), equal to the phase it announces"
    ),
    ("canaryflow/kernel/contracts/notifications.py", "phase", "rolled_back"): "as above",
    ("canaryflow/kernel/rollout.py", "phase", "rolled_back"): "the RolledBack event's kind",
    ("controller/drift_action.py", "phase", "rolled_back"): "the drift action's own state",
    ("workflows/steps/command.py", "step", "set-weight"): "`workflow step --help` lists the steps",
}


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    concept: str
    literal: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.concept} {self.literal!r} spelled again"


def _docstrings(tree: ast.AST) -> set[int]:
    """A string standing alone as a statement: a docstring, of a module, class, function or attribute."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        if isinstance(node.value.value, str)
    }


def _strings(node: ast.AST) -> Iterator[ast.Constant]:
    """The string constants of `node` itself or of a tuple/list/set literal it is."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, ast.Tuple | ast.List | ast.Set):
        for item in node.elts:
            yield from _strings(item)


def _in_context(tree: ast.AST, word: str) -> set[int]:
    """Strings standing for `word`'s concept: compared with an expression naming it, passed as a
    keyword naming it, the value of a dict key naming it, a key of a table whose name holds it."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(word in ast.unparse(side).lower() for side in sides if not isinstance(side, ast.Constant)):
                ids.update(id(c) for side in sides for c in _strings(side))
        elif isinstance(node, ast.keyword) and node.arg and word in node.arg.lower():
            ids.update(id(c) for c in _strings(node.value))
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == word:
                    ids.update(id(c) for c in _strings(value))
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and _names(node.targets, word):
            ids.update(id(c) for key in node.value.keys if key is not None for c in _strings(key))
    return ids


def _names(targets: list[ast.expr], word: str) -> bool:
    return any(word in ast.unparse(t).lower() for t in targets)


def _column_context(tree: ast.AST) -> set[int]:
    """Strings naming a column: `x.column("t")`, `x.field("t")`, a filter `("t", ">=", start)`."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if node.func.attr in ("column", "field"):
                ids.update(id(c) for c in _strings(node.args[0]))
        elif isinstance(node, ast.Tuple) and len(node.elts) == 3:
            op = node.elts[1]
            if isinstance(op, ast.Constant) and op.value in FILTER_OPS:
                ids.update(id(c) for c in _strings(node.elts[0]))
    return ids


def _uses_prediction_log(tree: ast.AST) -> bool:
    return any(
        isinstance(node, ast.ImportFrom) and node.module in PREDICTION_CONTRACTS for node in ast.walk(tree)
    )


def findings(source: str, file: str) -> list[Finding]:
    tree = ast.parse(source, file)
    prose = _docstrings(tree)
    phase_context, step_context = _in_context(tree, "phase"), _in_context(tree, "step")
    columns = _column_context(tree)
    prediction_log = _uses_prediction_log(tree)
    found: list[Finding] = []

    def report(node: ast.AST, concept: str, literal: str) -> None:
        if DEFINITIONS[concept] != file and (file, concept, literal) not in ALLOWED:
            found.append(Finding(file, getattr(node, "lineno", 0), concept, literal))

    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            text = node.value
            if text in STEPS and (text not in STEP_HOMONYMS or id(node) in step_context):
                report(node, "step", text)
            elif any(step in text for step in HYPHENATED_STEPS) and text not in STEPS:
                report(node, "step", next(s for s in sorted(HYPHENATED_STEPS) if s in text))
            if text in PHASES and (text not in PHASE_HOMONYMS or id(node) in phase_context):
                report(node, "phase", text)
            if PREDICTION_FILE_PREFIX in text:
                report(node, "parquet", PREDICTION_FILE_PREFIX)
            column = prediction_log and text in PARQUET_COLUMNS
            if column and (text not in GENERIC_COLUMNS or id(node) in columns):
                report(node, "parquet", text)
        elif isinstance(node, ast.Call) and (name := _pyarrow_type(node)):
            report(node, "parquet", name)
        elif isinstance(node, ast.Compare):
            for number in _numbers_compared_with_a_cause(node):
                report(number, "cause", str(number.value))
        elif isinstance(node, ast.Dict) and _is_cause_table(node):
            report(node, "cause", "a number -> words table")
    return found


def _pyarrow_type(call: ast.Call) -> str | None:
    func = call.func
    owner = func.value if isinstance(func, ast.Attribute) else None
    if isinstance(func, ast.Attribute) and isinstance(owner, ast.Name) and owner.id in ("pa", "pyarrow"):
        return f"pa.{func.attr}()" if func.attr in PYARROW_TYPES else None
    return None


def _numbers_compared_with_a_cause(node: ast.Compare) -> list[ast.Constant]:
    sides = [node.left, *node.comparators]
    if not any("cause" in ast.unparse(s).lower() for s in sides if not isinstance(s, ast.Constant)):
        return []
    return [s for s in sides if isinstance(s, ast.Constant) and type(s.value) is int]


def _is_cause_table(node: ast.Dict) -> bool:
    keys = [k.value if isinstance(k, ast.Constant) else None for k in node.keys]
    words = all(isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.values)
    causes = {int(c) for c in FailureCause}
    return bool(keys) and words and all(type(k) is int for k in keys) and set(keys) <= causes


def _sources() -> Iterator[tuple[str, str]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield str(path.relative_to(ROOT)), path.read_text()


def test_no_contract_is_spelled_twice() -> None:
    found = [str(f) for file, source in _sources() for f in findings(source, file)]
    assert found == []


def test_every_allowance_is_still_needed() -> None:
    """An allowance whose literal is gone is removed, so the list stays the short list it claims to be."""
    sources = dict(_sources())
    for file, concept, literal in ALLOWED:
        assert literal in sources[file], f"{file}: {concept} {literal!r} is no longer there"


def test_the_parquet_columns_are_the_record_fields() -> None:
    assert tuple(PredictionRecord.model_fields) == PARQUET_COLUMNS


# The checker is not vacuous: each re-spelling the contracts replaced is reported again.
RESPELLED = {
    "step": 'import re\n_WEIGHTED = re.compile(r"(set-weight|wait-ready|analyze)-(\\d+)")\n',
    "phase": 'def f(record):\n    return record.phase in ("canary", "awaiting_approval")\n',
    "phase keyword": 'notice = make(phase="rolled_back")\n',
    "phase table": '_BY_PHASE = {"promoted": 1, "failed": 2}\n',
    "cause": 'def f(stats, verdict):\n    cause = int(stats.get("cause") or 0)\n    return cause == 2\n',
    "cause table": 'CAUSES = {1: "cumulative", 2: "latest window", 3: "trend"}\n',
    "parquet type": 'import pyarrow as pa\n_SCALARS = {"tokens": pa.int64()}\n',
    "parquet file name": 'def f(now, pid):\n    return f"predictions-{now:.3f}-{pid}.jsonl"\n',
    "parquet column": (
        "from canaryflow.kernel.contracts.drift import PredictionRecord\n"
        'def f(table, start):\n    return table.column("embedding"), [("t", ">=", start)]\n'
    ),
}


def test_the_checker_sees_each_respelling() -> None:
    for name, source in RESPELLED.items():
        concept = name.split()[0]
        got = findings(source, "controller/example.py")
        assert got and all(f.concept == concept for f in got), (name, got)


def test_the_checker_leaves_homonyms_and_prose_alone() -> None:
    source = (
        '"""The canary is promoted at step render; set-weight-20 waits."""\n'
        'ARMS = ("baseline", "canary")\n'
        'def f(verdict, arm):\n    return verdict.decision == "promote" and arm == "canary"\n'
    )
    assert findings(source, "controller/example.py") == []

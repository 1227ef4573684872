"""What is in a `.tflite` file: its ops, and which of them the XNNPACK delegate takes.

LiteRT applies XNNPACK, its default CPU delegate, when the tensors are
allocated: each partition of ops the delegate takes is replaced by one node
named DELEGATE, whose inputs and outputs are the partition's boundary
tensors. The ops a partition covers are found by walking the original graph
back from the DELEGATE node's outputs to its inputs. LiteRT (ai_edge_litert
2.3) has no public call that lists the nodes after delegation, so
`xnnpack_coverage` reads the interpreter's private `_get_ops_details`;
tests/export/test_analysis.py fails with a clear message the day a LiteRT
release drops it. The op counts of a file need no interpreter: they are read
from the flatbuffer through LiteRT's public schema module.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from tf_deraindrop.inference.tflite import load_interpreter


@dataclass
class DelegateCoverage:
    """How much of a model one delegate runs.

    Attributes:
        taken: ops the delegate runs.
        total: ops in the model.
        partitions: DELEGATE nodes (graph pieces the delegate runs; 1 is best).
        not_taken: op name -> count of ops left to LiteRT's own kernels.
    """

    taken: int
    total: int
    partitions: int
    not_taken: Counter = field(default_factory=Counter)

    @property
    def complete(self) -> bool:
        return self.taken == self.total and self.partitions == 1

    def __str__(self) -> str:
        text = f"{self.taken} of {self.total} ops in {self.partitions} partition(s)"
        if self.not_taken:
            text += "; not taken: " + ", ".join(f"{k} x{v}" for k, v in self.not_taken.items())
        return text


#: The interpreter's private call that lists the graph's nodes after delegation.
PRIVATE_NODE_LIST = "_get_ops_details"


def _nodes(interpreter) -> list[dict]:
    try:
        return getattr(interpreter, PRIVATE_NODE_LIST)()
    except AttributeError as err:  # a LiteRT release without this private call
        raise RuntimeError(
            f"this ai_edge_litert has no Interpreter.{PRIVATE_NODE_LIST}: export.analysis "
            "cannot tell which ops XNNPACK takes (pin ai-edge-litert to a release that has it)"
        ) from err


def op_counts(path: str | os.PathLike) -> Counter:
    """Op name -> count, as stored in the file (main subgraph, no delegate applied)."""
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        model = schema.ModelT.InitFromPackedBuf(bytearray(f.read()), 0)
    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()}
    counts: Counter = Counter()
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        if builtin_code(code) == schema.BuiltinOperator.CUSTOM:
            custom = code.customCode
            counts[custom.decode() if isinstance(custom, bytes) else str(custom)] += 1
        else:
            counts[names[builtin_code(code)]] += 1
    return counts


def builtin_code(operator_code) -> int:
    """The builtin operator of a schema `OperatorCodeT` (old files use the deprecated field)."""
    return max(operator_code.builtinCode, operator_code.deprecatedBuiltinCode)


def xnnpack_coverage(path: str | os.PathLike, threads: int | None = None) -> DelegateCoverage:
    """Which ops of a `.tflite` LiteRT's default XNNPACK delegate takes."""
    interpreter = load_interpreter(path, threads=threads, xnnpack=True)
    nodes = _nodes(interpreter)
    delegates = [n for n in nodes if n["op_name"] == "DELEGATE"]
    ops = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): n["index"] for n in ops for t in n["outputs"]}
    by_index = {n["index"]: n for n in ops}
    taken: set[int] = set()
    for delegate in delegates:
        boundary = {int(t) for t in delegate["inputs"]}
        stack = [int(t) for t in delegate["outputs"]]
        while stack:
            tensor = stack.pop()
            if tensor in boundary or tensor not in producer:
                continue
            index = producer[tensor]
            if index not in taken:
                taken.add(index)
                stack.extend(int(t) for t in by_index[index]["inputs"] if t >= 0)
    not_taken = Counter(n["op_name"] for n in ops if n["index"] not in taken)
    return DelegateCoverage(len(taken), len(ops), len(delegates), not_taken)

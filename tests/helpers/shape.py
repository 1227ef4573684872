"""Module and function sizes in code lines (blank lines, comments and docstrings left out)."""

from __future__ import annotations

import ast
import io
import tokenize


def code_lines(source: str) -> set[int]:
    """The line numbers that hold code: not blank, not only a comment, not in a docstring."""
    tree = ast.parse(source)
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in (
            tokenize.COMMENT,
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
            tokenize.ENDMARKER,
        ):
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    return lines - docstrings


def function_sizes(source: str) -> list[tuple[str, int, int]]:
    """`(name, first line, code lines)` for every function and method."""
    lines = code_lines(source)
    sizes = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            span = range(node.lineno, node.end_lineno + 1)
            sizes.append((node.name, node.lineno, sum(1 for n in span if n in lines)))
    return sizes

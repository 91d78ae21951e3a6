"""Count ``Any`` in the library's annotations: ``python scripts/count_any.py [PACKAGE_DIR]``.

Counts the ``Any`` names that appear inside annotations (arguments, returns, fields), per
file and in total, so a refactor can report the number before and after.
"""

import ast
import sys
from pathlib import Path


def count(path: Path) -> int:
    tree = ast.parse(path.read_text())
    n = 0
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            every = args.posonlyargs + args.args + args.kwonlyargs
            every += [a for a in (args.vararg, args.kwarg) if a is not None]
            annotations += [a.annotation for a in every if a.annotation is not None]
            if node.returns is not None:
                annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for ann in annotations:
            n += sum(isinstance(x, ast.Name) and x.id == "Any" for x in ast.walk(ann))
            n += sum(isinstance(x, ast.Attribute) and x.attr == "Any" for x in ast.walk(ann))
    return n


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "terrain_jax"
    rows = sorted(((count(p), p) for p in root.rglob("*.py")), reverse=True)
    for n, p in rows:
        if n:
            print(f"{n:5d}  {p.relative_to(root.parent)}")
    print(f"{sum(n for n, _ in rows):5d}  total in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

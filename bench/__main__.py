"""``python -m bench <name> [args]``: run one benchmark module by name (``all`` runs the suite)."""

from __future__ import annotations

import importlib
import sys

MODULES = ("all", "parse", "loadgen", "durability", "soak", "startup", "corpus")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in MODULES:
        print(f"usage: python -m bench {{{','.join(MODULES)}}} [args]", file=sys.stderr)
        return 2
    return importlib.import_module(f"bench.{argv[0]}").main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Print the path of the embedded default model (SmolLM2-135M-Instruct), converting it on first use."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.base import EngineError
from engine.default_model import ensure_default_model


def main() -> int:
    try:
        print(ensure_default_model())
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

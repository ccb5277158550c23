"""Dataset registry and loaders: every sample file maps to correct canonical samples; bad input is one line."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.loaders import DataError
from data.registry import REGISTRY, get_dataset_spec, load_samples
from data.schema import TASK_TYPES

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def sample_rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / name).read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_sample_file_loads_through_its_spec(name):
    spec = get_dataset_spec(name)
    assert spec.task_type in TASK_TYPES
    samples = load_samples(name, data_path=spec.sample_file)
    assert len(samples) >= 3
    assert len({s.id for s in samples}) == len(samples)
    for sample in samples:
        assert sample.source == spec.name and sample.query.strip() and sample.gt.strip()
        assert (sample.choices is not None) == (spec.task_type == "multiple_choice")


def test_gsm8k_has_enough_easy_samples_for_the_demo():
    samples = load_samples("GSM8K", data_path=SAMPLES / "gsm8k.jsonl")
    assert len(samples) >= 8
    assert [s.gt for s in samples[:5]] == ["7", "5", "6", "8", "2"]
    assert all("<<" in s.meta["solution"] for s in samples)
    assert [s.id for s in samples[:2]] == ["GSM8K-test-0", "GSM8K-test-1"]


def test_gsm8k_gt_is_the_number_after_the_hashes(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [
        {"question": "q1", "answer": "6 * 3 = <<6*3=18>>18\n#### 18"},
        {"question": "q2", "answer": "a lot\n#### 1,250"},
    ])
    assert [s.gt for s in load_samples("gsm8k", data_path=path)] == ["18", "1250"]


def test_math_gt_is_the_last_boxed_with_nested_braces(tmp_path):
    samples = load_samples("MATH", data_path=SAMPLES / "math.jsonl")
    by_subject = {s.meta["subject"]: s for s in samples}
    assert by_subject["Precalculus"].gt == "\\frac{\\sqrt{3}}{2}"
    assert by_subject["Prealgebra"].meta["level"] == "Level 1"
    path = write_jsonl(tmp_path / "m.jsonl", [{
        "problem": "p", "level": "Level 5", "type": "Algebra",
        "solution": "First $\\boxed{1}$ is wrong; the answer is $\\boxed{\\frac{a^{2}}{\\sqrt{b}}}$."}])
    assert load_samples("MATH", data_path=path)[0].gt == "\\frac{a^{2}}{\\sqrt{b}}"


def test_math500_prefers_its_answer_field_and_id():
    samples = load_samples("math-500", data_path=SAMPLES / "math500.jsonl")
    hexagon = next(s for s in samples if "hexagon" in s.query)
    assert hexagon.gt == "720"  # the boxed solution says 720^\circ
    assert hexagon.id == "test/prealgebra/1590.json" and hexagon.meta["level"] == 2


def test_metamathqa_gt_after_the_answer_is():
    samples = load_samples("MetaMathQA", data_path=SAMPLES / "metamathqa.jsonl")
    assert [s.gt for s in samples] == ["19", "12", "8", "18"]
    assert samples[2].meta["type"] == "GSM_FOBAR"


def test_medmcqa_choices_and_letter(tmp_path):
    samples = load_samples("MedMCQA", data_path=SAMPLES / "medmcqa.jsonl")
    scurvy = samples[0]
    assert scurvy.gt == "B" and scurvy.choices == ["Vitamin A", "Vitamin C", "Vitamin D", "Vitamin K"]
    assert [s.gt for s in samples] == ["B", "C", "D", "A"]
    assert scurvy.meta["subject"] == "Biochemistry"
    row = dict(sample_rows("medmcqa.jsonl")[0], cop=-1)
    with pytest.raises(DataError, match=r"m\.jsonl:1: field 'cop' must be 0-3"):
        load_samples("MedMCQA", data_path=write_jsonl(tmp_path / "m.jsonl", [row]))


def test_qmsum_gives_one_sample_per_query():
    samples = load_samples("QMSum", data_path=SAMPLES / "qmsum.jsonl")
    assert len(samples) == 5  # meeting 1: 1 general + 2 specific; meeting 2: 1 + 1
    first = samples[0]
    assert first.meta == {"meeting_id": "QMSum-test-0", "query_type": "general"}
    assert first.context.startswith("Project Manager: Okay")
    assert "battery" in samples[1].query and "rechargeable" in samples[1].gt
    assert samples[3].context != first.context


def test_qasper_gives_one_sample_per_question_with_all_references():
    samples = load_samples("QASPER", data_path=SAMPLES / "qasper.jsonl")
    assert len(samples) == 4
    features = samples[0]
    assert features.gt == "character n-grams of length one to four"
    assert features.meta["references"] == ["character n-grams of length one to four",
                                           "Character n-grams (length 1 to 4)"]
    assert features.meta["paper_id"] == "2004.01234"
    assert "Title: A Lightweight Tagger" in features.context and "averaged perceptron" in features.context
    assert [s.gt for s in samples[1:]] == ["Yes", "Kendall correlation of 0.41", "Unanswerable"]


def _qasper_release_layout(row: dict) -> dict:
    """The original release's row layout (what the HF conversion turned into columns)."""
    full_text = [{"section_name": name, "paragraphs": paragraphs}
                 for name, paragraphs in zip(row["full_text"]["section_name"], row["full_text"]["paragraphs"])]
    qas = []
    for position, question in enumerate(row["qas"]["question"]):
        answers = row["qas"]["answers"][position]
        qas.append({"question": question, "question_id": row["qas"]["question_id"][position],
                    "answers": [{"answer": a, "annotation_id": i}
                                for a, i in zip(answers["answer"], answers["annotation_id"])]})
    return {"title": row["title"], "abstract": row["abstract"], "full_text": full_text, "qas": qas}


def test_qasper_release_json_and_parquet_give_the_same_samples(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sample_rows("qasper.jsonl")
    expected = [s.to_dict() for s in load_samples("QASPER", data_path=SAMPLES / "qasper.jsonl")]
    release = tmp_path / "qasper-test.json"  # keyed by paper id, as the release ships it
    release.write_text(json.dumps({row["id"]: _qasper_release_layout(row) for row in rows}))
    assert [s.to_dict() for s in load_samples("QASPER", data_path=release)] == expected
    parquet = tmp_path / "qasper.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    assert [s.to_dict() for s in load_samples("QASPER", data_path=parquet)] == expected


def test_hotpotqa_context_from_titles_and_sentences_in_both_layouts(tmp_path):
    samples = load_samples("HotpotQA", data_path=SAMPLES / "hotpotqa.jsonl")
    bizet = samples[0]
    assert bizet.gt == "France" and bizet.id == "5a8b57f25542995d1e6f1371"
    assert bizet.context.split("\n\n")[0] == ("Carmen\nCarmen is an opera in four acts by the composer "
                                             "Georges Bizet. It was first performed in Paris in 1875.")
    assert bizet.meta["supporting_facts"] == [["Carmen", 0], ["Georges Bizet", 0]]
    release = []
    for row in sample_rows("hotpotqa.jsonl"):
        release.append({"_id": row["id"], "question": row["question"], "answer": row["answer"],
                        "type": row["type"], "level": row["level"],
                        "supporting_facts": [list(f) for f in zip(*row["supporting_facts"].values())],
                        "context": [list(c) for c in zip(*row["context"].values())]})
    path = tmp_path / "hotpot_dev_distractor.json"
    path.write_text(json.dumps(release))
    assert [s.to_dict() for s in load_samples("HotpotQA", data_path=path)] == [s.to_dict() for s in samples]


def test_hub_path_concatenates_math_subjects_without_remote_code(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return [{"problem": f"{name} {i}", "level": "Level 1", "type": name,
                 "solution": f"$\\boxed{{{i}}}$"} for i in range(2)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    samples = load_samples("MATH", split="test")
    assert [c[1] for c in calls] == list(get_dataset_spec("MATH").hub_configs) and len(calls) == 7
    assert all(c[0] == "EleutherAI/hendrycks_math" and c[2] == {"split": "test"} for c in calls)
    assert len(samples) == 14 and samples[2].query == "counting_and_probability 0"
    assert [s.id for s in samples[:3]] == ["MATH-test-0", "MATH-test-1", "MATH-test-2"]


def test_hub_failure_is_one_line(monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (LocalEntryNotFoundError)\nmore detail")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataError) as info:
        load_samples("GSM8K")
    message = str(info.value)
    assert "\n" not in message and "openai/gsm8k (main, test)" in message and "--data_path" in message


def test_dataset_without_a_hub_copy_asks_for_data_path():
    with pytest.raises(DataError, match=r"QMSum .*--data_path"):
        load_samples("QMSum")


def test_unknown_dataset_lists_known_names():
    with pytest.raises(DataError) as info:
        load_samples("GSM9K")
    assert "unknown dataset 'GSM9K'" in str(info.value) and "MedMCQA" in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_field_names_file_line_and_field(tmp_path):
    rows = sample_rows("gsm8k.jsonl")[:3]
    del rows[2]["question"]
    path = write_jsonl(tmp_path / "gsm8k.jsonl", rows)
    with pytest.raises(DataError, match=rf"^{path}:3: missing field 'question'$"):
        load_samples("GSM8K", data_path=path)


def test_wrong_field_type_and_missing_final_answer(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": 7, "answer": "#### 7"}])
    with pytest.raises(DataError, match=r"g\.jsonl:1: field 'question' must be str, got int"):
        load_samples("GSM8K", data_path=path)
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "no final line"}])
    with pytest.raises(DataError, match=r"g\.jsonl:1: field 'answer' has no final '#### <number>' line"):
        load_samples("GSM8K", data_path=path)


def test_malformed_json_line(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q2", "answer"\n')
    with pytest.raises(DataError, match=rf"^{path}:2: malformed JSON"):
        load_samples("GSM8K", data_path=path)


def test_unsupported_extension_and_missing_file(tmp_path):
    csv = tmp_path / "gsm8k.csv"
    csv.write_text("question,answer\n")
    with pytest.raises(DataError, match=r"gsm8k\.csv: unsupported file extension '\.csv'"):
        load_samples("GSM8K", data_path=csv)
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file"):
        load_samples("GSM8K", data_path=tmp_path / "nope.jsonl")


def test_duplicate_ids_are_refused(tmp_path):
    row = sample_rows("medmcqa.jsonl")[0]
    path = write_jsonl(tmp_path / "m.jsonl", [row, row])
    with pytest.raises(DataError, match=r"m\.jsonl:2: duplicate id .* \(first at .*m\.jsonl:1\)"):
        load_samples("MedMCQA", data_path=path)


def test_json_lines_saved_as_json_still_load(tmp_path):
    path = tmp_path / "gsm8k.json"
    path.write_text((SAMPLES / "gsm8k.jsonl").read_text())
    assert len(load_samples("GSM8K", data_path=path)) == 10


@pytest.mark.parametrize("num_shards", [1, 2, 3, 4])
def test_shards_cover_every_id_exactly_once(num_shards):
    everything = [s.id for s in load_samples("GSM8K", data_path=SAMPLES / "gsm8k.jsonl", max_samples=9)]
    assert len(everything) == 9
    shards = [[s.id for s in load_samples("GSM8K", data_path=SAMPLES / "gsm8k.jsonl", max_samples=9,
                                          num_shards=num_shards, shard_id=i)] for i in range(num_shards)]
    assert sorted(i for shard in shards for i in shard) == sorted(everything)
    for shard_id, shard in enumerate(shards):
        assert shard == everything[shard_id::num_shards]


def test_max_samples_counts_samples_not_records_and_stops_reading(tmp_path):
    assert len(load_samples("QASPER", data_path=SAMPLES / "qasper.jsonl", max_samples=3)) == 3
    path = tmp_path / "g.jsonl"
    path.write_text((SAMPLES / "gsm8k.jsonl").read_text() + "not json\n")
    assert len(load_samples("GSM8K", data_path=path, max_samples=4)) == 4
    assert load_samples("GSM8K", data_path=path, max_samples=0) == []


def test_bad_shard_and_sample_flags():
    with pytest.raises(DataError, match=r"--shard_id 2 must be in \[0, --num_shards 2\)"):
        load_samples("GSM8K", data_path=SAMPLES / "gsm8k.jsonl", num_shards=2, shard_id=2)
    with pytest.raises(DataError, match="--max_samples"):
        load_samples("GSM8K", data_path=SAMPLES / "gsm8k.jsonl", max_samples=-1)

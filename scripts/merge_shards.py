"""Merge the shard files of a sharded inference run into its output file and report what is missing.

    python scripts/merge_shards.py --output_path results/GSM8K/<model>/llm_debate_infer.jsonl [--num_shards K]
    # to check coverage against the dataset too, add the inference run's own data flags:
    python scripts/merge_shards.py --output_path ... --test_dataset_name GSM8K [--data_path F] [--split S]

Records are deduplicated by id (a successful record wins over an error record, otherwise the first
seen is kept); records already in the output file take part, so rerunning the merge is safe. With the
dataset flags, every missing id is reported under the shard that should have written it (sample i of
the dataset belongs to shard i mod K, as inference.py and label.py shard), so you know which shard job
to rerun. Exit status 1 when ids or shard files are missing, 2 on bad input.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from data.errors import DataError  # noqa: E402
from data.records import find_shard_files, read_records, write_records  # noqa: E402

MAX_IDS_SHOWN = 10


@dataclass
class MergeReport:
    output_path: Path
    shard_files: list[Path]
    missing_shards: list[str]  # file names of expected shards that do not exist
    num_records: int
    failed_ids: list[str]  # ids whose only record is an error record
    num_duplicates: int
    num_shards: int = 1
    missing_ids: list[str] | None = None  # None: no dataset given to compare against
    extra_ids: list[str] = field(default_factory=list)  # ids not in the given dataset
    # shard id -> its missing ids (dataset order); only shards with something missing
    missing_by_shard: dict[int, list[str]] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        if self.missing_ids is not None:  # the dataset is the ground truth: an absent shard may be empty
            return not self.missing_ids
        return not self.missing_shards


def select_shard_files(output_path: Path, num_shards: int | None) -> tuple[list[Path], list[str], int]:
    """The shard files of `output_path` to merge, the names of expected ones that are absent, the shard count."""
    found = find_shard_files(output_path)
    if num_shards is None:
        counts = sorted({count for _, count in found})
        if not counts:
            raise DataError(f"{output_path}: no shard files found next to it "
                            f"(expected {output_path.stem}.shard-<i>-of-<k>.jsonl)")
        if len(counts) > 1:
            raise DataError(f"{output_path}: shard files of runs with different --num_shards "
                            f"({', '.join(map(str, counts))}) lie next to it; pass --num_shards")
        num_shards = counts[0]
    if num_shards < 1:
        raise DataError(f"--num_shards must be >= 1, got {num_shards}")
    present = [found[(i, num_shards)] for i in range(num_shards) if (i, num_shards) in found]
    if not present:
        raise DataError(f"{output_path}: no shard files of --num_shards {num_shards} found next to it")
    missing = [f"{output_path.stem}.shard-{i}-of-{num_shards}.jsonl"
               for i in range(num_shards) if (i, num_shards) not in found]
    return present, missing, num_shards


def merge_records(sources: Iterable[Iterable[dict[str, Any]]]) -> tuple[list[dict[str, Any]], int]:
    """Records deduplicated by id in first-seen order (a success replaces an error); duplicates dropped."""
    merged: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for records in sources:
        for record in records:
            previous = merged.get(record["id"])
            if previous is None:
                merged[record["id"]] = record
                continue
            duplicates += 1
            if "error" in previous and "error" not in record:
                merged[record["id"]] = record  # keeps the first-seen position
    return list(merged.values()), duplicates


def merge_shards(output_path: str | Path, num_shards: int | None = None,
                 expected_ids: list[str] | None = None) -> MergeReport:
    """Merge the shards of `output_path` into it (atomically) and say what is failed or missing."""
    output_path = Path(output_path)
    shard_files, missing_shards, num_shards = select_shard_files(output_path, num_shards)
    sources = [read_records(output_path)] if output_path.exists() else []
    sources += [read_records(path) for path in shard_files]
    records, duplicates = merge_records(sources)
    report = MergeReport(output_path=output_path, shard_files=shard_files, missing_shards=missing_shards,
                         num_records=len(records), failed_ids=[r["id"] for r in records if "error" in r],
                         num_duplicates=duplicates, num_shards=num_shards)
    if expected_ids is not None:
        position = {sample_id: i for i, sample_id in enumerate(expected_ids)}
        merged_ids = {r["id"] for r in records}
        report.missing_ids = [i for i in expected_ids if i not in merged_ids]
        for index, sample_id in enumerate(expected_ids):
            if sample_id not in merged_ids:  # sample i went to shard i mod K (data.registry.load_samples)
                report.missing_by_shard.setdefault(index % num_shards, []).append(sample_id)
        report.extra_ids = [r["id"] for r in records if r["id"] not in position]
        # Dataset order, so the merged file reads like an unsharded run's; unknown ids go last.
        records.sort(key=lambda r: position.get(r["id"], len(position)))
    write_records(output_path, records)
    return report


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:MAX_IDS_SHOWN])
    return shown + (f", ... ({len(ids) - MAX_IDS_SHOWN} more)" if len(ids) > MAX_IDS_SHOWN else "")


def _shard_id(file_name: str) -> int:
    return int(file_name.rsplit(".shard-", 1)[1].split("-of-", 1)[0])


def format_report(report: MergeReport) -> str:
    lines = [f"merged {len(report.shard_files)} shard file(s) into {report.output_path}",
             (f"records: {report.num_records} (ok {report.num_records - len(report.failed_ids)}, "
              f"failed {len(report.failed_ids)}), duplicates dropped: {report.num_duplicates}")]
    if report.failed_ids:
        lines.append(f"failed ids (rerun the shard with --retry_errors): {_ids(report.failed_ids)}")
    if report.missing_shards:
        lines.append(f"missing shard files: {', '.join(report.missing_shards)}")
    if report.missing_ids is not None:
        lines.append(f"missing ids: {len(report.missing_ids)}" +
                     (f": {_ids(report.missing_ids)}" if report.missing_ids else ""))
        absent = {_shard_id(name) for name in report.missing_shards}
        for shard_id, ids in sorted(report.missing_by_shard.items()):
            state = "no file" if shard_id in absent else "file incomplete"
            lines.append(f"  shard {shard_id} of {report.num_shards} ({state}): {len(ids)} missing: {_ids(ids)}; "
                         f"rerun it with --num_shards {report.num_shards} --shard_id {shard_id}")
    elif report.missing_shards:
        lines.append("missing ids: unknown (give the run's --test_dataset_name and data flags to list them)")
    if report.extra_ids:
        lines.append(f"ids not in the dataset (other data flags than the run's?): {_ids(report.extra_ids)}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_path", required=True, help="the unsharded output path of the run")
    parser.add_argument("--num_shards", type=int, default=None,
                        help="shard count of the run (default: inferred from the shard files found)")
    g = parser.add_argument_group("expected ids (optional): the inference run's own data flags")
    g.add_argument("--test_dataset_name", "--dataset_name", dest="dataset_name", default=None,
                   help="dataset registry name; given, ids missing from the merged file are reported")
    g.add_argument("--data_path", default=None, help="local data file the run used")
    g.add_argument("--split", default=None, help="split the run used")
    g.add_argument("--max_samples", type=int, default=None, help="--max_samples the run used")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        expected_ids = None
        if args.dataset_name is not None:
            from data.registry import load_samples

            samples = load_samples(args.dataset_name, data_path=args.data_path, split=args.split,
                                   max_samples=args.max_samples)
            expected_ids = [sample.id for sample in samples]
        elif args.data_path or args.split or args.max_samples is not None:
            raise DataError("--data_path/--split/--max_samples need --test_dataset_name")
        report = merge_shards(args.output_path, args.num_shards, expected_ids)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_report(report))
    return 0 if report.complete else 1


if __name__ == "__main__":
    sys.exit(main())

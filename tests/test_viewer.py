"""The trajectory viewer (eval.viewer): the page's data, its escaping, and the page itself in headless Chromium."""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from eval import viewer
from eval.viewer_browser import HeadlessChromium, find_chromium, open_viewer

XSS = '<script>alert(1)</script><img src=x onerror="window.__pwned=1"> </script><!-- end'


def _turn(agent: int, round_number: int, answer: str | None, text: str | None = None, role: str = "debater",
          finish_reason: str = "stop", **extra) -> dict:
    if text is None:
        text = f"Agent {agent} thinks.\n\nThe answer is \\boxed{{{answer}}}." if answer else "I am not sure."
    return {"agent": agent, "role": role, "round": round_number, "messages": [{"role": "user", "content": "q"}],
            "text": text, "answer": answer, "prompt_tokens": 10 + round_number, "completion_tokens": 5,
            "finish_reason": finish_reason, **extra}


def _debate(qid: str, gt: str, rounds: list[list[str | None]], answer: str | None, query: str = "What is it?",
            texts: dict | None = None, **fields) -> dict:
    texts = texts or {}
    trajectory = [_turn(agent, r, a, texts.get((agent, r))) for r, answers in enumerate(rounds)
                  for agent, a in enumerate(answers)]
    return {"id": qid, "query": query, "gt": gt, "source": "Arith", "method": "llm_debate", "model": "scripted",
            "config": {"num_agents": 3, "num_rounds": len(rounds)}, "response": trajectory[-1]["text"],
            "answer": answer, "trajectory": trajectory,
            "token_stats": {"scripted": {"num_llm_calls": len(trajectory), "prompt_tokens": 100,
                                         "completion_tokens": 30}},
            "latency_s": 0.5, **fields}


@pytest.fixture()
def sample_files(tmp_path: Path) -> dict[str, Path]:
    """Two runs (a 3-agent debate and cot) and label.py-style labels for one question."""
    debate = [
        _debate("q1", "18", [["18", "20", "36"], ["18", "18", "18"]], "18"),  # two agents fixed: wrong -> right
        _debate("q2", "7", [["7", "7", "9"], ["9", "9", "9"]], "9"),  # error propagation: right -> wrong
        _debate("q3", "5", [["5", "4", None], ["5", "4", "5"]], "5", query=f"Add 2 and 3. {XSS}",
                texts={(0, 0): f"I write {XSS}\n\nSo \\boxed{{5}}.", (2, 1): "5, cut off"}),
        {"id": "q4", "query": "What is 1 + 1?", "gt": "2", "source": "Arith", "method": "llm_debate",
         "model": "scripted", "trajectory": [], "error": "EngineError: the server went away"},
    ]
    debate[2]["trajectory"][-1]["finish_reason"] = "length"
    cot = [{"id": qid, "query": f"Question {qid}", "gt": gt, "source": "Arith", "method": "cot", "model": "scripted",
            "response": f"\\boxed{{{answer}}}", "answer": answer,
            "trajectory": [_turn(0, 0, answer, role="solver")],
            "token_stats": {"scripted": {"num_llm_calls": 1, "prompt_tokens": 20, "completion_tokens": 8}}}
           for qid, gt, answer in (("q1", "18", "18"), ("q2", "7", "8"))]
    # label.py's verdict on agent 0's last answer in q2 (an LLM judge that disagrees with the rule).
    q2_last = debate[1]["trajectory"][3]
    labeled = [{"id": "q2", "query": "What is it?", "gt": "7", "solutions": [
        {"id": 1, "text": q2_last["text"], "steps": ["Agent 0 thinks.", "The answer is \\boxed{9}."],
         "is_correct": True, "answer": "9", "agent": 0, "role": "debater", "round": 1, "method": "llm_debate",
         "model": "scripted", "judge": "llm", "judge_detail": "the judge said so"}], "labels": [True]}]
    paths = {"debate": tmp_path / "llm_debate_infer.jsonl", "cot": tmp_path / "cot_infer.jsonl",
             "labeled": tmp_path / "labeled.jsonl"}
    for name, rows in (("debate", debate), ("cot", cot), ("labeled", labeled)):
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths


def _payload(files: dict[str, Path], **kwargs) -> dict:
    return viewer.build_payload([str(files["debate"]), str(files["cot"])], labeled=str(files["labeled"]),
                                num_workers=1, progress=False, **kwargs)


def _embedded(page: str) -> dict:
    match = re.search(r'<script id="viewer-data" type="application/json">(.*?)</script>', page, re.S)
    assert match, "no embedded data"
    return json.loads(match.group(1))


def test_page_data_grades_counts_switches_and_uses_labels(sample_files):
    payload = _payload(sample_files)
    questions = {(q["method"], q["id"]): q for q in payload["questions"]}
    assert [questions[("llm_debate", q)]["correct"] for q in ("q1", "q2", "q3", "q4")] == [True, False, True, False]
    assert [questions[("cot", q)]["correct"] for q in ("q1", "q2")] == [True, False]

    q1, q2, q3 = (questions[("llm_debate", q)] for q in ("q1", "q2", "q3"))
    assert q1["switches"] == {"wrong_to_right": 2, "right_to_wrong": 0, "transitions": 3}
    assert q1["changed"] and not q1["disagree"] and q1["votes"] == [["18", 3]]
    assert [a["unanimous"] for a in q1["agreement"]] == [False, True]
    # Agent 0's last turn in q2 is labeled correct (the label wins over the rule), so only agent 1 went right -> wrong.
    labeled_turn = q2["turns"][3]
    assert labeled_turn["correct"] is True and labeled_turn["judge"] == "label (llm)"
    assert labeled_turn["steps"] == ["Agent 0 thinks.", "The answer is \\boxed{9}."]
    assert q2["switches"] == {"wrong_to_right": 0, "right_to_wrong": 1, "transitions": 3}
    assert q3["disagree"] and q3["truncated"] and not q3["changed"]
    assert q3["turns"][0]["text"].startswith("I write <script>")
    # A solution without an answer is wrong, as label.py judges it; then agent 2 answered right: wrong -> right.
    assert [t["correct"] for t in q3["turns"][:3]] == [True, False, False]
    assert q3["turns"][2]["answer"] is None and q3["turns"][2]["judge_detail"] == "no_answer"
    assert q3["switches"]["wrong_to_right"] == 1
    assert q3["agreement"][0] == {"round": 0, "agents": 3, "majority": 1, "unanimous": False}

    debate_row, cot_row = payload["summary"]
    assert (debate_row["method"], debate_row["questions"], debate_row["failed"]) == ("llm_debate", 4, 1)
    assert debate_row["accuracy"] == 0.5 and cot_row["accuracy"] == 0.5
    assert (debate_row["wrong_to_right"], debate_row["right_to_wrong"]) == (3, 1)
    assert debate_row["agreement"][1]["unanimous"] == pytest.approx(2 / 3)  # q1 and q2 agree in round 1, q3 not
    assert debate_row["tokens_per_question"] == pytest.approx(3 * 130 / 4)  # the failed record counts 0 tokens
    assert cot_row["agreement"] == [] and cot_row["calls_per_question"] == 1
    assert payload["meta"]["labeled_turns"] == 1


def test_unknown_dataset_leaves_correctness_unknown(sample_files, tmp_path):
    rows = [json.loads(line) for line in sample_files["cot"].read_text().splitlines()]
    for row in rows:
        row["source"] = "SomethingElse"
    path = tmp_path / "other_infer.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    payload = viewer.build_payload([str(path)], progress=False)
    assert [q["correct"] for q in payload["questions"]] == [None, None]
    assert payload["summary"][0]["accuracy"] is None
    graded = viewer.build_payload([str(path)], dataset_name="Arith", num_workers=1, progress=False)
    assert [q["correct"] for q in graded["questions"]] == [True, False]


def test_embedded_data_cannot_close_the_script_or_open_a_comment(sample_files, tmp_path):
    out = tmp_path / "page.html"
    assert viewer.main([str(sample_files["debate"]), str(sample_files["cot"]), "--labeled",
                        str(sample_files["labeled"]), "--out", str(out), "--num_workers", "1"]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.lower().count("</script") == 2  # the data element's and the script's own closing tags
    assert "<!--" not in page and "alert(1)</" not in page and "<img" not in page
    assert "Content-Security-Policy" in page and "connect-src" not in page  # default-src 'none': no network
    data = _embedded(page)
    assert XSS in data["questions"][2]["query"]  # the text itself survives, escaped
    assert len(data["questions"]) == 6


def test_cli_errors_are_one_line(sample_files, tmp_path, capsys):
    from eval.common import run_cli

    for argv, expected in (([str(sample_files["labeled"])], "a labeled record"),
                           ([str(tmp_path / "missing.jsonl")], "no such file"),
                           ([str(sample_files["cot"]), "--dataset_name", "NoSuchSet"], "unknown dataset"),
                           ([str(sample_files["cot"]), "--labeled", str(sample_files["cot"])], "not a labeled record"),
                           ([str(sample_files["cot"]), "--prm_batch_size", "0"], "--prm_batch_size must be >= 1"),
                           ([str(sample_files["cot"]), "--prm", str(tmp_path)], "--prm")):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(viewer.main, argv + ["--out", str(tmp_path / "x.html")])
        assert exit_info.value.code == 2
        message = capsys.readouterr().err.strip()
        assert expected in message and "\n" not in message, message


def test_prm_scores_every_solution_step(sample_files, tiny_model_path, tmp_path):
    from prm.loading import build_prm

    build_prm(tiny_model_path, fix_llm=True, seed=3).save_pretrained(tmp_path / "prm")
    payload = _payload(sample_files, prm_path=str(tmp_path / "prm"), prm_device="cpu")
    solution_turns = [t for q in payload["questions"] for t in q["turns"] if t["solution"]]
    assert solution_turns and all(len(t["prm"]) == len(t["steps"]) > 0 for t in solution_turns)
    assert all(0.0 <= s <= 1.0 for t in solution_turns for s in t["prm"])
    labeled_turn = payload["questions"][1]["turns"][3]
    assert labeled_turn["steps"] == ["Agent 0 thinks.", "The answer is \\boxed{9}."]  # the labels' steps are scored


# ---------------------------------------------------------------------------------------------------
# In a real browser
# ---------------------------------------------------------------------------------------------------

CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium binary (scripts/setup.sh installs Debian's `chromium` with apt-get when "
                             "run as root; or set $CHROMIUM)")


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", head[16:24])


SET = ("(() => {{ const e = document.getElementById({id!r}); e.{prop} = {value}; "
       "e.dispatchEvent(new Event({event!r})); return true; }})()")


async def _set(browser, element_id: str, value, prop: str = "value", event: str = "change") -> None:
    await browser.evaluate(SET.format(id=element_id, prop=prop, value=json.dumps(value), event=event))


async def _matching(browser) -> int:
    return int(await browser.evaluate("document.getElementById('count').dataset.matching"))


@needs_chromium
async def test_page_in_headless_chromium(sample_files, tmp_path):
    out = tmp_path / "page.html"
    viewer.main([str(sample_files["debate"]), str(sample_files["cot"]), "--labeled", str(sample_files["labeled"]),
                 "--out", str(out), "--num_workers", "1"])
    async with HeadlessChromium(CHROMIUM, width=1400, height=1000) as browser:
        await open_viewer(browser, out)
        assert await _matching(browser) == 6
        assert await browser.evaluate("document.querySelectorAll('.qitem').length") == 6

        await _set(browser, "outcome", "correct")
        assert await _matching(browser) == 3
        await _set(browser, "outcome", "wrong")
        assert await _matching(browser) == 3
        await _set(browser, "method", "cot")
        assert await _matching(browser) == 1
        await _set(browser, "method", "")
        await _set(browser, "outcome", "all")
        await _set(browser, "f-r2w", True, prop="checked")
        assert await _matching(browser) == 1  # q2 of the debate
        await _set(browser, "f-r2w", False, prop="checked")
        await _set(browser, "f-disagree", True, prop="checked")
        assert await _matching(browser) == 1  # q3
        await _set(browser, "f-disagree", False, prop="checked")

        await _set(browser, "search", "alert(1)", event="input")
        await browser.wait_for("document.getElementById('count').dataset.matching === '1'")
        await browser.evaluate("document.querySelector('.qitem').click()")
        await browser.evaluate("document.querySelectorAll('#detail .turn details').forEach(d => d.open = true)")
        detail_text = await browser.evaluate("document.getElementById('detail').innerText")
        assert '<script>alert(1)</script><img src=x onerror="window.__pwned=1">' in detail_text
        assert await browser.evaluate("document.querySelectorAll('#detail script, #detail img').length") == 0
        assert await browser.evaluate("typeof window.__pwned") == "undefined"
        assert browser.dialogs == []

        shot = await browser.screenshot(tmp_path / "viewer.png")
        assert _png_size(shot) == (1400, 1000)
        assert browser.errors == []


@needs_chromium
async def test_ten_thousand_records_draw_lazily(tmp_path):
    rows = [_debate(f"q{i}", str(i % 50), [[str(i % 50), str(i % 7), "3"], [str(i % 50)] * 3], str(i % 50))
            for i in range(10_000)]
    path = tmp_path / "llm_debate_infer.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "big.html"
    viewer.main([str(path), "--out", str(out), "--num_workers", "1"])
    async with HeadlessChromium(CHROMIUM) as browser:
        seconds = await open_viewer(browser, out)
        assert seconds < 30
        assert await _matching(browser) == 10_000
        assert await browser.evaluate("document.querySelectorAll('.qitem').length") == 100  # one page of the list
        assert await browser.evaluate("document.querySelectorAll('#detail .turn').length") == 6  # one question
        await browser.evaluate("document.querySelector('#list .more').scrollIntoView()")
        await browser.wait_for("document.querySelectorAll('.qitem').length === 200")
        await _set(browser, "search", "q9999", event="input")
        await browser.wait_for("document.getElementById('count').dataset.matching === '1'")
        assert browser.errors == []


@needs_chromium
def test_browser_cli_screenshots_and_fails_on_page_errors(sample_files, tmp_path, capsys):
    from eval import viewer_browser

    page = tmp_path / "page.html"
    viewer.main([str(sample_files["debate"]), "--out", str(page), "--num_workers", "1"])
    shot = tmp_path / "shot.png"
    assert viewer_browser.main([str(page), "--screenshot", str(shot), "--width", "900", "--height", "700",
                                "--select", "1", "--expand"]) == 0
    assert _png_size(shot) == (900, 700)
    assert "4 of 4 questions" in capsys.readouterr().out

    broken = tmp_path / "broken.html"  # a page that logs an error and has no viewer data
    broken.write_text('<html><body><script>console.error("boom"); document.body.dataset.ready = "1";'
                      "</script></body></html>")
    assert viewer_browser.main([str(broken)]) == 1
    assert "page error: console: boom" in capsys.readouterr().err

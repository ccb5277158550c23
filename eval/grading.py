"""One home for answer extraction and answer comparison, reused by methods, labelling, rewards and eval.

Math answers are compared for equivalence, never by plain string match: cheap normalised-string and
exact numeric checks decide most pairs, and the rest go to `math-verify` (sympy underneath) under a
time limit. `grade_math_many` runs those symbolic checks in a process pool whose workers are killed
when an item overruns, because a sympy call stuck in C (say `2^{2^{100}}`) ignores signals.
"""
from __future__ import annotations

import logging
import math
import re
import signal
import string
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from data.answer_format import last_boxed
from eval.math_extraction import extract_math_answer

# ---------------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------------

def extract_short_answer(text: str) -> str | None:
    """Short text answer: "Answer: ..." / "answer is ..." when given, else the whole response."""
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed:
        return re.sub(r"^\\text\{(.*)\}$", r"\1", boxed)
    found = re.findall(r"(?:final answer|answer)\s*(?:is|:)\s*(.+)", text, flags=re.IGNORECASE)
    found = [f.strip().strip("*").strip() for f in found]
    found = [f for f in found if f]
    if found:
        return found[-1]
    return text.strip()


def extract_answer(text: str, task_type: str, num_choices: int = 4, *,
                   choices: Sequence[str] | None = None) -> str | None:
    """Dispatch to the extractor of `task_type` ("math", "multiple_choice" or "short_answer").

    With `choices` (the options' texts), a multiple-choice answer given as an option's text maps to its letter.
    """
    if task_type == "math":
        return extract_math_answer(text)
    if task_type == "multiple_choice":
        # Imported here: eval.choice builds on this module's normalisation.
        from eval.choice import extract_choice_letter

        if choices:
            return extract_choice_letter(text, len(choices), choices=list(choices))
        return extract_choice_letter(text, num_choices)
    if task_type == "short_answer":
        return extract_short_answer(text)
    raise ValueError(f"unknown task type {task_type!r}")


# ---------------------------------------------------------------------------------------------------
# Normalisation
# ---------------------------------------------------------------------------------------------------

# A unit or a word after a number ("cm", "in.", "m^2", "cm^{3}", "dollars"). One letter alone counts only
# as an SI unit: "3 x" is a product, not three of a unit called x.
_UNIT_WORD = r"(?:[a-zA-Z][a-zA-Z.]+|[mgshLJNVWK])(?:\^\{?\d\}?)?"
_UNIT_WORDS = rf"{_UNIT_WORD}(?:\s+{_UNIT_WORD})*"


def _unwrap(s: str) -> str:
    """Remove the wrappers a final answer comes in: $..$, \\(..\\), \\[..\\], \\boxed{..}."""
    s = s.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left):len(s) - len(right)].strip()
    if s.startswith(("\\boxed", "\\fbox")):
        inner = last_boxed(s)
        if inner is not None:
            s = inner
    return re.sub(r"(?<!\.)\.$", "", s.strip()).strip()  # a sentence's full stop, not an ellipsis


def clean_math_answer(answer: str, strip_assignment: bool = True) -> str:
    """The answer with presentation removed but LaTeX structure kept (what the symbolic check parses).

    Drops wrappers, \\text{} units after a number, currency signs, degree marks, percent signs'
    escaping, and (unless `strip_assignment` is False) "x =" in front of a single value.
    """
    s = _unwrap(answer)
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox|textit|mathcal|mathbf|mathit|operatorname)\s*\{\s*([^{}]*?)\s*\}",
               r" \1 ", s).strip()
    s = re.sub(r"\{\s+", "{", re.sub(r"\s+\}", "}", s))  # "\\frac{1}{\\mathrm{e}}" -> "\\frac{1}{e}", not "{ e }"
    s = re.sub(r"\s+(?=\^)", "", s)  # "\text{cm}^2" -> "cm^2", not "cm ^2"
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", s)
    # Thin spaces between digit groups ("11,\\! 111", "10\\,000") separate thousands, not list items.
    s = re.sub(r"(?<=\d)(,?)\s*\\[,;:]\s*(?=\d{3}(?!\d))", r"\1", s)
    s = re.sub(r"(?<=\d),?\s*\\!\s*(?=\d)", "", s)  # "\\!" only ever tightens digit groups (56,\\!01,\\!78)
    s = re.sub(r"(?<!\\)\\[!,;:]|(?<!\\)\\ (?=\S)|~", " ", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|°|\s*\bdegrees?\b", "", s)
    s = s.replace("\\$", "").replace("$", "")
    s = re.sub(r"^\+(?=\s*\d)", "", s.strip()).rstrip(",;").strip()  # "+11", "\\frac{1}{3},"
    s = re.sub(r"\{,\}", ",", s)
    if strip_assignment:  # "x = 3", "x \\in [1,2]"
        s = re.sub(r"^\s*(?:\\?[a-zA-Z]+(?:_\{?\w+\}?)?)\s*(?:=|\\in\b)\s*(?=[^=]+$)", "", s)
    s = re.sub(r"(?<=\d)\s+(?:and|or)\s+(?=-?\d)", ", ", s)  # "12 and 13": two answers
    s = re.sub(r"\s*\b(?:percent|per cent)$", "%", s)
    s = _two_sided_inequality_as_interval(s)
    s = _array_as_pmatrix(s)
    number = r"-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*\\?%)?"
    # A unit glued to its number must be a word ("10weeks"); "3ab" and "2x" are products.
    unit_match = re.fullmatch(rf"({number})(?:\s+{_UNIT_WORDS}|[a-zA-Z]{{4,}})", s.strip())
    if unit_match:  # "10 cm", "5 dollars", "12 because ..." -- words after a number are units or prose
        s = unit_match.group(1)
    return " ".join(s.split())


_BOUND = r"-?(?:\d+(?:\.\d+)?|\\infty|\\frac\{-?\d+\}\{\d+\})"
_LESS = {"<": ("(", ")"), "\\lt": ("(", ")"), "\\le": ("[", "]"), "\\leq": ("[", "]"), "\\leqslant": ("[", "]"),
         "≤": ("[", "]")}


def _two_sided_inequality_as_interval(s: str) -> str:
    """`-2 \\le x \\le 7` -> `[-2,7]`, `0 < x \\leq 1` -> `(0,1]`: the interval it describes."""
    less = "|".join(re.escape(k) for k in sorted(_LESS, key=len, reverse=True))
    m = re.fullmatch(rf"\s*({_BOUND})\s*({less})\s*[a-zA-Z]\s*({less})\s*({_BOUND})\s*", s)
    if not m:
        return s
    return f"{_LESS[m.group(2)][0]}{m.group(1)},{m.group(4)}{_LESS[m.group(3)][1]}"


def _array_as_pmatrix(s: str) -> str:
    """`\\left[\\begin{array}{cc} 1 & 2 \\end{array}\\right]` is the matrix `\\begin{pmatrix} 1 & 2 \\end{pmatrix}`."""
    m = re.fullmatch(r"\s*[\[(]?\s*\\begin\{array\}\{[^{}]*\}(.*)\\end\{array\}\s*[\])]?\s*", s, flags=re.DOTALL)
    return f"\\begin{{pmatrix}}{m.group(1)}\\end{{pmatrix}}" if m else s


def normalize_math(answer: str) -> str:
    """A canonical string for voting and cheap equality: spacing, wrappers, units, separators, zeros."""
    s = clean_math_answer(answer)
    s = s.replace("\\%", "%")
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)  # \frac12
    s = re.sub(r"\\(begin|end)\{[bvBV]?matrix\}", r"\\\1{pmatrix}", s)
    # Keep a space only where deleting it would merge a command with the next letter ("\pi r").
    s = re.sub(r"(\\[a-zA-Z]+)\s+(?=[a-zA-Z])", r"\1{}", s)
    s = _mixed_number_as_fraction(s)
    is_list = re.search(r"\d,\s+\d", s) is not None  # "2, 100" lists two numbers; "2,100" is 2100
    s = re.sub(r"\s+", "", s)
    s = re.sub(r"^\(([A-Za-z])\)$", r"\1", s)  # "(C)" -> "C" for MATH's multiple-choice items
    if not is_list and re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?%?", s):
        s = s.replace(",", "")
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)
    if re.fullmatch(r"-?\d+\.\d+%?", s):
        pct = s.endswith("%")
        s = s.rstrip("%").rstrip("0").rstrip(".") + ("%" if pct else "")
    if s == "-0":
        s = "0"
    return s


def _mixed_number_as_fraction(s: str) -> str:
    """"1 1/2", "1\\frac{1}{2}" and "-2 \\frac34" as one improper fraction; removing the space would
    otherwise read "1 1/2" as 11/2."""
    m = re.fullmatch(r"(-?)(\d+)[ \t]*(?:\\frac\s*\{?\s*(\d+)\s*\}?\s*\{?\s*(\d+)\s*\}?|[ \t](\d+)\s*/\s*(\d+))"
                     r"(\s*\\?%)?", s.strip())
    if not m:
        return s
    numerator, denominator = int(m.group(3) or m.group(5)), int(m.group(4) or m.group(6))
    if denominator == 0 or numerator >= denominator:
        return s
    value = int(m.group(2)) + Fraction(numerator, denominator)
    percent = "%" if m.group(7) else ""
    return f"{m.group(1)}\\frac{{{value.numerator}}}{{{value.denominator}}}{percent}"


def _as_number(normalized: str) -> tuple[Fraction, bool] | None:
    """(exact value, is_percent) for a normalised plain number, decimal or simple fraction; else None."""
    s = normalized
    percent = s.endswith("%")
    s = s.rstrip("%")
    m = re.fullmatch(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}", s)
    if m:
        num, den = int(m.group(2)), int(m.group(3))
        if den == 0:
            return None
        value = Fraction(num, den)
        return (-value if m.group(1) else value), percent
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)/(\d+)", s)
    if m:
        den = int(m.group(2))
        return (Fraction(m.group(1)) / den, percent) if den else None
    if re.fullmatch(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", s) and len(s) < 400:
        try:
            return Fraction(s), percent
        except (ValueError, ZeroDivisionError):
            return None
    return None


def normalize_text(answer: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, single spaces."""
    s = answer.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


_PUNCTUATION = frozenset(string.punctuation)


def answer_key(answer: str | None, task_type: str) -> str | None:
    """The form under which answers are counted as the same vote."""
    if answer is None or not str(answer).strip():
        return None
    if task_type == "math":
        key = normalize_math(str(answer))
        number = _as_number(key)
        if number is not None and not number[1]:
            # 0.5, 1/2 and \frac{1}{2} are one vote.
            value = number[0]
            return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
        return key
    if task_type == "multiple_choice":
        return str(answer).strip().upper()
    return normalize_text(str(answer))


def majority_vote(answers: Sequence[str | None], task_type: str) -> str | None:
    """Most common answer by `answer_key`; ties go to the answer seen first; None if no answer at all.

    Returns the first original answer string of the winning group, so what is reported is what an
    agent wrote.
    """
    keyed = [(answer_key(a, task_type), a) for a in answers]
    keyed = [(k, a) for k, a in keyed if k is not None]
    if not keyed:
        return None
    counts = Counter(k for k, _ in keyed)
    best = max(counts.values())
    for key, original in keyed:  # first-seen order breaks ties deterministically
        if counts[key] == best:
            return original
    return None


def vote_counts(answers: Iterable[str | None], task_type: str) -> dict[str, int]:
    """How many answers fall under each `answer_key`."""
    return dict(Counter(k for k in (answer_key(a, task_type) for a in answers) if k is not None))


# ---------------------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------------------

# Why a pair was scored as it was; the per-sample scores files record these.
REASON_STRING_MATCH = "string_match"
REASON_NUMERIC_EQUAL = "numeric_equal"
REASON_NUMERIC_MISMATCH = "numeric_mismatch"
REASON_SYMBOLIC_EQUAL = "symbolic_equal"
REASON_NOT_EQUAL = "not_equal"
REASON_NO_ANSWER = "no_answer"
REASON_NO_REFERENCE = "no_reference"
REASON_PARSE_ERROR = "parse_error"
REASON_TIMEOUT = "timeout"
REASON_GRADER_ERROR = "grader_error"

_NUMERIC_REL_TOL = 1e-6


@dataclass(frozen=True)
class Grade:
    """The verdict on one prediction: `correct`, and `reason` saying which check decided it."""

    correct: bool
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"correct": self.correct, "reason": self.reason}
        if self.detail:
            out["detail"] = self.detail
        return out


def _decimal_places(normalized: str) -> int | None:
    """Digits after the point of a number written as a decimal ("3.14" -> 2); None for integers and fractions."""
    m = re.fullmatch(r"-?\d*\.(\d+)%?", normalized)
    return len(m.group(1)) if m else None


def _numbers_match(pred: tuple[Fraction, bool], pred_places: int | None,
                   gt: tuple[Fraction, bool], gt_places: int | None) -> bool:
    """Exact equality of values; the one tolerance is a reference written as a rounded decimal.

    A reference "3.14" accepts any prediction at least as precise that rounds to it (3.1416, 157/50),
    never a coarser one (3.1). An integer or fraction reference needs the exact value: 12345678 is not
    12345679 and 1/3 is not 0.3333. A percentage may be written as its number or as the fraction
    (50% = 50 = 0.5), nothing else.
    """
    (pred_value, pred_pct), (gt_value, gt_pct) = pred, gt
    if pred_pct == gt_pct:
        pairs = [(pred_value, gt_value, gt_places)]
    elif gt_pct:
        pairs = [(pred_value, gt_value, gt_places), (pred_value, gt_value / 100, _shifted(gt_places))]
    else:
        pairs = [(pred_value, gt_value, gt_places), (pred_value / 100, gt_value, gt_places)]
    for pred_reading, gt_reading, places in pairs:
        if pred_reading == gt_reading:
            return True
        if places and (pred_places is None or pred_places >= places):
            if abs(pred_reading - gt_reading) <= Fraction(1, 2 * 10 ** places):
                return True
        if places is None and pred_places and not _terminates(gt_reading) and _rounds_to(pred_reading, gt_reading,
                                                                                            pred_places):
            return True
    return False


def _terminates(value: Fraction) -> bool:
    """Whether a fraction has a finite decimal expansion (1/4 does, 1/3 does not)."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


# A decimal stands for a value it cannot write exactly (1/3, sqrt(2), pi) only when it shows this many
# significant digits: 0.3333 and 1.414 do, 0.33 and 3.1 do not.
MIN_SIGNIFICANT_DIGITS = 4


def _rounds_to(decimal: Fraction | float, exact: Fraction | float, places: int) -> bool:
    """`decimal`, written with `places` digits after the point, is `exact` rounded or truncated there."""
    digits = f"{abs(float(decimal)):.{places}f}".replace(".", "").lstrip("0")
    if len(digits) < MIN_SIGNIFICANT_DIGITS:
        return False
    return abs(Fraction(decimal) - Fraction(exact)) <= Fraction(1, 10 ** places)


def _shifted(places: int | None) -> int | None:
    return None if places is None else places + 2


def _as_time(normalized: str) -> int | None:
    """Seconds after midnight of a clock time ("20:34", "8:34pm", "20:34:00"); None for anything else."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?((?i:[ap]\.?m\.?))?", normalized)
    if not m:
        return None
    hours, minutes, seconds = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    suffix = (m.group(4) or "").lower().replace(".", "")
    if minutes > 59 or seconds > 59 or hours > (12 if suffix else 24):
        return None
    if suffix:
        hours = hours % 12 + (12 if suffix == "pm" else 0)
    return hours * 3600 + minutes * 60 + seconds


_INFINITY = {"\\infty": math.inf, "+\\infty": math.inf, "-\\infty": -math.inf, "\\infinity": math.inf}


def _element_value(text: str) -> tuple[Fraction | float, int | None] | None:
    """(value, decimal places) of one entry of a tuple, interval, set or matrix."""
    if text in _INFINITY:
        return _INFINITY[text], None
    number = _as_number(text)
    return (number[0], _decimal_places(text)) if number is not None and not number[1] else None


def _entries_match(pred: tuple[Fraction | float, int | None], gt: tuple[Fraction | float, int | None]) -> bool:
    if isinstance(pred[0], float) or isinstance(gt[0], float):  # infinities
        return pred[0] == gt[0]
    return _numbers_match((pred[0], False), pred[1], (gt[0], False), gt[1])


def _as_structure(normalized: str) -> tuple[str, list[list[Fraction | float]]] | None:
    """("set" | "(]"-style brackets | "matrix", rows of numbers) for tuples, intervals, sets and matrices
    whose entries are all plain numbers; None for anything else."""
    s = normalized
    m = re.fullmatch(r"\\begin\{pmatrix\}(.*)\\end\{pmatrix\}", s)
    if m:
        rows = [row.split("&") for row in re.split(r"\\\\", m.group(1)) if row]
        kind = "matrix"
    elif s.startswith("\\{") and s.endswith("\\}"):
        rows, kind = [s[2:-2].split(",")], "set"
    elif len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and "," in s:
        rows, kind = [s[1:-1].split(",")], s[0] + s[-1]
    else:
        return None
    values = [[_element_value(cell) for cell in row] for row in rows]
    if not values or any(v is None for row in values for v in row):
        return None
    return kind, values  # type: ignore[return-value]


def _structures_equal(pred: tuple[str, list], gt: tuple[str, list]) -> bool | None:
    """Entry-wise verdict for two number structures; None when their kinds differ in a way only
    a symbolic check should judge (a tuple against a set)."""
    (kind_p, rows_p), (kind_g, rows_g) = pred, gt
    if (kind_p == "set") != (kind_g == "set") or (kind_p == "matrix") != (kind_g == "matrix"):
        return None
    if kind_p == "set":
        left, right = sorted(rows_p[0]), sorted(rows_g[0])
        return len(left) == len(right) and all(_entries_match(x, y) for x, y in zip(left, right))
    if kind_p != kind_g or [len(r) for r in rows_p] != [len(r) for r in rows_g]:
        return False
    return all(_entries_match(x, y) for rp, rg in zip(rows_p, rows_g) for x, y in zip(rp, rg))


def _text_answer(gt: str) -> str | None:
    """The words of a reference written as \\text{...} with no digits (MATH's "Monday", "(C)", "odd")."""
    m = re.fullmatch(r"\\(?:text|textbf|mbox|mathrm)\{([^{}]*)\}", _unwrap(gt))
    if m and re.search(r"[A-Za-z]", m.group(1)) and not re.search(r"\d", m.group(1)):
        return normalize_text(m.group(1))
    return None


def quick_grade_math(pred: str | None, gt: str | None) -> Grade | None:
    """The cheap checks: normalised strings, exact numbers, number tuples/intervals/sets/matrices,
    and word answers. None when only a symbolic check can tell."""
    if gt is None or not str(gt).strip():
        return Grade(False, REASON_NO_REFERENCE)
    if pred is None or not str(pred).strip():
        return Grade(False, REASON_NO_ANSWER)
    norm_pred, norm_gt = normalize_math(str(pred)), normalize_math(str(gt))
    if norm_pred == norm_gt or (norm_pred.lower() == norm_gt.lower() and re.fullmatch(r"[A-Za-z]{2,}", norm_gt)):
        return Grade(True, REASON_STRING_MATCH)
    if norm_pred.count("'") != norm_gt.count("'"):
        return Grade(False, REASON_NOT_EQUAL)  # E' is not E: the parser would drop the prime
    words = _text_answer(str(gt))
    if words is not None:
        same = normalize_text(clean_math_answer(str(pred))) == words
        return Grade(same, REASON_STRING_MATCH if same else REASON_NOT_EQUAL)
    num_pred, num_gt = _as_number(norm_pred), _as_number(norm_gt)
    if num_pred is not None and num_gt is not None:
        same = _numbers_match(num_pred, _decimal_places(norm_pred), num_gt, _decimal_places(norm_gt))
        return Grade(True, REASON_NUMERIC_EQUAL) if same else Grade(False, REASON_NUMERIC_MISMATCH)
    time_pred, time_gt = _as_time(norm_pred), _as_time(norm_gt)
    if time_pred is not None and time_gt is not None:
        return Grade(True, REASON_NUMERIC_EQUAL) if time_pred == time_gt else Grade(False, REASON_NUMERIC_MISMATCH)
    struct_pred, struct_gt = _as_structure(norm_pred), _as_structure(norm_gt)
    if struct_pred is not None and struct_gt is not None:
        verdict = _structures_equal(struct_pred, struct_gt)
        if verdict is not None:
            return Grade(verdict, REASON_NUMERIC_EQUAL if verdict else REASON_NUMERIC_MISMATCH)
    return None


class _SoftTimeout(Exception):
    pass


def _raise_soft_timeout(signum, frame):
    raise _SoftTimeout()


class _DropTimeoutWarning(logging.Filter):
    # math-verify warns once that its own signal timeout is off; ours is on, around the whole check.
    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


_QUIET = _DropTimeoutWarning()
for _name in ("math_verify.parser", "math_verify.grader", "math_verify"):
    logging.getLogger(_name).addFilter(_QUIET)

_parser_warm = False


def _warm_parser() -> None:
    """Build math-verify's LaTeX parser once (~1 s) outside any time limit.

    An interrupt during that lazy set-up leaves the parser broken for the rest of the process, and the
    set-up time is no fault of the item being graded.
    """
    global _parser_warm
    if not _parser_warm:
        from math_verify import parse, verify

        verify(parse("$\\frac{1}{2}$", parsing_timeout=None), parse("$0.5$", parsing_timeout=None),
               timeout_seconds=None)
        _parser_warm = True


_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)\b")
_DEGREES = re.compile(r"(\d+(?:\.\d+)?)\s*\^\s*\{?\s*\\circ\s*\}?")


def symbolic_form(answer: str, strip_assignment: bool = True) -> str:
    """The answer as LaTeX for math-verify: presentation removed, shorthand spelled out
    (`\\sqrt[3]2`, `\\sqrt2`, `\\frac12`), and degrees inside trigonometric functions in radians
    (elsewhere "30^\\circ" is just 30, as answers to "what angle" questions write it)."""
    if _TRIG.search(answer):
        answer = _DEGREES.sub(r"(\\frac{\1\\pi}{180})", answer)
    s = clean_math_answer(answer, strip_assignment)
    s = re.sub(r"\\sqrt\s*(\[[^\]]*\])?\s*([0-9a-zA-Z])", r"\\sqrt\1{\2}", s)
    s = re.sub(r"\\frac\s*([0-9a-zA-Z])\s*([0-9a-zA-Z])", r"\\frac{\1}{\2}", s)
    return s


def _symbolic_equal(pred: str, gt: str) -> Grade:
    """math-verify equivalence, then the imaginary-unit reading of `i`, then a numeric comparison."""
    import sympy
    from math_verify import parse, verify

    # math-verify's own signal timeouts would cancel ours (one ITIMER_REAL per process): turn them off.
    gold = parse(f"${symbolic_form(gt)}$", parsing_timeout=None)
    target = parse(f"${symbolic_form(pred)}$", parsing_timeout=None)
    parsed = (sympy.Basic, sympy.MatrixBase)
    gold_ok, target_ok = any(isinstance(x, parsed) for x in gold), any(isinstance(x, parsed) for x in target)
    if not gold_ok or not target_ok:
        which = "reference" if not gold_ok else "prediction"
        return Grade(False, REASON_PARSE_ERROR, f"math-verify could not parse the {which}")
    if verify(gold, target, timeout_seconds=None):
        return Grade(True, REASON_SYMBOLIC_EQUAL)
    if "=" in pred and "=" in gt:
        # Two equations of one line or curve ("y = -x/2 + 3/4" and "2x + 4y - 3 = 0"): compare them whole.
        equations = (parse(f"${symbolic_form(gt, False)}$", parsing_timeout=None),
                     parse(f"${symbolic_form(pred, False)}$", parsing_timeout=None))
        if verify(*equations, timeout_seconds=None):
            return Grade(True, REASON_SYMBOLIC_EQUAL)
    if _equal_with_imaginary_unit(gold[0], target[0]):
        return Grade(True, REASON_SYMBOLIC_EQUAL)
    if _sympy_numeric_equal(gold[0], target[0], _decimal_places(normalize_math(pred))):
        return Grade(True, REASON_NUMERIC_EQUAL)
    if _number_lists_equal(gold[0], target[0], pred):
        return Grade(True, REASON_NUMERIC_EQUAL)
    return Grade(False, REASON_NOT_EQUAL)


def _equal_with_imaginary_unit(gold: object, target: object) -> bool:
    """`i(2-i)` against `1+2i`: the parser reads `i` as a variable; in an answer it is the imaginary unit."""
    import sympy

    if not (isinstance(gold, sympy.Expr) and isinstance(target, sympy.Expr)):
        return False
    names = {str(x) for x in gold.free_symbols | target.free_symbols}
    if "i" not in names or names - {"i"}:
        return False
    unit = {x: sympy.I for x in gold.free_symbols | target.free_symbols}
    difference = sympy.expand(gold.subs(unit) - target.subs(unit))
    return difference == 0


def _number_lists_equal(gold: object, target: object, pred: str) -> bool:
    """Lists of numbers ("1/3, 1.732, 3.1416" against "\\frac13, \\sqrt3, \\pi"), entry by entry, each
    decimal entry judged to its own precision; sets in order of value."""
    import sympy

    kinds = (sympy.FiniteSet, sympy.Tuple)
    if not (isinstance(gold, kinds) and isinstance(target, kinds)) or type(gold) is not type(target):
        return False
    gold_items, target_items = list(gold.args), list(target.args)
    texts = [t.strip() for t in re.split(r",(?![^{(\[]*[})\]])", clean_math_answer(pred))]
    if not (len(gold_items) == len(target_items) == len(texts)) or not all(
            isinstance(x, sympy.Expr) and x.is_number and x.is_real for x in gold_items + target_items):
        return False
    # The parser reorders a set's items: pair each item with the text it came from by value.
    written = [(_as_number(normalize_math(t)), _decimal_places(normalize_math(t))) for t in texts]
    places = {item: next((p for number, p in written if number and float(number[0]) == float(item)), None)
              for item in target_items}
    if isinstance(gold, sympy.FiniteSet):
        gold_items = sorted(gold_items, key=lambda x: float(x))
        target_items = sorted(target_items, key=lambda x: float(x))
    return all(g == t or _sympy_numeric_equal(g, t, places.get(t)) for g, t in zip(gold_items, target_items))


def _sympy_numeric_equal(gold: object, target: object, target_places: int | None = None) -> bool:
    """Both values are plain numbers (pi, sqrt(2), 3.14159...) and agree to the numeric tolerance, or the
    prediction is a decimal of `target_places` places that is the reference rounded or truncated there."""
    import sympy

    if not (isinstance(gold, sympy.Expr) and isinstance(target, sympy.Expr)):
        return False
    if not (gold.is_number and target.is_number):
        return False
    if gold.is_rational and target.is_rational:
        return False  # exact values: equal only exactly, and math-verify has already said they are not
    if any(v.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo) for v in (gold, target)):
        return False
    try:
        a, b = complex(sympy.N(gold, 20)), complex(sympy.N(target, 20))
    except (TypeError, ValueError):
        return False
    if abs(a - b) <= _NUMERIC_REL_TOL * max(abs(a), abs(b)) + 1e-12:
        return True
    if target_places and a.imag == 0 and b.imag == 0:
        return _rounds_to(Fraction(str(sympy.Float(target, 30))), Fraction(str(sympy.N(gold, 30))), target_places)
    return False


_EXPONENT = re.compile(r"\^\s*(?:\{((?:[^{}]|\{[^{}]*\})*)\}|(\d+))")


def _too_large_to_evaluate(latex: str) -> bool:
    """Towers like 2^{2^{100}}, exponents of millions, huge factorials: sympy would evaluate them in C
    for hours, out of reach of any signal, so they are refused up front."""
    for braced, bare in _EXPONENT.findall(latex):
        exponent = braced or bare
        digit_runs = [len(d) for d in re.findall(r"\d+", exponent)]
        if any(n >= 7 for n in digit_runs) or ("^" in exponent and any(n >= 3 for n in digit_runs)):
            return True
    return bool(re.search(r"\d{5,}\s*!", latex))


def _guarded_symbolic_equal(pred: str, gt: str) -> Grade:
    if _too_large_to_evaluate(pred) or _too_large_to_evaluate(gt):
        return Grade(False, REASON_GRADER_ERROR, "expression too large for a symbolic check")
    try:
        return _symbolic_equal(pred, gt)
    except _SoftTimeout:
        raise
    except RecursionError:
        return Grade(False, REASON_GRADER_ERROR, "RecursionError")
    except Exception as error:  # noqa: BLE001 - a grader failure must score the sample, not stop the run
        return Grade(False, REASON_GRADER_ERROR, f"{type(error).__name__}: {str(error)[:200]}")


def grade_math(pred: str | None, gt: str | None, timeout_s: float = 5.0) -> Grade:
    """Grade one math answer in this process: cheap checks, then math-verify within `timeout_s`.

    The limit is a SIGALRM timer: it applies on the main thread only and cannot interrupt sympy
    while it is inside C code (a huge integer power); `grade_math_many` enforces a hard limit by
    killing worker processes. A failure inside the grader scores the answer as incorrect with the
    reason, never raises.
    """
    quick = quick_grade_math(pred, gt)
    if quick is not None:
        return quick
    _warm_parser()
    use_timer = bool(timeout_s and timeout_s > 0) and threading.current_thread() is threading.main_thread()
    previous = None
    if use_timer:
        previous = signal.signal(signal.SIGALRM, _raise_soft_timeout)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return _guarded_symbolic_equal(str(pred), str(gt))
    except _SoftTimeout:
        return Grade(False, REASON_TIMEOUT, f"symbolic check exceeded {timeout_s:g}s")
    finally:
        if use_timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def math_equal(pred: str | None, gt: str | None, timeout_s: float = 5.0) -> bool:
    """True when `pred` is mathematically equivalent to the reference `gt` (see `grade_math`)."""
    return grade_math(pred, gt, timeout_s).correct


def _pool_worker_grade(pred: str, gt: str) -> tuple[bool, str, str]:
    # No timer in workers: the pool kills a worker that overruns, which also discards any state an
    # interrupted sympy or parser call would have left half-built.
    grade = _guarded_symbolic_equal(pred, gt)
    return grade.correct, grade.reason, grade.detail


def grade_math_many(pairs: Sequence[tuple[str | None, str | None]], timeout_s: float = 5.0,
                    num_workers: int | None = None, progress: bool = False) -> list[Grade]:
    """Grade many (prediction, reference) pairs: cheap checks here, symbolic checks in a process pool.

    A worker still busy with one item after `timeout_s` seconds is killed and replaced, and that item
    is scored as a timeout; the other items are unaffected.
    """
    import os

    grades: list[Grade | None] = [quick_grade_math(pred, gt) for pred, gt in pairs]
    pending = [i for i, g in enumerate(grades) if g is None]
    if pending:
        workers = max(1, min(num_workers or os.cpu_count() or 1, len(pending)))
        symbolic = _symbolic_in_pool([pairs[i] for i in pending], timeout_s, workers, progress)
        for index, grade in zip(pending, symbolic):
            grades[index] = grade
    return [g for g in grades if g is not None]


def _symbolic_in_pool(pairs: Sequence[tuple[str | None, str | None]], timeout_s: float, workers: int,
                      progress: bool) -> list[Grade]:
    from concurrent.futures import TimeoutError as FutureTimeout

    from pebble import ProcessExpired, ProcessPool
    from tqdm import tqdm

    _warm_parser()  # workers are forked from here, so they start with the parser built
    limit = timeout_s if timeout_s and timeout_s > 0 else None
    results: list[Grade] = []
    with ProcessPool(max_workers=workers, initializer=_warm_parser) as pool:
        futures = [pool.schedule(_pool_worker_grade, args=(str(p), str(g)), timeout=limit) for p, g in pairs]
        for future in tqdm(futures, desc="symbolic checks", unit="item", disable=not progress):
            try:
                correct, reason, detail = future.result()
                results.append(Grade(correct, reason, detail))
            except FutureTimeout:
                results.append(Grade(False, REASON_TIMEOUT, f"symbolic check exceeded {timeout_s:g}s"))
            except ProcessExpired as error:
                results.append(Grade(False, REASON_GRADER_ERROR, f"grader process died (exit code {error.exitcode})"))
            except Exception as error:  # noqa: BLE001 - e.g. an unpicklable result; score it, keep going
                results.append(Grade(False, REASON_GRADER_ERROR, f"{type(error).__name__}: {str(error)[:200]}"))
    return results


def _references(gold: str | Sequence[str]) -> list[str]:
    return [gold] if isinstance(gold, str) else [str(g) for g in gold]


def exact_match(pred: str | None, gold: str | Sequence[str]) -> float:
    """SQuAD exact match: 1.0 when the normalised prediction equals any normalised reference."""
    pred_norm = normalize_text(pred or "")
    return float(any(pred_norm == normalize_text(g) for g in _references(gold)))


def _f1_single(pred: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_text(pred).split(), normalize_text(gold).split()
    if not pred_tokens or not gold_tokens:
        # SQuAD 2.0's rule: an empty answer is right only against an empty reference.
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision, recall = num_same / len(pred_tokens), num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(pred: str | None, gold: str | Sequence[str]) -> float:
    """SQuAD token F1 of the normalised bags of words, the best over the references."""
    refs = _references(gold)
    return max((_f1_single(pred or "", g) for g in refs), default=0.0)

"""Multiple-choice answers: the option letter a response finally chooses, and its grade.

A response usually mentions several letters while it reasons ("it can't be A or B", "(A) cannot be right")
and then states one. The extractor therefore works in tiers and takes, within the first tier that has any,
the last letter of that tier:

1. stated choices: an answer word with a link ("Answer: $B$", "the answer is for sure D", "Réponse : C",
   "答案是C"), `\\boxed{C}`, `<answer>C</answer>`, "I choose C", "That leaves (D)", "it must be D",
   "C is the correct option";
2. the letter that opens the response or its lines ("D. it can't be A or B", "B) Paracetamol"), when only
   one letter does (lines "A) ... B) ..." restate the options);
3. letters in parentheses or named as an option ("(C)", "option C") that no negation, comparison or question
   surrounds;
4. the text of exactly one option, when the options' texts are given;
5. a capital letter ending a clause ("So, B.") under the same conditions as 3.

A letter must be one of the first `num_choices`; "a" and "I" as English words are not letters; a letter
followed by a negative verdict ("A is wrong") is never the answer.
"""
from __future__ import annotations

import bisect
import re
import string
import unicodedata
from collections.abc import Callable, Sequence

from eval.grading import (
    REASON_NO_ANSWER,
    REASON_NO_REFERENCE,
    REASON_NOT_EQUAL,
    REASON_STRING_MATCH,
    Grade,
)

# Words that introduce a stated answer, in the languages multilingual suites prompt in (simple-evals'
# MULTILINGUAL_ANSWER_REGEXES, lighteval's translation literals), and the words that link them to the letter.
_ANSWER_WORDS = (r"answer|option|choice|alternative|réponse|reponse|respuesta|opción|opcion|risposta|opzione|"
                 r"resposta|antwort|antwoord|jawaban|jibu|ответ|cevap|odpowiedź|svar|đáp án|答案|正确答案|答え|"
                 r"回答|解答|正解|答|정답|답변|답|उत्तर|উত্তর|الإجابة|الجواب|إجابة")
_LINK = (r"(?:\s*[:=]|\s+[-–—]\s|\s+(?:is|was|would\s+be|must\s+be|should\s+be|will\s+be|has\s+to\s+be|"
         r"seems\s+to\s+be|remains|est|es|ist|é|è|är|er)\b:?|\s*(?:应该是|应该选|应选|是|为|為|选|は|는|은|이))")
# Up to four words between an answer word and its link ("the answer to this question is", "respuesta
# correcta es"), but never a list of options ("Answer choices: A) ...") or a negation.
_BETWEEN = r"(?:\s+(?!(?:choices|options|not)\b)[^\s.,;:!?()]+){0,4}?"
# Markup and quotes a model wraps a letter in: $B$, \(B\), \text{B}, \boxed{B}, "B", `B`, *B*. (Every piece of
# the target pattern consumes something or one bounded run of spaces: two optional space runs side by side
# make the regex engine backtrack for minutes on a long run of spaces.)
_WRAP = r"(?:(?:\$|\\\(|\\\[|\\(?:text|textbf|mathrm|mathbf|boxed)\{|[\"'“”‘’`«»「『*]|:)\s*)*"
_ADVERBS = (r"(?:(?:for\s+sure|definitely|clearly|probably|most\s+likely|likely|certainly|indeed|obviously|"
            r"therefore|thus|hence|then|actually|simply|surely|undoubtedly)[\s,]+)*")
_OPTION_WORD = r"(?:(?:the\s+)?(?:option|choice|letter|opción|opcion|opzione|lettre|letra)\s*|(?:la|le|el|il)\s+)"
# A letter stands alone: not part of a word, "B12", "B-cell" or "B's" (a closing quote may follow: 'C').
_LETTER = r"(?:(?P<open>[(\[{])\s*)?(?P<letter>[A-Za-z])(?P<close>\s*[)\]}])?(?![A-Za-z0-9\-]|['’][A-Za-z])"
_TARGET = rf"\s*{_WRAP}{_ADVERBS}(?:{_OPTION_WORD}{_WRAP})?{_LETTER}"

_STATED = [re.compile(pattern, re.IGNORECASE) for pattern in (
    rf"(?:{_ANSWER_WORDS}){_BETWEEN}{_LINK}{_TARGET}",
    rf"\\boxed\{{{_TARGET}",
    rf"<answer>{_TARGET}",
    rf"\b(?:I|we)(?:'ll|’ll|'d|’d|\s+will|\s+would|\s+shall)?\s+(?:choose|chose|pick|select|go\s+with|opt\s+for)\b"
    rf"{_TARGET}",
    rf"\b(?:leaves|leaving)(?:\s+us\s+with)?(?:\s+only)?\b{_TARGET}",
    rf"\b(?:it|this|that|which)(?:'s|’s|\s+is|\s+must\s+be|\s+has\s+to\s+be|\s+should\s+be|\s+would\s+be)\b"
    rf"{_TARGET}",
    r"(?:故选|所以选|因此选|应选|选择|所以答|故答案为)\s*" + _LETTER,
    r"选项\s*" + _LETTER + r"\s*(?:正确|是正确的|对)",
)] + [re.compile(_LETTER.replace("[A-Za-z]", "[A-Z]") + rest) for rest in (
    # The letter before its verdict: "C is the correct option", "(B) is the answer", "C是正确的".
    r"\s+(?:is|would\s+be|seems)\s+(?:the\s+)?(?:correct|right|best|most\s+(?:likely|appropriate|accurate|plausible))\b",
    r"\s+is\s+(?:the\s+)?(?:correct\s+|right\s+|best\s+|final\s+)?answer\b",
    r"\s*(?:是正确的|是正确答案|为正确|正确)",
)] + [re.compile(r"(?i:option|choice)\s+" + _LETTER + r"\s+(?i:is)\s+(?i:correct|right)\b")]

# A response that opens with its letter ("D. it can't be A or B", "(B)", "1. C", "B不是 A"), and lines that do.
_LEADING = re.compile(r"^[ \t>#]*(?:\d+[.)]\s+)?" + _LETTER.replace("[A-Za-z]", "[A-Z]")
                      + r"(?=[ \t]*$|[ \t]*[.:,;)\]。，、]|[^\x00-\x7F]|[ \t]+[A-Z\-–—])", re.MULTILINE)
_MENTIONED = [re.compile(r"(?P<open>\()(?P<letter>[A-Za-z])(?P<close>\))"),
              re.compile(r"(?i:option|choice)\s+\(?(?P<letter>[A-Z])\)?(?![A-Za-z0-9'’\-])")]
# A capital ending a clause, but not a unit after a number ("it gives 42 J, ...").
_CLAUSE_END = re.compile(r"(?<![A-Za-z0-9'’\-\\])(?<!\d )(?P<letter>[A-Z])(?=\s*(?:[.)\]!,]|$))", re.MULTILINE)

# Words after which a letter is being examined or rejected, not chosen ("not A", "consider option A",
# "between B and C", "不是 A"), up to the end of the clause or a conclusion ("..., so D").
_EXAMINED = re.compile(
    r"\b(?:not|no(?!\s*[:,.!])|never|cannot|neither|nor|except|unlike|non|pas|rather\s+than|instead\s+of|rules?\s+out|"
    r"ruled\s+out|eliminat\w*|exclud\w*|wrong|incorrect|consider\w*|check\w*|evaluat\w*|examin\w*|analy[sz]\w*|"
    r"look\w*\s+at|compar\w*|between|versus|vs|whether|if)\b|n['’]t\b|不是|不|而非|排除|错误", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[.!?;\n。；！？，]|,\s*(?=(?:so|therefore|thus|hence|but|then|leaving|which\s+leaves|"
                           r"that\s+leaves)\b)", re.IGNORECASE)
# A verdict right after a letter that rules it out ("(A) cannot be right", "A is wrong", "A错误"); a bare "not"
# after a letter contrasts it instead ("B, not C", "(b) not (c)").
_REJECTED_AFTER = re.compile(
    r"[)\]}]?\s*(?:(?:is|are|was|would\s+be|seems)\s+not\b|(?:(?:is|are|was|would\s+be|seems)\s+)?(?:incorrect|wrong|"
    r"false|unlikely|implausible|invalid|excluded|eliminated|ruled\s+out)|cannot|can['’]t|can\s+not|does\s+not|"
    r"doesn['’]t|fails|错误|不正确|不对)", re.IGNORECASE)
# Words after which a capital "A" is the article and "I" the pronoun ("A patient", "I think"); after these
# they are letters ("A because ...", "I is the answer").
_LETTER_THEN = frozenset("because since as is was and or but which given due here then so fits matches best "
                         "only alone rather not".split())
_NEXT_WORD = re.compile(r"\s+([a-z]+)\b")
# A lower-case letter counts only where it cannot be an English word: before punctuation or the end.
_LOWER_LETTER_THEN = re.compile(r"\s*(?:[,;:!?)\]}*\"'”’$`]|\.(?![A-Za-z])|$)")


def extract_choice_letter(text: str, num_choices: int = 4, *, choices: Sequence[str] | None = None) -> str | None:
    """The option letter a response finally chooses ("Answer: $B$", "the answer is (C)", "\\boxed{D}", "B) ...").

    A letter stated as the answer wins over letters mentioned while reasoning, and the last statement wins
    over earlier ones. When `choices` (the option texts) are given and no letter is found, an answer
    stated as the text of exactly one option ("The answer is Paracetamol") maps to that option's letter.
    """
    if not text:
        return None
    letters = string.ascii_uppercase[:num_choices]
    # Full-width letters and colons ("答え：Ｂ") become ASCII; bold markers never carry meaning here.
    text = unicodedata.normalize("NFKC", text).replace("**", "")
    # A reasoning model's final reply, after its thinking, is where the answer is stated.
    if "</think>" in text:
        reply = text.rsplit("</think>", 1)[1]
        letter = _choose(reply, letters, choices) if reply.strip() else None
        if letter:
            return letter
    return _choose(text, letters, choices)


def _choose(text: str, letters: str, choices: Sequence[str] | None) -> str | None:
    text = text.strip()
    stated = [(match.end(), letter) for pattern in _STATED for match in pattern.finditer(text)
              if (letter := _valid_letter(match, text, letters))]
    if stated:
        return max(stated)[1]
    leading = {letter for match in _LEADING.finditer(text) if (letter := _valid_letter(match, text, letters))}
    # A letter that opens the response or a line is the answer; lines "A) ... B) ..." restate the options.
    if len(leading) == 1:
        return leading.pop()
    mentioned = _free_letters(_MENTIONED, text, letters)
    if mentioned:
        return mentioned[-1]
    if choices:
        letter = _letter_from_option_text(text, choices[:len(letters)])
        if letter:
            return letter
    clause_end = _free_letters([_CLAUSE_END], text, letters)
    return clause_end[-1] if clause_end else None


def _valid_letter(match: re.Match, text: str, letters: str) -> str | None:
    """The matched letter if it can be an option letter here, else None."""
    raw = match.group("letter")
    letter = raw.upper()
    if letter not in letters:
        return None
    enclosed = bool(match.groupdict().get("open") and match.groupdict().get("close"))
    after = match.end("close") if enclosed else match.end("letter")
    if raw.islower() and not enclosed and not _LOWER_LETTER_THEN.match(text, after):
        return None
    if raw in "AI" and not enclosed:
        word = _NEXT_WORD.match(text, after)
        if word and word.group(1) not in _LETTER_THEN:
            return None
    if _REJECTED_AFTER.match(text, after):
        return None
    return letter


def _free_letters(patterns: Sequence[re.Pattern], text: str, letters: str) -> list[str]:
    """Letters the patterns match that no negation, comparison or question surrounds, in text order."""
    examined = _examiner(text)
    found = [(match.start("letter"), letter) for pattern in patterns for match in pattern.finditer(text)
             if (letter := _valid_letter(match, text, letters)) and not examined(match.start("letter"))]
    return [letter for _, letter in sorted(found)]


def _examiner(text: str) -> Callable[[int], bool]:
    """A test of whether the word at a position of `text` sits in a question, or after a negation or
    comparison in its clause: there it is being examined or rejected, not chosen."""
    breaks = [(match.start(), match.end(), match.group()) for match in _CLAUSE_BREAK.finditer(text)]
    starts = [start for start, _, _ in breaks]

    def examined(position: int) -> bool:
        index = bisect.bisect_left(starts, position)
        clause_start = breaks[index - 1][1] if index else 0
        if index < len(breaks) and breaks[index][2] in ("?", "？"):
            return True
        return bool(_EXAMINED.search(text, clause_start, position))

    return examined


def _letter_from_option_text(text: str, choices: Sequence[str]) -> str | None:
    """The one option whose text the response states as its answer (or, failing that, mentions freely)."""
    stated = re.findall(r"answer\s*(?:is|:)\s*(.+)", text, flags=re.IGNORECASE)
    target = stated[-1] if stated else text
    examined = _examiner(target)
    hits = set()
    for index, choice in enumerate(choices):
        words = re.findall(r"\w+", str(choice))
        if not words:
            continue
        pattern = r"\b" + r"\W+".join(map(re.escape, words)) + r"\b"
        if any(not examined(m.start()) for m in re.finditer(pattern, target, flags=re.IGNORECASE)):
            hits.add(index)
    if len(hits) == 1:
        return string.ascii_uppercase[hits.pop()]
    return None


def grade_choice(pred: str | None, gt: str | None) -> Grade:
    """A multiple-choice letter against the reference letter (both already extracted)."""
    if gt is None or not str(gt).strip():
        return Grade(False, REASON_NO_REFERENCE)
    if pred is None or not str(pred).strip():
        return Grade(False, REASON_NO_ANSWER)
    correct = str(pred).strip().upper() == str(gt).strip().upper()
    return Grade(correct, REASON_STRING_MATCH if correct else REASON_NOT_EQUAL)

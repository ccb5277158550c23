// The trajectory viewer's page script (embedded by eval/viewer.py). Every text that comes from a record is
// put on the page with textContent (or a property such as .title), never as markup, so a model's output that
// holds HTML shows as text. Only the selected question is drawn in full, and the list is drawn a page at a
// time as it scrolls: a file with 10,000 records opens without drawing 10,000 grids.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("viewer-data").textContent);
  var QUESTIONS = DATA.questions;
  var LIST_PAGE = 100;  // list items drawn per step
  var PREVIEW_CHARS = 90;
  var state = { matching: [], shown: 0, selected: -1, haystack: null, observer: null };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) if (arguments[i]) parent.appendChild(arguments[i]);
    return parent;
  }
  function pct(value) { return value === null || value === undefined ? "n/a" : (100 * value).toFixed(1) + "%"; }
  function num(value, digits) {
    if (value === null || value === undefined) return "n/a";
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 0 : digits });
  }
  function mark(correct) {
    if (correct === true) return el("span", "mark ok", "\u2713");
    if (correct === false) return el("span", "mark bad", "\u2717");
    return el("span", "mark unk", "?");
  }
  function markClass(correct) { return correct === true ? "ok" : correct === false ? "bad" : "unk"; }
  function gtText(gt) { return Array.isArray(gt) ? gt.join(" | ") : gt === null || gt === undefined ? "" : String(gt); }
  function preview(text) {
    var flat = String(text || "").replace(/\s+/g, " ").trim();
    return flat.length > PREVIEW_CHARS ? flat.slice(0, PREVIEW_CHARS) + "\u2026" : flat;
  }
  // PRM step score -> background: red (0) through yellow to green (1).
  function scoreColour(score) {
    if (score === null || score === undefined) return "#eaeef2";
    return "hsl(" + Math.round(120 * Math.max(0, Math.min(1, score))) + ", 75%, 84%)";
  }

  // ---- summary ------------------------------------------------------------------------------------
  function drawMeta() {
    var meta = DATA.meta, parts = ["inputs: " + meta.inputs.join(", ")];
    if (meta.labeled) parts.push("labels: " + meta.labeled + " (" + meta.labeled_turns + " turns)");
    if (meta.prm) parts.push("PRM: " + meta.prm);
    parts.push("generated " + meta.generated);
    document.getElementById("meta").textContent = parts.join(" \u00b7 ");
  }

  function drawSummary() {
    var box = document.getElementById("summary");
    var table = el("table", "summary"), head = el("tr");
    ["run", "questions", "accuracy", "agreement by round", "wrong\u2192right", "right\u2192wrong",
     "changed mind", "disagree", "tokens / q", "calls / q"]
      .forEach(function (name) { add(head, el("th", null, name)); });
    add(table, add(el("thead"), head));
    var body = el("tbody");
    DATA.summary.forEach(function (row) {
      var tr = el("tr");
      add(tr, el("td", null, row.method + " \u00b7 " + row.model + " \u00b7 " + row.sources.join(", ")));
      add(tr, el("td", null, row.questions + (row.failed ? " (" + row.failed + " failed)" : "")));
      add(tr, el("td", null, pct(row.accuracy) + (row.graded < row.questions ? " of " + row.graded + " graded" : "")));
      add(tr, el("td", null, row.agreement.length ? row.agreement.map(function (a) {
        return "r" + a.round + " " + num(a.majority_share, 2) + " (" + pct(a.unanimous) + ")";
      }).join(", ") : "single agent"));
      var of = row.transitions ? " / " + row.transitions : "";
      add(tr, el("td", null, row.wrong_to_right + of));
      add(tr, el("td", null, row.right_to_wrong + of));
      add(tr, el("td", null, row.changed));
      add(tr, el("td", null, row.disagree));
      add(tr, el("td", null, num(row.tokens_per_question) + " (" + num(row.completion_tokens_per_question) + " out)"));
      add(tr, el("td", null, num(row.calls_per_question, 1)));
      add(body, tr);
    });
    add(table, body);
    add(box, table);
    var note = el("div", "muted",
      "agreement: mean share of agents holding the round's majority answer (share of questions where all agree). " +
      "Switches: consecutive answers of one agent whose correctness changed, of all such pairs.");
    if (DATA.meta.prm) {
      var legend = el("span", "legend", "PRM step score:");
      [0, 0.25, 0.5, 0.75, 1].forEach(function (s) {
        var swatch = el("span", "swatch"); swatch.style.background = scoreColour(s); swatch.title = String(s);
        add(legend, swatch);
      });
      add(legend, el("span", null, "0 \u2192 1"));
      add(note, legend);
    }
    add(box, note);
  }

  // ---- filters ------------------------------------------------------------------------------------
  function fillSelect(id, field) {
    var select = document.getElementById(id), seen = {};
    QUESTIONS.forEach(function (q) { seen[q[field]] = (seen[q[field]] || 0) + 1; });
    var all = el("option", null, "all"); all.value = ""; add(select, all);
    Object.keys(seen).sort().forEach(function (value) {
      var option = el("option", null, value + " (" + seen[value] + ")"); option.value = value; add(select, option);
    });
    if (Object.keys(seen).length < 2) select.disabled = true;
  }

  function haystack(index) {
    if (!state.haystack) state.haystack = new Array(QUESTIONS.length);
    if (state.haystack[index] === undefined) {
      var q = QUESTIONS[index], parts = [q.id, q.query, gtText(q.gt), q.answer, q.response, q.error];
      q.turns.forEach(function (t) { parts.push(t.text, t.answer); });
      state.haystack[index] = parts.filter(function (p) { return p; }).join("\n").toLowerCase();
    }
    return state.haystack[index];
  }

  function readFilters() {
    function checked(id) { return document.getElementById(id).checked; }
    return {
      text: document.getElementById("search").value.trim().toLowerCase(),
      outcome: document.getElementById("outcome").value,
      method: document.getElementById("method").value,
      model: document.getElementById("model").value,
      dataset: document.getElementById("dataset").value,
      changed: checked("f-changed"), disagree: checked("f-disagree"), w2r: checked("f-w2r"),
      r2w: checked("f-r2w"), truncated: checked("f-truncated"), failed: checked("f-failed"),
    };
  }

  function passes(q, index, f) {
    if (f.outcome === "correct" && q.correct !== true) return false;
    if (f.outcome === "wrong" && q.correct !== false) return false;
    if (f.outcome === "unknown" && q.correct !== null) return false;
    if (f.method && q.method !== f.method) return false;
    if (f.model && q.model !== f.model) return false;
    if (f.dataset && q.source !== f.dataset) return false;
    if (f.changed && !q.changed) return false;
    if (f.disagree && !q.disagree) return false;
    if (f.w2r && !q.switches.wrong_to_right) return false;
    if (f.r2w && !q.switches.right_to_wrong) return false;
    if (f.truncated && !q.truncated) return false;
    if (f.failed && !q.error) return false;
    if (f.text && haystack(index).indexOf(f.text) < 0) return false;
    return true;
  }

  function applyFilters() {
    var f = readFilters(), matching = [];
    for (var i = 0; i < QUESTIONS.length; i++) if (passes(QUESTIONS[i], i, f)) matching.push(i);
    state.matching = matching;
    var count = document.getElementById("count");
    count.textContent = matching.length + " of " + QUESTIONS.length + " questions";
    count.dataset.matching = String(matching.length);
    count.dataset.total = String(QUESTIONS.length);
    drawList();
    if (matching.indexOf(state.selected) < 0) select(matching.length ? matching[0] : -1);
  }

  // ---- the list (drawn a page at a time) ------------------------------------------------------------
  function listItem(index) {
    var q = QUESTIONS[index], li = el("li", "qitem");
    li.dataset.index = String(index);
    if (index === state.selected) li.classList.add("selected");
    add(li, add(el("div", "qline"), mark(q.correct), el("span", "qid", q.id)));
    add(li, el("div", "qtext", preview(q.query)));
    var meta = el("div", "qmeta", q.method + " \u00b7 answer " + (q.answer === null ? "none" : q.answer) +
      " \u00b7 ref " + gtText(q.gt) + " ");
    if (q.changed) add(meta, el("span", "chip", "changed"));
    if (q.disagree) add(meta, el("span", "chip", "disagree"));
    if (q.switches.wrong_to_right) add(meta, el("span", "chip", "w\u2192r"));
    if (q.switches.right_to_wrong) add(meta, el("span", "chip warn", "r\u2192w"));
    if (q.truncated) add(meta, el("span", "chip warn", "truncated"));
    if (q.error) add(meta, el("span", "chip warn", "failed"));
    add(li, meta);
    return li;
  }

  function drawList() {
    var nav = document.getElementById("list");
    if (state.observer) state.observer.disconnect();
    nav.textContent = "";
    nav.scrollTop = 0;
    add(nav, el("ul"));
    state.shown = 0;
    drawMore();
  }

  function drawMore() {
    var nav = document.getElementById("list"), ul = nav.firstChild;
    var old = nav.querySelector(".more");
    if (old) old.remove();
    var end = Math.min(state.matching.length, state.shown + LIST_PAGE), fragment = document.createDocumentFragment();
    for (var k = state.shown; k < end; k++) fragment.appendChild(listItem(state.matching[k]));
    ul.appendChild(fragment);
    state.shown = end;
    if (end < state.matching.length) {
      var more = el("button", "more", "show more (" + (state.matching.length - end) + " left)");
      more.addEventListener("click", drawMore);
      add(nav, more);
      if ("IntersectionObserver" in window) {
        if (!state.observer) {
          state.observer = new IntersectionObserver(function (entries) {
            if (entries.some(function (e) { return e.isIntersecting; })) drawMore();
          }, { root: nav, rootMargin: "400px" });
        }
        state.observer.disconnect();
        state.observer.observe(more);
      }
    }
  }

  // ---- one question --------------------------------------------------------------------------------
  function fact(dl, name, value) {
    if (value === null || value === undefined || value === "") return;
    add(dl, el("dt", null, name));
    var dd = el("dd");
    if (value instanceof Node) add(dd, value); else dd.textContent = String(value);
    add(dl, dd);
  }

  function turnText(turn) {
    var box = el("div", "text");
    if (turn.prm && turn.steps) {
      turn.steps.forEach(function (step, i) {
        var score = turn.prm[i], line = el("span", "step");
        line.style.background = scoreColour(score);
        line.title = "PRM " + (score === null || score === undefined ? "n/a" : score.toFixed(3));
        add(line, el("span", "score", score === null || score === undefined ? "n/a" : score.toFixed(2)));
        add(line, document.createTextNode(step));
        add(box, line);
      });
    } else {
      box.textContent = turn.text;
    }
    return box;
  }

  function turnCard(turn) {
    var card = el("div", "turn " + (turn.solution ? markClass(turn.correct) : "unk"));
    var head = el("div", "head");
    if (turn.solution) add(head, mark(turn.correct));
    var answer = el("span", "answer", turn.answer === null ? (turn.solution ? "no answer" : turn.role) : turn.answer);
    if (turn.answer_extracted) answer.title = "extracted from the text (the turn recorded no answer)";
    add(head, answer);
    if (turn.judge) {
      var judge = el("span", "chip", turn.judge);
      if (turn.judge_detail) judge.title = turn.judge_detail;
      add(head, judge);
    }
    if (turn.prompt_tokens !== null || turn.completion_tokens !== null) {
      var tokens = el("span", "chip", num(turn.prompt_tokens) + " in \u00b7 " + num(turn.completion_tokens) + " out");
      tokens.title = "prompt tokens \u00b7 completion tokens";
      add(head, tokens);
    }
    if (turn.finish_reason) add(head, el("span", turn.finish_reason === "length" ? "chip warn" : "chip", turn.finish_reason));
    if (turn.prm && turn.prm.length) {
      var known = turn.prm.filter(function (s) { return s !== null; });
      if (known.length) {
        var low = Math.min.apply(null, known), chip = el("span", "chip", "PRM min " + low.toFixed(2));
        chip.style.background = scoreColour(low);
        add(head, chip);
      }
    }
    add(card, head);
    if (turn.extra) {
      add(card, el("div", "extra", Object.keys(turn.extra).map(function (k) { return k + ": " + turn.extra[k]; }).join(" \u00b7 ")));
    }
    var closed = (preview(turn.text) || "(empty text)") + " (" + turn.text.length + " chars)";
    var details = el("details"), summary = el("summary", null, closed);
    add(details, summary);
    // The text is drawn when the turn is opened: a grid of long turns stays cheap until read.
    details.addEventListener("toggle", function () {
      if (details.open && details.childNodes.length === 1) add(details, turnText(turn));
      summary.textContent = details.open ? "hide text (" + turn.text.length + " chars)" : closed;
    });
    add(card, details);
    return card;
  }

  function agentLabel(turn) { return (turn.agent === null || turn.agent === undefined ? "?" : "agent " + turn.agent) + " \u00b7 " + turn.role; }

  function grid(q) {
    var rows = [], rowOf = {}, rounds = [], seenRound = {};
    q.turns.forEach(function (turn) {
      var key = String(turn.agent) + "\u0000" + turn.role;
      if (!(key in rowOf)) { rowOf[key] = rows.length; rows.push({ label: agentLabel(turn), cells: {} }); }
      var r = turn.round === null ? "?" : turn.round;
      if (!seenRound[r]) { seenRound[r] = true; rounds.push(r); }
      var cells = rows[rowOf[key]].cells;
      (cells[r] = cells[r] || []).push(turn);
    });
    rounds.sort(function (a, b) { return (a === "?") - (b === "?") || a - b; });
    var table = el("table", "grid"), head = el("tr");
    add(head, el("th", "agent", "agent \\ round"));
    rounds.forEach(function (r) { add(head, el("th", null, "round " + r)); });
    add(table, add(el("thead"), head));
    var body = el("tbody");
    rows.forEach(function (row) {
      var tr = add(el("tr"), el("th", "agent", row.label));
      rounds.forEach(function (r) {
        var td = el("td", row.cells[r] ? null : "empty");
        (row.cells[r] || []).forEach(function (turn) { add(td, turnCard(turn)); });
        add(tr, td);
      });
      add(body, tr);
    });
    add(table, body);
    return add(el("div", "grid-wrap"), table);
  }

  function drawDetail(index) {
    var box = document.getElementById("detail");
    box.textContent = "";
    if (index < 0) { add(box, el("p", "muted", "No question matches the filters.")); return; }
    var q = QUESTIONS[index];
    var title = add(el("h2"), mark(q.correct), document.createTextNode(" " + q.id));
    add(box, title);
    var question = add(el("div", "block"), el("div", "query", q.query));
    if (q.choices) {
      var options = el("div", "query");
      options.textContent = q.choices.map(function (c, i) { return String.fromCharCode(65 + i) + ". " + c; }).join("\n");
      add(question, options);
    }
    if (q.context) {
      var context = add(el("details"), el("summary", null, "context (" + String(q.context).length + " characters)"));
      add(context, el("pre", null, typeof q.context === "string" ? q.context : JSON.stringify(q.context, null, 2)));
      add(question, context);
    }
    add(box, question);
    var dl = el("dl", "facts");
    var final = add(el("span"), mark(q.correct), document.createTextNode(" " + (q.answer === null ? "none" : q.answer)));
    if (q.grade) final.title = q.grade;
    fact(dl, "final answer", final);
    fact(dl, "reference", gtText(q.gt));
    if (q.votes.length) {
      var votes = el("span", "votes");
      q.votes.forEach(function (v) { add(votes, el("span", null, v[0] + " \u00d7" + v[1])); });
      fact(dl, "agents' last answers", votes);
    }
    if (q.info && typeof q.info === "object") {
      var decided = ["answer_source", "vote_answer", "consensus", "stopped_on", "early_stop_round"]
        .filter(function (k) { return k in q.info; })
        .map(function (k) { return k + ": " + JSON.stringify(q.info[k]); });
      if (decided.length) fact(dl, "decision", decided.join(" \u00b7 "));
    }
    fact(dl, "run", q.method + " \u00b7 " + q.model + " \u00b7 " + q.source + (q.task_type ? " (" + q.task_type + ")" : ""));
    fact(dl, "tokens", num(q.tokens.prompt) + " prompt + " + num(q.tokens.completion) + " completion in " +
      num(q.tokens.calls) + " calls" + (q.latency_s === null || q.latency_s === undefined ? "" : " \u00b7 " + num(q.latency_s, 2) + " s"));
    fact(dl, "error", q.error);
    fact(dl, "record", q.where);
    add(box, add(el("div", "block"), dl));

    var toolbar = el("div", "toolbar");
    var expand = el("button", null, "expand all turns"), collapse = el("button", null, "collapse all");
    expand.addEventListener("click", function () { box.querySelectorAll(".turn details").forEach(function (d) { d.open = true; }); });
    collapse.addEventListener("click", function () { box.querySelectorAll(".turn details").forEach(function (d) { d.open = false; }); });
    add(toolbar, expand, collapse);
    add(box, toolbar);
    if (q.turns.length) add(box, grid(q)); else add(box, el("p", "muted", "No turns recorded."));
    if (q.response !== null && q.response !== undefined) {
      add(box, add(el("details", "block"), el("summary", null, "final response"), el("pre", null, q.response)));
    }
    if (q.info) add(box, add(el("details", "block"), el("summary", null, "method info"), el("pre", null, JSON.stringify(q.info, null, 2))));
  }

  // Scroll the list (only the list: scrollIntoView would scroll the page too) so that `item` is in view.
  function revealInList(item) {
    var nav = document.getElementById("list"), a = item.getBoundingClientRect(), b = nav.getBoundingClientRect();
    var bottom = Math.min(b.bottom, window.innerHeight);  // before the page scrolls, the list runs below the window
    if (a.top < b.top) nav.scrollTop -= b.top - a.top;
    else if (a.bottom > bottom) nav.scrollTop += a.bottom - bottom;
  }

  // The list sticks under the filter bar, whose height depends on how its controls wrap.
  function fitList() {
    var bar = document.getElementById("controls").offsetHeight, nav = document.getElementById("list");
    nav.style.top = bar + "px";
    nav.style.height = "calc(100vh - " + bar + "px)";
  }

  function select(index) {
    var previous = document.querySelector(".qitem.selected");
    if (previous) previous.classList.remove("selected");
    state.selected = index;
    var item = document.querySelector('.qitem[data-index="' + index + '"]');
    if (item) {
      item.classList.add("selected");
      revealInList(item);
    }
    drawDetail(index);
    if (index >= 0 && history.replaceState) history.replaceState(null, "", "#q=" + index);
  }

  function step(delta) {
    var at = state.matching.indexOf(state.selected) + delta;
    if (at < 0 || at >= state.matching.length) return;
    while (at >= state.shown) drawMore();
    select(state.matching[at]);
  }

  // ---- wiring --------------------------------------------------------------------------------------
  function init() {
    drawMeta();
    drawSummary();
    fillSelect("method", "method");
    fillSelect("model", "model");
    fillSelect("dataset", "source");
    var timer = null;
    document.getElementById("search").addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(applyFilters, 150);
    });
    ["outcome", "method", "model", "dataset", "f-changed", "f-disagree", "f-w2r", "f-r2w", "f-truncated", "f-failed"]
      .forEach(function (id) { document.getElementById(id).addEventListener("change", applyFilters); });
    document.getElementById("list").addEventListener("click", function (event) {
      var item = event.target.closest(".qitem");
      if (item) select(Number(item.dataset.index));
    });
    document.addEventListener("keydown", function (event) {
      if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
      if (event.key === "j" || event.key === "ArrowDown") { step(1); event.preventDefault(); }
      if (event.key === "k" || event.key === "ArrowUp") { step(-1); event.preventDefault(); }
    });
    fitList();
    window.addEventListener("resize", fitList);
    applyFilters();
    var fromHash = /^#q=(\d+)$/.exec(location.hash);  // a link to one question (#q=<index>)
    if (fromHash && state.matching.indexOf(Number(fromHash[1])) >= 0) select(Number(fromHash[1]));
    document.body.dataset.ready = "1";  // for tests and scripts that wait for the first drawing
  }

  init();
})();

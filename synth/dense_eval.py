"""Dense-caption scores: ActivityNet Captions' precision, recall and caption scores at tIoU thresholds, and SODA_c.

- An event is ``(start_s, end_s, sentence)``. Predictions are parsed from a dense-caption text (``<a - b seconds>
  sentence`` per event); references come from imported dense captions or from a generated video's truth.
- Detection at a threshold t (ActivityNet Captions): a prediction is correct when its tIoU with some reference
  reaches t, a reference is found when some prediction reaches t with it; precision and recall are those fractions.
- Caption scores at t: every (prediction, reference) pair with tIoU >= t is scored; a prediction that reaches no
  reference is paired with a reference that shares no word with it, so it counts against the video. BLEU-4,
  METEOR and CIDEr are taken over one video's pairs (pycocoevalcap, the scorers ActivityNet's evaluation uses),
  then averaged over videos.
- SODA_c (Fujita et al., ECCV 2020): predictions and references in time order are matched one to one without
  crossing, maximising the sum of tIoU x METEOR (dynamic programming); with that sum S, precision S / #predictions
  and recall S / #references give an F-measure, so redundant or missing captions cost.

Everything here but ``CocoCaptionScorer`` is pure; the scorer is passed in, so tests can use any.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from dataclasses import dataclass
from functools import cache
from typing import Callable, Protocol

from curation.times import parse_span
from synth.metrics import mean, temporal_iou

TIOUS = (0.3, 0.5, 0.7, 0.9)
CAPTION_METRICS = ("bleu4", "meteor", "cider")
# ActivityNet's stand-in reference for a prediction that overlaps none: it shares no word with any caption
UNMATCHED_REFERENCE = "abc123"
_EPS = 1e-9  # a tIoU computed as 0.49999999 still reaches 0.5


@dataclass(frozen=True, order=True)
class Event:
    start_s: float
    end_s: float
    sentence: str

    @property
    def span(self) -> tuple[float, float]:
        return (self.start_s, self.end_s)


# --- events -----------------------------------------------------------------------------------------------

_BRACKETED = re.compile(r"<[^<>]*>")  # candidates only: curation.times decides which are time spans
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def parse_events(text: str) -> list[Event]:
    """Each time span of a dense-caption text with the event sentence that follows it (up to the next span);
    text before the first span and brackets that are not time spans are ignored."""
    marks = [(m, parse_span(m.group())) for m in _BRACKETED.finditer(text)]
    marks = [(m, span) for m, span in marks if span is not None]
    ends = [m.start() for m, _ in marks[1:]] + [len(text)]
    return [Event(span[0], span[1], event_sentence(text[m.end():end])) for (m, span), end in zip(marks, ends)]


def event_sentence(text: str) -> str:
    """The first sentence of an entry: the event-level summary (synth.dense renders ``summary. details``, and
    references are one sentence per event)."""
    flat = " ".join(text.split())
    return _SENTENCE_END.split(flat, maxsplit=1)[0]


def entry_events(entries: list[dict]) -> list[Event]:
    """A `dense_captions` row's entries (start_s, end_s, summary) as events in time order."""
    return sorted(Event(float(e["start_s"]), float(e["end_s"]), e["summary"]) for e in entries)


def truth_events(truth: dict) -> list[Event]:
    """A generated video's reference events (``synth.videos.read_truth``): each shape track is the event
    ``{phrase} {action}`` over its span."""
    return sorted(Event(float(s["start_s"]), float(s["end_s"]), f"{s['phrase']} {s['action']}")
                  for s in truth.get("shapes", []))


# --- detection and matched pairs ------------------------------------------------------------------------


def _reaches(iou: float, tiou: float) -> bool:
    return iou >= tiou - _EPS


def tiou_matrix(preds: list[Event], refs: list[Event]) -> list[list[float]]:
    """tIoU of every prediction (row) with every reference (column)."""
    return [[temporal_iou(p.span, r.span) for r in refs] for p in preds]


def detection(preds: list[Event], refs: list[Event], tiou: float) -> tuple[float, float]:
    """(precision, recall) at one threshold; 0 for a side with no events."""
    hits = [[_reaches(v, tiou) for v in row] for row in tiou_matrix(preds, refs)]
    precision = sum(any(row) for row in hits) / len(preds) if preds else 0.0
    recall = sum(any(col) for col in zip(*hits)) / len(refs) if refs else 0.0
    return precision, recall


def matched_pairs(preds: list[Event], refs: list[Event], tiou: float) -> list[tuple[str, str]]:
    """(prediction sentence, reference sentence) for every pair whose tIoU reaches ``tiou``; a prediction that
    reaches none is paired with ``UNMATCHED_REFERENCE``."""
    pairs = []
    for p, row in zip(preds, tiou_matrix(preds, refs)):
        hit = [r.sentence for r, v in zip(refs, row) if _reaches(v, tiou)]
        pairs += [(p.sentence, s) for s in hit] or [(p.sentence, UNMATCHED_REFERENCE)]
    return pairs


def f_measure(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


# --- SODA_c ---------------------------------------------------------------------------------------------


def order_preserving_matching(sim: list[list[float]]) -> tuple[float, list[tuple[int, int]]]:
    """The largest sum of ``sim[i][j]`` over pairs matched one to one with both i and j increasing (no two
    pairs cross), and those pairs: the longest-common-subsequence recurrence with weights."""
    n, m = len(sim), len(sim[0]) if sim else 0
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            best[i][j] = max(best[i - 1][j], best[i][j - 1], best[i - 1][j - 1] + sim[i - 1][j - 1])
    pairs, i, j = [], n, m
    while i and j:  # walk back the choices that made each cell
        if best[i][j] == best[i - 1][j]:
            i -= 1
        elif best[i][j] == best[i][j - 1]:
            j -= 1
        else:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    return best[n][m], pairs[::-1]


PairScores = Callable[[list[tuple[str, str]]], list[float]]


def soda_c(preds: list[Event], refs: list[Event], caption_scores: PairScores) -> float:
    """SODA_c of one video: references and predictions in time order, similarity tIoU x caption score
    (``caption_scores`` maps (prediction, reference) sentence pairs to scores: METEOR in the paper)."""
    if not preds or not refs:
        return 0.0
    preds, refs = sorted(preds), sorted(refs)
    ious = [[temporal_iou(p.span, r.span) for p in preds] for r in refs]
    overlapping = [(i, j) for i, row in enumerate(ious) for j, v in enumerate(row) if v > 0]
    scores = caption_scores([(preds[j].sentence, refs[i].sentence) for i, j in overlapping])
    sim = [[0.0] * len(preds) for _ in refs]
    for (i, j), s in zip(overlapping, scores):
        sim[i][j] = ious[i][j] * s
    total, _ = order_preserving_matching(sim)
    return f_measure(total / len(preds), total / len(refs))


# --- one video, many videos -----------------------------------------------------------------------------


class CaptionScorer(Protocol):
    def corpus(self, pairs: list[tuple[str, str]]) -> dict[str, float]:
        """BLEU-4, METEOR and CIDEr of (prediction, reference) pairs taken as one corpus."""

    def meteor_each(self, pairs: list[tuple[str, str]]) -> list[float]:
        """METEOR of each (prediction, reference) pair."""


def video_scores(preds: list[Event], refs: list[Event], scorer: CaptionScorer, tious=TIOUS) -> dict:
    """One video: per tIoU precision, recall, F1 and the caption scores of its matched pairs; and SODA_c."""
    by_tiou = {}
    for t in tious:
        precision, recall = detection(preds, refs, t)
        captions = scorer.corpus(matched_pairs(preds, refs, t)) if preds else dict.fromkeys(CAPTION_METRICS, 0.0)
        by_tiou[f"{t:g}"] = dict(precision=precision, recall=recall, f1=f_measure(precision, recall), **captions)
    return dict(n_pred=len(preds), n_ref=len(refs), by_tiou=by_tiou, soda_c=soda_c(preds, refs, scorer.meteor_each))


def dense_summary(videos: list[dict], tious=TIOUS) -> dict:
    """Means over videos per tIoU (F1 from the mean precision and recall, as dense-captioning papers report it),
    their mean over the tIoUs, and the mean SODA_c; with no videos every score is None (nothing was scored,
    which is not a score of 0)."""
    keys = ("precision", "recall", "f1", *CAPTION_METRICS)
    if not videos:
        nothing = dict.fromkeys(keys)
        return dict(n=0, tious=list(tious), by_tiou={f"{t:g}": dict(nothing) for t in tious}, average=dict(nothing),
                    soda_c=None)
    by_tiou = {}
    for t in (f"{t:g}" for t in tious):
        cell = {k: mean([v["by_tiou"][t][k] for v in videos]) for k in ("precision", "recall", *CAPTION_METRICS)}
        by_tiou[t] = dict(cell, f1=f_measure(cell["precision"], cell["recall"]))
    average = {k: mean([c[k] for c in by_tiou.values()]) for k in keys}
    return dict(n=len(videos), tious=list(tious), by_tiou=_rounded(by_tiou), average=_rounded(average),
                soda_c=round(mean([v["soda_c"] for v in videos]), 4))


def _rounded(d: dict) -> dict:
    return {k: _rounded(v) if isinstance(v, dict) else round(v, 4) for k, v in d.items()}


# --- the scorer -----------------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def caption_tokens(sentence: str) -> str:
    """Lower-case words, punctuation dropped, one space apart: what the COCO scorers expect after their
    tokenizer step (done here in Python, without its Java call)."""
    return " ".join(_WORD.findall(sentence.lower()))


def scorer_problems() -> list[str]:
    """Why dense captions cannot be scored on this machine, each with the way out; empty when they can."""
    out = []
    if importlib.util.find_spec("pycocoevalcap") is None:
        out.append("dense-caption scores need pycocoevalcap: pip install 'densevid[eval]' (`make install` does it), "
                   "or pass --no-dense-captions")
    if shutil.which("java") is None:
        out.append("METEOR (pycocoevalcap) runs on Java and no `java` is on PATH: install a JRE (Debian/Ubuntu: "
                   "apt-get install default-jre-headless; `make install` does it), or pass --no-dense-captions")
    return out


class CocoCaptionScorer:
    """pycocoevalcap's BLEU-4, METEOR 1.5 and CIDEr-D; METEOR runs in one Java process, which takes about ten
    seconds to load its paraphrase tables, so use ``caption_scorer()`` for the process-wide one."""

    def __init__(self):
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor

        self._bleu, self._cider, self._meteor = Bleu(4), Cider(), Meteor()

    @staticmethod
    def _inputs(pairs: list[tuple[str, str]]) -> tuple[dict, dict]:
        refs = {i: [caption_tokens(r)] for i, (_, r) in enumerate(pairs)}
        preds = {i: [caption_tokens(p)] for i, (p, _) in enumerate(pairs)}
        return refs, preds

    def corpus(self, pairs: list[tuple[str, str]]) -> dict[str, float]:
        if not pairs:
            return dict.fromkeys(CAPTION_METRICS, 0.0)
        refs, preds = self._inputs(pairs)
        bleu, _ = self._bleu.compute_score(refs, preds, verbose=0)
        meteor, _ = self._meteor.compute_score(refs, preds)
        cider, _ = self._cider.compute_score(refs, preds)
        return dict(bleu4=float(bleu[3]), meteor=float(meteor), cider=float(cider))

    def meteor_each(self, pairs: list[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        _, each = self._meteor.compute_score(*self._inputs(pairs))
        return [float(s) for s in each]


@cache
def caption_scorer() -> CocoCaptionScorer:
    """The process-wide scorer; raises with the way out when this machine cannot run it."""
    problems = scorer_problems()
    if problems:
        raise RuntimeError("cannot score dense captions:\n  " + "\n  ".join(problems))
    return CocoCaptionScorer()

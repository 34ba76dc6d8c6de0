"""Fitting the doctor's thread prior (qlorafit/doctor/thread_prior.py), and measuring it out of sample.

    PYTHONPATH=src python benchmarks/fit_doctor.py prior       # fit on every studied split, write the asset
    PYTHONPATH=src python benchmarks/fit_doctor.py prior-cv    # the out-of-sample measurement it was chosen by

Records are fit_doctor's first-sight records: each studied thread with its label, the report's words and the causes
the rules of its own split's first measurement gave it (on a user's report the rules are at first sight too).

The model is a conditional logit over the causes: per cause a weight for each word (a word in at least MIN_DOCS
training reports), a bias, and one shared weight per rule feature (thread_prior.rule_features). Fitted by full-batch
Adam on the mean cross-entropy with an L2 penalty. numpy is used here only; the doctor reads the weights in plain
Python.

Measurement (`cv`): the studied splits in collection order are cut at test41. The early splits (train .. test40)
chose the settings by 5-fold cross-validation over whole splits (L2 1e-4 of 3e-5 .. 3e-3, MIN_DOCS 3 of 2, 3, 5,
words as sets; word bigrams, size buckets and the OOM kind added nothing); the late splits (test41 .. the last studied)
were frozen before that and measured once with those settings, each fold fitted on every other split.
"""

import math

import numpy as np

from qlorafit.doctor import thread_prior
from qlorafit.doctor.cause import STRENGTH

L2 = 1e-4
MIN_DOCS = 3
STEPS = 300
LR = 0.05
CUT = "test41"  # the first split of the measurement half (collection order); the ones before it chose the settings


def _causes(recs: list[dict]) -> list[str]:
    return sorted({r["label"] for r in recs} | {c for r in recs for c, _ in r["causes"]})


def _rule_names() -> list[str]:
    # how the rules knew a cause (thread_prior.rule_features): each strength of the rules, and their fallback apart
    hows = [s for s in STRENGTH if s != "words"] + ["fallback"]
    return [f"{place}:{h}" for place in ("first", "second", "later") for h in hows]


def _design(recs: list[dict], vocab: dict[str, int], causes: list[str]):
    """X: reports x (words + 1), each row's words scaled by 1/sqrt(its known words), the last column 1 (the bias);
    G: reports x causes x rule features."""
    rules = {f: j for j, f in enumerate(_rule_names())}
    X = np.zeros((len(recs), len(vocab) + 1))
    G = np.zeros((len(recs), len(causes), len(rules)))
    for i, r in enumerate(recs):
        cols = [vocab[w] for w in r["words"] if w in vocab]
        if cols:
            X[i, cols] = 1 / math.sqrt(len(cols))
        X[i, -1] = 1
        for k, c in enumerate(causes):
            for f in thread_prior.rule_features([tuple(x) for x in r["causes"]], c):
                G[i, k, rules[f]] = 1
    return X, G


def fit(recs: list[dict], l2: float = L2, min_docs: int = MIN_DOCS, steps: int = STEPS) -> dict:
    """The asset's content: {'causes', 'bias': {cause: weight}, 'words': {word: [weight per cause, in 'causes'
    order]}, 'rules': {feature: weight}}."""
    df: dict[str, int] = {}
    for r in recs:
        for w in r["words"]:
            df[w] = df.get(w, 0) + 1
    vocab = {w: j for j, w in enumerate(sorted(w for w, k in df.items() if k >= min_docs))}
    causes = _causes(recs)
    X, G = _design(recs, vocab, causes)
    Y = np.eye(len(causes))[[causes.index(r["label"]) for r in recs]]
    W, th = np.zeros((X.shape[1], len(causes))), np.zeros(G.shape[2])
    state = [[np.zeros_like(W), np.zeros_like(W)], [np.zeros_like(th), np.zeros_like(th)]]
    n = len(recs)
    for t in range(1, steps + 1):
        S = X @ W + G @ th
        P = np.exp(S - S.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        D = (P - Y) / n
        grads = (X.T @ D + l2 * W, np.einsum("nk,nkj->j", D, G) + l2 * th)
        for p, g, (m, v) in zip((W, th), grads, state):  # Adam
            m[:] = 0.9 * m + 0.1 * g
            v[:] = 0.999 * v + 0.001 * g * g
            p -= LR * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return {"causes": causes, "threads": n,
            "bias": {c: round(float(W[-1, k]), 3) for k, c in enumerate(causes)},
            "words": {w: [round(float(x), 3) for x in W[j]] for w, j in vocab.items()},
            "rules": {f: round(float(th[j]), 4) for j, f in enumerate(_rule_names())}}


def predict(m: dict, r: dict) -> str:
    """The model's most likely cause for one record, as the doctor computes it (thread_prior.probabilities)."""
    p = thread_prior.probabilities(" ".join(r["words"]), [tuple(x) for x in r["causes"]], m)
    return next(iter(p))


def doctor_pick(m: dict, r: dict) -> str | None:
    """What the doctor answers with the prior: the model's cause where it may overrule the rules (overrules)."""
    first = r["causes"][0] if r["causes"] else (None, None)
    return predict(m, r) if thread_prior.overrules(*first) else first[0]


def cv(recs: list[dict], splits: list[str], folds: int = 5, **kw) -> list[dict]:
    """Fold i holds out splits[i::folds]; each is predicted by a model fitted on every other record."""
    rows = []
    for i in range(folds):
        held = set(splits[i::folds])
        m = fit([r for r in recs if r["split"] not in held], **kw)
        for r in recs:
            if r["split"] in held:
                first = r["causes"][0] if r["causes"] else None
                rows.append({"name": r["name"], "split": r["split"], "label": r["label"],
                             "rules": first[0] if first else None,
                             "how": thread_prior.rule_features([tuple(first)], first[0])[0].split(":")[1]
                             if first else "silent",
                             "model": predict(m, r), "doctor": doctor_pick(m, r)})
    return rows


def tally(rows: list[dict]) -> dict:
    out = {"n": len(rows), **{k: sum(x[k] == x["label"] for x in rows) for k in ("rules", "model", "doctor")}}
    by: dict[str, dict] = {}
    for x in rows:
        b = by.setdefault(x["how"], {"n": 0, "rules": 0, "model": 0})
        b["n"] += 1
        b["rules"] += x["rules"] == x["label"]
        b["model"] += x["model"] == x["label"]
    out["by_how_the_rules_knew"] = dict(sorted(by.items()))
    return out

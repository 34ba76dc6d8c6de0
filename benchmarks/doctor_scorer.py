"""The learned re-ranking tried in session 9 (issue 15), kept as the experiment it was: plain Python, no numpy.

    score(cause) = w . features(cause) ;  P(cause | report) = softmax over the known causes

Features of one candidate cause for one report:
- what the rules said about it: listed first, second or later, and how it is known (proven, script, numbers,
  inferred), with the first place crossed with its strength;
- the report's words: a naive-Bayes score of the cause given the words of the pasted text and the script (word sets,
  each cause's word rate smoothed toward the corpus rate, the mean log ratio per word so that a long paste does not
  shout), weighted apart when the rules listed nothing or only inferred their first cause;
- a per-cause bias (the corpus' prior).

Fitted and measured by benchmarks/fit_doctor.py (leave-one-split-out, with the rules each split was first measured
with). It was not adopted into qlorafit.doctor: the label is listed behind the rules' first cause in 9 of 161 threads
(the ceiling of any re-ranking), re-ranking changed two answers and made one worse, and the one gain (naming a cause
where the rules of the time were silent) is a case the doctor on main no longer has: since session 8 it presumes an
OOM wherever a failure is told and names a cause, and stays silent only where no failure is told.
"""

import math

from qlorafit.doctor.thread_prior import words  # the one tokenizer of reports

PRIOR_DOCS = 2.0  # the corpus-wide word rate counts as this many reports of each cause



def summary(causes, oom_kind, text: str) -> dict:
    """What the scorer reads of one diagnosis: the rules' causes in order as (id, strength), the out-of-memory kind,
    and the report's words."""
    return {"causes": [list(c) for c in causes], "oom": oom_kind, "words": sorted(words(text))}


def nb_scores(words_: set, nb: dict, leave_out: str | None = None) -> dict[str, float]:
    """Per cause: how much more often the report's known words occur in that cause's reports than in all reports,
    as the mean log ratio per word, centred so that the best cause is 0. A cause's word rate is smoothed toward the
    corpus rate (a prior worth PRIOR_DOCS reports), so that a cause seen in one report does not claim every word.
    `leave_out` takes one training report (of that label) out of the counts first: the fitter scores training reports
    as if unseen."""
    df, docs, counts = nb["df"], nb["docs"], nb["counts"]
    known = [w for w in words_ if w in df]
    if not known:
        return {c: 0.0 for c in docs}
    total = sum(docs.values()) - (1 if leave_out else 0)
    out = {}
    for c, n in docs.items():
        own = counts.get(c, {})
        drop = 1 if c == leave_out else 0
        ll = 0.0
        for w in known:  # every known word is in the report, so a left-out report held it
            p_w = (df[w] - (1 if leave_out else 0) + 1) / (total + 2)
            ll += math.log((own.get(w, 0) - drop + PRIOR_DOCS * p_w) / (n - drop + PRIOR_DOCS) / p_w)
        out[c] = ll / len(known)
    top = max(out.values())
    return {c: v - top for c, v in out.items()}


def features(s: dict, cause: str, nb: dict[str, float]) -> dict[str, float]:
    """The features of one candidate cause for one report (summary `s`, naive-Bayes scores `nb`)."""
    ids = [c for c, _ in s["causes"]]
    f = {f"bias:{cause}": 1.0}
    if cause in ids:
        i = ids.index(cause)
        strength = s["causes"][i][1] or "inferred"
        rank = ("rank1", "rank2")[i] if i < 2 else "rank3+"
        f[rank] = 1.0
        f[f"strength:{strength}"] = 1.0
        if i == 0:
            f[f"rank1:{strength}"] = 1.0
    silent = not ids
    weak = bool(ids) and (s["causes"][0][1] or "inferred") == "inferred"
    key = "nb:silent" if silent else "nb:weak" if weak else "nb"
    f[key] = nb.get(cause, min(nb.values(), default=0.0))
    return f


def scores(s: dict, model: dict, leave_out: str | None = None) -> dict[str, float]:
    """P(cause | report) over every cause the model knows and every cause the rules listed."""
    nb = nb_scores(set(s["words"]), model["nb"], leave_out)
    w = model["weights"]
    cands = list(dict.fromkeys(list(model["nb"]["docs"]) + [c for c, _ in s["causes"]]))
    raw = {c: sum(w.get(k, 0.0) * v for k, v in features(s, c, nb).items()) for c in cands}
    top = max(raw.values())
    z = sum(math.exp(v - top) for v in raw.values())
    return {c: math.exp(v - top) / z for c, v in sorted(raw.items(), key=lambda kv: -kv[1])}


# -- fitting ------------------------------------------------------------------------------------------------------

L2 = 0.1  # on every weight (the data term is a mean over reports): about 160 reports and a few dozen weights
MIN_DOCS = 2  # a word in fewer training reports than this is not counted (it cannot generalize)
STEPS = 400


def fit_nb(train: list[dict]) -> dict:
    """Word-set counts per labelled cause, over words in at least MIN_DOCS training reports."""
    df: dict[str, int] = {}
    for r in train:
        for w in r["words"]:
            df[w] = df.get(w, 0) + 1
    keep = {w for w, k in df.items() if k >= MIN_DOCS}
    docs: dict[str, int] = {}
    counts: dict[str, dict[str, int]] = {}
    for r in train:
        docs[r["label"]] = docs.get(r["label"], 0) + 1
        own = counts.setdefault(r["label"], {})
        for w in r["words"]:
            if w in keep:
                own[w] = own.get(w, 0) + 1
    return {"df": {w: df[w] for w in sorted(keep)}, "docs": dict(sorted(docs.items())), "counts": counts}


def fit_weights(train: list[dict], nb: dict, l2: float = L2, steps: int = STEPS) -> dict[str, float]:
    """Conditional logit (softmax over the candidate causes) by full-batch gradient descent with momentum; training
    reports are scored leave-one-out by the naive Bayes so that its weight is what it earns on unseen words."""
    rows = []
    for r in train:
        nbs = nb_scores(set(r["words"]), nb, leave_out=r["label"])
        cands = list(dict.fromkeys(list(nb["docs"]) + [c for c, _ in r["causes"]] + [r["label"]]))
        rows.append(([features(r, c, nbs) for c in cands], cands.index(r["label"])))
    w: dict[str, float] = {}
    vel: dict[str, float] = {}
    lr, mom = 0.5, 0.8
    for _ in range(steps):
        grad = {k: l2 * v for k, v in w.items()}
        for feats, y in rows:
            raw = [sum(w.get(k, 0.0) * v for k, v in f.items()) for f in feats]
            top = max(raw)
            ex = [math.exp(v - top) for v in raw]
            z = sum(ex)
            for i, f in enumerate(feats):
                g = ex[i] / z - (1.0 if i == y else 0.0)
                for k, v in f.items():
                    grad[k] = grad.get(k, 0.0) + g * v / len(rows)
        for k, g in grad.items():
            vel[k] = mom * vel.get(k, 0.0) - lr * g
            w[k] = w.get(k, 0.0) + vel[k]
    return {k: v for k, v in sorted(w.items()) if abs(v) >= 1e-6}


def fit(train: list[dict], l2: float = L2) -> dict:
    nb = fit_nb(train)
    return {"nb": nb, "weights": fit_weights(train, nb, l2)}


def predict(r: dict, model: dict) -> str:
    return next(iter(scores(r, model)))

"""Refit the classifier refusal instrument's head (probes/data/refusal_classifier.json) and measure it held out.

Training data: uncensorbench's labelled replies (promptsets.uncensorbench_labelled) and the `train` split of this
harness's own labelled replies (promptsets.harness_labels); the `test` split is never fitted on. Off-topic rows are
added to every training set: a training request paired with a complying reply to another training request (one whose
request embedding has cosine < OFF_TOPIC_MAX_REQUEST_COSINE with it), labelled refusal, because the refusal definition
counts an off-topic reply as a refusal and neither labelled set holds many. C is chosen by grouped cross-validation
(every reply to one request in one fold); the threshold is the lowest of 0.5..0.95 whose grouped out-of-fold
specificity on the training rows reaches TARGET_SPECIFICITY. Every reply longer than its cut also gets a "cut twin"
(its opening cut to 60..240 characters, same label) so the head cannot use length as a cue. Held-out figures written into the head file:
  (a) fitted on uncensorbench only -> the whole harness set;
  (b) fitted on the harness train split only -> uncensorbench;
  (c) the shipped fit (uncensorbench + harness train) -> the harness test split;
  (d) the shipped fit -> pyrit's human-labelled refusal-scorer sets (never fitted on);
  (e) the shipped fit -> the authored replies (promptsets/data/authored_replies.jsonl; fitted on only with
      --fit-authored, which measured worse held out);
each also on off-topic pairs built from its evaluation set. Folds are drawn over the fitting and harness requests
first, so the measured-only sets never move a training row's fold. Prediction cost (encoder included) is timed over the
harness set's replies on this machine. `--compare` first prints the same figures for the candidate feature recipes.

    source scripts/_venv.sh && python scripts/fit_refusal_classifier.py [--compare] [--embedding-cache /tmp/x.npz]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from quantscreen.probes import refusal_classifier as rc  # noqa: E402
from quantscreen.records.atomic import write_atomic

SEED = 0
FOLDS = 5
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
TARGET_SPECIFICITY = 0.95  # the threshold is the lowest of THRESHOLDS whose out-of-fold specificity reaches this
THRESHOLDS = tuple(round(0.5 + 0.025 * k, 3) for k in range(19))  # 0.5 .. 0.95
OFF_TOPIC_MAX_REQUEST_COSINE = 0.5
OFF_TOPIC_WEIGHT = 0.5  # sample weight of an off-topic row (a labelled row weighs 1)
CUT_WEIGHT = 0.5  # sample weight of a cut twin
RECIPE = ("opening", "request_x_opening", "cosine_opening", "low_relation", "echo", "regex")  # chosen with --compare
AUGMENT = ("off_topic", "cut")
EVALUATION_ONLY = ("pyrit", "authored")  # measured on, never fitted on (unless --fit-authored)
CANDIDATES = {  # name -> (recipe, augmentations)
    "reply-only+cut": (("opening", "regex"), ("cut",)),
    "v1: product+cosines+offtopic+cut": (RECIPE, AUGMENT),
    "v1+repetition": ((*RECIPE, "repetition"), AUGMENT),
    "v1+sentence+repetition": (("opening", "sentence", "request_x_opening", "cosine_opening", "low_relation", "echo",
                                "regex", "repetition"), AUGMENT),
}


class Table:
    """Every labelled row of both sets with its embeddings, the part it belongs to and its group (the request)."""

    def __init__(self, parts: dict, encoder_path: str, cache: Path | None):
        self.parts = parts
        self.requests, self.replies, labels, names = [], [], [], []
        for name, ls in parts.items():
            self.requests += ls.requests
            self.replies += ls.replies
            labels += ls.refusal
            names += [name] * len(ls)
        # every reply longer than its cut gets a twin row: its opening cut short at a word boundary, same label
        self.twin = np.full(len(labels), -1)
        for i in range(len(self.twin)):
            short = _cut(self.replies[i], random.Random(rc.pair_digest(self.requests[i], self.replies[i])))
            if short is not None:
                self.twin[i] = len(self.replies)
                self.requests.append(self.requests[i])
                self.replies.append(short)
                labels.append(labels[i])
                names.append(names[i] + "/cut")
        self.labels, self.part = np.array(labels, dtype=bool), np.array(names)
        self.emb = _cached_embeddings(self.requests, self.replies, encoder_path, cache)
        # folds by request: the fitting and harness parts' requests first (the folds of the shipped fit), then the
        # requests only the measured-only parts hold, so adding an evaluation set never moves a training row's fold
        core = [q for q, n in zip(self.requests, names) if n.split("/")[0] not in EVALUATION_ONLY]
        groups = sorted(set(core))
        random.Random(SEED).shuffle(groups)
        extra = sorted(set(self.requests) - set(groups))
        random.Random(SEED + 1).shuffle(extra)
        fold_of = {g: i % FOLDS for i, g in enumerate(groups + extra)}
        self.fold = np.array([fold_of[q] for q in self.requests])

    def where(self, *names) -> np.ndarray:
        return np.flatnonzero(np.isin(self.part, names))

    def off_topic(self, idx: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(request row, reply row) pairs: each complying row's request with another request's complying reply."""
        rng = random.Random(seed)
        comply = [int(i) for i in idx if not self.labels[i]]
        sims = self.emb["request"][comply] @ self.emb["request"][comply].T
        req, rep = [], []
        for a, i in enumerate(comply):
            others = [comply[b] for b in range(len(comply))
                      if sims[a, b] < OFF_TOPIC_MAX_REQUEST_COSINE and self.requests[comply[b]] != self.requests[i]]
            if others:
                req.append(i)
                rep.append(rng.choice(others))
        return np.array(req, dtype=int), np.array(rep, dtype=int)

    def design(self, recipe, req: np.ndarray, rep: np.ndarray) -> np.ndarray:
        return rc.features(recipe, [self.replies[i] for i in rep], self.rows(req, rep))

    def rows(self, req, rep) -> dict:
        """The embeddings of (request row, reply row) pairs, by kind."""
        return {k: v[req if k == "request" else rep] for k, v in self.emb.items()}

    def training(self, idx, recipe, augment=()):
        """Features, labels, sample weights and (request row, reply row) pairs of a training set, with the rows of
        each augmentation in `augment` appended: "off_topic" (labelled refusal) and "cut" (the cut twins)."""
        idx = np.asarray(idx)
        req, rep, weight = [idx], [idx], [np.ones(len(idx))]
        if "off_topic" in augment:
            oreq, orep = self.off_topic(idx, SEED)
            req, rep, weight = req + [oreq], rep + [orep], weight + [np.full(len(oreq), OFF_TOPIC_WEIGHT)]
        if "cut" in augment:
            twins = self.twin[idx][self.twin[idx] >= 0]
            req, rep, weight = req + [twins], rep + [twins], weight + [np.full(len(twins), CUT_WEIGHT)]
        req, rep, weight = np.concatenate(req), np.concatenate(rep), np.concatenate(weight)
        y = self.labels[rep].copy()
        y[req != rep] = True  # an off-topic pair is a refusal whatever its reply's own label
        return self.design(recipe, req, rep), y, weight, req, rep


def _cut(reply: str, rng: random.Random) -> str | None:
    """The reply's opening cut to 60..240 characters at a word boundary, or None when it is already that short."""
    text = reply.strip()[:rc.OPENING_CHARS]
    limit = rng.randint(60, 240)
    if len(text) <= limit + 20:
        return None
    head = text[:limit]
    return head[:head.rfind(" ")] if " " in head else head


def _cached_embeddings(requests, replies, encoder_path, cache: Path | None) -> dict:
    """rc.embeddings of every row; with `cache`, each text's vector is kept in an npz file (keyed by the encoder's
    digest and the text's) so a rerun embeds only the texts it has not seen."""
    if not cache:
        return rc.embeddings(requests, replies, encoder_path)
    from quantscreen.records.digest import sha256_json

    enc = rc.encoder_sha256(encoder_path)
    texts = rc.texts_of(requests, replies)
    known = {}
    if cache.is_file():
        data = np.load(cache)
        known = dict(zip(data["keys"].tolist(), data["vectors"]))
    out = {}
    for kind, items in texts.items():
        keys = [sha256_json([enc, t if t.strip() else " "]) for t in items]
        missing = sorted({t for t, k in zip(items, keys) if k not in known})
        if missing:
            known.update(zip([sha256_json([enc, t if t.strip() else " "]) for t in missing],
                             rc.embed_texts(missing, encoder_path)))
        out[kind] = np.stack([known[k] for k in keys])
    np.savez(cache, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
    return out


def figures(y, flagged) -> dict:
    y, flagged = np.asarray(y, bool), np.asarray(flagged, bool)
    tp, tn = int((y & flagged).sum()), int((~y & ~flagged).sum())
    fp, fn = int((~y & flagged).sum()), int((y & ~flagged).sum())
    ratio = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    return {"n": len(y), "refusals": int(y.sum()), "compliances": int((~y).sum()), "tp": tp, "tn": tn, "fp": fp,
            "fn": fn, "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp), "accuracy": ratio(tp + tn, len(y))}


def predict(w, b, x) -> np.ndarray:
    return rc._sigmoid(x @ w + b)


def choose_c(tab: Table, idx, recipe, augment) -> tuple[float, dict]:
    """The C with the best grouped-CV accuracy on `idx` (the smaller C on ties), and every C's CV accuracy."""
    idx = np.asarray(idx)
    scores = {}
    for c in C_GRID:
        right = 0
        for k in range(FOLDS):
            train, test = idx[tab.fold[idx] != k], idx[tab.fold[idx] == k]
            if not len(test):
                continue
            x, y, weight, _, _ = tab.training(train, recipe, augment)
            w, b = rc.fit_logistic(x, y, c, weight)
            right += int(((predict(w, b, tab.design(recipe, test, test)) >= 0.5) == tab.labels[test]).sum())
        scores[c] = round(right / len(idx), 4)
    best = max(C_GRID, key=lambda c: (scores[c], -c))
    return best, scores


def choose_threshold(tab: Table, idx, recipe, augment, c) -> tuple[float, dict]:
    """The lowest threshold whose grouped out-of-fold specificity on `idx` reaches TARGET_SPECIFICITY (else the
    highest), and the out-of-fold figures at it."""
    idx = np.asarray(idx)
    p = np.zeros(len(tab.labels))
    for k in range(FOLDS):
        train, test = idx[tab.fold[idx] != k], idx[tab.fold[idx] == k]
        x, y, weight, _, _ = tab.training(train, recipe, augment)
        w, b = rc.fit_logistic(x, y, c, weight)
        p[test] = predict(w, b, tab.design(recipe, test, test))
    y = tab.labels[idx]
    ok = [t for t in THRESHOLDS if figures(y, p[idx] >= t)["specificity"] >= TARGET_SPECIFICITY]
    t = ok[0] if ok else THRESHOLDS[-1]
    return t, figures(y, p[idx] >= t)


def held_out(tab: Table, train, test, recipe, augment) -> dict:
    c, cv = choose_c(tab, train, recipe, augment)
    threshold, oof = choose_threshold(tab, train, recipe, augment, c)
    x, y, weight, _, _ = tab.training(train, recipe, augment)
    w, b = rc.fit_logistic(x, y, c, weight)
    flagged = predict(w, b, tab.design(recipe, test, test)) >= threshold
    oreq, orep = tab.off_topic(test, SEED + 1)
    off = predict(w, b, tab.design(recipe, oreq, orep)) >= threshold
    return {"C": c, "threshold": threshold, "cv_accuracy_by_C_at_0.5": {str(k): v for k, v in cv.items()},
            "out_of_fold_at_threshold": oof, **figures(tab.labels[test], flagged),
            "off_topic_pairs": len(oreq), "off_topic_called_refusal": round(float(off.mean()), 4) if len(off) else None}


def timing(head: dict, encoder_path: str, requests, replies) -> dict:
    rc.refusal_probabilities(requests[:2], replies[:2], encoder_path, head)  # load the encoder outside the timing
    start = time.perf_counter()
    rc.refusal_probabilities(requests, replies, encoder_path, head)
    elapsed = time.perf_counter() - start
    return {"ms_per_reply": round(1000 * elapsed / len(replies), 2), "replies": len(replies),
            "mean_reply_chars": round(float(np.mean([len(r) for r in replies])), 1),
            "torch_threads": _torch_threads(), "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine()}


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def row(name: str, f: dict) -> str:
    return (f"{name:<44} {f['n']:>4} {f['sensitivity']!s:>6} {f['specificity']!s:>6} {f['accuracy']!s:>6} "
            f"{f['fp']:>3} {f['fn']:>3} {f['off_topic_called_refusal']!s:>7}  C={f['C']} t={f.get('threshold', 0.5)}")


HEADER = f"{'held-out figure':<44} {'n':>4} {'sens':>6} {'spec':>6} {'acc':>6} {'fp':>3} {'fn':>3} {'offtop':>7}"


def out_of_fold(tab: Table, idx, recipe, augment) -> dict:
    """Grouped cross-validation figures on `idx` itself (each fold predicted by a head fitted on the others)."""
    idx = np.asarray(idx)
    c, cv = choose_c(tab, idx, recipe, augment)
    flagged, off = np.zeros(len(tab.labels), bool), []
    for k in range(FOLDS):
        train, test = idx[tab.fold[idx] != k], idx[tab.fold[idx] == k]
        x, y, weight, _, _ = tab.training(train, recipe, augment)
        w, b = rc.fit_logistic(x, y, c, weight)
        flagged[test] = predict(w, b, tab.design(recipe, test, test)) >= 0.5
        oreq, orep = tab.off_topic(test, SEED + 1)
        off += list(predict(w, b, tab.design(recipe, oreq, orep)) >= 0.5)
    return {"C": c, "cv_accuracy_by_C": {str(k): v for k, v in cv.items()}, **figures(tab.labels[idx], flagged[idx]),
            "off_topic_pairs": len(off), "off_topic_called_refusal": round(float(np.mean(off)), 4) if off else None}


def fitting_rows(tab: Table, fit_authored: bool = False) -> np.ndarray:
    """The rows the shipped head is fitted on: uncensorbench (+ the authored replies with --fit-authored) + the
    harness train split."""
    parts = ("uncensorbench", "authored", "harness_train") if fit_authored else ("uncensorbench", "harness_train")
    return np.concatenate([tab.where(n) for n in parts])


def evaluate(tab: Table, recipe, augment, fit_authored: bool = False) -> dict:
    if not len(tab.where("harness_train")):
        return {"cv_uncensorbench_grouped": out_of_fold(tab, tab.where("uncensorbench"), recipe, augment)}
    ub, au, h_train, h_test = (tab.where(n) for n in ("uncensorbench", "authored", "harness_train", "harness_test"))
    wheel = np.concatenate([ub, au]) if fit_authored else ub
    shipped = fitting_rows(tab, fit_authored)
    out = {f"a_uncensorbench{'+authored' if fit_authored else ''}_to_harness_all":
           held_out(tab, wheel, np.concatenate([h_train, h_test]), recipe, augment),
           "b_harness_train_to_uncensorbench": held_out(tab, h_train, ub, recipe, augment),
           "c_shipped_to_harness_test": held_out(tab, shipped, h_test, recipe, augment)}
    if len(tab.where("pyrit")):
        out["d_shipped_to_pyrit"] = held_out(tab, shipped, tab.where("pyrit"), recipe, augment)
    if len(au) and not fit_authored:
        out["e_shipped_to_authored"] = held_out(tab, shipped, au, recipe, augment)
    return out


def _parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=rc.HEAD_PATH)
    ap.add_argument("--compare", action="store_true", help="first print held-out figures of the candidate recipes")
    ap.add_argument("--embedding-cache", type=Path, help="npz file that keeps the embeddings between runs")
    ap.add_argument("--labelled-replies", type=Path, default=None,
                    help="the harness's labelled replies (default: promptsets/data/labelled_replies.jsonl)")
    ap.add_argument("--fit-authored", action="store_true",
                    help="also fit on the authored replies (measured: worse held out; see BENCHMARKS.md)")
    ap.add_argument("--without-harness", action="store_true",
                    help="fit on uncensorbench alone (figures: grouped CV on it) while the harness set is missing")
    return ap.parse_args(argv)


def _provenance(encoder, tab, parts: dict, held: dict, req, rep, fit_authored: bool) -> dict:
    """What the head file records beside the fitted weights: the definition, encoder, grid, augmentation, the sets
    it was fitted on and its held-out figures."""
    from quantscreen.probes.refusal_definition import DEFINITION_VERSION

    return {
        "definition": DEFINITION_VERSION,
        "encoder": {k: getattr(encoder, k) for k in ("package", "version", "path_inside", "sha256")},
        "C_grid": list(C_GRID), "cv_folds": FOLDS, "seed": SEED,
        "threshold_rule": f"lowest of 0.5..0.95 (step 0.025) with grouped out-of-fold specificity >= "
                          f"{TARGET_SPECIFICITY} on the training rows",
        "augmentation": {"off_topic_rows": int((req != rep).sum()), "off_topic_weight": OFF_TOPIC_WEIGHT,
                         "off_topic_max_request_cosine": OFF_TOPIC_MAX_REQUEST_COSINE,
                         "cut_rows": int(np.isin(rep, tab.twin[tab.twin >= 0]).sum()), "cut_weight": CUT_WEIGHT,
                         "cut_chars": [60, 240]},
        "training_sets": [{"name": name, "split": "train" if name == "harness_train" else "all",
                           "package": ls.source.package, "version": ls.source.version,
                           "path_inside": ls.source.path_inside, "sha256": ls.source.sha256, "rows": len(ls),
                           "refusals": int(sum(ls.refusal)), "compliances": int(len(ls) - sum(ls.refusal))}
                          for name, ls in parts.items()
                          if name not in ("harness_test", *EVALUATION_ONLY) or (name == "authored" and fit_authored)],
        "held_out_test_set": {"name": "harness_test", "sha256": parts["harness_test"].source.sha256,
                              "rows": len(parts["harness_test"])} if "harness_test" in parts else None,
        "held_out": held,
        "fitted_by": "scripts/fit_refusal_classifier.py",
    }


def main(argv=None) -> int:
    args = _parse_args(argv)

    from quantscreen import promptsets
    from quantscreen.engine.sources import minilm_encoder
    from quantscreen.promptsets import harness_labels, labelled

    encoder = minilm_encoder()
    parts = {"uncensorbench": promptsets.uncensorbench_labelled()}
    if not args.without_harness:
        path = args.labelled_replies or harness_labels.PATH
        parts.update(harness_train=harness_labels.load("train", path), harness_test=harness_labels.load("test", path))
    parts["authored"] = labelled.authored_labelled()  # written for the project; measured on (or --fit-authored)
    parts["pyrit"] = promptsets.pyrit_refusal_labelled()  # human-labelled, held out: measured, never fitted on
    tab = Table(parts, encoder.path, args.embedding_cache)

    done = {}
    if args.compare:
        print(HEADER)
        for name, (recipe, augment) in CANDIDATES.items():
            done[recipe, augment] = evaluate(tab, recipe, augment, args.fit_authored)
            for key, f in done[recipe, augment].items():
                print(row(f"{name}: {key}", f), flush=True)
        print()

    held = done.get((RECIPE, AUGMENT)) or evaluate(tab, RECIPE, AUGMENT, args.fit_authored)
    train = fitting_rows(tab, args.fit_authored)
    shipped = held["c_shipped_to_harness_test" if "harness_test" in parts else "cv_uncensorbench_grouped"]
    c, threshold = shipped["C"], shipped.get("threshold", 0.5)
    _, y, weight, req, rep = tab.training(train, RECIPE, AUGMENT)
    head = rc.fit_head([tab.requests[i] for i in req], [tab.replies[i] for i in rep], y, encoder.path, RECIPE, c,
                       threshold, emb=tab.rows(req, rep), sample_weight=weight)
    head.update(_provenance(encoder, tab, parts, held, req, rep, args.fit_authored))
    everyone = tab.where("harness_train", "harness_test") if "harness_test" in parts else tab.where("uncensorbench")
    head["timing"] = timing(head, encoder.path, [tab.requests[i] for i in everyone],
                            [tab.replies[i] for i in everyone])
    head["training_pair_digests"] = head.pop("training_pair_digests")  # the long list last, for readers of the file
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out, json.dumps(head, indent=1) + "\n")

    print(f"{rc.CLASSIFIER_VERSION}: recipe {'+'.join(RECIPE)}, C={c}, threshold {threshold}, "
          f"{len(head['training_pair_digests'])} distinct training pairs (augmentation {head['augmentation']})")
    print(HEADER)
    for key, f in held.items():
        print(row(key, f))
    t = head["timing"]
    print(f"prediction: {t['ms_per_reply']} ms/reply over {t['replies']} replies (encoder included, "
          f"{t['torch_threads']} torch threads, {t['cpu_count']} CPUs); wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

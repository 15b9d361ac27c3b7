"""A tiny built-in stand-in for GLUE, so that code and notebooks run with no data at all.

Every sentence comes from the templates below, written for this project: nothing is copied
from GLUE. It is a SAMPLE, not GLUE, and numbers measured on it say nothing about GLUE.
The labels follow simple rules the templates make learnable, in GLUE's label conventions.
"""
import random

NOUNS = ["film", "story", "cast", "soundtrack", "script", "ending", "director", "plot", "camera work", "lead actor"]
GOOD = ["wonderful", "moving", "clever", "delightful", "gripping", "charming", "brilliant", "warm", "funny", "fresh"]
BAD = ["dull", "clumsy", "tedious", "messy", "lifeless", "boring", "shallow", "awkward", "stale", "painful"]
PEOPLE = ["the teacher", "the farmer", "a student", "the doctor", "my neighbour", "the pilot", "a child", "the baker"]
OBJECTS = ["a letter", "the bicycle", "a cake", "the old map", "a red kite", "the piano", "a small boat", "the garden"]
VERBS = [("wrote", "penned"), ("fixed", "repaired"), ("bought", "purchased"), ("found", "discovered"),
         ("painted", "coloured"), ("sold", "traded away"), ("cleaned", "washed"), ("built", "constructed")]
PLACES = ["in the morning", "near the river", "after lunch", "in the village", "before the storm", "at the market"]


def _sst2(r):
    good = r.random() < 0.5
    return (f"the {r.choice(NOUNS)} is {r.choice(GOOD if good else BAD)} and "
            f"the {r.choice(NOUNS)} feels {r.choice(GOOD if good else BAD)} .", None, int(good))


def _cola(r):
    who, what, (verb, _) = r.choice(PEOPLE), r.choice(OBJECTS), r.choice(VERBS)
    words = f"{who} {verb} {what} {r.choice(PLACES)}".split()
    if r.random() < 0.5:
        return " ".join(words).capitalize() + ".", None, 1
    r.shuffle(words)  # scrambled word order: unacceptable
    return " ".join(words).capitalize() + ".", None, 0


def _event(r):
    return r.choice(PEOPLE), r.choice(VERBS), r.choice(OBJECTS), r.choice(PLACES)


def _paraphrase(r):
    who, (verb, synonym), what, when = _event(r)
    first = f"{who.capitalize()} {verb} {what} {when}."
    if r.random() < 0.5:
        return first, f"{when.capitalize()}, {who} {synonym} {what}.", 1
    other_who, (other_verb, _), other_what, _ = _event(r)
    return first, f"{other_who.capitalize()} {other_verb} {other_what} {when}.", 0


def _similarity(r):
    who, (verb, synonym), what, when = _event(r)
    first = f"{who.capitalize()} {verb} {what} {when}."
    kept = r.randint(0, 3)  # how many of who / verb / what survive in the second sentence
    parts = [who if kept >= 1 else r.choice(PEOPLE), synonym if kept >= 2 else r.choice(VERBS)[1],
             what if kept >= 3 else r.choice(OBJECTS)]
    score = [0.4, 1.6, 3.2, 4.8][kept] + round(r.uniform(-0.2, 0.2), 2)
    return first, f"{parts[0].capitalize()} {parts[1]} {parts[2]} {when}.", score


def _inference(r, three_way):
    who, (verb, _), what, when = _event(r)
    premise = f"{who.capitalize()} {verb} {what} {when}, and everyone saw it."
    kind = r.randrange(3 if three_way else 2)
    if kind == 0:
        hypothesis = f"{who.capitalize()} {verb} {what}."  # entailed
    elif kind == 1:
        hypothesis = f"{who.capitalize()} never {verb} anything {when}."  # contradicted
    else:
        hypothesis = f"{who.capitalize()} was paid well for it."  # neither
    if three_way:  # MNLI: entailment 0, neutral 1, contradiction 2
        return premise, hypothesis, {0: 0, 1: 2, 2: 1}[kind]
    return premise, hypothesis, kind  # RTE: entailment 0, not_entailment 1


def _question(r):
    who, (verb, _), what, when = _event(r)
    question = f"What did {who} do {when}?"
    if r.random() < 0.5:
        return question, f"{when.capitalize()}, {who} {verb} {what}.", 0  # answers it: entailment
    return question, f"{r.choice(PEOPLE).capitalize()} lives {r.choice(PLACES)}.", 1


def _coreference(r):
    a, b = r.sample(PEOPLE, 2)
    sentence = f"{a.capitalize()} thanked {b} because {b} had helped with {r.choice(OBJECTS)}."
    helper = b if r.random() < 0.5 else a
    return sentence, f"{helper.capitalize()} had helped.", int(helper == b)  # WNLI: 1 = entailment


GENERATORS = {"sst2": _sst2, "cola": _cola, "mrpc": _paraphrase, "qqp": _paraphrase, "stsb": _similarity,
              "mnli": lambda r: _inference(r, True), "rte": lambda r: _inference(r, False),
              "qnli": _question, "wnli": _coreference}
SIZES = {"train": 400, "dev": 120, "dev_mismatched": 120}


def sample_examples(task: str, split: str) -> list:
    """``[(text_a, text_b or None, label), ...]`` for ``task`` and ``split``, always the same."""
    r = random.Random(f"{task}/{split}")  # a string seed: stable across Python runs
    return [GENERATORS[task](r) for _ in range(SIZES[split])]

"""Generate ``helpfulness_ranked.jsonl``: a small, synthetic, ranked "helpfulness" data set for reward models.

Every group is one user question with K=4 completions and gold ranks (0 = best):

0. helpful: on-topic, specific (concrete tips for the question asked) and polite;
1. vague: on-topic but short and unspecific;
2. off-topic: a polite, specific answer to a question from a *different* topic;
3. rude: a dismissive or insulting refusal (sometimes naming the topic, so topic overlap alone is not enough).

Length does not give the order away (helpful and off-topic answers are both long, vague and rude ones both short),
and each level is drawn from several templates so no single token separates them. Topics are held out: the test
split uses topics that never appear in train, so held-out accuracy measures generalisation to unseen subjects.

Deterministic (fixed seed, stdlib only). Run from anywhere::

    python scripts/make_reward_data.py            # writes recipes/data/helpfulness_ranked.jsonl
    python scripts/make_reward_data.py --out x.jsonl

The topics (subjects, tasks and tips) are in scripts/data/reward_topics.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

SEED = 20240607
K = 4
N_TEST_TOPICS = 10
TRAIN_GROUPS = 600
TEST_GROUPS_PER_TOPIC = 12
OUT_PATH = Path(__file__).resolve().parents[1] / "recipes" / "data" / "helpfulness_ranked.jsonl"

#: The subjects of the questions, read from a data file: {topic name used in vague/rude replies: {task: [three
#: concrete tips]}}. A task must read naturally after "How do I ...?"; tips are standalone second-person sentences.
TOPICS_PATH = Path(__file__).resolve().parent / "data" / "reward_topics.json"

Topic = tuple[str, list[tuple[str, list[str]]]]


def _refuse_duplicates(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"{TOPICS_PATH}: duplicate keys {duplicates}")
    return dict(pairs)


def load_topics(path: Path = TOPICS_PATH) -> list[Topic]:
    """The topics in file order: [(topic, [(task, tips), ...]), ...]."""
    data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_refuse_duplicates)
    return [(name, list(tasks.items())) for name, tasks in data.items()]


TOPICS: list[Topic] = load_topics()

# --- completion templates ---------------------------------------------------------------------------------------------

QUESTION_TEMPLATES = [
    "How do I {task}?",
    "What's the best way to {task}?",
    "Any tips on how to {task}?",
    "Could you explain how to {task}?",
    "I'm trying to {task}. Where should I start?",
    "I keep struggling to {task}. What am I doing wrong?",
    "What should a beginner know to {task}?",
    "Is there a simple way to {task}?",
    "Can you help me {task}?",
    "What do you recommend if I want to {task}?",
]

HELPFUL_OPENERS = [
    "Great question!",
    "Happy to help.",
    "Sure thing.",
    "Good question, and it's easier than it looks.",
    "Of course!",
    "Glad you asked.",
    "Absolutely, here's what works well.",
    "",
]
HELPFUL_INTROS = [
    "Here are a few things that help when you want to {task}:",
    "To {task}, I'd focus on a few points.",
    "A few practical steps to {task}:",
    "When people want to {task}, these usually make the biggest difference.",
    "This is what I'd suggest if you want to {task}.",
    "",
]
HELPFUL_CLOSERS = [
    "Hope that helps, and good luck!",
    "Let me know if you'd like more detail on any of these.",
    "Feel free to ask if anything is unclear.",
    "Have fun with it!",
    "You've got this.",
    "",
]

VAGUE_TEMPLATES = [
    "It depends. Everyone has their own way to {task}.",
    "You could try a few things and see what works.",
    "There's a lot of info online about {topic}.",
    "Just keep at it and you'll figure out how to {task}.",
    "Hmm, {topic} can be tricky. Maybe try something different?",
    "Not sure exactly, but {topic} usually works out if you're patient.",
    "Maybe ask someone who knows more about {topic}.",
    "I think you just need to {task} a bit better.",
    "Well, people {task} all the time, so it can't be that hard.",
    "Probably just practice. {topic_cap} takes time.",
    "I guess it's about doing it right. Good luck with {topic}.",
    "Try to {task} the normal way and see if that works.",
]

RUDE_TEMPLATES = [
    "That's a ridiculous question. Figure it out yourself.",
    "I'm not helping with {topic}, it's a waste of my time.",
    "Seriously? Just google how to {task}.",
    "No. Ask someone who actually cares about {topic}.",
    "Ugh, everyone knows how to {task}. Stop asking.",
    "Not my problem. Go read a manual.",
    "Why would I explain {topic} to you? Pass.",
    "Do your own homework for once.",
    "I won't answer that. It's obvious.",
    "Honestly, if you can't {task} on your own, just give up.",
    "What a pointless thing to ask. No.",
    "Stop bothering me with {topic} questions.",
]


_SECOND_PERSON = {"i": "you", "i'm": "you're", "i've": "you've", "me": "you", "my": "your", "myself": "yourself"}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _as_reply(task: str) -> str:
    """The task as the answerer would say it ("stop my dog pulling" -> "stop your dog pulling")."""
    return re.sub(r"\b(?:I'm|I've|I|me|my|myself)\b", lambda m: _SECOND_PERSON[m.group(0).lower()], task)


def helpful_answer(rng: random.Random, task: str, tips: list[str]) -> str:
    """A polite, specific answer: an opener, an intro naming the task, 2-3 of its tips in some format, a closer."""
    task = _as_reply(task)
    chosen = rng.sample(tips, k=rng.choice([2, 3, 3]))
    style = rng.randrange(3)
    if style == 0:
        body = " ".join(f"{i}) {tip}" for i, tip in enumerate(chosen, 1))
    elif style == 1:
        links = ["First,", "Also,", "Finally,"] if len(chosen) == 3 else ["First,", "Also,"]
        body = " ".join(f"{link} {tip[0].lower()}{tip[1:]}" for link, tip in zip(links, chosen))
    else:
        body = " ".join(chosen)
    parts = [rng.choice(HELPFUL_OPENERS), rng.choice(HELPFUL_INTROS).format(task=task), body,
             rng.choice(HELPFUL_CLOSERS)]
    return " ".join(p for p in parts if p)


def make_group(
    rng: random.Random, topic: Topic, question: str, task: str, tips: list[str], other_topics: list[Topic]
) -> dict:
    """One ranked group: the four completions (helpful, vague, off-topic, rude) in shuffled order with their ranks."""
    name = topic[0]
    fill = {"task": _as_reply(task), "topic": name, "topic_cap": _cap(name)}
    other_name, other_items = rng.choice(other_topics)
    other_task, other_tips = rng.choice(other_items)
    completions = [
        helpful_answer(rng, task, tips),
        rng.choice(VAGUE_TEMPLATES).format(**fill),
        helpful_answer(rng, other_task, other_tips),  # polite and specific, but answers another question
        rng.choice(RUDE_TEMPLATES).format(**fill),
    ]
    order = list(range(K))
    rng.shuffle(order)  # so position carries no signal
    return {
        "prompt": question,
        "completions": [completions[i] for i in order],
        "ranks": order,  # completions[i] came from level order[i], which is its gold rank
    }


def build(seed: int = SEED) -> list[dict]:
    """All groups, train first then test; deterministic for a given seed."""
    rng = random.Random(seed)
    topics = list(TOPICS)
    names = [t[0] for t in topics]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate topic names in {names}")
    rng.shuffle(topics)
    test_topics, train_topics = topics[:N_TEST_TOPICS], topics[N_TEST_TOPICS:]
    # Spread TRAIN_GROUPS as evenly as possible over the train topics.
    base, extra = divmod(TRAIN_GROUPS, len(train_topics))
    counts = {"train": [base + (i < extra) for i in range(len(train_topics))],
              "test": [TEST_GROUPS_PER_TOPIC] * len(test_topics)}
    rows: list[dict] = []
    for split, split_topics in (("train", train_topics), ("test", test_topics)):
        for topic, n_groups in zip(split_topics, counts[split]):
            # Distinct (task, phrasing) pairs, cycling through tasks so each task is used about equally often.
            items = topic[1]
            n_distinct = len(items) * len(QUESTION_TEMPLATES)
            if n_groups > n_distinct:
                raise ValueError(f"topic {topic[0]!r} has only {n_distinct} distinct questions, need {n_groups}")
            per_item = [rng.sample(QUESTION_TEMPLATES, k=len(QUESTION_TEMPLATES)) for _ in items]
            chosen = [(items[j % len(items)], per_item[j % len(items)][j // len(items)]) for j in range(n_groups)]
            # Off-topic answers come from the same split, so test topics never leak into train.
            others = [t for t in split_topics if t[0] != topic[0]]
            for (task, tips), tpl in chosen:
                group = make_group(rng, topic, tpl.format(task=task), task, tips, others)
                group["split"] = split
                rows.append(group)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_PATH, help=f"output JSONL path (default: {OUT_PATH})")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    rows = build(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    n_train = sum(r["split"] == "train" for r in rows)
    print(f"wrote {len(rows)} groups ({n_train} train, {len(rows) - n_train} test) to {args.out}")


if __name__ == "__main__":
    main()

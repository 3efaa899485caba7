"""Generate ``arithmetic_ranked.jsonl``: a small, checkable, ranked preference data set for DPO on a chat model.

Every group is one conversational arithmetic question ("What is 37 + 48?") with K=4 assistant completions and gold
ranks (0 = best):

0. correct, in one short consistent format:          "37 + 48 = 85."
1. near miss, the same format but off by 1 or 2:     "37 + 48 = 86."
2. clearly wrong, the same format, far off:          "37 + 48 = 121."
3. a refusal / irrelevant reply:                     "Sorry, I can't help with that."

Questions use addition, subtraction (never negative) and small multiplication, in several phrasings. The test split
holds out whole questions: no (operation, operands) pair of a test question appears in train, in either operand
order for + and x. Completions are shuffled within each group (ranks stay aligned), so position carries no signal.

Deterministic (fixed seed, stdlib only). Run from anywhere::

    python scripts/make_dpo_data.py            # writes recipes/data/arithmetic_ranked.jsonl
    python scripts/make_dpo_data.py --seed 1 --out /tmp/other.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 20240611
K = 4
OUT_PATH = Path(__file__).resolve().parents[1] / "recipes" / "data" / "arithmetic_ranked.jsonl"

# Operand ranges, chosen where SmolLM2-135M-Instruct already mostly knows the answer (measured: its log-prob ranks
# the correct result above both +-1 neighbours for ~90 % of these additions, ~97 % of the times-table products and
# ~80 % of these subtractions, against ~70 % / ~58 % for two-digit + and -). DPO then only has to sharpen what the
# model knows, which a LoRA adapter learns in a few CPU minutes; on harder questions held-out accuracy stalls.
ADD_RANGE = (1, 20)   # a + b, both in range
SUB_MAX = 20          # a - b with 1 <= b < a <= SUB_MAX and no borrow (b's units digit <= a's)
MUL_RANGE = (2, 12)   # a x b, both in range (the times tables)
# Groups per operation and split, all distinct questions (there are 210 additions, 127 subtractions and 66 products).
TRAIN_PER_OP = {"+": 155, "-": 104, "*": 41}
TEST_PER_OP = {"+": 55, "-": 20, "*": 25}

# Question phrasings per operation ({a}, {b} are the operands).
PHRASINGS = {
    "+": [
        "What is {a} + {b}?",
        "What is {a} plus {b}?",
        "Calculate {a} + {b}.",
        "What do you get when you add {a} and {b}?",
        "Compute {a} + {b}.",
    ],
    "-": [
        "What is {a} - {b}?",
        "What is {a} minus {b}?",
        "Calculate {a} - {b}.",
        "What do you get when you subtract {b} from {a}?",
        "Compute {a} - {b}.",
    ],
    "*": [
        "What is {a} * {b}?",
        "What is {a} times {b}?",
        "Calculate {a} * {b}.",
        "What do you get when you multiply {a} by {b}?",
        "Compute {a} * {b}.",
    ],
}
SYMBOL = {"+": "+", "-": "-", "*": "*"}

REFUSALS = [
    "Sorry, I can't help with that.",
    "I don't know.",
    "I'm not able to do math.",
    "Let's talk about something else.",
    "That is a hard question.",
    "I prefer not to answer.",
]


def solve(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def answer(op: str, a: int, b: int, value: int) -> str:
    return f"{a} {SYMBOL[op]} {b} = {value}."


def question_key(op: str, a: int, b: int) -> tuple:
    """Identity of a question for the train/test split (+ and x are commutative)."""
    return (op, min(a, b), max(a, b)) if op in "+*" else (op, a, b)


def all_questions() -> dict[str, list[tuple[str, int, int]]]:
    """Every distinct question per operation, one operand order per key (the shown order is drawn later)."""
    lo, hi = ADD_RANGE
    add = [("+", a, b) for a in range(lo, hi + 1) for b in range(a, hi + 1)]
    sub = [("-", a, b) for a in range(2, SUB_MAX + 1) for b in range(1, a) if b % 10 <= a % 10]
    lo, hi = MUL_RANGE
    mul = [("*", a, b) for a in range(lo, hi + 1) for b in range(a, hi + 1)]
    return {"+": add, "-": sub, "*": mul}


def near_miss(rng: random.Random, correct: int) -> int:
    while True:
        value = correct + rng.choice([-2, -1, 1, 2])
        if value >= 0:
            return value


def far_miss(rng: random.Random, correct: int) -> int:
    """A clearly wrong answer: at least 10 away (or about double / half), never negative, never a near miss."""
    while True:
        kind = rng.random()
        if kind < 0.6:
            value = correct + rng.choice([-1, 1]) * rng.randint(10, 40)
        elif kind < 0.8:
            value = correct * 2 + rng.randint(3, 9)
        else:
            value = correct // 2 - rng.randint(3, 9)
        if value >= 0 and abs(value - correct) >= 10:
            return value


def make_group(rng: random.Random, op: str, a: int, b: int, split: str) -> dict:
    correct = solve(op, a, b)
    prompt = rng.choice(PHRASINGS[op]).format(a=a, b=b)
    texts = [
        answer(op, a, b, correct),
        answer(op, a, b, near_miss(rng, correct)),
        answer(op, a, b, far_miss(rng, correct)),
        rng.choice(REFUSALS),
    ][:K]
    order = list(range(K))
    rng.shuffle(order)
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "completions": [[{"role": "assistant", "content": texts[i]}] for i in order],
        "ranks": order,  # texts are listed best-first, so the original index is the rank
        "split": split,
    }


def generate(seed: int = SEED, train_per_op: dict | None = None, test_per_op: dict | None = None) -> list[dict]:
    train_per_op = train_per_op or TRAIN_PER_OP
    test_per_op = test_per_op or TEST_PER_OP
    rng = random.Random(seed)
    train_q, test_q = [], []
    for op, questions in all_questions().items():
        need = test_per_op[op] + train_per_op[op]
        if need > len(questions):
            raise ValueError(f"{need} {op!r} questions requested but only {len(questions)} distinct ones exist")
        picked = rng.sample(questions, need)
        # + and x are commutative: show the operands in a random order (the question key is order-free).
        picked = [(o, b, a) if o in "+*" and rng.random() < 0.5 else (o, a, b) for o, a, b in picked]
        test_q += picked[: test_per_op[op]]
        train_q += picked[test_per_op[op]:]
    rng.shuffle(train_q)
    rng.shuffle(test_q)
    return [make_group(rng, *q, "train") for q in train_q] + [make_group(rng, *q, "test") for q in test_q]


def check(rows: list[dict]) -> None:
    seen: dict[str, set] = {"train": set(), "test": set()}
    for row in rows:
        assert sorted(row["ranks"]) == list(range(K)), row
        contents = [c[0]["content"] for c in row["completions"]]
        assert len(set(contents)) == K, row
        best = contents[row["ranks"].index(0)]
        lhs, rhs = best.rstrip(".").split(" = ")
        x, sym, y = lhs.split()
        assert solve(sym, int(x), int(y)) == int(rhs), row
        assert x in row["prompt"][0]["content"] and y in row["prompt"][0]["content"], row
        key = question_key(sym, int(x), int(y))
        assert key not in seen[row["split"]], f"duplicate question {key}"
        seen[row["split"]].add(key)
    assert not seen["train"] & seen["test"], "test questions leak into train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=OUT_PATH)
    args = parser.parse_args()
    rows = generate(args.seed)
    check(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    n_test = sum(row["split"] == "test" for row in rows)
    print(f"wrote {len(rows)} groups ({len(rows) - n_test} train, {n_test} test, K={K}) to {args.out}")


if __name__ == "__main__":
    main()

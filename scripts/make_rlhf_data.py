"""Generate ``arithmetic_rlhf.jsonl``: the RLHF pipeline's data, the arithmetic questions of ``arithmetic_ranked.jsonl``
split so that 256 whole questions are held out for judging the policy.

The questions, phrasings and ranked completions (correct / near miss / far miss / refusal) are those of
``make_dpo_data.py``; only the split differs. The pipeline judges every stage on the held-out questions, and a
judgement needs enough of them to tell two policies apart (256 prompts: a 95 % interval of about +-0.06 on a score
near 0.5), so every question of the easy ranges is used: 256 held out, the other 147 for training (demonstrations for
SFT, ranked groups for the reward model, prompts for RL). Held-out questions never appear in training, in either
operand order for + and x.

Deterministic (fixed seed, stdlib only)::

    python scripts/make_rlhf_data.py            # writes recipes/data/arithmetic_rlhf.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from make_dpo_data import K, SEED, all_questions, check, generate

OUT_PATH = Path(__file__).resolve().parents[1] / "recipes" / "data" / "arithmetic_rlhf.jsonl"
# Every distinct question (210 +, 127 -, 66 x), about 64 % of each operation held out.
TEST_PER_OP = {"+": 133, "-": 81, "*": 42}
TRAIN_PER_OP = {op: len(questions) - TEST_PER_OP[op] for op, questions in all_questions().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, default=OUT_PATH)
    args = parser.parse_args()
    rows = generate(args.seed, train_per_op=TRAIN_PER_OP, test_per_op=TEST_PER_OP)
    check(rows)
    with open(args.out, "w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    n_test = sum(row["split"] == "test" for row in rows)
    print(f"wrote {len(rows)} groups ({len(rows) - n_test} train, {n_test} test, K={K}) to {args.out}")


if __name__ == "__main__":
    main()

"""Loaders for two public preference data sets, from files on disk: OpenAssistant (oasst1) message trees as ranked
groups, and Anthropic HH-RLHF transcripts as explicit prompt / chosen / rejected pairs."""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, List, Value

from .files import read_json_records

logger = logging.getLogger(__name__)

_HH_ASSISTANT = "\n\nAssistant:"


def _render_oasst_text(turns: list[tuple[str, str]]) -> str:
    speaker = {"user": "User", "assistant": "Assistant"}
    rendered = "\n\n".join(f"{speaker[role]}: {text}" for role, text in turns)
    return rendered + "\n\nAssistant:"


def _is_tree_record(record: dict) -> bool:
    """A line of an OpenAssistant `*.trees.jsonl` file: one conversation tree, its root message under `prompt`."""
    return isinstance(record.get("prompt"), dict) and "replies" in record["prompt"]


def flatten_oasst_trees(trees: list[dict]) -> list[dict]:
    """The messages of OpenAssistant trees (`{"message_tree_id", "prompt": {..., "replies": [...]}}` per tree) as the
    flat message list of the `*.messages.jsonl` files: each message without `replies`, with `parent_id` and
    `message_tree_id` set from the tree. Depth-first, parents before their replies."""
    messages: list[dict] = []
    for position, tree in enumerate(trees):
        if not _is_tree_record(tree):
            raise ValueError(f"tree {position} has no root message with 'replies' under 'prompt'")
        tree_id = tree.get("message_tree_id") or tree["prompt"].get("message_id")
        stack = [(tree["prompt"], None)]
        while stack:
            node, parent = stack.pop()
            message = {k: v for k, v in node.items() if k != "replies"}
            message.setdefault("message_tree_id", tree_id)
            message["parent_id"] = parent
            messages.append(message)
            stack.extend((reply, node.get("message_id")) for reply in reversed(node.get("replies") or []))
    return messages


def load_oasst_ranked(
    path: str | os.PathLike,
    conversational: bool = True,
    include_synthetic: bool = False,
    min_completions: int = 2,
    *,
    drop_contradictory: bool = True,
) -> Dataset:
    """Turn a raw OpenAssistant (oasst1/oasst2) file into a ranked data set.

    Both published formats are read, detected from the content, plain or gzipped: message lists
    (`*.messages.jsonl(.gz)`, one message per line with `message_id` / `parent_id`) and trees (`*.trees.jsonl(.gz)`,
    one conversation tree per line, replies nested under `prompt`); both give the same groups.

    For each parent message, its assistant replies with a non-null ``rank`` form one group: ``prompt`` is the
    conversation from the tree root down to and including the parent, ``completions`` are the replies' texts and
    ``ranks`` their OASST ranks (0 = best; kept as in the file, so they may have gaps where a sibling was deleted
    or left unranked). Columns ``message_tree_id`` and ``parent_id`` identify the group. Groups come in the file
    order of their parents; replies within a group in file order.

    Formats:
        - ``conversational=True``: ``prompt`` is a list of ``{"role": "user"|"assistant", "content"}`` messages and
          each completion is ``[{"role": "assistant", "content": text}]``.
        - ``conversational=False``: ``prompt`` is ``"User: ...\\n\\nAssistant: ...\\n\\nUser: ...\\n\\nAssistant:"``
          (ends with ``"Assistant:"``) and each completion is ``" " + text`` (leading space, the same convention as
          :func:`load_hh_rlhf`, so ``prompt + completion`` reads naturally).

    Deleted messages are skipped, and so are groups whose parent or any ancestor is deleted or missing. With
    ``include_synthetic=False`` synthetic messages are treated the same way. Groups with fewer than
    ``min_completions`` ranked replies are dropped. With ``drop_contradictory=True`` a group in which the same
    reply text has two different ranks is dropped (it carries no consistent preference and would fail
    :func:`validate_ranked_example`); pass False to keep it as-is.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: ``min_completions < 1``, or a message lacking ``message_id`` / ``role`` / ``text``.
    """
    if min_completions < 1:
        raise ValueError(f"min_completions must be >= 1, got {min_completions}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OpenAssistant message file not found: {path}")
    messages = read_json_records(path)
    if messages and _is_tree_record(messages[0]):
        messages = flatten_oasst_trees(messages)
    for line_index, message in enumerate(messages):
        for key in ("message_id", "role", "text"):
            if key not in message:
                raise ValueError(f"{path}: message {line_index} has no field '{key}'")

    def excluded(message: dict) -> bool:
        return bool(message.get("deleted")) or (not include_synthetic and bool(message.get("synthetic")))

    by_id = {message["message_id"]: message for message in messages}
    position = {message["message_id"]: line_index for line_index, message in enumerate(messages)}
    children: dict[str, list[dict]] = defaultdict(list)
    for message in messages:
        if (
            message["role"] == "assistant"
            and message.get("rank") is not None
            and message.get("parent_id") is not None
            and not excluded(message)
        ):
            children[message["parent_id"]].append(message)

    dropped: Counter[str] = Counter()
    rows: dict[str, list] = {"prompt": [], "completions": [], "ranks": [], "message_tree_id": [], "parent_id": []}
    # Unknown parents sort last so a truncated file still gives a deterministic order.
    for parent_id in sorted(children, key=lambda pid: position.get(pid, len(messages))):
        replies = children[parent_id]
        chain: list[dict] = []
        node_id: str | None = parent_id
        broken = False
        while node_id is not None:
            node = by_id.get(node_id)
            if node is None or excluded(node) or len(chain) > len(messages):  # missing, deleted, or a cycle
                broken = True
                break
            chain.append(node)
            node_id = node.get("parent_id")
        if broken:
            dropped["deleted_or_missing_ancestor"] += 1
            continue
        if len(replies) < min_completions:
            dropped[f"fewer_than_{min_completions}_replies"] += 1
            continue
        if drop_contradictory:
            rank_of: dict[str, int] = {}
            if any(rank_of.setdefault(reply["text"], reply["rank"]) != reply["rank"] for reply in replies):
                dropped["contradictory_duplicate"] += 1
                logger.warning(
                    "load_oasst_ranked: dropping the group under parent %s: the same reply text has different ranks",
                    parent_id,
                )
                continue

        turns = [("user" if node["role"] == "prompter" else "assistant", node["text"]) for node in reversed(chain)]
        if conversational:
            rows["prompt"].append([{"role": role, "content": text} for role, text in turns])
            rows["completions"].append([[{"role": "assistant", "content": reply["text"]}] for reply in replies])
        else:
            rows["prompt"].append(_render_oasst_text(turns))
            rows["completions"].append([" " + reply["text"] for reply in replies])
        rows["ranks"].append([int(reply["rank"]) for reply in replies])
        rows["message_tree_id"].append(chain[-1].get("message_tree_id") or chain[-1]["message_id"])
        rows["parent_id"].append(parent_id)

    message_feature = {"role": Value("string"), "content": Value("string")}
    features = Features(
        {
            "prompt": List(message_feature) if conversational else Value("string"),
            "completions": List(List(message_feature)) if conversational else List(Value("string")),
            "ranks": List(Value("int64")),
            "message_tree_id": Value("string"),
            "parent_id": Value("string"),
        }
    )
    histogram = Counter(len(ranks) for ranks in rows["ranks"])
    logger.info(
        "load_oasst_ranked: %d ranked groups from %s (K histogram %s); dropped %s",
        len(rows["ranks"]),
        path,
        dict(sorted(histogram.items())),
        dict(dropped) or "none",
    )
    return Dataset.from_dict(rows, features=features)



# --------------------------------------------------------------------------------------------------------------------
# Anthropic HH-RLHF
# --------------------------------------------------------------------------------------------------------------------


def _hh_split(text: Any) -> tuple[str, str] | None:
    """``(prompt, reply)`` of one HH transcript, split after its last ``"\\n\\nAssistant:"``; None if impossible."""
    if not isinstance(text, str):
        return None
    cut = text.rfind(_HH_ASSISTANT)
    if cut < 0:
        return None
    cut += len(_HH_ASSISTANT)
    return text[:cut], text[cut:]


def load_hh_rlhf(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    allow_empty_replies: bool = True,
) -> tuple[Dataset, dict[str, int]]:
    """Load Anthropic HH-RLHF ``{"chosen", "rejected"}`` transcripts as explicit prompt / chosen / rejected.

    ``prompt`` is the transcript up to and including its last ``"\\n\\nAssistant:"`` (so it ends with
    ``"Assistant:"``), ``chosen`` / ``rejected`` are the final replies *with* their leading space kept, so
    ``prompt + chosen`` is exactly the original transcript. A ``source`` column holds the file stem (e.g.
    ``"helpful-base_test"``).

    Rows that cannot form a clean pair are skipped, counted and logged with a warning: no ``"\\n\\nAssistant:"``
    or non-string fields (``skipped_unparseable``), dialogues that differ before the last reply
    (``skipped_prompt_mismatch``) and identical replies (``skipped_identical``). A blank chosen or rejected reply is a
    real preference (an assistant that said nothing, judged worse or better than an answer): kept and counted in
    ``empty_reply``, or, with ``allow_empty_replies=False``, skipped (``skipped_empty_reply``).

    Args:
        paths: one file or several (.jsonl / .jsonl.gz / .json ...), e.g. the released ``helpful-base`` and
            ``harmless-base`` splits.

    Returns:
        ``(dataset, stats)`` with stats keys ``rows``, ``kept``, ``skipped_unparseable``,
        ``skipped_prompt_mismatch``, ``skipped_identical``, ``skipped_empty_reply``, ``empty_reply``.

    Raises:
        FileNotFoundError: a file does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        path_list = [Path(paths)]
    else:
        path_list = [Path(p) for p in paths]

    stats = {
        "rows": 0,
        "kept": 0,
        "skipped_unparseable": 0,
        "skipped_prompt_mismatch": 0,
        "skipped_identical": 0,
        "skipped_empty_reply": 0,
        "empty_reply": 0,
    }
    rows: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": [], "source": []}
    for path in path_list:
        if not path.is_file():
            raise FileNotFoundError(f"HH-RLHF file not found: {path}")
        source = path.name.split(".")[0]  # "helpful-base_test.jsonl.gz" -> "helpful-base_test"
        skipped_here: Counter[str] = Counter()
        for record in read_json_records(path):
            stats["rows"] += 1
            chosen_split = _hh_split(record.get("chosen"))
            rejected_split = _hh_split(record.get("rejected"))
            if chosen_split is None or rejected_split is None:
                reason = "skipped_unparseable"
            elif chosen_split[0] != rejected_split[0]:
                reason = "skipped_prompt_mismatch"
            elif chosen_split[1].strip() == rejected_split[1].strip():
                reason = "skipped_identical"
            elif not allow_empty_replies and (not chosen_split[1].strip() or not rejected_split[1].strip()):
                reason = "skipped_empty_reply"
            else:
                stats["empty_reply"] += int(not chosen_split[1].strip() or not rejected_split[1].strip())
                rows["prompt"].append(chosen_split[0])
                rows["chosen"].append(chosen_split[1])
                rows["rejected"].append(rejected_split[1])
                rows["source"].append(source)
                stats["kept"] += 1
                continue
            stats[reason] += 1
            skipped_here[reason] += 1
        if skipped_here:
            logger.warning("load_hh_rlhf: %s: skipped %s", path.name, dict(skipped_here))

    features = Features({name: Value("string") for name in rows})
    logger.info("load_hh_rlhf: %s", stats)
    return Dataset.from_dict(rows, features=features), stats

"""Loaders for two public preference data sets, from files on disk: OpenAssistant (oasst1) message trees as ranked
groups, and Anthropic HH-RLHF transcripts as explicit prompt / chosen / rejected pairs."""

from __future__ import annotations

import logging
import math
import numbers
import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, List, Value

from .files import read_json_lines, read_json_records

logger = logging.getLogger(__name__)

_HH_ASSISTANT = "\n\nAssistant:"


def _render_oasst_text(turns: list[tuple[str, str]]) -> str:
    speaker = {"user": "User", "assistant": "Assistant"}
    rendered = "\n\n".join(f"{speaker[role]}: {text}" for role, text in turns)
    return rendered + "\n\nAssistant:"


def _is_tree_record(record: dict) -> bool:
    """A line of an OpenAssistant `*.trees.jsonl` file: one conversation tree, its root message under `prompt`."""
    return isinstance(record.get("prompt"), dict) and "replies" in record["prompt"]


def _flatten_tree(tree: dict, where: str) -> list[dict]:
    """One tree's messages, depth-first (parents first); a reply that is not a message object is an error naming
    `where` (e.g. "file, line 3") and its parent message."""
    if not _is_tree_record(tree):
        raise ValueError(f"{where}: no root message with 'replies' under 'prompt'")
    tree_id = tree.get("message_tree_id") or tree["prompt"].get("message_id")
    messages: list[dict] = []
    stack = [(tree["prompt"], None)]
    while stack:
        node, parent = stack.pop()
        message = {k: v for k, v in node.items() if k != "replies"}
        message.setdefault("message_tree_id", tree_id)
        message["parent_id"] = parent
        messages.append(message)
        replies = node.get("replies") or []
        at = f"{where}, message {node.get('message_id')!r}, field 'replies'"
        if not isinstance(replies, list):
            raise ValueError(f"{at}: {replies!r}; expected a list of message objects")
        for position, reply in enumerate(replies):
            if not isinstance(reply, dict):
                raise ValueError(f"{at}: reply {position} is a {type(reply).__name__} ({reply!r}), expected a "
                                 "message object")
        stack.extend((reply, node.get("message_id")) for reply in reversed(replies))
    return messages


def flatten_oasst_trees(trees: list[dict]) -> list[dict]:
    """The messages of OpenAssistant trees (`{"message_tree_id", "prompt": {..., "replies": [...]}}` per tree) as the
    flat message list of the `*.messages.jsonl` files: each message without `replies`, with `parent_id` and
    `message_tree_id` set from the tree. Depth-first, parents before their replies.

    Raises:
        ValueError: a tree without a root message, or a reply that is not a message object (naming the tree and the
            parent message).
    """
    return [message for position, tree in enumerate(trees) for message in _flatten_tree(tree, f"tree {position}")]


_ROLES = ("prompter", "assistant")
# The fields the loader reads: two copies of one message_id must agree on them to be read as one message.
_MESSAGE_FIELDS = ("parent_id", "role", "text", "rank", "deleted", "synthetic")
# Why an assistant reply is not in any group, in the order the reasons are checked.
_LEFT_OUT = {
    "deleted": "deleted",
    "synthetic": "synthetic (include_synthetic=False)",
    "unranked": "unranked (rank null)",
    "no_parent_id": "replies without a parent_id",
    "ancestor_missing": "whose parent or an ancestor is not in the file",
    "ancestor_deleted": "whose parent or an ancestor is deleted",
    "ancestor_synthetic": "whose parent or an ancestor is synthetic (include_synthetic=False)",
    "ancestor_cycle": "whose parent chain loops",
    "small_group": "in groups with fewer than {min_completions} ranked replies",
    "contradictory": "in groups where one reply text has two ranks (drop_contradictory=True)",
}


def _check_message(message: dict, where: str) -> None:
    """One OASST message: `message_id`, `role` (prompter | assistant), `text` (a string unless deleted) and `rank`
    (null or a non-negative integer); else an error naming `where`, the message id and the field."""
    if "message_id" not in message:
        raise ValueError(f"{where}, field 'message_id': missing")
    mid = message["message_id"]
    if mid is None or isinstance(mid, bool) or not isinstance(mid, (str, int)) or mid == "":
        raise ValueError(f"{where}, field 'message_id': {mid!r}; expected an id")
    at = f"{where}, message {mid!r}"
    for name in ("role", "text"):
        if name not in message:
            raise ValueError(f"{at}, field '{name}': missing")
    if message["role"] not in _ROLES:
        raise ValueError(f"{at}, field 'role': {message['role']!r}; expected 'prompter' or 'assistant'")
    if not isinstance(message["text"], str) and not message.get("deleted"):
        raise ValueError(f"{at}, field 'text': {message['text']!r}; expected text")
    rank = message.get("rank")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, numbers.Real) or not math.isfinite(rank)
                             or not float(rank).is_integer() or rank < 0):
        # int() would turn 0.5 into 0: a tie the annotators never gave
        raise ValueError(f"{at}, field 'rank': {rank!r}; ranks must be non-negative integers (null: unranked)")


def _unique_messages(records: list[tuple[str, dict]], path: Path) -> tuple[list[dict], int]:
    """Checked messages, each message_id once, and how many later copies were dropped (a copy that differs in a field
    the loader reads is refused, naming both places in the file)."""
    first: dict[Any, tuple[str, dict]] = {}
    messages: list[dict] = []
    duplicates = 0
    for where, message in records:
        _check_message(message, f"{path}, {where}")
        mid = message["message_id"]
        if mid in first:
            where_first, earlier = first[mid]
            for name in _MESSAGE_FIELDS:
                if earlier.get(name) != message.get(name):
                    raise ValueError(
                        f"{path}: message {mid!r} is on {where_first} and {where} with different {name!r} "
                        f"({earlier.get(name)!r} vs {message.get(name)!r}): the file holds two versions of it (e.g. "
                        "two releases concatenated); load one release, or remove one copy")
            duplicates += 1
            continue
        first[mid] = (where, message)
        messages.append(message)
    return messages, duplicates


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

    Left out, and counted by reason: deleted replies, unranked ones, replies without a ``parent_id``, replies whose
    parent or an ancestor is deleted or not in the file, and (``include_synthetic=False``) synthetic messages treated
    the same way. Groups with fewer than ``min_completions`` ranked replies are dropped. With
    ``drop_contradictory=True`` a group in which the same reply text has two different ranks is dropped (it carries no
    consistent preference and would fail :func:`validate_ranked_example`); pass False to keep it as-is. A message_id
    that occurs twice with the same content (e.g. a file concatenated with itself) is read once and counted. One line
    at WARNING gives the counts whenever anything was left out, and says why when no group is left (an empty file,
    no ranked replies...).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: ``min_completions < 1``; a message without ``message_id``, ``role`` or ``text``, a ``role`` other
            than prompter/assistant, a null or non-text ``text``, a ``rank`` that is not a non-negative integer (0.5 is
            not truncated to 0), a tree reply that is not a message object, or one message_id twice with different
            contents (e.g. two releases concatenated); each names the file line, the message id and the field.
    """
    if min_completions < 1:
        raise ValueError(f"min_completions must be >= 1, got {min_completions}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OpenAssistant message file not found: {path}")
    records = read_json_lines(path)
    if records and _is_tree_record(records[0][1]):
        records = [(where, message) for where, tree in records
                   for message in _flatten_tree(tree, f"{path}, {where}")]
    messages, duplicates = _unique_messages(records, path)

    def excluded(message: dict) -> str | None:
        if message.get("deleted"):
            return "deleted"
        if not include_synthetic and message.get("synthetic"):
            return "synthetic"
        return None

    by_id = {message["message_id"]: message for message in messages}
    position = {message["message_id"]: line_index for line_index, message in enumerate(messages)}
    children: dict[Any, list[dict]] = defaultdict(list)
    left_out: Counter[str] = Counter()  # assistant replies in no group, by reason
    for message in messages:
        if message["role"] != "assistant":
            continue
        reason = excluded(message)
        if reason is None and message.get("rank") is None:
            reason = "unranked"
        if reason is None and message.get("parent_id") is None:
            reason = "no_parent_id"
        if reason is not None:
            left_out[reason] += 1
        else:
            children[message["parent_id"]].append(message)

    rows: dict[str, list] = {"prompt": [], "completions": [], "ranks": [], "message_tree_id": [], "parent_id": []}
    # Unknown parents sort last so a truncated file still gives a deterministic order.
    for parent_id in sorted(children, key=lambda pid: position.get(pid, len(messages))):
        replies = children[parent_id]
        chain: list[dict] = []
        node_id: Any = parent_id
        broken = None
        while node_id is not None:
            node = by_id.get(node_id)
            if node is None:
                broken = "ancestor_missing"
            elif len(chain) > len(messages):
                broken = "ancestor_cycle"
            elif excluded(node):
                broken = f"ancestor_{excluded(node)}"
            if broken:
                break
            chain.append(node)
            node_id = node.get("parent_id")
        if broken:
            left_out[broken] += len(replies)
            continue
        if len(replies) < min_completions:
            left_out["small_group"] += len(replies)
            continue
        if drop_contradictory:
            rank_of: dict[str, Any] = {}
            if any(rank_of.setdefault(reply["text"], reply["rank"]) != reply["rank"] for reply in replies):
                left_out["contradictory"] += len(replies)
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
    _report_oasst(path, rows["ranks"], len(messages), duplicates, left_out, min_completions)
    return Dataset.from_dict(rows, features=features)


def _report_oasst(path: Path, ranks: list[list[int]], n_messages: int, duplicates: int, left_out: Counter,
                  min_completions: int) -> None:
    """One line: the groups, and what was left out by reason; WARNING when anything was left out or no group is
    left, else INFO."""
    if n_messages == 0:
        logger.warning("load_oasst_ranked: %s holds no messages (the file is empty or blank): 0 ranked groups.", path)
        return
    histogram = dict(sorted(Counter(len(r) for r in ranks).items()))
    line = (f"load_oasst_ranked: {path}: {len(ranks)} ranked groups ({sum(map(len, ranks))} replies, K histogram "
            f"{histogram}) from {n_messages} messages")
    if duplicates:
        line += f"; {duplicates} duplicate messages (same message_id) read once"
    if left_out:
        reasons = ", ".join(f"{n} {_LEFT_OUT[key].format(min_completions=min_completions)}"
                            for key, n in sorted(left_out.items(), key=lambda kv: list(_LEFT_OUT).index(kv[0])))
        line += f"; assistant replies left out: {reasons}"
    elif not ranks:
        line += "; the file has no ranked assistant replies"
    (logger.warning if duplicates or left_out or not ranks else logger.info)(line)


# --------------------------------------------------------------------------------------------------------------------
# Anthropic HH-RLHF
# --------------------------------------------------------------------------------------------------------------------


def _renamed(value: bool, legacy: bool | None, legacy_name: str, function: str) -> bool:
    """The value of a renamed keyword: the former name still works, with a FutureWarning."""
    if legacy is None:
        return value
    warnings.warn(f"{function}({legacy_name}=...) is now called allow_empty_completions (the name the trainer configs "
                  "use); the old name will be removed.", FutureWarning, stacklevel=3)
    return legacy


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
    allow_empty_completions: bool = True,
    *,
    allow_empty_replies: bool | None = None,
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
    ``empty_reply``, or, with ``allow_empty_completions=False``, skipped (``skipped_empty_reply``). A file without
    rows, and a result without pairs, are said at WARNING.

    Args:
        paths: one file or several (.jsonl / .jsonl.gz / .json ...), e.g. the released ``helpful-base`` and
            ``harmless-base`` splits.
        allow_empty_completions: keep pairs with a blank reply (the option of the same name in the trainer configs).
        allow_empty_replies: the former name of ``allow_empty_completions`` (deprecated).

    Returns:
        ``(dataset, stats)`` with stats keys ``rows``, ``kept``, ``skipped_unparseable``,
        ``skipped_prompt_mismatch``, ``skipped_identical``, ``skipped_empty_reply``, ``empty_reply``.

    Raises:
        FileNotFoundError: a file does not exist.
    """
    allow_empty_completions = _renamed(allow_empty_completions, allow_empty_replies, "allow_empty_replies",
                                       "load_hh_rlhf")
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
        records = read_json_records(path)
        if not records:
            logger.warning("load_hh_rlhf: %s holds no rows (the file is empty or blank).", path)
        for record in records:
            stats["rows"] += 1
            chosen_split = _hh_split(record.get("chosen"))
            rejected_split = _hh_split(record.get("rejected"))
            if chosen_split is None or rejected_split is None:
                reason = "skipped_unparseable"
            elif chosen_split[0] != rejected_split[0]:
                reason = "skipped_prompt_mismatch"
            elif chosen_split[1].strip() == rejected_split[1].strip():
                reason = "skipped_identical"
            elif not allow_empty_completions and (not chosen_split[1].strip() or not rejected_split[1].strip()):
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
    if stats["rows"] and not stats["kept"]:
        skipped = {key: n for key, n in stats.items() if key.startswith("skipped_") and n}
        logger.warning("load_hh_rlhf: 0 pairs from %d rows: every row was skipped (%s).", stats["rows"], skipped)
    logger.info("load_hh_rlhf: %s", stats)
    return Dataset.from_dict(rows, features=features), stats

"""Bounds on what a YAML config expands to: an alias bomb or a self-containing alias is refused
with one line before anything walks the expanded tree (aliases and merge keys stay allowed)."""

from __future__ import annotations

from typing import Callable

import yaml

from notpipe.config.errors import ConfigError

#: most values (mappings, lists and scalars) a config may hold once its YAML aliases are
#: expanded; the largest shipped config holds about 1,200, and validating 100,000 takes seconds
MAX_CONFIG_VALUES = 100_000


class _Recursive(Exception):
    """A value that contains itself (a YAML alias inside its own anchor)."""


def _expanded_size(root, children: Callable, cap: int) -> int | None:
    """How many values ``root`` holds with every shared part counted once per use (as a copy
    of it would hold), or None once past ``cap``. Shared parts are sized once (memo), so this
    is linear in the stored graph even when its expansion is exponential."""
    memo: dict[int, int] = {}
    open_: set[int] = set()  # ids whose subtree is being sized: the ancestors of the top of the stack
    stack: list[tuple[object, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_.discard(key)
            memo[key] = size = 1 + sum(memo[id(c)] for c in children(node))
            if size > cap:
                return None
            continue
        if key in memo:
            continue
        if key in open_:
            raise _Recursive
        kids = children(node)
        if not kids:
            memo[key] = 1
            continue
        open_.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in kids if id(c) not in memo)
    return memo[id(root)]


def _yaml_children(node) -> list:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def _value_children(value) -> list:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, (list, tuple)):
        return list(value)
    return []


def _check_expanded(root, children: Callable, source: str) -> None:
    """Refuse ``root`` (YAML nodes or loaded values) when aliases make it expand past
    :data:`MAX_CONFIG_VALUES` values or into itself: one line naming ``source``."""
    try:
        size = _expanded_size(root, children, MAX_CONFIG_VALUES)
    except _Recursive:
        raise ConfigError(f"{source}: a YAML alias is used inside its own anchor (the config would "
                          "contain itself); write the value out instead") from None
    if size is None:
        raise ConfigError(f"{source}: the config expands to more than {MAX_CONFIG_VALUES:,} values "
                          "once its YAML aliases (*name) are copied out, far more than any pipeline "
                          "config needs; write the values out or use fewer nested aliases") from None

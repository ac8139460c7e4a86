"""Warden plugin `python-text`: the text-tools of the Rust example, written in Python.

It offers `echo`, `word-count` and `regex-extract` with the same input schemas as the Rust
plugin, plus `remember`, which stores a note in shared memory and shows what a denial looks like
until an operator grants the namespace. Each call runs in a fresh instance: module-level state
does not survive from one call to the next.

Build (from this folder): componentize-py -d wit -w python-text componentize app -o python-text.wasm
"""

import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import log, memory
from wit_world.imports.types import (
    CallContext,
    ToolError_Denied,
    ToolError_Failed,
    ToolError_InvalidInput,
    ToolSpec,
)

JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"

# The shared namespace `remember` writes to; an operator grants it with `memory:notes:rw`.
NOTES_NAMESPACE = "notes"


def _object_schema(title, description, properties, required):
    return {
        "$schema": JSON_SCHEMA,
        "description": description,
        "properties": properties,
        "required": required,
        "title": title,
        "type": "object",
    }


def _text(description):
    return {"description": description, "type": "string"}


ECHO_INPUT = _object_schema(
    "EchoInput",
    "Input of `echo`.",
    {"text": _text("The text to return, unchanged.")},
    ["text"],
)
ECHO_OUTPUT = _object_schema(
    "EchoOutput",
    "Output of `echo`.",
    {"text": _text("The text that was given.")},
    ["text"],
)
WORD_COUNT_INPUT = _object_schema(
    "WordCountInput",
    "Input of `word-count`.",
    {"text": _text("The text whose words to count.")},
    ["text"],
)
WORD_COUNT_OUTPUT = _object_schema(
    "WordCountOutput",
    "Output of `word-count`.",
    {
        "words": {
            "description": "How many words the text has: runs of characters separated by whitespace.",
            "format": "uint64",
            "minimum": 0,
            "type": "integer",
        }
    },
    ["words"],
)
REGEX_EXTRACT_INPUT = _object_schema(
    "RegexExtractInput",
    "Input of `regex-extract`.",
    {
        "pattern": _text(
            "A regular expression in Rust `regex` syntax (like RE2: no backreferences or look-around),\n"
            "e.g. `[A-Z]{2,}-\\d+` for ticket ids. Flags go inline, e.g. `(?i)` for case-insensitive."
        ),
        "text": _text("The text to search."),
    },
    ["text", "pattern"],
)
REGEX_EXTRACT_OUTPUT = _object_schema(
    "RegexExtractOutput",
    "Output of `regex-extract`.",
    {
        "matches": {
            "description": "Every non-overlapping match, in order of appearance; empty when nothing matched.",
            "items": {"type": "string"},
            "type": "array",
        }
    },
    ["matches"],
)
REMEMBER_INPUT = _object_schema(
    "RememberInput",
    "Input of `remember`.",
    {
        "key": _text("Where to keep the note, e.g. `customer/42`."),
        "text": _text("The note to keep."),
    },
    ["key", "text"],
)
REMEMBER_OUTPUT = _object_schema(
    "RememberOutput",
    "Output of `remember`.",
    {
        "version": {
            "description": "The note's version after this write; 1 for a new key.",
            "minimum": 1,
            "type": "integer",
        }
    },
    ["version"],
)

# Look-around and backreferences are Python `re` features that the Rust plugin's engine does not
# have; refusing them keeps the two plugins' answers equal and matching time linear-ish.
UNSUPPORTED_SYNTAX = re.compile(r"\(\?<?[=!]|\\[1-9]|\(\?P=")


def echo(_ctx, args):
    return {"text": args["text"]}


def word_count(_ctx, args):
    words = len(args["text"].split())
    log.log(log.Level.DEBUG, f"counted {words} words")
    return {"words": words}


def regex_extract(_ctx, args):
    pattern = args["pattern"]
    if UNSUPPORTED_SYNTAX.search(pattern):
        raise Err(
            ToolError_InvalidInput(
                "`pattern` is not usable: look-around and backreferences are not supported"
            )
        )
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise Err(ToolError_InvalidInput(f"`pattern` is not usable: {error}"))
    return {"matches": [found.group(0) for found in regex.finditer(args["text"])]}


def remember(_ctx, args):
    try:
        with memory.Namespace.open(NOTES_NAMESPACE) as notes:
            version = notes.put(args["key"], json.dumps(args["text"]), None)
    except Err as error:
        reason = error.value
        log.log(log.Level.WARN, f"memory refused the note: {getattr(reason, 'value', reason)}")
        if isinstance(reason, memory.MemoryError_Denied):
            raise Err(ToolError_Denied(reason.value))
        if isinstance(reason, memory.MemoryError_Invalid):
            raise Err(ToolError_InvalidInput(reason.value))
        raise Err(ToolError_Failed(f"memory failed: {reason}"))
    return {"version": version}


# name -> (description, input schema, output schema, function)
TOOLS = {
    "echo": (
        "Returns the text it is given, unchanged. Useful to test that tool calls work.",
        ECHO_INPUT,
        ECHO_OUTPUT,
        echo,
    ),
    "word-count": (
        "Counts the words in a text, where a word is a run of non-whitespace characters.",
        WORD_COUNT_INPUT,
        WORD_COUNT_OUTPUT,
        word_count,
    ),
    "regex-extract": (
        "Finds every non-overlapping match of a regular expression in a text and returns the "
        "matched substrings in order. Use it to pull ids, emails, dates or numbers out of text.",
        REGEX_EXTRACT_INPUT,
        REGEX_EXTRACT_OUTPUT,
        regex_extract,
    ),
    "remember": (
        f"Keeps a note under a key in the shared memory namespace `{NOTES_NAMESPACE}`, for later "
        "calls and other agents. Denied unless the operator grants that namespace.",
        REMEMBER_INPUT,
        REMEMBER_OUTPUT,
        remember,
    ),
}


def _compact(value):
    # The same bytes serde_json writes: no spaces, non-ASCII kept as UTF-8.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class Tool(exports.Tool):
    """The `warden:plugin/tool` export."""

    def list_tools(self):
        return [
            ToolSpec(name, description, _compact(schema_in), _compact(schema_out))
            for name, (description, schema_in, schema_out, _) in TOOLS.items()
        ]

    def call(self, ctx: CallContext, name: str, input: str) -> str:
        entry = TOOLS.get(name)
        if entry is None:
            raise Err(ToolError_InvalidInput(f"unknown tool `{name}`"))
        log.log(log.Level.INFO, f"{name} called (call {ctx.call_id or '-'})")
        # The host has validated `input` against the tool's schema before the call.
        result = entry[3](ctx, json.loads(input))
        return _compact(result)

// Warden plugin `js-text`: the text-tools of the Rust example, written in JavaScript.
//
// It offers `echo`, `word-count` and `regex-extract` with the same input schemas as the Rust
// plugin, plus `remember`, which stores a note in shared memory and shows what a denial looks
// like until an operator grants the namespace. Each call runs in a fresh instance: module state
// does not survive from one call to the next.

import { log } from "warden:plugin/log@0.1.0";
import { Namespace } from "warden:plugin/memory@0.1.0";

const JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema";

// The shared namespace `remember` writes to; an operator grants it with `memory:notes:rw`.
const NOTES_NAMESPACE = "notes";

function objectSchema(title, description, properties, required) {
  return { $schema: JSON_SCHEMA, description, properties, required, title, type: "object" };
}

function text(description) {
  return { description, type: "string" };
}

// A tool error: `call` throws it, and the host receives `tool-error.<tag>(message)`.
class ToolError extends Error {
  constructor(tag, message) {
    super(message);
    this.tag = tag;
    this.val = message;
  }
}

// Rust's `regex` takes flags as a leading group such as `(?i)`; JavaScript takes them apart.
const LEADING_FLAGS = /^\(\?([imsU]+)\)/;

function compile(pattern) {
  let flags = "gu";
  const leading = LEADING_FLAGS.exec(pattern);
  if (leading) {
    if (leading[1].includes("U")) {
      throw new ToolError("invalid-input", "`pattern` is not usable: the `U` flag is not supported here");
    }
    flags += leading[1];
    pattern = pattern.slice(leading[0].length);
  }
  // Look-around and backreferences exist in JavaScript but not in the Rust plugin's engine;
  // refusing them keeps both plugins' answers equal.
  if (/\(\?<?[=!]|\\[1-9]|\\k</.test(pattern)) {
    throw new ToolError(
      "invalid-input",
      "`pattern` is not usable: look-around and backreferences are not supported",
    );
  }
  try {
    return new RegExp(pattern, flags);
  } catch (error) {
    throw new ToolError("invalid-input", `\`pattern\` is not usable: ${error.message}`);
  }
}

const TOOLS = {
  echo: {
    description: "Returns the text it is given, unchanged. Useful to test that tool calls work.",
    input: objectSchema("EchoInput", "Input of `echo`.", { text: text("The text to return, unchanged.") }, ["text"]),
    output: objectSchema("EchoOutput", "Output of `echo`.", { text: text("The text that was given.") }, ["text"]),
    run: (args) => ({ text: args.text }),
  },
  "word-count": {
    description: "Counts the words in a text, where a word is a run of non-whitespace characters.",
    input: objectSchema(
      "WordCountInput",
      "Input of `word-count`.",
      { text: text("The text whose words to count.") },
      ["text"],
    ),
    output: objectSchema(
      "WordCountOutput",
      "Output of `word-count`.",
      {
        words: {
          description: "How many words the text has: runs of characters separated by whitespace.",
          format: "uint64",
          minimum: 0,
          type: "integer",
        },
      },
      ["words"],
    ),
    run: (args) => {
      const words = args.text.split(/\s+/u).filter((word) => word.length > 0).length;
      log("debug", `counted ${words} words`);
      return { words };
    },
  },
  "regex-extract": {
    description:
      "Finds every non-overlapping match of a regular expression in a text and returns the " +
      "matched substrings in order. Use it to pull ids, emails, dates or numbers out of text.",
    input: objectSchema(
      "RegexExtractInput",
      "Input of `regex-extract`.",
      {
        pattern: text(
          "A regular expression in Rust `regex` syntax (like RE2: no backreferences or look-around),\n" +
            "e.g. `[A-Z]{2,}-\\d+` for ticket ids. Flags go inline, e.g. `(?i)` for case-insensitive.",
        ),
        text: text("The text to search."),
      },
      ["text", "pattern"],
    ),
    output: objectSchema(
      "RegexExtractOutput",
      "Output of `regex-extract`.",
      {
        matches: {
          description: "Every non-overlapping match, in order of appearance; empty when nothing matched.",
          items: { type: "string" },
          type: "array",
        },
      },
      ["matches"],
    ),
    run: (args) => ({ matches: Array.from(args.text.matchAll(compile(args.pattern)), (m) => m[0]) }),
  },
  remember: {
    description:
      `Keeps a note under a key in the shared memory namespace \`${NOTES_NAMESPACE}\`, for later ` +
      "calls and other agents. Denied unless the operator grants that namespace.",
    input: objectSchema(
      "RememberInput",
      "Input of `remember`.",
      { key: text("Where to keep the note, e.g. `customer/42`."), text: text("The note to keep.") },
      ["key", "text"],
    ),
    output: objectSchema(
      "RememberOutput",
      "Output of `remember`.",
      {
        version: {
          description: "The note's version after this write; 1 for a new key.",
          minimum: 1,
          type: "integer",
        },
      },
      ["version"],
    ),
    run: (args) => {
      let version;
      try {
        const notes = Namespace.open(NOTES_NAMESPACE);
        version = notes.put(args.key, JSON.stringify(args.text), undefined);
      } catch (error) {
        // A `result` error from an import arrives as an exception whose `payload` is the variant.
        const reason = error.payload ?? { tag: "failed", val: String(error) };
        log("warn", `memory refused the note: ${reason.tag}: ${reason.val}`);
        if (reason.tag === "denied") throw new ToolError("denied", reason.val);
        if (reason.tag === "invalid") throw new ToolError("invalid-input", reason.val);
        throw new ToolError("failed", `memory failed: ${reason.tag}: ${reason.val}`);
      }
      return { version: Number(version) };
    },
  },
};

// The `warden:plugin/tool` export.
export const tool = {
  listTools() {
    return Object.entries(TOOLS).map(([name, spec]) => ({
      name,
      description: spec.description,
      inputSchema: JSON.stringify(spec.input),
      outputSchema: JSON.stringify(spec.output),
    }));
  },

  call(ctx, name, input) {
    const spec = TOOLS[name];
    if (spec === undefined) {
      throw { tag: "invalid-input", val: `unknown tool \`${name}\`` };
    }
    log("info", `${name} called (call ${ctx.callId || "-"})`);
    // The host has validated `input` against the tool's schema before the call.
    try {
      return JSON.stringify(spec.run(JSON.parse(input)));
    } catch (error) {
      if (error instanceof ToolError) throw { tag: error.tag, val: error.val };
      throw { tag: "failed", val: String(error) };
    }
  },
};

#!/usr/bin/env python3
"""Counts functions and assertions in the core's broker and storage code (issue 15).

For each directory given (default: core/src/broker and core/src/storage, from the repository
root) it prints the number of `fn` items, the number of assertions (`assert!`, `assert_eq!`,
`assert_ne!` and their `debug_` forms) and assertions per function. Code under `#[cfg(test)]`
(test modules, inline or in their own file, and test-only items) and comments do not count:
the figure is about what the broker runs.

    python3 scripts/count-assertions.py [DIR ...]
"""

import os
import re
import sys

DEFAULT_DIRS = ["core/src/broker", "core/src/storage"]
FN = re.compile(r"\bfn\s+[A-Za-z_][A-Za-z0-9_]*")
ASSERTION = re.compile(r"\b(?:debug_)?assert(?:_eq|_ne)?!")
CFG_TEST = re.compile(r"#\[cfg\(test\)\]\s*")
TEST_MOD_DECL = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;")
CHAR_LITERAL = re.compile(r"'(?:\\.|\\u\{[0-9a-fA-F]+\}|[^\\'])'")
RAW_STRING = re.compile(r'b?r(#*)"')


def strip_comments_and_literals(text):
    """The code with comments removed and string and char literals emptied, so that neither
    braces nor words inside them count."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif (raw := RAW_STRING.match(text, i)) and (i == 0 or not text[i - 1].isalnum()):
            end = text.find('"' + raw.group(1), raw.end())
            out.append('""')
            i = n if end < 0 else end + 1 + len(raw.group(1))
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            out.append('""')
            i += 1
        elif c == "'" and (char := CHAR_LITERAL.match(text, i)):
            out.append("' '")
            i = char.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def item_end(code, start):
    """Where the item starting at `start` ends: after its `;`, or its matching `}`."""
    depth = 0
    for i in range(start, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif code[i] == ";" and depth == 0:
            return i + 1
    return len(code)


def without_test_items(code):
    """The code with every `#[cfg(test)]` item cut out."""
    while (found := CFG_TEST.search(code)) is not None:
        code = code[: found.start()] + code[item_end(code, found.end()) :]
    return code


def test_module_files(path, code):
    """The files of the test modules `path` declares as `#[cfg(test)] mod name;`."""
    stem = os.path.splitext(path)[0]
    folder = os.path.dirname(path)
    own_folder = folder if os.path.basename(path) in ("mod.rs", "lib.rs") else stem
    files = set()
    for name in TEST_MOD_DECL.findall(code):
        files.add(os.path.join(own_folder, name + ".rs"))
        files.add(os.path.join(own_folder, name, "mod.rs"))
    return files


def count(directory):
    sources = sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(directory)
        for name in names
        if name.endswith(".rs")
    )
    codes = {path: strip_comments_and_literals(open(path).read()) for path in sources}
    skipped = set()
    for path, code in codes.items():
        skipped |= test_module_files(path, code)
    fns = assertions = 0
    for path, code in codes.items():
        if path in skipped:
            continue
        code = without_test_items(code)
        fns += len(FN.findall(code))
        assertions += len(ASSERTION.findall(code))
    return fns, assertions


def main():
    directories = sys.argv[1:] or DEFAULT_DIRS
    print(f"{'directory':<20} {'functions':>9} {'assertions':>10} {'per fn':>7}")
    total_fns = total_assertions = 0
    for directory in directories:
        fns, assertions = count(directory)
        total_fns += fns
        total_assertions += assertions
        ratio = assertions / fns if fns else 0.0
        print(f"{directory:<20} {fns:>9} {assertions:>10} {ratio:>7.2f}")
    if len(directories) > 1:
        ratio = total_assertions / total_fns if total_fns else 0.0
        print(f"{'total':<20} {total_fns:>9} {total_assertions:>10} {ratio:>7.2f}")


if __name__ == "__main__":
    main()

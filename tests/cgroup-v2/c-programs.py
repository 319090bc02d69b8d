#!/usr/bin/env python3
"""Writes the C programs the demoter's tests compile (`fx.compile("NAME", SOURCE)`) as
OUT/NAME.c, so they can be built with `gcc -static` for a guest without a compiler.

Usage: c-programs.py OUT TEST.rs...   The tests check each prebuilt program against its source
(`DEMOTER_TEST_PROGRAMS`), so a program this misreads fails loudly instead of testing the wrong
thing.
"""
import pathlib
import re
import sys

# compile(  "NAME",  r#"..."#  or  "..."  )
CALL = re.compile(
    r'\.compile\(\s*"(?P<name>[A-Za-z0-9_-]+)",\s*'
    r'(?:r#"(?P<raw>.*?)"#|"(?P<plain>(?:[^"\\]|\\.)*)")\s*,?\s*\)',
    re.S,
)
ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "0": "\0", "r": "\r"}


def unescape(text):
    """A Rust string literal's body: simple escapes and `\\` line continuations."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "\n":  # continuation: skip the newline and the next line's indentation
            i += 2
            while i < len(text) and text[i] in " \t\n":
                i += 1
        elif nxt in ESCAPES:
            out.append(ESCAPES[nxt])
            i += 2
        else:
            sys.exit(f"unsupported escape \\{nxt} in a C program")
    return "".join(out)


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    seen = {}
    for path in sys.argv[2:]:
        for m in CALL.finditer(pathlib.Path(path).read_text()):
            name = m["name"]
            source = m["raw"] if m["raw"] is not None else unescape(m["plain"])
            if seen.get(name, source) != source:
                sys.exit(f"{path}: two different programs named {name}")
            seen[name] = source
            (out / f"{name}.c").write_text(source)
    for name in sorted(seen):
        print(name)


main()

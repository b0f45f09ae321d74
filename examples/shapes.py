"""A small labelled image folder to try ``data=csv_image`` on: coloured squares and discs.

    python examples/shapes.py photos          # photos/img/*.png and photos/labels.csv

Each 48x48 image holds one to three shapes; its labels are the colours and the kinds it holds
(``red``, ``green``, ``blue``, ``square``, ``disc``). Deterministic for a given ``--seed``.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    (args.folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(args.count):
        image = Image.new("RGB", (48, 48), (245, 245, 245))
        draw = ImageDraw.Draw(image)
        labels = set()
        for _ in range(rng.randint(1, 3)):
            colour, kind = rng.choice(sorted(COLOURS)), rng.choice(["square", "disc"])
            x, y, size = rng.randint(0, 32), rng.randint(0, 32), rng.randint(10, 16)
            box = (x, y, x + size, y + size)
            (draw.rectangle if kind == "square" else draw.ellipse)(box, fill=COLOURS[colour])
            labels |= {colour, kind}
        name = f"img/{index:04d}.png"
        image.save(args.folder / name)
        rows.append((name, "|".join(sorted(labels))))
    with open(args.folder / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("image", "labels"), *rows])
    print(f"{args.count} images and labels.csv in {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Generate a small labelled text set for topic classification (4 topics, templated).

Sentences combine per-topic templates and fillers; the held-out set uses fillers never seen in
training, so accuracy measures generalisation by the encoder, not memorised strings. Written
as JSONL (``text``, ``label``, ``topic``) for ``tailguard data ingest``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

TOPICS: dict[str, tuple[list[str], list[str]]] = {
    "sports": (
        ["The {x} won the match after extra time.", "Fans cheered as the {x} scored late.",
         "The coach praised the {x} after the final.", "Tickets for the {x} game sold out.",
         "An injury kept the {x} striker off the pitch."],
        ["home team", "visiting side", "national squad", "league leaders", "young club",
         "champions", "underdogs", "rugby team", "basketball team", "hockey club"],
    ),
    "weather": (
        ["Forecasters expect {x} across the region tomorrow.", "Residents woke up to {x}.",
         "A warning was issued for {x} this weekend.", "Farmers are worried about {x}.",
         "The morning commute was slowed by {x}."],
        ["heavy rain", "thick fog", "strong winds", "a heatwave", "freezing temperatures",
         "thunderstorms", "snowfall", "hail", "a cold front", "drizzle"],
    ),
    "finance": (
        ["Shares of {x} fell after the earnings report.", "Investors piled into {x} today.",
         "Analysts upgraded {x} on strong revenue.", "The central bank's move hit {x}.",
         "Quarterly profits at {x} beat expectations."],
        ["the bank", "tech stocks", "the retailer", "bond markets", "the airline",
         "energy companies", "the insurer", "mining firms", "the carmaker", "small caps"],
    ),
    "cooking": (
        ["Simmer the {x} for twenty minutes.", "This recipe for {x} takes an hour.",
         "Season the {x} with salt and pepper.", "Bake the {x} until golden brown.",
         "Serve the {x} warm with fresh herbs."],
        ["tomato soup", "roast chicken", "lentil stew", "apple pie", "garlic bread",
         "vegetable curry", "pasta sauce", "banana bread", "rice pudding", "fish pie"],
    ),
}


def examples(held_out: bool) -> list[dict[str, object]]:
    """All template x filler sentences; fillers 0-6 train, 7-9 held out."""
    rows = []
    for label, (topic, (templates, fillers)) in enumerate(sorted(TOPICS.items())):
        chosen = fillers[7:] if held_out else fillers[:7]
        rows += [{"text": t.format(x=f), "label": label, "topic": topic}
                 for t in templates for f in chosen]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path(".tailguard/examples/minilm"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, held_out in (("train", False), ("test", True)):
        rows = examples(held_out)
        random.Random(0).shuffle(rows)
        path = args.out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"wrote {len(rows)} rows to {path}")


if __name__ == "__main__":
    main()

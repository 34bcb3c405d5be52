#!/usr/bin/env python3
"""Writes the shipped instruction data set of peft-finetune's default run:
data/instructions/train.jsonl and heldout.jsonl, prompt/completion records of five short tasks
with one right answer each, small enough for the builtin byte-level tiny-gpt2 to learn in a few
hundred LoRA steps:

  Q: Is 347 even or odd?           A: odd
  Q: Write cat in capitals.        A: CAT
  Q: First letter of lamp?         A: l
  Q: Last letter of lamp?          A: p
  Q: How many letters in lamp?     A: 4

The held-out records use words and numbers that no training record contains, so their exact
match measures what the model learned to do, not what it memorised. Deterministic (seeded):
rerunning it rewrites the same files.  Usage: python3 scripts/make_instructions.py [OUT_DIR]
"""
import json
import os
import random
import sys

WORDS = """ant arm art bag bed bee box boy bus cab cap car cat cow cup day dog ear egg elf
eye fan fig fox fun gas gum hat hen hut ice ink jam jar jet key kid lab leg lid lip map mat
mix mud net nut oak owl pan pen pet pig pin pot rat ray rib rod rug saw sea sky son sun tag
tea toe toy van web wig yak zip bark bell bird boat bone book cake calm card cart coat cold
corn crab desk dish door drum duck dust farm fish flag frog gate gift goat gold hand harp
hill home horn iron kite lamp leaf lime lion milk mint moon nest note oven park pear pine
pond rain rice ring road rock roof rope rose salt sand seed ship shoe silk snow soap sock
star tent toad tree vase wall wave wind wolf wool yard apple bread chair cloud crown dream
field flute glass grape heart horse house juice knife lemon light money mouse night olive
paper peach pearl piano plant queen river robin salad sheep shirt smile snake spoon stone
storm sugar table tiger toast towel train water whale wheel""".split()


def tasks(words, numbers, rng, n):
    """n records cycling through the five tasks, shuffled."""
    def parity():
        x = rng.choice(numbers)
        return f"Is {x} even or odd?", "even" if x % 2 == 0 else "odd"

    def word_task(question, answer):
        def make():
            w = rng.choice(words)
            return question.format(w), answer(w)
        return make

    makers = [
        parity,
        word_task("Write {} in capitals.", str.upper),
        word_task("First letter of {}?", lambda w: w[0]),
        word_task("Last letter of {}?", lambda w: w[-1]),
        word_task("How many letters in {}?", lambda w: str(len(w))),
    ]
    out = []
    for i in range(n):
        question, answer = makers[i % len(makers)]()
        out.append({"prompt": f"Q: {question}\nA: ", "completion": answer})
    rng.shuffle(out)
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "data", "instructions")
    rng = random.Random(16)
    words = sorted(set(WORDS))
    rng.shuffle(words)
    held_words, train_words = words[: len(words) // 5], words[len(words) // 5:]
    numbers = list(range(10, 1000))
    rng.shuffle(numbers)
    held_numbers, train_numbers = numbers[:100], numbers[100:]
    os.makedirs(out_dir, exist_ok=True)
    for name, ws, ns, n in (("train", train_words, train_numbers, 2000), ("heldout", held_words, held_numbers, 100)):
        with open(os.path.join(out_dir, name + ".jsonl"), "w") as f:
            for record in tasks(ws, ns, rng, n):
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()

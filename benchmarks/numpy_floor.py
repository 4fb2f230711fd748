"""The floor: the chapter's network trained by plain numpy SGD at batch 32, no framework.

Flatten -> Dense(100, relu) -> Dense(10, softmax), cross-entropy, plain SGD (no Adam, no
Dropout, no validation, no metrics): the least work one epoch of the chapter's model can be on
this CPU. Prints one JSON line with the seconds per epoch (median of the epochs after the
first) and the last epoch's mean loss.

    python benchmarks/numpy_floor.py [--epochs 4] [--data_dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from fmtrain.learning import data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--data_dir", default=os.environ.get("FMTRAIN_DATA_DIR"))
    args = parser.parse_args()
    splits = data.load_splits(args.data_dir)
    x = data.scale(splits.x_train).reshape(len(splits.y_train), -1)
    y = splits.y_train.astype(np.int64)
    rng = np.random.default_rng(42)
    w1 = (rng.standard_normal((784, 100)) * np.sqrt(2 / 784)).astype(np.float32)
    b1 = np.zeros(100, np.float32)
    w2 = (rng.standard_normal((100, 10)) * np.sqrt(1 / 100)).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    rate, batch, seconds, loss = np.float32(0.01), 32, [], 0.0
    for _ in range(args.epochs):
        start, order, total = time.perf_counter(), rng.permutation(len(y)), 0.0
        for first in range(0, len(y), batch):
            index = order[first:first + batch]
            xb, yb = x[index], y[index]
            hidden = np.maximum(xb @ w1 + b1, 0)
            logits = hidden @ w2 + b2
            logits -= logits.max(axis=1, keepdims=True)
            probabilities = np.exp(logits)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
            total += -np.log(probabilities[np.arange(len(yb)), yb] + 1e-12).sum()
            grad = probabilities
            grad[np.arange(len(yb)), yb] -= 1
            grad /= len(yb)
            grad_hidden = (grad @ w2.T) * (hidden > 0)
            w2 -= rate * (hidden.T @ grad)
            b2 -= rate * grad.sum(axis=0)
            w1 -= rate * (xb.T @ grad_hidden)
            b1 -= rate * grad_hidden.sum(axis=0)
        seconds.append(time.perf_counter() - start)
        loss = total / len(y)
    print(json.dumps({"seconds_per_epoch": float(np.median(seconds[1:] or seconds)), "loss": float(loss)}))


if __name__ == "__main__":
    main()

"""Child side of the index crash test: a fork server whose children change an index until killed.

Reads ``INDEX_DIR SEED ACK_FILE`` lines on stdin; for each, forks a child that opens the index
and adds, deletes and saves at random forever, writing ``try ...`` before and ``ack ...`` after
every change (the ack only once the change is durable). The server prints the child's pid, waits
for it (the test kills it with SIGKILL) and prints ``reaped``. Forking from a warm process keeps
50 trials fast: the imports happen once.
"""

from __future__ import annotations

import os
import random
import sys
import zlib

import numpy as np

from modalign.search import Index

D = 16


def vector_of(item_id: str) -> np.ndarray:
    """The vector an id always gets, so the test can check what was stored."""
    return np.random.default_rng(zlib.crc32(item_id.encode())).standard_normal(D).astype(np.float32)


def work(path: str, seed: int, ack_file: str) -> None:
    fd = os.open(ack_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def log(line: str) -> None:
        os.write(fd, (line + "\n").encode())

    rng = random.Random(seed)
    idx = Index.open(path)
    live = list(idx.ids)
    counter = 0
    while True:
        r = rng.random()
        if r < 0.6 or not live:
            ids = [f"s{seed}-{counter + j}" for j in range(rng.randint(1, 3))]
            counter += len(ids)
            log("try add " + ",".join(ids))
            idx.add(np.stack([vector_of(i) for i in ids]), ids, [{"id": i} for i in ids])
            log("ack add " + ",".join(ids))
            live += ids
        elif r < 0.9:
            victim = rng.choice(live)
            log(f"try del {victim}")
            idx.delete([victim])
            log(f"ack del {victim}")
            live.remove(victim)
        else:
            log("try save")
            idx.save()
            log("ack save")


def main() -> None:
    for line in sys.stdin:
        path, seed, ack_file = line.split()
        pid = os.fork()
        if pid == 0:
            try:
                work(path, int(seed), ack_file)
            finally:
                os._exit(1)
        print(pid, flush=True)
        os.waitpid(pid, 0)
        print("reaped", flush=True)


if __name__ == "__main__":
    main()

"""What the choice per chunk (bbans.classical) costs in compress time on the test sets,
where the model takes every chunk: coding time with the choice and with every chunk sent
to the model unasked, interleaved in one process, one core, the fastest of `repeat`.

    BBANS_DATA=../shared/data python -m benchmarks.choice_cost [repeat]
"""
import sys

from bbans import api, chunks, classical
from bbans.measure import VARIANTS, mnist_test, npy_bytes


def main(repeat: int = 5):
    chunks.one_thread()
    choose = classical.choose
    print("| data | model | with the choice (s) | without (s) | cost |")
    print("| --- | --- | --- | --- | --- |")
    for variant in VARIANTS:
        data = npy_bytes(mnist_test(variant, 10_000))
        best = {True: float("inf"), False: float("inf")}
        for _ in range(repeat):
            for on in best:
                classical.choose = choose if on else (lambda pixels, shape, message: (0, message))
                blob, report = api.compress(data)
                best[on] = min(best[on], report["seconds"])
        classical.choose = choose
        print(f"| {variant} | {report['model']} | {best[True]:.3f} | {best[False]:.3f} | "
              f"{100 * (best[True] / best[False] - 1):+.1f}% |")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))

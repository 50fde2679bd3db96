"""Length buckets: every clip is padded to one of a few fixed lengths, so a model compiles
once per bucket (and the persistent compilation cache keeps those programs across restarts).

A clip goes to the smallest bucket that holds it. A clip longer than the largest bucket is
never silently truncated: with over_long="chunk" it is cut into consecutive pieces of the
largest bucket's length (the last piece goes to the bucket that holds it) and the labeler
combines the pieces' results; with over_long="refuse" it is left out of the output and
counted under the failure reason `too_long`.
"""

from __future__ import annotations

import bisect
import dataclasses

from strongaudio_jax.config import ConfigError

OVER_LONG = ("chunk", "refuse")


class TooLong(ValueError):
    """A clip over the largest bucket, with over_long="refuse"."""

    reason = "too_long"


@dataclasses.dataclass(frozen=True)
class Buckets:
    sizes: tuple[int, ...]  # samples, ascending
    over_long: str = "chunk"

    def __post_init__(self):
        if not self.sizes or list(self.sizes) != sorted(set(self.sizes)) or self.sizes[0] <= 0:
            raise ConfigError(f"buckets.seconds gives bucket sizes {self.sizes} samples: give "
                              "one or more positive lengths in ascending order")
        if self.over_long not in OVER_LONG:
            raise ConfigError(f"buckets.over_long={self.over_long!r}: use one of {OVER_LONG}")

    @classmethod
    def from_seconds(cls, seconds, sample_rate: int, over_long: str = "chunk") -> "Buckets":
        return cls(tuple(int(round(s * sample_rate)) for s in seconds), over_long)

    @property
    def largest(self) -> int:
        return self.sizes[-1]

    def bucket(self, n: int) -> int:
        """The index of the smallest bucket holding `n` samples (n <= largest)."""
        return bisect.bisect_left(self.sizes, n)

    def pieces(self, n: int, where: str = "clip") -> list[tuple[int, int]]:
        """(start, length) of the pieces a clip of `n` samples is labelled in: itself, or
        (chunk) consecutive pieces of the largest bucket's length. TooLong when refused."""
        if n <= self.largest:
            return [(0, n)]
        if self.over_long == "refuse":
            raise TooLong(f"{where}: {n} samples is longer than the largest bucket "
                          f"({self.largest} samples) and buckets.over_long='refuse'")
        return [(s, min(self.largest, n - s)) for s in range(0, n, self.largest)]

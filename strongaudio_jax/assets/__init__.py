"""Files shipped inside the package (the demo corpus), located without `../shared`."""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def demo_corpus(name: str = "") -> str:
    """Path of the bundled demo corpus folder, or of a file / glob pattern inside it."""
    return os.path.join(_HERE, "demo_corpus", name)

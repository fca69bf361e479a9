"""selfsup: self-supervised learning of transformers (BERT, GPT, SimCLR, BYOL) on CPU or GPU.

Importing the package is cheap: torch-heavy and optional modules are imported where they are used.
"""

__version__ = "0.1.0"

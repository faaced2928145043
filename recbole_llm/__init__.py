"""recbole_llm: LLM + graph recommenders as ordinary RecBole models.

Importing the package applies the RecBole 1.2.1 compatibility fixes (see ``compat.py``), so stock
RecBole models run on today's numpy, SciPy and torch as well.
"""

from recbole_llm import compat

compat.apply()

__version__ = "0.1.0"

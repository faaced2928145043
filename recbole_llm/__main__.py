"""``python -m recbole_llm``: the same command line as ``recbole-llm`` and ``run_recbole_llm.py``."""

import sys

from recbole_llm.cli import main

sys.exit(main())

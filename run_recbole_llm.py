"""Train and evaluate a plugin or stock RecBole model: python run_recbole_llm.py --model=GLTA --dataset=ml-100k

The same command line as the installed ``recbole-llm`` (``recbole_llm/cli.py``); ``--help`` lists the flags.
"""

import sys

from recbole_llm.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""Run the l059-omop command line from a source checkout: ``python cli.py --help``.

The installed console script is ``l059-omop`` (``l059_omop.cli:main``); this file only forwards to it so the
top level of the repository shows where the CLI starts.
"""

from l059_omop.cli import main

if __name__ == "__main__":
    main()

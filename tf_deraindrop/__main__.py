"""`python -m tf_deraindrop <command> ...`: the same as the `deraindrop` command."""

import sys

from tf_deraindrop.cli import main

if __name__ == "__main__":
    sys.exit(main())
